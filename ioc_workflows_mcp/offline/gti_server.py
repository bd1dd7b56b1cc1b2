"""Offline stand-in for gti-mcp 0.1.3 (Google Threat Intelligence over VirusTotal v3, via vt-py 0.22.0).

Same tool names, parameters, defaults and outputs as the real server for the tools our workflows use.
Each tool sends the request vt-py would send (path relative to ``/api/v3``, same query parameters) to the
in-process :class:`~ioc_workflows_mcp.offline.backend.VirusTotalAPI` and shapes the answer the way
gti-mcp + vt-py do:

* vt-py's error mapping: 200 is data; a 4xx with a JSON ``{"error": {"code", "message"}}`` body is
  ``APIError(code, message)``; any other 4xx is ``APIError("ClientError", text)``; anything else
  ``APIError("ServerError", text)``.
* ``Object.from_dict``/``to_dict``: keeps ``type``, ``attributes``, ``id`` (when truthy),
  ``relationships`` and ``context_attributes`` (when non-empty), in that order; drops ``links``/``meta``.
* report tools (``fetch_object``): ``APIError`` -> ``{"error": "VirusTotal API Error: <code> - <message>",
  "details": ...}``, other failures -> ``{"error": "An unexpected internal error occurred."}``, both with
  isError=false; ``attributes.aggregations`` removed; then ``sanitize_response``, which drops empty
  strings and ``None`` recursively (``get_collection_report`` skips it).
* relationship and search tools page with ``meta.cursor`` (``?cursor=``), cap at ``limit`` client-side and
  raise on errors: relationships through an ``asyncio.TaskGroup`` (so the text is
  ``unhandled errors in a TaskGroup (1 sub-exception)``), ``search_iocs`` directly.
"""

import asyncio
import base64
import json
import logging
import os
import re
import typing
from typing import Any
from urllib.parse import urlencode

from ioc_workflows_mcp.upstream.gti import ALLOWED_RELATIONSHIPS

from ._fastmcp1 import StandinServer, wire_json, wire_text
from .backend import VT_API_ROOT, Backends, Response, VirusTotalAPI

logger = logging.getLogger("ioc_workflows_mcp.offline.gti")

SERVER_NAME = "gti-offline-standin"
INSTRUCTIONS = (
    "OFFLINE STAND-IN for gti-mcp (Google Threat Intelligence). It serves bundled fixture recordings, not "
    "live VirusTotal/GTI data. Tool names, arguments and output formats match gti-mcp 0.1.3."
)

# Relationship names gti-mcp 0.1.3 accepts per object type, in its own order (the error text lists them):
# one list, kept beside the facade that calls the real server; the likeness test checks it against that server.
DOMAIN_RELATIONSHIPS = list(ALLOWED_RELATIONSHIPS["domain"])
IP_RELATIONSHIPS = list(ALLOWED_RELATIONSHIPS["ip"])
FILE_RELATIONSHIPS = list(ALLOWED_RELATIONSHIPS["file"])
URL_RELATIONSHIPS = list(ALLOWED_RELATIONSHIPS["url"])
COLLECTION_RELATIONSHIPS = [
    "associations", "attack_techniques", "domains", "files", "ip_addresses", "urls", "threat_actors",
    "malware_families", "software_toolkits", "campaigns", "vulnerabilities", "reports",
    "suspected_threat_actors", "hunting_rulesets",
]  # fmt: skip
FILE_REPORT_RELATIONSHIPS = [
    "contacted_domains", "contacted_ips", "contacted_urls", "dropped_files", "embedded_domains",
    "embedded_ips", "embedded_urls", "associations",
]  # fmt: skip

ReportDict = typing.Dict[str, typing.Any]  # noqa: UP006 - 1.x wraps typing.Dict (not dict[...]) in {"result": ...}
RelatedList = list[dict[str, typing.Any]]


# --------------------------------------------------------------------------------------------------
# vt-py, as far as the tools below use it


class VTAPIError(Exception):
    """``vt.APIError``: ``str()`` is the tuple ``(code, message)``."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(code, message)


_JSON_MIME = re.compile(r"^application/(?:[\w.+-]+?\+)?json")  # aiohttp's test in ClientResponse.json()


def vt_root() -> str:
    """The API root vt-py puts in URLs quoted by error texts: production's, or ``$GTI_BASE_URL/api/v3``
    (the variable the real-server launcher uses to point vt-py at a loopback fake)."""
    base = os.environ.get("GTI_BASE_URL")
    return f"{base.rstrip('/')}/api/v3" if base else VT_API_ROOT


def _mime_type(content_type: str) -> str:
    """aiohttp's ``ClientResponse.content_type``: the media type without parameters, lower-case."""
    return content_type.split(";", 1)[0].strip().lower()


def _json_body(response: Response, url: str) -> Any:
    """aiohttp ``ClientResponse.json()``: refuses a non-JSON content type; an empty body is ``None``."""
    content_type = response.content_type.lower()
    if not _JSON_MIME.match(content_type):
        message = f"Attempt to decode JSON with unexpected mimetype: {content_type}"
        raise ValueError(f"{response.status}, message={message!r}, url={url!r}")
    if not wire_text(response).strip():
        return None
    return wire_json(response)


def _vt_get_json(api: VirusTotalAPI, path: str, params: dict[str, str] | None = None) -> Any:
    """``Client.get_json_async``: GET ``/api/v3`` + path, raising ``VTAPIError`` for HTTP errors."""
    path = path.format()  # vt-py formats every path; stray braces raise as they do there
    params = dict(params or {})
    url = vt_root() + path + (f"?{urlencode(params)}" if params else "")
    response = api.get(path, params)
    if response.status == 200:
        return _json_body(response, url)
    if 400 <= response.status <= 499:
        if _mime_type(response.content_type) == "application/json":
            error = _json_body(response, url).get("error")
            if error:
                raise VTAPIError(error["code"], str(error.get("message")))
        raise VTAPIError("ClientError", wire_text(response))
    raise VTAPIError("ServerError", wire_text(response))


class VTObject:
    """``vt.Object`` reduced to what ``from_dict``/``to_dict`` do."""

    _READ_ONLY = frozenset({"id", "type", "context_attributes", "relationships", "error"})

    def __init__(self, obj_dict: Any) -> None:
        if not isinstance(obj_dict, dict):
            raise ValueError(f"Expecting dictionary, got: {type(obj_dict).__name__}")
        for key in ("type", "id"):
            if key not in obj_dict:
                raise ValueError(f"Object {key} not found")
        attributes = obj_dict.get("attributes")
        if not isinstance(attributes, dict | type(None)):
            raise ValueError("Object attributes must be a dictionary")
        self.type = obj_dict["type"]
        self.id = obj_dict["id"]
        self.attributes: dict[str, Any] = {}
        for name, value in (attributes or {}).items():
            if name in self._READ_ONLY:  # setattr on a vt.Object property without a setter
                raise AttributeError(f"property '{name}' of 'Object' object has no setter")
            self.attributes[name] = value
        self.context_attributes = obj_dict.get("context_attributes") or {}
        self.relationships = obj_dict.get("relationships") or {}
        self.error = obj_dict.get("error")

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"type": self.type, "attributes": {}}
        if self.id:
            result["id"] = self.id
        public = {k: v for k, v in self.attributes.items() if not k.startswith("_")}
        if public:
            result["attributes"] = public
        if self.relationships:
            result["relationships"] = self.relationships
        if self.context_attributes:
            result["context_attributes"] = self.context_attributes
        return json.loads(json.dumps(result))  # a deep copy, like to_plain_dict


def _object_from_response(json_response: Any) -> VTObject:
    """``Client._response_to_object``."""
    try:
        if "data" not in json_response:
            raise ValueError("response does not returns a data field")
        return VTObject(json_response["data"])
    except ValueError as err:
        raise ValueError(f"response is not an object: {err}") from err


def _vt_iterate(api: VirusTotalAPI, path: str, params: dict[str, str] | None, limit: int) -> list[VTObject]:
    """``vt.Iterator`` with ``batch_size=0``: follows ``meta.cursor``, stops at ``limit`` (0 = no limit)."""
    out: list[VTObject] = []
    items: list[Any] = []
    server_cursor: Any = None
    count = 0
    while True:
        if limit and count == limit:
            return out
        if not items and ((server_cursor and count) or count == 0):
            batch_params = dict(params or {})
            if server_cursor:
                batch_params["cursor"] = server_cursor
            json_resp = _vt_get_json(api, path, batch_params)
            if not isinstance(json_resp.get("data"), list):
                raise ValueError(f"{vt_root()}{path} is not a collection")
            meta = json_resp.get("meta", {})
            items = json_resp["data"][0:]
            server_cursor = meta.pop("cursor", None)
        if not items and not server_cursor:
            return out
        item = items.pop(0)
        count += 1
        out.append(VTObject(item))


# --------------------------------------------------------------------------------------------------
# gti-mcp's helpers (gti_mcp/utils.py)


def _fetch_object(
    api: VirusTotalAPI,
    collection: str,
    resource_type: str,
    resource_id: str,
    relationships: list[str],
    params: dict[str, str],
) -> dict[str, Any]:
    params = dict(params)
    if relationships:
        params["relationships"] = ",".join(relationships)
    try:
        obj = _object_from_response(_vt_get_json(api, f"/{collection}/{resource_id}", params))
        if obj.error:
            return {"error": f"Failed to get main {resource_type} report: {obj.error}"}
    except VTAPIError as e:
        return {
            "error": f"VirusTotal API Error: {e.code} - {e.message}",
            "details": f"The requested {resource_type} '{resource_id}' could not be found or there was an "
            "issue with the API request.",
        }
    except Exception:
        logger.exception("unexpected error fetching %s %s", resource_type, resource_id)
        return {"error": "An unexpected internal error occurred."}
    obj_dict = obj.to_dict()
    obj_dict["id"] = obj.id
    obj_dict["attributes"].pop("aggregations", None)
    return obj_dict


async def _fetch_relationships(
    api: VirusTotalAPI,
    collection: str,
    resource_id: str,
    relationship: str,
    descriptors_only: bool,
    limit: int,
) -> list[dict[str, Any]]:
    descriptors = "/relationship" if descriptors_only else ""
    path = f"/{collection}/{resource_id}{descriptors}/{relationship}"

    async def consume() -> list[VTObject]:
        return _vt_iterate(api, path, None, limit)

    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(consume())
    items = []
    for obj in task.result():
        obj_dict = obj.to_dict()
        if "aggregations" in obj_dict["attributes"]:
            del obj_dict["attributes"]["aggregations"]
        items.append(obj_dict)
    return items


def sanitize_response(data: Any) -> Any:
    """gti-mcp's ``sanitize_response``: drops empty strings and ``None`` values, recursively."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            clean = sanitize_response(value)
            if clean is not None:
                out[key] = clean
        return out
    if isinstance(data, list):
        return [clean for clean in (sanitize_response(v) for v in data) if clean is not None]
    if isinstance(data, str):
        return data or None
    return data


def url_to_base64(url: str) -> str:
    """gti-mcp's URL identifier: standard (not URL-safe) base64 without ``=`` padding."""
    return base64.b64encode(url.encode("utf-8")).decode("utf-8").rstrip("=")


def _unknown_relationship(name: str, allowed: list[str]) -> dict[str, str]:
    return {"error": f"Relationship {name} does not exist. Available relationships are: {','.join(allowed)}"}


# --------------------------------------------------------------------------------------------------
# The server


def build_server(backends: Backends) -> StandinServer:
    """The gti stand-in over ``backends.vt``."""
    api = backends.vt
    server = StandinServer(SERVER_NAME, instructions=INSTRUCTIONS, version="0.1.3-offline")
    tool = server.standin_tool
    excluded = {"exclude_attributes": "last_analysis_results"}

    @tool(output=ReportDict)
    async def get_domain_report(domain: str) -> Any:
        """Get a domain report from Google Threat Intelligence (offline stand-in: bundled fixtures)."""
        return sanitize_response(_fetch_object(api, "domains", "domain", domain, ["associations"], excluded))

    @tool(output=RelatedList)
    async def get_entities_related_to_a_domain(
        domain: str, relationship_name: str, descriptors_only: bool, limit: int = 10
    ) -> Any:
        """Entities related to a domain (offline stand-in: bundled fixtures)."""
        if relationship_name not in DOMAIN_RELATIONSHIPS:
            return _unknown_relationship(relationship_name, DOMAIN_RELATIONSHIPS)
        res = await _fetch_relationships(api, "domains", domain, relationship_name, descriptors_only, limit)
        return sanitize_response(res)

    @tool(output=ReportDict)
    async def get_ip_address_report(ip_address: str) -> Any:
        """Get an IP address report from Google Threat Intelligence (offline stand-in: bundled fixtures)."""
        return sanitize_response(_fetch_object(api, "ip_addresses", "ip", ip_address, ["associations"], excluded))

    @tool(output=RelatedList)
    async def get_entities_related_to_an_ip_address(
        ip_address: str, relationship_name: str, descriptors_only: bool, limit: int = 10
    ) -> Any:
        """Entities related to an IP address (offline stand-in: bundled fixtures)."""
        if relationship_name not in IP_RELATIONSHIPS:
            return _unknown_relationship(relationship_name, IP_RELATIONSHIPS)
        res = await _fetch_relationships(api, "ip_addresses", ip_address, relationship_name, descriptors_only, limit)
        return sanitize_response(res)

    @tool(output=ReportDict)
    async def get_file_report(hash: str) -> Any:
        """Get a file report by MD5/SHA-1/SHA-256 (offline stand-in: bundled fixtures)."""
        return sanitize_response(_fetch_object(api, "files", "file", hash, FILE_REPORT_RELATIONSHIPS, excluded))

    @tool(output=RelatedList)
    async def get_entities_related_to_a_file(
        hash: str, relationship_name: str, descriptors_only: bool, limit: int = 10
    ) -> Any:
        """Entities related to a file (offline stand-in: bundled fixtures)."""
        if relationship_name not in FILE_RELATIONSHIPS:
            return _unknown_relationship(relationship_name, FILE_RELATIONSHIPS)
        res = await _fetch_relationships(api, "files", hash, relationship_name, descriptors_only, limit)
        return sanitize_response(res)

    @tool(output=ReportDict)
    async def get_url_report(url: str) -> Any:
        """Get a URL report from Google Threat Intelligence (offline stand-in: bundled fixtures)."""
        url_id = url_to_base64(url)
        return sanitize_response(_fetch_object(api, "urls", "url", url_id, ["associations"], excluded))

    @tool(output=RelatedList)
    async def get_entities_related_to_an_url(
        url: str, relationship_name: str, descriptors_only: bool, limit: int = 10
    ) -> Any:
        """Entities related to a URL (offline stand-in: bundled fixtures)."""
        if relationship_name not in URL_RELATIONSHIPS:
            return _unknown_relationship(relationship_name, URL_RELATIONSHIPS)
        url_id = url_to_base64(url)
        res = await _fetch_relationships(api, "urls", url_id, relationship_name, descriptors_only, limit)
        return sanitize_response(res)

    @tool(output=ReportDict)
    async def get_collection_report(id: str) -> Any:
        """Get a GTI collection (threat actor, malware family, campaign, report, ...) (offline stand-in)."""
        return _fetch_object(
            api, "collections", "collection", id, ["associations"], {"exclude_attributes": "aggregations"}
        )

    @tool(output=typing.List[typing.Dict[str, typing.Any]])  # noqa: UP006
    async def get_entities_related_to_a_collection(
        id: str, relationship_name: str, limit: int = 10, descriptors_only: bool = True
    ) -> Any:
        """Entities related to a GTI collection (offline stand-in: bundled fixtures)."""
        if relationship_name not in COLLECTION_RELATIONSHIPS:
            return _unknown_relationship(relationship_name, COLLECTION_RELATIONSHIPS)
        res = await _fetch_relationships(api, "collections", id, relationship_name, descriptors_only, limit)
        return sanitize_response(res)

    @tool(output=typing.List[typing.Dict[str, typing.Any]])  # noqa: UP006
    async def search_iocs(query: str, limit: int = 10, order_by: str = "last_submission_date-") -> Any:
        """Search IOCs in Google Threat Intelligence (offline stand-in: bundled fixtures)."""
        res = _vt_iterate(api, "/intelligence/search", {"query": query, "order": order_by}, limit)
        return sanitize_response([o.to_dict() for o in res])

    return server
