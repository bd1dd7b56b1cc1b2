"""The PRODUCT end to end against the REAL upstream servers (gti-mcp, google-secops-mcp, secops-soar-mcp
from the ``.upstreams`` venv, over the loopback fakes that serve ``fixtures/``).

* Every workflow gives the same result with the real servers (``IOC_WORKFLOWS_CONFIG=<real_upstreams_config>``)
  as with the default offline stand-ins (no config):

  - ``investigate_ioc`` (defaults: pivot depth 2 when the risk is high, scope recent, 2 related
    correlations) on secure-update.example.net (pivots) and docs.example.org (does not);
  - ``enrich_ioc`` on every fixture indicator;
  - ``correlate_ioc`` with ``correlation_scope="comprehensive"`` (365 days: every case) on every fixture
    indicator;
  - ``pivot_ioc`` at depth 1 and at depth 2 (default budget and relationships) on the fixture indicators
    that pivot (``PIVOTS``).

  Each product makes the calls of ``RUNS`` one after the other, in the same order; the two run side by side.

* What is left out of the comparison, each because it must differ or honestly varies from run to run:

  1. ``data_mode`` ("live" vs "offline-fixtures"), at any depth;
  2. the summary's data-mode sentence (present offline only), in ``summary`` fields at any depth and in
     the text content block;
  3. under ``provenance``, ``duration_ms`` (the wall time of one upstream call, or the sum over an
     aggregated group of calls) and ``cache_age_seconds`` (how long ago a session-cache hit was stored),
     and in enrich's summary the matching "(oldest N s)" of its cache note: wall times. Whether each is
     null is still compared (a null duration_ms means a session-cache hit; only a hit has an age);
  4. the ORDER of the entries of each ``provenance`` list, which is compared as a multiset: the product
     records calls "in the order they finished" (``upstream/base.py``, ``CallTrace``), and the calls a
     pivot level (or a section) makes at once finish in any order. Seen: two of a level's relationship
     calls swapped places, on either side, from one run to the next.

  Everything else, every section status, reason, null_fields entry, graph node and edge, budget count,
  case id, timestamp, provenance argument, outcome and cache flag, must match, as canonical JSON
  (``1`` vs ``1.0`` is a difference).

* What the two sides are given so that they CAN be identical (the same inputs, not normalization):

  - SOAR serves every recorded timestamp shifted by ``now - recorded_at``, ``now`` taken when the emulation
    loads. Both sides load it with the same pinned ``now`` (this run's start): the fakes behind the
    real SOAR server through ``Backends.load(now=...)``, the offline product's SOAR stand-in through
    ``IOC_STANDIN_NOW`` (the product passes it on to its stand-ins). So case and alert timestamps agree.
  - The case window of correlate (and investigate) starts 30/90/365 days before each product's own wall
    clock at the call, so the two window starts differ by at most the run time; no case can be inside one
    window and outside the other, because ``test_no_case_on_a_window_edge`` checks that every case was
    created further from each window edge than that (the nearest is about 22 hours away).
  - The session cache: same calls in the same order, so each product's cache is hit at the same points
    and the ``cached`` flags match. Investigate runs first, so it makes fresh upstream calls; the other
    workflows then get part of their answers from the cache (compared too). Every upstream answer is
    fetched fresh once per product, by whichever run asks first. The shortest cache lifetime (a
    not-found answer, 120 s by default) is longer than the run (``test_runs_within_cache_lifetime``),
    so nothing expires on one side only.
* ``ioc-workflows-mcp --config <real_upstreams_config> doctor`` exits 0 and reports every tool the
  workflows call as present.

Both products run as users run them: the ``ioc-workflows-mcp`` console script over stdio, driven by an
mcp 2.x ``Client``; each is started once for the module.
"""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import start_blocking_portal
from mcp import StdioServerParameters

from ioc_workflows_mcp.settings import CacheSettings
from ioc_workflows_mcp.upstream.gti import GtiFacade
from ioc_workflows_mcp.upstream.siem import SiemFacade
from ioc_workflows_mcp.upstream.soar import SoarFacade
from tests.conftest import child_env, console_script
from tests.test_likeness import CALLED_TOOLS, DROPPER, EICAR, FIXTURES, INDICATORS, NOT_FOUND_HASH, open_clients, say
from tests.upstream_support.fakes import FakeBackends, load_backends

pytestmark = pytest.mark.upstream

CALL_TIMEOUT = 120.0
DATA_MODE_SENTENCE = re.compile(r" ?DATA MODE [a-z-]+: bundled offline stand-in data, not live intelligence\.")
OK_STATUSES = {"ok", "not_found", "skipped_policy"}
CACHE_AGE = re.compile(r"(from this session's cache \(oldest )[0-9.e+-]+( s\))")
WALL_TIMES = ("duration_ms", "cache_age_seconds")  # provenance: the wall time of a call, the age of a cache hit
SCOPE_DAYS = (30, 90, 365)  # correlation_scope recent, extended, comprehensive

# The fixture indicators that pivot (fixtures/README.md): relationships recorded in VT, or a 404 (not found).
PIVOTS = [
    "secure-update.example.net",
    "login.example.net",
    "https://login.example.net/reset",
    DROPPER["sha256"],
    EICAR["sha256"],
    "8.8.8.8",
    "example.com",
    NOT_FOUND_HASH,
]
INVESTIGATE = ["secure-update.example.net", "docs.example.org"]


@dataclass(frozen=True)
class Run:
    """One tool call, made the same way on both products."""

    tool: str
    value: str
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def id(self) -> str:
        options = "".join(f",{k}={v}" for k, v in self.options.items())
        return f"{self.tool.removesuffix('_ioc')}({self.value}{options})"

    @property
    def arguments(self) -> dict[str, Any]:
        return {"ioc_value": self.value, **self.options}


# In this order on each product. Investigate first, so it makes fresh upstream calls; what it fetched is
# then answered from the session cache for the other workflows (flagged cached: compared too).
RUNS = [
    *(Run("investigate_ioc", value) for value in INVESTIGATE),
    *(Run("enrich_ioc", value) for value in INDICATORS),
    *(Run("correlate_ioc", value, {"correlation_scope": "comprehensive"}) for value in INDICATORS),
    *(Run("pivot_ioc", value, {"pivot_depth": 1}) for value in PIVOTS),
    *(Run("pivot_ioc", value, {"pivot_depth": 2}) for value in PIVOTS),
]
assert len({run.id for run in RUNS}) == len(RUNS), "duplicate run ids"


@dataclass
class Results:
    now: datetime  # SOAR's pinned "now" on both sides
    seconds: float  # from the pinned now to the last answer
    pairs: dict[str, tuple[dict[str, Any], dict[str, Any]]]  # run id -> (offline, live)


def _summary(text: str) -> str:
    text = DATA_MODE_SENTENCE.sub("", text)  # the offline summary says it is offline
    return CACHE_AGE.sub(r"\1<age>\2", text)  # wall time since an answer was cached


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _strip(value: Any, *, under_provenance: bool = False) -> Any:
    """The result without what must differ between the modes (see the module docstring)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "data_mode":
                continue  # "offline-fixtures" vs "live"
            if under_provenance and key in WALL_TIMES:
                out[key] = item if item is None else "<wall time>"  # null (or not) on both sides
                continue
            if key == "summary" and isinstance(item, str):
                item = _summary(item)
            if key == "provenance" and isinstance(item, list):
                # concurrent calls are recorded in the order they finished: compared as a multiset
                out[key] = sorted(_strip(item, under_provenance=True), key=_canonical)
                continue
            out[key] = _strip(item, under_provenance=under_provenance)
        return out
    if isinstance(value, list):
        return [_strip(item, under_provenance=under_provenance) for item in value]
    return value


def _comparable(result: dict[str, Any]) -> dict[str, Any]:
    texts = [_summary(block["text"]) for block in result["content"]]
    return {"isError": result["isError"], "content": texts, "structuredContent": _strip(result["structuredContent"])}


async def _call(client: Any, run: Run) -> dict[str, Any]:
    with anyio.fail_after(CALL_TIMEOUT):
        result = await client.call_tool(run.tool, run.arguments, read_timeout_seconds=CALL_TIMEOUT)
    return {
        "isError": bool(result.is_error),
        "content": [{"type": block.type, "text": getattr(block, "text", None)} for block in result.content],
        "structuredContent": result.structured_content,
    }


@pytest.fixture(scope="module")
def doctor_process(real_upstreams_config: Path) -> Iterator[subprocess.Popen[str]]:
    """``ioc-workflows-mcp --config <real> doctor``, started first so it runs while the products enrich."""
    proc = subprocess.Popen(
        [console_script(), "--config", str(real_upstreams_config), "doctor"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def results(
    doctor_process: subprocess.Popen[str],
    fake_backends_session: FakeBackends,
    real_upstreams_config: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Results]:
    """Every run of ``RUNS`` on both products: each product makes them one after the other in the same
    order; the two products run side by side."""
    logs = tmp_path_factory.mktemp("product")
    now = datetime.now(UTC).replace(microsecond=0)
    # fresh emulation with SOAR's "now" pinned, no injections left by other tests, empty request log
    fake_backends_session.reset(load_backends(now=now))
    # child_env() drops any IOC_WORKFLOWS_CONFIG of ours; the offline product passes IOC_STANDIN_NOW on
    # to its SOAR stand-in
    products = {
        "offline": StdioServerParameters(
            command=console_script(), args=[], env=child_env(IOC_STANDIN_NOW=now.isoformat())
        ),
        "live": StdioServerParameters(
            command=console_script(), args=[], env=child_env(IOC_WORKFLOWS_CONFIG=str(real_upstreams_config))
        ),
    }
    answers: dict[str, dict[str, Any]] = {"offline": {}, "live": {}}
    started = time.perf_counter()
    with start_blocking_portal() as portal, open_clients(portal, products, logs) as clients:
        connected = time.perf_counter()
        phases: dict[str, float] = {}

        async def run(mode: str) -> None:
            for item in RUNS:
                began = time.perf_counter()
                answers[mode][item.id] = await _call(clients[mode], item)
                if mode == "live":
                    phases[item.tool] = phases.get(item.tool, 0.0) + time.perf_counter() - began

        async def both() -> None:
            async with anyio.create_task_group() as tg:
                for mode in products:
                    tg.start_soon(run, mode)

        portal.call(both)
        seconds = (datetime.now(UTC) - now).total_seconds()
        say(
            request,
            f"[real upstreams] 2 products up in {connected - started:.1f} s; {len(RUNS)} runs each in "
            f"{time.perf_counter() - connected:.1f} s (live: "
            + ", ".join(f"{tool.removesuffix('_ioc')} {spent:.1f} s" for tool, spent in phases.items())
            + ")",
        )
    # the live product really went to the real servers, and they to the recordings
    requests = fake_backends_session.requests
    assert {r.backend for r in requests} == {"vt", "chronicle", "soar"}, len(requests)
    assert all(r.authorized for r in requests)
    pairs = {item.id: (answers["offline"][item.id], answers["live"][item.id]) for item in RUNS}
    yield Results(now=now, seconds=seconds, pairs=pairs)
    fake_backends_session.reset()  # unpinned again, as the other modules expect


def _sections(value: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every ``section`` object in a result, with where it sits."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "section" and isinstance(item, dict) and "status" in item:
                yield path or "/", item
            else:
                yield from _sections(item, f"{path}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _sections(item, f"{path}/{index}")


@pytest.mark.parametrize("run", RUNS, ids=lambda run: run.id)
def test_same_result_live_and_offline(results: Results, run: Run) -> None:
    offline, live = results.pairs[run.id]
    assert not offline["isError"] and not live["isError"], (offline["content"], live["content"])
    assert offline["structuredContent"]["data_mode"] == "offline-fixtures"
    assert live["structuredContent"]["data_mode"] == "live"
    assert DATA_MODE_SENTENCE.search(offline["structuredContent"]["summary"])
    assert not DATA_MODE_SENTENCE.search(live["structuredContent"]["summary"])
    assert [b["text"] for b in live["content"]] == [live["structuredContent"]["summary"]]

    expected, got = _comparable(offline), _comparable(live)
    if _canonical(expected) != _canonical(got):
        diff = difflib.unified_diff(
            json.dumps(expected, indent=1, ensure_ascii=False).splitlines(),
            json.dumps(got, indent=1, ensure_ascii=False).splitlines(),
            "offline stand-ins",
            "real upstreams",
            lineterm="",
        )
        pytest.fail(f"{run.id}: live differs from offline\n" + "\n".join(diff), pytrace=False)

    # the comparison means something only if the real servers answered
    failed = {
        path: section for path, section in _sections(live["structuredContent"]) if section["status"] not in OK_STATUSES
    }
    assert not failed, failed


def test_no_case_on_a_window_edge(results: Results) -> None:
    """Each product starts a case window 30/90/365 days before its own wall clock, some time between the
    pinned ``now`` and the end of the run; SOAR's timestamps are shifted to that ``now``. So a case created
    nearer a window edge than the run took could be inside one product's window and outside the other's.
    None is (the nearest is about 22 hours away)."""
    cases = json.loads((FIXTURES / "soar" / "cases.json").read_text())
    recorded_at = datetime.fromisoformat(json.loads((FIXTURES / "soar" / "meta.json").read_text())["recorded_at"])
    margin = timedelta(seconds=results.seconds + 60)
    for days in SCOPE_DAYS:
        edge = recorded_at - timedelta(days=days)  # the window start at the pinned now, in recorded time
        for record in cases:
            created = datetime.fromisoformat(record["case"]["createTime"])
            assert abs(created - edge) > margin, (days, record["case"]["id"], record["case"]["createTime"])


def test_runs_within_cache_lifetime(results: Results) -> None:
    """Nothing the session cache keeps expires during the run, on one side and not the other."""
    shortest = min(CacheSettings().ttl_seconds, CacheSettings().not_found_ttl_seconds)
    assert results.seconds < shortest, f"the run took {results.seconds:.0f} s: cached flags may differ"


def test_doctor_against_real_servers(doctor_process: subprocess.Popen[str]) -> None:
    out, err = doctor_process.communicate(timeout=180)
    assert doctor_process.returncode == 0, f"exit {doctor_process.returncode}\n{out}\n{err[-3000:]}"
    assert "(data mode live)" in out
    assert out.rstrip().endswith("all upstream tools present"), out
    assert "MISSING" not in out and "UNAVAILABLE" not in out, out
    sections = dict(re.findall(r"^\[(\w+)\] [^\n]*\n((?:  .*\n?)*)", out, flags=re.M))
    assert set(sections) == {"gti", "secops", "soar"}, out
    facades = {"gti": GtiFacade, "secops": SiemFacade, "soar": SoarFacade}
    for name, facade in facades.items():
        body = sections[name]
        listed = re.search(r"^  \d+ tools: (.*)$", body, flags=re.M)
        assert listed, body
        offered = set(listed.group(1).split(", "))
        # every tool the workflows call (enrich today; pivot and correlate as they land) is offered ...
        assert set(CALLED_TOOLS[name]) <= offered, set(CALLED_TOOLS[name]) - offered
        # ... and every tool the product's facade calls is checked and reported ok with its arguments
        for tool, sent in facade.tools.items():
            line = f"  ok      {tool}({', '.join(sorted(sent))})"
            assert line in body.splitlines(), f"{line!r} not in\n{body}"
