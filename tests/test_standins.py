"""The offline stand-ins (``python -m ioc_workflows_mcp.offline gti|secops|soar``) answer like the real upstreams.

Most tests talk to a stand-in the way the product does: an mcp 2.x ``Client`` over stdio. They run on a
small fixture set written here (values from research/upstreams.md) so the exact upstream text formats can
be asserted byte for byte; one test per server also runs the bundled ``fixtures/``. Fault paths that need
an injected HTTP error use the same server in process (``Client(server)``), with the fault injected into
its emulated backend.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters, stdio_client
from mcp.types import CallToolResult

from ioc_workflows_mcp.offline import gti_server, secops_server, soar_server
from ioc_workflows_mcp.offline.backend import Backends, Response, google_error, vt_error

REPO_ROOT = Path(__file__).resolve().parents[1]

DOMAIN = "evil-updates.example"
IP = "203.0.113.66"
SHA256 = "8f14e45fceea167a5a36dedd4bea2543c5b4c1bd2b5e4c1bd2b5e4c1bd2b5e4c"
MD5 = "0cc175b9c0f1b6a831c399e269772661"
URL = "http://evil-updates.example/payload.bin"
URL_ID = "aHR0cDovL2V2aWwtdXBkYXRlcy5leGFtcGxlL3BheWxvYWQuYmlu"
COLLECTION = "malware--4a3f0d2e-0000-5000-8000-000000000001"
INSTANCE = "projects/test-proj/locations/us/instances/cust-123"
CHRONICLE_URL = f"https://us-chronicle.googleapis.com/v1alpha/{INSTANCE}"
CHRONICLE_ENV = {"CHRONICLE_PROJECT_ID": "test-proj", "CHRONICLE_CUSTOMER_ID": "cust-123", "CHRONICLE_REGION": "us"}


# --------------------------------------------------------------------------------------------------
# A fixture set in the backend's layout


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _domain_object() -> dict[str, Any]:
    return {
        "id": DOMAIN,
        "type": "domain",
        "links": {"self": f"https://www.virustotal.com/api/v3/domains/{DOMAIN}"},
        "attributes": {
            "creation_date": 1714521600,
            "registrar": "NameCheap, Inc.",
            "reputation": -42,
            "last_analysis_stats": {"malicious": 14, "suspicious": 2, "undetected": 28, "harmless": 50, "timeout": 0},
            "last_analysis_results": {"Engine": {"category": "malicious"}},
            "tags": ["dga", ""],
            "jarm": "",
            "popularity_ranks": {},
            "whois": "Domain Name: EVIL-UPDATES.EXAMPLE\nRegistrar: NameCheap, Inc.\n",
            "title": "Ünïcode ✓",
            "gti_assessment": {"verdict": {"value": "VERDICT_MALICIOUS"}, "threat_score": {"value": 87}},
        },
    }


def write_fixtures(root: Path, *, scopes: Any = ("All entities",)) -> Path:
    vt = root / "vt"
    _write(vt / "domains" / f"{DOMAIN}.json", {"data": _domain_object()})
    _write(
        vt / "ip_addresses" / f"{IP}.json",
        {"data": {"id": IP, "type": "ip_address", "attributes": {"as_owner": "Example Hosting LLC", "asn": 64500}}},
    )
    _write(
        vt / "files" / f"{SHA256}.json",
        {"data": {"id": SHA256, "type": "file", "attributes": {"sha256": SHA256, "md5": MD5, "size": 187392}}},
    )
    _write(
        vt / "urls" / "payload.json",
        {"data": {"id": "u" * 64, "type": "url", "attributes": {"url": URL, "last_http_response_code": 200}}},
    )
    _write(
        vt / "collections" / "malware.json",
        {
            "data": {
                "id": COLLECTION,
                "type": "collection",
                "attributes": {"name": "EXAMPLEMAL", "collection_type": "malware-family", "description": ""},
            }
        },
    )
    resolutions = [{"type": "resolution", "id": f"198.51.100.{i}{DOMAIN}"} for i in range(12)]
    _write(
        vt / "relationships" / "resolutions.json",
        {"owner": {"type": "domain", "id": DOMAIN}, "relationship": "resolutions", "data": resolutions},
    )
    _write(
        vt / "relationships" / "ip_files.json",
        {
            "owner": {"type": "ip_address", "id": IP},
            "relationship": "communicating_files",
            "data": [{"type": "file", "id": SHA256}],
        },
    )

    chronicle = root / "chronicle"
    base = f"{INSTANCE}/entities"
    _write(
        chronicle / "entities" / "ip.json",
        {
            "query_values": [IP],
            "summarizeEntitiesFromQuery": {
                "entitySummaries": [
                    {
                        "entity": [
                            {
                                "name": f"{base}/ip-abc",
                                "metadata": {"entityType": "IP_ADDRESS"},
                                "metric": {"firstSeen": "2024-05-02T10:00:00Z", "lastSeen": "2024-05-30T08:15:00Z"},
                                "entity": {"artifact": {"ip": IP}},
                            }
                        ]
                    },
                    {
                        "entity": [
                            {
                                "name": f"{base}/asset-def",
                                "metadata": {"entityType": "ASSET"},
                                "metric": {"firstSeen": "2024-05-02T10:00:05Z", "lastSeen": "2024-05-30T08:15:02Z"},
                                "entity": {"asset": {"ip": [IP], "hostname": "web-01"}},
                            }
                        ]
                    },
                ]
            },
            "alerts": {
                "alertCounts": [{"rule": "outbound_c2_beacon", "count": "3"}],
                "hasMoreAlerts": False,
                "timeline": {
                    "buckets": [{"alertCount": 1, "eventCount": 12}, {"alertCount": 2, "eventCount": 30}],
                    "bucketSize": "86400s",
                },
            },
            "prevalence": {"prevalenceResult": [{"prevalenceTime": "2024-05-30T00:00:00Z", "count": 2}]},
        },
    )
    _write(
        chronicle / "entities" / "domain.json",
        {
            "query_values": [DOMAIN],
            "summarizeEntitiesFromQuery": {
                "entitySummaries": [
                    {"entity": [{"name": f"{base}/domain-1", "metadata": {"entityType": "DOMAIN_NAME"}}]}
                ]
            },
        },
    )
    _write(
        chronicle / "ioc_matches.json",
        {
            "matches": [
                {
                    "artifactIndicator": {"domain": DOMAIN},
                    "sources": ["Mandiant Active Breach Intelligence", "ESET Threat Intelligence"],
                    "firstSeenTimestamp": "2024-05-29T10:00:00Z",
                    "associationIdentifier": [
                        {"name": "APT-EXAMPLE", "associationType": "THREAT_ACTOR", "regionCode": "US"},
                        {"name": "APT-EXAMPLE", "associationType": "THREAT_ACTOR", "regionCode": "DE"},
                    ],
                },
                {"artifactIndicator": {"destinationIpAddress": IP}, "sources": ["Mandiant Fusion Intelligence"]},
            ]
        },
    )
    _write(
        chronicle / "alerts.json",
        {
            "progress": 1,
            "complete": True,
            "alerts": {
                "alerts": [
                    {
                        "type": "RULE_DETECTION",
                        "id": "de_0b1c2d3e",
                        "createdTime": "2024-05-30T08:16:00.123Z",
                        "caseName": "case-77",
                        "detection": [{"ruleName": "outbound_c2_beacon", "ruleId": "ru_1234"}],
                        "feedbackSummary": {"status": "OPEN", "priority": "PRIORITY_HIGH", "severityDisplay": "High"},
                    },
                    {
                        "type": "RULE_DETECTION",
                        "id": "de_closed",
                        "createdTime": "2024-05-01T00:00:00Z",
                        "detection": [{"ruleName": "old_rule"}],
                        "feedbackSummary": {"status": "CLOSED", "severityDisplay": "Low"},
                    },
                ]
            },
        },
    )
    event = {
        "name": "ev-1",
        "udm": {
            "metadata": {"eventTimestamp": "2024-05-30T08:15:00Z", "eventType": "NETWORK_DNS"},
            "principal": {"hostname": "web-01", "ip": ["10.1.2.3"]},
            "network": {"dns": {"questions": [{"name": DOMAIN}]}},
        },
    }
    _write(chronicle / "udm_events.json", {"events": [event]})

    soar = root / "soar"
    _write(soar / "meta.json", {"recorded_at": "2024-05-30T10:00:00Z"})
    _write(soar / "scopes.json", list(scopes) if isinstance(scopes, tuple) else scopes)
    agi = "outbound_c2_beacon_5f2a"
    _write(
        soar / "cases.json",
        [
            {
                "case": {
                    "id": 77,
                    "displayName": "C2 beacon from web-01",
                    "description": "Beacon to a known C2.",
                    "priority": "PriorityHigh",
                    "status": "Opened",
                    "environment": "Default Environment",
                    "createTime": "2024-05-30T08:17:00Z",
                },
                "alerts": [{"id": 901, "caseId": 77, "alertGroupIdentifier": agi, "displayName": "outbound_c2_beacon"}],
                "comments": [{"id": 5, "comment": "Escalated", "createTime": "2024-05-30T08:40:00Z"}],
                "entities": {
                    agi: [
                        {
                            "identifier": DOMAIN.upper(),
                            "entityType": "DOMAIN",
                            "isSuspicious": True,
                            "environment": "Default Environment",
                        },
                        {"identifier": "WEB-01", "entityType": "HOSTNAME", "isInternal": True},
                    ]
                },
            }
        ],
    )
    return root


@pytest.fixture(scope="module")
def fixtures_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fixtures(tmp_path_factory.mktemp("standin-fixtures"))


# --------------------------------------------------------------------------------------------------
# Driving a stand-in


def standin_params(upstream: str, fixtures: Path | None, **env: str) -> StdioServerParameters:
    """The 2.x stdio client passes only HOME LOGNAME PATH SHELL TERM USER: give the rest explicitly."""
    child_env = {"PYTHONPATH": str(REPO_ROOT), **CHRONICLE_ENV, **env}
    if fixtures is not None:
        child_env["IOC_WORKFLOWS_FIXTURES"] = str(fixtures)
    return StdioServerParameters(
        command=sys.executable, args=["-m", "ioc_workflows_mcp.offline", upstream], env=child_env
    )


def run_stdio(
    params: StdioServerParameters, body: Callable[[Client], Awaitable[None]], tmp_path: Path
) -> tuple[str, list[Exception]]:
    """Run ``body(client)`` against the stand-in; return its stderr and any transport errors (a non-JSON
    line on stdout would show up there)."""
    errors: list[Exception] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):
            errors.append(message)

    async def main(errlog: Any) -> None:
        async with Client(
            stdio_client(params, errlog=errlog), mode="legacy", read_timeout_seconds=60, message_handler=on_message
        ) as client:
            await body(client)

    log = tmp_path / "stderr.log"
    with log.open("w+") as errlog:
        anyio.run(main, errlog)
    return log.read_text(), errors


def texts(result: CallToolResult) -> list[str]:
    return [block.text for block in result.content]  # type: ignore[union-attr]


def one_json(result: CallToolResult) -> Any:
    assert not result.is_error, texts(result)
    assert len(result.content) == 1, texts(result)
    return json.loads(texts(result)[0])


def in_process(build: Callable[[Backends], Any], backends: Backends, body: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Client(build(backends)) as client:
            await body(client)

    anyio.run(main)


# --------------------------------------------------------------------------------------------------
# gti


def test_gti_tools_match_gti_mcp(fixtures_dir: Path, tmp_path: Path) -> None:
    async def body(c: Client) -> None:
        init = c.server_info
        assert init is not None and init.name == "gti-offline-standin"
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert set(tools) == {
            "get_domain_report", "get_ip_address_report", "get_file_report", "get_url_report",
            "get_collection_report", "get_entities_related_to_a_domain", "get_entities_related_to_an_ip_address",
            "get_entities_related_to_a_file", "get_entities_related_to_an_url", "get_entities_related_to_a_collection",
            "search_iocs",
        }  # fmt: skip
        rel = tools["get_entities_related_to_a_domain"].input_schema
        assert rel["required"] == ["domain", "relationship_name", "descriptors_only"]
        assert rel["properties"]["limit"]["default"] == 10
        coll = tools["get_entities_related_to_a_collection"].input_schema
        assert coll["required"] == ["id", "relationship_name"]
        assert coll["properties"]["descriptors_only"]["default"] is True
        assert tools["get_domain_report"].output_schema == {
            "properties": {"result": {"additionalProperties": True, "title": "Result", "type": "object"}},
            "required": ["result"],
            "title": "get_domain_reportOutput",
            "type": "object",
        }

        # report: sanitised to_dict, key order type/attributes/id/relationships, links and excluded attrs gone
        r = await c.call_tool("get_domain_report", {"domain": DOMAIN})
        report = one_json(r)
        assert list(report) == ["type", "attributes", "id", "relationships"]
        assert "links" not in report and "last_analysis_results" not in report["attributes"]
        assert "jarm" not in report["attributes"] and report["attributes"]["tags"] == ["dga"]  # "" dropped
        assert report["attributes"]["popularity_ranks"] == {}  # empty dicts survive
        assert r.structured_content == {"result": report}
        # FastMCP 1.x text: pydantic_core.to_json(indent=2), so UTF-8 rather than \u escapes
        assert '"title": "Ünïcode ✓"' in texts(r)[0]
        assert texts(r)[0].startswith('{\n  "type": "domain",\n  "attributes": {\n    "creation_date": 1714521600,')

        r = await c.call_tool("get_domain_report", {"domain": "nope.example"})
        assert not r.is_error
        assert one_json(r) == {
            "error": 'VirusTotal API Error: NotFoundError - Domain "nope.example" not found',
            "details": "The requested domain 'nope.example' could not be found or there was an issue with the API "
            "request.",
        }
        assert r.structured_content == {"result": one_json(r)}

        assert one_json(await c.call_tool("get_ip_address_report", {"ip_address": IP}))["id"] == IP
        assert one_json(await c.call_tool("get_file_report", {"hash": MD5}))["id"] == SHA256
        url_report = one_json(await c.call_tool("get_url_report", {"url": URL}))
        assert url_report["attributes"]["url"] == URL
        r = await c.call_tool("get_url_report", {"url": "http://other.example/"})
        assert "The requested url 'aHR0cDovL290aGVyLmV4YW1wbGUv' could not be found" in one_json(r)["details"]
        coll_report = one_json(await c.call_tool("get_collection_report", {"id": COLLECTION}))
        assert coll_report["attributes"]["description"] == ""  # get_collection_report is not sanitised

        # relationships: one block per object, cursor paging past the 10-item page, client-side limit
        r = await c.call_tool(
            "get_entities_related_to_a_domain",
            {"domain": DOMAIN, "relationship_name": "resolutions", "descriptors_only": True, "limit": 11},
        )
        assert not r.is_error and len(r.content) == 11
        assert json.loads(texts(r)[0]) == {"type": "resolution", "attributes": {}, "id": f"198.51.100.0{DOMAIN}"}
        assert texts(r)[0] == f'{{\n  "type": "resolution",\n  "attributes": {{}},\n  "id": "198.51.100.0{DOMAIN}"\n}}'
        assert r.structured_content == {"result": [json.loads(t) for t in texts(r)]}

        r = await c.call_tool(
            "get_entities_related_to_an_ip_address",
            {"ip_address": IP, "relationship_name": "communicating_files", "descriptors_only": False},
        )
        assert [json.loads(t)["attributes"]["md5"] for t in texts(r)] == [MD5]

        r = await c.call_tool(
            "get_entities_related_to_a_domain",
            {"domain": DOMAIN, "relationship_name": "subdomains", "descriptors_only": True},
        )
        assert not r.is_error and r.content == [] and r.structured_content == {"result": []}

        r = await c.call_tool(
            "get_entities_related_to_a_domain",
            {"domain": DOMAIN, "relationship_name": "bogus", "descriptors_only": True},
        )
        assert r.is_error and r.structured_content is None
        assert texts(r)[0].startswith(
            "Error executing tool get_entities_related_to_a_domain: 1 validation error for "
            "get_entities_related_to_a_domainOutput\nresult\n  Input should be a valid list [type=list_type, "
            "input_value={'error': 'Relationship b"
        )

        r = await c.call_tool(
            "get_entities_related_to_an_ip_address",
            {"ip_address": "192.0.2.1", "relationship_name": "resolutions", "descriptors_only": True},
        )
        assert r.is_error
        assert texts(r) == [
            "Error executing tool get_entities_related_to_an_ip_address: "
            "unhandled errors in a TaskGroup (1 sub-exception)"
        ]

        r = await c.call_tool("get_domain_report", {})
        assert r.is_error and texts(r)[0].startswith(
            "Error executing tool get_domain_report: 1 validation error for get_domain_reportArguments\ndomain\n"
            "  Field required"
        )

    stderr, errors = run_stdio(standin_params("gti", fixtures_dir), body, tmp_path)
    assert "OFFLINE STAND-IN for gti-mcp" in stderr
    assert errors == []


def test_gti_faults_in_band_and_raised(fixtures_dir: Path) -> None:
    backends = Backends.load(fixtures_dir)

    async def body(c: Client) -> None:
        backends.vt.inject("/domains/", vt_error(401, "WrongCredentialsError", "Wrong API key"))
        r = await c.call_tool("get_domain_report", {"domain": DOMAIN})
        assert not r.is_error
        assert one_json(r)["error"] == "VirusTotal API Error: WrongCredentialsError - Wrong API key"

        backends.vt.inject("/files/", Response(503, "upstream busy", "text/plain"))
        r = await c.call_tool("get_file_report", {"hash": SHA256})
        assert one_json(r)["error"] == "VirusTotal API Error: ServerError - upstream busy"

        backends.vt.inject("/ip_addresses/", Response(200, {"no": "data"}))
        r = await c.call_tool("get_ip_address_report", {"ip_address": IP})
        assert one_json(r) == {"error": "An unexpected internal error occurred."}

        backends.vt.inject("/intelligence/search", vt_error(401, "WrongCredentialsError", "Wrong API key"))
        r = await c.call_tool("search_iocs", {"query": "entity:domain"})
        assert r.is_error and texts(r) == [
            "Error executing tool search_iocs: ('WrongCredentialsError', 'Wrong API key')"
        ]

        page = {"data": [{"type": "domain", "id": "a.example", "attributes": {"x": ""}}], "meta": {"cursor": "C"}}
        backends.vt.inject("/intelligence/search", Response(200, page))
        r = await c.call_tool("search_iocs", {"query": "entity:domain", "limit": 3})
        assert texts(r) == ['{\n  "type": "domain",\n  "attributes": {},\n  "id": "a.example"\n}'] * 3
        search_paths = [q for q in backends.vt.requests if q.path == "/intelligence/search"]
        assert search_paths[-3].params == {"query": "entity:domain", "order": "last_submission_date-"}
        assert search_paths[-1].params["cursor"] == "C"

    in_process(gti_server.build_server, backends, body)


# --------------------------------------------------------------------------------------------------
# secops


LOOKUP_IP = (
    "Entity Summary for 203.0.113.66:\n\nPrimary Entity:\nEntity Type: ASSET\nFirst Seen: 2024-05-02 10:00:05+00:00\n"
    "Last Seen: 2024-05-30 08:15:02+00:00\n\nRelated Entities (1):\n1. Type: IP_ADDRESS\n\nAssociated Alerts:\n"
    "- Rule: outbound_c2_beacon, Count: 3\n\nTimeline Summary:\nTotal Events: 42\nTotal Alerts: 3\n\n"
    "Prevalence Information Available\n\n"
)
IOC_MATCHES = (
    "Found 2 IoC matches:\n\nIoC 1:\nType: domain\nValue: evil-updates.example\n"
    "Sources: Mandiant Active Breach Intelligence, ESET Threat Intelligence\n\n"
    "IoC 2:\nType: destinationIpAddress\nValue: 203.0.113.66\nSources: Mandiant Fusion Intelligence\n\n"
)
ALERTS = (
    '"Found 1 security alerts:\\n\\nAlert 1:\\nRule: outbound_c2_beacon\\nCreated: 2024-05-30T08:16:00.123Z\\n'
    'Status: OPEN\\nSeverity: High\\nAssociated Case: case-77\\n\\n"'
)


def test_secops_tools_match_google_secops_mcp(fixtures_dir: Path, tmp_path: Path) -> None:
    async def body(c: Client) -> None:
        assert c.server_info is not None and c.server_info.name == "secops-offline-standin"
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert set(tools) == {
            "lookup_entity",
            "get_ioc_matches",
            "get_security_alerts",
            "search_udm",
            "search_security_events",
        }
        assert tools["search_udm"].input_schema["properties"]["project_id"] == {
            "default": None,
            "title": "Project Id",
            "type": "string",
        }
        assert tools["get_ioc_matches"].input_schema["properties"]["max_matches"]["default"] == 20

        async def text_of(name: str, args: dict[str, Any]) -> str:
            r = await c.call_tool(name, args)
            assert not r.is_error and len(r.content) == 1
            assert r.structured_content == {"result": texts(r)[0]}
            return texts(r)[0]

        assert await text_of("lookup_entity", {"entity_value": IP}) == LOOKUP_IP
        assert await text_of("lookup_entity", {"entity_value": DOMAIN}) == (
            "Entity Summary for evil-updates.example:\n\nPrimary Entity:\nEntity Type: DOMAIN_NAME\n"
            "First Seen: Unknown\nLast Seen: Unknown\n\n"
        )
        assert await text_of("lookup_entity", {"entity_value": "nothing.example"}) == (
            "No information found for entity: nothing.example"
        )
        bad = await text_of("lookup_entity", {"entity_value": 'a"b'})
        assert bad.startswith(
            "Error looking up entity: Error parsing entity summaries query response: Error querying entity "
            f"summaries: method=GET, url={CHRONICLE_URL}:summarizeEntitiesFromQuery, status=400, response={{'error': "
        )

        assert await text_of("get_ioc_matches", {}) == IOC_MATCHES
        assert await text_of("get_ioc_matches", {"max_matches": 1}) == IOC_MATCHES.split("IoC 2:")[0].replace(
            "Found 2", "Found 1"
        )
        assert await text_of("get_security_alerts", {}) == ALERTS
        assert await text_of("get_security_alerts", {"status_filter": 'feedback_summary.status = "NEW"'}) == (
            "No security alerts found for the specified time range."
        )

        query = f'network.dns.questions.name = "{DOMAIN}"'
        r = await c.call_tool("search_udm", {"query": query})
        found = one_json(r)
        assert list(found) == ["events", "total_events", "more_data_available"]
        assert found["total_events"] == 1 and found["more_data_available"] is False
        assert r.structured_content == {"result": found}
        r = await c.call_tool("search_udm", {"query": 'bad "quote'})
        failed = one_json(r)
        assert failed["events"] == [] and failed["error"].startswith(
            f"API request failed: method=GET, url={CHRONICLE_URL}:udmSearch, status=400, response={{'error': {{"
        )
        r = await c.call_tool("search_udm", {"query": query, "start_time": "yesterday"})
        assert one_json(r) == {
            "error": "Error parsing date format: Invalid isoformat string: 'yesterday'. Use ISO 8601 format "
            "(e.g., 2023-01-01T12:00:00Z)",
            "events": [],
        }

        r = await c.call_tool("search_security_events", {"text": f"dns lookups of {DOMAIN}"})
        nl = one_json(r)
        assert list(nl) == ["udm_query", "events"] and nl["events"]["total_events"] == 1
        r = await c.call_tool("search_security_events", {"text": "nothing to translate"})
        assert one_json(r)["udm_query"] is None and one_json(r)["events"]["total_events"] == 0

    stderr, errors = run_stdio(standin_params("secops", fixtures_dir), body, tmp_path)
    assert "OFFLINE STAND-IN for google-secops-mcp" in stderr
    assert errors == []


def test_secops_faults_are_in_band(fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in CHRONICLE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CHRONICLE_BASE_URL", raising=False)
    backends = Backends.load(fixtures_dir)

    async def body(c: Client) -> None:
        backends.chronicle.inject(":summarizeEntitiesFromQuery", google_error(403, "Permission denied"), times=1)
        r = await c.call_tool("lookup_entity", {"entity_value": IP})
        assert not r.is_error
        assert texts(r) == [
            "Error looking up entity: Error parsing entity summaries query response: Error querying entity "
            f"summaries: method=GET, url={CHRONICLE_URL}:summarizeEntitiesFromQuery, status=403, response="
            "{'error': {'code': 403, 'message': 'Permission denied', 'status': 'PERMISSION_DENIED'}}"
        ]
        backends.chronicle.inject("/legacy:legacySearchEnterpriseWideIoCs", google_error(403, "Permission denied"))
        r = await c.call_tool("get_ioc_matches", {})
        assert texts(r)[0].startswith(
            "Error retrieving IoC matches: Failed to process IoCs response: Failed to list IoCs: method=GET, "
            f"url={CHRONICLE_URL}/legacy:legacySearchEnterpriseWideIoCs, status=403"
        )
        backends.chronicle.inject("/legacy:legacyFetchAlertsView", google_error(403, "Permission denied"))
        r = await c.call_tool("get_security_alerts", {})
        assert texts(r) == [
            'Error retrieving security alerts: Failed to get alerts: {"error": {"code": 403, "message": '
            '"Permission denied", "status": "PERMISSION_DENIED"}}'
        ]
        # 429 and 5xx are retried by the SDK's session: a fault that fires twice is invisible
        backends.chronicle.inject(":udmSearch", google_error(429, "slow down"), times=2)
        r = await c.call_tool("search_udm", {"query": f'x = "{DOMAIN}"'})
        assert one_json(r)["total_events"] == 1

    in_process(secops_server.build_server, backends, body)


# --------------------------------------------------------------------------------------------------
# soar


def test_soar_tools_match_secops_soar_mcp(fixtures_dir: Path, tmp_path: Path) -> None:
    async def body(c: Client) -> None:
        assert c.server_info is not None and c.server_info.name == "soar-offline-standin"
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert {
            "list_cases", "get_case_full_details", "list_alerts_by_case", "list_alert_group_identifiers_by_case",
            "get_entities_by_alert_group_identifiers", "get_entity_details", "search_entity",
        } <= set(tools)  # fmt: skip
        assert all(t.output_schema is None for t in tools.values())
        assert tools["list_cases"].input_schema["properties"]["next_page_token"]["default"] is None

        r = await c.call_tool("list_cases", {})
        assert r.structured_content is None
        cases = one_json(r)
        assert [case["id"] for case in cases["cases"]] == [77]
        assert texts(r)[0].startswith('{\n  "cases": [\n    {\n      "id": 77,')

        details = one_json(await c.call_tool("get_case_full_details", {"case_id": "77"}))
        assert list(details) == ["case_details:", "case_alerts", "case_comments"]
        assert details["case_details:"]["description"] == "Beacon to a known C2."
        missing = one_json(await c.call_tool("get_case_full_details", {"case_id": "404"}))
        assert missing == {"case_details:": None, "case_alerts": None, "case_comments": None}

        alerts = one_json(await c.call_tool("list_alerts_by_case", {"case_id": "77"}))
        assert alerts["caseAlerts"][0]["id"] == 901
        r = await c.call_tool("list_alerts_by_case", {"case_id": "404"})
        assert not r.is_error and r.content == [] and r.structured_content is None  # HTTP error: zero blocks

        groups = one_json(await c.call_tool("list_alert_group_identifiers_by_case", {"case_id": "77"}))
        assert groups["caseAlerts"] == [{"alertGroupIdentifier": "outbound_c2_beacon_5f2a"}]

        r = await c.call_tool(
            "get_entities_by_alert_group_identifiers",
            {"case_id": "77", "alert_group_identifiers": ["outbound_c2_beacon_5f2a"]},
        )
        assert len(r.content) == 1  # a JSON list: one block per element
        assert json.loads(texts(r)[0])["entities"][0]["identifier"] == DOMAIN.upper()

        found = one_json(await c.call_tool("search_entity", {"term": "evil-updates"}))
        assert [o["identifier"] for o in found["objectsList"]] == [DOMAIN.upper()]
        entity = one_json(
            await c.call_tool(
                "get_entity_details",
                {"entity_identifier": DOMAIN, "entity_type": "DOMAIN", "entity_environment": "Default Environment"},
            )
        )
        assert entity["casesCount"] == 1
        r = await c.call_tool(
            "get_entity_details", {"entity_identifier": "x", "entity_type": "DOMAIN", "entity_environment": "nope"}
        )
        assert not r.is_error and r.content == []

    stderr, errors = run_stdio(standin_params("soar", fixtures_dir), body, tmp_path)
    assert "OFFLINE STAND-IN for secops-soar-mcp" in stderr
    assert errors == []


def test_soar_list_bodies_give_one_block_per_element(fixtures_dir: Path) -> None:
    backends = Backends.load(fixtures_dir)

    async def body(c: Client) -> None:
        backends.soar.inject("/api/1p/external/v1/cases", Response(200, ["x", {"b": 2}, None, [1, [2]]]), times=1)
        r = await c.call_tool("list_cases", {})
        assert texts(r) == ["x", '{\n  "b": 2\n}', "1", "2"]
        backends.soar.inject("/api/1p/external/v1/cases", google_error(500, "boom"), times=1)
        r = await c.call_tool("list_cases", {})
        assert not r.is_error and r.content == []
        backends.soar.inject("/api/1p/external/v1/cases", Response(200, {"a": 1}, "text/plain"), times=1)
        assert (await c.call_tool("list_cases", {})).content == []  # GET: not JSON -> None
        backends.soar.inject("/api/external/v1.0/entity-search/entities", Response(200, '{"a": 1}', "text/plain"))
        r = await c.call_tool("search_entity", {"term": "x"})
        assert texts(r) == ['{\n  "a": 1\n}']  # POST bodies are parsed whatever the content type

    in_process(soar_server.build_server, backends, body)


def test_soar_exits_zero_before_handshake_without_scopes(tmp_path: Path) -> None:
    fixtures = write_fixtures(tmp_path / "fixtures", scopes=None)  # GetScopes cannot answer a list
    env = {"PYTHONPATH": str(REPO_ROOT), "IOC_WORKFLOWS_FIXTURES": str(fixtures), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "ioc_workflows_mcp.offline", "soar"],
        input=b"",
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    assert proc.stdout == b""
    assert b"Failed to fetch valid scopes from SOAR" in proc.stderr


# --------------------------------------------------------------------------------------------------
# The bundled fixtures and the knobs


@pytest.mark.parametrize(
    ("upstream", "tool", "args", "check"),
    [
        ("gti", "get_domain_report", {"domain": "secure-update.example.net"}, "gti"),
        ("secops", "get_ioc_matches", {}, "ioc"),
        ("soar", "list_cases", {}, "soar"),
    ],
)
def test_bundled_fixtures_serve(upstream: str, tool: str, args: dict[str, Any], check: str, tmp_path: Path) -> None:
    if not (REPO_ROOT / "fixtures" / "vt").is_dir():
        pytest.skip("no bundled fixtures")

    async def body(c: Client) -> None:
        r = await c.call_tool(tool, args)
        assert not r.is_error and len(r.content) == 1
        text = texts(r)[0]
        if check == "gti":
            assert json.loads(text)["type"] == "domain"
        elif check == "ioc":
            assert text.startswith("Found ") and "\n\nIoC 1:\nType: " in text
        else:
            assert "cases" in json.loads(text)

    run_stdio(standin_params(upstream, None), body, tmp_path)


def test_latency_knob_slows_every_call(fixtures_dir: Path, tmp_path: Path) -> None:
    timings: list[float] = []

    async def body(c: Client) -> None:
        for _ in range(2):
            started = anyio.current_time()
            await c.call_tool("get_domain_report", {"domain": DOMAIN})
            timings.append(anyio.current_time() - started)

    run_stdio(standin_params("gti", fixtures_dir, IOC_STANDIN_LATENCY_MS="300"), body, tmp_path)
    assert min(timings) >= 0.3
