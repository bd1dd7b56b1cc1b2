#!/usr/bin/env bash
# The test command: sets up what the tests need (idempotent, from nothing on a fresh machine), then runs
# ruff and the whole pytest suite, the real-upstream tier included.
#   .venv/       the project (mcp 2.x) with its dev tools
#   .upstreams/  the real gti-mcp, google-secops-mcp and secops-soar-mcp (mcp<2), pinned
#   tests/node/  the MCP inspector CLI, pinned by package-lock.json
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"

bash scripts/setup-upstreams.sh
if [ -f tests/node/package.json ]; then
    (cd tests/node && npm ci --silent --no-audit --no-fund >/dev/null)
fi

.venv/bin/ruff check .
export IOC_REQUIRE_UPSTREAMS=1
exec .venv/bin/python -m pytest -q "$@"
