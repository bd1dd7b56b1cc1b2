"""Loopback HTTP fakes of the three backend APIs the real upstream MCP servers call.

One ``ThreadingHTTPServer`` per backend on 127.0.0.1 (ephemeral port), each in a daemon thread. They are
thin adapters over the product's offline emulation (``ioc_workflows_mcp.offline.backend.Backends``), so
the real upstream servers and the product's offline stand-ins serve the same recordings:

- VirusTotal: ``/api/v3/...``  -> ``backends.vt.get(path, params)`` (path relative to ``/api/v3``);
  credential ``X-Apikey``.
- Chronicle:  ``/{version}/projects/{p}/locations/{r}/instances/{c}{endpoint}`` ->
  ``backends.chronicle.get(endpoint, params)`` / ``.post(endpoint, params, body)``; routed on the full
  path string, because RPC endpoints put a ``:`` inside the last segment (``…/instances/c:udmSearch``);
  credential ``authorization: Bearer``.
- SOAR:       ``/api/...`` -> ``backends.soar.request(method, path, params, body)``; credential ``AppKey``.

Every request is recorded (``FakeBackends.requests``) with its method, path, query and headers, secret
header values replaced by ``"<redacted>"`` and the credential check's outcome in ``authorized``.
Responses are never compressed (clients ask for gzip; identity is always acceptable) and carry
``Content-Type: application/json`` unless a response says otherwise.

``FakeServer.intercept(fn)`` is an HTTP-level hook for what the emulation cannot express (a delay, a
non-JSON body, a dropped connection): ``fn(request) -> Response | None``, first non-None wins.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

logger = logging.getLogger(__name__)

VT_API_KEY = "test-vt-key"
CHRONICLE_TOKEN = "fake-access-token"
SOAR_APP_KEY = "test-app-key"
CHRONICLE_PROJECT = "test-proj"
CHRONICLE_REGION = "us"
CHRONICLE_CUSTOMER = "cust-123"

# Header names (lower case) whose values never reach the request log.
SECRET_HEADERS = frozenset({"x-apikey", "authorization", "appkey", "cookie", "proxy-authorization"})
REDACTED = "<redacted>"
JSON = "application/json"


class ResponseLike(Protocol):
    """What the emulation returns: ``ioc_workflows_mcp.offline.backend.Response`` or ``StubResponse``."""

    status: int
    body: Any
    content_type: str


@dataclass(frozen=True)
class StubResponse:
    """A response built here (credential failures, routing errors, intercepts). Same shape as the
    product's ``offline.backend.Response``."""

    status: int
    body: Any
    content_type: str = JSON


@dataclass(frozen=True)
class RecordedRequest:
    backend: str  # "vt" | "chronicle" | "soar"
    method: str
    path: str  # decoded path, without the query string
    query: tuple[tuple[str, str], ...]  # every (name, value) pair, in order
    headers: Mapping[str, str]  # lower-case names; secret values redacted
    body: Any  # parsed JSON, raw text when it is not JSON, None when empty
    authorized: bool  # did the credential header carry the expected value?
    status: int = 0  # what the fake answered
    at: float = field(default_factory=time.time)

    @property
    def params(self) -> dict[str, str]:
        """The query as a dict (last value wins for a repeated name)."""
        return dict(self.query)


Intercept = Callable[[RecordedRequest], ResponseLike | None]


class Drop(Exception):
    """Raise from an intercept to close the connection without any response."""


# --------------------------------------------------------------------------------------------------
# The HTTP layer, shared by the three backends


class FakeServer:
    """One loopback HTTP server. Subclasses check the credential and dispatch to the emulation."""

    name = "fake"

    def __init__(self, owner: FakeBackends) -> None:
        self._owner = owner
        self._intercepts: list[Intercept] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1") -> None:
        handler = type(f"{type(self).__name__}Handler", (_Handler,), {"fake": self})
        httpd = ThreadingHTTPServer((host, 0), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name=f"fake-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"fake {self.name} is not running")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """The origin, ``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    # -- hooks ---------------------------------------------------------------------------------
    def intercept(self, fn: Intercept) -> Intercept:
        """Answer matching requests before the emulation sees them (usable as a decorator)."""
        self._intercepts.append(fn)
        return fn

    def clear_intercepts(self) -> None:
        self._intercepts.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        return [r for r in self._owner.requests if r.backend == self.name]

    # -- per backend ---------------------------------------------------------------------------
    def authorized(self, headers: Mapping[str, str]) -> bool:
        raise NotImplementedError

    def unauthorized(self, headers: Mapping[str, str]) -> ResponseLike:
        raise NotImplementedError

    def dispatch(self, method: str, path: str, params: dict[str, str], body: Any) -> ResponseLike:
        raise NotImplementedError

    def not_found(self, method: str, path: str) -> ResponseLike:
        return StubResponse(404, {"error": f"fake {self.name}: no route for {method} {path}"})

    # -- the request cycle (called from the handler thread) ------------------------------------
    def handle(self, method: str, raw_path: str, headers: Mapping[str, str], raw_body: bytes) -> ResponseLike:
        split = urlsplit(raw_path)
        path = unquote(split.path)
        query = tuple(parse_qsl(split.query, keep_blank_values=True))
        body = _parse_body(raw_body)
        ok = self.authorized(headers)
        redacted = {k: (REDACTED if k in SECRET_HEADERS else v) for k, v in headers.items()}
        request = RecordedRequest(self.name, method, path, query, redacted, body, ok)
        response: ResponseLike | None = None
        try:
            for fn in list(self._intercepts):
                response = fn(request)
                if response is not None:
                    break
            if response is None and not ok:
                response = self.unauthorized(headers)
            elif response is None:
                response = self.dispatch(method, path, dict(query), body)
        except Drop:
            self._owner._record(request, 0)
            raise
        except Exception as exc:  # the emulation broke: say so loudly, in-band and in the log
            logger.exception("fake %s: %s %s failed", self.name, method, raw_path)
            response = StubResponse(500, {"error": {"code": "FakeBackendError", "message": repr(exc)}})
        self._owner._record(request, response.status)
        return response


class _Handler(BaseHTTPRequestHandler):
    fake: FakeServer  # set on the per-server subclass
    protocol_version = "HTTP/1.1"  # keep-alive: aiohttp and requests reuse connections
    server_version = "ioc-fake/1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            response = self.fake.handle(self.command, self.path, headers, raw_body)
        except Drop:
            self.close_connection = True
            return
        payload, content_type = _encode(response)
        self.send_response(response.status)
        if response.status not in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED):
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if response.status not in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED):
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fake %s: " + format, self.fake.name, *args)


def _parse_body(raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _encode(response: ResponseLike) -> tuple[bytes, str]:
    content_type = getattr(response, "content_type", None) or JSON
    body = response.body
    if isinstance(body, bytes):
        return body, content_type
    if "json" in content_type:
        return json.dumps(body).encode(), content_type
    return ("" if body is None else str(body)).encode(), content_type


# --------------------------------------------------------------------------------------------------
# The three backends


class FakeVirusTotal(FakeServer):
    name = "vt"
    prefix = "/api/v3"

    def authorized(self, headers: Mapping[str, str]) -> bool:
        return headers.get("x-apikey") == VT_API_KEY

    def unauthorized(self, headers: Mapping[str, str]) -> ResponseLike:
        if "x-apikey" not in headers:
            code, message = "AuthenticationRequiredError", "X-Apikey header is missing"
        else:
            code, message = "WrongCredentialsError", "Wrong API key"
        return StubResponse(401, {"error": {"code": code, "message": message}})

    def dispatch(self, method: str, path: str, params: dict[str, str], body: Any) -> ResponseLike:
        if not path.startswith(self.prefix + "/"):
            return StubResponse(404, {"error": {"code": "NotFoundError", "message": f"no route {path}"}})
        rel = path[len(self.prefix) :]
        api = self._owner.backends.vt
        if method == "GET":
            return api.get(rel, params)
        handler = getattr(api, method.lower(), None)
        if handler is None:
            return StubResponse(405, {"error": {"code": "NotAvailableYet", "message": f"{method} is not emulated"}})
        return handler(rel, params, body)


_CHRONICLE_PATH = re.compile(
    r"^/(?P<version>v1alpha|v1beta|v1)/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)"
    r"/instances/(?P<customer>[^/:]+)(?P<endpoint>[/:].*)?$"
)


def google_error(code: int, status: str, message: str) -> StubResponse:
    return StubResponse(code, {"error": {"code": code, "message": message, "status": status}})


class FakeChronicle(FakeServer):
    name = "chronicle"

    def __init__(
        self,
        owner: FakeBackends,
        *,
        project: str = CHRONICLE_PROJECT,
        region: str = CHRONICLE_REGION,
        customer: str = CHRONICLE_CUSTOMER,
    ) -> None:
        super().__init__(owner)
        self.instance = (project, region, customer)

    def authorized(self, headers: Mapping[str, str]) -> bool:
        return headers.get("authorization") == f"Bearer {CHRONICLE_TOKEN}"

    def unauthorized(self, headers: Mapping[str, str]) -> ResponseLike:
        return google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, "
            "login cookie or other valid authentication credential.",
        )

    def dispatch(self, method: str, path: str, params: dict[str, str], body: Any) -> ResponseLike:
        match = _CHRONICLE_PATH.match(path)
        if match is None or not match["endpoint"]:
            return google_error(404, "NOT_FOUND", f"fake chronicle: no route for {method} {path}")
        if (match["project"], match["region"], match["customer"]) != self.instance:
            return google_error(403, "PERMISSION_DENIED", f"Permission denied on instance {path.split(':')[0]} (fake)")
        endpoint = match["endpoint"]
        api = self._owner.backends.chronicle
        if method == "GET":
            return api.get(endpoint, params)
        if method == "POST":
            return api.post(endpoint, params, body)
        handler = getattr(api, method.lower(), None)
        if handler is None:
            return google_error(405, "UNIMPLEMENTED", f"fake chronicle: {method} is not emulated")
        return handler(endpoint, params, body)


class FakeSoar(FakeServer):
    name = "soar"

    def authorized(self, headers: Mapping[str, str]) -> bool:
        return headers.get("appkey") == SOAR_APP_KEY

    def unauthorized(self, headers: Mapping[str, str]) -> ResponseLike:
        return StubResponse(401, {"ErrorCode": 401, "ErrorMessage": "Unauthorized: invalid AppKey"})

    def dispatch(self, method: str, path: str, params: dict[str, str], body: Any) -> ResponseLike:
        return self._owner.backends.soar.request(method, path, params, body)


# --------------------------------------------------------------------------------------------------
# The set of three


def load_backends(fixtures_dir: Any = None, *, now: Any = None) -> Any:
    """A fresh ``Backends`` from the product's offline emulation (imported lazily: the project venv
    has it, the upstream venv does not need it)."""
    from ioc_workflows_mcp.offline.backend import Backends

    return Backends.load(fixtures_dir, now=now)


class FakeBackends:
    """The three fakes over one ``Backends``. ``start()`` binds ephemeral ports; ``reset()`` swaps in a
    fresh emulation (which drops its injections), clears intercepts and the request log."""

    def __init__(self, backends: Any = None, *, factory: Callable[[], Any] | None = None) -> None:
        self._factory = factory or load_backends
        self.backends = backends if backends is not None else self._factory()
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self.vt = FakeVirusTotal(self)
        self.chronicle = FakeChronicle(self)
        self.soar = FakeSoar(self)

    @property
    def servers(self) -> tuple[FakeServer, FakeServer, FakeServer]:
        return (self.vt, self.chronicle, self.soar)

    def start(self) -> FakeBackends:
        for server in self.servers:
            server.start()
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __enter__(self) -> FakeBackends:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self, backends: Any = None) -> None:
        """Fresh emulation state (``backends`` or a new one from the factory), no intercepts, no log."""
        self.backends = backends if backends is not None else self._factory()
        for server in self.servers:
            server.clear_intercepts()
        self.clear_requests()

    def inject(self, backend: str, match: Any, response: ResponseLike, *, times: int | None = None) -> None:
        """Fault injection through the emulation itself: ``backend`` is ``"vt"``, ``"chronicle"`` or
        ``"soar"``; ``match`` a path prefix (as that API sees it: relative to ``/api/v3`` for VT, the
        endpoint after ``…/instances/{c}`` for Chronicle, from the root for SOAR) or a predicate;
        see ``offline.backend._FaultableAPI.inject``. Cleared by ``reset()``."""
        getattr(self.backends, backend).inject(match, response, times=times)

    # -- request log ---------------------------------------------------------------------------
    def _record(self, request: RecordedRequest, status: int) -> None:
        with self._lock:
            self._requests.append(_with_status(request, status))

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def find(
        self, backend: str | None = None, *, method: str | None = None, path_contains: str = ""
    ) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if (backend is None or r.backend == backend)
            and (method is None or r.method == method)
            and path_contains in r.path
        ]

    @property
    def urls(self) -> dict[str, str]:
        return {server.name: server.url for server in self.servers}


def _with_status(request: RecordedRequest, status: int) -> RecordedRequest:
    return replace(request, status=status)


@contextlib.contextmanager
def running_fakes(backends: Any = None) -> Iterator[FakeBackends]:
    """``with running_fakes() as fakes: ...`` — start the three, stop them afterwards."""
    fakes = FakeBackends(backends)
    fakes.start()
    try:
        yield fakes
    finally:
        fakes.stop()
