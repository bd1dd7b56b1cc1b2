"""Offline stand-in for google-secops-mcp 0.7.1 (Chronicle SIEM via the ``secops`` SDK 0.44.1).

Same tool names, parameters, defaults and outputs as the real server for the tools our workflows use.
Each tool builds the request the SDK would send (endpoint after ``.../instances/{customer}``, same query
parameters, booleans as ``True``/``False``) and asks the in-process
:class:`~ioc_workflows_mcp.offline.backend.ChronicleAPI`; the answer is turned into the tool's text or dict
exactly as the SDK and the tool do, including the in-band ``Error ...`` texts that embed the SDK's
exception message (``<what failed>: method=GET, url=<url>, status=<code>, response=<body as a Python dict>``).

The real server runs the synchronous SDK inside async tools, so it handles one tool call at a time; the
stand-in does the same (calls are serialised). Like the SDK's session, a 429/500/502/503/504 answer is
retried up to 5 times (without the real back-off sleeps). URLs in error texts use the production base
``https://{region}-chronicle.googleapis.com/v1alpha``, or ``$CHRONICLE_BASE_URL`` + ``/v1alpha`` when set
(the variable the real-server launcher uses).
"""

import ipaddress
import json
import logging
import os
import re
import sys
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Optional

import anyio

from ._fastmcp1 import StandinServer, wire_json, wire_text
from .backend import Backends, ChronicleAPI, Response

logger = logging.getLogger("ioc_workflows_mcp.offline.secops")

SERVER_NAME = "secops-offline-standin"
INSTRUCTIONS = (
    "OFFLINE STAND-IN for google-secops-mcp (Chronicle SIEM). It serves bundled fixture recordings, not a "
    "live Chronicle instance. Tool names, arguments and output formats match google-secops-mcp 0.7.1."
)

TypingDict = typing.Dict[str, typing.Any]  # noqa: UP006 - the declared return; 1.x wraps it in {"result": ...}
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_RETRIES = 5
_MICROS = "%Y-%m-%dT%H:%M:%S.%fZ"
_MAX_BODY_CHARS = 2000


class SecOpsAPIError(Exception):
    """``secops.exceptions.APIError``."""


# --------------------------------------------------------------------------------------------------
# The SDK's transport: ChronicleClient + chronicle_request


def _encode_params(params: dict[str, Any] | None) -> dict[str, str]:
    """How ``requests`` puts a params dict on the wire: ``None`` dropped, everything else ``str()``."""
    return {k: str(v) for k, v in (params or {}).items() if v is not None}


def _requests_json(response: Response) -> Any:
    """``requests.Response.json()`` as chronicle_request uses it: ``None`` when the body is not JSON."""
    try:
        return wire_json(response)
    except ValueError:
        return None


def _preview(text: str | None, limit: int = _MAX_BODY_CHARS) -> str:
    if not text:
        return ""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… (truncated, {len(text)} chars)"


@dataclass
class Chronicle:
    """``ChronicleClient`` bound to one project/customer/region, over the emulated API."""

    api: ChronicleAPI
    project_id: str
    customer_id: str
    region: str
    base_override: str | None = None
    version: str = "v1alpha"
    instance_id: str = field(init=False)

    def __post_init__(self) -> None:
        location = "us" if self.region in ("dev", "staging") else self.region
        self.instance_id = f"projects/{self.project_id}/locations/{location}/instances/{self.customer_id}"

    @property
    def base_url(self) -> str:
        if self.base_override:
            return f"{self.base_override.rstrip('/')}/{self.version}"
        if self.region == "dev":
            domain = "autopush-chronicle.sandbox.googleapis.com"
        elif self.region == "staging":
            domain = "staging-chronicle.sandbox.googleapis.com"
        else:
            domain = f"{self.region}-chronicle.googleapis.com"
        return f"https://{domain}/{self.version}"

    def url(self, endpoint_path: str) -> str:
        base = f"{self.base_url}/{self.instance_id}"
        return f"{base}{endpoint_path}" if endpoint_path.startswith(":") else f"{base}/{endpoint_path.lstrip('/')}"

    def send(self, method: str, endpoint_path: str, params: dict[str, Any] | None, body: Any = None) -> Response:
        """One HTTP exchange through the SDK's session (which retries 429 and 5xx)."""
        endpoint = endpoint_path if endpoint_path.startswith(":") else "/" + endpoint_path.lstrip("/")
        wire_params = _encode_params(params)
        for attempt in range(_RETRIES + 1):
            if method == "GET":
                response = self.api.get(endpoint, wire_params)
            else:
                response = self.api.post(endpoint, wire_params, body)
            if response.status not in _RETRY_STATUSES or attempt == _RETRIES:
                return response
            print(
                f"Retrying {method} {self.url(endpoint_path)} for {response.status} status code....",
                file=sys.stderr,
            )
        raise AssertionError("unreachable")

    def request(
        self,
        method: str,
        endpoint_path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        error_message: str | None = None,
    ) -> Any:
        """``secops.chronicle.utils.request_utils.chronicle_request``."""
        url = self.url(endpoint_path)
        response = self.send(method, endpoint_path, params, json_body)
        data = _requests_json(response)
        if response.status != 200:
            base_msg = error_message or "API request failed"
            if data is not None:
                raise SecOpsAPIError(
                    f"{base_msg}: method={method}, url={url}, status={response.status}, response={data}"
                )
            raise SecOpsAPIError(
                f"{base_msg}: method={method}, url={url}, status={response.status}, "
                f"response_text={_preview(wire_text(response))}"
            )
        if data is None:
            raise SecOpsAPIError(
                f"Expected JSON response: method={method}, url={url}, status={response.status}, "
                f"content_type={response.content_type or 'unknown'}, body_preview={_preview(wire_text(response))}"
            )
        return data


# --------------------------------------------------------------------------------------------------
# secops.chronicle.entity.summarize_entity


@dataclass
class _Entity:
    name: str
    entity_type: str
    interval: tuple[datetime, datetime] | None
    metric: tuple[datetime, datetime] | None  # (first_seen, last_seen)
    entity: Any


@dataclass
class _EntitySummary:
    primary_entity: _Entity | None = None
    related_entities: list[_Entity] = field(default_factory=list)
    alert_counts: list[tuple[Any, int]] | None = None
    has_more_alerts: Any = False
    timeline_buckets: list[tuple[int, int]] | None = None  # (alert_count, event_count)
    prevalence: list[tuple[datetime, int]] | None = None


def _iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _detect_value_type_for_query(value: str) -> tuple[str, str]:
    try:
        ipaddress.ip_address(value)
        return f'ip = "{value}"', "ASSET"
    except ValueError:
        pass
    if (
        re.match(r"^[a-fA-F0-9]{32}$", value)
        or re.match(r"^[a-fA-F0-9]{40}$", value)
        or re.match(r"^[a-fA-F0-9]{64}$", value)
    ):
        return f'hash = "{value}"', "FILE"
    label = r"[a-zA-Z0-9]([a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?"
    if re.match(rf"^{label}(\.{label})+$", value):
        return f'domain = "{value}"', "DOMAIN_NAME"
    if re.match(r"^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$", value):
        return f'email = "{value}"', "USER"
    if re.match(r"^([0-9A-Fa-f]{2}[:-]){5}([0-9A-Fa-f]{2})$", value):
        return f'mac = "{value}"', "ASSET"
    if re.match(r"^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$", value):
        return f'hostname = "{value}"', "ASSET"
    if re.match(r"^[a-zA-Z0-9_.-]+$", value):
        return f'user.userid = "{value}"', "USER"
    return f'string_value = "{value}"', "ASSET"


def _parse_entity(entity_data: dict[str, Any]) -> _Entity:
    metadata = entity_data.get("metadata", {})
    interval = metadata.get("interval", {})
    start = _iso(interval["startTime"]) if interval.get("startTime") else None
    end = _iso(interval["endTime"]) if interval.get("endTime") else None
    metric_data = entity_data.get("metric", {})
    first_seen = _iso(metric_data["firstSeen"]) if metric_data.get("firstSeen") else None
    last_seen = _iso(metric_data["lastSeen"]) if metric_data.get("lastSeen") else None
    return _Entity(
        name=entity_data.get("name", ""),
        entity_type=metadata.get("entityType", ""),
        interval=(start, end) if start and end else None,
        metric=(first_seen, last_seen) if first_seen and last_seen else None,
        entity=entity_data.get("entity", {}),
    )


def _summarize_entity_by_id(
    chronicle: Chronicle,
    entity_id: str,
    start_time: datetime,
    end_time: datetime,
    *,
    return_alerts: bool,
    return_prevalence: bool,
) -> Any:
    params = {
        "entityId": entity_id,
        "timeRange.startTime": start_time.strftime(_MICROS),
        "timeRange.endTime": end_time.strftime(_MICROS),
        "returnAlerts": return_alerts,
        "returnPrevalence": return_prevalence,
        "includeAllUdmEventTypesForFirstLastSeen": True,
        "pageSize": 1000,
    }
    return chronicle.request(
        "GET",
        ":summarizeEntity",
        params=params,
        error_message=f"Error getting entity summary by ID ({entity_id})",
    )


def summarize_entity(chronicle: Chronicle, value: str, start_time: datetime, end_time: datetime) -> _EntitySummary:
    query_fragment, preferred_type = _detect_value_type_for_query(value)
    query_params = {
        "query": query_fragment,
        "timeRange.startTime": start_time.strftime(_MICROS),
        "timeRange.endTime": end_time.strftime(_MICROS),
    }
    try:
        query_data = chronicle.request(
            "GET", ":summarizeEntitiesFromQuery", params=query_params, error_message="Error querying entity summaries"
        )
    except Exception as e:
        raise SecOpsAPIError(f"Error parsing entity summaries query response: {e!s}") from e

    all_entities: list[_Entity] = []
    primary: _Entity | None = None
    primary_id: str | None = None
    for summary_data in query_data.get("entitySummaries", []):
        for entity_data in summary_data.get("entity", []):
            entity = _parse_entity(entity_data)
            all_entities.append(entity)
            if not primary_id and entity.entity_type == preferred_type:
                primary = entity
                primary_id = entity.name.split("/")[-1]
    if not primary_id and all_entities:
        primary = all_entities[0]
        primary_id = primary.name.split("/")[-1]

    summary = _EntitySummary(primary_entity=primary, related_entities=[e for e in all_entities if e != primary])

    if primary_id and primary is not None:
        details = _summarize_entity_by_id(
            chronicle, primary_id, start_time, end_time, return_alerts=True, return_prevalence=False
        )
        alert_counts_data = details.get("alertCounts", [])
        if alert_counts_data:
            summary.alert_counts = [(ac.get("rule", ""), int(ac.get("count", 0))) for ac in alert_counts_data]
        summary.has_more_alerts = details.get("hasMoreAlerts", False)
        timeline_data = details.get("timeline", {})
        if timeline_data.get("buckets"):
            summary.timeline_buckets = [
                (int(b.get("alertCount", 0)), int(b.get("eventCount", 0))) for b in timeline_data["buckets"]
            ]
        # (widgetMetadata and fileMetadataAndProperties are parsed by the SDK but never printed by the tool)
        if details.get("entities"):
            updated = _parse_entity(details["entities"][0])
            if updated.name == primary.name:
                summary.primary_entity = updated

    if primary_id:
        prevalence_id = primary_id
        try:
            ipaddress.ip_address(value)
            is_ip = True
        except ValueError:
            is_ip = False
        if is_ip:
            ip_entity = next((e for e in all_entities if e.entity_type == "IP_ADDRESS"), None)
            if ip_entity and ip_entity.name.split("/")[-1]:
                prevalence_id = ip_entity.name.split("/")[-1]
        try:
            prevalence_data = _summarize_entity_by_id(
                chronicle, prevalence_id, start_time, end_time, return_alerts=False, return_prevalence=True
            )
            result = prevalence_data.get("prevalenceResult", [])
            if result:
                summary.prevalence = [(_iso(p["prevalenceTime"]), int(p.get("count", 0))) for p in result]
            tpd = prevalence_data.get("tpdPrevalenceResult", [])
            for p in tpd or []:  # parsed (and so able to fail) though never printed
                _iso(p["prevalenceTime"])
                int(p.get("count", 0))
        except SecOpsAPIError as e:
            # The SDK print()s this to stdout (corrupting a stdio transport); the stand-in keeps stdout clean.
            print(f"Warning: Failed to retrieve prevalence data for {prevalence_id}: {e!s}", file=sys.stderr)
            summary.prevalence = None
    return summary


# --------------------------------------------------------------------------------------------------
# secops.chronicle.ioc.list_iocs and secops.chronicle.alert.get_alerts


def list_iocs(chronicle: Chronicle, start_time: datetime, end_time: datetime, max_matches: int) -> Any:
    params = {
        "timestampRange.startTime": start_time.strftime(_MICROS),
        "timestampRange.endTime": end_time.strftime(_MICROS),
        "maxMatchesToReturn": max_matches,
        "addMandiantAttributes": True,
        "fetchPrioritizedIocsOnly": False,
    }
    try:
        data = chronicle.request(
            "GET", "legacy:legacySearchEnterpriseWideIoCs", params=params, error_message="Failed to list IoCs"
        )
        if "matches" in data:
            for match in data["matches"]:
                for ts_field in ("iocIngestTimestamp", "firstSeenTimestamp", "lastSeenTimestamp"):
                    if ts_field in match:
                        match[ts_field] = match[ts_field].rstrip("Z")
                if "filterProperties" in match and "stringProperties" in match["filterProperties"]:
                    props = match["filterProperties"]["stringProperties"]
                    match["properties"] = {k: [v["rawValue"] for v in vals["values"]] for k, vals in props.items()}
                if "associationIdentifier" in match:
                    seen = set()
                    unique = []
                    for assoc in match["associationIdentifier"]:
                        key = (assoc["name"], assoc["associationType"])
                        if key not in seen:
                            seen.add(key)
                            unique.append(assoc)
                    match["associationIdentifier"] = unique
        return data
    except Exception as e:
        raise SecOpsAPIError(f"Failed to process IoCs response: {e!s}") from e


def _fix_json_formatting(data: str) -> str:
    if not data:
        return data
    data = data.replace("}\n{", "},\n{")
    data = re.sub(r",\s*]", "]", data)
    data = re.sub(r",\s*}", "}", data)
    if not data.startswith("[") and not data.endswith("]"):
        data = f"[{data}]"
    return data


async def get_alerts(
    chronicle: Chronicle, start_time: datetime, end_time: datetime, snapshot_query: str, max_alerts: int
) -> Any:
    params: dict[str, Any] = {
        "timeRange.startTime": start_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timeRange.endTime": end_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "snapshotQuery": snapshot_query,
    }
    if max_alerts:
        params["alertListOptions.maxReturnedAlerts"] = max_alerts
    params["enableCache"] = "ALERTS_FEATURE_PREFERENCE_ENABLED"

    complete = False
    attempts = 0
    final_result: Any = {}
    while not complete and attempts < 30:
        attempts += 1
        response = chronicle.send("GET", "legacy:legacyFetchAlertsView", params)
        if response.status != 200:
            raise SecOpsAPIError(f"Failed to get alerts: {wire_text(response)}")
        try:
            # requests' iter_lines(): the body split into non-empty lines, each re-terminated with "\n"
            lines = [line.decode("utf-8") for line in wire_text(response).encode("utf-8").splitlines() if line]
            result = json.loads(_fix_json_formatting("".join(line + "\n" for line in lines)))
            if isinstance(result, list) and len(result) > 0:
                merged: dict[str, Any] = {}
                for item in result:
                    for key, value in item.items():
                        if key not in merged:
                            merged[key] = value
                        elif isinstance(value, dict) and isinstance(merged[key], dict):
                            merged[key].update(value)
                        elif isinstance(value, list) and isinstance(merged[key], list):
                            merged[key].extend(value)
                result = merged
            final_result = result
            complete = result.get("complete", False)
            if not complete:
                await anyio.sleep(1.0)
        except ValueError as e:
            raise SecOpsAPIError(f"Failed to parse alerts response: {e!s}") from e
    if not complete and attempts >= 30:
        raise SecOpsAPIError("Alert search timed out after 30 attempts")
    return final_result


# --------------------------------------------------------------------------------------------------
# secops.chronicle.search.search_udm and nl_search.translate_nl_to_udm


def sdk_search_udm(
    chronicle: Chronicle, query: str, start_time: datetime, end_time: datetime, max_events: int | None
) -> dict[str, Any]:
    params = {
        "query": query,
        "timeRange.start_time": start_time.strftime(_MICROS),
        "timeRange.end_time": end_time.strftime(_MICROS),
        "limit": max_events,
    }
    result = chronicle.request("GET", ":udmSearch", params=params)
    events = result.get("events", [])
    return {
        "events": events,
        "total_events": len(events),
        "more_data_available": result.get("moreDataAvailable", False),
    }


def translate_nl_to_udm(chronicle: Chronicle, text: str) -> Any:
    result = chronicle.request(
        "POST", ":translateUdmQuery", json_body={"text": text}, error_message="Chronicle API request failed"
    )
    if "message" in result:
        raise SecOpsAPIError(result["message"])
    return result.get("query", "")


def parse_time_range(start_time: str | None, end_time: str | None, hours_back: int) -> tuple[datetime, datetime]:
    """secops_mcp.utils.parse_time_range."""
    if end_time:
        end_dt = datetime.fromisoformat(end_time)
        if end_dt.tzinfo is None:
            end_dt = end_dt.replace(tzinfo=UTC)
    else:
        end_dt = datetime.now(UTC)
    if start_time:
        start_dt = datetime.fromisoformat(start_time)
        if start_dt.tzinfo is None:
            start_dt = start_dt.replace(tzinfo=UTC)
    else:
        start_dt = end_dt - timedelta(hours=hours_back)
    if start_dt > end_dt:
        raise ValueError(f"Start time ({start_dt}) cannot be after end time ({end_dt})")
    return start_dt, end_dt


_ISO_HINT = "Use ISO 8601 format (e.g., 2023-01-01T12:00:00Z)"


# --------------------------------------------------------------------------------------------------
# The server


def build_server(backends: Backends) -> StandinServer:
    """The secops stand-in over ``backends.chronicle``."""
    api = backends.chronicle
    default_project = os.environ.get("CHRONICLE_PROJECT_ID", "725716774503")
    default_customer = os.environ.get("CHRONICLE_CUSTOMER_ID", "c3c6260c1c9340dcbbb802603bbf9636")
    default_region = os.environ.get("CHRONICLE_REGION", "us")
    base_override = os.environ.get("CHRONICLE_BASE_URL") or None
    server = StandinServer(SERVER_NAME, instructions=INSTRUCTIONS, version="0.7.1-offline", serialize_calls=True)
    tool = server.standin_tool

    def client(project_id: str | None, customer_id: str | None, region: str | None) -> Chronicle:
        project_id = project_id or default_project
        customer_id = customer_id or default_customer
        region = region or default_region
        if not project_id or not customer_id:
            raise ValueError(
                "Chronicle project_id and customer_id must be provided either as parameters or through "
                "environment variables (CHRONICLE_PROJECT_ID, CHRONICLE_CUSTOMER_ID)"
            )
        return Chronicle(api, project_id, customer_id, region, base_override)

    @tool(output=str)
    async def lookup_entity(
        entity_value: str,
        project_id: Optional[str] = None,  # noqa: UP045 - the real signature, for an identical inputSchema
        customer_id: Optional[str] = None,  # noqa: UP045
        hours_back: int = 24,
        region: Optional[str] = None,  # noqa: UP045
    ) -> Any:
        """Look up an entity (IP, domain, hash, ...) in Chronicle SIEM (offline stand-in: bundled fixtures)."""
        try:
            chronicle = client(project_id, customer_id, region)
            end_time = datetime.now(UTC)
            start_time = end_time - timedelta(hours=hours_back)
            summary = summarize_entity(chronicle, entity_value, start_time, end_time)
            if summary.primary_entity is None:
                return f"No information found for entity: {entity_value}"
            primary = summary.primary_entity
            first_seen: Any = "Unknown"
            last_seen: Any = "Unknown"
            if primary.metric:
                first_seen, last_seen = primary.metric
            result = f"Entity Summary for {entity_value}:\n\n"
            result += "Primary Entity:\n"
            result += f"Entity Type: {primary.entity_type}\n"
            result += f"First Seen: {first_seen}\n"
            result += f"Last Seen: {last_seen}\n\n"
            related = summary.related_entities
            if related:
                result += f"Related Entities ({len(related)}):\n"
                for i, entity in enumerate(related[:5], 1):
                    result += f"{i}. Type: {entity.entity_type}\n"
                if len(related) > 5:
                    result += f"... and {len(related) - 5} more related entities\n"
                result += "\n"
            if summary.alert_counts:
                result += "Associated Alerts:\n"
                for rule, count in summary.alert_counts:
                    result += f"- Rule: {rule}, Count: {count}\n"
                if summary.has_more_alerts:
                    result += "(More alerts available)\n"
                result += "\n"
            if summary.timeline_buckets:
                result += "Timeline Summary:\n"
                result += f"Total Events: {sum(events for _, events in summary.timeline_buckets)}\n"
                result += f"Total Alerts: {sum(alerts for alerts, _ in summary.timeline_buckets)}\n\n"
            if summary.prevalence:
                result += "Prevalence Information Available\n\n"
            return result
        except Exception as e:
            return f"Error looking up entity: {e!s}"

    @tool(output=str)
    async def get_ioc_matches(
        project_id: Optional[str] = None,  # noqa: UP045
        customer_id: Optional[str] = None,  # noqa: UP045
        hours_back: int = 24,
        max_matches: int = 20,
        region: Optional[str] = None,  # noqa: UP045
    ) -> Any:
        """IoC matches from Chronicle threat-intel feeds (offline stand-in: bundled fixtures)."""
        try:
            chronicle = client(project_id, customer_id, region)
            end_time = datetime.now(UTC)
            start_time = end_time - timedelta(hours=hours_back)
            iocs = list_iocs(chronicle, start_time, end_time, max_matches)
            matches: Any = []
            if isinstance(iocs, dict) and "matches" in iocs:
                matches = iocs.get("matches", [])
            elif isinstance(iocs, list):
                matches = iocs
            if not matches:
                return "No IoC matches found for the specified time range."
            result = f"Found {len(matches)} IoC matches:\n\n"
            for i, match in enumerate(matches, 1):
                indicator_type: Any = "Unknown"
                indicator_value: Any = "Unknown"
                sources: Any = []
                if isinstance(match, dict):
                    indicator = match.get("artifactIndicator")
                    if "artifactIndicator" in match and isinstance(indicator, dict) and indicator:
                        indicator_type = next(iter(indicator.keys()), "Unknown")
                        indicator_value = next(iter(indicator.values()), "Unknown")
                    sources = match.get("sources", [])
                sources_str = ", ".join(sources) if sources else "Unknown"
                result += f"IoC {i}:\n"
                result += f"Type: {indicator_type}\n"
                result += f"Value: {indicator_value}\n"
                result += f"Sources: {sources_str}\n\n"
            return result
        except Exception as e:
            return f"Error retrieving IoC matches: {e!s}"

    @tool(output=str)
    async def get_security_alerts(
        project_id: Optional[str] = None,  # noqa: UP045
        customer_id: Optional[str] = None,  # noqa: UP045
        hours_back: int = 24,
        max_alerts: int = 10,
        status_filter: str = 'feedback_summary.status != "CLOSED"',
        region: Optional[str] = None,  # noqa: UP045
    ) -> Any:
        """Recent Chronicle SIEM alerts (offline stand-in: bundled fixtures)."""
        try:
            chronicle = client(project_id, customer_id, region)
            end_time = datetime.now(UTC)
            start_time = end_time - timedelta(hours=hours_back)
            response = await get_alerts(chronicle, start_time, end_time, status_filter, max_alerts)
            if isinstance(response, dict):
                alert_list = response.get("alerts", {}).get("alerts", [])
            else:
                alert_list = response if isinstance(response, list) else []
            if not alert_list:
                return "No security alerts found for the specified time range."
            result = f"Found {len(alert_list)} security alerts:\n\n"
            for i, alert in enumerate(alert_list, 1):
                if "detection" in alert and isinstance(alert["detection"], list) and len(alert["detection"]) > 0:
                    rule_name = alert["detection"][0].get("ruleName", "Unknown Rule")
                else:
                    rule_name = alert.get("ruleName", "Unknown Rule")
                created_time = alert.get("createdTime", "Unknown")
                feedback = alert.get("feedbackSummary") if "feedbackSummary" in alert else None
                status = "Unknown"
                severity = "Unknown"
                if isinstance(feedback, dict):
                    status = feedback.get("status", "Unknown")
                    severity = feedback.get("severityDisplay", "Unknown")
                else:
                    if "status" in alert:
                        status = alert.get("status", "Unknown")
                    if "severity" in alert:
                        severity = alert.get("severity", "Unknown")
                result += f"Alert {i}:\n"
                result += f"Rule: {rule_name}\n"
                result += f"Created: {created_time}\n"
                result += f"Status: {status}\n"
                result += f"Severity: {severity}\n"
                case_name = alert.get("caseName")
                if case_name:
                    result += f"Associated Case: {case_name}\n"
                result += "\n"
            return json.dumps(result)
        except Exception as e:
            return f"Error retrieving security alerts: {e!s}"

    @tool(output=TypingDict)
    async def search_udm(
        query: str,
        hours_back: int = 24,
        start_time: Optional[str] = None,  # noqa: UP045
        end_time: Optional[str] = None,  # noqa: UP045
        max_events: Optional[int] = None,  # noqa: UP045
        project_id: str = None,  # type: ignore[assignment]  # noqa: RUF013 - as declared upstream
        customer_id: str = None,  # type: ignore[assignment]  # noqa: RUF013
        region: str = None,  # type: ignore[assignment]  # noqa: RUF013
    ) -> Any:
        """Run a UDM query over Chronicle events (offline stand-in: bundled fixtures)."""
        try:
            try:
                start_dt, end_dt = parse_time_range(start_time, end_time, hours_back)
            except ValueError as e:
                return {"error": f"Error parsing date format: {e!s}. {_ISO_HINT}", "events": []}
            chronicle = client(project_id, customer_id, region)
            return sdk_search_udm(chronicle, query, start_dt, end_dt, max_events)
        except Exception as e:
            return {"error": str(e), "events": []}

    @tool(output=TypingDict)
    async def search_security_events(
        text: str,
        project_id: Optional[str] = None,  # noqa: UP045
        customer_id: Optional[str] = None,  # noqa: UP045
        hours_back: int = 24,
        start_time: Optional[str] = None,  # noqa: UP045
        end_time: Optional[str] = None,  # noqa: UP045
        max_events: int = 100,
        region: Optional[str] = None,  # noqa: UP045
    ) -> Any:
        """Search Chronicle events with natural language, translated to UDM (offline stand-in)."""
        try:
            try:
                start_dt, end_dt = parse_time_range(start_time, end_time, hours_back)
            except ValueError as e:
                error = f"Error parsing date format: {e!s}. {_ISO_HINT}"
                return {"udm_query": None, "events": {"error": error, "events": [], "total_events": 0}}
            chronicle = client(project_id, customer_id, region)
            udm_query = translate_nl_to_udm(chronicle, text)
            events: Any = sdk_search_udm(chronicle, udm_query, start_dt, end_dt, max_events)
            if not (isinstance(events, dict) and "events" in events):
                event_list = events if isinstance(events, list) else []
                events = {"events": event_list, "total_events": len(event_list)}
            return {"udm_query": udm_query, "events": events}
        except Exception as e:
            return {"udm_query": None, "events": {"error": str(e), "events": [], "total_events": 0}}

    return server
