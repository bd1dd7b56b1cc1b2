"""In-process emulation of the three backend HTTP APIs, serving the recordings under ``fixtures/``.

One emulation, two users: the bundled offline MCP stand-ins (``offline/*_server.py``) call it directly, and
the loopback HTTP fakes used with the real upstream MCP servers (``tests/upstream_support/``) put it behind
a socket. Both therefore see the same data and the same HTTP-level behaviour:

* :class:`VirusTotalAPI` answers paths relative to ``/api/v3`` the way VirusTotal v3 does: objects,
  relationship descriptors (``/relationship/{rel}`` and ``/relationships/{rel}``), full related objects
  (``/{rel}``), ``meta.cursor`` paging, md5/sha1/sha256 aliases for files, base64 and sha256 URL ids,
  ``exclude_attributes`` / ``attributes`` / ``relationships`` query parameters and the
  ``{"error": {"code", "message"}}`` envelope.
* :class:`ChronicleAPI` answers the endpoints after ``.../instances/{customer}`` that google-secops-mcp
  uses, with Google-style errors.
* :class:`SoarAPI` answers the SOAR REST paths secops-soar-mcp uses. Its timestamps are shifted by
  ``now - recorded_at`` so "last 30 days" windows keep meaning something.

Every API logs the requests it saw (``api.requests``) and accepts fault overrides (``api.inject``).
``fixtures/README.md`` documents the layout and what each indicator exercises.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = [
    "Backends",
    "ChronicleAPI",
    "Request",
    "Response",
    "SoarAPI",
    "VirusTotalAPI",
    "default_fixtures_dir",
    "google_error",
    "soar_error",
    "url_id",
    "vt_error",
]

JSON = Any
Matcher = str | Callable[["Request"], bool]

VT_API_ROOT = "https://www.virustotal.com/api/v3"
VT_DEFAULT_PAGE = 10  # VT's default page size when no `limit` is sent (vt-py sends none)
VT_MAX_PAGE = 40  # VT's maximum `limit` for relationships
VT_EMBED_LIMIT = 10  # descriptors embedded per relationship with `?relationships=`


# --------------------------------------------------------------------------------------------------
# Request / Response and error envelopes


@dataclass(frozen=True)
class Response:
    status: int
    body: Any  # JSON-serialisable (dict/list/str)
    content_type: str = "application/json"

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    body: Any = None


def vt_error(status: int, code: str, message: str) -> Response:
    """VirusTotal error envelope, e.g. ``vt_error(429, "QuotaExceededError", "Quota exceeded")``."""
    return Response(status, {"error": {"code": code, "message": message}})


_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def google_error(code: int, message: str, status: str | None = None) -> Response:
    """Google API error format used by Chronicle and by the SOAR 1p API."""
    return Response(
        code, {"error": {"code": code, "message": message, "status": status or _GOOGLE_STATUS.get(code, "UNKNOWN")}}
    )


def soar_error(status: int, message: str) -> Response:
    """SOAR error. The 1p API (``/api/1p/...``) answers in Google format; this is the legacy
    ``/api/external/...`` envelope (shape [uncertain], see fixtures/README.md)."""
    return Response(status, {"ErrorCode": status, "ErrorMessage": message})


def url_id(url: str) -> str:
    """VirusTotal URL identifier as gti-mcp builds it: standard base64 without ``=`` padding."""
    return base64.b64encode(url.encode()).decode().rstrip("=")


def url_sha256(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# Shared machinery: request log and fault overrides


_MAX_LOGGED = 10_000


class _FaultableAPI:
    """Request log plus fault overrides, shared by the three APIs."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._overrides: list[tuple[Matcher, Response, int | None]] = []
        self.requests: list[Request] = []

    def inject(self, match: Matcher, response: Response, *, times: int | None = None) -> None:
        """Answer matching requests with ``response``. ``match`` is a path prefix or a predicate on
        :class:`Request`. ``times`` limits how often it fires (``None`` = until :meth:`clear`).
        The most recent injection wins."""
        with self._lock:
            self._overrides.insert(0, (match, response, times))

    def clear(self) -> None:
        """Drop all injected overrides and the request log."""
        with self._lock:
            self._overrides.clear()
            self.requests.clear()

    def _dispatch(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
            if len(self.requests) > _MAX_LOGGED:  # long offline sessions: keep the recent half
                del self.requests[: _MAX_LOGGED // 2]
            for i, (match, response, times) in enumerate(self._overrides):
                hit = request.path.startswith(match) if isinstance(match, str) else match(request)
                if hit:
                    if times is not None:
                        if times <= 1:
                            del self._overrides[i]
                        else:
                            self._overrides[i] = (match, response, times - 1)
                    return response
            return self._route(request)

    def _route(self, request: Request) -> Response:  # pragma: no cover - overridden
        raise NotImplementedError


def _read_json(path: Path) -> JSON:
    return json.loads(path.read_text(encoding="utf-8"))


def _json_files(directory: Path) -> Iterator[Path]:
    if directory.is_dir():
        yield from sorted(directory.rglob("*.json"))


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"true", "1", "yes"}


# --------------------------------------------------------------------------------------------------
# VirusTotal v3

_VT_TYPES = {
    "domains": "domain",
    "ip_addresses": "ip_address",
    "urls": "url",
    "files": "file",
    "collections": "collection",
}
_VT_NOUN = {
    "domains": "Domain",
    "ip_addresses": "IP address",
    "urls": "URL",
    "files": "File",
    "collections": "Collection",
}
_TYPE_TO_COLLECTION = {v: k for k, v in _VT_TYPES.items()}
_REL_DESCRIPTORS = re.compile(r"(.+)/relationships?/([a-z_]+)")
_REL_OBJECTS = re.compile(r"(.+)/([a-z_]+)")


class _RelationshipList:
    """All related objects of one (object, relationship): recorded entries or a synthetic spec."""

    def __init__(self, entries: list[dict[str, Any]] | None = None, synthetic: Mapping[str, Any] | None = None):
        self._entries = entries or []
        self._synthetic = dict(synthetic) if synthetic else None

    def __len__(self) -> int:
        return int(self._synthetic["count"]) if self._synthetic else len(self._entries)

    @property
    def synthetic(self) -> bool:
        return self._synthetic is not None

    def slice(self, start: int, stop: int) -> list[dict[str, Any]]:
        if self._synthetic:
            return [_synthetic_object(self._synthetic, i) for i in range(start, min(stop, len(self)))]
        return self._entries[start:stop]


def _synthetic_object(spec: Mapping[str, Any], i: int) -> dict[str, Any]:
    """Deterministic related object number ``i`` of a synthetic relationship (kind ``file`` only)."""
    if spec.get("kind") != "file":
        raise ValueError(f"unsupported synthetic kind: {spec.get('kind')!r}")
    content = f"{spec['seed']}#{i}".encode()
    sha256 = hashlib.sha256(content).hexdigest()
    kinds = [
        ("Win32 EXE", "peexe", "exe"),
        ("PDF", "pdf", "pdf"),
        ("ZIP", "zip", "zip"),
        ("Android", "apk", "apk"),
        ("JavaScript", "javascript", "js"),
    ]
    type_description, type_tag, ext = kinds[i % len(kinds)]
    malicious = 3 + i % 20 if i % 97 == 0 else 0
    first = int(spec.get("base_time", 1_700_000_000)) - i * 3_607
    return {
        "type": "file",
        "id": sha256,
        "links": {"self": f"{VT_API_ROOT}/files/{sha256}"},
        "attributes": {
            "md5": hashlib.md5(content).hexdigest(),
            "sha1": hashlib.sha1(content).hexdigest(),
            "sha256": sha256,
            "size": 1_024 + (i * 7_919) % 900_000,
            "type_description": type_description,
            "type_tag": type_tag,
            "type_extension": ext,
            "meaningful_name": f"sample_{i:05d}.{ext}",
            "names": [f"sample_{i:05d}.{ext}"],
            "first_submission_date": first,
            "last_submission_date": first + 86_400,
            "last_analysis_date": first + 86_400,
            "times_submitted": 1 + i % 7,
            "reputation": -5 if malicious else 0,
            "last_analysis_stats": {
                "malicious": malicious,
                "suspicious": 0,
                "undetected": 70 - malicious,
                "harmless": 0,
                "timeout": 0,
                "failure": 0,
                "type-unsupported": 4,
            },
            "total_votes": {"harmless": 0, "malicious": 0},
            "tags": [type_tag],
        },
    }


def _descriptor(obj: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": obj["type"], "id": obj["id"]}
    if obj.get("context_attributes"):
        out["context_attributes"] = obj["context_attributes"]
    return out


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        offset = json.loads(raw)["offset"]
    except (ValueError, KeyError, TypeError):
        return None
    return offset if isinstance(offset, int) and offset >= 0 else None


def _query_string(params: Mapping[str, str]) -> str:
    from urllib.parse import urlencode

    return ("?" + urlencode(dict(params))) if params else ""


class VirusTotalAPI(_FaultableAPI):
    """VirusTotal v3 over ``fixtures/vt``. ``get(path, params)`` takes paths relative to ``/api/v3``."""

    def __init__(self) -> None:
        super().__init__()
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}  # (collection, canonical id) -> data
        self._aliases: dict[tuple[str, str], str] = {}  # (collection, alias) -> canonical id
        self._relationships: dict[tuple[str, str, str], _RelationshipList] = {}

    # ---- loading

    @classmethod
    def load(cls, vt_dir: Path) -> VirusTotalAPI:
        api = cls()
        for collection in _VT_TYPES:
            for path in _json_files(vt_dir / collection):
                api.add_object(collection, _read_json(path)["data"])
        for path in _json_files(vt_dir / "relationships"):
            record = _read_json(path)
            owner = record["owner"]
            collection = _TYPE_TO_COLLECTION[owner["type"]]
            api._relationships[(collection, owner["id"], record["relationship"])] = _RelationshipList(
                record.get("data"), record.get("synthetic")
            )
        api._know_inline_objects()
        return api

    def _know_inline_objects(self) -> None:
        """VirusTotal returns a full object in a relationship list only for an object it has: such an entry
        is served as that object's report too (with no recorded relationships of its own)."""
        for related in list(self._relationships.values()):
            for entry in related.slice(0, len(related) if not related.synthetic else 0):
                collection = _TYPE_TO_COLLECTION.get(str(entry.get("type")))
                if collection is None or "attributes" not in entry:
                    continue
                if self._resolve(collection, str(entry["id"])) is None:
                    self.add_object(collection, {k: entry[k] for k in ("id", "type", "attributes")})

    def add_object(self, collection: str, data: dict[str, Any]) -> None:
        oid = data["id"]
        self._objects[(collection, oid)] = data
        self._aliases[(collection, oid.lower())] = oid
        attrs = data.get("attributes", {})
        if collection == "files":
            for key in ("md5", "sha1", "sha256"):
                if attrs.get(key):
                    self._aliases[(collection, attrs[key].lower())] = oid
        elif collection == "urls" and attrs.get("url"):
            self._aliases[(collection, url_id(attrs["url"]))] = oid
            self._aliases[(collection, url_sha256(attrs["url"]))] = oid

    def _resolve(self, collection: str, raw_id: str) -> str | None:
        if collection == "urls":  # base64 ids are case-sensitive
            return self._aliases.get((collection, raw_id)) or self._aliases.get((collection, raw_id.lower()))
        return self._aliases.get((collection, raw_id.lower()))

    # ---- public entry point

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Response:
        return self._dispatch(Request("GET", path, dict(params or {})))

    # ---- routing

    def _route(self, request: Request) -> Response:
        if request.method != "GET":
            return vt_error(405, "MethodNotAllowedError", f"Method {request.method} not allowed")
        path, params = request.path, request.params
        parts = path.strip("/").split("/", 1)
        collection = parts[0]
        if collection not in _VT_TYPES or len(parts) < 2 or not parts[1]:
            return vt_error(404, "NotFoundError", f"Resource not found: {path}")
        rest = parts[1]
        oid = self._resolve(collection, rest)
        if oid is not None:
            return self._object(collection, oid, params)
        # "{id}/relationship(s)/{rel}" (descriptors) or "{id}/{rel}" (full objects). Greedy ids: a base64
        # URL id may itself contain "/", so the split that resolves to a stored object wins.
        for pattern, descriptors in ((_REL_DESCRIPTORS, True), (_REL_OBJECTS, False)):
            match = pattern.fullmatch(rest)
            if match and (oid := self._resolve(collection, match.group(1))) is not None:
                return self._related(collection, oid, match.group(2), descriptors, path, params)
        match = _REL_DESCRIPTORS.fullmatch(rest) or _REL_OBJECTS.fullmatch(rest)
        return self._not_found(collection, match.group(1) if match else rest)

    def _not_found(self, collection: str, raw_id: str) -> Response:
        return vt_error(404, "NotFoundError", f'{_VT_NOUN[collection]} "{raw_id}" not found')

    def _object(self, collection: str, oid: str, params: Mapping[str, str]) -> Response:
        data = copy.deepcopy(self._objects[(collection, oid)])
        attrs = data.setdefault("attributes", {})
        only = _csv(params.get("attributes"))
        if only:
            data["attributes"] = attrs = {k: v for k, v in attrs.items() if k in only}
        for key in _csv(params.get("exclude_attributes")):
            attrs.pop(key, None)
        rels = _csv(params.get("relationships"))
        if rels:
            data["relationships"] = {rel: self._embedded(collection, oid, rel) for rel in rels}
        return Response(200, {"data": data})

    def _rel_list(self, collection: str, oid: str, rel: str) -> _RelationshipList:
        # An unrecorded relationship of a known object is an empty list (gti-mcp validates names itself).
        return self._relationships.get((collection, oid, rel)) or _RelationshipList()

    def _embedded(self, collection: str, oid: str, rel: str) -> dict[str, Any]:
        items = self._rel_list(collection, oid, rel)
        base = f"{VT_API_ROOT}/{collection}/{oid}"
        out: dict[str, Any] = {
            "data": [_descriptor(self._full(o)) for o in items.slice(0, VT_EMBED_LIMIT)],
            "links": {"self": f"{base}/relationships/{rel}?limit={VT_EMBED_LIMIT}", "related": f"{base}/{rel}"},
        }
        if len(items) > VT_EMBED_LIMIT:
            cursor = _encode_cursor(VT_EMBED_LIMIT)
            out["meta"] = {"count": len(items), "cursor": cursor}
            out["links"]["next"] = f"{base}/relationships/{rel}?cursor={cursor}&limit={VT_EMBED_LIMIT}"
        elif items:
            out["meta"] = {"count": len(items)}
        return out

    def _full(self, entry: dict[str, Any]) -> dict[str, Any]:
        """A recorded entry without attributes refers to a stored object: expand it."""
        if "attributes" in entry:
            return entry
        stored = self._objects.get((_TYPE_TO_COLLECTION.get(entry["type"], ""), entry["id"]))
        if stored is None:
            return {"attributes": {}, **entry}
        merged = copy.deepcopy(stored)
        if entry.get("context_attributes"):
            merged["context_attributes"] = entry["context_attributes"]
        return merged

    def _related(
        self, collection: str, oid: str, rel: str, descriptors: bool, path: str, params: Mapping[str, str]
    ) -> Response:
        items = self._rel_list(collection, oid, rel)
        try:
            limit = int(params.get("limit", VT_DEFAULT_PAGE))
        except ValueError:
            return vt_error(400, "InvalidArgumentError", f"Invalid limit: {params['limit']}")
        limit = max(1, min(limit, VT_MAX_PAGE))
        offset = 0
        if params.get("cursor"):
            decoded = _decode_cursor(params["cursor"])
            if decoded is None:
                return vt_error(400, "InvalidArgumentError", f"Invalid cursor: {params['cursor']}")
            offset = decoded
        page = [self._full(o) for o in items.slice(offset, offset + limit)]
        data = [_descriptor(o) for o in page] if descriptors else copy.deepcopy(page)
        meta: dict[str, Any] = {"count": len(items)}
        links = {"self": f"{VT_API_ROOT}{path}{_query_string(params)}"}
        if page and offset + limit < len(items):  # never a cursor with empty data
            cursor = _encode_cursor(offset + limit)
            meta["cursor"] = cursor
            links["next"] = f"{VT_API_ROOT}{path}?cursor={cursor}&limit={limit}"
        return Response(200, {"data": data, "meta": meta, "links": links})


# --------------------------------------------------------------------------------------------------
# Chronicle (SecOps SIEM)

_QUERY_VALUE = re.compile(r'^\s*([A-Za-z_][\w.]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*$')
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_STATUS_FILTER = re.compile(r'feedback_summary\.status\s*(!=|=)\s*"([A-Z_]+)"')


class ChronicleAPI(_FaultableAPI):
    """Chronicle over ``fixtures/chronicle``. Endpoints are the part after ``.../instances/{customer}``."""

    def __init__(
        self,
        entities: list[dict[str, Any]],
        ioc_matches: list[dict[str, Any]],
        alerts_view: dict[str, Any],
        udm_events: list[dict[str, Any]],
    ) -> None:
        super().__init__()
        self._by_value: dict[str, dict[str, Any]] = {}
        self._by_entity_id: dict[str, dict[str, Any]] = {}
        for record in entities:
            for value in record["query_values"]:
                self._by_value[value.lower()] = record
            for summary in record["summarizeEntitiesFromQuery"].get("entitySummaries", []):
                for entity in summary.get("entity", []):
                    self._by_entity_id[entity["name"].rsplit("/", 1)[-1]] = record
        self._ioc_matches = ioc_matches
        self._alerts_view = alerts_view
        self._udm_events = udm_events

    @classmethod
    def load(cls, chronicle_dir: Path) -> ChronicleAPI:
        entities = [_read_json(p) for p in _json_files(chronicle_dir / "entities")]
        return cls(
            entities,
            _read_json(chronicle_dir / "ioc_matches.json")["matches"],
            _read_json(chronicle_dir / "alerts.json"),
            _read_json(chronicle_dir / "udm_events.json")["events"],
        )

    def get(self, endpoint: str, params: Mapping[str, str] | None = None) -> Response:
        return self._dispatch(Request("GET", endpoint, dict(params or {})))

    def post(self, endpoint: str, params: Mapping[str, str] | None = None, body: Any = None) -> Response:
        return self._dispatch(Request("POST", endpoint, dict(params or {}), body))

    def _route(self, request: Request) -> Response:
        routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", ":summarizeEntitiesFromQuery"): self._summarize_from_query,
            ("GET", ":summarizeEntity"): self._summarize_entity,
            ("GET", "/legacy:legacySearchEnterpriseWideIoCs"): self._ioc_search,
            ("GET", "/legacy:legacyFetchAlertsView"): self._alerts,
            ("GET", "/legacy:legacyGetAlert"): self._alert_by_id,
            ("GET", ":udmSearch"): self._udm_search,
            ("POST", ":translateUdmQuery"): self._translate,
        }
        handler = routes.get((request.method, request.path))
        if handler is None:
            return google_error(404, f"Method not found: {request.method} {request.path}")
        return handler(request)

    def _summarize_from_query(self, request: Request) -> Response:
        query = request.params.get("query")
        if not query:
            return google_error(400, "query is required")
        match = _QUERY_VALUE.match(query)
        if match is None:
            return google_error(400, f"invalid entity query: {query}")
        record = self._by_value.get(match.group(2).lower())
        return Response(200, copy.deepcopy(record["summarizeEntitiesFromQuery"]) if record else {})

    def _summarize_entity(self, request: Request) -> Response:
        entity_id = request.params.get("entityId", "")
        record = self._by_entity_id.get(entity_id)
        if _truthy(request.params.get("returnPrevalence")):  # always 200: see upstreams.md §0.6
            prevalence = record.get("prevalence") if record else None
            return Response(200, copy.deepcopy(prevalence or {"prevalenceResult": [], "tpdPrevalenceResult": []}))
        if record is None:
            return google_error(404, f"entity {entity_id!r} not found")
        return Response(200, copy.deepcopy(record.get("alerts") or {"alertCounts": [], "hasMoreAlerts": False}))

    def _ioc_search(self, request: Request) -> Response:
        # The real endpoint has no value filter: every match in the window comes back (time is not filtered).
        limit = _int_param(request.params, "maxMatchesToReturn", len(self._ioc_matches))
        matches = self._ioc_matches[:limit]
        return Response(
            200, {"matches": copy.deepcopy(matches), "moreDataAvailable": len(self._ioc_matches) > len(matches)}
        )

    def _filtered_alerts(self, snapshot_query: str) -> list[dict[str, Any]]:
        alerts = self._alerts_view.get("alerts", {}).get("alerts", [])
        for op, status in _STATUS_FILTER.findall(snapshot_query):
            alerts = [a for a in alerts if (a.get("feedbackSummary", {}).get("status") == status) == (op == "=")]
        return alerts

    def _alerts(self, request: Request) -> Response:
        alerts = self._filtered_alerts(request.params.get("snapshotQuery", ""))
        limit = _int_param(request.params, "alertListOptions.maxReturnedAlerts", len(alerts))
        body = copy.deepcopy(self._alerts_view)
        body.update(
            progress=1,
            complete=True,
            baselineAlertsCount=len(alerts),
            filteredAlertsCount=len(alerts),
        )
        body["alerts"] = {"alerts": copy.deepcopy(alerts[:limit])}
        return Response(200, body)

    def _alert_by_id(self, request: Request) -> Response:
        alert_id = request.params.get("alertId", "")
        for alert in self._alerts_view.get("alerts", {}).get("alerts", []):
            if alert.get("id") == alert_id:
                return Response(200, copy.deepcopy(alert))
        return google_error(404, f"alert {alert_id!r} not found")

    def _udm_search(self, request: Request) -> Response:
        """Emulated search: an event matches when its JSON contains any double-quoted literal of the query,
        case-insensitively. Field names and operators are not evaluated; time is not filtered."""
        query = request.params.get("query", "")
        if not query.strip():
            return google_error(400, "query is required")
        if query.count('"') % 2:
            return google_error(400, f"invalid UDM query: unbalanced quotes: {query}")
        literals = [lit.replace('\\"', '"').lower() for lit in _QUOTED.findall(query) if lit]
        hits = [e for e in self._udm_events if any(lit in json.dumps(e).lower() for lit in literals)]
        limit = _int_param(request.params, "limit", 10_000)
        return Response(200, {"events": copy.deepcopy(hits[:limit]), "moreDataAvailable": len(hits) > limit})

    def _translate(self, request: Request) -> Response:
        text = (request.body or {}).get("text", "") if isinstance(request.body, dict) else ""
        query = translate_text_to_udm(text)
        if query is None:
            # The real API answers 200 with a `message` when it cannot translate; the SDK raises on it.
            return Response(200, {"message": f"Unable to translate the text into a UDM query: {text[:200]}"})
        return Response(200, {"query": query})


_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_HEX = re.compile(r"\b[0-9a-fA-F]{32}(?:[0-9a-fA-F]{8}(?:[0-9a-fA-F]{24})?)?\b")
_DOMAIN = re.compile(r"\b(?:[a-z0-9-]+\.)+[a-z]{2,}\b", re.IGNORECASE)


def translate_text_to_udm(text: str) -> str | None:
    """Deterministic stand-in for ``:translateUdmQuery``: builds a UDM query from the first indicator found
    in ``text`` (sha256/sha1/md5, IPv4, domain), or ``None`` when there is none."""
    if m := _HEX.search(text):
        value = m.group(0).lower()
        field_name = {32: "md5", 40: "sha1", 64: "sha256"}[len(value)]
        return f'target.file.{field_name} = "{value}"'
    if m := _IPV4.search(text):
        return f'principal.ip = "{m.group(0)}" OR target.ip = "{m.group(0)}"'
    if m := _DOMAIN.search(text):
        value = m.group(0).lower()
        return f'network.dns.questions.name = "{value}" OR target.hostname = "{value}"'
    return None


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    try:
        return max(0, int(params[name]))
    except (KeyError, ValueError):
        return default


# --------------------------------------------------------------------------------------------------
# SOAR

SOAR_PAGE_SIZE = 50
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z$")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shift_times(node: Any, delta: timedelta) -> Any:
    """Shift every ISO-8601 UTC timestamp string inside ``node`` by ``delta``."""
    if isinstance(node, dict):
        return {k: _shift_times(v, delta) for k, v in node.items()}
    if isinstance(node, list):
        return [_shift_times(v, delta) for v in node]
    if isinstance(node, str) and _ISO.match(node):
        return format_time(parse_time(node) + delta)
    return node


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, number = raw.partition(":")
        offset = int(number)
    except (ValueError, UnicodeDecodeError):
        return None
    return offset if prefix == "offset" and offset >= 0 else None


class SoarAPI(_FaultableAPI):
    """SOAR REST over ``fixtures/soar``; paths from the root. Timestamps are served shifted by
    ``now - recorded_at``. Writes (comments, priority) change this instance's state only."""

    def __init__(
        self,
        scopes: list[str],
        cases: list[dict[str, Any]],
        *,
        recorded_at: datetime,
        now: datetime,
        page_size: int = SOAR_PAGE_SIZE,
    ) -> None:
        super().__init__()
        self.recorded_at = recorded_at
        self.now = now
        self.shift = now - recorded_at
        self.page_size = page_size
        self._scopes = scopes
        records = [_shift_times(r, self.shift) for r in cases]
        records.sort(key=lambda r: (r["case"]["createTime"], r["case"]["id"]), reverse=True)
        self._records = records
        self._by_id = {str(r["case"]["id"]): r for r in records}

    @classmethod
    def load(cls, soar_dir: Path, *, now: datetime | None = None) -> SoarAPI:
        meta = _read_json(soar_dir / "meta.json")
        return cls(
            _read_json(soar_dir / "scopes.json"),
            _read_json(soar_dir / "cases.json"),
            recorded_at=parse_time(meta["recorded_at"]),
            now=(now or datetime.now(UTC)).astimezone(UTC),
            page_size=int(meta.get("page_size", SOAR_PAGE_SIZE)),
        )

    def request(self, method: str, path: str, params: Mapping[str, str] | None = None, body: Any = None) -> Response:
        return self._dispatch(Request(method.upper(), path, dict(params or {}), body))

    # ---- routing

    def _route(self, request: Request) -> Response:
        method, path = request.method, request.path.rstrip("/")
        simple: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", "/api/external/v1/settings/GetScopes"): lambda r: Response(200, list(self._scopes)),
            ("GET", "/api/1p/external/v1/cases"): self._list_cases,
            ("POST", "/api/external/v1/case-overview/GetAlertsEntities"): self._alerts_entities,
            ("POST", "/api/external/v1.0/entity-search/entities"): self._entity_search,
            ("POST", "/api/external/v1/entities/GetEntityData"): self._entity_data,
        }
        if handler := simple.get((method, path)):
            return handler(request)
        if m := re.fullmatch(r"/api/1p/external/v1/cases/([^/]+)", path):
            return self._case(request, m.group(1))
        if m := re.fullmatch(r"/api/1p/external/v1\.0/cases/([^/]+)/caseAlerts", path):
            return self._case_alerts(request, m.group(1))
        if m := re.fullmatch(r"/api/1p/external/v1/cases/([^/]+)/comments", path):
            return self._comments(request, m.group(1))
        if m := re.fullmatch(r"/api/1p/external/v1\.0/cases/([^/]+)/alerts/([^/]+)/involvedEvents", path):
            return self._involved_events(m.group(1), m.group(2))
        if path.startswith("/api/1p/"):
            return google_error(404, f"Method not found: {method} {path}")
        return soar_error(404, f"No HTTP resource was found that matches the request URI '{path}'.")

    def _record(self, case_id: str) -> dict[str, Any] | None:
        return self._by_id.get(str(case_id).strip())

    def _list_cases(self, request: Request) -> Response:
        offset = 0
        if token := request.params.get("pageToken"):
            decoded = _decode_token(token)
            if decoded is None:
                return google_error(400, f"Invalid page token: {token}")
            offset = decoded
        size = _int_param(request.params, "pageSize", self.page_size) or self.page_size
        page = self._records[offset : offset + size]
        cases = [{k: v for k, v in r["case"].items() if k != "description"} for r in page]
        more = offset + size < len(self._records)
        return Response(
            200,
            {
                "cases": copy.deepcopy(cases),
                "nextPageToken": _encode_token(offset + size) if more else "",
                "totalSize": len(self._records),
            },
        )

    def _case(self, request: Request, case_id: str) -> Response:
        record = self._record(case_id)
        if record is None:
            return google_error(404, f"Case {case_id} not found")
        if request.method == "GET":
            return Response(200, copy.deepcopy(record["case"]))
        if request.method == "PATCH" and isinstance(request.body, dict):
            with self._lock:
                for key, value in request.body.items():
                    record["case"][key[:1].lower() + key[1:]] = value  # {"Priority": ...} -> "priority"
                record["case"]["updateTime"] = format_time(self.now)
            return Response(200, copy.deepcopy(record["case"]))
        return google_error(400, f"Unsupported request: {request.method} case {case_id}")

    def _case_alerts(self, request: Request, case_id: str) -> Response:
        record = self._record(case_id)
        if record is None:
            return google_error(404, f"Case {case_id} not found")
        alerts = record["alerts"]
        select = _csv(request.params.get("$select"))
        if select:
            alerts = [{k: a[k] for k in select if k in a} for a in alerts]
        return Response(200, {"caseAlerts": copy.deepcopy(alerts), "totalSize": len(alerts)})

    def _comments(self, request: Request, case_id: str) -> Response:
        record = self._record(case_id)
        if record is None:
            return google_error(404, f"Case {case_id} not found")
        if request.method == "POST":
            text = (request.body or {}).get("Comment") if isinstance(request.body, dict) else None
            if not isinstance(text, str) or not text:
                return google_error(400, "Comment is required")
            with self._lock:
                comment = {
                    "id": max((c["id"] for c in record["comments"]), default=0) + 1,
                    "comment": text,
                    "user": "api",
                    "createTime": format_time(self.now),
                }
                record["comments"].append(comment)
            return Response(200, copy.deepcopy(comment))
        comments = record["comments"]
        return Response(200, {"caseComments": copy.deepcopy(comments), "totalSize": len(comments)})

    def _involved_events(self, case_id: str, alert_id: str) -> Response:
        record = self._record(case_id)
        alert = next((a for a in record["alerts"] if str(a["id"]) == alert_id), None) if record else None
        if alert is None:
            return google_error(404, f"Alert {alert_id} not found in case {case_id}")
        events = record.get("involvedEvents", {}).get(str(alert_id), [])
        return Response(200, {"involvedEvents": copy.deepcopy(events), "totalSize": len(events)})

    def _alerts_entities(self, request: Request) -> Response:
        body = request.body if isinstance(request.body, dict) else {}
        record = self._record(str(body.get("caseId", "")))
        if record is None:
            return soar_error(404, f"Case {body.get('caseId')} not found")
        wanted = body.get("alertGroupIdentifiers") or []
        groups = [
            {"alertGroupIdentifier": agi, "entities": copy.deepcopy(record["entities"].get(agi, []))}
            for agi in wanted
            if agi in record["entities"]
        ]
        return Response(200, groups)

    def _all_entities(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """Entities across all cases, keyed (upper identifier, type, environment)."""
        out: dict[tuple[str, str, str], dict[str, Any]] = {}
        for record in self._records:
            seen: set[tuple[str, str, str]] = set()
            for group in record["entities"].values():
                for entity in group:
                    key = (entity["identifier"].upper(), entity["entityType"], entity.get("environment", ""))
                    summary = out.setdefault(
                        key,
                        {
                            "identifier": entity["identifier"],
                            "type": entity["entityType"],
                            "environment": entity.get("environment", ""),
                            "isSuspicious": False,
                            "isInternalAsset": False,
                            "isEnriched": False,
                            "network": None,
                            "casesCount": 0,
                            "_cases": [],
                        },
                    )
                    summary["isSuspicious"] |= bool(entity.get("isSuspicious"))
                    summary["isInternalAsset"] |= bool(entity.get("isInternal"))
                    summary["isEnriched"] |= bool(entity.get("isEnriched"))
                    if key not in seen:
                        seen.add(key)
                        summary["casesCount"] += 1
                        summary["_cases"].append(record["case"])
        return out

    def _entity_search(self, request: Request) -> Response:
        body = request.body if isinstance(request.body, dict) else {}
        term = (body.get("Term") or "").lower()
        types = body.get("Type") or []
        envs = body.get("EnvironmentName") or []
        hits = []
        for summary in self._all_entities().values():
            if term and term not in summary["identifier"].lower():
                continue
            if types and summary["type"] not in types:
                continue
            if envs and summary["environment"] not in envs:
                continue
            flags = (
                ("IsSuspicious", "isSuspicious"),
                ("IsInternalAsset", "isInternalAsset"),
                ("IsEnriched", "isEnriched"),
            )
            if any(body.get(k) is not None and bool(body[k]) != summary[s] for k, s in flags):
                continue
            hits.append({k: v for k, v in summary.items() if not k.startswith("_")})
        return Response(
            200, {"objectsList": hits, "metadata": {"totalNumberOfPages": 1, "totalRecordsCount": len(hits)}}
        )

    def _entity_data(self, request: Request) -> Response:
        body = request.body if isinstance(request.body, dict) else {}
        key = (
            str(body.get("EntityIdentifier") or "").upper(),
            str(body.get("EntityType") or ""),
            str(body.get("EntityEnvironment") or ""),
        )
        summary = self._all_entities().get(key)
        if summary is None:
            return soar_error(404, f"Entity {body.get('EntityIdentifier')!r} not found")
        cases = summary.pop("_cases")
        summary["linkedCases"] = [
            {k: c[k] for k in ("id", "displayName", "status", "priority", "createTime", "environment")} for c in cases
        ]
        return Response(200, copy.deepcopy(summary))


# --------------------------------------------------------------------------------------------------
# The three together


def default_fixtures_dir() -> Path:
    """``$IOC_WORKFLOWS_FIXTURES``, else ``<repo>/fixtures`` (or a ``fixtures`` dir shipped in the package)."""
    env = os.environ.get("IOC_WORKFLOWS_FIXTURES")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "fixtures", here.parents[1] / "fixtures"]
    return next((c for c in candidates if (c / "vt").is_dir()), candidates[0])


@dataclass
class Backends:
    vt: VirusTotalAPI
    chronicle: ChronicleAPI
    soar: SoarAPI

    @classmethod
    def load(cls, fixtures_dir: Path | None = None, *, now: datetime | None = None) -> Backends:
        root = Path(fixtures_dir) if fixtures_dir is not None else default_fixtures_dir()
        if not (root / "vt").is_dir():
            raise FileNotFoundError(f"no fixtures at {root} (set IOC_WORKFLOWS_FIXTURES)")
        if now is None and os.environ.get("IOC_STANDIN_NOW"):
            # Pins the SOAR time shift, so two processes loading seconds apart serve the same timestamps.
            now = datetime.fromisoformat(os.environ["IOC_STANDIN_NOW"].replace("Z", "+00:00"))
        return cls(
            vt=VirusTotalAPI.load(root / "vt"),
            chronicle=ChronicleAPI.load(root / "chronicle"),
            soar=SoarAPI.load(root / "soar", now=now),
        )

    def clear(self) -> None:
        """Drop injected faults and request logs of all three APIs."""
        for api in (self.vt, self.chronicle, self.soar):
            api.clear()
