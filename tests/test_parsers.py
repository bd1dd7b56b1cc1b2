"""Parsing each upstream output format, with the exact texts research/upstreams.md recorded from the real servers."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioc_workflows_mcp.indicator import Indicator
from ioc_workflows_mcp.models import Status
from ioc_workflows_mcp.upstream.gti import parse_report_output
from ioc_workflows_mcp.upstream.pool import ToolOutput
from ioc_workflows_mcp.upstream.siem import (
    SiemTextError,
    affected_systems,
    classify_error_text,
    event_involves,
    match_belongs_to,
    parse_entity_summary,
    parse_ioc_matches,
    parse_security_alerts,
    parse_udm_result,
    udm_literal,
    udm_query,
)
from ioc_workflows_mcp.upstream.soar import SoarOutputError, parse_json_blocks

LOOKUP_ENTITY = (
    "Entity Summary for 203.0.113.66:\n\nPrimary Entity:\nEntity Type: ASSET\nFirst Seen: 2024-05-02 10:00:05+00:00\n"
    "Last Seen: 2024-05-30 08:15:02+00:00\n\nRelated Entities (1):\n1. Type: IP_ADDRESS\n\nAssociated Alerts:\n"
    "- Rule: outbound_c2_beacon, Count: 3\n\nTimeline Summary:\nTotal Events: 42\nTotal Alerts: 3\n\n"
    "Prevalence Information Available\n\n"
)
IOC_MATCHES = (
    "Found 2 IoC matches:\n\nIoC 1:\nType: domain\nValue: evil-updates.example\nSources: Mandiant Active Breach "
    "Intelligence, ESET Threat Intelligence\n\nIoC 2:\nType: destinationIpAddress\nValue: 203.0.113.66\nSources: "
    "Mandiant Fusion Intelligence\n\n"
)
ALERTS = (
    '"Found 1 security alerts:\\n\\nAlert 1:\\nRule: outbound_c2_beacon\\nCreated: 2024-05-30T08:16:00.123Z\\n'
    'Status: OPEN\\nSeverity: High\\nAssociated Case: case-77\\n\\n"'
)


def text(value: str) -> ToolOutput:
    return ToolOutput(is_error=False, texts=[value], structured=value, has_structured=True)


def test_lookup_entity_sections() -> None:
    summary = parse_entity_summary(LOOKUP_ENTITY)
    assert summary is not None
    assert summary.entity_type == "ASSET"
    assert summary.first_seen == "2024-05-02T10:00:05Z"
    assert summary.last_seen == "2024-05-30T08:15:02Z"
    assert summary.related_entity_types == ["IP_ADDRESS"]
    assert summary.alerts == {"outbound_c2_beacon": 3}
    assert (summary.total_events, summary.total_alerts) == (42, 3)


def test_lookup_entity_unknown_times_and_missing_sections() -> None:
    summary = parse_entity_summary(
        "Entity Summary for x:\n\nPrimary Entity:\nEntity Type: DOMAIN_NAME\n"
        "First Seen: Unknown\nLast Seen: Unknown\n\n"
    )
    assert summary is not None and summary.first_seen is None and summary.total_events is None


def test_lookup_entity_not_found_and_error() -> None:
    assert parse_entity_summary("No information found for entity: nope.example.com") is None
    error = (
        "Error looking up entity: Error parsing entity summaries query response: Error querying entity "
        "summaries: method=GET, url=http://x, status=403, response={}"
    )
    with pytest.raises(SiemTextError) as caught:
        parse_entity_summary(error)
    status, reason = classify_error_text(str(caught.value))
    assert status is Status.UNAVAILABLE and "403" in reason


def test_ioc_matches_blocks() -> None:
    blocks = parse_ioc_matches(IOC_MATCHES)
    assert [(b.type, b.value) for b in blocks] == [
        ("domain", "evil-updates.example"),
        ("destinationIpAddress", "203.0.113.66"),
    ]
    assert blocks[0].sources == ["Mandiant Active Breach Intelligence", "ESET Threat Intelligence"]
    assert parse_ioc_matches("No IoC matches found for the specified time range.") == []
    with pytest.raises(SiemTextError):
        parse_ioc_matches("Error retrieving IoC matches: boom")


def test_ioc_match_filter_is_case_insensitive_and_typed() -> None:
    blocks = parse_ioc_matches(IOC_MATCHES.replace("Value: 203.0.113.66", "Value: 203.0.113.66"))
    ip = Indicator.parse("203.0.113.66")
    assert [b.value for b in blocks if match_belongs_to(b, ip)] == ["203.0.113.66"]
    upper = parse_ioc_matches(IOC_MATCHES.replace("evil-updates.example", "LOGIN.EXAMPLE.NET"))
    url = Indicator.parse("https://login.example.net/reset")
    assert [b.value for b in upper if match_belongs_to(b, url)] == ["LOGIN.EXAMPLE.NET"]


def test_security_alerts_json_encoded() -> None:
    alerts = parse_security_alerts(ALERTS)
    assert len(alerts) == 1
    assert (alerts[0].rule, alerts[0].status, alerts[0].severity, alerts[0].case) == (
        "outbound_c2_beacon",
        "OPEN",
        "High",
        "case-77",
    )
    assert parse_security_alerts("No security alerts found for the specified time range.") == []
    with pytest.raises(SiemTextError):
        parse_security_alerts("Error retrieving security alerts: Failed to get alerts: {}")


def test_udm_result_and_systems() -> None:
    target = {"target": {"hostname": "evil.example.net"}}
    dns = {"network": {"dns": {"questions": [{"name": "EVIL.EXAMPLE.NET."}]}}}
    body = {
        "events": [
            {"name": "e1", "udm": {"principal": {"hostname": "web-01", "ip": ["10.1.2.3"]}, **target}},
            {"name": "e2", "udm": {"principal": {"ip": ["10.1.2.4"]}, **dns}},
            {"name": "e3", "udm": {"principal": {"hostname": "web-01"}, **target}},
            # A looser search backend may return events holding the value only as a substring: not ours.
            {"name": "e4", "udm": {"principal": {"hostname": "wks-9"}, "target": {"hostname": "not-evil.example.net"}}},
        ],
        "total_events": 4,
        "more_data_available": False,
    }
    events = parse_udm_result(ToolOutput(False, [json.dumps(body)], body, True))
    assert events.total == 4
    indicator = Indicator.parse("evil.example.net")
    assert affected_systems(events.events, indicator) == ["10.1.2.4", "web-01"]
    assert [event_involves(e, indicator) for e in events.events] == [True, True, True, False]
    with pytest.raises(SiemTextError):
        parse_udm_result(text("Error performing UDM search: status=403"))


def test_udm_literal_escapes() -> None:
    assert udm_literal('a"b\\c') == '"a\\"b\\\\c"'
    assert (
        udm_query(Indicator.parse("8.8.8.8"))
        == 'principal.ip = "8.8.8.8" OR target.ip = "8.8.8.8" OR src.ip = "8.8.8.8"'
    )


def test_gti_report_found_not_found_and_errors() -> None:
    found = {"type": "domain", "id": "x.example.net", "attributes": {"reputation": -1}, "relationships": {}}
    status, report, _ = parse_report_output(ToolOutput(False, [json.dumps(found)], found, True))
    assert status is Status.OK and report is not None and report.attributes["reputation"] == -1
    not_found = {
        "error": 'VirusTotal API Error: NotFoundError - Domain "nope.example" not found',
        "details": "The requested domain 'nope.example' could not be found or there was an issue.",
    }
    status, report, reason = parse_report_output(ToolOutput(False, [json.dumps(not_found)], not_found, True))
    assert status is Status.NOT_FOUND and report is None and "404" in (reason or "")
    for code, expected in (("QuotaExceededError", Status.RATE_LIMITED), ("WrongCredentialsError", Status.UNAVAILABLE)):
        body = {"error": f"VirusTotal API Error: {code} - nope", "details": "x"}
        status, _, reason = parse_report_output(ToolOutput(False, [json.dumps(body)], body, True))
        assert status is expected and code in (reason or "")
    status, _, _ = parse_report_output(ToolOutput(True, ["Error executing tool get_domain_report: boom"]))
    assert status is Status.UNAVAILABLE
    status, _, _ = parse_report_output(ToolOutput(False, ["not json"]))
    assert status is Status.DEGRADED


def test_soar_blocks() -> None:
    assert parse_json_blocks(ToolOutput(False, ['{"cases": []}']), "list_cases") == {"cases": []}
    assert parse_json_blocks(ToolOutput(False, ['{"a": 1}', '{"b": 2}']), "x") == [{"a": 1}, {"b": 2}]
    with pytest.raises(SoarOutputError, match="returned no content") as caught:
        parse_json_blocks(ToolOutput(False, []), "list_cases")
    assert caught.value.empty
    with pytest.raises(SoarOutputError, match="not JSON"):
        parse_json_blocks(ToolOutput(False, ["<html>"]), "list_cases")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_text_parsers_only_raise_their_own_error(blob: str) -> None:
    for parser in (parse_entity_summary, parse_ioc_matches, parse_security_alerts):
        with contextlib.suppress(SiemTextError):
            parser(blob)
    with contextlib.suppress(SiemTextError):
        parse_udm_result(ToolOutput(False, [blob]))
    status, _, _ = parse_report_output(ToolOutput(False, [blob]))
    assert isinstance(status, Status)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["domain", "hashSha256", "destinationIpAddress"]),
            st.from_regex(r"[a-z0-9.\-]{1,30}", fullmatch=True),
            st.lists(st.from_regex(r"[A-Za-z][A-Za-z ]{0,20}[A-Za-z]", fullmatch=True), max_size=3),
        ),
        max_size=5,
    )
)
def test_ioc_matches_round_trip(matches: list[tuple[str, str, list[str]]]) -> None:
    """Text built in the real server's format parses back to the same blocks."""
    if not matches:
        return
    body = f"Found {len(matches)} IoC matches:\n\n" + "".join(
        f"IoC {i}:\nType: {t}\nValue: {v}\nSources: {', '.join(s) if s else 'Unknown'}\n\n"
        for i, (t, v, s) in enumerate(matches, 1)
    )
    assert [(b.type, b.value, b.sources) for b in parse_ioc_matches(body)] == [(t, v, s) for t, v, s in matches]
