"""Pytest fixtures for tests that run the REAL upstream MCP servers against loopback fakes.

Register from ``tests/conftest.py`` with ``pytest_plugins = ["tests.upstream_support.pytest_plugin"]``
(or the equivalent import path).

- ``upstream_venv`` (session): the ``.upstreams`` venv. Missing venv: skip with a hint, or FAIL when
  ``IOC_REQUIRE_UPSTREAMS`` is set to a true value (CI sets it, so a broken setup cannot pass as skipped).
- ``fake_backends_session`` (session): the three fakes, started once.
- ``fake_backends`` (function): the same fakes with fresh emulation state, no injections, no intercepts
  and an empty request log for each test.
- ``upstream_workdir`` (session): a temp dir holding ``adc.json`` and the servers' HOME.
- ``real_upstreams_config`` (session): path of the ``mcpServers`` JSON for the three real servers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from .fakes import FakeBackends
from .harness import upstream_config, upstreams_python, upstreams_venv, venv_is_stale, write_config

_TRUE = {"1", "true", "yes", "on"}


def upstreams_required() -> bool:
    return os.environ.get("IOC_REQUIRE_UPSTREAMS", "").strip().lower() in _TRUE


@pytest.fixture(scope="session")
def upstream_venv() -> Path:
    venv = upstreams_venv()
    python = upstreams_python(venv)
    if not (python.exists() and os.access(python, os.X_OK)):
        message = f"the upstream venv is missing ({python} not found); build it with: bash scripts/setup-upstreams.sh"
        if upstreams_required():
            pytest.fail(f"IOC_REQUIRE_UPSTREAMS is set and {message}", pytrace=False)
        pytest.skip(message)
    if venv_is_stale(venv):
        warnings.warn(
            f"{venv} was built from other constraints than constraints/upstreams*.txt; "
            "rebuild it with: bash scripts/setup-upstreams.sh",
            stacklevel=1,
        )
    return venv


@pytest.fixture(scope="session")
def fake_backends_session() -> Iterator[FakeBackends]:
    fakes = FakeBackends()
    fakes.start()
    try:
        yield fakes
    finally:
        fakes.stop()


@pytest.fixture
def fake_backends(fake_backends_session: FakeBackends) -> Iterator[FakeBackends]:
    fake_backends_session.reset()
    yield fake_backends_session
    fake_backends_session.reset()


@pytest.fixture(scope="session")
def upstream_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("upstreams")


@pytest.fixture(scope="session")
def real_upstreams_config(upstream_venv: Path, fake_backends_session: FakeBackends, upstream_workdir: Path) -> Path:
    config = upstream_config(fake_backends_session, upstream_workdir, venv=upstream_venv)
    return write_config(config, upstream_workdir / "upstreams.mcp.json")
