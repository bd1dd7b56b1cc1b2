"""Shared test set-up: the real-upstream fixtures, and helpers to reach the product as users do."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from bench.common import free_port, product_env

pytest_plugins = ["tests.upstream_support.pytest_plugin"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def console_script() -> str:
    """The installed `ioc-workflows-mcp` console script of this interpreter's environment."""
    beside = Path(sys.executable).with_name("ioc-workflows-mcp")
    found = str(beside) if beside.exists() else shutil.which("ioc-workflows-mcp")
    if not found:
        pytest.fail("the ioc-workflows-mcp console script is not installed; run: pip install -e '.[dev]'")
    return found


# A product subprocess's environment (ours minus any config file) and a free loopback port: the benchmarks'
# helpers, the same for the tests.
child_env = product_env


def stdio_client(read_timeout_seconds: float) -> Client:
    """An MCP client of ``ioc-workflows-mcp`` over stdio, as an MCP host runs it (offline stand-ins)."""
    params = StdioServerParameters(command=console_script(), args=[], env=child_env())
    return Client(params, mode="legacy", read_timeout_seconds=read_timeout_seconds)


@dataclass(frozen=True)
class Served:
    """A running ``serve --transport http``: its MCP URL, its pid, and the files its stdout and stderr go to."""

    url: str
    pid: int
    out: Path
    err: Path


@contextmanager
def http_server(
    logs: Path, env: dict[str, str] | None = None, options: tuple[str, ...] = (), timeout: float = 30
) -> Iterator[Served]:
    """``ioc-workflows-mcp [options] serve --transport http`` on a free 127.0.0.1 port, its output in files under
    ``logs``. Yields once the port accepts connections (fails at once if the server exits first), and stops the
    server afterwards."""
    port = free_port()
    out, err = logs / f"serve-{port}.out", logs / f"serve-{port}.err"
    command = [console_script(), *options, "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)]
    with out.open("w") as stdout, err.open("w") as stderr:
        server = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=env or child_env()
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                pytest.fail(f"serve --transport http exited {server.returncode}:\n{err.read_text()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"serve --transport http did not listen on port {port} within {timeout:g} s")
            time.sleep(0.05)
        yield Served(f"http://127.0.0.1:{port}/mcp", server.pid, out, err)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)
