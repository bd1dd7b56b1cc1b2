"""Every upstream failure mode, through an MCP client, for every workflow (issue 6, item 1).

The product runs as a host runs it (the console script over stdio) with a config whose gti and soar
servers are fault-injecting variants of the offline stand-ins (``ioc_workflows_mcp/offline/faults.py``):
gti misbehaves on every tool, soar on ``list_cases`` only, secops is healthy. The fault is active only while
a switch file exists, so one session shows the fault and then the recovery. For each fault:

* each workflow's result comes back within its bound: the configured timeout (times the rounds of calls
  the workflow makes one after another) plus a small margin;
* the affected section has the expected status and reason; the others equal the no-fault result;
* a failed section never reads as clean or low;
* once the fault is cleared the next call works (the pool restarts what died);
* no stand-in process outlives its parent, and none outlives the session.

Caching is off in these configs so that every call reaches the upstreams.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from bench.common import parent_pid
from ioc_workflows_mcp.settings import DEFAULT_PROCESSES, UPSTREAM_NAMES
from tests.conftest import child_env, console_script

pytestmark = pytest.mark.anyio

DOMAIN = "secure-update.example.net"  # malicious in GTI, seen in the SIEM, in SOAR cases
PRIVATE_IP = "10.20.30.40"  # never sent to GTI: a warm-up that starts secops only
CALL_TIMEOUT = 1.5  # the faulty upstreams' call timeout
STARTUP_TIMEOUT = 5.0  # the faulty upstreams' start-up timeout in the never_starts test
MARGIN = 2.5  # scheduling slack on a loaded 2-core box
RESTART_COOLDOWN = 1.0  # settings restart_cooldown_seconds of the faulty upstreams (the product's default: 5)
RETRY_AFTER = 2.5  # the rate_limit fault's retry-after: longer than CALL_TIMEOUT, so not retried
TAG_VAR = "IOC_FAULT_TEST_TAG"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


# --------------------------------------------------------------------------------------------------
# processes


def _proc_env(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def tagged(tag: str) -> dict[int, str]:
    """Live processes started for this test (zombies have no environment left): pid -> command line."""
    marker = f"{TAG_VAR}={tag}".encode()
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and marker in _proc_env(int(entry)).split(b"\0"):
            found[int(entry)] = _proc_cmdline(int(entry))
    return found


def standins(tag: str) -> dict[int, str]:
    return {pid: cmd for pid, cmd in tagged(tag).items() if "ioc_workflows_mcp.offline" in cmd}


def _stray_standins(tag: str, parent: int | None = None) -> str | None:
    """What is wrong with the stand-ins running now, or None: no more than the pool may run (one process
    per upstream, three for secops: settings DEFAULT_PROCESSES), each a child of the product's server
    process (``parent``, else the tagged process that is not a stand-in)."""
    servers = [pid for pid, cmd in tagged(tag).items() if "ioc_workflows_mcp.offline" not in cmd]
    if parent is not None:
        servers = [parent]
    children = standins(tag)
    for name in UPSTREAM_NAMES:
        mine = [cmd for cmd in children.values() if cmd.split()[-1:] == [name]]
        if len(mine) > DEFAULT_PROCESSES.get(name, 1):
            return f"{len(mine)} {name} stand-ins: {children}"
    if not all(parent_pid(pid) in servers for pid in children):
        return f"a stand-in is not a child of the server {servers}: {children}"
    return None


def assert_no_stray_standins(tag: str, parent: int | None = None, within: float = 5.0) -> None:
    """Checked until ``within`` seconds pass: a process whose start was abandoned is being stopped, and a
    stop takes a moment; one that is still there after that is a leak."""
    deadline = time.monotonic() + within
    problem = _stray_standins(tag, parent)
    while problem and time.monotonic() < deadline:
        time.sleep(0.2)
        problem = _stray_standins(tag, parent)
    assert problem is None, problem


async def assert_all_gone(tag: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while tagged(tag) and time.monotonic() < deadline:
        await anyio.sleep(0.2)
    assert not tagged(tag), f"left behind: {tagged(tag)}"


# --------------------------------------------------------------------------------------------------
# the product with faulty upstreams


def _spec(name: str, tag: str, env: dict[str, str]) -> dict[str, Any]:
    return {
        "command": sys.executable,
        "args": ["-m", "ioc_workflows_mcp.offline", name],
        "env": {"PYTHONUNBUFFERED": "1", TAG_VAR: tag, **env},
    }


def write_config(
    directory: Path,
    tag: str,
    faults: dict[str, dict[str, str]],
    upstream_settings: dict[str, dict[str, Any]] | None = None,
    **settings: Any,
) -> Path:
    """A config over the three stand-ins, ``faults[name]`` added to that stand-in's environment."""
    config = {
        "mcpServers": {name: _spec(name, tag, faults.get(name, {})) for name in ("gti", "secops", "soar")},
        "settings": {
            "call_timeout_seconds": 30,
            "startup_timeout_seconds": 30,
            "cache": {"max_entries": 0, "ttl_seconds": 0, "not_found_ttl_seconds": 0},
            "upstreams": upstream_settings or {},
            **settings,
        },
    }
    path = directory / f"config-{tag}.json"
    path.write_text(json.dumps(config))
    return path


@asynccontextmanager
async def product(config: Path, tag: str) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=console_script(), args=[], env=child_env(IOC_WORKFLOWS_CONFIG=str(config), **{TAG_VAR: tag})
    )
    async with Client(params, mode="legacy", read_timeout_seconds=120) as client:
        yield client
    await assert_all_gone(tag)


async def call(client: Client, tool: str, **arguments: Any) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    result = await client.call_tool(tool, arguments)
    elapsed = time.monotonic() - started
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content, elapsed


async def gather(client: Client, runs: dict[str, dict[str, Any]]) -> dict[str, tuple[dict[str, Any], float]]:
    """Call the tools concurrently on one session: tool -> (result, seconds it took)."""
    out: dict[str, tuple[dict[str, Any], float]] = {}

    async def one(tool: str, arguments: dict[str, Any]) -> None:
        out[tool] = await call(client, tool, **arguments)

    async with anyio.create_task_group() as tg:
        for tool, arguments in runs.items():
            tg.start_soon(one, tool, arguments)
    return out


# --------------------------------------------------------------------------------------------------
# what each fault must look like


@dataclass(frozen=True)
class Expect:
    gti: str  # status of enrich's gti_analysis
    gti_reason: str  # regex the reason must match
    soar: str  # status of correlate's case_correlations (fault on list_cases)
    soar_reason: str

    @property
    def failed(self) -> bool:
        return self.gti != "ok"


FAULTS: dict[str, Expect] = {
    "crash_mid_call": Expect(
        "unavailable", r"Connection closed|connection lost", "unavailable", r"list_cases.*(Connection closed|lost)"
    ),
    "hang": Expect("timeout", rf"timed out after {CALL_TIMEOUT:g} s", "timeout", r"list_cases timed out"),
    "slow": Expect("ok", r"found", "ok", r"cases"),  # 300 ms, within the timeout
    "malformed": Expect("degraded", r"no attributes object", "unavailable", r"not JSON"),
    "inband_error": Expect("unavailable", r"VirusTotal error ServerError", "unavailable", r"returned no content"),
    "rate_limit": Expect("rate_limited", r"retry after", "rate_limited", r"retry after"),
    "missing_tool": Expect("unavailable", r"has no tool get_domain_report", "unavailable", r"has no tool list_cases"),
    "never_starts": Expect(
        "unavailable",
        rf"did not finish starting within {STARTUP_TIMEOUT:g} s",
        "unavailable",
        rf"did not finish starting within {STARTUP_TIMEOUT:g} s",
    ),
    "schema_violation": Expect("degraded", r"violates its own schema", "ok", r"cases"),  # soar has no schemas
}


def _without_provenance(node: Any) -> Any:
    node = copy.deepcopy(node)

    def strip(item: Any) -> None:
        if isinstance(item, dict):
            item.pop("provenance", None)
            for value in item.values():
                strip(value)
        elif isinstance(item, list):
            for value in item:
                strip(value)

    strip(node)
    return node


def _section(result: dict[str, Any], *path: str) -> dict[str, Any]:
    node: Any = result
    for key in path:
        node = node[key]
    return node["section"]


def check_enrich(result: dict[str, Any], expect: Expect, healthy: dict[str, Any]) -> None:
    gti = _section(result, "gti_analysis")
    assert gti["status"] == expect.gti, gti
    assert re.search(expect.gti_reason, gti["reason"] or ""), gti["reason"]
    for name in ("siem_context", "ioc_matches"):
        assert _without_provenance(result[name]) == _without_provenance(healthy[name]), name
    if expect.failed:
        assert result["gti_analysis"]["verdict"] is None and result["gti_analysis"]["reputation_score"] is None
        assert result["assessment"]["verdict"] != "clean" and result["assessment"]["risk_level"] != "low"
        assert f"GTI: FAILED, {expect.gti}" in result["summary"]
        assert [(e["section"], e["status"]) for e in result["errors"]] == [("gti_analysis", expect.gti)]
    else:
        assert _without_provenance(result) == _without_provenance(healthy)
    if expect.gti == "rate_limited":
        assert gti["retry_after_seconds"] and gti["retry_after_seconds"] > 0


def check_correlate(result: dict[str, Any], expect: Expect, healthy: dict[str, Any]) -> None:
    cases = _section(result, "case_correlations")
    assert cases["status"] == expect.soar, cases
    assert re.search(expect.soar_reason, cases["reason"] or ""), cases["reason"]
    assert _without_provenance(result["related_alerts"]) == _without_provenance(healthy["related_alerts"])
    if expect.soar != "ok":
        assert result["risk_assessment"]["exposure_level"] == "unknown"
        assert f"SOAR cases: FAILED, {expect.soar}" in result["summary"]
        assert "case_correlations" in {e["section"] for e in result["errors"]}
    else:
        assert _without_provenance(result["case_correlations"]) == _without_provenance(healthy["case_correlations"])


def check_pivot(result: dict[str, Any], expect: Expect, healthy: dict[str, Any]) -> None:
    if not expect.failed:
        assert _without_provenance(result["direct_relationships"]) == _without_provenance(
            healthy["direct_relationships"]
        )
        return
    assert result["errors"] and {e["upstream"] for e in result["errors"]} == {"gti"}
    assert _section(result, "graph")["status"] != "ok"
    assert result["campaign_context"]["threat_actor"] is None  # no attribution made up from nothing
    campaign = result["campaign_context"]["section"]
    if any(" associations: " in e["message"] for e in result["errors"]):
        # gti fails on every tool here, so no association was read: attribution unknown, not "none supported"
        assert campaign["status"] != "ok" and "attribution unknown" in campaign["reason"]
    statuses = {e["status"] for e in result["errors"]}
    assert statuses <= {expect.gti, "unavailable", "rate_limited", "degraded", "timeout"}


def check_investigate(result: dict[str, Any], expect: Expect) -> None:
    enrichment, correlation = result["enrichment"], result["correlation"]
    assert _section(enrichment, "gti_analysis")["status"] == expect.gti
    assert _section(correlation, "case_correlations")["status"] == expect.soar
    if expect.failed:
        assert enrichment["assessment"]["verdict"] != "clean"
        assert any(e["status"] == expect.gti for e in result["errors"])


# --------------------------------------------------------------------------------------------------


@dataclass
class Session:
    """One product over stand-ins whose fault is chosen by writing its name to ``switch``."""

    client: Client
    tag: str
    switch: Path
    tools: set[str]

    def fault(self, text: str | None) -> None:
        if text is None:
            self.switch.unlink(missing_ok=True)
        else:
            self.switch.write_text(text)


def faulty_policy(startup_timeout: float = 30) -> dict[str, Any]:
    return {
        "call_timeout_seconds": CALL_TIMEOUT,
        "startup_timeout_seconds": startup_timeout,
        "max_retries": 1,
        "retry_backoff_seconds": 0.05,
        "breaker_failure_threshold": 0,
        "restart_cooldown_seconds": RESTART_COOLDOWN,
    }


@asynccontextmanager
async def faulty_product(directory: Path, startup_timeout: float = 30) -> AsyncIterator[Session]:
    """gti faulty on every tool, soar on list_cases only, secops healthy; no fault until one is switched on."""
    tag, switch = uuid.uuid4().hex, directory / f"fault-{uuid.uuid4().hex[:8]}"
    env = {"IOC_STANDIN_FAULT_SWITCH": str(switch), "IOC_STANDIN_FAULT_DELAY_MS": "300",
           "IOC_STANDIN_FAULT_RETRY_AFTER": str(RETRY_AFTER)}  # fmt: skip
    policy = faulty_policy(startup_timeout)
    config = write_config(
        directory,
        tag,
        {"gti": env, "soar": {**env, "IOC_STANDIN_FAULT_TOOLS": "list_cases"}},
        {"gti": policy, "soar": policy},
        breaker_failure_threshold=0,
    )
    async with product(config, tag) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        yield Session(client, tag, switch, tools)


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Session]:
    async with faulty_product(tmp_path_factory.mktemp("faults")) as session:
        # start every upstream with no fault, so the timings measure the faults, not start-ups
        await gather(session.client, {"enrich_ioc": {"ioc_value": DOMAIN}, "correlate_ioc": {"ioc_value": DOMAIN}})
        yield session


def _runs(session: Session) -> dict[str, dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = {
        "enrich_ioc": {"ioc_value": DOMAIN},
        "correlate_ioc": {"ioc_value": DOMAIN},
        "pivot_ioc": {"ioc_value": DOMAIN, "pivot_depth": 1},
    }
    if "investigate_ioc" in session.tools:
        runs["investigate_ioc"] = {"ioc_value": DOMAIN, "pivot_depth": 1, "related_budget": 0}
    return runs


async def run_fault(session: Session, fault: str, bound: float, settle: float = 0.0) -> None:
    """Switch ``fault`` on, run every workflow at once, check each; switch it off, check the next calls."""
    expect = FAULTS[fault]
    session.fault(fault)
    faulted = await gather(session.client, _runs(session))
    assert_no_stray_standins(session.tag)
    failed_at = time.monotonic()

    session.fault(None)
    await anyio.sleep(max(0.0, settle - (time.monotonic() - failed_at)))
    runs = _runs(session)
    runs.pop("investigate_ioc", None)
    healthy = {tool: result for tool, (result, _) in (await gather(session.client, runs)).items()}
    assert all(_section(healthy["enrich_ioc"], n)["status"] == "ok" for n in ("gti_analysis", "siem_context"))
    assert _section(healthy["correlate_ioc"], "case_correlations")["status"] == "ok"
    assert not healthy["pivot_ioc"]["errors"], healthy["pivot_ioc"]["errors"]
    assert_no_stray_standins(session.tag)

    check_enrich(faulted["enrich_ioc"][0], expect, healthy["enrich_ioc"])
    check_correlate(faulted["correlate_ioc"][0], expect, healthy["correlate_ioc"])
    check_pivot(faulted["pivot_ioc"][0], expect, healthy["pivot_ioc"])
    if "investigate_ioc" in faulted:
        check_investigate(faulted["investigate_ioc"][0], expect)

    # bounds: the configured timeout per round of calls the workflow makes one after another, plus slack
    rounds = {"enrich_ioc": 1, "correlate_ioc": 1, "pivot_ioc": 2, "investigate_ioc": 4}
    took = {tool: round(seconds, 2) for tool, (_, seconds) in faulted.items()}
    for tool, seconds in took.items():
        assert seconds < rounds[tool] * bound + MARGIN, took


@pytest.mark.parametrize("fault", [name for name in FAULTS if name != "never_starts"])
async def test_fault_every_workflow(fault: str, shared: Session) -> None:
    await run_fault(shared, fault, CALL_TIMEOUT, settle=RETRY_AFTER if fault == "rate_limit" else 0.0)


async def test_upstream_that_never_starts(tmp_path: Path) -> None:
    """Its own product: the fault needs a fresh start, which only a new upstream process makes."""
    async with faulty_product(tmp_path, startup_timeout=STARTUP_TIMEOUT) as session:
        await call(session.client, "enrich_ioc", ioc_value=PRIVATE_IP)  # secops started; gti and soar not yet
        await run_fault(session, "never_starts", STARTUP_TIMEOUT, settle=RESTART_COOLDOWN + 0.2)


# --------------------------------------------------------------------------------------------------
# status semantics (issue 6, item 3): four outcomes, never confused, in the data or in the summary

SUMMARY_PHRASES = {
    "not_found": "GTI: not found (unknown to threat intelligence; this is not a clean verdict).",
    "clean": "GTI: clean,",
    "skipped_policy": "GTI: skipped by policy",
    "failed": "GTI: FAILED, ",
}


async def test_not_found_clean_skipped_and_failed_are_never_confused(shared: Session) -> None:
    client = shared.client
    cases = {
        "not_found": "81da1ea06029cd50d08146bd26e61103fefa790ceb407e5983bae69f7e5ced82",
        "clean": "docs.example.org",
        "skipped_policy": "10.20.30.40",
    }
    enriched = {kind: (await call(client, "enrich_ioc", ioc_value=value))[0] for kind, value in cases.items()}
    pivots = {
        kind: (await call(client, "pivot_ioc", ioc_value=value))[0] for kind, value in cases.items() if kind != "clean"
    }
    shared.fault("inband_error")
    try:
        enriched["failed"] = (await call(client, "enrich_ioc", ioc_value="docs.example.org"))[0]
        pivots["failed"] = (await call(client, "pivot_ioc", ioc_value="docs.example.org"))[0]
        correlated = (await call(client, "correlate_ioc", ioc_value="docs.example.org"))[0]
    finally:
        shared.fault(None)

    statuses = {kind: result["gti_analysis"]["section"]["status"] for kind, result in enriched.items()}
    assert statuses == {"not_found": "not_found", "clean": "ok", "skipped_policy": "skipped_policy",
                        "failed": "unavailable"}  # fmt: skip
    verdicts = {kind: result["assessment"]["verdict"] for kind, result in enriched.items()}
    assert verdicts["clean"] == "clean"
    for kind in ("not_found", "skipped_policy", "failed"):
        assert verdicts[kind] != "clean" and enriched[kind]["assessment"]["risk_level"] != "low", kind
        assert enriched[kind]["gti_analysis"]["verdict"] is None
    assert enriched["clean"]["gti_analysis"]["verdict"] in ("clean", "undetected", "benign")
    for kind, result in enriched.items():
        summary = result["summary"]
        for other, phrase in SUMMARY_PHRASES.items():
            assert (phrase in summary) == (other == kind), (kind, other, summary)
    # only a failure is an error; not found and skipped are answers
    assert [e["section"] for e in enriched["failed"]["errors"]] == ["gti_analysis"]
    assert all(not enriched[k]["errors"] for k in ("not_found", "clean", "skipped_policy"))
    assert "not a clean verdict" in enriched["failed"]["summary"] or "not clean" in enriched["failed"]["summary"]

    pivot_status = {kind: result["direct_relationships"]["section"]["status"] for kind, result in pivots.items()}
    assert pivot_status["not_found"] == "not_found" and pivot_status["skipped_policy"] == "skipped_policy"
    assert pivot_status["failed"] == "unavailable"
    assert not pivots["not_found"]["errors"] and not pivots["skipped_policy"]["errors"] and pivots["failed"]["errors"]

    cases_section = correlated["case_correlations"]["section"]
    assert cases_section["status"] == "unavailable"
    assert correlated["risk_assessment"]["exposure_level"] == "unknown"


# --------------------------------------------------------------------------------------------------
# no task left behind, in the product's own process


def _session_tasks() -> int:
    import asyncio

    return sum(1 for task in asyncio.all_tasks() if task.get_name().endswith("UpstreamConnection._serve"))


async def test_no_task_left_behind(tmp_path: Path) -> None:
    """In the product's own process (the pool in-process): after failed calls of each kind, one live session
    per started upstream, no orphaned start, no stray task or process; nothing at all once the pool closes."""
    import asyncio

    from ioc_workflows_mcp.indicator import Indicator
    from ioc_workflows_mcp.settings import load_config
    from ioc_workflows_mcp.upstream.pool import UpstreamPool
    from ioc_workflows_mcp.workflows.enrich import enrich
    from ioc_workflows_mcp.workflows.sources import Sources

    tag, switch = uuid.uuid4().hex, tmp_path / "fault-switch"
    policy = {"call_timeout_seconds": 1, "startup_timeout_seconds": 4, "max_retries": 1, "restart_cooldown_seconds": 0}
    config = load_config(
        write_config(tmp_path, tag, {"gti": {"IOC_STANDIN_FAULT_SWITCH": str(switch)}}, {"gti": policy})
    )
    before = len(asyncio.all_tasks())
    async with UpstreamPool(config) as pool:
        sources = Sources.from_pool(pool, config, cached=False)
        indicator = Indicator.parse(DOMAIN)
        await enrich(indicator, sources)  # gti and secops started (enrich does not call soar), no fault
        running, sessions = len(asyncio.all_tasks()), _session_tasks()
        # one gti session, and one secops session per concurrent secops call of enrich (3), up to its processes
        assert sessions == 1 + min(3, DEFAULT_PROCESSES["secops"])
        for fault in ("hang", "crash_mid_call", "never_starts"):
            switch.write_text(fault)
            if fault == "never_starts":
                pool["gti"]._mark_dead()  # the next call starts it again, into the fault
            for _ in range(1 if fault == "never_starts" else 3):
                result = await enrich(indicator, sources)
                assert result.gti_analysis.section.status.failed, fault
            settle = time.monotonic() + 5  # a dead session's clean-up (closing its pipes) may still be running
            while _session_tasks() > sessions and time.monotonic() < settle:
                await anyio.sleep(0.1)
            assert _session_tasks() <= sessions, f"{fault}: an orphaned session"
            assert len(asyncio.all_tasks()) <= running + 2, sorted(t.get_name() for t in asyncio.all_tasks())
            assert_no_stray_standins(tag, parent=os.getpid())
            switch.unlink()
            assert (await enrich(indicator, sources)).gti_analysis.section.status.value == "ok", fault
    assert len(asyncio.all_tasks()) == before
    await assert_all_gone(tag)
