"""Offline stand-in for secops-soar-mcp 0.1.2 (Google SecOps SOAR REST via aiohttp).

Same tool names, parameters, defaults and outputs as the real server's 10 core tools. Each tool sends the
request the real ``HttpClient`` sends (same path, query and JSON body) to the in-process
:class:`~ioc_workflows_mcp.offline.backend.SoarAPI` and returns the JSON body verbatim, so FastMCP 1.x turns
a dict into one text block and a list into one block per element, with no structuredContent. Any HTTP
error (or, for GETs, a body that is not ``application/json``) makes the tool return ``None``: zero content
blocks and isError=false. Start-up fetches ``GetScopes`` first; if that fails the process logs an error
and exits 0 before the MCP handshake, as the real server does.
"""

import asyncio
import copy
import logging
import re
from typing import Annotated, Any, Optional

from pydantic import Field

from ._fastmcp1 import StandinServer, wire_json, wire_text
from .backend import Backends, Response, SoarAPI

logger = logging.getLogger("ioc_workflows_mcp.offline.soar")

SERVER_NAME = "soar-offline-standin"
INSTRUCTIONS = (
    "OFFLINE STAND-IN for secops-soar-mcp (Google SecOps SOAR). It serves bundled fixture recordings, not a "
    "live SOAR tenant. Tool names, arguments and output formats match secops-soar-mcp 0.1.2."
)

GET_SCOPES = "/api/external/v1/settings/GetScopes"
BASE_CASE_URL = "/api/1p/external/v1/cases"
BASE_SPECIFIC_CASE_URL = BASE_CASE_URL + "/{CASE_ID}"
BASE_CASE_COMMENTS_URL = BASE_SPECIFIC_CASE_URL + "/comments"
BASE_ALERT_URL = "/api/1p/external/v1.0/cases/{CASE_ID}/caseAlerts"
LIST_ALERT_GROUP_IDENTIFIERS_BY_CASE = BASE_ALERT_URL + "?$select=alertGroupIdentifier"
LIST_INVOLVED_EVENTS_BY_ALERT = "/api/1p/external/v1.0/cases/{CASE_ID}/alerts/{ALERT_ID}/involvedEvents"
GET_ALERT_GROUP_IDENTIFIERS_ENTITIES = "/api/external/v1/case-overview/GetAlertsEntities"
FETCH_FULL_UNIQUE_ENTITY = "/api/external/v1/entities/GetEntityData"
SEARCH_ENTITY = "/api/external/v1.0/entity-search/entities"

_JSON_MIME = re.compile(r"^application/(?:[\w.+-]+?\+)?json")  # aiohttp's test in ClientResponse.json()


class SoarHttpClient:
    """The real ``secops_soar_mcp.http_client.HttpClient`` over the emulated API: ``None`` on any failure."""

    def __init__(self, api: SoarAPI) -> None:
        self.api = api

    def _send(self, method: str, endpoint: str, params: dict[str, str] | None, body: Any = None) -> Response:
        path, _, query = endpoint.partition("?")  # a query inside the endpoint string is merged with params
        merged: dict[str, str] = {}
        for pair in filter(None, query.split("&")):
            key, _, value = pair.partition("=")
            merged[key] = value
        merged.update(params or {})
        return self.api.request(method, path, merged, body)

    async def get(self, endpoint: str, params: dict[str, str] | None = None) -> Any:
        try:
            response = self._send("GET", endpoint, params)
            if response.status >= 400:
                logger.debug("HTTP error occurred: %s %s", response.status, endpoint)
                return None
            if not _JSON_MIME.match(response.content_type.lower()):
                logger.debug("unexpected mimetype %s for %s", response.content_type, endpoint)
                return None
            return wire_json(response) if wire_text(response).strip() else None
        except Exception as e:
            logger.debug("An error occurred: %s", e)
            return None

    async def post(self, endpoint: str, req: Any = None, params: dict[str, str] | None = None) -> Any:
        return self._write("POST", endpoint, req, params)

    async def patch(self, endpoint: str, req: Any = None, params: dict[str, str] | None = None) -> Any:
        # PATCH responses go through aiohttp's .json(), like GETs
        try:
            response = self._send("PATCH", endpoint, params, req)
            if response.status >= 400 or not _JSON_MIME.match(response.content_type.lower()):
                return None
            return wire_json(response) if wire_text(response).strip() else None
        except Exception as e:
            logger.debug("An error occurred: %s", e)
            return None

    def _write(self, method: str, endpoint: str, req: Any, params: dict[str, str] | None) -> Any:
        # POST responses are read raw and json.loads()-ed: no content-type check, an empty body fails
        try:
            response = self._send(method, endpoint, params, copy.deepcopy(req))
            if response.status >= 400:
                logger.debug("HTTP error occurred: %s %s", response.status, endpoint)
                return None
            return wire_json(response)
        except Exception as e:
            logger.debug("An error occurred: %s", e)
            return None


async def fetch_scopes(api: SoarAPI) -> set[Any]:
    """``bindings.bind()``: the start-up call that must succeed. Raises ``RuntimeError`` otherwise."""
    scopes = await SoarHttpClient(api).get(GET_SCOPES)
    if scopes is None:
        raise RuntimeError(
            "Failed to fetch valid scopes from SOAR, please make sure you have configured the right SOAR "
            "credentials. Shutting down..."
        )
    return set(scopes)


_PAGE_TOKEN = Field(default=None, description="The nextPageToken to fetch the next page of results.")
_CASE_ID = Field(..., description="The ID of the case.")
_PRIORITIES = [
    "PriorityUnspecified",
    "PriorityInfo",
    "PriorityLow",
    "PriorityMedium",
    "PriorityHigh",
    "PriorityCritical",
]


def build_server(backends: Backends) -> StandinServer:
    """The SOAR stand-in over ``backends.soar`` (no structuredContent on any tool, as in 1.x)."""
    http = SoarHttpClient(backends.soar)
    server = StandinServer(SERVER_NAME, instructions=INSTRUCTIONS, version="0.1.2-offline")
    tool = server.standin_tool

    @tool()
    async def list_cases(next_page_token: Annotated[Optional[str], _PAGE_TOKEN]) -> Any:  # noqa: UP045
        """List SOAR cases (offline stand-in: bundled fixtures)."""
        if next_page_token:
            return await http.get(BASE_CASE_URL, params={"$expand": "tags", "pageToken": next_page_token})
        return await http.get(BASE_CASE_URL)

    @tool()
    async def post_case_comment(
        case_id: Annotated[str, _CASE_ID],
        comment: Annotated[str, Field(..., description="The comment we wish to add to the case.")],
    ) -> Any:
        """Add a comment to a SOAR case (offline stand-in: changes this process's fixture state only)."""
        return await http.post(BASE_CASE_COMMENTS_URL.format(CASE_ID=case_id), req={"Comment": comment})

    @tool()
    async def list_alerts_by_case(
        case_id: Annotated[str, _CASE_ID],
        next_page_token: Annotated[Optional[str], _PAGE_TOKEN],  # noqa: UP045
    ) -> Any:
        """List the alerts of a SOAR case (offline stand-in: bundled fixtures)."""
        if next_page_token:
            return await http.get(BASE_ALERT_URL.format(CASE_ID=case_id), params={"pageToken": next_page_token})
        return await http.get(BASE_ALERT_URL.format(CASE_ID=case_id))

    @tool()
    async def list_alert_group_identifiers_by_case(
        case_id: Annotated[str, _CASE_ID],
        next_page_token: Annotated[Optional[str], _PAGE_TOKEN],  # noqa: UP045
    ) -> Any:
        """List the alert group identifiers of a SOAR case (offline stand-in: bundled fixtures)."""
        endpoint = LIST_ALERT_GROUP_IDENTIFIERS_BY_CASE.format(CASE_ID=case_id)
        if next_page_token:
            return await http.get(endpoint, params={"pageToken": next_page_token})
        return await http.get(endpoint)

    @tool()
    async def list_events_by_alert(
        case_id: Annotated[str, _CASE_ID],
        alert_id: Annotated[str, Field(..., description="The ID of the alert.")],
        next_page_token: Annotated[Optional[str], _PAGE_TOKEN],  # noqa: UP045
    ) -> Any:
        """List the events involved in a SOAR alert (offline stand-in: bundled fixtures)."""
        endpoint = LIST_INVOLVED_EVENTS_BY_ALERT.format(CASE_ID=case_id, ALERT_ID=alert_id)
        if next_page_token:
            return await http.get(endpoint, params={"pageToken": next_page_token})
        return await http.get(endpoint)

    @tool()
    async def change_case_priority(
        case_id: Annotated[str, _CASE_ID],
        case_priority: Annotated[
            str, Field(..., description="The priority of the case.", json_schema_extra={"enum": _PRIORITIES})
        ],
    ) -> Any:
        """Change a SOAR case's priority (offline stand-in: changes this process's fixture state only)."""
        return await http.patch(BASE_SPECIFIC_CASE_URL.format(CASE_ID=case_id), req={"Priority": case_priority})

    @tool()
    async def get_entities_by_alert_group_identifiers(
        case_id: Annotated[str, _CASE_ID],
        alert_group_identifiers: Annotated[list[str], Field(..., description="Identifiers for the alert groups.")],
    ) -> Any:
        """Entities of the given alert groups of a SOAR case (offline stand-in: bundled fixtures)."""
        return await http.post(
            GET_ALERT_GROUP_IDENTIFIERS_ENTITIES,
            req={"caseId": case_id, "alertGroupIdentifiers": alert_group_identifiers},
        )

    @tool()
    async def get_entity_details(
        entity_identifier: Annotated[str, Field(..., description="The identifier of the entity.")],
        entity_type: Annotated[str, Field(..., description="The type of the entity.")],
        entity_environment: Annotated[str, Field(..., description="The environment of the entity.")],
    ) -> Any:
        """Details of one SOAR entity (offline stand-in: bundled fixtures)."""
        return await http.post(
            FETCH_FULL_UNIQUE_ENTITY,
            req={
                "EntityIdentifier": entity_identifier,
                "EntityType": entity_type,
                "EntityEnvironment": entity_environment,
                "LastCaseType": 0,
                "CaseDistributionType": 0,
            },
        )

    @tool()
    async def search_entity(
        term: Annotated[Optional[str], Field(default=None, description="The term to search for")],  # noqa: UP045
        type: Annotated[Optional[list[str]], Field(default=None, description="The type of the entity")],  # noqa: UP045
        is_suspicious: Annotated[
            Optional[bool],  # noqa: UP045
            Field(default=None, description="A boolean that states if the entity is suspicious"),
        ],
        is_internal_asset: Annotated[
            Optional[bool],  # noqa: UP045
            Field(default=None, description="A boolean that states if the entity is an internal asset"),
        ],
        is_enriched: Annotated[
            Optional[bool],  # noqa: UP045
            Field(default=None, description="A boolean that states if the entity is enriched"),
        ],
        network_name: Annotated[Optional[list[str]], Field(default=None, description="The network name")],  # noqa: UP045
        environment_name: Annotated[
            Optional[list[str]],  # noqa: UP045
            Field(default=None, description="The environment name"),
        ],
    ) -> Any:
        """Search SOAR entities (offline stand-in: bundled fixtures)."""
        return await http.post(
            SEARCH_ENTITY,
            req={
                "Term": term,
                "Type": type,
                "IsSuspicious": is_suspicious,
                "IsInternalAsset": is_internal_asset,
                "IsEnriched": is_enriched,
                "NetworkName": network_name,
                "EnvironmentName": environment_name,
            },
        )

    @tool()
    async def get_case_full_details(case_id: Annotated[str, _CASE_ID]) -> Any:
        """A SOAR case with its alerts and comments (offline stand-in: bundled fixtures)."""
        results = await asyncio.gather(
            http.get(BASE_SPECIFIC_CASE_URL.format(CASE_ID=case_id)),
            http.get(BASE_ALERT_URL.format(CASE_ID=case_id)),
            http.get(BASE_CASE_COMMENTS_URL.format(CASE_ID=case_id)),
        )
        # "case_details:" (with the colon) is the real server's key
        return {"case_details:": results[0], "case_alerts": results[1], "case_comments": results[2]}

    return server
