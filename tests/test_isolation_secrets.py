"""Isolation and secrets (issue 6, item 5), through real MCP clients against the installed console script.

* Two MCP sessions over streamable HTTP, talking at the same time, never see each other's cache entries or
  results: every provenance entry is ``cached`` exactly when the same session made that call before, and a
  cached entry's ``cache_age_seconds`` is bounded by the age of that session's own call.
* A secret set in the config (``${VAR}`` expanded from the environment into an upstream's ``env``) never
  appears in anything a run produces: every tool's structuredContent and text, tool errors, the server's
  stdout and stderr at DEBUG, the CLI's ``analyze --log-level DEBUG`` and ``doctor`` output, nor in a
  session-cache key or value. That holds with healthy upstreams and with failing ones whose failure text
  carries the secret: one that prints it to stderr and exits at start-up (its last stderr line is quoted in
  the section reason), one whose stderr line is long enough that the quoted tail would cut the secret in
  two, one that echoes it in an in-band error, and the crash_mid_call / inband_error fault stand-ins.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError

from ioc_workflows_mcp.indicator import Indicator
from ioc_workflows_mcp.settings import load_config
from ioc_workflows_mcp.upstream.pool import UpstreamPool
from ioc_workflows_mcp.workflows.correlate import correlate
from ioc_workflows_mcp.workflows.enrich import enrich
from ioc_workflows_mcp.workflows.investigate import investigate
from ioc_workflows_mcp.workflows.pivot import pivot
from ioc_workflows_mcp.workflows.sources import Sources
from tests.conftest import child_env, console_script, http_server

SECTIONS = ("gti_analysis", "siem_context", "ioc_matches")

# Distinctive values (mixed case, no hex run) that nothing else in a result could contain by chance.
SECRETS = {
    "IOC_T_VT_KEY": "vtKEY-Zq8vTkWpLxRmQy-gti",
    "IOC_T_CHRONICLE_TOKEN": "chrTOK-Hj4nWqPzXvKs-secops",
    "IOC_T_SOAR_KEY": "soarAPP-Mw7rYtQnBcLd-soar",
}
# A fragment this long of a secret counts as a leak too (a cut secret is still a leak).
FRAGMENT = 8


@contextmanager
def serving(tmp_path: Path, env: dict[str, str], *options: str) -> Iterator[tuple[str, Path, Path]]:
    """``ioc-workflows-mcp [options] serve --transport http`` on a free 127.0.0.1 port; stdout/stderr to files."""
    with http_server(tmp_path, env, options) as served:
        yield served.url, served.out, served.err


# --- (a) two sessions --------------------------------------------------------------------------------


def _provenance(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for key in SECTIONS for p in data[key]["section"]["provenance"]]


def _key(p: dict[str, Any]) -> tuple[str, str, str]:
    return p["upstream"], p["tool"], json.dumps(p["arguments"], sort_keys=True)


def _content(data: dict[str, Any]) -> dict[str, Any]:
    """A result without what legitimately differs between sessions: provenance, durations, the summary."""
    data = json.loads(json.dumps(data))
    for key in SECTIONS:
        data[key]["section"].pop("provenance")
    data.pop("summary")
    return data


class Session:
    """One MCP session's calls, each checked against what this session (and only it) asked before."""

    def __init__(self, name: str, client: Client):
        self.name = name
        self.client = client
        self.first_made: dict[tuple[str, str, str], float] = {}  # call key -> when this session first made it
        self.results: list[tuple[str, dict[str, Any]]] = []

    async def enrich(self, ioc: str) -> dict[str, Any]:
        started = time.monotonic()
        result = await self.client.call_tool("enrich_ioc", {"ioc_value": ioc})
        assert not result.is_error, result
        data: dict[str, Any] = result.structured_content or {}
        assert data["indicator"]["value"] == ioc, f"{self.name} got another call's result"
        calls = _provenance(data)
        assert len(calls) == 4
        for p in calls:
            key = _key(p)
            mine = self.first_made.get(key)
            assert p["cached"] is (mine is not None), (self.name, ioc, p)
            if mine is None:
                assert p["cache_age_seconds"] is None
            else:
                # the entry is this session's own: no older than this session's first such call
                assert 0 <= p["cache_age_seconds"] <= time.monotonic() - mine + 0.2, (self.name, p)
        for p in calls:
            self.first_made.setdefault(_key(p), started)
        self.results.append((ioc, data))
        return data


X, Y, Z = "secure-update.example.net", "login.example.net", "8.8.8.8"


def test_two_http_sessions_never_see_each_others_cache_or_results(tmp_path: Path) -> None:
    with serving(tmp_path, child_env()) as (url, _out, _err):

        async def talk() -> tuple[Session, Session]:
            async with (
                Client(url, mode="legacy", read_timeout_seconds=120) as one,
                Client(url, mode="legacy", read_timeout_seconds=120) as two,
            ):
                a, b = Session("A", one), Session("B", two)
                a_did_x = anyio.Event()

                async def run_a() -> None:
                    await a.enrich(X)
                    a_did_x.set()
                    await a.enrich(Y)
                    await a.enrich(X)  # all four from A's own cache
                    await a.enrich(Z)

                async def run_b() -> None:
                    await b.enrich(Z)  # at the same time as A's first call
                    await a_did_x.wait()
                    await anyio.sleep(2.0)  # A's entries for X are now >= 2 s old
                    await b.enrich(X)  # A has X cached: B must still ask the upstreams
                    await b.enrich(X)  # now B's own entries, younger than A's
                    await b.enrich(Y)

                with anyio.fail_after(150):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(run_a)
                        tg.start_soon(run_b)
                    # then both at once on the same indicators, each from its own cache
                    async with anyio.create_task_group() as tg:
                        for session in (a, b, a, b):
                            tg.start_soon(session.enrich, Y)
                return a, b

        a, b = anyio.run(talk)

    b_x = [data for ioc, data in b.results if ioc == X]
    assert not any(p["cached"] for p in _provenance(b_x[0]) if p["tool"] != "get_ioc_matches")
    # B's own X entries are younger than A's (get_ioc_matches has no indicator argument: B's Z call made it)
    own_x = [p for p in _provenance(b_x[1]) if p["tool"] != "get_ioc_matches"]
    assert len(own_x) == 3 and all(p["cache_age_seconds"] < 2.0 for p in own_x), "B saw A's older entries"
    # the same indicator gives the same answer in both sessions: no result crossed over
    for ioc in (X, Y, Z):
        contents = {json.dumps(_content(data), sort_keys=True) for s in (a, b) for i, data in s.results if i == ioc}
        assert len(contents) == 1, ioc


# --- (b) secrets -----------------------------------------------------------------------------------

ECHO_GTI = """\
import os, sys
from typing import Any
from mcp.server.mcpserver import MCPServer

server = MCPServer("echo-gti")
KEY = os.environ["VT_APIKEY"]
print("starting with key " + KEY, file=sys.stderr, flush=True)


@server.tool()
async def get_domain_report(domain: str) -> dict[str, Any]:
    return {"error": f"VirusTotal API Error: InvalidArgumentError - key {KEY} is not valid for {domain}"}


@server.tool()
async def get_ip_address_report(ip_address: str) -> dict[str, Any]:
    raise ValueError(f"request with x-apikey {KEY} failed")


server.run("stdio")
"""


def _standin(name: str, **env: str) -> dict[str, Any]:
    return {"command": sys.executable, "args": ["-m", "ioc_workflows_mcp.offline", name], "env": env}


def _with_secret(entry: dict[str, Any], name: str) -> dict[str, Any]:
    secret_env = {
        "gti": {"VT_APIKEY": "${IOC_T_VT_KEY}"},
        "secops": {"CHRONICLE_API_TOKEN": "${IOC_T_CHRONICLE_TOKEN}"},
        "soar": {"SOAR_APP_KEY": "${IOC_T_SOAR_KEY}"},
    }[name]
    return {**entry, "env": {**entry.get("env", {}), **secret_env}}


def _scenarios(tmp_path: Path) -> dict[str, dict[str, Any]]:
    echo = tmp_path / "echo_gti.py"
    echo.write_text(ECHO_GTI)
    exits_printing_key = (
        "import os, sys; sys.stderr.write('fatal: API key ' + os.environ['VT_APIKEY'] + ' refused\\n'); sys.exit(3)"
    )
    # One stderr line whose last 600 characters (what the failure reason quotes) start inside the secret.
    long_line = (
        "import os, sys; k = os.environ['CHRONICLE_API_TOKEN']; "
        "sys.stderr.write('token ' + k + 'y' * (600 - len(k) // 2) + '\\n'); sys.exit(3)"
    )
    fast = {
        "call_timeout_seconds": 8,
        "startup_timeout_seconds": 15,
        "max_retries": 1,
        "retry_backoff_seconds": 0.1,
        "restart_cooldown_seconds": 0.5,
    }
    return {
        "healthy": {"gti": _standin("gti"), "secops": _standin("secops"), "soar": _standin("soar")},
        "failing": {
            "gti": {"command": sys.executable, "args": ["-c", exits_printing_key]},
            "secops": _standin("secops", IOC_STANDIN_FAULT="crash_mid_call"),
            "soar": _standin("soar", IOC_STANDIN_FAULT="inband_error"),
            "settings": fast,
        },
        "echoing": {
            "gti": {"command": sys.executable, "args": [str(echo)]},
            "secops": {"command": sys.executable, "args": ["-c", long_line]},
            "soar": _standin("soar", IOC_STANDIN_FAULT="crash_mid_call"),
            "settings": fast,
        },
    }


def _write_config(tmp_path: Path, name: str, scenario: dict[str, Any]) -> Path:
    servers = {up: _with_secret(entry, up) for up, entry in scenario.items() if up != "settings"}
    for entry in servers.values():
        entry["env"]["PYTHONUNBUFFERED"] = "1"
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"mcpServers": servers, "settings": scenario.get("settings", {})}))
    return path


def _leaks(text: str) -> list[str]:
    """Every secret, or fragment of FRAGMENT characters of one, found in ``text``."""
    found = []
    for secret in SECRETS.values():
        pieces = {secret[i : i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)}
        found += [piece for piece in pieces if piece in text]
    return found


CALLS: list[tuple[str, dict[str, Any]]] = [
    ("enrich_ioc", {"ioc_value": X}),
    ("enrich_ioc", {"ioc_value": "45.77.23.101"}),
    ("pivot_ioc", {"ioc_value": X, "pivot_depth": 1}),
    ("correlate_ioc", {"ioc_value": X, "correlation_scope": "comprehensive"}),
    ("investigate_ioc", {"ioc_value": X, "pivot_depth": 1, "pivot_if": "always"}),
    ("analyze_ioc", {"ioc_value": Y, "analysis_type": "full", "pivot_depth": 1}),
    ("analyze_ioc", {"ioc_value": Y, "analysis_type": "correlate"}),
    ("enrich_ioc", {"ioc_value": "payload.xrat"}),  # a tool error
    ("enrich_ioc", {"ioc_value": X, "lookback_days": 9999}),  # a validation error
]


async def _every_tool(url: str) -> list[str]:
    """Everything the MCP client receives: tool list, every result (all fields), every error message."""
    captured: list[str] = []
    async with Client(url, mode="legacy", read_timeout_seconds=120) as client:
        captured.append((await client.list_tools()).model_dump_json())
        for tool, arguments in CALLS:
            try:
                result = await client.call_tool(tool, arguments)
            except MCPError as exc:
                captured.append(f"{tool} raised {exc!r} {exc.error.model_dump_json()}")
                continue
            captured.append(result.model_dump_json())
            captured.append(json.dumps(result.structured_content))
    return captured


def _cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [console_script(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


@pytest.mark.parametrize("scenario", ["healthy", "failing", "echoing"])
def test_secret_never_appears_in_anything_a_run_produces(tmp_path: Path, scenario: str) -> None:
    config = _write_config(tmp_path, scenario, _scenarios(tmp_path)[scenario])
    env = child_env(IOC_WORKFLOWS_CONFIG=str(config), **SECRETS)
    captured: list[str] = []
    # the CLI at the same time as the server, to keep the run short
    analyze = _cli(env, "analyze", X, "--workflow", "investigate", "--depth", "1", "--log-level", "DEBUG")
    doctor = _cli(env, "doctor", "--log-level", "DEBUG")
    try:
        with serving(tmp_path, env, "--log-level", "DEBUG") as (url, out, err):
            captured += anyio.run(_every_tool, url)
        captured += [out.read_text(), err.read_text()]
        for proc in (analyze, doctor):
            stdout, stderr = proc.communicate(timeout=180)
            captured += [stdout, stderr]
    finally:
        for proc in (analyze, doctor):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    everything = "\n".join(captured)
    assert analyze.returncode == 0, captured[-4:]
    assert not _leaks(everything), _leaks(everything)
    # the runs did reach the paths where the secret would have shown
    assert "DEBUG" in everything
    assert "Unknown tool" in everything or "unknown TLD" in everything
    if scenario == "failing":
        assert "fatal: API key *** refused" in everything
        assert "Connection closed" in everything  # secops crashed mid-call
    if scenario == "echoing":
        assert "key *** is not valid" in everything  # gti echoed the key in band
        assert "UNAVAILABLE" in everything  # doctor saw secops die at start-up


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("echoing_gti", [False, True])
async def test_session_cache_keys_and_values_hold_no_secret(
    tmp_path: Path, echoing_gti: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    scenarios = _scenarios(tmp_path)
    scenario = dict(scenarios["healthy"], gti=scenarios["echoing"]["gti"]) if echoing_gti else scenarios["healthy"]
    config = load_config(_write_config(tmp_path, "in-process", scenario))
    assert set(config.secrets) == set(SECRETS.values())
    async with UpstreamPool(config) as pool:
        sources = Sources.from_pool(pool, config)
        indicator = Indicator.parse(X)
        with anyio.fail_after(120):
            await enrich(indicator, sources)
            await enrich(Indicator.parse("45.77.23.101"), sources)
            await pivot(indicator, sources, 1)
            await correlate(indicator, sources, "recent", 30)
            await investigate(indicator, sources, 1, "recent", 30, "always")
        assert sources.cache is not None and sources.cache._data is not None
        keys = list(sources.cache._data.keys())
        values = [repr(entry) for entry in sources.cache._data.values()]
    assert keys, "the runs cached answers"
    assert not _leaks(repr(keys))
    assert not _leaks("\n".join(values))
