"""Command line: serve MCP (stdio or streamable HTTP), run one analysis, or check the upstreams."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import socket
import sys
import traceback
from typing import TYPE_CHECKING, Any

import anyio

from ioc_workflows_mcp import __version__
from ioc_workflows_mcp.indicator import Indicator, IndicatorError
from ioc_workflows_mcp.render import to_markdown
from ioc_workflows_mcp.settings import CONFIG_ENV_VAR, Config, ConfigError, Settings, load_config
from ioc_workflows_mcp.upstream.pool import UpstreamFailure, UpstreamPool
from ioc_workflows_mcp.workflows.correlate import correlate
from ioc_workflows_mcp.workflows.enrich import enrich
from ioc_workflows_mcp.workflows.investigate import investigate
from ioc_workflows_mcp.workflows.pivot import PivotArgumentError, pivot
from ioc_workflows_mcp.workflows.sources import Sources

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_BUG = 70  # EX_SOFTWARE: an error of ours, not of the input or an upstream
WORKFLOWS = ("enrich", "pivot", "correlate", "investigate", "full")
# analyze options -> the workflows that read them; any other workflow refuses them rather than ignore them
_OPTION_WORKFLOWS = {
    "depth": ("--depth", ("pivot", "investigate", "full")),
    "scope": ("--scope", ("correlate", "investigate", "full")),
    "lookback_days": ("--lookback-days", ("enrich", "correlate", "investigate", "full")),
    "pivot_if": ("--pivot-if", ("investigate", "full")),
}

DESCRIPTION = f"""\
ioc-workflows-mcp {__version__}: deterministic IOC enrich / pivot / correlate workflows as one MCP server,
over Google's gti-mcp, secops-mcp and secops-soar MCP servers.

With no command it serves MCP over stdio (what an MCP host runs). Without a config file it uses bundled
OFFLINE STAND-INS serving fixture data, and says so on stderr and in every result (data_mode)."""

EPILOG = f"""\
examples:
  ioc-workflows-mcp analyze secure-update.example.net
  ioc-workflows-mcp analyze 'hxxps[:]//login.example[.]net/reset' --format markdown
  ioc-workflows-mcp serve --transport http --host 127.0.0.1 --port 8000
  ioc-workflows-mcp --config upstreams.json doctor

config: --config FILE or ${CONFIG_ENV_VAR}; JSON in the MCP hosts' "mcpServers" format, upstream names
gti, secops, soar; ${{VAR}} is expanded from the environment. See README.md.

exit codes: 0 ok, 1 failed (doctor: a tool is missing or an upstream is down; serve: the address cannot be
bound), 2 bad input or config, 70 internal error (a bug: please report it), 130 stopped by Ctrl-C."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ioc-workflows-mcp",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_common(parser, None)
    # The same options after the command too: `analyze X --config F` works like `--config F analyze X`.
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[common], help="serve MCP (the default, over stdio)")
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    serve.add_argument("--host", default=None, help="HTTP bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=None, help="HTTP port (default 8000)")

    analyze = commands.add_parser(
        "analyze", parents=[common], help="run one workflow on an indicator and print the result"
    )
    analyze.add_argument("value", metavar="VALUE", help="the indicator (defanged forms accepted)")
    analyze.add_argument("--type", dest="ioc_type", metavar="T", help='indicator type, e.g. "Domain", ip, sha256')
    analyze.add_argument(
        "--workflow",
        choices=WORKFLOWS,
        default="enrich",
        help='enrich (default), pivot, correlate, or investigate: the whole chain (analyze_ioc\'s "full"; '
        "--workflow full works too)",
    )
    analyze.add_argument(
        "--depth", type=int, default=None, choices=[1, 2, 3], help="pivot depth (default: pivot 1, investigate 2)"
    )
    analyze.add_argument(
        "--scope",
        choices=["recent", "extended", "comprehensive"],
        default=None,
        help="SOAR case window: 30, 90 or 365 days (correlate, investigate; default recent)",
    )
    analyze.add_argument(
        "--lookback-days", type=_days, default=None, metavar="N", help="SIEM window, 1-365 (default 30)"
    )
    analyze.add_argument(
        "--pivot-if",
        choices=["high_risk", "always", "never"],
        default=None,
        help="investigate: pivot when the enrichment risk is critical/high (default), always, or never",
    )
    analyze.add_argument("--format", choices=["json", "markdown"], default="json")

    commands.add_parser(
        "doctor", parents=[common], help="connect to each upstream and check every tool the workflows call"
    )
    return parser


def _add_common(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help=f"JSON config file (default: ${CONFIG_ENV_VAR}, else the offline stand-ins)",
    )
    parser.add_argument(
        "--log-level",
        default=default,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="stderr log level (default WARNING)",
    )


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if not 1 <= value <= 365:
        raise argparse.ArgumentTypeError(f"{value} is out of range; give 1 to 365 days")
    return value


_tracebacks = False  # --log-level DEBUG: an internal error prints its traceback


def _setup_logging(level: str | None, config: Config | None) -> None:
    global _tracebacks
    chosen = level or (config.settings.log_level if config else "WARNING")
    _tracebacks = chosen.upper() == "DEBUG"
    logging.basicConfig(stream=sys.stderr, level=chosen.upper(), format="%(levelname)s %(name)s: %(message)s")
    if config is not None and config.secrets:
        redacting = _RedactingFilter(config)
        for handler in logging.getLogger().handlers:
            handler.addFilter(redacting)


class _RedactingFilter(logging.Filter):
    def __init__(self, config: Config):
        super().__init__()
        self._config = config

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._config.redact(record.getMessage())
        record.args = None
        return True


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("ioc-workflows-mcp: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # upstream trouble is data in the result; what lands here is a bug of ours
        if _tracebacks:
            traceback.print_exc(file=sys.stderr)
        print(
            f"ioc-workflows-mcp: internal error (a bug, please report it): {type(exc).__name__}: {exc}\n"
            "  the traceback: run again with --log-level DEBUG",
            file=sys.stderr,
        )
        return EXIT_BUG


def _main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ioc-workflows-mcp: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _setup_logging(args.log_level, config)
    command = args.command or "serve"
    if command == "serve" and getattr(args, "transport", "stdio") == "stdio":
        given = [
            flag for flag, name in (("--host", "host"), ("--port", "port")) if getattr(args, name, None) is not None
        ]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            print(f"ioc-workflows-mcp: {' and '.join(given)} {verb} to --transport http only", file=sys.stderr)
            return EXIT_USAGE
    if command == "serve":
        return _serve(
            config,
            getattr(args, "transport", "stdio"),
            getattr(args, "host", None) or "127.0.0.1",
            getattr(args, "port", None) or 8000,
        )
    if command == "analyze":
        return _analyze(config, args)
    return anyio.run(_doctor, config)


def _serve(config: Config, transport: str, host: str, port: int) -> int:
    from ioc_workflows_mcp.server import build_server

    server = build_server(config)
    if transport == "http":
        problem = _cannot_bind(host, port)
        if problem:
            print(f"ioc-workflows-mcp: cannot serve on {host}:{port}: {problem}", file=sys.stderr)
            return EXIT_FAILED
        anyio.run(_serve_http, server, config.settings, host, port)
        return EXIT_OK

    # The stdio transport reads stdin in a worker thread that no cancellation can interrupt, so a Ctrl-C
    # would wait for the next line of input. Stop at once instead: the upstream servers are our children
    # on pipes, and they exit when those pipes close.
    def stop(signum: int, _frame: object) -> None:
        print(f"ioc-workflows-mcp: stopped by {signal.Signals(signum).name}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(128 + signum)

    signal.signal(signal.SIGINT, stop)
    server.run()
    return EXIT_OK


async def _serve_http(server: MCPServer, settings: Settings, host: str, port: int) -> None:
    """Streamable HTTP under uvicorn, as ``MCPServer.run("streamable-http")`` does, with our keep-alive."""
    import uvicorn

    app = server.streamable_http_app(host=host)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower(),  # --log-level
        timeout_keep_alive=settings.http_keep_alive_seconds,
    )
    await uvicorn.Server(config).serve()


def _cannot_bind(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served (in use, not an address of this machine), or None."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"{host!r} is not a usable address ({exc.strerror})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is out of range; give 1 to 65535")
    return value


def _inapplicable(args: argparse.Namespace) -> str | None:
    """An option the chosen workflow does not read is a mistake to point out, not to ignore."""
    for name, (flag, workflows) in _OPTION_WORKFLOWS.items():
        if getattr(args, name) is not None and args.workflow not in workflows:
            users = ", ".join(w for w in workflows if w != "full")
            return f"{flag} applies to --workflow {users}, not {args.workflow}"
    return None


def _analyze(config: Config, args: argparse.Namespace) -> int:
    problem = _inapplicable(args)
    if problem:
        print(f"ioc-workflows-mcp: {problem}", file=sys.stderr)
        return EXIT_USAGE
    scope, lookback, pivot_if = args.scope or "recent", args.lookback_days or 30, args.pivot_if or "high_risk"
    try:
        indicator = Indicator.parse(args.value, args.ioc_type)
    except IndicatorError as exc:
        # The messages speak the MCP tools' argument names; on the command line the option is --type.
        text = re.sub(r'ioc_type="([^"]+)"', r"--type \1", str(exc)).replace("ioc_type", "--type")
        print(f"ioc-workflows-mcp: invalid indicator: {text}", file=sys.stderr)
        return EXIT_USAGE
    line = config.data_mode_line()
    if line:
        print(line, file=sys.stderr)

    async def run() -> Any:
        async with UpstreamPool(config) as pool:
            sources = Sources.from_pool(pool, config)
            if args.workflow == "enrich":
                return await enrich(indicator, sources, lookback)
            if args.workflow == "pivot":
                return await pivot(indicator, sources, args.depth or 1)
            if args.workflow == "correlate":
                return await correlate(indicator, sources, scope, lookback)
            return await investigate(indicator, sources, args.depth or 2, scope, lookback, pivot_if)

    try:
        result = anyio.run(run)
    except PivotArgumentError as exc:
        print(f"ioc-workflows-mcp: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.format == "markdown":
        print(to_markdown(result))
    else:
        print(json.dumps(result.model_dump(mode="json"), indent=2))
    return EXIT_OK


async def _doctor(config: Config) -> int:
    """List each upstream's tools and check the ones we call accept the arguments we send."""
    from ioc_workflows_mcp.workflows.sources import Sources

    print(f"config: {config.source} (data mode {config.data_mode})")
    healthy = True
    async with UpstreamPool(config) as pool:
        sources = Sources.from_pool(pool, config)
        facades = {"gti": sources.gti, "secops": sources.siem, "soar": sources.soar}
        for name, conn in pool.connections.items():
            where = conn.spec.url or " ".join([conn.spec.command or "", *conn.spec.args])
            print(f"\n[{name}] {conn.spec.transport}: {where}")
            try:
                tools = await conn.list_tools()
            except UpstreamFailure as failure:
                healthy = False
                print(f"  UNAVAILABLE: {failure.message}")
                continue
            print(f"  {len(tools)} tools: {', '.join(sorted(tool.name for tool in tools))}")
            by_name = {tool.name: tool for tool in tools}
            for tool_name, sent in sorted(facades[name].tools.items()):
                problem = _check_tool(by_name.get(tool_name), sent)
                healthy &= problem is None
                print(
                    f"  {'ok     ' if problem is None else 'MISSING'} {tool_name}({', '.join(sorted(sent))})"
                    + (f": {problem}" if problem else "")
                )
    print("\nall upstream tools present" if healthy else "\nsome upstream tools are missing or unusable")
    return EXIT_OK if healthy else EXIT_FAILED


def _check_tool(tool: Any, sent: frozenset[str]) -> str | None:
    if tool is None:
        return "the upstream does not expose this tool"
    schema = tool.input_schema or {}
    accepted = set((schema.get("properties") or {}).keys())
    required = set(schema.get("required") or [])
    unknown = sorted(sent - accepted)
    if unknown:
        return f"does not accept argument(s) {unknown}"
    missing = sorted(required - sent)
    if missing:
        return f"requires argument(s) {missing} that we do not send"
    return None


if __name__ == "__main__":
    sys.exit(main())
