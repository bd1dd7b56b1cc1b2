"""An mcp 1.x client of ioc-workflows-mcp, as older MCP hosts are: run it with the ``.upstreams`` python (mcp 1.30).

    .upstreams/bin/python tests/clients/mcp1_client.py stdio .venv/bin/ioc-workflows-mcp [ARGS...]
    .upstreams/bin/python tests/clients/mcp1_client.py http http://127.0.0.1:8000/mcp

It connects (legacy ``initialize`` handshake), lists the tools, calls ``enrich_ioc`` on a good indicator and
on an invalid one, and prints one compact JSON summary on stdout. The server's stderr (stdio) passes through
to this script's stderr. Exit 0 when the session ran (the summary says what the server answered), 1 otherwise.
It imports only mcp 1.x and the standard library; it must not import the project (mcp 2.x).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from importlib.metadata import version
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

CLIENT_INFO = types.Implementation(name="ioc-workflows-mcp1-test-client", version="1")


def _text(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


def _tool(tool: types.Tool) -> dict[str, Any]:
    schema = tool.outputSchema or {}
    return {
        "name": tool.name,
        "title": tool.title,
        "output_schema_title": schema.get("title"),
        "output_schema_properties": sorted(schema.get("properties", {})),
        "input_required": tool.inputSchema.get("required", []),
        "annotations": tool.annotations.model_dump(by_alias=True, exclude_none=True) if tool.annotations else None,
    }


def _call(result: types.CallToolResult) -> dict[str, Any]:
    data = result.structuredContent
    picked = None
    if data is not None:
        gti = data.get("gti_analysis") or {}
        assessment = data.get("assessment") or {}
        picked = {
            "data_mode": data.get("data_mode"),
            "indicator_type": (data.get("indicator") or {}).get("type"),
            "indicator_value": (data.get("indicator") or {}).get("value"),
            "reputation_score": gti.get("reputation_score"),
            "gti_verdict": gti.get("verdict"),
            "verdict": assessment.get("verdict"),
            "risk_level": assessment.get("risk_level"),
            "lookback_days": data.get("lookback_days"),
            "summary": data.get("summary"),
        }
    return {
        "is_error": result.isError,
        "content_types": [block.type for block in result.content],
        "text": _text(result),
        "structured": picked,
    }


async def _session(session: ClientSession, transport: str, ioc: str, invalid: str) -> dict[str, Any]:
    init = await session.initialize()
    tools = (await session.list_tools()).tools
    # mcp 1.x validates structuredContent against the listed outputSchema inside call_tool (raises on mismatch).
    good = await session.call_tool("enrich_ioc", {"ioc_value": ioc, "lookback_days": 30})
    bad = await session.call_tool("enrich_ioc", {"ioc_value": invalid})
    return {
        "client": {"mcp": version("mcp"), "transport": transport},
        "protocol_version": init.protocolVersion,
        "server_info": {"name": init.serverInfo.name, "version": init.serverInfo.version},
        "capabilities": sorted(init.capabilities.model_dump(exclude_none=True)),
        "tools": [_tool(tool) for tool in tools],
        "enrich": _call(good),
        "invalid": _call(bad),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    timeout = timedelta(seconds=args.timeout)
    with anyio.fail_after(args.timeout * 3):
        if args.transport == "stdio":
            params = StdioServerParameters(command=args.target, args=args.server_args)
            async with (
                stdio_client(params) as (read, write),
                ClientSession(read, write, read_timeout_seconds=timeout, client_info=CLIENT_INFO) as session,
            ):
                return await _session(session, "stdio", args.ioc, args.invalid)
        async with (
            streamable_http_client(args.target) as (read, write, _),
            ClientSession(read, write, read_timeout_seconds=timeout, client_info=CLIENT_INFO) as session,
        ):
            return await _session(session, "streamable-http", args.ioc, args.invalid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ioc", default="secure-update.example.net")
    parser.add_argument("--invalid", default="payload.xrat")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("transport", choices=["stdio", "http"])
    parser.add_argument("target", help="server command (stdio) or URL (http)")
    parser.add_argument("server_args", nargs=argparse.REMAINDER, help="arguments of the server command (stdio)")
    args = parser.parse_args(argv)
    try:
        summary = anyio.run(run, args)
    except Exception as exc:  # report any failure as one line; the test shows stderr
        print(f"mcp1_client: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
