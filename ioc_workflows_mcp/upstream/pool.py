"""The upstream pool: one long-lived MCP client per upstream server.

A connection is started on first use, reused by every later call, and restarted after it dies. Each
call gets a timeout and waits for a per-upstream concurrency slot. Failures never escape as raw SDK
exceptions: they become :class:`UpstreamFailure`, which carries the section status a workflow reports.

Around each call sits the upstream's policy (``policy.py``, configured per upstream in settings): the
circuit breaker first (an open circuit fails the call at once), then the rate limiter (the caller waits
for its turn, up to ``rate_limit_max_wait_seconds``), then the attempts: retryable failures are tried again
with backoff while the call's deadline (``call_timeout_seconds`` from the first attempt) leaves room.

The MCP client keeps a task group open for its whole life, and anyio wants that group entered and left
in one task, so each connection lives in a task of its own inside the pool's task group; callers in
other tasks share its session, which the SDK supports.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import IO, Any

import anyio
import httpx2
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT, Implementation, TextContent, Tool

from ioc_workflows_mcp import __version__
from ioc_workflows_mcp.models import Status
from ioc_workflows_mcp.settings import Config, UpstreamSpec
from ioc_workflows_mcp.upstream.policy import (
    CircuitBreaker,
    CircuitOpen,
    RateLimited,
    RateLimiter,
    RetryPolicy,
    SignalKind,
    classify_output,
)

log = logging.getLogger(__name__)

# After a failed start, calls fail at once for this long instead of paying the start-up again.
RESTART_COOLDOWN_SECONDS = 5.0
_STDERR_TAIL_CHARS = 600


class UpstreamFailure(Exception):
    """An upstream call did not produce an answer. ``status`` is the section status to report."""

    def __init__(
        self,
        upstream: str,
        status: Status,
        message: str,
        retry_after: float | None = None,
        *,
        retryable: bool = False,
        upstream_down: bool | None = None,
        reached: bool = True,
    ):
        super().__init__(f"{upstream}: {message}")
        self.upstream = upstream
        self.status = status
        self.message = message
        self.retry_after = retry_after
        # May another attempt of the same call succeed (a timeout, a lost connection)?
        self.retryable = retryable
        # Does it count towards opening the circuit (the upstream did not answer at all)?
        self.upstream_down = status in (Status.TIMEOUT, Status.UNAVAILABLE) if upstream_down is None else upstream_down
        # False when the upstream was never asked (our own rate limit or open circuit refused the call)
        self.reached = reached


@dataclass(frozen=True)
class ToolOutput:
    """What an upstream tool returned, reduced to what the facades read."""

    is_error: bool
    texts: list[str]
    structured: Any = None
    has_structured: bool = False

    @property
    def text(self) -> str:
        return "\n".join(self.texts)


@dataclass
class _Live:
    client: Client | None = None
    error: BaseException | None = None
    scope: anyio.CancelScope | None = None
    stop: anyio.Event = field(default_factory=anyio.Event)
    ready: anyio.Event = field(default_factory=anyio.Event)
    dead: bool = False
    stderr: IO[str] | None = None
    stderr_tail: str = ""  # the last stderr line, kept when the session ends and the file is closed
    started: float = field(default_factory=time.monotonic)


class UpstreamConnection:
    """One upstream: its spec, its limits, and at most one live MCP session at a time."""

    def __init__(self, spec: UpstreamSpec, config: Config, task_group: anyio.abc.TaskGroup):
        policy = config.settings.policy(spec.name)
        self.spec = spec
        self.name = spec.name
        self.call_timeout = float(policy.call_timeout_seconds or 30)
        self.startup_timeout = float(policy.startup_timeout_seconds or 60)
        self._config = config
        self._tg = task_group
        self._slots = anyio.Semaphore(policy.max_concurrency or 4)
        self.retry = RetryPolicy(
            max_retries=policy.max_retries if policy.max_retries is not None else 2,
            backoff_seconds=policy.retry_backoff_seconds if policy.retry_backoff_seconds is not None else 0.5,
            backoff_max_seconds=policy.retry_backoff_max_seconds if policy.retry_backoff_max_seconds is not None else 8,
        )
        self.breaker = CircuitBreaker(
            policy.breaker_failure_threshold if policy.breaker_failure_threshold is not None else 5,
            policy.breaker_reset_seconds or 30,
        )
        self.limiter = RateLimiter(policy.requests_per_minute, policy.rate_limit_burst or 1)
        self.rate_limit_max_wait = (
            self.call_timeout if policy.rate_limit_max_wait_seconds is None else policy.rate_limit_max_wait_seconds
        )
        self.retries = 0
        self._restart_cooldown = policy.restart_cooldown_seconds
        self._lock = anyio.Lock()
        self._live: _Live | None = None
        self._failed_at: float | None = None
        self._failure: UpstreamFailure | None = None
        self.starts = 0
        self.calls = 0
        self.in_flight = 0

    @property
    def live(self) -> bool:
        return self._live is not None and not self._live.dead and self._live.client is not None

    # -- lifecycle -------------------------------------------------------------------------------

    def _transport(self, errlog: IO[str]) -> Any:
        spec = self.spec
        if spec.command:
            env = dict(spec.env)
            params = StdioServerParameters(command=spec.command, args=spec.args, env=env, cwd=spec.cwd)
            return stdio_client(params, errlog=errlog)
        http = httpx2.AsyncClient(headers=spec.headers, timeout=httpx2.Timeout(self.call_timeout, read=300))
        return streamable_http_client(spec.url or "", http_client=http)

    async def _serve(self, live: _Live) -> None:
        """Own one MCP session from start to stop; runs in the pool's task group."""
        with anyio.CancelScope() as scope:
            live.scope = scope
            try:
                errlog: IO[str] = sys.stderr
                if self._config.settings.upstream_stderr == "discard":
                    live.stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
                    errlog = live.stderr
                client = Client(
                    self._transport(errlog),
                    mode="legacy",
                    # every call sets its own; this one bounds the handshake, which a short call timeout
                    # must not cut on a slow start (startup_timeout_seconds is the bound for that)
                    read_timeout_seconds=max(self.call_timeout, self.startup_timeout),
                    client_info=Implementation(name="ioc-workflows-mcp", version=__version__),
                    cache=None,
                )
                async with client:
                    live.client = client
                    live.ready.set()
                    await live.stop.wait()
            except Exception as exc:  # the SDK raises many kinds; all mean "this session is gone"
                live.error = exc
            finally:
                live.dead = True
                if live.stderr is not None:
                    # Read it before closing: a server that exits during start-up says why on stderr.
                    live.stderr_tail = self._stderr_tail(live)
                    live.stderr.close()
                live.ready.set()

    def _stderr_tail(self, live: _Live) -> str:
        if live.stderr is None or live.stderr.closed:
            return ""
        # Read a secret's length more than we keep and drop that head: a secret cut by the window's start
        # would otherwise show in part, unredacted.
        margin = max((len(secret) for secret in self._config.secrets), default=0)
        try:
            live.stderr.flush()
            live.stderr.seek(0, os.SEEK_END)
            size = live.stderr.tell()
            start = max(0, size - _STDERR_TAIL_CHARS - margin)
            live.stderr.seek(start)
            text = live.stderr.read()
        except (OSError, ValueError):
            return ""
        tail = self._config.redact(text[margin:] if start else text).strip()
        return tail.splitlines()[-1] if tail else ""

    async def _session(self) -> Client:
        live = self._live
        if live is not None and not live.dead and live.client is not None:
            return live.client
        async with self._lock:
            live = self._live
            if live is not None and not live.dead and live.client is not None:
                return live.client
            if live is None or live.dead:
                cooldown = RESTART_COOLDOWN_SECONDS if self._restart_cooldown is None else self._restart_cooldown
                cooling = self._failed_at is not None and time.monotonic() - self._failed_at < cooldown
                if self._failure is not None and cooling:
                    raise self._failure
                live = _Live()
                self._live = live
                self.starts += 1
                self._tg.start_soon(self._serve, live)
            # else: a start is under way whose first waiter was cancelled (its call's deadline ran out);
            # wait for that one rather than start a second session and orphan the first
            with anyio.move_on_after(live.started + self.startup_timeout - time.monotonic()) as waited:
                await live.ready.wait()
            if waited.cancelled_caught or live.client is None:
                if waited.cancelled_caught:
                    reason = f"did not finish starting within {self.startup_timeout:g} s"
                else:
                    reason = f"could not start: {self._describe(live.error)}"
                tail = live.stderr_tail or self._stderr_tail(live)
                if tail:
                    reason += f" (last stderr line: {tail[:300]})"
                live.dead = True
                live.stop.set()
                if live.scope is not None:
                    live.scope.cancel()
                failure = UpstreamFailure(self.name, Status.UNAVAILABLE, reason)
                self._failure, self._failed_at = failure, time.monotonic()
                log.warning("upstream %s %s", self.name, reason)
                raise failure
            self._failure = self._failed_at = None
            return live.client

    def _mark_dead(self) -> None:
        live = self._live
        if live is not None:
            live.dead = True
            live.stop.set()

    async def aclose(self) -> None:
        live = self._live
        if live is not None:
            live.stop.set()

    # -- calls -----------------------------------------------------------------------------------

    def _describe(self, exc: BaseException | None) -> str:
        if exc is None:
            return "unknown error"
        if isinstance(exc, BaseExceptionGroup):
            return "; ".join(self._describe(inner) for inner in exc.exceptions[:3])
        if isinstance(exc, FileNotFoundError) and self.spec.command:
            return (
                f"command {self.spec.command!r} not found (not on PATH, or no such file); give its full path in "
                f"mcpServers.{self.spec.name}.command"
            )
        text = str(exc) or type(exc).__name__
        return self._config.redact(text)[:300]

    async def call(self, tool: str, arguments: dict[str, Any], timeout: float | None = None) -> ToolOutput:
        """Call ``tool`` under the upstream's policy; raise :class:`UpstreamFailure` when no answer could be had.

        ``timeout`` (default ``call_timeout_seconds``) bounds all attempts together, counted from the first
        attempt; the wait for a rate-limit turn before it is bounded by ``rate_limit_max_wait_seconds``."""
        self.in_flight += 1
        try:
            return await self._call(tool, arguments, timeout)
        finally:
            self.in_flight -= 1

    async def _call(self, tool: str, arguments: dict[str, Any], timeout: float | None) -> ToolOutput:
        limit = timeout or self.call_timeout
        try:
            trial = self.breaker.before_call()
        except CircuitOpen as open_:
            last = f" (last failure: {open_.last_error[:200]})" if open_.last_error else ""
            raise UpstreamFailure(
                self.name,
                Status.UNAVAILABLE,
                f"circuit open after {open_.failures} consecutive failures{last}; {tool} not called; "
                f"retry after {open_.retry_after:.1f}s",
                retry_after=round(open_.retry_after, 1),
                upstream_down=False,
                reached=False,
            ) from None
        settled = False
        try:
            output, healthy = await self._call_with_retries(tool, arguments, limit)
        except UpstreamFailure as failure:
            if failure.upstream_down:
                settled = True
                self.breaker.failure(failure.message)
            elif failure.reached:
                settled = True
                self.breaker.success()  # it answered (a rate limit, a missing tool, bad output): it is up
            raise
        finally:
            if trial and not settled:
                self.breaker.release()  # the trial call was cancelled or never made: let another one try
        settled = True
        if healthy:
            self.breaker.success()
        else:
            self.breaker.failure(f"{tool}: server errors on every attempt")
        return output

    async def _turn(self, tool: str, max_wait: float) -> None:
        """Wait for the rate limiter's turn, or fail as rate_limited when it would come too late."""
        try:
            await self.limiter.acquire(max(0.0, max_wait))
        except RateLimited as limited:
            raise UpstreamFailure(
                self.name,
                Status.RATE_LIMITED,
                f"{tool} not called: {limited.reason}, beyond the {limited.max_wait:g} s this call may wait",
                retry_after=round(limited.wait, 1),
                upstream_down=False,
                reached=False,
            ) from None

    async def _call_with_retries(self, tool: str, arguments: dict[str, Any], limit: float) -> tuple[ToolOutput, bool]:
        """(the output, whether the upstream answered without a server error) or UpstreamFailure."""
        await self._turn(tool, self.rate_limit_max_wait)
        client = await self._session()  # a first start is bounded by startup_timeout_seconds
        deadline = time.monotonic() + limit
        retry = 0
        while True:
            retry_after: float | None = None
            fallback: ToolOutput | None = None
            try:
                output = await self._attempt(client, tool, arguments, deadline, limit)
            except UpstreamFailure as failure:
                if not failure.retryable:
                    raise
                last: UpstreamFailure = failure
            else:
                signal = classify_output(output.is_error, output.text, output.structured)
                if signal is None:
                    return output, True
                if signal.kind is SignalKind.MISSING_TOOL:
                    raise UpstreamFailure(
                        self.name,
                        Status.UNAVAILABLE,
                        f"the upstream has no tool {tool} ({signal.detail[:120]}); "
                        "check the server's version against the tools this product calls (doctor)",
                        upstream_down=False,
                    )
                if signal.kind is SignalKind.RATE_LIMITED:
                    if signal.retry_after is None:
                        return output, True  # nothing says when to come back: the facade reports it
                    retry_after = signal.retry_after
                    self.limiter.pause(retry_after)
                    last = UpstreamFailure(
                        self.name,
                        Status.RATE_LIMITED,
                        f"{tool} rate limited by the upstream; retry after {retry_after:g}s, beyond this "
                        f"call's {limit:g} s deadline",
                        retry_after=retry_after,
                        upstream_down=False,
                    )
                else:
                    fallback = output  # after the last retry the facade reads the error as it is
                    last = UpstreamFailure(self.name, Status.UNAVAILABLE, signal.detail)
            retry += 1
            delay = 0.0 if retry_after is not None else self.retry.delay(retry)
            needed = (retry_after or delay) + min(1.0, limit / 4)  # the wait, then some time to answer
            if retry > self.retry.max_retries or time.monotonic() + needed > deadline:
                if fallback is not None:
                    return fallback, False
                raise last
            self.retries += 1
            log.info("upstream %s: retry %d of %s after %.2f s: %s", self.name, retry, tool, delay, last.message)
            if delay:
                await anyio.sleep(delay)
            await self._turn(tool, deadline - time.monotonic())
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())) as waited:
                client = await self._session()
            if waited.cancelled_caught:
                if fallback is not None:
                    return fallback, False
                raise last

    async def _attempt(
        self, client: Client, tool: str, arguments: dict[str, Any], deadline: float, budget: float
    ) -> ToolOutput:
        """One call on the live session, bounded by what is left of the deadline."""
        async with self._slots:
            limit = max(0.0, deadline - time.monotonic())
            self.calls += 1
            try:
                with anyio.fail_after(limit):
                    result = await client.call_tool(tool, arguments, read_timeout_seconds=limit)
            except TimeoutError:
                raise UpstreamFailure(
                    self.name, Status.TIMEOUT, f"{tool} timed out after {budget:g} s", retryable=True
                ) from None
            except MCPError as exc:
                code = exc.error.code
                if code == REQUEST_TIMEOUT:
                    raise UpstreamFailure(
                        self.name, Status.TIMEOUT, f"{tool} timed out after {budget:g} s", retryable=True
                    ) from None
                if code != CONNECTION_CLOSED and code < -32000 and code >= -32700:
                    # a protocol answer (bad request, invalid params): the session is fine, a retry is not
                    raise UpstreamFailure(
                        self.name,
                        Status.UNAVAILABLE,
                        f"{tool} was refused by the upstream: {self._describe(exc)}",
                        upstream_down=False,
                    ) from None
                self._mark_dead()
                raise UpstreamFailure(
                    self.name,
                    Status.UNAVAILABLE,
                    f"{tool} failed: {self._describe(exc)}; the connection will restart",
                    retryable=True,
                ) from None
            except RuntimeError as exc:
                # The 2.x client re-validates structuredContent against the tool's outputSchema.
                raise UpstreamFailure(
                    self.name,
                    Status.DEGRADED,
                    f"{tool} returned output that violates its own schema: {str(exc).splitlines()[0]}"[:400],
                    upstream_down=False,
                ) from None
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError) as exc:
                self._mark_dead()
                raise UpstreamFailure(
                    self.name,
                    Status.UNAVAILABLE,
                    f"connection lost during {tool} ({type(exc).__name__}); will restart",
                    retryable=True,
                ) from None
        texts = [block.text for block in result.content if isinstance(block, TextContent)]
        structured = result.structured_content
        has_structured = structured is not None
        if self._config.secrets:
            # An upstream may echo a configured key in its answer (an error text that quotes it): redact it
            # here, before the answer reaches a result, a log line or the session cache.
            texts = [self._config.redact(text) for text in texts]
            structured = _redact_tree(structured, self._config.redact)
        if isinstance(structured, dict) and set(structured) == {"result"}:
            structured = structured["result"]
        return ToolOutput(bool(result.is_error), texts, structured, has_structured)

    async def list_tools(self) -> list[Tool]:
        client = await self._session()
        tools: list[Tool] = []
        cursor: str | None = None
        try:
            with anyio.fail_after(self.call_timeout):
                while True:
                    page = await client.list_tools(cursor=cursor) if cursor else await client.list_tools()
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
        except TimeoutError:
            raise UpstreamFailure(self.name, Status.TIMEOUT, "tools/list timed out") from None
        except (MCPError, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
            self._mark_dead()
            raise UpstreamFailure(self.name, Status.UNAVAILABLE, f"tools/list failed: {self._describe(exc)}") from None
        return tools


class UpstreamProcesses:
    """Several processes of one stdio upstream that serves one call at a time, used as one connection.

    A call goes to an idle process that is already running, else to one not started yet, else to the least
    busy; so a second process starts only when calls overlap. The processes share one rate limiter and one
    circuit breaker: the quota and the health are the upstream's, not a process's.
    """

    def __init__(self, replicas: list[UpstreamConnection]):
        self.replicas = replicas
        first = replicas[0]
        for other in replicas[1:]:
            other.limiter, other.breaker = first.limiter, first.breaker
        self.spec, self.name = first.spec, first.name
        self.call_timeout, self.startup_timeout = first.call_timeout, first.startup_timeout

    @property
    def calls(self) -> int:
        return sum(replica.calls for replica in self.replicas)

    @property
    def starts(self) -> int:
        return sum(replica.starts for replica in self.replicas)

    def _pick(self) -> UpstreamConnection:
        idle_live = [r for r in self.replicas if r.live and r.in_flight == 0]
        if idle_live:
            return idle_live[0]
        unstarted = [r for r in self.replicas if r._live is None and r.in_flight == 0]
        if unstarted:
            return unstarted[0]
        return min(self.replicas, key=lambda replica: replica.in_flight)

    async def call(self, tool: str, arguments: dict[str, Any], timeout: float | None = None) -> ToolOutput:
        return await self._pick().call(tool, arguments, timeout)

    async def list_tools(self) -> list[Tool]:
        return await self.replicas[0].list_tools()

    def _mark_dead(self) -> None:
        for replica in self.replicas:
            replica._mark_dead()

    async def aclose(self) -> None:
        for replica in self.replicas:
            await replica.aclose()


class UpstreamPool:
    """All configured upstreams. Use as ``async with UpstreamPool(config) as pool``."""

    def __init__(self, config: Config):
        self.config = config
        self._tg: anyio.abc.TaskGroup | None = None
        self._connections: dict[str, UpstreamConnection | UpstreamProcesses] = {}

    async def __aenter__(self) -> UpstreamPool:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        for name, spec in self.config.upstreams.items():
            count = self.config.settings.policy(name).processes or 1
            if spec.command and count > 1:
                replicas = [UpstreamConnection(spec, self.config, self._tg) for _ in range(count)]
                self._connections[name] = UpstreamProcesses(replicas)
            else:
                self._connections[name] = UpstreamConnection(spec, self.config, self._tg)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        for conn in self._connections.values():
            await conn.aclose()
        assert self._tg is not None
        # Give each session a moment to close its subprocess cleanly, then cancel what is left.
        with anyio.move_on_after(5):
            await _wait_closed(self._connections.values())
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)

    def __getitem__(self, name: str) -> UpstreamConnection | UpstreamProcesses:
        return self._connections[name]

    def __contains__(self, name: str) -> bool:
        return name in self._connections

    @property
    def connections(self) -> dict[str, UpstreamConnection | UpstreamProcesses]:
        return dict(self._connections)

    async def call(self, upstream: str, tool: str, arguments: dict[str, Any]) -> ToolOutput:
        conn = self._connections.get(upstream)
        if conn is None:
            raise UpstreamFailure(upstream, Status.UNAVAILABLE, "not configured")
        return await conn.call(tool, arguments)


async def _wait_closed(connections: Any) -> None:
    singles = [r for c in connections for r in (c.replicas if isinstance(c, UpstreamProcesses) else [c])]
    for conn in singles:
        live = conn._live
        while live is not None and live.scope is not None and not live.dead:
            await anyio.sleep(0.01)


def _redact_tree(node: Any, redact: Any) -> Any:
    """``node`` (JSON-like) with ``redact`` applied to every string in it, keys included."""
    if isinstance(node, str):
        return redact(node)
    if isinstance(node, list):
        return [_redact_tree(item, redact) for item in node]
    if isinstance(node, dict):
        return {_redact_tree(key, redact): _redact_tree(value, redact) for key, value in node.items()}
    return node
