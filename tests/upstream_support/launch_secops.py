"""Run the REAL google-secops-mcp server (stdio) against a loopback Chronicle API.

Run it with the upstream venv's interpreter (``.upstreams/bin/python launch_secops.py``).

The secops SDK hard-codes ``https://{region}-chronicle.googleapis.com/{version}`` in
``secops.chronicle.client.BaseUrl`` and has no override, so this launcher swaps that class for one
rooted at ``CHRONICLE_BASE_URL`` (ChronicleClient reads the module global each time a client is built,
which secops-mcp does on every tool call). Auth needs no patch: point ``GOOGLE_APPLICATION_CREDENTIALS``
at an ``authorized_user`` file holding a static, far-future token and requests carry
``authorization: Bearer <token>``.

Two guards, so a test can neither corrupt the stdio stream nor reach Google:
- ``print()`` (the SDK prints a warning to stdout when the prevalence call fails) goes to stderr, while
  the MCP transport still writes its JSON-RPC lines to the real fd 1;
- every request of the SDK's AuthorizedSession must start with ``CHRONICLE_BASE_URL``; anything else
  (a region-specific host the BaseUrl swap does not cover, a token refresh) fails fast.

Environment: ``CHRONICLE_BASE_URL``, ``CHRONICLE_PROJECT_ID``, ``CHRONICLE_CUSTOMER_ID``,
``CHRONICLE_REGION``, ``GOOGLE_APPLICATION_CREDENTIALS`` (and ``HOME`` pointing somewhere without a
gcloud ADC).
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _require(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        sys.exit(f"launch_secops: environment variable {name} is required")
    return value


class _StdoutToStderr:
    """Stands in for ``sys.stdout``: text written with print() goes to stderr, while ``.buffer`` (which
    the MCP stdio transport wraps when the server starts) stays the real stdout pipe."""

    def __init__(self, buffer: Any) -> None:
        self.buffer = buffer

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(sys.stderr, name)


def _patch_base_url(base: str) -> None:
    import secops.chronicle.client as chronicle_client
    from secops.chronicle.models import APIVersion

    class _LoopbackBaseUrl(str):
        # Same interface as secops' BaseUrl: a str of the default-version base, callable for others.
        def __new__(cls, version: Any, region: str = "us") -> _LoopbackBaseUrl:
            return super().__new__(cls, f"{base}/{version}")

        def __init__(self, version: Any, region: str = "us") -> None:
            self._default = version
            self._region = region

        def __call__(self, version: Any = None, allowed: Any = None) -> str:
            selected = APIVersion(version or self._default)
            if allowed and selected not in allowed:
                from secops.exceptions import SecOpsError

                raise SecOpsError(f'API version "{selected}" is not supported for this endpoint.')
            return f"{base}/{selected}"

    chronicle_client.BaseUrl = _LoopbackBaseUrl


def _confine_requests(base: str) -> None:
    from google.auth.transport.requests import AuthorizedSession

    original = AuthorizedSession.request

    def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if not str(url).startswith(base + "/"):
            raise RuntimeError(f"launch_secops: refusing a request outside {base}: {method} {url}")
        return original(self, method, url, *args, **kwargs)

    AuthorizedSession.request = request  # type: ignore[method-assign]


def main() -> None:
    base = _require("CHRONICLE_BASE_URL").rstrip("/")
    for name in ("CHRONICLE_PROJECT_ID", "CHRONICLE_CUSTOMER_ID", "GOOGLE_APPLICATION_CREDENTIALS"):
        _require(name)  # secops-mcp falls back to a real Google project and ADC without them

    sys.stdout = _StdoutToStderr(sys.stdout.buffer)
    _patch_base_url(base)
    _confine_requests(base)

    from secops_mcp.server import main as serve

    serve()  # FastMCP over stdio; returns when stdin closes


if __name__ == "__main__":
    main()
