"""Real MCP clients of ours, asserted on what they print.

- The MCP inspector CLI (npm ``@modelcontextprotocol/inspector``, pinned in ``tests/node/package.json``;
  0.15.0 is the newest release that runs on Node 20) lists the tools and calls ``enrich_ioc`` over stdio
  (the installed console script) and over streamable HTTP (``serve --transport http`` on a loopback port).
  It prints the bare result JSON on stdout and exits 0 even when the result has ``isError: true``.
- An mcp 1.x client (``tests/clients/mcp1_client.py`` run by the ``.upstreams`` python, mcp 1.30, as older
  hosts use) does the same over stdio and streamable HTTP and prints a JSON summary.

Every client process is started at once, when the module's first test asks for one (they are mostly
start-up time), and each test waits for its own. Missing ``tests/node/node_modules`` or ``.upstreams``:
skip with a hint, or FAIL when ``IOC_REQUIRE_UPSTREAMS`` is set (as CI and scripts/test.sh do).

Run this tier alone: ``(cd tests/node && npm ci) && .venv/bin/python -m pytest tests/test_clients.py -q``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.conftest import REPO_ROOT, child_env, console_script, http_server
from tests.upstream_support.harness import upstreams_python
from tests.upstream_support.pytest_plugin import upstreams_required

pytestmark = pytest.mark.upstream

NODE_DIR = REPO_ROOT / "tests" / "node"
INSPECTOR_PACKAGE = "@modelcontextprotocol/inspector"
INSPECTOR = NODE_DIR / "node_modules" / ".bin" / "mcp-inspector"
MCP1_CLIENT = REPO_ROOT / "tests" / "clients" / "mcp1_client.py"
STALLED_CLIENT = NODE_DIR / "stalled_client.mjs"
STALL_MS = 7000  # longer than uvicorn's default keep-alive (5 s), which made a stalled Node client fail

GOOD_IOC = "secure-update.example.net"
BAD_IOC = "payload.xrat"
TOOLS = ("enrich_ioc", "analyze_ioc")
RUN_TIMEOUT = 180  # seconds per client process; they normally take 2-8 s each
TRANSPORTS = ("stdio", "http")


def _unavailable(message: str) -> NoReturn:
    if upstreams_required():
        pytest.fail(f"IOC_REQUIRE_UPSTREAMS is set and {message}", pytrace=False)
    pytest.skip(message)


def _pinned_inspector_version() -> str:
    return json.loads((NODE_DIR / "package.json").read_text())["dependencies"][INSPECTOR_PACKAGE]


def _inspector_problem() -> str | None:
    if not (INSPECTOR.exists() and os.access(INSPECTOR, os.X_OK)):
        return f"the MCP inspector is not installed ({INSPECTOR} not found); run: cd tests/node && npm ci"
    if shutil.which("node") is None:
        return "node is not on PATH (the MCP inspector CLI needs Node >= 18)"
    return None


def _mcp1_problem() -> str | None:
    python = upstreams_python()
    if not (python.exists() and os.access(python, os.X_OK)):
        return f"the upstream venv is missing ({python} not found); build it with: bash scripts/setup-upstreams.sh"
    return None


# ---------------------------------------------------------------------------------------------------------
# Client processes, all started together


@dataclass
class Run:
    """One client process; stdout and stderr go to files so that no pipe fills while another run is awaited."""

    argv: list[str]
    out_path: Path
    err_path: Path
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    seconds: float | None = None

    @classmethod
    def start(cls, name: str, argv: list[str], workdir: Path) -> Run:
        out_path, err_path = workdir / f"{name}.out", workdir / f"{name}.err"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=child_env(), start_new_session=True
            )
        return cls(argv, out_path, err_path, proc)

    def kill(self) -> None:
        if self.proc.poll() is None:
            # The process group holds the client and the server it spawned (stdio).
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def finish(self) -> tuple[str, str]:
        """Wait for the process; exit 0 expected. Returns (stdout, stderr)."""
        try:
            self.proc.wait(timeout=max(1.0, RUN_TIMEOUT - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"timed out after {RUN_TIMEOUT} s: {shlex.join(self.argv)}\n{self.err_path.read_text()}")
        if self.seconds is None:
            self.seconds = time.monotonic() - self.started
        out, err = self.out_path.read_text(), self.err_path.read_text()
        assert self.proc.returncode == 0, f"{shlex.join(self.argv)} exited {self.proc.returncode}\n{err}\n{out}"
        return out, err

    def json(self) -> dict[str, Any]:
        out, err = self.finish()
        try:
            return json.loads(out)
        except json.JSONDecodeError:
            pytest.fail(f"{shlex.join(self.argv)} printed no JSON:\n{out[:2000]}\nstderr:\n{err[:2000]}")


@dataclass
class Runs:
    problems: dict[str, str | None]
    runs: dict[str, Run] = field(default_factory=dict)

    def get(self, group: str, name: str) -> Run:
        problem = self.problems[group]
        if problem:
            _unavailable(problem)
        return self.runs[f"{group} {name}"]

    def close(self) -> None:
        for run in self.runs.values():
            run.kill()


def _inspector(target: list[str], *method: str) -> list[str]:
    return [str(INSPECTOR), "--cli", *target, "--method", *method]


CALL_GOOD = ("tools/call", "--tool-name", "enrich_ioc", "--tool-arg", f"ioc_value={GOOD_IOC}", "lookback_days=30")
CALL_BAD = ("tools/call", "--tool-name", "enrich_ioc", "--tool-arg", f"ioc_value={BAD_IOC}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    problems = {"inspector": _inspector_problem(), "mcp1": _mcp1_problem()}
    result = Runs(problems)
    if all(problems.values()):
        yield result
        return
    workdir = tmp_path_factory.mktemp("clients")
    stdio = [console_script()]
    try:
        # stdio first: those runs start their own server and take longest.
        if not problems["inspector"]:
            for name, method in (("tools/list", ("tools/list",)), ("call", CALL_GOOD), ("invalid", CALL_BAD)):
                result.runs[f"inspector stdio {name}"] = Run.start(
                    f"inspector-stdio-{name.replace('/', '-')}", _inspector(stdio, *method), workdir
                )
        if not problems["mcp1"]:
            result.runs["mcp1 stdio"] = Run.start(
                "mcp1-stdio", [str(upstreams_python()), str(MCP1_CLIENT), "stdio", *stdio], workdir
            )
        with http_server(workdir, timeout=60) as served:
            http = [served.url, "--transport", "http"]
            if not problems["inspector"]:
                for name, method in (("tools/list", ("tools/list",)), ("call", CALL_GOOD)):
                    result.runs[f"inspector http {name}"] = Run.start(
                        f"inspector-http-{name.replace('/', '-')}", _inspector(http, *method), workdir
                    )
                result.runs["inspector http stalled"] = Run.start(
                    "node-http-stalled", ["node", str(STALLED_CLIENT), served.url, str(STALL_MS)], workdir
                )
            if not problems["mcp1"]:
                result.runs["mcp1 http"] = Run.start(
                    "mcp1-http", [str(upstreams_python()), str(MCP1_CLIENT), "http", served.url], workdir
                )
            yield result
    finally:
        result.close()


def _block_text(result: dict[str, Any]) -> str:
    return "".join(block["text"] for block in result["content"] if block["type"] == "text")


# ---------------------------------------------------------------------------------------------------------
# MCP inspector CLI


def test_inspector_pinned_version_is_installed() -> None:
    problem = _inspector_problem()
    if problem:
        _unavailable(problem)
    pinned = _pinned_inspector_version()
    assert pinned == "0.15.0", "pin the exact inspector release that runs on Node 20"
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    assert lock["packages"][f"node_modules/{INSPECTOR_PACKAGE}"]["version"] == pinned
    installed = json.loads((NODE_DIR / "node_modules" / INSPECTOR_PACKAGE / "package.json").read_text())
    assert installed["version"] == pinned, "tests/node/node_modules is stale; run: cd tests/node && npm ci"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_inspector_tools_list(runs: Runs, transport: str) -> None:
    listed = runs.get("inspector", f"{transport} tools/list").json()
    tools = {tool["name"]: tool for tool in listed["tools"]}
    assert set(TOOLS) <= set(tools)
    for name in TOOLS:
        tool = tools[name]
        assert tool["annotations"]["readOnlyHint"] is True
        assert tool["annotations"]["openWorldHint"] is True
        assert "ioc_value" in tool["inputSchema"]["required"]
        assert tool["outputSchema"]["type"] == "object" and tool["outputSchema"]["properties"]
    schema = tools["enrich_ioc"]["outputSchema"]
    assert schema["title"] == "EnrichResult"
    assert {"data_mode", "gti_analysis", "siem_context", "ioc_matches", "summary"} <= set(schema["properties"])
    if transport == "http":
        assert listed == runs.get("inspector", "stdio tools/list").json(), "same tools over both transports"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_inspector_calls_enrich_ioc(runs: Runs, transport: str) -> None:
    result = runs.get("inspector", f"{transport} call").json()
    assert result["isError"] is False
    data = result["structuredContent"]
    assert data["data_mode"] == "offline-fixtures"
    assert data["indicator"]["value"] == GOOD_IOC and data["indicator"]["type"] == "domain"
    assert data["lookback_days"] == 30, "--tool-arg lookback_days=30 arrives as a number"
    assert data["gti_analysis"]["reputation_score"] == "87/100"
    assert data["assessment"]["verdict"] == "malicious"
    assert _block_text(result) == data["summary"]
    assert "DATA MODE offline-fixtures" in data["summary"]


def test_node_client_stalled_between_requests_still_gets_its_answer(runs: Runs) -> None:
    """A Node client whose event loop stalls between two requests (a loaded machine) reuses its idle
    connection; the server must not have closed it. With uvicorn's default 5 s keep-alive this failed
    with 'fetch failed' (UND_ERR_SOCKET: other side closed), as CI once saw from the inspector."""
    result = runs.get("inspector", "http stalled").json()
    assert result == {"stalled_ms": STALL_MS, "isError": False, "verdict": "malicious"}


def test_inspector_invalid_indicator_is_a_tool_error(runs: Runs) -> None:
    run = runs.get("inspector", "stdio invalid")
    result = run.json()  # the inspector exits 0 on isError: the result says it
    assert run.proc.returncode == 0
    assert result["isError"] is True
    assert "structuredContent" not in result
    text = _block_text(result)
    assert "unknown TLD `xrat`" in text, text
    assert text.startswith("Error executing tool enrich_ioc: not a valid domain"), text


# ---------------------------------------------------------------------------------------------------------
# mcp 1.x client


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_mcp1_client(runs: Runs, transport: str) -> None:
    run = runs.get("mcp1", transport)
    summary = run.json()
    assert summary["client"]["transport"] == ("stdio" if transport == "stdio" else "streamable-http")
    assert summary["client"]["mcp"].startswith("1."), summary["client"]
    assert summary["protocol_version"] == "2025-11-25"
    assert summary["server_info"]["name"] == "ioc-workflows-mcp"
    assert "tools" in summary["capabilities"]

    tools = {tool["name"]: tool for tool in summary["tools"]}
    assert set(TOOLS) <= set(tools)
    for name in TOOLS:
        assert tools[name]["output_schema_properties"], f"{name} has an outputSchema"
        assert tools[name]["annotations"]["readOnlyHint"] is True
        assert tools[name]["annotations"]["openWorldHint"] is True
        assert tools[name]["input_required"] == ["ioc_value"]
    assert tools["enrich_ioc"]["output_schema_title"] == "EnrichResult"
    assert {"data_mode", "gti_analysis", "summary"} <= set(tools["enrich_ioc"]["output_schema_properties"])

    enrich = summary["enrich"]
    assert enrich["is_error"] is False and enrich["content_types"] == ["text"]
    assert enrich["structured"] == {
        "data_mode": "offline-fixtures",
        "indicator_type": "domain",
        "indicator_value": GOOD_IOC,
        "reputation_score": "87/100",
        "gti_verdict": "malicious",
        "verdict": "malicious",
        "risk_level": "critical",
        "lookback_days": 30,
        "summary": enrich["text"],
    }
    assert enrich["text"].startswith(f"domain {GOOD_IOC}: verdict malicious, risk critical")
    assert "score 87/100" in enrich["text"] and "DATA MODE offline-fixtures" in enrich["text"]

    invalid = summary["invalid"]
    assert invalid["is_error"] is True and invalid["structured"] is None
    assert "unknown TLD `xrat`" in invalid["text"], invalid["text"]

    if transport == "stdio":  # mcp 1.x passes the server's stderr through
        assert "DATA MODE offline-fixtures" in run.finish()[1]
