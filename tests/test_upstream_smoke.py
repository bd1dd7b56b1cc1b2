"""Smoke tests: the REAL upstream MCP servers (gti-mcp, google-secops-mcp, secops-soar-mcp, from the
``.upstreams`` venv) started over stdio by an mcp 2.x client, each against its loopback fake backend
serving the product's recordings.

They check what the product relies on: the tools it calls exist, one call each returns the documented
shape, and the request reached the fake with the right credential. Start-up time of each server is
printed and recorded as a junit property.

The first test covers the fakes' HTTP layer alone (no upstream venv needed), with a stub emulation.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from ioc_workflows_mcp.offline.backend import google_error
from tests.upstream_support.fakes import (
    CHRONICLE_TOKEN,
    REDACTED,
    SOAR_APP_KEY,
    VT_API_KEY,
    FakeBackends,
    StubResponse,
)
from tests.upstream_support.harness import stdio_parameters

DOMAIN = "secure-update.example.net"  # the malicious fixture domain
UNKNOWN_DOMAIN = "never-recorded.example.invalid"

GTI_TOOLS = {
    "get_domain_report",
    "get_ip_address_report",
    "get_file_report",
    "get_url_report",
    "get_entities_related_to_a_domain",
    "get_entities_related_to_an_ip_address",
    "get_entities_related_to_a_file",
    "get_entities_related_to_an_url",
    "get_file_behavior_summary",
}
SECOPS_TOOLS = {"lookup_entity", "get_ioc_matches", "get_security_alerts", "search_udm"}
SOAR_TOOLS = {
    "list_cases",
    "get_case_full_details",
    "list_alert_group_identifiers_by_case",
    "get_entities_by_alert_group_identifiers",
    "search_entity",
}
CHRONICLE_INSTANCE = "/v1alpha/projects/test-proj/locations/us/instances/cust-123"
STARTUP_BUDGET_SECONDS = 20.0  # generous: ~2 s each on a 2-core machine; a hang is what this catches


# --------------------------------------------------------------------------------------------------
# The fakes' HTTP layer (no upstream needed)


class _EchoAPI:
    """Stub emulation: answers with what it was given."""

    def __init__(self, name: str) -> None:
        self.name = name

    def get(self, path: str, params: Any) -> StubResponse:
        return StubResponse(200, {"api": self.name, "method": "GET", "path": path, "params": dict(params)})

    def post(self, path: str, params: Any, body: Any) -> StubResponse:
        return StubResponse(200, {"api": self.name, "method": "POST", "path": path, "body": body})

    def request(self, method: str, path: str, params: Any, body: Any = None) -> StubResponse:
        return StubResponse(200, {"api": self.name, "method": method, "path": path, "params": dict(params)})


@dataclass
class _StubBackends:
    vt: _EchoAPI
    chronicle: _EchoAPI
    soar: _EchoAPI


def _stub() -> _StubBackends:
    return _StubBackends(_EchoAPI("vt"), _EchoAPI("chronicle"), _EchoAPI("soar"))


def _http(method: str, url: str, headers: dict[str, str], body: Any = None) -> tuple[int, str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], json.loads(exc.read())


def test_fake_http_layer_routes_checks_credentials_and_records() -> None:
    with FakeBackends(factory=_stub) as fakes:
        vt, chron, soar = fakes.vt.url, fakes.chronicle.url, fakes.soar.url
        good_vt = {"X-Apikey": VT_API_KEY, "Accept-Encoding": "gzip"}

        status, ctype, body = _http("GET", f"{vt}/api/v3/domains/{DOMAIN}?relationships=a%2Cb", good_vt)
        assert (status, ctype) == (200, "application/json")
        assert body == {
            "api": "vt",
            "method": "GET",
            "path": f"/domains/{DOMAIN}",
            "params": {"relationships": "a,b"},
        }
        # base64 URL ids keep "+" and "/" (vt-py puts them in the path as they are)
        assert _http("GET", f"{vt}/api/v3/urls/aHR0c+Dov/L2E", good_vt)[2]["path"] == "/urls/aHR0c+Dov/L2E"

        status, _, body = _http("GET", f"{vt}/api/v3/domains/x", {"X-Apikey": "wrong"})
        assert (status, body["error"]["code"]) == (401, "WrongCredentialsError")
        status, _, body = _http("GET", f"{vt}/api/v3/domains/x", {})
        assert (status, body["error"]["code"]) == (401, "AuthenticationRequiredError")

        bearer = {"Authorization": f"Bearer {CHRONICLE_TOKEN}"}
        status, _, body = _http("GET", f"{chron}{CHRONICLE_INSTANCE}:udmSearch?query=a%3D%22b%22", bearer)
        assert (status, body["path"], body["params"]) == (200, ":udmSearch", {"query": 'a="b"'})
        status, _, body = _http("POST", f"{chron}{CHRONICLE_INSTANCE}/legacy:legacyFetchAlertsView", bearer, {"k": 1})
        assert (status, body["path"], body["body"]) == (200, "/legacy:legacyFetchAlertsView", {"k": 1})
        status, _, body = _http("GET", f"{chron}{CHRONICLE_INSTANCE}:udmSearch", {"Authorization": "Bearer x"})
        assert (status, body["error"]["status"]) == (401, "UNAUTHENTICATED")
        other = "/v1alpha/projects/other/locations/us/instances/cust-123:udmSearch"
        status, _, body = _http("GET", f"{chron}{other}", bearer)
        assert (status, body["error"]["status"]) == (403, "PERMISSION_DENIED")

        status, _, body = _http("GET", f"{soar}/api/1p/external/v1/cases?%24expand=tags", {"AppKey": SOAR_APP_KEY})
        assert (status, body["path"], body["params"]) == (200, "/api/1p/external/v1/cases", {"$expand": "tags"})
        assert _http("GET", f"{soar}/api/1p/external/v1/cases", {"AppKey": "nope"})[0] == 401

        # the log: every request, secrets redacted, credential outcome and status kept
        log = fakes.requests
        assert len(log) == 10
        first = log[0]
        assert (first.backend, first.method, first.authorized, first.status) == ("vt", "GET", True, 200)
        assert first.headers["x-apikey"] == REDACTED
        assert first.headers["accept-encoding"] == "gzip"
        assert all(VT_API_KEY not in json.dumps(r.headers) for r in log)
        assert [r.authorized for r in fakes.chronicle.requests] == [True, True, False, True]
        assert fakes.chronicle.requests[0].headers["authorization"] == REDACTED
        assert fakes.soar.requests[0].params == {"$expand": "tags"}

        # intercepts answer first; reset() drops them with the log
        fakes.soar.intercept(lambda r: StubResponse(503, {"down": True}) if "cases" in r.path else None)
        assert _http("GET", f"{soar}/api/1p/external/v1/cases", {"AppKey": SOAR_APP_KEY})[:3:2] == (
            503,
            {"down": True},
        )
        fakes.reset()
        assert fakes.requests == []
        assert _http("GET", f"{soar}/api/1p/external/v1/cases", {"AppKey": SOAR_APP_KEY})[0] == 200


# --------------------------------------------------------------------------------------------------
# The real upstream servers


@dataclass
class _Run:
    startup_seconds: float  # spawn + imports + initialize handshake
    stderr: str  # everything the server wrote to stderr
    transport_errors: list[Exception]  # e.g. a non-JSON line on the server's stdout


def _run_with_client(config_path: Path, name: str, body: Callable[[Any], Awaitable[None]], workdir: Path) -> _Run:
    """Start upstream ``name`` of the config over stdio with an mcp 2.x ``Client`` (legacy handshake, as
    for any mcp 1.x server) and run ``body(client)``. The server's stderr goes to a file: the default
    (``sys.stderr``) has no file descriptor while pytest's capsys is active."""
    from mcp import Client, stdio_client

    params = stdio_parameters(json.loads(config_path.read_text()), name)
    errors: list[Exception] = []
    startup: list[float] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):
            errors.append(message)

    async def main(errlog: Any) -> None:
        started = time.perf_counter()
        transport = stdio_client(params, errlog=errlog)
        async with Client(transport, mode="legacy", read_timeout_seconds=60, message_handler=on_message) as client:
            startup.append(time.perf_counter() - started)
            await body(client)

    stderr_path = workdir / f"{name}.stderr.log"
    with stderr_path.open("w+") as errlog:
        try:
            anyio.run(main, errlog)
        except BaseException as exc:
            exc.add_note(f"--- {name} server stderr (tail) ---\n{stderr_path.read_text(errors='replace')[-4000:]}")
            raise
    return _Run(startup[0], stderr_path.read_text(errors="replace"), errors)


async def _tool_names(client: Any) -> set[str]:
    names: set[str] = set()
    cursor = None
    while True:
        page = await client.list_tools(cursor=cursor) if cursor else await client.list_tools()
        names.update(tool.name for tool in page.tools)
        cursor = page.next_cursor
        if not cursor:
            return names


def _texts(result: Any) -> list[str]:
    return [block.text for block in result.content if getattr(block, "type", None) == "text"]


def _report(name: str, run: _Run, request: pytest.FixtureRequest) -> None:
    seconds = run.startup_seconds
    request.node.user_properties.append((f"{name}_startup_seconds", round(seconds, 3)))
    assert run.transport_errors == [], run.stderr[-4000:]
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"[upstream] {name} started in {seconds:.2f} s")
    assert seconds < STARTUP_BUDGET_SECONDS


@pytest.mark.upstream
def test_gti_real_server(
    fake_backends: FakeBackends, real_upstreams_config: Path, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async def body(client: Any) -> None:
        assert await _tool_names(client) >= GTI_TOOLS

        result = await client.call_tool("get_domain_report", {"domain": DOMAIN})
        assert not result.is_error
        report = result.structured_content["result"]
        assert json.loads(_texts(result)[0]) == report  # one TextContent with the same dict
        assert (report["type"], report["id"]) == ("domain", DOMAIN)
        assert "links" not in report  # vt-py's to_dict drops links and meta
        attributes = report["attributes"]
        assert "last_analysis_results" not in attributes  # excluded in the request
        assert attributes["last_analysis_stats"]["malicious"] > 0
        assert attributes["gti_assessment"]["verdict"]["value"] == "VERDICT_MALICIOUS"

        missing = await client.call_tool("get_domain_report", {"domain": UNKNOWN_DOMAIN})
        assert not missing.is_error  # gti report tools put errors in-band
        assert missing.structured_content["result"]["error"].startswith("VirusTotal API Error: NotFoundError")

    run = _run_with_client(real_upstreams_config, "gti", body, tmp_path)
    _report("gti", run, request)

    [request] = fake_backends.find("vt", path_contains=f"/domains/{DOMAIN}")
    assert (request.method, request.path, request.authorized, request.status) == (
        "GET",
        f"/api/v3/domains/{DOMAIN}",
        True,
        200,
    )
    assert request.params == {"exclude_attributes": "last_analysis_results", "relationships": "associations"}
    assert request.headers["x-apikey"] == REDACTED
    assert "vtpy" in request.headers["user-agent"]
    assert fake_backends.find("vt", path_contains=UNKNOWN_DOMAIN)[0].status == 404


@pytest.mark.upstream
def test_secops_real_server(
    fake_backends: FakeBackends, real_upstreams_config: Path, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async def body(client: Any) -> None:
        assert await _tool_names(client) >= SECOPS_TOOLS

        result = await client.call_tool("lookup_entity", {"entity_value": DOMAIN, "hours_back": 720})
        assert not result.is_error  # secops tools never set isError ...
        text = result.structured_content["result"]
        assert _texts(result) == [text]
        assert not text.startswith("Error"), text  # ... they return "Error ..." text instead
        assert text.startswith(f"Entity Summary for {DOMAIN}:\n\nPrimary Entity:\nEntity Type: DOMAIN_NAME\n")

        udm = await client.call_tool(
            "search_udm", {"query": f'network.dns.questions.name = "{DOMAIN}"', "hours_back": 720}
        )
        events = udm.structured_content["result"]
        assert set(events) >= {"events", "total_events", "more_data_available"}
        assert events["total_events"] == len(events["events"]) > 0

        # When the prevalence call fails the SDK print()s a warning; the launcher sends it to stderr,
        # so the stdio stream stays clean and the summary still comes back.
        fake_backends.inject(
            "chronicle",
            lambda r: r.path == ":summarizeEntity" and r.params.get("returnPrevalence") == "True",
            google_error(403, "prevalence denied (injected)"),
        )
        again = await client.call_tool("lookup_entity", {"entity_value": DOMAIN, "hours_back": 720})
        assert again.structured_content["result"].startswith(f"Entity Summary for {DOMAIN}:")
        assert "Prevalence Information Available" not in again.structured_content["result"]

    run = _run_with_client(real_upstreams_config, "secops", body, tmp_path)
    _report("secops", run, request)
    assert "Warning: Failed to retrieve prevalence data" in run.stderr  # the print() went to stderr

    summaries = fake_backends.find("chronicle", path_contains=":summarizeEntitiesFromQuery")
    assert summaries, [r.path for r in fake_backends.requests]
    request = summaries[0]
    assert request.path == f"{CHRONICLE_INSTANCE}:summarizeEntitiesFromQuery"
    assert request.params["query"] == f'domain = "{DOMAIN}"'
    assert (request.authorized, request.status) == (True, 200)
    assert request.headers["authorization"] == REDACTED
    chronicle = fake_backends.chronicle.requests
    assert all(r.authorized for r in chronicle)
    assert [r.status for r in chronicle].count(403) == 1, [(r.path, r.status) for r in chronicle]
    assert any(r.path.endswith(":udmSearch") for r in chronicle)


@pytest.mark.upstream
def test_soar_real_server(
    fake_backends: FakeBackends, real_upstreams_config: Path, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async def body(client: Any) -> None:
        assert await _tool_names(client) >= SOAR_TOOLS

        result = await client.call_tool("list_cases", {})
        assert not result.is_error
        assert result.structured_content is None  # SOAR tools declare no return type
        [text] = _texts(result)  # a dict body: one TextContent; an HTTP error would give none
        cases = json.loads(text)
        assert cases["cases"], cases
        assert {"id", "displayName", "priority"} <= set(cases["cases"][0])

        found = await client.call_tool("search_entity", {"term": DOMAIN})
        [hits] = [json.loads(t) for t in _texts(found)]
        assert any(hit["identifier"].lower() == DOMAIN for hit in hits["objectsList"]), hits

    run = _run_with_client(real_upstreams_config, "soar", body, tmp_path)
    _report("soar", run, request)

    soar = fake_backends.soar.requests
    assert soar[0].path == "/api/external/v1/settings/GetScopes"  # the start-up probe
    assert all(r.authorized and r.status == 200 for r in soar), [(r.method, r.path, r.status) for r in soar]
    assert all(r.headers["appkey"] == REDACTED for r in soar)
    listed = fake_backends.find("soar", method="GET", path_contains="/api/1p/external/v1/cases")
    assert listed and listed[0].path == "/api/1p/external/v1/cases"
    [search] = fake_backends.find("soar", method="POST", path_contains="entity-search")
    assert search.body["Term"] == DOMAIN
