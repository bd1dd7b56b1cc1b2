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

_API_ERROR = re.compile(r"VirusTotal API Error:\s*(?P<code>[A-Za-z]+)\s*-\s*(?P<message>.*)", re.DOTALL)
_RATE_CODES = {"QuotaExceededError", "TooManyRequestsError"}
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
        return Status.RATE_LIMITED, f"rate limited: {code} (HTTP 429)"
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
    tools: ClassVar[dict[str, frozenset[str]]] = {tool: frozenset({arg}) for tool, arg in REPORT_TOOLS.values()}

    async def report(self, indicator: Indicator, trace: CallTrace) -> tuple[Status, GtiReport | None, str | None]:
        """Fetch the report for the indicator's type. Failures of the call raise UpstreamFailure."""
        tool, argument = REPORT_TOOLS[indicator.family]
        output = await self._call(trace, tool, {argument: indicator.value})
        status, report, reason = parse_report_output(output)
        if status is Status.RATE_LIMITED:
            raise self.failure(status, reason or "rate limited")
        return status, report, reason
