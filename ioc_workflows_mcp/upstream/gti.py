"""Facade of gti-mcp (Google Threat Intelligence, VirusTotal v3 underneath).

What the real server does, as recorded in research/upstreams.md:

* report tools return the vt-py ``Object.to_dict()`` of the object (``type, attributes, id,
  relationships``), both as indent-2 JSON text and as ``structuredContent.result``;
* report tools report API errors *in band*: ``{"error": "VirusTotal API Error: <Code> - <message>",
  "details": "..."}`` with isError false. A 404 ``NotFoundError`` means "not in VirusTotal", which is a
  result, not a failure;
* relationship and search tools raise instead, which gives isError true.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from ioc_workflows_mcp.indicator import Indicator
from ioc_workflows_mcp.models import Status
from ioc_workflows_mcp.upstream.base import CallTrace, Facade
from ioc_workflows_mcp.upstream.pool import ToolOutput

# indicator family -> (report tool, its argument name)
REPORT_TOOLS: dict[str, tuple[str, str]] = {
    "domain": ("get_domain_report", "domain"),
    "ip": ("get_ip_address_report", "ip_address"),
    "file": ("get_file_report", "hash"),
    "url": ("get_url_report", "url"),
}

REPORT_TOOL_NAMES = frozenset(tool for tool, _ in REPORT_TOOLS.values())

# indicator family -> (relationship tool, its argument name); pivots call these with descriptors_only=False
RELATED_TOOLS: dict[str, tuple[str, str]] = {
    "domain": ("get_entities_related_to_a_domain", "domain"),
    "ip": ("get_entities_related_to_an_ip_address", "ip_address"),
    "file": ("get_entities_related_to_a_file", "hash"),
    "url": ("get_entities_related_to_an_url", "url"),
}
COLLECTION_REPORT_TOOL = "get_collection_report"

# Relationship names gti-mcp 0.1.3 accepts per object family (gti_mcp/tools/*.py; research/upstreams.md
# §2.3). Any other name makes the tool return an error dict while declaring a list, i.e. isError=true.
ALLOWED_RELATIONSHIPS: dict[str, tuple[str, ...]] = {
    "domain": (
        "associations", "caa_records", "campaigns", "cname_records", "collections", "comments",
        "communicating_files", "downloaded_files", "graphs", "historical_ssl_certificates", "historical_whois",
        "immediate_parent", "malware_families", "memory_pattern_parents", "mx_records", "ns_records", "parent",
        "referrer_files", "related_comments", "related_reports", "related_threat_actors", "reports",
        "resolutions", "siblings", "soa_records", "software_toolkits", "subdomains", "urls", "user_votes",
        "votes", "vulnerabilities",
    ),
    "ip": (
        "associations", "campaigns", "collections", "comments", "communicating_files", "downloaded_files",
        "graphs", "historical_ssl_certificates", "historical_whois", "malware_families",
        "memory_pattern_parents", "referrer_files", "related_comments", "related_reports",
        "related_threat_actors", "reports", "resolutions", "software_toolkits", "urls", "user_votes", "votes",
        "vulnerabilities",
    ),
    "file": (
        "analyses", "associations", "behaviours", "attack_techniques", "bundled_files", "campaigns",
        "carbonblack_children", "carbonblack_parents", "collections", "comments", "compressed_parents",
        "contacted_domains", "contacted_ips", "contacted_urls", "dropped_files", "email_attachments",
        "email_parents", "embedded_domains", "embedded_ips", "embedded_urls", "execution_parents", "graphs",
        "itw_domains", "itw_ips", "itw_urls", "malware_families", "memory_pattern_domains",
        "memory_pattern_ips", "memory_pattern_urls", "overlay_children", "overlay_parents", "pcap_children",
        "pcap_parents", "pe_resource_children", "pe_resource_parents", "related_attack_techniques",
        "related_reports", "related_threat_actors", "reports", "screenshots", "similar_files",
        "software_toolkits", "submissions", "urls_for_embedded_js", "user_votes", "votes", "vulnerabilities",
    ),
    "url": (
        "analyses", "associations", "campaigns", "collections", "comments", "communicating_files",
        "contacted_domains", "contacted_ips", "downloaded_files", "embedded_js_files", "graphs",
        "http_response_contents", "last_serving_ip_address", "malware_families", "memory_pattern_parents",
        "network_location", "parent_resource_urls", "redirecting_urls", "redirects_to", "referrer_files",
        "referrer_urls", "related_collections", "related_comments", "related_reports",
        "related_threat_actors", "reports", "software_toolkits", "submissions", "urls_related_by_tracker_id",
        "user_votes", "votes", "vulnerabilities",
    ),
}  # fmt: skip

# Relationship lists VirusTotal stops at a fixed size with no cursor (research/upstreams.md §0, ioc_cases
# C28): a list of exactly this many items may be cut by the server, not by us.
KNOWN_SERVER_CAPS: dict[str, int] = {"subdomains": 100}

_API_ERROR = re.compile(r"VirusTotal API Error:\s*(?P<code>[A-Za-z]+)\s*-\s*(?P<message>.*)", re.DOTALL)
_RATE_CODES = {"QuotaExceededError", "TooManyRequestsError"}
QUOTA_HINT = (
    "retry later (VirusTotal sends no Retry-After), or set settings.upstreams.gti.requests_per_minute to your "
    "quota so calls wait for their turn"
)
_AUTH_CODES = {"WrongCredentialsError", "AuthenticationRequiredError", "ForbiddenError", "UserNotActiveError"}


@dataclass(frozen=True)
class GtiReport:
    """A found VirusTotal object: ``type``, ``id``, ``attributes``, ``relationships``."""

    object_type: str
    object_id: str
    attributes: dict[str, Any]
    relationships: dict[str, Any]


def classify_api_error(code: str, message: str) -> tuple[Status, str]:
    """Map a VirusTotal error code to a section status and a plain reason."""
    if code == "NotFoundError":
        return (
            Status.NOT_FOUND,
            "not known to Google Threat Intelligence (VirusTotal NotFoundError, HTTP 404)",
        )
    if code in _RATE_CODES:
        return Status.RATE_LIMITED, f"rate limited: {code} (HTTP 429); {QUOTA_HINT}"
    if code in _AUTH_CODES:
        return Status.UNAVAILABLE, f"credentials refused by VirusTotal: {code}"
    return Status.UNAVAILABLE, f"VirusTotal error {code}: {message.strip()[:200]}"


def parse_report_output(output: ToolOutput) -> tuple[Status, GtiReport | None, str | None]:
    """Read a ``get_*_report`` result: (status, report or None, reason)."""
    if output.is_error:
        return Status.UNAVAILABLE, None, f"report tool failed: {output.text[:300]}"
    body: Any = output.structured if output.has_structured else None
    if not isinstance(body, dict):
        try:
            body = json.loads(output.text) if output.texts else None
        except json.JSONDecodeError:
            return Status.DEGRADED, None, "report was not JSON"
    if not isinstance(body, dict):
        return Status.DEGRADED, None, "report was empty or not an object"
    if "error" in body:
        text = str(body.get("error"))
        match = _API_ERROR.search(text)
        if match:
            status, reason = classify_api_error(match["code"], match["message"])
            return status, None, reason
        return Status.UNAVAILABLE, None, f"GTI error: {text[:200]}"
    attributes = body.get("attributes")
    if not isinstance(attributes, dict):
        return Status.DEGRADED, None, "report has no attributes object"
    report = GtiReport(
        object_type=str(body.get("type", "")),
        object_id=str(body.get("id", "")),
        attributes=attributes,
        relationships=body.get("relationships") if isinstance(body.get("relationships"), dict) else {},
    )
    return Status.OK, report, None


class GtiFacade(Facade):
    upstream = "gti"
    tools: ClassVar[dict[str, frozenset[str]]] = {
        **{tool: frozenset({arg}) for tool, arg in REPORT_TOOLS.values()},
        **{
            tool: frozenset({arg, "relationship_name", "descriptors_only", "limit"})
            for tool, arg in RELATED_TOOLS.values()
        },
        COLLECTION_REPORT_TOOL: frozenset({"id"}),
    }

    def result_kind(self, tool: str, output: ToolOutput) -> str | None:
        """Report tools answer errors in band: a NotFoundError is a (short-lived) result, others are failures."""
        if tool in REPORT_TOOL_NAMES:
            status, _, _ = parse_report_output(output)
            return {Status.OK: "found", Status.NOT_FOUND: "not_found"}.get(status)
        if not output.is_error and output.has_structured and output.structured == []:
            # An empty relationship list is an answer (zero content blocks, structuredContent {"result": []}).
            return "not_found"
        return super().result_kind(tool, output)

    async def report(self, indicator: Indicator, trace: CallTrace) -> tuple[Status, GtiReport | None, str | None]:
        """Fetch the report for the indicator's type. Failures of the call raise UpstreamFailure."""
        tool, argument = REPORT_TOOLS[indicator.family]
        output = await self._call(trace, tool, {argument: indicator.value})
        status, report, reason = parse_report_output(output)
        if status is Status.RATE_LIMITED:
            raise self.failure(status, reason or "rate limited")
        return status, report, reason

    async def related(
        self, family: str, value: str, relationship: str, limit: int, trace: CallTrace
    ) -> list[dict[str, Any]]:
        """Full objects related to one entity, up to ``limit`` (see :func:`related_entities`)."""
        return await related_entities(self, family, value, relationship, limit, trace)

    async def collection(self, collection_id: str, trace: CallTrace) -> tuple[Status, GtiReport | None, str | None]:
        """One GTI collection's report (see :func:`collection_report`)."""
        return await collection_report(self, collection_id, trace)


# --- relationships (pivot) ----------------------------------------------------------------------------

_RATE_HINT = re.compile(r"QuotaExceeded|TooManyRequests|\b429\b|rate.?limit", re.IGNORECASE)
_NOT_FOUND_HINT = re.compile(r"NotFoundError", re.IGNORECASE)


def classify_related_error(text: str) -> tuple[Status, str]:
    """gti-mcp's relationship tools raise on any HTTP error, and the text often hides the cause
    ("unhandled errors in a TaskGroup (1 sub-exception)"). Read what the text does say."""
    if _RATE_HINT.search(text):
        return Status.RATE_LIMITED, f"rate limited: {text.strip()[:200]}"
    if _NOT_FOUND_HINT.search(text):
        return Status.NOT_FOUND, "not known to Google Threat Intelligence (NotFoundError)"
    return (
        Status.UNAVAILABLE,
        "relationship tool failed; gti-mcp does not say why (a 404, a 429 quota or a server error); if it is the "
        f"quota: {QUOTA_HINT}: " + text.strip()[:200],
    )


def parse_related_output(output: ToolOutput) -> list[dict[str, Any]]:
    """Read a ``get_entities_related_to_*`` result: the related objects (``type``, ``id``, ``attributes``,
    ``context_attributes``). The 1.x server sends one text block per object and ``structuredContent``
    ``{"result": [...]}``; an empty list gives no block at all. Objects without type and id are dropped."""
    items: Any = output.structured if output.has_structured else None
    if not isinstance(items, list):
        items = []
        for text in output.texts:
            try:
                items.append(json.loads(text))
            except json.JSONDecodeError:
                continue
    return [item for item in items if isinstance(item, dict) and item.get("type") and item.get("id")]


class RelationshipError(Exception):
    """A relationship call answered with an error (isError true); ``status`` says what kind if it can."""

    def __init__(self, status: Status, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def related_entities(
    facade: GtiFacade, family: str, value: str, relationship: str, limit: int, trace: CallTrace
) -> list[dict[str, Any]]:
    """Up to ``limit`` full objects related to one entity (gti-mcp follows ``meta.cursor`` itself).

    Raises :class:`UpstreamFailure` when no answer came and :class:`RelationshipError` when the tool
    answered with an error."""
    tool, argument = RELATED_TOOLS[family]
    arguments = {argument: value, "relationship_name": relationship, "descriptors_only": False, "limit": limit}
    output = await facade._call(trace, tool, arguments)
    if output.is_error:
        status, reason = classify_related_error(output.text)
        raise RelationshipError(status, reason)
    return parse_related_output(output)


async def collection_report(
    facade: GtiFacade, collection_id: str, trace: CallTrace
) -> tuple[Status, GtiReport | None, str | None]:
    """``get_collection_report``: a threat actor, malware family or campaign (its name, type, dates)."""
    output = await facade._call(trace, COLLECTION_REPORT_TOOL, {"id": collection_id})
    return parse_report_output(output)
