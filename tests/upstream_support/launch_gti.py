"""Run the REAL gti-mcp server (stdio) against a loopback VirusTotal API.

Run it with the upstream venv's interpreter (``.upstreams/bin/python launch_gti.py``), never the
project's: it imports gti-mcp and vt-py, which live only in that venv (mcp 1.x).

gti-mcp has no base-URL setting. Every tool builds its client through the module global
``gti_mcp.server.vt_client_factory`` (the hook gti-mcp's own tests patch) and closes the client after
the call, so the factory returns a FRESH ``vt.Client`` each time. vt-py appends ``/api/v3`` itself, so
``GTI_BASE_URL`` is the bare origin, e.g. ``http://127.0.0.1:41234``.

Environment: ``VT_APIKEY`` (sent as ``X-Apikey``), ``GTI_BASE_URL``.
"""

from __future__ import annotations

import os
import sys


def _require(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        sys.exit(f"launch_gti: environment variable {name} is required")
    return value


def main() -> None:
    api_key = _require("VT_APIKEY")
    base_url = _require("GTI_BASE_URL").rstrip("/")

    import gti_mcp.server as gti_server
    import vt

    def _vt_client_factory(_ctx: object) -> vt.Client:
        return vt.Client(api_key, host=base_url)

    gti_server.vt_client_factory = _vt_client_factory
    gti_server.main()  # FastMCP over stdio; returns when stdin closes


if __name__ == "__main__":
    main()
