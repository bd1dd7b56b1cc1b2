"""Definitions of the three REAL upstream MCP servers, wired to running loopback fakes.

``upstream_config(fakes, workdir)`` returns them in the product's config format, the MCP hosts'
``mcpServers`` format::

    {"mcpServers": {
      "gti": {"command": "<venv>/bin/python", "args": ["<repo>/tests/upstream_support/launch_gti.py"],
              "env": {"VT_APIKEY": "test-vt-key", "GTI_BASE_URL": "http://127.0.0.1:PORT",
                      "HOME": "<workdir>/home"}},
      "secops": {"command": "<venv>/bin/python", "args": ["<repo>/tests/upstream_support/launch_secops.py"],
                 "env": {"CHRONICLE_BASE_URL": "http://127.0.0.1:PORT", "CHRONICLE_PROJECT_ID": "test-proj",
                         "CHRONICLE_CUSTOMER_ID": "cust-123", "CHRONICLE_REGION": "us",
                         "GOOGLE_APPLICATION_CREDENTIALS": "<workdir>/adc.json", "HOME": "<workdir>/home"}},
      "soar": {"command": "<venv>/bin/secops_soar_mcp", "args": [],
               "env": {"SOAR_URL": "http://127.0.0.1:PORT", "SOAR_APP_KEY": "test-app-key",
                       "HOME": "<workdir>/home"}}}}

Every variable a server needs is in its ``env``: the mcp 2.x stdio client passes only HOME LOGNAME PATH
SHELL TERM USER from the parent, and ``env`` is merged over those.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .fakes import (
    CHRONICLE_CUSTOMER,
    CHRONICLE_PROJECT,
    CHRONICLE_REGION,
    CHRONICLE_TOKEN,
    SOAR_APP_KEY,
    VT_API_KEY,
)

SUPPORT_DIR = Path(__file__).resolve().parent
REPO_ROOT = SUPPORT_DIR.parents[1]
LAUNCH_GTI = SUPPORT_DIR / "launch_gti.py"
LAUNCH_SECOPS = SUPPORT_DIR / "launch_secops.py"
SERVER_NAMES = ("gti", "secops", "soar")


def upstreams_venv() -> Path:
    """``$IOC_UPSTREAMS_VENV`` or ``<repo>/.upstreams``, as scripts/setup-upstreams.sh builds it."""
    return Path(os.environ.get("IOC_UPSTREAMS_VENV") or REPO_ROOT / ".upstreams").resolve()


def upstreams_python(venv: Path | None = None) -> Path:
    return (venv or upstreams_venv()) / "bin" / "python"


def venv_is_stale(venv: Path | None = None) -> bool:
    """True when the venv's stamp does not match the requirement and constraint files it was built from
    (scripts/setup-upstreams.sh writes ``sha256(requirements + constraints) <python version>``)."""
    venv = venv or upstreams_venv()
    digest = hashlib.sha256()
    for name in ("upstreams-requirements.txt", "upstreams.txt"):
        digest.update((REPO_ROOT / "constraints" / name).read_bytes())
    try:
        stamp = (venv / ".ioc-upstreams-stamp").read_text().split()
    except OSError:
        return True
    return not stamp or stamp[0] != digest.hexdigest()


def write_adc(workdir: Path, token: str = CHRONICLE_TOKEN) -> Path:
    """An ``authorized_user`` ADC file whose access token is static and expires in 2099, so google-auth
    never refreshes it (a refresh would go to Google) and sends ``authorization: Bearer <token>``."""
    path = workdir / "adc.json"
    adc = {
        "type": "authorized_user",
        "client_id": "fake-client-id.apps.googleusercontent.com",
        "client_secret": "fake-client-secret",
        "refresh_token": "fake-refresh-token",
        "token": token,
        "expiry": "2099-01-01T00:00:00Z",
    }
    path.write_text(json.dumps(adc, indent=2))
    path.chmod(0o600)
    return path


def _urls(fakes: Any) -> Mapping[str, str]:
    """Accept a ``FakeBackends`` (its ``.urls``) or a plain mapping ``{"vt"|"chronicle"|"soar": origin}``."""
    urls = fakes.urls if hasattr(fakes, "urls") else fakes
    return {name: str(urls[name]).rstrip("/") for name in ("vt", "chronicle", "soar")}


def upstream_config(fakes: Any, workdir: Path, *, venv: Path | None = None) -> dict[str, Any]:
    """The three real upstream servers, each pointed at its fake, in the ``mcpServers`` format.

    ``workdir`` receives ``adc.json`` and an empty ``home/`` used as every server's HOME (so no real
    gcloud credentials or dotfiles are picked up)."""
    venv = venv or upstreams_venv()
    python = str(upstreams_python(venv))
    urls = _urls(fakes)
    workdir = Path(workdir).resolve()
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    adc = write_adc(workdir)
    common = {"HOME": str(home)}
    return {
        "mcpServers": {
            "gti": {
                "command": python,
                "args": [str(LAUNCH_GTI)],
                "env": {"VT_APIKEY": VT_API_KEY, "GTI_BASE_URL": urls["vt"], **common},
            },
            "secops": {
                "command": python,
                "args": [str(LAUNCH_SECOPS)],
                "env": {
                    "CHRONICLE_BASE_URL": urls["chronicle"],
                    "CHRONICLE_PROJECT_ID": CHRONICLE_PROJECT,
                    "CHRONICLE_CUSTOMER_ID": CHRONICLE_CUSTOMER,
                    "CHRONICLE_REGION": CHRONICLE_REGION,
                    "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
                    **common,
                },
            },
            "soar": {
                "command": str(venv / "bin" / "secops_soar_mcp"),
                "args": [],
                "env": {"SOAR_URL": urls["soar"], "SOAR_APP_KEY": SOAR_APP_KEY, **common},
            },
        }
    }


def write_config(config: Mapping[str, Any], path: Path) -> Path:
    """Write a config (as returned by ``upstream_config``) to ``path`` as JSON; the file holds the test
    keys, so it is readable by the owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
    return path


def stdio_parameters(config: Mapping[str, Any], name: str) -> Any:
    """``mcp.StdioServerParameters`` for one server of a config (mcp 2.x, project venv only)."""
    from mcp import StdioServerParameters

    entry = config["mcpServers"][name]
    return StdioServerParameters(command=entry["command"], args=list(entry["args"]), env=dict(entry["env"]))
