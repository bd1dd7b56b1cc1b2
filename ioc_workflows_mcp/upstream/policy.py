"""Upstream call policy: what is retried and after how long, a circuit breaker, and a rate limiter.

The pool (``pool.py``) wires these around every call to one upstream; this module holds only the rules,
with injectable clocks so they are tested without waiting.

* :class:`RetryPolicy` - exponential backoff with jitter, capped. Only failures that a second try may cure
  are retried: a timeout (when time is left), a lost connection, an in-band 5xx-like error, a 429 that says
  when to come back. Never a not-found, an auth refusal or a bad request.
* :func:`classify_output` - reads a tool result that came back for the signs every upstream shares
  (an MCP "Unknown tool", a rate limit with a retry-after, a 5xx-like server error). The facades keep
  their own, finer reading of each upstream's formats; this one only decides "retry or not".
* :class:`CircuitBreaker` - opens after N consecutive failed calls, fails calls at once while open, lets
  one trial call through after a cool-down (half-open), closes again when that call succeeds.
* :class:`RateLimiter` - a token bucket (requests per minute, with a burst) whose callers wait for their
  turn instead of failing, up to a bound; an upstream's retry-after pauses it for everyone (quota
  awareness). With no rate configured it still honours retry-after pauses.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import anyio

Clock = Callable[[], float]


# --- retry -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 8.0

    def delay(self, retry: int, retry_after: float | None = None, rng: Callable[[], float] = random.random) -> float:
        """Wait before retry number ``retry`` (1-based): "equal jitter" over ``base * 2**(retry-1)``, capped,
        so it is at least half the step and never more than the cap; never shorter than a retry-after."""
        step = min(self.backoff_max_seconds, self.backoff_seconds * 2 ** max(0, retry - 1))
        delay = step / 2 + rng() * step / 2
        return max(delay, retry_after or 0.0)


class SignalKind(StrEnum):
    MISSING_TOOL = "missing_tool"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"


@dataclass(frozen=True)
class OutputSignal:
    """What a tool result says about retrying it."""

    kind: SignalKind
    detail: str
    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        return self.kind is SignalKind.SERVER_ERROR or (
            self.kind is SignalKind.RATE_LIMITED and self.retry_after is not None
        )


_UNKNOWN_TOOL = re.compile(r"^(?:Error executing tool \S+: )?Unknown tool:?\s*(?P<name>\S*)", re.IGNORECASE)
_RATE = re.compile(
    r"\b429\b|QuotaExceeded|TooManyRequests|Too Many Requests|RESOURCE_EXHAUSTED|rate[ -]?limit", re.IGNORECASE
)
# Answers a retry cannot change: checked after the rate-limit signs and before the server-error ones.
_FINAL = re.compile(
    r"NotFound|\b40[0134]\b|status=40[0134]|PERMISSION_DENIED|UNAUTHENTICATED|INVALID_ARGUMENT|"
    r"WrongCredentials|AuthenticationRequired|Forbidden|BadRequest|InvalidArgument|not found",
    re.IGNORECASE,
)
_SERVER = re.compile(
    r"(?:status[=: ]\s*|HTTP\s*|code['\"]?\s*[:=]\s*)5\d\d\b|\b5(?:00|02|03|04)\b|ServerError|TransientError|"
    r"DEADLINE_EXCEEDED|Service Unavailable|Bad Gateway|Gateway Time-?out|Internal Server Error|"
    r"['\"]status['\"]:\s*['\"](?:UNAVAILABLE|INTERNAL)['\"]",
    re.IGNORECASE,
)
_RETRY_AFTER_TEXT = re.compile(r"retry[-_ ]?after['\"]?\s*[:=]?\s*(?P<seconds>\d+(?:\.\d+)?)", re.IGNORECASE)
_RETRY_AFTER_KEYS = ("retry_after", "retry_after_seconds", "retryAfter", "Retry-After")
MAX_RETRY_AFTER_SECONDS = 86_400.0


def _retry_after(text: str, structured: Any) -> float | None:
    for body in (structured, structured.get("error") if isinstance(structured, dict) else None):
        if isinstance(body, dict):
            for key in _RETRY_AFTER_KEYS:
                value = body.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                    return min(float(value), MAX_RETRY_AFTER_SECONDS)
    found = _RETRY_AFTER_TEXT.search(text)
    return min(float(found["seconds"]), MAX_RETRY_AFTER_SECONDS) if found else None


def _error_text(is_error: bool, text: str, structured: Any) -> str | None:
    """The error a result carries, or None when it is an answer. Only errors are read for signs: a report
    whose description mentions "429" or "rate limit" is data, not a rate limit."""
    if is_error:
        return text
    body = structured
    if body is None or isinstance(body, str):
        stripped = (body if isinstance(body, str) else text).strip().strip('"')
        if stripped.startswith("Error"):
            return stripped
        if body is None and stripped.startswith("{"):
            try:
                body = json.loads(stripped)
            except ValueError:
                return None
    if isinstance(body, dict) and body.get("error"):
        return json.dumps(body, default=str)
    return None


def classify_output(is_error: bool, text: str, structured: Any = None) -> OutputSignal | None:
    """The retry-relevant sign in a tool result, or None for an answer (or an error a retry cannot cure)."""
    error = _error_text(is_error, text, structured)
    if error is None:
        return None
    detail = error.strip()[:300]
    unknown = _UNKNOWN_TOOL.match(error.strip())
    if is_error and unknown:
        return OutputSignal(SignalKind.MISSING_TOOL, detail)
    if _RATE.search(error):
        return OutputSignal(SignalKind.RATE_LIMITED, detail, _retry_after(text or error, structured))
    if _FINAL.search(error):
        return None
    if _SERVER.search(error):
        return OutputSignal(SignalKind.SERVER_ERROR, detail, _retry_after(text or error, structured))
    return None


# --- circuit breaker ---------------------------------------------------------------------------------


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(Exception):
    """The circuit is open: the call was not made. ``retry_after`` is when a trial call will be let through."""

    def __init__(self, failures: int, retry_after: float, last_error: str | None):
        super().__init__(f"circuit open after {failures} consecutive failures; retry after {retry_after:.1f}s")
        self.failures = failures
        self.retry_after = retry_after
        self.last_error = last_error


class CircuitBreaker:
    """Consecutive-failure breaker. ``threshold`` 0 turns it off."""

    def __init__(self, threshold: int, reset_seconds: float, clock: Clock = time.monotonic):
        self.threshold = threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self.failures = 0
        self.state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probing = False
        self.last_error: str | None = None

    def before_call(self) -> bool:
        """Raise :class:`CircuitOpen`, or let the call through; True when it is the half-open trial call."""
        if self.threshold <= 0 or self.state is BreakerState.CLOSED:
            return False
        left = self._opened_at + self.reset_seconds - self._clock()
        if self.state is BreakerState.OPEN and left <= 0:
            self.state = BreakerState.HALF_OPEN
        if self.state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        raise CircuitOpen(self.failures, max(left, 0.0) if left > 0 else self.reset_seconds, self.last_error)

    def success(self) -> None:
        self.failures, self.state, self._probing = 0, BreakerState.CLOSED, False

    def failure(self, error: str | None = None) -> None:
        self.failures += 1
        self.last_error = error
        self._probing = False
        if self.threshold > 0 and (self.state is BreakerState.HALF_OPEN or self.failures >= self.threshold):
            self.state, self._opened_at = BreakerState.OPEN, self._clock()

    def release(self) -> None:
        """A trial call ended without a verdict (it was cancelled): let another one try."""
        self._probing = False


# --- rate limiter ------------------------------------------------------------------------------------


class RateLimited(Exception):
    """The wait for a turn would exceed what the caller can afford."""

    def __init__(self, wait: float, max_wait: float, reason: str):
        super().__init__(reason)
        self.wait = wait
        self.max_wait = max_wait
        self.reason = reason


class RateLimiter:
    """Token bucket with reservations: each caller takes the next free turn and sleeps until it, so callers
    queue in order rather than racing. :meth:`pause` (an upstream's retry-after) holds every turn until then
    and drops saved-up tokens, so calls resume at the configured pace, not in a burst."""

    def __init__(
        self,
        per_minute: float | None,
        burst: int = 1,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Any] = anyio.sleep,
    ):
        self.rate = per_minute / 60.0 if per_minute else None
        self.per_minute = per_minute
        self.burst = max(1, burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._updated = clock()
        self.paused_until = 0.0
        self.waits = 0

    def reserve(self, max_wait: float) -> float:
        """Take the next turn and return how long to wait for it; raise :class:`RateLimited` (taking
        nothing) when that is longer than ``max_wait``."""
        now = self._clock()
        paused = max(0.0, self.paused_until - now)
        if self.rate is None:
            wait = paused
        else:
            base = max(now, self._updated)
            self._tokens = min(float(self.burst), self._tokens + (base - self._updated) * self.rate)
            self._updated = base
            need = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
            wait = max(base - now + need, paused)
        if wait > max_wait + 1e-9:
            if paused >= wait - 1e-9:
                reason = f"the upstream asked to retry after {wait:.1f}s"
            else:
                reason = f"the rate limit of {self.per_minute:g} requests/minute gives the next turn in {wait:.1f}s"
            raise RateLimited(wait, max_wait, reason)
        if self.rate is not None:
            self._tokens -= 1
        return wait

    def refund(self) -> None:
        if self.rate is not None:
            self._tokens = min(float(self.burst), self._tokens + 1)

    async def acquire(self, max_wait: float) -> float:
        """Wait for a turn (at most ``max_wait`` seconds); return the time waited."""
        wait = self.reserve(max_wait)
        if wait > 0:
            self.waits += 1
            try:
                await self._sleep(wait)
            except BaseException:
                self.refund()
                raise
        # A retry-after that arrived while this caller slept holds it too.
        left = self.paused_until - self._clock()
        if left > 0:
            if wait + left > max_wait + 1e-9:
                raise RateLimited(wait + left, max_wait, f"the upstream asked to retry after {left:.1f}s")
            await self._sleep(left)
            wait += left
        return wait

    def pause(self, seconds: float) -> None:
        """Quota awareness: the upstream said "retry after ``seconds``"; nobody gets a turn before then."""
        now = self._clock()
        until = now + max(0.0, seconds)
        if until <= self.paused_until:
            return
        self.paused_until = until
        if self.rate is not None:
            self._tokens = min(self._tokens + (max(now, self._updated) - self._updated) * self.rate, 0.0)
            self._updated = max(self._updated, until)
