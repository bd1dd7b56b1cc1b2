"""The correlate workflow: SOAR case matching, SIEM alerts and events, risk formulas."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp.types import TextContent

from ioc_workflows_mcp import scoring
from ioc_workflows_mcp.indicator import Indicator
from ioc_workflows_mcp.settings import load_config
from ioc_workflows_mcp.upstream.pool import UpstreamPool
from ioc_workflows_mcp.upstream.soar import SoarEntity
from ioc_workflows_mcp.workflows.correlate import EntityMatcher, correlate, scope_days, text_mention
from ioc_workflows_mcp.workflows.sources import Sources
from tests.conftest import stdio_client

FIXTURE_INDICATORS = [
    "secure-update.example.net",
    "login.example.net",
    "https://login.example.net/reset",
    "10.20.30.40",
    "203.0.113.66",
    "8.8.8.8",
    "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
    "44d88612fea8a8f36de82e1278abb02f",
    "intranet-sync.example.org",
    "docs.example.org",
    "81da1ea06029cd50d08146bd26e61103fefa790ceb407e5983bae69f7e5ced82",
]


# --- pure parts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "how"),
    [
        ("Beacon to secure-update.example.net from WEB-01", "text_mention"),
        ("Beacon to SECURE-UPDATE.EXAMPLE.NET", "text_mention"),
        ("User reported secure-update[.]example[.]net", "text_mention_defanged"),
        ("hxxps[:]//secure-update(.)example(.)net/x", "text_mention_defanged"),
    ],
)
def test_text_mention_finds_plain_upper_and_defanged(text: str, how: str) -> None:
    found = text_mention(text, Indicator.parse("secure-update.example.net"))
    assert found is not None and found.how == how


@pytest.mark.parametrize(
    "text", ["update.example.net", "secure-update.example.network", "xsecure-update.example.net", "", "nothing"]
)
def test_text_mention_respects_boundaries(text: str) -> None:
    assert text_mention(text, Indicator.parse("secure-update.example.net")) is None


def test_entity_matcher_normalizes_case_and_url_host() -> None:
    url = EntityMatcher(Indicator.parse("https://login.example.net/reset"))
    assert url.match(SoarEntity("HTTPS://LOGIN.EXAMPLE.NET/RESET", "DestinationURL", "g")).how == "entity"
    assert url.match(SoarEntity("LOGIN.EXAMPLE.NET", "DOMAIN", "g")).how == "url_host_entity"
    assert url.match(SoarEntity("WKS-022", "HOSTNAME", "g")) is None
    ip = EntityMatcher(Indicator.parse("2001:db8::1"))
    assert ip.match(SoarEntity("2001:0DB8:0000::1", "ADDRESS", "g")) is not None
    sha = EntityMatcher(
        Indicator.parse("275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"),
        aliases=frozenset({"44d88612fea8a8f36de82e1278abb02f"}),
    )
    assert sha.match(SoarEntity("44D88612FEA8A8F36DE82E1278ABB02F", "FILEHASH", "g")) is not None


def test_scope_days() -> None:
    assert [scope_days(s) for s in ("recent", "extended", "comprehensive")] == [30, 90, 365]
    with pytest.raises(ValueError, match="correlation_scope must be one of"):
        scope_days("forever")


def test_correlation_risk_formulas() -> None:
    none = scoring.correlation_risk(cases=[], related_alerts=0, affected_systems=0)
    assert (none.exposure, none.recurrence, none.impact) == ("none", "none", "none")
    urgent_wide = scoring.correlation_risk(cases=[("Opened", "PriorityHigh")] * 3, related_alerts=2, affected_systems=5)
    assert (urgent_wide.exposure, urgent_wide.recurrence, urgent_wide.impact) == ("critical", "high", "critical")
    closed_low = scoring.correlation_risk(cases=[("Closed", "PriorityLow")], related_alerts=0, affected_systems=1)
    assert (closed_low.exposure, closed_low.recurrence, closed_low.impact) == ("medium", "low", "low")
    failed = scoring.correlation_risk(cases=None, related_alerts=None, affected_systems=None)
    assert (failed.exposure, failed.recurrence, failed.impact) == ("unknown", "unknown", "unknown")
    events_only = scoring.correlation_risk(cases=[], related_alerts=0, affected_systems=2)
    assert events_only.exposure == "low"


# --- the workflow against the offline stand-ins ----------------------------------------------------


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def sources() -> AsyncIterator[Sources]:
    config = load_config(None)
    async with UpstreamPool(config) as pool:
        yield Sources.from_pool(pool, config)


@pytest.fixture(scope="module")
def full_scan_sources(sources: Sources) -> Sources:
    """The same upstreams with a case cache of their own, so the full scans do not warm the narrowed ones."""
    return Sources(
        gti=sources.gti, siem=sources.siem, soar=sources.soar, settings=sources.settings, data_mode=sources.data_mode
    )


@pytest.mark.anyio
@pytest.mark.parametrize("value", FIXTURE_INDICATORS)
async def test_entity_search_narrowing_gives_the_full_scan_answer(
    sources: Sources, full_scan_sources: Sources, value: str
) -> None:
    """The narrowed search (SOAR entity search first) must find exactly what a full scan finds."""
    indicator = Indicator.parse(value)
    full = await correlate(indicator, full_scan_sources, "comprehensive", 30, narrow=False)
    narrowed = await correlate(indicator, sources, "comprehensive", 30, narrow=True)
    assert narrowed.case_correlations.case_ids == full.case_correlations.case_ids
    assert [c.matched_by for c in narrowed.matched_cases] == [c.matched_by for c in full.matched_cases]
    assert narrowed.search_stats.narrowed_by_entity_search
    checked = narrowed.search_stats.cases_entity_checked + narrowed.search_stats.cases_from_cache
    assert checked <= full.search_stats.cases_entity_checked + full.search_stats.cases_from_cache


@pytest.mark.anyio
async def test_malicious_domain_cases_casing_and_defanged(sources: Sources) -> None:
    result = await correlate(Indicator.parse("secure-update.example.net"), sources, "comprehensive", 30)
    hows = {reason.how for case in result.matched_cases for reason in case.matched_by}
    assert {"entity", "text_mention_defanged"} <= hows
    identifiers = {r.detail for case in result.matched_cases for r in case.matched_by if r.how == "entity"}
    assert any("SECURE-UPDATE.EXAMPLE.NET" in d for d in identifiers)
    assert any("Secure-Update.Example.Net" in d for d in identifiers)
    assert result.case_correlations.total_related_cases == len(result.case_correlations.case_ids) == 6
    assert "6 related case(s) in the last 365 days (1259, 1255, 1253, 1250, 1242 and 1 more)" in result.summary
    assert "url_on_domain_entity" in hows  # case 1250 records only the payload URL on the domain
    assert result.pattern_analysis.affected_systems_count == 3
    assert "outbound_c2_beacon" in result.pattern_analysis.attack_patterns
    assert result.related_alerts and all(
        a.rule in {"outbound_c2_beacon", "dns_query_to_malicious_domain"} for a in result.related_alerts
    )
    assert result.risk_assessment.recurrence_risk == "high"
    assert result.errors == []


@pytest.mark.anyio
async def test_soar_calls_overlap_search_with_page_one_and_next_page_with_checks() -> None:
    """The entity search and the first page of cases are asked for together, and each next page loads
    while the cases of the page before are checked (the order of starts and ends of the SOAR calls)."""
    config = load_config(None)
    async with UpstreamPool(config) as pool:
        events: list[tuple[str, str, str | None]] = []
        first_page: set[str] = set()
        call = pool.call

        async def recording(upstream: str, tool: str, arguments: dict[str, Any]) -> Any:
            tag = arguments.get("next_page_token") or arguments.get("case_id") or arguments.get("term")
            events.append(("start", tool, tag))
            try:
                output = await call(upstream, tool, arguments)
                if tool == "list_cases" and not tag:
                    first_page.update(str(case["id"]) for case in json.loads(output.texts[0])["cases"])
                return output
            finally:
                events.append(("end", tool, tag))

        pool.call = recording  # type: ignore[method-assign]
        indicator = Indicator.parse("secure-update.example.net")
        result = await correlate(indicator, Sources.from_pool(pool, config), "comprehensive")
    soar = [event for event in events if event[1] in _SOAR_TOOLS]
    assert sorted(tool for _, tool, _ in soar[:2]) == ["list_cases", "search_entity"], soar[:4]  # both in flight
    page2 = soar.index(next(e for e in soar if e[:2] == ("start", "list_cases") and e[2]))
    page1_checked = max(i for i, (kind, tool, tag) in enumerate(soar) if kind == "end" and tag in first_page)
    assert page2 < page1_checked, "page 2 is asked for while page 1's cases are still being checked"
    assert result.search_stats.pages_read >= 2 and result.errors == []


_SOAR_TOOLS = {
    "list_cases",
    "search_entity",
    "list_alert_group_identifiers_by_case",
    "get_entities_by_alert_group_identifiers",
}


@pytest.mark.anyio
async def test_recent_scope_stops_paging_early(sources: Sources) -> None:
    recent = await correlate(Indicator.parse("10.20.30.40"), sources, "recent", 30)
    wide = await correlate(Indicator.parse("10.20.30.40"), sources, "comprehensive", 30)
    assert recent.search_stats.pages_read < wide.search_stats.pages_read
    assert recent.search_stats.cases_in_window < wide.search_stats.cases_in_window
    assert set(recent.case_correlations.case_ids) <= set(wide.case_correlations.case_ids)


@pytest.mark.anyio
async def test_closed_cases_are_cached_within_the_session(sources: Sources) -> None:
    fresh = Sources(
        gti=sources.gti, siem=sources.siem, soar=sources.soar, settings=sources.settings, data_mode=sources.data_mode
    )
    first = await correlate(Indicator.parse("docs.example.org"), fresh, "comprehensive", 30, narrow=False)
    second = await correlate(Indicator.parse("docs.example.org"), fresh, "comprehensive", 30, narrow=False)
    assert first.search_stats.cases_from_cache == 0
    assert second.search_stats.cases_from_cache > 0
    assert second.search_stats.cases_entity_checked < first.search_stats.cases_entity_checked
    assert first.case_correlations.case_ids == second.case_correlations.case_ids


@pytest.mark.anyio
async def test_unknown_indicator_checks_no_case_entities(sources: Sources) -> None:
    value = "81da1ea06029cd50d08146bd26e61103fefa790ceb407e5983bae69f7e5ced82"
    result = await correlate(Indicator.parse(value), sources, "comprehensive", 30)
    assert result.search_stats.expected_cases == 0
    assert result.search_stats.cases_entity_checked == 0
    assert result.case_correlations.total_related_cases == 0
    assert result.risk_assessment.exposure_level == "none"


# --- through the MCP tool --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_correlate_ioc_tool_over_stdio() -> None:
    async with stdio_client(read_timeout_seconds=60) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        schema: dict[str, Any] = tools["correlate_ioc"].output_schema or {}
        assert {"case_correlations", "pattern_analysis", "risk_assessment"} <= set(schema["properties"])
        assert "recent = 30 days" in (tools["correlate_ioc"].description or "")
        result = await client.call_tool(
            "correlate_ioc", {"ioc_value": "hxxps[:]//login.example[.]net/reset", "correlation_scope": "extended"}
        )
        assert not result.is_error
        data = result.structured_content or {}
        assert data["case_window_days"] == 90 and data["data_mode"] == "offline-fixtures"
        assert data["case_correlations"]["total_related_cases"] >= 1
        for key in ("total_related_cases", "case_ids", "first_occurrence", "most_recent"):
            assert key in data["case_correlations"]
        for key in ("attack_patterns", "affected_systems_count", "organizational_scope"):
            assert key in data["pattern_analysis"]
        for key in ("exposure_level", "recurrence_risk", "business_impact"):
            assert key in data["risk_assessment"]
        text = "".join(b.text for b in result.content if isinstance(b, TextContent))
        assert text == data["summary"]
        bad = await client.call_tool("correlate_ioc", {"ioc_value": "8.8.8.8", "correlation_scope": "forever"})
        assert bad.is_error


# Expected related cases per scope, as the fixtures imply them (fixtures/soar/cases.json, generated by
# fixtures/make_soar_cases.py; ages are relative to now). Newest first. Each case is there for a reason a
# test below or its matched_by states: an entity in any casing, a URL entity on the domain, a file's other
# hash, the URL's host, or a defanged mention in the title.
EXPECTED_CASES = [
    ("secure-update.example.net", ["1259", "1255", "1253", "1250", "1242"], ["1259", "1255", "1253", "1250", "1242"],
     ["1259", "1255", "1253", "1250", "1242", "1113"]),
    ("login.example.net", ["1258", "1238"], ["1258", "1238"], ["1258", "1238"]),
    ("hxxps[:]//login.example[.]net/reset", ["1258", "1238"], ["1258", "1238"], ["1258", "1238"]),
    ("10.20.30.40", ["1260", "1254"], ["1260", "1254"], ["1260", "1254", "1168"]),
    ("203.0.113.66", ["1259", "1248"], ["1259", "1248"], ["1259", "1248"]),
    ("8.8.8.8", [], ["1229"], ["1229"]),
    ("2606:4700:4700::1111", [], ["1229"], ["1229"]),
    ("275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f", ["1254", "1244"], ["1254", "1244"],
     ["1254", "1244"]),
    ("44D88612FEA8A8F36DE82E1278ABB02F", ["1254", "1244"], ["1254", "1244"], ["1254", "1244"]),
    ("4d0eddad473d78894f64716c845d7550eaf3965545554d06b394cd49a295aed2", ["1250"], ["1250"], ["1250"]),
    ("intranet-sync.example.org", ["1257"], ["1257"], ["1257"]),
    ("docs.example.org", [], ["1205"], ["1205"]),
    ("81da1ea06029cd50d08146bd26e61103fefa790ceb407e5983bae69f7e5ced82", [], [], []),
    ("198.51.100.7", ["1258"], ["1258"], ["1258"]),
]  # fmt: skip


@pytest.mark.anyio
async def test_correlate_ioc_exact_cases_for_every_scope() -> None:
    async with stdio_client(read_timeout_seconds=120) as client:
        for value, *expected in EXPECTED_CASES:
            for scope, wanted in zip(("recent", "extended", "comprehensive"), expected, strict=True):
                result = await client.call_tool("correlate_ioc", {"ioc_value": value, "correlation_scope": scope})
                assert not result.is_error
                data = result.structured_content or {}
                got = data["case_correlations"]["case_ids"]
                assert got == wanted, f"{value} {scope}: {got} != {wanted}"
                assert data["case_correlations"]["total_related_cases"] == len(wanted)
                assert all(case["matched_by"] for case in data["matched_cases"])
