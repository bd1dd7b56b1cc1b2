"""Facade of google-secops-mcp (Chronicle SIEM).

The real tools return prose, not JSON, and never set isError: an error is a text that begins with
``Error``. The formats read here are the ones research/upstreams.md §3.4 recorded from the real server:

* ``lookup_entity``: "Entity Summary for X:" with Primary Entity / Related Entities / Associated Alerts /
  Timeline Summary sections, or "No information found for entity: X".
* ``get_ioc_matches``: "Found N IoC matches:" then blocks "IoC i: / Type / Value / Sources". It has no
  value filter, so we filter the blocks ourselves.
* ``get_security_alerts``: a JSON-encoded string of "Found N security alerts:" blocks.
* ``search_udm``: a dict ``{"events": [...], "total_events": n, "more_data_available": bool}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from ioc_workflows_mcp.indicator import Indicator, IndicatorType
from ioc_workflows_mcp.models import Status
from ioc_workflows_mcp.upstream.base import CallTrace, Facade, cap_untrusted
from ioc_workflows_mcp.upstream.pool import ToolOutput

# Chronicle IoC artifact keys per indicator family (artifactIndicator keys, upstreams.md §3.5).
IOC_ARTIFACT_TYPES: dict[str, frozenset[str]] = {
    "domain": frozenset({"domain"}),
    "ip": frozenset({"destinationIpAddress", "ipAddress", "sourceIpAddress"}),
    "file": frozenset({"hashMd5", "hashSha1", "hashSha256"}),
    "url": frozenset({"url", "domain"}),
}


@dataclass
class EntitySummary:
    entity_type: str | None = None
    first_seen: str | None = None
    last_seen: str | None = None
    related_entity_types: list[str] = field(default_factory=list)
    alerts: dict[str, int] = field(default_factory=dict)
    more_alerts: bool = False
    total_events: int | None = None
    total_alerts: int | None = None


@dataclass(frozen=True)
class IocMatchBlock:
    type: str
    value: str
    sources: list[str]


@dataclass(frozen=True)
class AlertBlock:
    rule: str
    created: str | None
    status: str | None
    severity: str | None
    case: str | None


@dataclass
class UdmEvents:
    events: list[dict[str, Any]]
    total: int
    more_available: bool


class SiemTextError(ValueError):
    """An upstream text that is not in the format we know."""


# In the SDK's error chain: the Google error message, and the endpoint after the last "/" or ":" of the URL.
_GOOGLE_MESSAGE = re.compile(r"""['"]message['"]:\s*(?P<q>['"])(?P<message>.*?)(?<!\\)(?P=q)""")
_CALLED_ENDPOINT = re.compile(r"url=[^,\s]*[/:](?P<endpoint>[A-Za-z]+)(?:\?[^,\s]*)?,")


def _error_detail(text: str) -> str:
    """'Error looking up entity: Error parsing ...: method=GET, url=.../c:summarizeEntitiesFromQuery,
    status=403, response={'error': {'message': "Permission ... denied", ...}}' -> 'Error looking up entity
    (summarizeEntitiesFromQuery): Permission ... denied'. Texts without a Google message stay as they are."""
    found = _GOOGLE_MESSAGE.search(text)
    if found is None:
        return cap_untrusted(text, 300) or ""
    endpoint = _CALLED_ENDPOINT.search(text)
    where = f" ({endpoint['endpoint']})" if endpoint else ""
    return cap_untrusted(f"{text.split(':', 1)[0].strip()}{where}: {found['message']}", 300) or ""


def classify_error_text(text: str) -> tuple[Status, str]:
    """Map a secops ``Error ...`` text to a status. The SDK folds the HTTP status into the message."""
    lowered = text.lower()
    reason = _error_detail(text)
    if "status=429" in lowered or "resource_exhausted" in lowered or "quota" in lowered:
        return Status.RATE_LIMITED, f"Chronicle rate limited the call: {reason}"
    if "status=403" in lowered or "permission_denied" in lowered:
        return Status.UNAVAILABLE, f"Chronicle refused access (HTTP 403 PERMISSION_DENIED): {reason}"
    if "status=401" in lowered or "unauthenticated" in lowered:
        return Status.UNAVAILABLE, f"Chronicle credentials refused (HTTP 401): {reason}"
    return Status.UNAVAILABLE, f"Chronicle error: {reason}"


def _text_of(output: ToolOutput) -> str:
    if output.has_structured and isinstance(output.structured, str):
        return output.structured
    return output.text


def _iso(chronicle_time: str) -> str | None:
    """'2024-05-02 10:00:05+00:00' (str of an aware datetime) -> '2024-05-02T10:00:05Z'."""
    value = chronicle_time.strip()
    if not value or value == "Unknown":
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    text = parsed.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


_ALERT_LINE = re.compile(r"^- Rule: (?P<rule>.*), Count: (?P<count>\d+)\s*$")


def parse_entity_summary(text: str) -> EntitySummary | None:
    """Parse ``lookup_entity`` output. None means "no information found"; errors raise SiemTextError."""
    stripped = text.strip()
    if stripped.startswith("No information found for entity"):
        return None
    if stripped.startswith("Error"):
        raise SiemTextError(stripped)
    if not stripped.startswith("Entity Summary for"):
        raise SiemTextError(f"unexpected lookup_entity output: {stripped[:80]!r}")
    summary = EntitySummary()
    section = ""
    for line in stripped.splitlines():
        line = line.rstrip()
        if not line:
            continue
        if line == "Primary Entity:":
            section = "primary"
        elif line.startswith("Related Entities ("):
            section = "related"
        elif line == "Associated Alerts:":
            section = "alerts"
        elif line == "Timeline Summary:":
            section = "timeline"
        elif line.startswith("Prevalence Information"):
            section = "prevalence"
        elif section == "primary":
            key, _, value = line.partition(": ")
            if key == "Entity Type":
                summary.entity_type = value.strip() or None
            elif key == "First Seen":
                summary.first_seen = _iso(value)
            elif key == "Last Seen":
                summary.last_seen = _iso(value)
        elif section == "related":
            match = re.match(r"^\d+\. Type: (.*)$", line)
            if match:
                summary.related_entity_types.append(match.group(1).strip())
        elif section == "alerts":
            match = _ALERT_LINE.match(line)
            if match:
                rule = match["rule"].strip()
                summary.alerts[rule] = summary.alerts.get(rule, 0) + int(match["count"])
            elif line.strip() == "(More alerts available)":
                summary.more_alerts = True
        elif section == "timeline":
            key, _, value = line.partition(": ")
            if key == "Total Events" and value.strip().isdigit():
                summary.total_events = int(value)
            elif key == "Total Alerts" and value.strip().isdigit():
                summary.total_alerts = int(value)
    return summary


_IOC_HEADER = re.compile(r"^Found (\d+) IoC matches:")


def parse_ioc_matches(text: str) -> list[IocMatchBlock]:
    """Parse ``get_ioc_matches`` output into blocks. Errors raise SiemTextError."""
    stripped = text.strip()
    if stripped.startswith("No IoC matches found"):
        return []
    if stripped.startswith("Error"):
        raise SiemTextError(stripped)
    if not _IOC_HEADER.match(stripped):
        raise SiemTextError(f"unexpected get_ioc_matches output: {stripped[:80]!r}")
    blocks: list[IocMatchBlock] = []
    for chunk in re.split(r"(?m)^IoC \d+:[ \t]*$", stripped)[1:]:
        fields: dict[str, str] = {}
        for line in chunk.strip().splitlines():
            key, sep, value = line.partition(": ")
            if sep:
                fields[key.strip()] = value.strip()
        if "Type" in fields and "Value" in fields:
            sources_text = fields.get("Sources", "")
            sources = [] if sources_text in ("", "Unknown") else [s.strip() for s in sources_text.split(", ")]
            blocks.append(IocMatchBlock(type=fields["Type"], value=fields["Value"], sources=sources))
    return blocks


def parse_security_alerts(text: str) -> list[AlertBlock]:
    """Parse ``get_security_alerts`` output (a JSON-encoded string, or plain text for none/errors)."""
    stripped = text.strip()
    if stripped.startswith('"'):
        try:
            decoded = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise SiemTextError(f"get_security_alerts output is not a valid JSON string: {exc}") from None
        if not isinstance(decoded, str):
            raise SiemTextError("get_security_alerts output is JSON but not a string")
        stripped = decoded.strip()
    if stripped.startswith("No security alerts found"):
        return []
    if stripped.startswith("Error"):
        raise SiemTextError(stripped)
    if not re.match(r"^Found \d+ security alerts:", stripped):
        raise SiemTextError(f"unexpected get_security_alerts output: {stripped[:80]!r}")
    alerts: list[AlertBlock] = []
    for chunk in re.split(r"\n\s*\n(?=Alert \d+:\n)", stripped)[1:]:
        fields: dict[str, str] = {}
        for line in chunk.splitlines()[1:]:
            key, sep, value = line.partition(": ")
            if sep:
                fields[key.strip()] = value.strip()
        alerts.append(
            AlertBlock(
                rule=fields.get("Rule", "Unknown Rule"),
                created=fields.get("Created"),
                status=fields.get("Status"),
                severity=fields.get("Severity"),
                case=fields.get("Associated Case"),
            )
        )
    return alerts


def parse_udm_result(output: ToolOutput) -> UdmEvents:
    body: Any = output.structured if output.has_structured else None
    if body is None:
        try:
            body = json.loads(output.text)
        except json.JSONDecodeError:
            text = output.text.strip()
            raise SiemTextError(  # noqa: B904 - the text itself is the error
                text if text.startswith("Error") else f"search_udm output is not JSON: {text[:80]!r}"
            )
    if isinstance(body, str):
        raise SiemTextError(body)
    if not isinstance(body, dict):
        raise SiemTextError("search_udm output is not an object")
    if body.get("error"):
        raise SiemTextError(f"Error searching UDM events: {body['error']}")
    events = body.get("events")
    if not isinstance(events, list):
        raise SiemTextError("search_udm output has no events list")
    events = [event for event in events if isinstance(event, dict)]
    total = body.get("total_events")
    return UdmEvents(
        events=events,
        total=int(total) if isinstance(total, int) else len(events),
        more_available=bool(body.get("more_data_available")),
    )


def udm_literal(value: str) -> str:
    """A UDM string literal: backslashes and double quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def udm_query(indicator: Indicator) -> str:
    """The UDM search that finds events involving the indicator, by its type."""
    v = udm_literal(indicator.value)
    match indicator.type:
        case IndicatorType.IPV4 | IndicatorType.IPV6:
            return f"principal.ip = {v} OR target.ip = {v} OR src.ip = {v}"
        case IndicatorType.DOMAIN:
            return f"network.dns.questions.name = {v} OR target.hostname = {v} OR target.domain.name = {v}"
        case IndicatorType.URL:
            return f"target.url = {v}"
        case IndicatorType.MD5:
            return f"target.file.md5 = {v} OR principal.process.file.md5 = {v}"
        case IndicatorType.SHA1:
            return f"target.file.sha1 = {v} OR principal.process.file.sha1 = {v}"
        case _:
            return f"target.file.sha256 = {v} OR principal.process.file.sha256 = {v}"


def _leaves(node: Any) -> Iterator[str]:
    """Every string value in a UDM event, however deep."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _leaves(value)
    elif isinstance(node, list):
        for value in node:
            yield from _leaves(value)


def event_involves(event: dict[str, Any], indicator: Indicator, aliases: frozenset[str] = frozenset()) -> bool:
    """Does a UDM event name the indicator as a whole field value (case-insensitive)?

    A search backend may match more loosely than its query reads (a substring, a prefix); only an event
    with a field equal to the indicator, or to one of its other hashes, counts as involving it.
    """
    wanted = {indicator.value.lower(), *(alias.lower() for alias in aliases)}
    udm = event.get("udm") if isinstance(event.get("udm"), dict) else event
    return any(leaf.strip().lower().rstrip(".") in wanted for leaf in _leaves(udm))


def affected_systems(
    events: list[dict[str, Any]], indicator: Indicator, aliases: frozenset[str] = frozenset()
) -> list[str]:
    """Internal systems in the UDM events that involve the indicator: each event's principal hostname,
    else its asset hostname, else its first IP (never the indicator itself)."""
    systems: list[str] = []
    for event in events:
        if not event_involves(event, indicator, aliases):
            continue
        udm = event.get("udm") if isinstance(event.get("udm"), dict) else event
        principal = udm.get("principal") if isinstance(udm, dict) else None
        if not isinstance(principal, dict):
            continue
        asset = principal.get("asset") if isinstance(principal.get("asset"), dict) else {}
        ips = principal.get("ip") if isinstance(principal.get("ip"), list) else []
        name = principal.get("hostname") or asset.get("hostname") or (ips[0] if ips else None)
        if isinstance(name, str) and name and name.lower() != indicator.value.lower() and name not in systems:
            systems.append(name)
    return sorted(systems, key=str.lower)


def match_belongs_to(block: IocMatchBlock, indicator: Indicator, aliases: frozenset[str] = frozenset()) -> bool:
    """Does an IoC match block refer to this indicator? Case-insensitive; a URL also matches its host, and
    a file matches through ``aliases``: its other hashes (md5, sha1, sha256) as GTI reports them."""
    wanted = {indicator.value.lower(), *(alias.lower() for alias in aliases)}
    if indicator.family == "url" and indicator.host:
        wanted.add(indicator.host.lower())
    if block.value.strip().lower().rstrip(".") not in wanted:
        return False
    return block.type in IOC_ARTIFACT_TYPES.get(indicator.family, frozenset()) or indicator.family == "url"


class SiemFacade(Facade):
    upstream = "secops"
    tools: ClassVar[dict[str, frozenset[str]]] = {
        "lookup_entity": frozenset({"entity_value", "hours_back"}),
        "get_ioc_matches": frozenset({"hours_back", "max_matches"}),
        "search_udm": frozenset({"query", "hours_back", "max_events"}),
        "get_security_alerts": frozenset({"hours_back", "max_alerts"}),
    }

    def result_kind(self, tool: str, output: ToolOutput) -> str | None:
        """secops never sets isError: an error is a text that starts with "Error" (or an error field)."""
        if output.is_error:
            return None
        if isinstance(output.structured, dict):
            events = output.structured.get("events")
            return (
                None
                if output.structured.get("error") or (isinstance(events, dict) and events.get("error"))
                else "found"
            )
        text = _text_of(output).strip().strip('"')
        if not text or text.startswith("Error"):
            return None
        return (
            "not_found"
            if text.startswith(("No information found", "No IoC matches", "No security alerts"))
            else "found"
        )

    async def entity_summary(self, indicator: Indicator, hours_back: int, trace: CallTrace) -> EntitySummary | None:
        output = await self._call(trace, "lookup_entity", {"entity_value": indicator.value, "hours_back": hours_back})
        try:
            return parse_entity_summary(_text_of(output))
        except SiemTextError as exc:
            raise self.failure(*classify_error_text(str(exc))) from None

    async def ioc_matches(self, hours_back: int, limit: int, trace: CallTrace) -> list[IocMatchBlock]:
        output = await self._call(trace, "get_ioc_matches", {"hours_back": hours_back, "max_matches": limit})
        try:
            return parse_ioc_matches(_text_of(output))
        except SiemTextError as exc:
            raise self.failure(*classify_error_text(str(exc))) from None

    async def udm_events(self, indicator: Indicator, hours_back: int, limit: int, trace: CallTrace) -> UdmEvents:
        arguments = {"query": udm_query(indicator), "hours_back": hours_back, "max_events": limit}
        output = await self._call(trace, "search_udm", arguments)
        try:
            return parse_udm_result(output)
        except SiemTextError as exc:
            raise self.failure(*classify_error_text(str(exc))) from None

    async def security_alerts(self, hours_back: int, limit: int, trace: CallTrace) -> list[AlertBlock]:
        """Open alerts in the window (the tool's default status filter leaves closed ones out)."""
        output = await self._call(trace, "get_security_alerts", {"hours_back": hours_back, "max_alerts": limit})
        try:
            return parse_security_alerts(_text_of(output))
        except SiemTextError as exc:
            raise self.failure(*classify_error_text(str(exc))) from None
