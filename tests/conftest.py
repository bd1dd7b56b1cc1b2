"""Shared test set-up: the real-upstream fixtures, and helpers to reach the product as users do."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest_plugins = ["tests.upstream_support.pytest_plugin"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def console_script() -> str:
    """The installed `ioc-workflows-mcp` console script of this interpreter's environment."""
    beside = Path(sys.executable).with_name("ioc-workflows-mcp")
    found = str(beside) if beside.exists() else shutil.which("ioc-workflows-mcp")
    if not found:
        pytest.fail("the ioc-workflows-mcp console script is not installed; run: pip install -e '.[dev]'")
    return found


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a product subprocess: ours minus any config, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if key != "IOC_WORKFLOWS_CONFIG"}
    env.update(extra)
    return env


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def http_server(env: dict[str, str] | None = None, timeout: float = 30) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``ioc-workflows-mcp serve --transport http`` on a free 127.0.0.1 port: yields (MCP URL, process) once the
    port accepts connections, and stops the server afterwards (its stderr stays readable on the process)."""
    port = free_port()
    server = subprocess.Popen(
        [console_script(), "serve", "--transport", "http", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env or child_env(),
    )
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.fail(f"the HTTP server did not listen on port {port} within {timeout:g} s")
        yield f"http://127.0.0.1:{port}/mcp", server
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
