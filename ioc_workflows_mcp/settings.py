"""Configuration: one JSON file in the MCP hosts' ``mcpServers`` format, plus our settings.

```json
{
  "mcpServers": {
    "gti":    {"command": "gti_mcp", "env": {"VT_APIKEY": "${VT_APIKEY}"}},
    "secops": {"command": "secops_mcp", "env": {"CHRONICLE_PROJECT_ID": "${CHRONICLE_PROJECT_ID}"}},
    "soar":   {"url": "http://127.0.0.1:9000/mcp"}
  },
  "settings": {"call_timeout_seconds": 30, "upstreams": {"gti": {"max_concurrency": 2}}}
}
```

``${VAR}`` (and ``${VAR:-default}``) are expanded from the environment, so secrets stay there. Values of
environment entries whose names look secret are remembered so that logs and errors can redact them.
With no config file at all, the bundled offline stand-ins are used and every result says so.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONFIG_ENV_VAR = "IOC_WORKFLOWS_CONFIG"
UPSTREAM_NAMES = ("gti", "secops", "soar")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)


class ConfigError(ValueError):
    """The config file is missing, unreadable or invalid. The message says what to fix."""


class UpstreamPolicy(BaseModel):
    """Per-upstream limits. Every field falls back to the global setting of the same name (see
    :class:`Settings` for what each one means and its default)."""

    model_config = ConfigDict(extra="forbid")

    call_timeout_seconds: float | None = Field(default=None, gt=0)
    startup_timeout_seconds: float | None = Field(default=None, gt=0)
    max_concurrency: int | None = Field(default=None, ge=1, le=64)
    max_retries: int | None = Field(default=None, ge=0, le=10)
    retry_backoff_seconds: float | None = Field(default=None, ge=0)
    retry_backoff_max_seconds: float | None = Field(default=None, ge=0)
    breaker_failure_threshold: int | None = Field(default=None, ge=0)
    breaker_reset_seconds: float | None = Field(default=None, gt=0)
    requests_per_minute: float | None = Field(default=None, gt=0)
    rate_limit_burst: int | None = Field(default=None, ge=1)
    rate_limit_max_wait_seconds: float | None = Field(default=None, ge=0)
    restart_cooldown_seconds: float | None = Field(default=None, ge=0)
    processes: int | None = Field(default=None, ge=1, le=16)


# google-secops-mcp answers one call at a time (its async tools block on a synchronous SDK), so the calls of
# one enrichment would queue behind each other on a single process; three processes let them run together.
DEFAULT_PROCESSES = {"secops": 3}
# gti-mcp serves calls concurrently (vt-py over aiohttp, one HTTP request per call), and one pivot level
# asks it for up to max_entities_per_level x 6 relationship lists at once: 16 at a time keeps a level to a
# few round trips. secops-soar-mcp is async too (aiohttp), and correlate checks 8 cases at a time. secops
# gets 4 over its 3 processes.
DEFAULT_CONCURRENCY = {"gti": 16, "soar": 8}


class CacheSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_entries: int = Field(default=2048, ge=0)
    ttl_seconds: float = Field(default=900, ge=0, description="Lifetime of a found result.")
    not_found_ttl_seconds: float = Field(default=120, ge=0, description="Lifetime of a not-found result.")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    call_timeout_seconds: float = Field(default=30, gt=0)
    startup_timeout_seconds: float = Field(default=60, gt=0)
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Calls in flight per upstream; null means 16 for gti, 8 for soar and 4 for secops.",
    )
    # Upstream call policy (ioc_workflows_mcp/upstream/policy.py); each can be set per upstream too.
    max_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Retries of one call after a retryable failure: a timeout with time left, a lost "
        "connection, an in-band 5xx-like error, a 429 that says when to retry. Never after not-found, "
        "auth or bad-request answers. All attempts fit in call_timeout_seconds.",
    )
    retry_backoff_seconds: float = Field(
        default=0.5, ge=0, description="First backoff; doubled per retry, with jitter (half fixed, half random)."
    )
    retry_backoff_max_seconds: float = Field(default=8, ge=0, description="Cap of one backoff.")
    breaker_failure_threshold: int = Field(
        default=5,
        ge=0,
        description="Consecutive failed calls (timeouts, lost connections, failed starts) that open the "
        "upstream's circuit; while open its sections fail at once as unavailable. 0 turns the breaker off.",
    )
    breaker_reset_seconds: float = Field(
        default=30, gt=0, description="How long the circuit stays open before one trial call (half-open)."
    )
    requests_per_minute: float | None = Field(
        default=None,
        gt=0,
        description="Token-bucket rate limit of calls to an upstream; off (null) by default. The public "
        "VirusTotal API allows 4: set settings.upstreams.gti.requests_per_minute to 4 with such a key.",
    )
    rate_limit_burst: int = Field(default=1, ge=1, description="Calls allowed back to back before the rate applies.")
    rate_limit_max_wait_seconds: float | None = Field(
        default=None,
        ge=0,
        description="Longest a call waits for its turn under the rate limit (or an upstream's retry-after) "
        "before it fails as rate_limited; null means call_timeout_seconds. Raise it to let a budgeted pivot "
        "queue behind a low limit instead of failing.",
    )
    restart_cooldown_seconds: float | None = Field(
        default=None,
        ge=0,
        description="After an upstream failed to start, calls fail at once for this long instead of paying "
        "the start-up again; null means 5 s.",
    )
    processes: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description="stdio upstream processes kept per upstream; a call goes to the least busy, and a further "
        "process starts only when the others are busy. null means 3 for secops (it serves one call at a time) "
        "and 1 for the others. The rate limit and circuit breaker are shared by an upstream's processes.",
    )
    ioc_match_limit: int = Field(default=1000, ge=1, description="max_matches sent to get_ioc_matches.")
    udm_event_limit: int = Field(default=200, ge=1, description="max_events sent to search_udm.")
    http_keep_alive_seconds: float = Field(
        default=75,
        gt=0,
        description="serve --transport http: how long an idle client connection stays open. Longer than the "
        "clients' own idle limits (Node's fetch: 4 s), so a client never sends a request on a connection "
        "the server is closing (uvicorn's default of 5 s lets a client stalled for 5 s fail with 'fetch failed').",
    )
    upstream_stderr: Literal["discard", "inherit"] = "discard"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    cache: CacheSettings = Field(default_factory=CacheSettings)
    upstreams: dict[str, UpstreamPolicy] = Field(default_factory=dict)

    def policy(self, upstream: str) -> UpstreamPolicy:
        """Effective limits of one upstream: its own values over the global ones."""
        own = self.upstreams.get(upstream, UpstreamPolicy())
        merged = {
            name: getattr(self, name) if getattr(own, name) is None else getattr(own, name)
            for name in UpstreamPolicy.model_fields
        }
        if merged["rate_limit_max_wait_seconds"] is None:
            merged["rate_limit_max_wait_seconds"] = merged["call_timeout_seconds"]
        if merged["max_concurrency"] is None:
            merged["max_concurrency"] = DEFAULT_CONCURRENCY.get(upstream, 4)
        if merged["processes"] is None:
            merged["processes"] = DEFAULT_PROCESSES.get(upstream, 1)
        return UpstreamPolicy(**merged)


class UpstreamSpec(BaseModel):
    """One upstream MCP server, as an MCP host would run it: stdio (command) or streamable HTTP (url)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_transport(self) -> UpstreamSpec:
        if bool(self.command) == bool(self.url):
            raise ValueError(f"upstream {self.name!r} needs exactly one of 'command' (stdio) or 'url' (HTTP)")
        if self.url and not re.match(r"https?://[^/\s]+", self.url):
            raise ValueError(f"url {self.url!r} is not an http:// or https:// URL (e.g. http://127.0.0.1:8001/mcp)")
        return self

    @property
    def transport(self) -> str:
        return "stdio" if self.command else "http"


class Config(BaseModel):
    upstreams: dict[str, UpstreamSpec]
    settings: Settings
    data_mode: Literal["offline-fixtures", "live", "mixed"]
    source: str = Field(description="Where the config came from: a file path, or 'built-in offline stand-ins'.")
    secrets: frozenset[str] = Field(default_factory=frozenset, exclude=True, repr=False)

    def data_mode_line(self) -> str | None:
        """The stderr line that says which upstreams are offline stand-ins; None when all are live."""
        offline = [name for name, spec in self.upstreams.items() if _is_offline(spec)]
        if not offline:
            return None
        return (
            f"ioc-workflows-mcp: DATA MODE {self.data_mode}: {', '.join(offline)} served by bundled offline "
            "stand-ins from fixtures/, not live threat intelligence."
        )

    def redact(self, text: str) -> str:
        """Replace every configured secret value in ``text``."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def _expand(value: str, where: str) -> str:
    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where} uses ${{{name}}}, but the environment variable {name} is not set")

    return _VAR.sub(sub, value)


def _expand_tree(node: Any, where: str) -> Any:
    if isinstance(node, str):
        return _expand(node, where)
    if isinstance(node, list):
        return [_expand_tree(item, where) for item in node]
    if isinstance(node, dict):
        return {key: _expand_tree(item, f"{where}.{key}") for key, item in node.items()}
    return node


def offline_upstreams() -> dict[str, UpstreamSpec]:
    """The bundled stand-ins, run with this very interpreter."""
    env = {"PYTHONUNBUFFERED": "1"}
    for passthrough in (
        "PYTHONPATH",
        "IOC_WORKFLOWS_FIXTURES",
        "IOC_STANDIN_LATENCY_MS",
        "IOC_STANDIN_JITTER_MS",
        "IOC_STANDIN_NOW",
    ):
        if passthrough in os.environ:
            env[passthrough] = os.environ[passthrough]
    return {
        name: UpstreamSpec(name=name, command=sys.executable, args=["-m", "ioc_workflows_mcp.offline", name], env=env)
        for name in UPSTREAM_NAMES
    }


def _is_offline(spec: UpstreamSpec) -> bool:
    return spec.args[-2:-1] == ["ioc_workflows_mcp.offline"] or "ioc_workflows_mcp.offline" in spec.args


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the config from ``path``, else from $IOC_WORKFLOWS_CONFIG, else use the offline stand-ins."""
    chosen = path or os.environ.get(CONFIG_ENV_VAR)
    if not chosen:
        return Config(
            upstreams=offline_upstreams(),
            settings=Settings(),
            data_mode="offline-fixtures",
            source="built-in offline stand-ins",
        )
    file = Path(chosen)
    named = f"config file {file}" + ("" if path else f" (from ${CONFIG_ENV_VAR})")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{named} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{named} is a directory; give the path of a JSON file") from None
    except OSError as exc:
        raise ConfigError(f"{named} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{named} is not UTF-8 text (byte {exc.start}); save it as UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {file} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {file} must hold a JSON object with 'mcpServers'")
    servers = raw.get("mcpServers", {})
    if not isinstance(servers, dict):
        raise ConfigError(f"'mcpServers' in {file} must be an object naming the upstreams {', '.join(UPSTREAM_NAMES)}")
    unknown_keys = sorted(set(raw) - {"mcpServers", "settings"})
    if unknown_keys:
        raise ConfigError(f"unknown top-level key(s) {unknown_keys} in {file}; use 'mcpServers' and 'settings'")
    unknown = sorted(set(servers) - set(UPSTREAM_NAMES))
    if unknown:
        raise ConfigError(f"unknown upstream name(s) {unknown} in {file}; use {', '.join(UPSTREAM_NAMES)}")

    secrets: set[str] = set()
    upstreams: dict[str, UpstreamSpec] = {}
    for name, entry in servers.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"mcpServers.{name} in {file} must be an object with 'command' or 'url'")
        expanded = _expand_tree(entry, f"mcpServers.{name}")
        for key, value in (expanded.get("env") or {}).items():
            if _SECRET_NAME.search(key) and value:
                secrets.add(str(value))
        for key, value in (expanded.get("headers") or {}).items():
            if value and key.lower() in ("authorization", "x-apikey", "appkey", "x-api-key"):
                secrets.add(str(value))
        try:
            upstreams[name] = UpstreamSpec(name=name, **expanded)
        except ValidationError as exc:
            raise ConfigError(f"mcpServers.{name} in {file} is invalid: {_first_error(exc)}") from None
    # An upstream left out of the file keeps its offline stand-in, and the data mode says so.
    defaults = offline_upstreams()
    for name in UPSTREAM_NAMES:
        upstreams.setdefault(name, defaults[name])

    try:
        settings = Settings.model_validate(_expand_tree(raw.get("settings") or {}, "settings"))
    except ValidationError as exc:
        raise ConfigError(f"settings in {file} are invalid: {_first_error(exc)}") from None

    offline = [name for name, spec in upstreams.items() if _is_offline(spec)]
    mode = "offline-fixtures" if len(offline) == len(upstreams) else ("mixed" if offline else "live")
    return Config(upstreams=upstreams, settings=settings, data_mode=mode, source=str(file), secrets=frozenset(secrets))


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err.get("loc", ()))
    message = str(err.get("msg")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
