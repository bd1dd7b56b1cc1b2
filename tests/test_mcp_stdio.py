"""The product as an MCP host runs it: the installed console script over stdio, spoken to by mcp.Client.

Expected values are the ones the fixtures imply; each is traceable to a file under fixtures/ (see
fixtures/README.md), and a few are recomputed from the fixture files here to show it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import TextContent

from tests.conftest import REPO_ROOT, stdio_client

pytestmark = pytest.mark.anyio

MALICIOUS_DOMAIN = "secure-update.example.net"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[Client]:
    async with stdio_client(read_timeout_seconds=60) as session:
        yield session


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    text = "".join(block.text for block in result.content if isinstance(block, TextContent))
    assert text == result.structured_content["summary"], "the text block is the short summary"
    return result.structured_content


async def test_tools_list_has_schemas_and_annotations(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert {"analyze_ioc", "enrich_ioc"} <= set(tools)
    for name in ("analyze_ioc", "enrich_ioc"):
        tool = tools[name]
        assert tool.description and len(tool.description) > 200
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is True and tool.annotations.open_world_hint is True
        schema = tool.output_schema or {}
        if name == "enrich_ioc":
            assert schema.get("title") == "EnrichResult"
            assert {"gti_analysis", "siem_context", "ioc_matches", "data_mode", "indicator"} <= set(
                schema["properties"]
            )
        else:  # analyze_ioc: one master shape, the sections that ran filled and the others null
            assert schema.get("title") == "AnalysisResult" and schema.get("type") == "object"
            assert {"analysis_type", "enrichment", "pivot", "correlation", "combined_assessment", "summary"} <= set(
                schema["properties"]
            )
        assert "ioc_value" in tool.input_schema["required"]
    analyze_props = tools["analyze_ioc"].input_schema["properties"]
    assert set(analyze_props) >= {
        "ioc_value",
        "ioc_type",
        "analysis_type",
        "pivot_depth",
        "correlation_scope",
        "lookback_days",
    }


async def test_enrich_malicious_domain_exact_values(client: Client) -> None:
    data = await call(client, "enrich_ioc", ioc_value=MALICIOUS_DOMAIN)
    recorded = json.loads((REPO_ROOT / "fixtures/vt/domains/secure-update.example.net.json").read_text())
    attrs = recorded["data"]["attributes"]
    assert data["data_mode"] == "offline-fixtures"
    gti = data["gti_analysis"]
    assert gti["reputation_score"] == f"{attrs['gti_assessment']['threat_score']['value']}/100" == "87/100"
    votes = attrs["total_votes"]
    assert gti["community_score"] == f"{round(100 * votes['malicious'] / (votes['malicious'] + votes['harmless']))}/100"
    assert gti["community_score"] == "90/100"
    assert gti["threat_types"] == ["malicious web sites", "malware", "command and control", "control-server"]
    assert gti["first_submission"] is None
    assert "first-submission" in gti["section"]["null_fields"]["first_submission"]
    assert (gti["verdict"], gti["severity"], gti["detection_ratio"]) == ("malicious", "high", "14/94")
    assert gti["creation_date"] == "2025-04-17"
    assert gti["section"]["status"] == "ok"
    assert [p["tool"] for p in gti["section"]["provenance"]] == ["get_domain_report"]

    siem = data["siem_context"]
    assert (siem["first_seen"], siem["last_seen"]) == ("2025-04-22T09:14:03Z", "2025-05-30T08:15:00Z")
    assert siem["event_count"] == 83
    assert siem["affected_systems"] == ["srv-app-03", "wks-014", "wks-022"]
    assert siem["alert_rules"] == ["dns_query_to_malicious_domain", "outbound_c2_beacon"]
    assert siem["alert_count"] == 8

    iocs = data["ioc_matches"]
    assert iocs["match_count"] == 1 and iocs["match_types"] == ["domain"]
    assert iocs["recent_matches"][0]["value"] == MALICIOUS_DOMAIN
    assert iocs["sources"] == ["Mandiant Active Breach Intelligence", "Mandiant Fusion Intelligence"]

    verdict = data["assessment"]
    assert (verdict["verdict"], verdict["risk_level"], verdict["agreement"]) == (
        "malicious",
        "critical",
        "corroborated",
    )
    assert verdict["confidence"]["level"] == "high"
    assert data["errors"] == []
    assert "offline-fixtures" in data["summary"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # value, (type, normalized, gti status, gti verdict, reputation_score, siem status, match_count, verdict)
        (
            "hxxps[:]//login.example[.]net/reset",
            ("url", "https://login.example.net/reset", "ok", "malicious", "82/100", "ok", 1, "malicious"),
        ),
        ("login.example.net", ("domain", "login.example.net", "ok", "suspicious", "45/100", "ok", 1, "suspicious")),
        (
            "  3395856CE81F2B7382DEE72602F798B642F14140\n",
            ("sha1", "3395856ce81f2b7382dee72602f798b642f14140", "ok", "malicious", "60/100", "ok", 1, "malicious"),
        ),
        (
            "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
            (
                "sha256",
                "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
                "ok",
                "malicious",
                "60/100",
                "ok",
                1,
                "malicious",
            ),
        ),
        ("8.8.8.8", ("ipv4", "8.8.8.8", "ok", "clean", "0/100", "ok", 0, "clean")),
        ("docs.example.org", ("domain", "docs.example.org", "ok", "clean", "4/100", "ok", 0, "clean")),
        (
            "81da1ea06029cd50d08146bd26e61103fefa790ceb407e5983bae69f7e5ced82",
            (
                "sha256",
                "81da1ea06029cd50d08146bd26e61103fefa790ceb407e5983bae69f7e5ced82",
                "not_found",
                None,
                None,
                "not_found",
                0,
                "unknown",
            ),
        ),
        (
            "intranet-sync.example.org",
            ("domain", "intranet-sync.example.org", "not_found", None, None, "ok", 0, "unknown"),
        ),
        ("10.20.30.40", ("ipv4", "10.20.30.40", "skipped_policy", None, None, "ok", 0, "suspicious")),
        ("203.0.113.66", ("ipv4", "203.0.113.66", "skipped_policy", None, None, "ok", 1, "suspicious")),
    ],
)
async def test_enrich_fixture_indicators(client: Client, value: str, expected: tuple[Any, ...]) -> None:
    data = await call(client, "enrich_ioc", ioc_value=value)
    gti, siem, iocs = data["gti_analysis"], data["siem_context"], data["ioc_matches"]
    got = (
        data["indicator"]["type"],
        data["indicator"]["value"],
        gti["section"]["status"],
        gti["verdict"],
        gti["reputation_score"],
        siem["section"]["status"],
        iocs["match_count"],
        data["assessment"]["verdict"],
    )
    assert got == expected
    for key in ("reputation_score", "threat_types", "first_submission", "community_score"):
        assert key in gti
    for key in ("first_seen", "last_seen", "event_count", "affected_systems"):
        assert key in siem
    for key in ("match_count", "recent_matches", "match_types"):
        assert key in iocs
    if gti["section"]["status"] != "ok":
        assert gti["verdict"] is None and data["assessment"]["verdict"] != "clean"
    for section in (gti, siem, iocs):  # every null is explained, and only nulls are
        assert set(section["section"]["null_fields"]) == {key for key, value in section.items() if value is None}


async def test_private_address_never_reaches_threat_intel(client: Client) -> None:
    data = await call(client, "enrich_ioc", ioc_value="10.20.30.40")
    gti = data["gti_analysis"]
    assert gti["section"]["status"] == "skipped_policy"
    assert "RFC 1918" in gti["section"]["reason"]
    assert gti["section"]["provenance"] == []
    assert data["siem_context"]["section"]["provenance"], "the SIEM is still asked"
    assert "private (RFC 1918)" in data["indicator"]["flags"]


async def test_not_found_is_not_clean(client: Client) -> None:
    data = await call(
        client, "enrich_ioc", ioc_value="81da1ea06029cd50d08146bd26e61103fefa790ceb407e5983bae69f7e5ced82"
    )
    assert data["gti_analysis"]["section"]["status"] == "not_found"
    assert "NotFoundError" in data["gti_analysis"]["section"]["reason"]
    assert data["assessment"]["risk_level"] == "unknown"
    assert "not found" in data["summary"] and "not a clean verdict" in data["summary"]


async def test_analyze_ioc_enrich_matches_enrich_ioc(client: Client) -> None:
    b = await call(client, "enrich_ioc", ioc_value="login.example.net")
    master = await call(client, "analyze_ioc", ioc_value="login.example.net", analysis_type="enrich")
    assert (master["analysis_type"], master["pivot"], master["correlation"]) == ("enrich", None, None)
    a = master["enrichment"]
    for key in ("gti_analysis", "siem_context", "ioc_matches"):
        for section in (a[key], b[key]):
            for call_ in section["section"]["provenance"]:
                call_["duration_ms"] = None
                call_["cached"] = call_["cache_age_seconds"] = None  # the second call is served by the cache
        assert a[key] == b[key]
    assert a["assessment"] == b["assessment"]


@pytest.mark.parametrize(
    ("analysis_type", "filled"),
    [("correlate", {"correlation"}), ("full", {"enrichment", "pivot", "correlation", "chain", "combined_assessment"})],
)
async def test_analyze_ioc_correlate_and_full(client: Client, analysis_type: str, filled: set[str]) -> None:
    data = await call(client, "analyze_ioc", ioc_value=MALICIOUS_DOMAIN, analysis_type=analysis_type)
    assert data["analysis_type"] == analysis_type
    sections = {"enrichment", "pivot", "correlation", "chain", "combined_assessment"}
    assert {key for key in sections if data[key] is not None} == filled
    if analysis_type == "full":
        assert data["combined_assessment"]["priority"] == "P1"
        assert data["chain"]["pivot"] == "ran"


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"ioc_value": ""}, "empty"),
        ({"ioc_value": None}, "empty or invalid IOC value"),
        ({"ioc_value": "payload.xrat"}, "unknown TLD"),
        ({"ioc_value": "invoice.zip"}, "ambiguous"),
        ({"ioc_value": "example.com", "ioc_type": "IP Address"}, "example.com"),
        ({"ioc_value": "8.8.8.8", "ioc_type": "colour"}, "colour"),
        ({"ioc_value": "8.8.8.8", "lookback_days": 0}, "lookback_days"),
        ({"ioc_value": "8.8.8.8", "lookback_days": "many"}, "lookback_days"),
        ({"ioc_value": 42}, "ioc_value"),
        ({}, "ioc_value"),
        (
            {"ioc_value": "8.8.8.8", "lookback": 7},
            "lookback\n  unknown argument; enrich_ioc takes: ioc_value, ioc_type, lookback_days",
        ),
        ({"ioc_value": "8.8.8.8", "lookback_days": "many"}, "Input should be a whole number, not text"),
        ({"ioc_value": "8.8.8.8", "lookback_days": 7.5}, "fractional part (SIEM look-back window in days (1-365)"),
        ({"ioc_value": "8.8.8.8", "lookback_days": 400}, "less than or equal to 365; got 400"),
        (
            {"ioc_value": "8.8.8.8", "lookback_days": True},
            "lookback_days\n  Input should be a whole number, not true/false; got true",
        ),
        (
            {"ioc_value": "8.8.8.8", "lookback_days": "7"},
            'lookback_days\n  Input should be a whole number, not text; got "7"',
        ),
        ({}, "ioc_value\n  required, and missing"),
    ],
)
async def test_bad_arguments_are_clear_tool_errors(client: Client, arguments: dict[str, Any], fragment: str) -> None:
    result = await client.call_tool("enrich_ioc", arguments)
    assert result.is_error
    text = " ".join(block.text for block in result.content if isinstance(block, TextContent))
    assert fragment in text, text
    assert "errors.pydantic.dev" not in text and "Arguments\n" not in text, text


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"analysis_type": "enrich", "pivot_depth": 3}, "analysis_type='enrich' does not read pivot_depth=3"),
        ({"analysis_type": "enrich", "correlation_scope": "extended"}, "does not read correlation_scope='extended'"),
        ({"analysis_type": "pivot", "lookback_days": 7}, "analysis_type='pivot' does not read lookback_days=7"),
        ({"analysis_type": "correlate", "pivot_depth": 2}, "analysis_type='correlate' does not read pivot_depth=2"),
    ],
)
async def test_analyze_ioc_refuses_an_argument_its_analysis_type_does_not_read(
    client: Client, arguments: dict[str, Any], fragment: str
) -> None:
    result = await client.call_tool("analyze_ioc", {"ioc_value": "8.8.8.8", **arguments})
    text = " ".join(block.text for block in result.content if isinstance(block, TextContent))
    assert result.is_error and fragment in text, text
    same = await client.call_tool("analyze_ioc", {"ioc_value": "8.8.8.8", "analysis_type": "enrich", "pivot_depth": 1})
    assert not same.is_error, "a value equal to the default is no mistake"


async def test_json_integers_and_nulls_that_clients_send_are_accepted(client: Client) -> None:
    """2.0 is a JSON integer (some clients send whole numbers as floats), and null for an optional argument
    means "not given": both work, and mean what they say."""
    as_float = await call(client, "enrich_ioc", ioc_value="8.8.8.8", lookback_days=7.0)
    assert as_float["lookback_days"] == 7
    as_null = await call(client, "enrich_ioc", ioc_value="8.8.8.8", lookback_days=None)
    assert as_null["lookback_days"] == 30
    pivot = await call(client, "pivot_ioc", ioc_value=MALICIOUS_DOMAIN, pivot_depth=1.0, budget={"max_calls": 7.0})
    assert pivot["pivot_depth"] == 1 and pivot["budget"]["limits"]["max_calls"] == 7


async def test_nested_arguments_are_typed_as_strictly(client: Client) -> None:
    result = await client.call_tool("pivot_ioc", {"ioc_value": MALICIOUS_DOMAIN, "budget": {"max_calls": True}})
    text = " ".join(block.text for block in result.content if isinstance(block, TextContent))
    assert result.is_error and "budget.max_calls\n  Input should be a whole number, not true/false" in text, text
    result = await client.call_tool("pivot_ioc", {"ioc_value": MALICIOUS_DOMAIN, "budget": {"max_call": 5}})
    text = " ".join(block.text for block in result.content if isinstance(block, TextContent))
    assert (
        "unknown field; it takes: max_calls, max_entities_per_level, max_entities, max_items_per_relationship" in text
    )


async def test_concurrent_calls_share_one_session(client: Client) -> None:
    values = ["8.8.8.8", "login.example.net", MALICIOUS_DOMAIN, "docs.example.org"]
    results: dict[str, dict[str, Any]] = {}

    async def one(value: str) -> None:
        results[value] = await call(client, "enrich_ioc", ioc_value=value)

    async with anyio.create_task_group() as tg:
        for value in values:
            tg.start_soon(one, value)
    assert {results[v]["indicator"]["value"] for v in values} == set(values)
    assert all(results[v]["errors"] == [] for v in values)
