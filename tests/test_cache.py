"""Session cache: a repeated analysis costs no upstream call; sessions never share entries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from ioc_workflows_mcp.cache import SessionCache
from ioc_workflows_mcp.indicator import Indicator
from ioc_workflows_mcp.settings import CacheSettings, load_config
from ioc_workflows_mcp.upstream.pool import UpstreamPool
from ioc_workflows_mcp.workflows.enrich import enrich
from ioc_workflows_mcp.workflows.sources import Sources
from tests.conftest import http_server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ttl_by_kind_and_failures_never_kept() -> None:
    clock = Clock()
    cache = SessionCache(10, ttl_seconds=900, not_found_ttl_seconds=120, timer=clock)
    cache.put("found", "A", "found")
    cache.put("nf", "B", "not_found")
    cache.put("failed", "C", None)
    assert (cache.get("found"), cache.get("nf"), cache.get("failed")) == ("A", "B", None)
    clock.now += 30
    assert cache.lookup("found") == ("A", 30.0)
    clock.now += 121
    assert cache.get("nf") is None and cache.get("found") == "A"
    clock.now += 800
    assert cache.get("found") is None


def test_bounded_by_max_entries() -> None:
    cache = SessionCache(3, 900, 120)
    for i in range(10):
        cache.put(i, i, "found")
    assert len(cache) == 3
    assert SessionCache(0, 900, 120).get("x") is None


def _upstream_calls(pool: UpstreamPool) -> int:
    return sum(conn.calls for conn in pool.connections.values())


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[UpstreamPool]:
    config = load_config(None)
    async with UpstreamPool(config) as running:
        yield running


@pytest.mark.anyio
async def test_repeated_enrich_in_one_session_makes_no_upstream_call(pool: UpstreamPool) -> None:
    sources = Sources.from_pool(pool, pool.config)
    indicator = Indicator.parse("secure-update.example.net")
    before = _upstream_calls(pool)
    first = await enrich(indicator, sources)
    made = _upstream_calls(pool) - before
    assert made == 4  # GTI report, lookup_entity, search_udm, get_ioc_matches
    second = await enrich(indicator, sources)
    assert _upstream_calls(pool) - before == made, "the repeat must be served from the session cache"
    calls = [p for s in (second.gti_analysis, second.siem_context, second.ioc_matches) for p in s.section.provenance]
    assert calls and all(p.cached and p.duration_ms is None for p in calls)
    assert all(p.cache_age_seconds is not None and 0 <= p.cache_age_seconds < 60 for p in calls)
    firsts = [p for s in (first.gti_analysis, first.siem_context, first.ioc_matches) for p in s.section.provenance]
    assert all(not p.cached and p.cache_age_seconds is None for p in firsts)
    sections = {"gti_analysis", "siem_context", "ioc_matches", "summary"}
    assert second.model_dump(exclude=sections) == first.model_dump(exclude=sections)
    assert "All upstream answers from this session's cache" in second.summary
    assert "session's cache" not in first.summary
    assert second.gti_analysis.reputation_score == first.gti_analysis.reputation_score


@pytest.mark.anyio
async def test_sessions_do_not_share(pool: UpstreamPool) -> None:
    indicator = Indicator.parse("login.example.net")
    a, b = Sources.from_pool(pool, pool.config), Sources.from_pool(pool, pool.config)
    await enrich(indicator, a)
    before = _upstream_calls(pool)
    await enrich(indicator, b)
    assert _upstream_calls(pool) - before == 4


@pytest.mark.anyio
async def test_not_found_lives_shorter_and_failures_are_not_cached(pool: UpstreamPool) -> None:
    clock = Clock()
    config = pool.config
    sources = Sources.from_pool(pool, config)
    cache = SessionCache(100, ttl_seconds=900, not_found_ttl_seconds=60, timer=clock)
    for facade in (sources.gti, sources.siem, sources.soar):
        facade.cache = cache
    unknown = Indicator.parse("81da1ea06029cd50d08146bd26e61103fefa790ceb407e5983bae69f7e5ced82")
    await enrich(unknown, sources)
    before = _upstream_calls(pool)
    await enrich(unknown, sources)
    assert _upstream_calls(pool) == before
    clock.now += 61  # the not-found answers (GTI 404, no SIEM entity) expire; found ones stay
    await enrich(unknown, sources)
    # get_ioc_matches and search_udm answered (the window's matches, an empty event list): still cached
    assert _upstream_calls(pool) - before == 2


@pytest.mark.anyio
async def test_concurrent_identical_calls_run_once(pool: UpstreamPool) -> None:
    sources = Sources.from_pool(pool, pool.config, cached=False)
    indicator = Indicator.parse("docs.example.org")
    before = _upstream_calls(pool)
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(enrich, indicator, sources)
    assert _upstream_calls(pool) - before == 4


def test_http_sessions_never_share_cache_entries(tmp_path: Path) -> None:
    with http_server(tmp_path) as served:
        url = served.url

        async def cached_flags(client: Client) -> list[bool]:
            result = await client.call_tool("enrich_ioc", {"ioc_value": "8.8.8.8"})
            data: dict[str, Any] = result.structured_content or {}
            return [
                p["cached"]
                for key in ("gti_analysis", "siem_context", "ioc_matches")
                for p in data[key]["section"]["provenance"]
            ]

        async def talk() -> tuple[list[bool], list[bool], list[bool]]:
            async with Client(url, mode="legacy") as one, Client(url, mode="legacy") as two:
                first = await cached_flags(one)
                again = await cached_flags(one)
                other = await cached_flags(two)
            return first, again, other

        first, again, other = anyio.run(talk)
        assert not any(first)
        assert all(again), "the same session reuses its answers"
        assert not any(other), "another session starts with an empty cache"


def test_cache_settings_defaults_are_documented() -> None:
    defaults = CacheSettings()
    assert defaults.not_found_ttl_seconds < defaults.ttl_seconds


@pytest.mark.anyio
async def test_serial_upstream_runs_its_concurrent_calls_on_separate_processes() -> None:
    """google-secops-mcp answers one call at a time: enrich's three SIEM calls go to three processes."""
    config = load_config(None)
    async with UpstreamPool(config) as fresh:
        await enrich(Indicator.parse("login.example.net"), Sources.from_pool(fresh, config))
        secops, gti = fresh.connections["secops"], fresh.connections["gti"]
        assert secops.calls == 3 and secops.starts == 3
        assert gti.starts == 1
        await enrich(Indicator.parse("docs.example.org"), Sources.from_pool(fresh, config))
        assert secops.starts == 3, "running processes are reused, no new start"
