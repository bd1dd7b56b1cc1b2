"""The PRODUCT end to end against the REAL upstream servers (gti-mcp, google-secops-mcp, secops-soar-mcp
from the ``.upstreams`` venv, over the loopback fakes that serve ``fixtures/``).

* ``enrich_ioc`` on every fixture indicator gives the same result with the real servers
  (``IOC_WORKFLOWS_CONFIG=<real_upstreams_config>``) as with the default offline stand-ins (no config),
  except for what must differ: ``data_mode`` ("live" vs "offline-fixtures"), the summary's data-mode
  sentence (present offline only) and each provenance entry's ``duration_ms``. Everything else, every
  section status, reason, null_fields entry, provenance argument, outcome and cache flag, must match.
  Both products run as users run them: the ``ioc-workflows-mcp`` console script over stdio, driven by an
  mcp 2.x ``Client``; each is started once for the module.
* ``ioc-workflows-mcp --config <real_upstreams_config> doctor`` exits 0 and reports every tool the
  workflows call as present.
"""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import start_blocking_portal
from mcp import StdioServerParameters

from ioc_workflows_mcp.upstream.gti import GtiFacade
from ioc_workflows_mcp.upstream.siem import SiemFacade
from ioc_workflows_mcp.upstream.soar import SoarFacade
from tests.conftest import child_env, console_script
from tests.test_likeness import CALLED_TOOLS, INDICATORS, open_clients, say
from tests.upstream_support.fakes import FakeBackends

pytestmark = pytest.mark.upstream

CALL_TIMEOUT = 120.0
DATA_MODE_SENTENCE = re.compile(r" ?DATA MODE [a-z-]+: bundled offline stand-in data, not live intelligence\.")
OK_STATUSES = {"ok", "not_found", "skipped_policy"}


def _strip(value: Any, *, under_provenance: bool = False) -> Any:
    """The result without what must differ between the modes (see the module docstring)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "duration_ms" and under_provenance:
                continue  # wall time of one upstream call
            if key == "data_mode":
                continue  # "offline-fixtures" vs "live"
            if key == "summary" and isinstance(item, str):
                item = DATA_MODE_SENTENCE.sub("", item)  # the offline summary says it is offline
            out[key] = _strip(item, under_provenance=under_provenance or key == "provenance")
        return out
    if isinstance(value, list):
        return [_strip(item, under_provenance=under_provenance) for item in value]
    return value


def _comparable(result: dict[str, Any]) -> dict[str, Any]:
    texts = [DATA_MODE_SENTENCE.sub("", block["text"]) for block in result["content"]]
    return {"isError": result["isError"], "content": texts, "structuredContent": _strip(result["structuredContent"])}


async def _enrich(client: Any, value: str) -> dict[str, Any]:
    with anyio.fail_after(CALL_TIMEOUT):
        result = await client.call_tool("enrich_ioc", {"ioc_value": value}, read_timeout_seconds=CALL_TIMEOUT)
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
def enrich_results(
    doctor_process: subprocess.Popen[str],
    fake_backends_session: FakeBackends,
    real_upstreams_config: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """{indicator: (offline result, live result)}. Each product enriches the indicators one after the
    other in the same order (so its session cache is hit at the same points: the ``cached`` flags in
    provenance must match too); the two products run side by side."""
    logs = tmp_path_factory.mktemp("product")
    fake_backends_session.reset()  # fresh emulation, no injections left by other tests, empty request log
    # child_env() drops any IOC_WORKFLOWS_CONFIG of ours
    products = {
        "offline": StdioServerParameters(command=console_script(), args=[], env=child_env()),
        "live": StdioServerParameters(
            command=console_script(), args=[], env=child_env(IOC_WORKFLOWS_CONFIG=str(real_upstreams_config))
        ),
    }
    results: dict[str, dict[str, Any]] = {"offline": {}, "live": {}}
    started = time.perf_counter()
    with start_blocking_portal() as portal, open_clients(portal, products, logs) as clients:
        connected = time.perf_counter()

        async def run(mode: str) -> None:
            for value in INDICATORS:
                results[mode][value] = await _enrich(clients[mode], value)

        async def both() -> None:
            async with anyio.create_task_group() as tg:
                for mode in products:
                    tg.start_soon(run, mode)

        portal.call(both)
        say(
            request,
            f"[real upstreams] 2 products up in {connected - started:.1f} s; "
            f"{len(INDICATORS)} enrichments each in {time.perf_counter() - connected:.1f} s",
        )
    # the live product really went to the real servers, and they to the recordings
    requests = fake_backends_session.requests
    assert {r.backend for r in requests} >= {"vt", "chronicle"}, len(requests)
    assert all(r.authorized for r in requests)
    return {value: (results["offline"][value], results["live"][value]) for value in INDICATORS}


@pytest.mark.parametrize("value", INDICATORS)
def test_enrich_same_result_live_and_offline(
    enrich_results: dict[str, tuple[dict[str, Any], dict[str, Any]]], value: str
) -> None:
    offline, live = enrich_results[value]
    assert not offline["isError"] and not live["isError"], (offline["content"], live["content"])
    assert offline["structuredContent"]["data_mode"] == "offline-fixtures"
    assert live["structuredContent"]["data_mode"] == "live"
    assert DATA_MODE_SENTENCE.search(offline["structuredContent"]["summary"])
    assert not DATA_MODE_SENTENCE.search(live["structuredContent"]["summary"])
    assert [b["text"] for b in live["content"]] == [live["structuredContent"]["summary"]]

    expected, got = _comparable(offline), _comparable(live)
    if expected != got:
        diff = difflib.unified_diff(
            json.dumps(expected, indent=1, ensure_ascii=False).splitlines(),
            json.dumps(got, indent=1, ensure_ascii=False).splitlines(),
            "offline stand-ins",
            "real upstreams",
            lineterm="",
        )
        pytest.fail(f"enrich {value}: live differs from offline\n" + "\n".join(diff), pytrace=False)

    # the comparison means something only if the real servers answered
    structured = live["structuredContent"]
    for section in ("gti_analysis", "siem_context", "ioc_matches"):
        status = structured[section]["section"]["status"]
        assert status in OK_STATUSES, (section, structured[section]["section"])


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
