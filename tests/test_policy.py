"""Upstream policy (issue 6, item 2): retries with backoff on retryable errors only, a circuit breaker, a rate
limiter that makes callers wait for their turn and honours an upstream's quota.

The rules are tested on their own with a fake clock; then through the pool over fault-injecting stand-ins
(to count upstream calls); then through an MCP client, as a host sees them.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from ioc_workflows_mcp.models import Status
from ioc_workflows_mcp.settings import ConfigError, Settings, UpstreamPolicy, load_config
from ioc_workflows_mcp.upstream.policy import (
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    RateLimited,
    RateLimiter,
    RetryPolicy,
    SignalKind,
    classify_output,
)
from ioc_workflows_mcp.upstream.pool import UpstreamFailure, UpstreamPool
from tests.test_faults import DOMAIN, call, product, write_config

pytestmark = pytest.mark.anyio

UNKNOWN_HASH = "81da1ea06029cd50d08146bd26e61103fefa790ceb407e5983bae69f7e5ced82"  # not in GTI


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


# --------------------------------------------------------------------------------------------------
# retry rules


def test_backoff_is_jittered_doubling_and_capped() -> None:
    policy = RetryPolicy(max_retries=5, backoff_seconds=0.5, backoff_max_seconds=3)
    assert [policy.delay(n, rng=lambda: 0.0) for n in (1, 2, 3, 4, 5)] == [0.25, 0.5, 1.0, 1.5, 1.5]
    assert [policy.delay(n, rng=lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    delays = {policy.delay(2) for _ in range(50)}
    assert len(delays) > 1 and all(0.5 <= d <= 1.0 for d in delays), "jittered within [step/2, step]"
    assert policy.delay(1, retry_after=7) == 7, "never sooner than the upstream asked"


VT_NOT_FOUND = {"error": "VirusTotal API Error: NotFoundError - Domain not found", "details": "..."}
VT_AUTH = {"error": "VirusTotal API Error: WrongCredentialsError - Wrong API key"}
VT_QUOTA = {"error": "VirusTotal API Error: QuotaExceededError - Quota exceeded"}
VT_SERVER = {"error": "VirusTotal API Error: ServerError - boom"}
CHRONICLE_403 = (
    "Error looking up entity: method=GET, url=http://h/v1alpha/p:summarizeEntitiesFromQuery, status=403, "
    "response={'error': {'code': 403, 'message': 'denied', 'status': 'PERMISSION_DENIED'}}"
)
CHRONICLE_500 = CHRONICLE_403.replace("403", "500").replace("PERMISSION_DENIED", "INTERNAL")


@pytest.mark.parametrize(
    ("is_error", "text", "structured", "kind", "retryable", "retry_after"),
    [
        (False, json.dumps(VT_NOT_FOUND), VT_NOT_FOUND, None, False, None),  # not found: an answer
        (False, json.dumps(VT_AUTH), VT_AUTH, None, False, None),  # auth: final
        (True, "Error executing tool get_domain_report: 1 validation error for Arguments", None, None, False, None),
        (False, CHRONICLE_403, CHRONICLE_403, None, False, None),  # 403: final
        (False, json.dumps(VT_QUOTA), VT_QUOTA, SignalKind.RATE_LIMITED, False, None),  # 429, no retry-after
        (False, "{}", {**VT_QUOTA, "retry_after": 1.5}, SignalKind.RATE_LIMITED, True, 1.5),
        (True, "429 Too Many Requests; Retry-After: 3", None, SignalKind.RATE_LIMITED, True, 3.0),
        (False, json.dumps(VT_SERVER), VT_SERVER, SignalKind.SERVER_ERROR, True, None),
        (False, CHRONICLE_500, CHRONICLE_500, SignalKind.SERVER_ERROR, True, None),
        (True, "Unknown tool: get_domain_report", None, SignalKind.MISSING_TOOL, False, None),
        # an answer that merely mentions a 429 or a rate limit is data, not a signal
        (False, "{}", {"attributes": {"description": "HTTP 429 rate limit abuse"}}, None, False, None),
        (False, "Entity Summary for x:\nstatus=500", "Entity Summary for x:\nstatus=500", None, False, None),
    ],
    ids=["vt-404", "vt-401", "bad-arguments", "chronicle-403", "vt-429-bare", "vt-429-retry-after",
         "429-header-text", "vt-5xx", "chronicle-500", "unknown-tool", "report-mentions-429", "prose-mentions-500"],
)  # fmt: skip
def test_only_retryable_errors_are_retried(
    is_error: bool, text: str, structured: Any, kind: SignalKind | None, retryable: bool, retry_after: float | None
) -> None:
    signal = classify_output(is_error, text, structured)
    if kind is None:
        assert signal is None
        return
    assert signal is not None and signal.kind is kind
    assert signal.retryable is retryable and signal.retry_after == retry_after


# --------------------------------------------------------------------------------------------------
# circuit breaker


def test_breaker_opens_fails_fast_half_opens_and_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, reset_seconds=10, clock=clock)
    for _ in range(2):
        assert breaker.before_call() is False
        breaker.failure("timeout")
    assert breaker.state is BreakerState.CLOSED
    breaker.failure("timeout")
    assert breaker.state is BreakerState.OPEN
    clock.now += 4
    with pytest.raises(CircuitOpen) as opened:
        breaker.before_call()
    assert opened.value.retry_after == pytest.approx(6) and opened.value.failures == 3
    assert re.search(r"circuit open .* retry after 6\.0s", str(opened.value))

    clock.now += 6
    assert breaker.before_call() is True, "after the cool-down one trial call goes through"
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # ... and only one
    breaker.failure("still down")
    assert breaker.state is BreakerState.OPEN, "a failed trial opens it again for a full cool-down"
    with pytest.raises(CircuitOpen) as again:
        breaker.before_call()
    assert again.value.retry_after == pytest.approx(10)

    clock.now += 10
    assert breaker.before_call() is True
    breaker.release()  # a cancelled trial: another may try
    assert breaker.before_call() is True
    breaker.success()
    assert breaker.state is BreakerState.CLOSED and breaker.failures == 0
    assert breaker.before_call() is False


def test_breaker_success_resets_the_count_and_zero_turns_it_off() -> None:
    breaker = CircuitBreaker(threshold=2, reset_seconds=10, clock=Clock())
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.state is BreakerState.CLOSED
    off = CircuitBreaker(threshold=0, reset_seconds=10, clock=Clock())
    for _ in range(100):
        off.failure()
    assert off.before_call() is False


# --------------------------------------------------------------------------------------------------
# rate limiter


def test_vt_public_quota_callers_queue_instead_of_failing() -> None:
    """4 requests/minute: turns every 15 s. A caller that can wait gets a turn; one that cannot fails at
    once, taking nothing from the others."""
    clock = Clock()
    limiter = RateLimiter(per_minute=4, burst=1, clock=clock)
    assert [limiter.reserve(max_wait=60) for _ in range(4)] == [0, 15, 30, 45]
    with pytest.raises(RateLimited) as late:
        limiter.reserve(max_wait=50)
    assert late.value.wait == pytest.approx(60) and "4 requests/minute" in late.value.reason
    assert limiter.reserve(max_wait=60) == pytest.approx(60), "the refused caller took no turn"
    clock.now += 75
    assert limiter.reserve(max_wait=0) == 0


async def test_acquire_waits_and_a_burst_is_allowed() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock, sleep=clock.sleep)
    start = clock.now
    for _ in range(6):
        await limiter.acquire(max_wait=10)
    assert clock.now - start == pytest.approx(3), "3 at once, then one a second"


def test_retry_after_pauses_everyone_and_drops_saved_tokens() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=5, clock=clock)
    limiter.pause(20)
    assert limiter.reserve(max_wait=30) >= 20
    with pytest.raises(RateLimited) as refused:
        _paused(clock).reserve(max_wait=1)
    assert "retry after" in refused.value.reason
    clock.now += 21
    assert limiter.reserve(max_wait=30) <= 1.0, "afterwards the configured pace again, not a burst of 5"


def _paused(clock: Clock) -> RateLimiter:
    limiter = RateLimiter(None, clock=clock)  # no rate configured: still honours a retry-after
    limiter.pause(5)
    return limiter


async def test_cancelled_wait_gives_its_turn_back() -> None:
    limiter = RateLimiter(per_minute=60, burst=1)
    await limiter.acquire(1)
    with anyio.move_on_after(0.05):
        await limiter.acquire(5)
    assert limiter.reserve(5) <= 1.0


# --------------------------------------------------------------------------------------------------
# settings


def test_policy_fields_merge_per_upstream_and_are_documented(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"max_retries": 3, "upstreams": {"gti": {"requests_per_minute": 4, "max_retries": 0}}}
    )
    gti, soar = settings.policy("gti"), settings.policy("soar")
    assert (gti.requests_per_minute, gti.max_retries, gti.rate_limit_max_wait_seconds) == (4, 0, 30)
    assert (soar.requests_per_minute, soar.max_retries, soar.breaker_failure_threshold) == (None, 3, 5)
    for name in UpstreamPolicy.model_fields:
        assert name in Settings.model_fields, name
        if name not in ("call_timeout_seconds", "startup_timeout_seconds", "max_concurrency"):
            assert Settings.model_fields[name].description, f"{name} is undocumented"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"mcpServers": {"gti": {"command": "x"}}, "settings": {"upstreams": {"gti": {
        "requests_per_minute": 0}}}}))  # fmt: skip
    with pytest.raises(ConfigError, match="requests_per_minute"):
        load_config(bad)


# --------------------------------------------------------------------------------------------------
# through the pool: what is retried, counted in upstream calls


@dataclass
class GtiPool:
    """The pool, in-process, over a gti stand-in whose fault is the text of ``switch``."""

    pool: UpstreamPool
    switch: Path

    async def call(self, fault: str | None, arguments: dict[str, Any]) -> tuple[Any, int, float]:
        """(the output or the UpstreamFailure, upstream calls made, seconds) of one get_domain_report."""
        conn = self.pool["gti"]
        conn.limiter = RateLimiter(None)  # no retry-after pause carried over from another test
        if fault:
            self.switch.write_text(fault)
        before, started = conn.calls, time.monotonic()
        try:
            outcome: Any = await self.pool.call("gti", "get_domain_report", arguments)
        except UpstreamFailure as failure:
            outcome = failure
        finally:
            self.switch.unlink(missing_ok=True)
        return outcome, conn.calls - before, time.monotonic() - started


@pytest.fixture(scope="module")
async def gti_pool(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GtiPool]:
    directory = tmp_path_factory.mktemp("policy")
    switch = directory / "fault-switch"
    policy = {"max_retries": 2, "retry_backoff_seconds": 0.05, "call_timeout_seconds": 10,
              "breaker_failure_threshold": 0, "restart_cooldown_seconds": 0}  # fmt: skip
    config = write_config(
        directory, uuid.uuid4().hex, {"gti": {"IOC_STANDIN_FAULT_SWITCH": str(switch)}}, {"gti": policy}
    )
    async with UpstreamPool(load_config(config)) as pool:
        yield GtiPool(pool, switch)


@pytest.mark.parametrize(
    ("fault", "arguments", "calls", "check"),
    [
        (None, {"domain": "nonexistent-domain.example"}, 1, lambda out: "NotFoundError" in out.text),
        ("inband_error", {"domain": DOMAIN}, 3, lambda out: "ServerError" in out.text),
        ("rate_limit retry_after=60", {"domain": DOMAIN}, 1,
         lambda out: out.status is Status.RATE_LIMITED and out.retry_after == 60),
        ("missing_tool", {"domain": DOMAIN}, 1,
         lambda out: out.status is Status.UNAVAILABLE and "has no tool" in out.message),
        ("schema_violation", {"domain": DOMAIN}, 1, lambda out: out.status is Status.DEGRADED),
    ],
    ids=["not-found-once", "5xx-retried-then-read", "429-beyond-deadline-once", "missing-tool-once",
         "schema-violation-once"],
)  # fmt: skip
async def test_pool_retries_only_what_a_retry_can_cure(
    gti_pool: GtiPool, fault: str | None, arguments: dict[str, Any], calls: int, check: Callable[[Any], bool]
) -> None:
    outcome, made, _ = await gti_pool.call(fault, arguments)
    assert made == calls
    assert check(outcome), outcome


async def test_pool_retries_a_crash_on_a_restarted_upstream(gti_pool: GtiPool) -> None:
    starts = gti_pool.pool["gti"].starts
    outcome, made, _ = await gti_pool.call("crash_mid_call times=1", {"domain": DOMAIN})
    assert not isinstance(outcome, UpstreamFailure), outcome
    assert json.loads(outcome.text)["id"] == DOMAIN
    assert made == 2 and gti_pool.pool["gti"].starts == starts + 1, "one crash, one retry on a new process"


async def test_pool_waits_out_a_short_retry_after(gti_pool: GtiPool) -> None:
    outcome, made, elapsed = await gti_pool.call("rate_limit retry_after=0.8 times=1", {"domain": DOMAIN})
    assert not isinstance(outcome, UpstreamFailure), outcome
    assert made == 2 and elapsed >= 0.8


async def test_pool_breaker_counts_only_failures_of_the_upstream(gti_pool: GtiPool) -> None:
    breaker = gti_pool.pool["gti"].breaker
    await gti_pool.call("inband_error", {"domain": DOMAIN})  # 5xx on every attempt: a failure
    assert breaker.failures == 1
    await gti_pool.call("missing_tool", {"domain": DOMAIN})  # it answered: up, if incomplete
    assert breaker.failures == 0
    await gti_pool.call("inband_error", {"domain": DOMAIN})
    await gti_pool.call(None, {"domain": "nonexistent-domain.example"})  # not found is an answer
    assert breaker.failures == 0


async def test_pool_rate_limit_wait_beyond_the_bound_fails_at_once(tmp_path: Path) -> None:
    policy = {"requests_per_minute": 6, "rate_limit_max_wait_seconds": 1}
    config = write_config(tmp_path, uuid.uuid4().hex, {}, {"gti": policy})
    async with UpstreamPool(load_config(config)) as pool:
        await pool.call("gti", "get_domain_report", {"domain": DOMAIN})
        started = time.monotonic()
        with pytest.raises(UpstreamFailure) as caught:
            await pool.call("gti", "get_domain_report", {"domain": DOMAIN})
        assert time.monotonic() - started < 0.5
    failure = caught.value
    assert failure.status is Status.RATE_LIMITED
    assert 7 < failure.retry_after <= 10  # the next turn: 10 s after the first one
    assert "6 requests/minute" in failure.message and "beyond the 1 s this call may wait" in failure.message


# --------------------------------------------------------------------------------------------------
# through an MCP client


def _gti(result: dict[str, Any]) -> dict[str, Any]:
    return result["gti_analysis"]["section"]


async def test_breaker_through_mcp_fails_fast_then_recovers(tmp_path: Path) -> None:
    tag, switch = uuid.uuid4().hex, tmp_path / "hang"
    fault = {"IOC_STANDIN_FAULT": "hang", "IOC_STANDIN_FAULT_SWITCH": str(switch)}
    policy = {"call_timeout_seconds": 0.8, "breaker_failure_threshold": 2, "breaker_reset_seconds": 1.5}
    config = write_config(tmp_path, tag, {"gti": fault}, {"gti": policy})
    async with product(config, tag) as client:
        await call(client, "enrich_ioc", ioc_value=DOMAIN)  # starts everything, fault off
        switch.touch()
        for _ in range(2):
            result, _ = await call(client, "enrich_ioc", ioc_value=DOMAIN)
            assert _gti(result)["status"] == "timeout"
        opened, elapsed = await call(client, "enrich_ioc", ioc_value=DOMAIN)
        gti = _gti(opened)
        assert gti["status"] == "unavailable" and elapsed < 0.6, (gti, elapsed)
        assert re.match(r"circuit open after 2 consecutive failures .*; retry after \d+\.\ds$", gti["reason"])
        assert 0 < gti["retry_after_seconds"] <= 1.5
        assert opened["siem_context"]["section"]["status"] == "ok", "the other upstreams are not affected"
        assert opened["assessment"]["verdict"] != "clean"
        assert "GTI: FAILED, unavailable (circuit open" in opened["summary"]

        switch.unlink()
        await anyio.sleep(1.6)
        trial, _ = await call(client, "enrich_ioc", ioc_value=DOMAIN)  # half-open: the trial call succeeds
        assert _gti(trial)["status"] == "ok"
        after, _ = await call(client, "enrich_ioc", ioc_value=DOMAIN)
        assert _gti(after)["status"] == "ok"


async def test_budgeted_pivot_under_a_vt_like_quota_waits_instead_of_failing(tmp_path: Path) -> None:
    """The gti stand-in keeps VirusTotal's public quota, 30 times faster: 4 requests per 2 s (VT: per 60 s),
    answering 429 with a retry-after beyond it. With the gti rate limit set just under it, a budgeted pivot
    is paced and completes with every call answered."""
    tag = uuid.uuid4().hex
    fault = {"IOC_STANDIN_FAULT": "rate_limit", "IOC_STANDIN_FAULT_QUOTA": "4/2"}
    policy = {"requests_per_minute": 100, "call_timeout_seconds": 5, "rate_limit_max_wait_seconds": 30}
    config = write_config(tmp_path, tag, {"gti": fault}, {"gti": policy})
    async with product(config, tag) as client:
        result, elapsed = await call(
            client, "pivot_ioc", ioc_value=DOMAIN, pivot_depth=1, budget={"max_calls": 8, "max_entities_per_level": 3}
        )
    assert result["errors"] == [], result["errors"]
    assert all(s["status"] == "ok" for s in result["graph"]["relationship_sets"]), result["graph"]
    calls = result["budget"]["calls"]
    assert 4 < calls <= 8
    assert elapsed >= (calls - 1) * 0.6 - 0.1, "paced at 100/minute"
    assert result["direct_relationships"]["section"]["status"] == "ok"


async def test_without_the_rate_limit_the_same_pivot_hits_the_quota(tmp_path: Path) -> None:
    """The contrast: the quota is real, and the limiter is what keeps the pivot within it."""
    tag = uuid.uuid4().hex
    fault = {"IOC_STANDIN_FAULT": "rate_limit", "IOC_STANDIN_FAULT_QUOTA": "4/2"}
    config = write_config(tmp_path, tag, {"gti": fault}, {"gti": {"call_timeout_seconds": 1}})
    async with product(config, tag) as client:
        result, _ = await call(
            client, "pivot_ioc", ioc_value=DOMAIN, pivot_depth=1, budget={"max_calls": 8, "max_entities_per_level": 3}
        )
    limited = [error for error in result["errors"] if error["status"] == "rate_limited"]
    assert limited and all("retry after" in error["message"] for error in limited), result["errors"]


def test_fault_stand_in_refuses_an_unknown_fault() -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "ioc_workflows_mcp.offline", "gti"],
        env={"IOC_STANDIN_FAULT": "nonsense", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode != 0 and "is not one of" in done.stderr
