"""Run one offline stand-in over stdio: ``python -m ioc_workflows_mcp.offline gti|secops|soar``.

Environment:

* ``IOC_WORKFLOWS_FIXTURES``: the fixtures directory (default: the bundled ``fixtures/``).
* ``IOC_STANDIN_LATENCY_MS`` / ``IOC_STANDIN_JITTER_MS``: sleep this long (± jitter) before each tool call.
* ``IOC_STANDIN_LOG_LEVEL``: stderr log level (default ``WARNING``).
* ``IOC_STANDIN_FAULT`` and friends: run a misbehaving variant, for tests (see ``faults.py``).
* secops only: ``CHRONICLE_PROJECT_ID``, ``CHRONICLE_CUSTOMER_ID``, ``CHRONICLE_REGION`` (the same defaults
  as google-secops-mcp) and ``CHRONICLE_BASE_URL``; they only shape the URLs quoted in error texts.

stdout carries the MCP protocol and nothing else; the one start-up line and all logs go to stderr.
"""

import argparse
import asyncio
import logging
import os
import sys

from . import faults
from ._fastmcp1 import announce
from .backend import Backends, default_fixtures_dir

UPSTREAMS = {"gti": "gti-mcp", "secops": "google-secops-mcp", "soar": "secops-soar-mcp"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ioc_workflows_mcp.offline",
        description="Offline stand-ins for the upstream MCP servers, serving bundled fixtures over stdio.",
    )
    parser.add_argument("upstream", choices=sorted(UPSTREAMS), help="which upstream to stand in for")
    args = parser.parse_args(argv)

    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("IOC_STANDIN_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    faults.before_start(args.upstream)
    fixtures = default_fixtures_dir()
    announce(UPSTREAMS[args.upstream], str(fixtures))
    backends = Backends.load(fixtures)

    if args.upstream == "gti":
        from .gti_server import build_server
    elif args.upstream == "secops":
        from .secops_server import build_server
    else:
        from .soar_server import build_server, fetch_scopes

        try:
            asyncio.run(fetch_scopes(backends.soar))
        except Exception as exc:
            # secops-soar-mcp logs and exits 0 before the MCP handshake when GetScopes fails
            logging.getLogger("ioc_workflows_mcp.offline.soar").error("Error: %s", exc)
            return 0

    faults.install(build_server(backends), args.upstream).run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
