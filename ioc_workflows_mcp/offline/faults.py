"""Fault injection for the offline stand-ins: the same servers, misbehaving on purpose, for tests.

``python -m ioc_workflows_mcp.offline gti|secops|soar`` runs a faulty variant when ``IOC_STANDIN_FAULT``
is set. Environment:

* ``IOC_STANDIN_FAULT``: one of

  - ``crash_mid_call``: the process exits (status 17) while answering a call;
  - ``hang``: the call never answers (until the client cancels it);
  - ``slow``: the call answers after ``IOC_STANDIN_FAULT_DELAY_MS`` (default 2000);
  - ``malformed``: the answer is in the tool's declared shape but not in the upstream's format
    (gti: an object without ``attributes``; secops: text in no known format; soar: text that is not JSON);
  - ``inband_error``: the upstream's own error envelope for a 5xx (gti: ``VirusTotal API Error:
    ServerError``; secops: ``Error ...: status=500``; soar: zero content blocks, as the real server hides
    HTTP errors);
  - ``rate_limit``: a 429 in the upstream's shape that says "retry after ``IOC_STANDIN_FAULT_RETRY_AFTER``
    seconds" (default 1). With ``IOC_STANDIN_FAULT_QUOTA=N/SECONDS`` the server instead keeps a quota, as
    VirusTotal does (``4/60`` for the public API): the first N calls of each window answer, later ones get
    the 429 with the seconds left in the window;
  - ``missing_tool``: the tool is not listed and a call answers as MCP servers answer an unknown tool;
  - ``never_starts``: the process never answers the MCP handshake;
  - ``schema_violation``: structuredContent that violates the tool's own outputSchema (tools without one,
    like all of soar's, answer normally);

* ``IOC_STANDIN_FAULT_TOOLS``: comma-separated tool names the fault applies to (default: every tool);
* ``IOC_STANDIN_FAULT_SWITCH``: a file path; the fault is active only while that file exists, so a test
  can clear it without touching the server under test. A non-empty file also chooses the fault, read at
  every call: ``<fault> [times=N] [delay_ms=X] [retry_after=X] [quota=N/SECONDS]`` (then
  ``IOC_STANDIN_FAULT`` may be left unset), so one running server can go through every fault in turn;
* ``IOC_STANDIN_FAULT_TIMES``: inject at most this many times, then behave; counted across restarts in the
  file ``IOC_STANDIN_FAULT_STATE`` when that is set (one byte per injection), else per process. ``times=N``
  in the switch file counts in a file beside it, one per switch setting.
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from collections import deque
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent

from ._fastmcp1 import content_for, error_result

FAULTS = (
    "crash_mid_call",
    "hang",
    "slow",
    "malformed",
    "inband_error",
    "rate_limit",
    "missing_tool",
    "never_starts",
    "schema_violation",
)
CRASH_EXIT_STATUS = 17


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _number(name: str, default: float) -> float:
    try:
        return float(_env(name) or default)
    except ValueError:
        return default


class FaultPlan:
    """Which fault, on which tools, and whether it is active for the next call."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.default_kind = _env("IOC_STANDIN_FAULT")
        self.tools = frozenset(t.strip() for t in _env("IOC_STANDIN_FAULT_TOOLS").split(",") if t.strip())
        self.switch = _env("IOC_STANDIN_FAULT_SWITCH") or None
        self.defaults = {
            "times": _env("IOC_STANDIN_FAULT_TIMES"),
            "delay_ms": _env("IOC_STANDIN_FAULT_DELAY_MS") or "2000",
            "retry_after": _env("IOC_STANDIN_FAULT_RETRY_AFTER") or "1",
            "quota": _env("IOC_STANDIN_FAULT_QUOTA"),
        }
        self._check(self.default_kind)
        self._calls: deque[float] = deque()
        self._injected = 0
        self._switch_text: str | None = None

    @staticmethod
    def _check(kind: str) -> None:
        if kind and kind not in FAULTS:
            raise SystemExit(f"IOC_STANDIN_FAULT={kind!r} is not one of {', '.join(FAULTS)}")

    @property
    def installed(self) -> bool:
        """Could a fault apply to this process at all?"""
        return bool(self.default_kind or self.switch)

    def current(self) -> tuple[str, dict[str, str], str | None]:
        """(fault kind or "", its parameters, the injection counter file) as of now."""
        if self.switch is None:
            return self.default_kind, self.defaults, _env("IOC_STANDIN_FAULT_STATE") or None
        try:
            text = Path(self.switch).read_text(encoding="utf-8").strip()
        except OSError:
            return "", self.defaults, None  # no switch file: no fault
        if not text:
            return self.default_kind, self.defaults, _env("IOC_STANDIN_FAULT_STATE") or None
        kind, *pairs = text.split()
        if kind not in FAULTS:
            return "", self.defaults, None
        params = dict(self.defaults, times="")
        params.update(pair.split("=", 1) for pair in pairs if "=" in pair)
        if text != self._switch_text:  # a new switch setting: its own count
            self._switch_text, self._injected = text, 0
        return kind, params, f"{self.switch}.{zlib.crc32(text.encode()):08x}.count"

    def applies_to(self, tool: str) -> bool:
        return not self.tools or tool in self.tools

    def take(self, kind: str, params: dict[str, str], state: str | None) -> bool:
        """Count one injection against ``times``; False when they are used up."""
        if not params.get("times"):
            return True
        done = os.path.getsize(state) if state and os.path.exists(state) else self._injected
        if done >= int(params["times"]):
            return False
        self._injected += 1
        if state:
            with open(state, "ab") as counter:
                counter.write(b"x")
        return True

    def quota_wait(self, quota: str) -> float | None:
        """Under a quota "N/SECONDS": None when this call is within it, else the seconds left in the window."""
        count_text, _, window_text = quota.partition("/")
        count, window = int(count_text), float(window_text or 60)
        now = time.monotonic()
        while self._calls and now - self._calls[0] >= window:
            self._calls.popleft()
        if len(self._calls) < count:
            self._calls.append(now)
            return None
        return max(0.1, round(window - (now - self._calls[0]), 1))


# --- the upstreams' shapes ---------------------------------------------------------------------------


def _result(server: MCPServer, tool: str, value: Any) -> CallToolResult:
    """``value`` sent as the stand-in sends any answer: content blocks, plus structuredContent when the tool
    declares an output schema."""
    structured = {"result": value} if _output_schema(server, tool) else None
    return CallToolResult(content=content_for(value), structured_content=structured)


def _output_schema(server: MCPServer, tool: str) -> dict[str, Any] | None:
    found = server._tool_manager.get_tool(tool)
    return None if found is None else found.output_schema


def _result_type(server: MCPServer, tool: str) -> str | None:
    schema = _output_schema(server, tool)
    if not schema:
        return None
    result = schema.get("properties", {}).get("result", {})
    return result.get("type") or ("object" if "additionalProperties" in result else None)


def _error(server: MCPServer, upstream: str, tool: str, code: int, text: str, retry_after: float | None) -> Any:
    after = f"; retry after {retry_after:g} s" if retry_after is not None else ""
    kind = _result_type(server, tool)
    if upstream == "gti":
        name = {429: "QuotaExceededError", 500: "ServerError"}[code]
        message = f"VirusTotal API Error: {name} - {text}{after}"
        if kind == "object":  # report tools answer errors in band
            body: dict[str, Any] = {"error": message, "details": f"HTTP {code} (injected fault)"}
            if retry_after is not None:
                body["retry_after"] = retry_after
            return _result(server, tool, body)
        return error_result(tool, f"{message} (HTTP {code})")
    if upstream == "secops":
        status = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}[code]
        message = (
            f"Error calling {tool}: method=GET, url=http://127.0.0.1/v1alpha/injected:{tool}, status={code}, "
            f"response={{'error': {{'code': {code}, 'message': '{text}', 'status': '{status}'}}}}{after}"
        )
        return _result(server, tool, {"error": message} if kind == "object" else message)
    # soar: the real server hides an HTTP error behind zero content blocks; a 429 is shown as MCP errors are
    if code == 429:
        return error_result(tool, f"429 Too Many Requests: {text}{after}")
    return CallToolResult(content=[])


def _malformed(server: MCPServer, upstream: str, tool: str) -> CallToolResult:
    kind = _result_type(server, tool)
    if upstream == "gti":
        if kind == "array":
            return _result(server, tool, [{"garbled": "\ufffd\ufffd<html>"}])
        return _result(server, tool, {"data": '{"attributes": {"last_analysis_stats": {"malicious": 1'})
    if upstream == "secops":
        if kind == "object":
            return _result(server, tool, {"events": "<html>502</html>", "total_events": "many"})
        return _result(server, tool, "\ufffd\ufffd garbled output {{{ (injected fault) ]]")
    return CallToolResult(content=[TextContent(type="text", text="<html><body>login</body></html>")])


def _schema_violation(server: MCPServer, tool: str) -> CallToolResult | None:
    kind = _result_type(server, tool)
    if kind is None:
        return None
    wrong: Any = 12345 if kind != "integer" else "not a number"
    return CallToolResult(content=[TextContent(type="text", text=str(wrong))], structured_content={"result": wrong})


# --- installing it -----------------------------------------------------------------------------------


def before_start(upstream: str) -> None:
    """The ``never_starts`` fault: block before the MCP handshake, never reading stdin."""
    plan = FaultPlan(upstream)
    kind, params, state = plan.current()
    if kind == "never_starts" and plan.take(kind, params, state):
        print(f"[{upstream}-offline-standin] injected fault never_starts: not answering", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)


def install(server: MCPServer, upstream: str) -> MCPServer:
    """Wrap ``server``'s tool calls (and listing) with the fault of ``IOC_STANDIN_FAULT``, if any."""
    plan = FaultPlan(upstream)
    if not plan.installed:
        return server
    print(f"[{upstream}-offline-standin] fault injection armed", file=sys.stderr, flush=True)
    call_tool = server.call_tool
    list_tools = server.list_tools

    async def listed() -> Any:
        tools = await list_tools()
        if plan.current()[0] == "missing_tool":
            tools = [tool for tool in tools if not plan.applies_to(tool.name)]
        return tools

    async def faulty(name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        kind, params, state = plan.current()
        if not kind or kind == "never_starts" or not plan.applies_to(name):
            return await call_tool(name, arguments, context)
        if kind == "rate_limit" and params.get("quota"):
            wait = plan.quota_wait(params["quota"])
            if wait is None:
                return await call_tool(name, arguments, context)
            return _error(server, upstream, name, 429, "Quota exceeded (injected quota)", wait)
        if not plan.take(kind, params, state):
            return await call_tool(name, arguments, context)
        match kind:
            case "crash_mid_call":
                await anyio.sleep(0.05)
                print(f"[{upstream}-offline-standin] injected crash during {name}", file=sys.stderr, flush=True)
                os._exit(CRASH_EXIT_STATUS)
            case "hang":
                await anyio.sleep_forever()
            case "slow":
                await anyio.sleep(float(params["delay_ms"]) / 1000)
                return await call_tool(name, arguments, context)
            case "malformed":
                return _malformed(server, upstream, name)
            case "inband_error":
                return _error(server, upstream, name, 500, "Internal error (injected fault)", None)
            case "rate_limit":
                retry_after = float(params["retry_after"])
                return _error(server, upstream, name, 429, "Quota exceeded (injected fault)", retry_after)
            case "missing_tool":
                raise ToolError(f"Unknown tool: {name}")
            case "schema_violation":
                return _schema_violation(server, name) or await call_tool(name, arguments, context)
        return await call_tool(name, arguments, context)

    server.call_tool = faulty  # type: ignore[method-assign]
    server.list_tools = listed  # type: ignore[method-assign]
    return server
