"""Upstream errors exactly as the REAL upstream servers give them, and what the product makes of them.

The real gti-mcp, google-secops-mcp and secops-soar-mcp (from the ``.upstreams`` venv) run against the
loopback fakes; a fault is injected into a fake's emulation with the backend's own error envelope
(research/upstreams.md §0, §2.4, §3.4, §4) on the same recordings, and the product (``UpstreamPool`` +
``Sources.from_pool`` + ``enrich``, in-process, or the CLI) must turn it into the right section status with
a plain reason, leave the other sections equal to the no-fault run, and work again once the fault is gone.

What the real servers do with a backend error, and the status each becomes:

* VirusTotal 404 NotFoundError -> gti-mcp answers in band (isError false) -> ``not_found``: a result,
  never a clean verdict;
* VirusTotal 401 WrongCredentialsError -> in band -> ``unavailable``; 429 QuotaExceededError -> in band ->
  ``rate_limited`` (gti-mcp passes no HTTP headers on, so there is never a retry-after to report);
* Chronicle 403 PERMISSION_DENIED -> secops tools answer ``Error ... status=403, response={...}`` text
  (isError false) -> ``unavailable`` for the section(s) whose endpoint failed, the reason reduced to the
  step, the endpoint and Chronicle's message. 4xx other than 429 are not retried by the secops SDK; 429/5xx
  are (urllib3 Retry, 5 times, backoff 0.3 s), which only the transient case below uses;
* SOAR 401 on a tool call -> zero content blocks with isError false -> ``unavailable``;
* SOAR 401 on GetScopes at start-up, or any server that exits during start-up -> the MCP connection closes
  before the handshake -> ``unavailable`` with the server's last stderr line, at once (not after
  ``startup_timeout_seconds``), and again at once during the pool's restart cooldown.

The enrich tests share one pool (started once per module) through an anyio blocking portal; tests that
need their own upstream set-up start their own pool.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ioc_workflows_mcp.indicator import Indicator
from ioc_workflows_mcp.models import Status
from ioc_workflows_mcp.offline.backend import Response, google_error, soar_error, vt_error
from ioc_workflows_mcp.settings import Config, load_config
from ioc_workflows_mcp.upstream import pool as pool_module
from ioc_workflows_mcp.upstream.base import CallTrace
from ioc_workflows_mcp.upstream.gti import QUOTA_HINT
from ioc_workflows_mcp.upstream.pool import UpstreamFailure, UpstreamPool
from ioc_workflows_mcp.upstream.siem import classify_error_text
from ioc_workflows_mcp.workflows.enrich import enrich
from ioc_workflows_mcp.workflows.sources import Sources
from tests.conftest import child_env, console_script
from tests.upstream_support.fakes import FakeBackends

pytestmark = pytest.mark.upstream

DOMAIN = "secure-update.example.net"  # malicious in GTI, seen in the SIEM, one IOC match
CLEAN_DOMAIN = "docs.example.org"  # undetected in GTI (0/93), seen in the SIEM, no IOC match, no alerts
SECTIONS = ("gti_analysis", "siem_context", "ioc_matches")
SOAR_CASES = "/api/1p/external/v1/cases"
SOAR_SCOPES = "/api/external/v1/settings/GetScopes"
IOC_ENDPOINT = "/legacy:legacySearchEnterpriseWideIoCs"
# A failed start must be reported long before the default startup timeout (60 s) would fire.
PROMPT_SECONDS = 15.0


def _stable(section: dict[str, Any]) -> dict[str, Any]:
    """A section without what differs between two identical runs (call durations)."""
    section = copy.deepcopy(section)
    for call in section["section"]["provenance"]:
        call.pop("duration_ms", None)
    return section


def _error_sections(result: dict[str, Any]) -> dict[str, str]:
    return {item["section"]: item["status"] for item in result["errors"]}


def _config(real_upstreams_config: Path, directory: Path, **replace: dict[str, Any]) -> Config:
    """The real-upstreams config with servers replaced and caching off: every call reaches the fakes, so
    a fault injected after a no-fault run of the same indicator is seen."""
    config = json.loads(real_upstreams_config.read_text())
    config["mcpServers"].update(replace)
    config["settings"] = {"cache": {"max_entries": 0, "ttl_seconds": 0, "not_found_ttl_seconds": 0}}
    path = directory / "upstreams.json"
    path.write_text(json.dumps(config))
    return load_config(path)


@dataclass
class SharedPool:
    """One pool over the three real servers, driven from synchronous tests through a portal."""

    portal: BlockingPortal
    pool: UpstreamPool
    sources: Sources
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)

    def enrich(self, value: str) -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        result = self.portal.call(enrich, Indicator.parse(value), self.sources, 30)
        return result.model_dump(mode="json"), time.perf_counter() - started

    def baseline(self, value: str, fakes: FakeBackends | None = None) -> dict[str, Any]:
        """The no-fault result, computed once with clean fakes (so call it before injecting); the
        requests it made are dropped from ``fakes``' log so a test sees only its own."""
        if value not in self.baselines:
            result, _ = self.enrich(value)
            assert all(result[name]["section"]["status"] == "ok" for name in SECTIONS), result["errors"]
            self.baselines[value] = result
            if fakes is not None:
                fakes.clear_requests()
        return self.baselines[value]


@pytest.fixture(scope="module")
def shared(
    real_upstreams_config: Path, fake_backends_session: FakeBackends, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedPool]:
    config = _config(real_upstreams_config, tmp_path_factory.mktemp("errors"))
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(UpstreamPool(config)) as pool:
        yield SharedPool(portal, pool, Sources.from_pool(pool, config))


def _assert_intact(result: dict[str, Any], baseline: dict[str, Any], failed: set[str]) -> None:
    for name in SECTIONS:
        if name not in failed:
            assert _stable(result[name]) == _stable(baseline[name]), name


def _assert_recovers(shared: SharedPool, fakes: FakeBackends, value: str) -> None:
    """Clear the fault: the very next call gives the no-fault result again."""
    fakes.reset()
    result, _ = shared.enrich(value)
    _assert_intact(result, shared.baseline(value), failed=set())
    assert result["assessment"] == shared.baseline(value)["assessment"]


# --------------------------------------------------------------------------------------------------
# VirusTotal, through gti-mcp


def test_vt_404_is_not_found_a_result_never_clean(shared: SharedPool, fake_backends: FakeBackends) -> None:
    baseline = shared.baseline(CLEAN_DOMAIN, fake_backends)
    assert baseline["gti_analysis"]["verdict"] is not None and baseline["assessment"]["verdict"] == "clean"

    fake_backends.inject(
        "vt", f"/domains/{CLEAN_DOMAIN}", vt_error(404, "NotFoundError", f'Domain "{CLEAN_DOMAIN}" not found')
    )
    result, _ = shared.enrich(CLEAN_DOMAIN)

    gti = result["gti_analysis"]
    assert gti["section"]["status"] == "not_found"
    assert gti["section"]["reason"] == "not known to Google Threat Intelligence (VirusTotal NotFoundError, HTTP 404)"
    assert gti["verdict"] is None and gti["reputation_score"] is None and gti["threat_types"] == []
    assert {"reputation_score", "first_submission", "community_score"} <= set(gti["section"]["null_fields"])
    assert set(gti["section"]["null_fields"]) == {key for key, value in gti.items() if value is None}
    # gti-mcp put the error in band: the call itself succeeded
    assert [call["outcome"] for call in gti["section"]["provenance"]] == ["ok"]
    # not found is a result, not a failure; and it is never read as clean
    assert "gti_analysis" not in _error_sections(result)
    assert result["assessment"]["verdict"] == "unknown"
    assert "GTI: not found (unknown to threat intelligence; this is not a clean verdict)." in result["summary"]
    _assert_intact(result, baseline, failed={"gti_analysis"})
    assert [r.status for r in fake_backends.find("vt", path_contains=CLEAN_DOMAIN)] == [404]

    _assert_recovers(shared, fake_backends, CLEAN_DOMAIN)


@pytest.mark.parametrize(
    ("response", "status", "reason"),
    [
        (
            vt_error(404, "NotFoundError", f'Domain "{DOMAIN}" not found'),
            "not_found",
            "not known to Google Threat Intelligence (VirusTotal NotFoundError, HTTP 404)",
        ),
        (
            vt_error(401, "WrongCredentialsError", "Wrong API key"),
            "unavailable",
            "credentials refused by VirusTotal: WrongCredentialsError",
        ),
        (
            vt_error(429, "QuotaExceededError", "Quota exceeded"),
            "rate_limited",
            "rate limited: QuotaExceededError (HTTP 429); " + QUOTA_HINT,
        ),
    ],
    ids=["404-NotFoundError", "401-WrongCredentialsError", "429-QuotaExceededError"],
)
def test_vt_errors_become_gti_statuses(
    shared: SharedPool, fake_backends: FakeBackends, response: Response, status: str, reason: str
) -> None:
    baseline = shared.baseline(DOMAIN, fake_backends)
    fake_backends.inject("vt", f"/domains/{DOMAIN}", response)
    result, _ = shared.enrich(DOMAIN)

    gti = result["gti_analysis"]["section"]
    assert (gti["status"], gti["reason"]) == (status, reason)
    # gti-mcp hands on the error text only, no HTTP headers: there is no retry-after to report
    assert gti["retry_after_seconds"] is None
    assert result["gti_analysis"]["verdict"] is None
    assert result["assessment"]["verdict"] != "clean"
    failed = status != "not_found"
    assert _error_sections(result) == ({"gti_analysis": status} if failed else {})
    if failed:
        assert f"GTI: FAILED, {status} ({reason}); verdict unknown, not clean." in result["summary"]
        assert "gti_analysis failed, its evidence is missing" in " ".join(result["assessment"]["confidence"]["reasons"])
    _assert_intact(result, baseline, failed={"gti_analysis"})
    assert [r.status for r in fake_backends.find("vt", path_contains=f"/domains/{DOMAIN}")] == [response.status]

    _assert_recovers(shared, fake_backends, DOMAIN)


# --------------------------------------------------------------------------------------------------
# Chronicle, through google-secops-mcp


DENIED = "Permission 'chronicle.instances.get' denied on resource (or it may not exist)."
REFUSED = "Chronicle refused access (HTTP 403 PERMISSION_DENIED): "


def _permission_denied() -> Response:
    return google_error(403, DENIED, "PERMISSION_DENIED")


def test_chronicle_403_fails_both_siem_sections_gti_intact(shared: SharedPool, fake_backends: FakeBackends) -> None:
    baseline = shared.baseline(DOMAIN, fake_backends)
    fake_backends.inject("chronicle", "", _permission_denied())
    result, elapsed = shared.enrich(DOMAIN)

    siem, iocs = result["siem_context"]["section"], result["ioc_matches"]["section"]
    assert (siem["status"], iocs["status"]) == ("unavailable", "unavailable")
    # the step that failed, the endpoint, and Chronicle's own message, out of the SDK's exception chain
    assert siem["reason"] == f"{REFUSED}Error looking up entity (summarizeEntitiesFromQuery): {DENIED}"
    assert iocs["reason"] == f"{REFUSED}Error retrieving IoC matches (legacySearchEnterpriseWideIoCs): {DENIED}"
    assert result["siem_context"]["first_seen"] is None and result["ioc_matches"]["match_count"] is None
    assert {"first_seen", "last_seen", "event_count", "affected_systems"} <= set(siem["null_fields"])
    nulls = {key for key, value in result["siem_context"].items() if value is None}
    assert set(siem["null_fields"]) == nulls
    assert _error_sections(result) == {"siem_context": "unavailable", "ioc_matches": "unavailable"}
    assert "SIEM: FAILED, unavailable (Chronicle refused access (HTTP 403 PERMISSION_DENIED)" in result["summary"]
    assert result["assessment"]["agreement"] == "ti_only"
    _assert_intact(result, baseline, failed={"siem_context", "ioc_matches"})
    # a 403 is not retried by the secops SDK: one request per call, no backoff
    paths = [r.path.rsplit("/", 1)[-1] for r in fake_backends.chronicle.requests]
    assert all(r.status == 403 for r in fake_backends.chronicle.requests)
    assert len(paths) == len(set(paths)) == 3, paths  # summarizeEntitiesFromQuery, udmSearch, IoCs
    assert elapsed < 5

    _assert_recovers(shared, fake_backends, DOMAIN)


@pytest.mark.parametrize(
    ("endpoint", "failed", "status", "reason"),
    [
        (
            IOC_ENDPOINT,
            "ioc_matches",
            "unavailable",
            f"{REFUSED}Error retrieving IoC matches (legacySearchEnterpriseWideIoCs): {DENIED}",
        ),
        (
            ":summarizeEntitiesFromQuery",
            "siem_context",
            "unavailable",
            f"{REFUSED}Error looking up entity (summarizeEntitiesFromQuery): {DENIED}",
        ),
        # the entity is still known, only the affected systems are missing: the section is degraded
        (
            ":udmSearch",
            "siem_context",
            "degraded",
            f"UDM event search failed: {REFUSED}Error searching UDM events (udmSearch): {DENIED}",
        ),
    ],
    ids=["legacySearchEnterpriseWideIoCs", "summarizeEntitiesFromQuery", "udmSearch"],
)
def test_chronicle_403_on_one_endpoint_fails_only_its_section(
    shared: SharedPool, fake_backends: FakeBackends, endpoint: str, failed: str, status: str, reason: str
) -> None:
    baseline = shared.baseline(DOMAIN, fake_backends)
    fake_backends.inject("chronicle", endpoint, _permission_denied())
    result, _ = shared.enrich(DOMAIN)

    section = result[failed]["section"]
    assert (section["status"], section["reason"]) == (status, reason)
    assert _error_sections(result) == {failed: status}
    _assert_intact(result, baseline, failed={failed})
    if endpoint == ":udmSearch":
        assert result["siem_context"]["affected_systems"] is None
        assert result["siem_context"]["first_seen"] == baseline["siem_context"]["first_seen"]
        assert "affected_systems" in section["null_fields"] and "first_seen" not in section["null_fields"]
    assert [r.status for r in fake_backends.chronicle.requests if r.path.endswith(endpoint)] == [403]

    _assert_recovers(shared, fake_backends, DOMAIN)


@pytest.mark.parametrize(
    ("text", "status", "reason"),
    [
        (  # get_security_alerts puts the response body (JSON, double quotes) after its own prefix
            'Error retrieving security alerts: Failed to get alerts: {"error": {"code": 401, "message": '
            '"Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}',
            Status.UNAVAILABLE,
            "Chronicle credentials refused (HTTP 401): Error retrieving security alerts: "
            "Request had invalid authentication credentials.",
        ),
        (
            "Error retrieving IoC matches: Failed to list IoCs: method=GET, url=http://h/v1alpha/p/instances/c/legacy"
            ":legacySearchEnterpriseWideIoCs?maxMatchesToReturn=1000, status=429, response={'error': {'message': "
            "'Quota exceeded', 'status': 'RESOURCE_EXHAUSTED'}}",
            Status.RATE_LIMITED,
            "Chronicle rate limited the call: Error retrieving IoC matches (legacySearchEnterpriseWideIoCs): "
            "Quota exceeded",
        ),
        (  # no Google message in it: kept as it is
            "Error looking up entity: connection refused",
            Status.UNAVAILABLE,
            "Chronicle error: Error looking up entity: connection refused",
        ),
    ],
    ids=["alerts-401-json", "iocs-429-repr", "no-google-message"],
)
def test_chronicle_error_text_reason_keeps_step_endpoint_and_message(text: str, status: Status, reason: str) -> None:
    """The same reduction on the other secops error shapes (pure; no upstream needed)."""
    assert classify_error_text(text) == (status, reason)


def test_chronicle_transient_429_is_absorbed_by_the_sdk_retry(shared: SharedPool, fake_backends: FakeBackends) -> None:
    """The secops SDK retries 429 with backoff; twice 429 then 200 costs about a second and no status."""
    baseline = shared.baseline(DOMAIN, fake_backends)
    fake_backends.inject(
        "chronicle", IOC_ENDPOINT, google_error(429, "Quota exceeded (injected)", "RESOURCE_EXHAUSTED"), times=2
    )
    result, elapsed = shared.enrich(DOMAIN)

    _assert_intact(result, baseline, failed=set())
    assert [r.status for r in fake_backends.chronicle.requests if r.path.endswith(IOC_ENDPOINT)] == [429, 429, 200]
    assert elapsed < 10


# --------------------------------------------------------------------------------------------------
# SOAR, through secops-soar-mcp (enrich does not call it: tested at the facade)


@pytest.mark.parametrize(
    "response",
    [
        google_error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED"),
        Response(200, "<html>login</html>", content_type="text/html"),
    ],
    ids=["401", "200-not-json"],
)
def test_soar_http_error_is_empty_content_and_becomes_unavailable(
    shared: SharedPool, fake_backends: FakeBackends, response: Response
) -> None:
    fake_backends.inject("soar", SOAR_CASES, response)

    # exactly what the real server gives: no content blocks, isError false
    raw = shared.portal.call(shared.pool.call, "soar", "list_cases", {})
    assert (raw.is_error, raw.texts, raw.structured) == (False, [], None)

    trace = CallTrace()
    with pytest.raises(UpstreamFailure) as caught:
        shared.portal.call(shared.sources.soar.list_cases, None, trace)
    failure = caught.value
    assert (failure.upstream, failure.status.value) == ("soar", "unavailable")
    assert failure.message.startswith("list_cases returned no content: the SOAR API call failed")
    assert [(call.tool, call.outcome) for call in trace.calls] == [("list_cases", "ok")]
    assert [r.status for r in fake_backends.find("soar", path_contains=SOAR_CASES)] == [response.status] * 2

    fake_backends.reset()
    page = shared.portal.call(shared.sources.soar.list_cases, None, CallTrace())
    assert page.cases


# --------------------------------------------------------------------------------------------------
# Servers that exit during start-up


async def _list_cases_failure(soar: Any) -> tuple[UpstreamFailure, float]:
    started = time.perf_counter()
    with pytest.raises(UpstreamFailure) as caught:
        await soar.list_cases(None, CallTrace())
    return caught.value, time.perf_counter() - started


def test_soar_getscopes_401_exits_before_handshake_then_recovers(
    real_upstreams_config: Path, fake_backends: FakeBackends, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """secops-soar-mcp exits 0 before the MCP handshake when GetScopes fails; the pool says so at once,
    fails fast during its restart cooldown, and starts the server again once the cooldown has passed."""
    cooldown = 1.0  # the product's 5 s, shortened to keep the tier fast
    monkeypatch.setattr(pool_module, "RESTART_COOLDOWN_SECONDS", cooldown)
    fake_backends.inject("soar", SOAR_SCOPES, soar_error(401, "Unauthorized: invalid AppKey"))
    config = _config(real_upstreams_config, tmp_path)

    async def main() -> None:
        async with UpstreamPool(config) as pool:
            soar = Sources.from_pool(pool, config).soar
            failure, elapsed = await _list_cases_failure(soar)
            assert failure.status.value == "unavailable"
            assert failure.message.startswith("could not start: Connection closed (last stderr line: ")
            assert "Failed to fetch valid scopes from SOAR" in failure.message
            assert elapsed < PROMPT_SECONDS < pool["soar"].startup_timeout

            again, elapsed = await _list_cases_failure(soar)  # within the cooldown: no new start
            assert again.message == failure.message and elapsed < 0.5
            assert pool["soar"].starts == 1

            fake_backends.reset()
            await anyio.sleep(cooldown)
            page = await soar.list_cases(None, CallTrace())
            assert page.cases and pool["soar"].starts == 2

    anyio.run(main)


def test_server_exiting_during_startup_fails_only_its_section(
    shared: SharedPool, real_upstreams_config: Path, fake_backends: FakeBackends, tmp_path: Path
) -> None:
    baseline = shared.baseline(DOMAIN, fake_backends)
    crash = "import sys; print('gti-mcp: VT_APIKEY is not set', file=sys.stderr); sys.exit(3)"
    config = _config(real_upstreams_config, tmp_path, gti={"command": sys.executable, "args": ["-c", crash]})

    async def main() -> tuple[dict[str, Any], float, dict[str, Any], float, int]:
        async with UpstreamPool(config) as pool:
            sources = Sources.from_pool(pool, config)
            started = time.perf_counter()
            first = (await enrich(Indicator.parse(DOMAIN), sources, 30)).model_dump(mode="json")
            first_seconds = time.perf_counter() - started
            started = time.perf_counter()
            second = (await enrich(Indicator.parse(DOMAIN), sources, 30)).model_dump(mode="json")
            return first, first_seconds, second, time.perf_counter() - started, pool["gti"].starts

    first, first_seconds, second, second_seconds, starts = anyio.run(main)

    reason = "could not start: Connection closed (last stderr line: gti-mcp: VT_APIKEY is not set)"
    for result in (first, second):
        gti = result["gti_analysis"]["section"]
        assert (gti["status"], gti["reason"]) == ("unavailable", reason)
        assert [(c["tool"], c["outcome"]) for c in gti["provenance"]] == [("get_domain_report", "unavailable")]
        assert _error_sections(result) == {"gti_analysis": "unavailable"}
        assert result["assessment"]["verdict"] != "clean"
        assert f"GTI: FAILED, unavailable ({reason}); verdict unknown, not clean." in result["summary"]
        _assert_intact(result, baseline, failed={"gti_analysis"})
    # the secops server starts in the same call, so the first one takes its start-up; the second is quick,
    # and the dead gti server is not started again within the cooldown
    assert first_seconds < PROMPT_SECONDS
    assert second_seconds < 2 and starts == 1


def test_doctor_shows_soar_unavailable_and_exits_1(real_upstreams_config: Path, fake_backends: FakeBackends) -> None:
    fake_backends.inject("soar", SOAR_SCOPES, soar_error(401, "Unauthorized: invalid AppKey"))
    started = time.perf_counter()
    done = subprocess.run(
        [console_script(), "--config", str(real_upstreams_config), "doctor"],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
    )
    elapsed = time.perf_counter() - started
    assert done.returncode == 1, done.stdout + done.stderr
    blocks = {block.split("]", 1)[0]: block for block in done.stdout.split("\n[")[1:]}
    assert set(blocks) == {"gti", "secops", "soar"}
    soar_lines = blocks["soar"].strip().splitlines()
    assert soar_lines[1].startswith("  UNAVAILABLE: could not start: Connection closed (last stderr line: ")
    assert "Failed to fetch valid scopes from SOAR" in soar_lines[1]
    for name in ("gti", "secops"):
        assert "UNAVAILABLE" not in blocks[name] and "MISSING" not in blocks[name]
        assert "  ok      " in blocks[name]
    assert done.stdout.rstrip().endswith("some upstream tools are missing or unusable")
    assert [r.status for r in fake_backends.find("soar")] == [401]  # only GetScopes, then the exit
    assert elapsed < 60
