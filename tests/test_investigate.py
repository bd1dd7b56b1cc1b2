"""The chain: enrich, then pivot when the risk calls for it, then correlate; reuse within a session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ioc_workflows_mcp import scoring
from ioc_workflows_mcp.indicator import Indicator
from ioc_workflows_mcp.settings import load_config
from ioc_workflows_mcp.upstream.pool import UpstreamPool
from ioc_workflows_mcp.workflows.enrich import enrich
from ioc_workflows_mcp.workflows.investigate import investigate
from ioc_workflows_mcp.workflows.sources import Sources

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[UpstreamPool]:
    async with UpstreamPool(load_config(None)) as running:
        yield running


def calls(pool: UpstreamPool) -> int:
    return sum(conn.calls for conn in pool.connections.values())


def test_combined_priority_matrix() -> None:
    assert scoring.combined_priority("critical", None, ["high"]).priority == "P1"
    assert scoring.combined_priority("critical", None, ["none"]).priority == "P2"
    assert scoring.combined_priority("low", None, ["high"]).priority == "P2"
    assert scoring.combined_priority("medium", None, ["low"]).priority == "P3"
    assert scoring.combined_priority("low", None, ["none"]).priority == "P4"
    assert scoring.combined_priority("unknown", None, ["unknown"]).priority == "unknown"
    raised = scoring.combined_priority("medium", ("TA-X", "high"), ["none"])
    assert raised.threat == "high" and any("TA-X" in d for d in raised.drivers)


async def test_malicious_domain_runs_the_whole_chain(pool: UpstreamPool) -> None:
    sources = Sources.from_pool(pool, pool.config)
    result = await investigate(Indicator.parse("secure-update.example.net"), sources, pivot_depth=2)
    assert result.analysis_type == "full" and result.data_mode == "offline-fixtures"
    assert result.chain is not None and result.chain.pivot == "ran"
    assert "critical" in result.chain.pivot_reason
    assert result.enrichment and result.pivot and result.correlation
    assert result.pivot.campaign_context.threat_actor == "TA-EXAMPLE-07"
    assert result.correlation.case_correlations.total_related_cases
    assert result.combined_assessment is not None
    assert result.combined_assessment.priority == "P1"
    assert result.combined_assessment.drivers[0] == "enrichment risk critical"
    assert 0 < len(result.related_correlations) <= 2
    assert all(r.why_chosen for r in result.related_correlations)
    assert "priority P1" in result.summary


async def test_low_risk_skips_the_pivot_unless_forced(pool: UpstreamPool) -> None:
    sources = Sources.from_pool(pool, pool.config)
    clean = Indicator.parse("docs.example.org")
    skipped = await investigate(clean, sources)
    assert skipped.chain is not None and skipped.chain.pivot == "skipped" and skipped.pivot is None
    assert "below the threshold" in skipped.chain.pivot_reason
    forced = await investigate(clean, sources, pivot_if="always", pivot_depth=1)
    assert forced.chain is not None and forced.chain.pivot == "ran" and forced.pivot is not None
    never = await investigate(Indicator.parse("secure-update.example.net"), sources, pivot_if="never")
    assert never.chain is not None and never.chain.pivot == "skipped" and never.pivot is None


async def test_enrich_then_investigate_repeats_no_upstream_call(pool: UpstreamPool) -> None:
    """A runbook that enriches and then investigates the same indicator reuses the enrichment."""
    sources = Sources.from_pool(pool, pool.config)
    indicator = Indicator.parse("login.example.net")
    await enrich(indicator, sources)
    before = calls(pool)
    result = await investigate(indicator, sources, pivot_if="never")
    enrich_calls = [
        p
        for section in (result.enrichment.gti_analysis, result.enrichment.siem_context, result.enrichment.ioc_matches)
        for p in section.section.provenance
    ]
    assert enrich_calls and all(p.cached for p in enrich_calls)
    made = calls(pool) - before
    # Only the correlation's own calls are new; lookup_entity and search_udm are shared with the enrichment.
    correlation_tools = {
        p.tool
        for p in result.correlation.case_correlations.section.provenance
        + result.correlation.pattern_analysis.section.provenance
        if not p.cached
    }
    assert "lookup_entity" not in correlation_tools and "search_udm" not in correlation_tools
    again = calls(pool)
    await investigate(indicator, sources, pivot_if="never")
    assert calls(pool) == again, "a repeated investigation in the same session makes no upstream call"
    assert made > 0


async def test_private_address_chain_never_reaches_threat_intel(pool: UpstreamPool) -> None:
    sources = Sources.from_pool(pool, pool.config)
    result = await investigate(Indicator.parse("10.20.30.40"), sources, pivot_if="always")
    assert result.enrichment is not None
    assert result.enrichment.gti_analysis.section.status == "skipped_policy"
    gti_calls = [p for p in result.enrichment.gti_analysis.section.provenance]
    assert gti_calls == []
    assert result.pivot is not None and result.pivot.graph.section.status == "skipped_policy"
    assert result.correlation is not None and result.correlation.case_correlations.total_related_cases
