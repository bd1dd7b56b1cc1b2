"""Shared test set-up: the real-upstream fixtures, and helpers to reach the product as users do."""

from __future__ import annotations

import os
import shutil
import sys
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
