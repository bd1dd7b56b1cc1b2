"""The command line, run as a user runs it: the installed console script in a subprocess."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.conftest import child_env, console_script, http_server


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script(), *args], capture_output=True, text=True, timeout=timeout, env=env or child_env()
    )


def test_analyze_prints_documented_json_and_says_offline() -> None:
    proc = run("analyze", "secure-update.example.net")
    assert proc.returncode == 0, proc.stderr
    assert "DATA MODE offline-fixtures" in proc.stderr
    data = json.loads(proc.stdout)
    assert data["data_mode"] == "offline-fixtures"
    assert data["gti_analysis"]["reputation_score"] == "87/100"
    assert data["siem_context"]["event_count"] == 83
    assert data["ioc_matches"]["match_count"] == 1


def test_analyze_markdown_and_options() -> None:
    proc = run(
        "analyze",
        "hxxps[:]//login.example[.]net/reset",
        "--type",
        "URL",
        "--lookback-days",
        "7",
        "--format",
        "markdown",
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("# url `https://login.example.net/reset` — malicious")
    assert "DATA MODE offline-fixtures" in out
    assert "| reputation_score | 82/100 |" in out
    assert "## IOC matches" in out


def test_analyze_private_ip_skips_threat_intel() -> None:
    data = json.loads(run("analyze", "10.20.30.40").stdout)
    assert data["gti_analysis"]["section"]["status"] == "skipped_policy"
    assert data["lookback_days"] == 30


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("analyze", "payload.xrat"), "unknown TLD `xrat`"),
        (("analyze", ""), "empty or invalid IOC value"),
        (("analyze", "8.8.8.8", "--workflow", "pivot", "--depth", "4"), "invalid choice"),
        (("analyze", "8.8.8.8", "--lookback-days", "400"), "1 to 365"),
        (("analyze", "invoice.zip"), "ambiguous"),
        (("analyze", "invoice.zip"), "To look it up as a domain, pass --type domain;"),
        (("analyze", "example.com", "--type", "ip"), "pass --type domain or leave --type out"),
        (
            ("analyze", "8.8.8.8", "--scope", "extended"),
            "--scope applies to --workflow correlate, investigate, not enrich",
        ),
        (("analyze", "8.8.8.8", "--workflow", "pivot", "--lookback-days", "7"), "--lookback-days applies to"),
        (("analyze", "8.8.8.8", "--workflow", "correlate", "--pivot-if", "always"), "--pivot-if applies to"),
        (("analyze", "8.8.8.8", "--depth", "2"), "--depth applies to --workflow pivot, investigate, not enrich"),
        (("serve", "--port", "9999"), "--port applies to --transport http only"),
        (("serve", "--host", "0.0.0.0", "--port", "9999"), "--host and --port apply to --transport http only"),
    ],
)
def test_bad_input_exits_2_with_a_reason(args: tuple[str, ...], fragment: str) -> None:
    proc = run(*args)
    assert proc.returncode == 2
    assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_help_lists_commands() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for word in ("serve", "analyze", "doctor", "--config", "OFFLINE STAND-INS"):
        assert word in proc.stdout
    analyze = run("analyze", "--help").stdout
    for option in ("--type", "--workflow", "--depth", "--scope", "--lookback-days", "--format"):
        assert option in analyze


def test_doctor_offline_reports_every_tool_present() -> None:
    proc = run("doctor")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "data mode offline-fixtures" in proc.stdout
    for tool in (
        "get_domain_report(domain)",
        "lookup_entity(entity_value, hours_back)",
        "get_ioc_matches(hours_back, max_matches)",
        "list_cases(next_page_token)",
    ):
        assert f"ok      {tool}" in proc.stdout
    assert "all upstream tools present" in proc.stdout


def test_doctor_names_a_command_that_is_not_on_path(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"mcpServers": {"gti": {"command": "gti_mcp_not_installed"}}}))
    proc = run("--config", str(config), "doctor")
    assert proc.returncode == 1
    assert "command 'gti_mcp_not_installed' not found (not on PATH, or no such file)" in proc.stdout
    assert "mcpServers.gti.command" in proc.stdout


def test_doctor_reports_a_dead_upstream_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps({"mcpServers": {"soar": {"command": "/bin/false"}}, "settings": {"startup_timeout_seconds": 10}})
    )
    proc = run("--config", str(config), "doctor")
    assert proc.returncode == 1
    assert "[soar]" in proc.stdout and "UNAVAILABLE" in proc.stdout
    assert "data mode mixed" in proc.stdout


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("not json", "not valid JSON"),
        (
            '{"mcpServers": {"gti": {"command": "x", "env": {"VT_APIKEY": "${IOC_TEST_UNSET_VAR}"}}}}',
            "IOC_TEST_UNSET_VAR is not set",
        ),
        ('{"mcpServers": {"virustotal": {"command": "x"}}}', "unknown upstream name"),
        ('{"mcpServers": {"gti": {"args": []}}}', "exactly one of 'command'"),
        ('{"mcpServers": {"gti": {"command": "x"}}, "settings": {"call_timeout_seconds": -1}}', "greater than 0"),
        ('{"settings": {"log_level": "LOUD"}}', "log_level: Input should be 'DEBUG', 'INFO', 'WARNING'"),
        ('{"mcpServers": {"gti": {"url": "not a url"}}}', "url 'not a url' is not an http:// or https:// URL"),
        (b'{"settings": {"log_level": "\xff"}}', "is not UTF-8 text (byte 28); save it as UTF-8 JSON"),
        (None, "is a directory; give the path of a JSON file"),
    ],
)
def test_config_errors_exit_2(tmp_path: Path, content: str | bytes | None, fragment: str) -> None:
    config = tmp_path / "c.json"
    if content is None:
        config.mkdir()
    elif isinstance(content, bytes):
        config.write_bytes(content)
    else:
        config.write_text(content)
    proc = run("--config", str(config), "analyze", "8.8.8.8")
    assert proc.returncode == 2
    assert fragment in proc.stderr, proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr


def test_config_env_var_and_expansion_keep_secret_out_of_output(tmp_path: Path) -> None:
    """A config naming the stand-ins explicitly, with a secret in env: the secret never shows."""
    secret = "sk-test-4c1d-never-print-me"
    config = tmp_path / "c.json"
    standin = {
        "command": console_script().replace("ioc-workflows-mcp", "python"),
        "args": ["-m", "ioc_workflows_mcp.offline", "gti"],
        "env": {"VT_APIKEY": "${IOC_TEST_KEY}"},
    }
    config.write_text(json.dumps({"mcpServers": {"gti": standin}}))
    proc = run(
        "analyze",
        "secure-update.example.net",
        "--log-level",
        "DEBUG",
        env=child_env(IOC_WORKFLOWS_CONFIG=str(config), IOC_TEST_KEY=secret),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["gti_analysis"]["reputation_score"] == "87/100"
    assert secret not in proc.stdout and secret not in proc.stderr


def test_serve_streamable_http(tmp_path: Path) -> None:
    with http_server(tmp_path) as served:

        async def talk() -> dict[str, Any]:
            async with Client(served.url, read_timeout_seconds=60) as client:
                names = {tool.name for tool in (await client.list_tools()).tools}
                assert {"enrich_ioc", "analyze_ioc"} <= names
                result = await client.call_tool("enrich_ioc", {"ioc_value": "login.example.net"})
                assert not result.is_error
                return result.structured_content or {}

        data = anyio.run(talk)
        assert data["gti_analysis"]["verdict"] == "suspicious"
        assert data["data_mode"] == "offline-fixtures"
    assert "DATA MODE offline-fixtures" in served.err.read_text()


def test_an_internal_error_is_one_clear_line_and_exit_70(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug of ours (not bad input, not an upstream failure) gives a line that says so, not a traceback;
    --log-level DEBUG shows the traceback."""
    from ioc_workflows_mcp import cli

    def broken(*_args: object, **_kwargs: object) -> int:
        raise KeyError("url:abc")

    monkeypatch.setattr(cli, "_analyze", broken)
    assert cli.main(["analyze", "secure-update.example.net"]) == 70
    err = capsys.readouterr().err
    assert "internal error (a bug, please report it): KeyError: 'url:abc'" in err
    assert "Traceback" not in err
    assert cli.main(["--log-level", "DEBUG", "analyze", "secure-update.example.net"]) == 70
    assert "Traceback" in capsys.readouterr().err
