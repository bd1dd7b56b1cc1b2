"""What FastMCP 1.x (mcp 1.30) does with a tool's return value, reproduced for the offline stand-ins.

The real upstreams are FastMCP 1.x servers. The stand-ins run on mcp 2.x ``MCPServer`` but build every
``CallToolResult`` themselves, so what goes on the wire is what 1.x would have sent:

* content (``mcp.server.fastmcp.utilities.func_metadata._convert_to_content``): ``None`` gives no block,
  a ``str`` one block verbatim, a list or tuple the blocks of each element in turn (so a list of dicts is
  one block per dict and an empty list is no block at all), anything else one block holding
  ``pydantic_core.to_json(value, fallback=str, indent=2)``. That is not ``json.dumps``: non-ASCII is
  written as UTF-8, not ``\\uXXXX``, and floats are formatted by pydantic-core.
* structuredContent: only for tools whose function declares a return type that 1.x wraps, i.e.
  ``typing.Dict[...]``, ``typing.List[...]``, ``list[...]``, ``str``. 1.x validates ``{"result": value}``
  against a model named ``<tool>Output`` and sends its ``model_dump(mode="json")``. A value that fails
  that validation (gti's relationship tools return a dict for an unknown relationship name while
  declaring a list) becomes an error, with pydantic's message.
* any exception from the tool becomes ``isError=true`` with the single text block
  ``Error executing tool <name>: <str(exc)>`` (``mcp.server.fastmcp.tools.base.Tool.run``).
* bad arguments: 1.x validates them with a pydantic model named ``<tool>Arguments`` and reports
  ``Error executing tool <name>: 1 validation error for <tool>Arguments ...``; ``MCPServer`` 2.3 does the
  same with the same text, so nothing is added for that here.

The same tools also advertise the 1.x ``outputSchema`` (``Annotated[CallToolResult, <declared type>]``
makes ``MCPServer`` derive the identical ``{"result": ...}`` schema, titled ``<tool>Output``).
"""

import copy
import functools
import inspect
import json
import logging
import os
import random
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
import pydantic_core
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, create_model

__all__ = [
    "NO_STRUCTURED_OUTPUT",
    "StandinServer",
    "announce",
    "content_for",
    "error_result",
    "json_text",
    "wire_json",
    "wire_text",
]

logger = logging.getLogger("ioc_workflows_mcp.offline")


class _NoStructuredOutput:
    def __repr__(self) -> str:
        return "NO_STRUCTURED_OUTPUT"


NO_STRUCTURED_OUTPUT: Any = _NoStructuredOutput()
"""Marker for tools whose real function declares no return type (or a bare ``dict``): no
structuredContent, no outputSchema."""


def json_text(value: Any) -> str:
    """The text FastMCP 1.x puts in a block for a non-str value."""
    return pydantic_core.to_json(value, fallback=str, indent=2).decode()


def content_for(value: Any) -> list[TextContent]:
    """FastMCP 1.x ``_convert_to_content`` for the JSON values the stand-ins return."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [block for item in value for block in content_for(item)]
    if not isinstance(value, str):
        value = json_text(value)
    return [TextContent(type="text", text=value)]


def error_result(tool_name: str, exc: BaseException | str) -> CallToolResult:
    """``isError=true`` as FastMCP 1.x reports an exception raised by a tool."""
    return CallToolResult(
        content=[TextContent(type="text", text=f"Error executing tool {tool_name}: {exc}")], is_error=True
    )


# --------------------------------------------------------------------------------------------------
# The emulated APIs answer with parsed bodies; the real clients see bytes. These two give what the real
# clients would see from the loopback HTTP fakes (tests/upstream_support/fakes.py ``_encode``): a body whose
# content type mentions json is sent as ``json.dumps(body)``, any other as ``str(body)``.


def wire_text(response: Any) -> str:
    """The response body as the text on the wire."""
    body = response.body
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    if "json" in response.content_type:
        return json.dumps(body)
    return "" if body is None else str(body)


def wire_json(response: Any) -> Any:
    """``json.loads`` of the body on the wire: a fresh object each time; ``ValueError`` if not JSON."""
    if not isinstance(response.body, bytes) and "json" in response.content_type:
        return copy.deepcopy(response.body)
    return json.loads(wire_text(response))


def _latency_from_env() -> tuple[float, float]:
    def ms(name: str) -> float:
        raw = os.environ.get(name, "").strip()
        try:
            return max(0.0, float(raw)) if raw else 0.0
        except ValueError:
            logger.warning("ignoring %s=%r: not a number", name, raw)
            return 0.0

    return ms("IOC_STANDIN_LATENCY_MS"), ms("IOC_STANDIN_JITTER_MS")


class StandinServer(MCPServer):
    """``MCPServer`` whose tools answer the way the FastMCP 1.x upstream they stand in for answers.

    Register tools with :meth:`standin_tool`. ``IOC_STANDIN_LATENCY_MS`` (plus a uniform
    ``±IOC_STANDIN_JITTER_MS``) is slept before every tool call, for benchmarks. ``serialize_calls``
    makes the server handle one tool call at a time, like an upstream whose async tools block on sync I/O.
    """

    def __init__(self, *args: Any, serialize_calls: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._latency_ms, self._jitter_ms = _latency_from_env()
        # A real server that runs blocking I/O inside async tools (google-secops-mcp) serves one call at a time.
        self._one_at_a_time = anyio.Lock() if serialize_calls else None

    async def _simulated_latency(self) -> None:
        delay = self._latency_ms
        if self._jitter_ms:
            delay += random.uniform(-self._jitter_ms, self._jitter_ms)
        if delay > 0:
            await anyio.sleep(delay / 1000)

    def standin_tool(
        self, *, output: Any = NO_STRUCTURED_OUTPUT, description: str | None = None
    ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
        """Register an async function as a tool with the real tool's name, parameters and defaults.

        ``output`` is the return annotation of the real function (``typing.Dict[str, typing.Any]``,
        ``str``, ...), or :data:`NO_STRUCTURED_OUTPUT`. The function returns a plain value, converted
        as 1.x converts it; whatever it raises becomes 1.x's ``Error executing tool`` result.
        """

        def decorator(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            name = fn.__name__
            output_model: type[BaseModel] | None = None
            if output is not NO_STRUCTURED_OUTPUT:
                output_model = create_model(f"{name}Output", result=output)

            @functools.wraps(fn)
            async def run(**kwargs: Any) -> CallToolResult:
                if self._one_at_a_time is None:
                    return await invoke(kwargs)
                async with self._one_at_a_time:
                    return await invoke(kwargs)

            async def invoke(kwargs: dict[str, Any]) -> CallToolResult:
                await self._simulated_latency()
                try:
                    value = await fn(**kwargs)
                    content = content_for(value)
                    structured = None
                    if output_model is not None:
                        validated = output_model.model_validate({"result": value})
                        structured = validated.model_dump(mode="json", by_alias=True)
                except Exception as exc:
                    logger.debug("tool %s failed: %r", name, exc)
                    return error_result(name, exc)
                return CallToolResult(content=content, structured_content=structured)

            returns = CallToolResult if output_model is None else Annotated[CallToolResult, output]
            run.__signature__ = inspect.signature(fn, eval_str=True).replace(  # type: ignore[attr-defined]
                return_annotation=returns
            )
            self.add_tool(run, name=name, description=description or inspect.getdoc(fn))
            return fn

        return decorator


def announce(upstream: str, fixtures: str) -> None:
    """The one start-up line on stderr that says what this process is."""
    print(
        f"[{upstream}-offline-standin] OFFLINE STAND-IN for {upstream}: serving bundled fixtures from "
        f"{fixtures}; no real API is contacted.",
        file=sys.stderr,
        flush=True,
    )
