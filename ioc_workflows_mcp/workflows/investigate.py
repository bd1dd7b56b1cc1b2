"""The chain: enrich, then pivot when the risk calls for it, then correlate; merged into one result.

1. ``enrich`` the indicator.
2. ``pivot`` when ``pivot_if`` says so: "high_risk" (the default) pivots when the enrichment's risk level is
   one of ``scoring.PIVOT_RISK_LEVELS``; "always" and "never" force it either way.
3. ``correlate`` the indicator itself (it does not wait for the pivot), then the most significant pivot
   findings, at most ``related_budget`` of them.

Every step goes through the same session facades, so answers already fetched (an earlier enrich of the same
indicator, SOAR case pages read by the first correlation) are reused, not fetched again.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import anyio

from ioc_workflows_mcp import scoring
from ioc_workflows_mcp.indicator import Indicator, IndicatorError
from ioc_workflows_mcp.models import EnrichResult, ErrorItem, data_mode_note
from ioc_workflows_mcp.models.correlate import CorrelateResult
from ioc_workflows_mcp.models.investigate import (
    AnalysisResult,
    ChainDecision,
    CombinedAssessment,
    RelatedCorrelation,
)
from ioc_workflows_mcp.models.pivot import PivotNode, PivotResult
from ioc_workflows_mcp.workflows.correlate import correlate, some
from ioc_workflows_mcp.workflows.enrich import enrich, indicator_info
from ioc_workflows_mcp.workflows.pivot import Progress, pivot
from ioc_workflows_mcp.workflows.sources import Sources

PivotIf = Literal["high_risk", "always", "never"]
MAX_RELATED = 5
_NODE_TYPES = {"domain", "ip", "file", "url"}


def significant_findings(result: PivotResult, limit: int) -> list[tuple[PivotNode, str]]:
    """Pivot nodes worth correlating: malicious or suspicious, nearest first, highest score first."""
    chosen: list[tuple[PivotNode, str]] = []
    candidates = [
        node
        for node in result.graph.nodes
        if node.depth > 0 and node.type in _NODE_TYPES and node.verdict in ("malicious", "suspicious")
    ]
    candidates.sort(key=lambda n: (n.depth, n.verdict != "malicious", -(n.threat_score or 0), n.value))
    for node in candidates[:limit]:
        score = f", score {node.threat_score}" if node.threat_score is not None else ""
        chosen.append((node, f"{node.verdict}{score}, {node.depth} hop(s) from the indicator"))
    return chosen


async def _correlate_related(
    node: PivotNode, why: str, sources: Sources, scope: str, lookback_days: int
) -> RelatedCorrelation:
    try:
        indicator = Indicator.parse(node.value)
    except IndicatorError as exc:
        return RelatedCorrelation(
            value=node.value,
            type=node.type,
            why_chosen=why,
            total_related_cases=None,
            case_ids=[],
            exposure_level="unknown",
            affected_systems=[],
            status=f"not an indicator we can correlate: {exc}",
        )
    result = await correlate(indicator, sources, scope, lookback_days)
    failed = [e.status.value for e in result.errors]
    return RelatedCorrelation(
        value=indicator.value,
        type=indicator.type.value,
        why_chosen=why,
        total_related_cases=result.case_correlations.total_related_cases,
        case_ids=result.case_correlations.case_ids,
        exposure_level=result.risk_assessment.exposure_level,
        affected_systems=result.affected_systems,
        status="ok" if not failed else ", ".join(sorted(set(failed))),
    )


def combine(
    enrichment: EnrichResult,
    pivoted: PivotResult | None,
    correlation: CorrelateResult,
    related: list[RelatedCorrelation],
) -> CombinedAssessment:
    attribution = None
    if pivoted is not None:
        context = pivoted.campaign_context
        names = [n for n in (context.threat_actor, context.campaign_name) if n]
        if names:
            attribution = (", ".join(names), pivoted.confidence_assessment.attribution_confidence.level)
    exposures = [correlation.risk_assessment.exposure_level, *(r.exposure_level for r in related)]
    verdict = scoring.combined_priority(
        risk_level=enrichment.assessment.risk_level,
        attribution=attribution,
        exposures=exposures,
    )
    drivers = list(verdict.drivers)
    if enrichment.assessment.agreement == "corroborated":
        drivers.append("GTI and the SIEM corroborate each other")
    cases = correlation.case_correlations.total_related_cases
    if cases:
        drivers.append(f"{cases} related SOAR case(s): {some(correlation.case_correlations.case_ids)}")
    for item in related:
        if item.total_related_cases:
            drivers.append(f"pivot finding {item.value} appears in {item.total_related_cases} case(s)")
    return CombinedAssessment(
        threat_level=verdict.threat,
        exposure_level=verdict.exposure,
        priority=verdict.priority,
        verdict=enrichment.assessment.verdict,
        drivers=drivers,
    )


async def investigate(
    indicator: Indicator,
    sources: Sources,
    pivot_depth: int = 2,
    correlation_scope: str = "recent",
    lookback_days: int = 30,
    pivot_if: PivotIf = "high_risk",
    related_budget: int = 2,
    progress: Progress | None = None,
) -> AnalysisResult:
    """Run the whole chain. Never raises for upstream trouble: every failure is a status in a section."""
    if not 0 <= related_budget <= MAX_RELATED:
        raise ValueError(f"related_budget must be 0 to {MAX_RELATED}, not {related_budget}")

    async def step(message: str, done: float) -> None:
        if progress is not None:
            with contextlib.suppress(Exception):  # a client that went away must not break the chain
                await progress(done, 3.0, message)

    enrichment = await enrich(indicator, sources, lookback_days)
    await step("enriched", 1)
    risk = enrichment.assessment.risk_level
    if pivot_if == "always":
        run_pivot, why = True, "pivot_if=always"
    elif pivot_if == "never":
        run_pivot, why = False, "pivot_if=never"
    elif risk in scoring.PIVOT_RISK_LEVELS:
        run_pivot, why = True, f"enrichment risk {risk} meets the threshold ({', '.join(scoring.PIVOT_RISK_LEVELS)})"
    else:
        run_pivot, why = (
            False,
            f"enrichment risk {risk} is below the threshold ({', '.join(scoring.PIVOT_RISK_LEVELS)})",
        )

    pivoted: PivotResult | None = None
    correlation: CorrelateResult | None = None

    async def run_pivot_step() -> None:
        nonlocal pivoted
        pivoted = await pivot(indicator, sources, pivot_depth, progress=None)

    async def run_correlate_step() -> None:
        nonlocal correlation
        correlation = await correlate(indicator, sources, correlation_scope, lookback_days)

    async with anyio.create_task_group() as tg:
        if run_pivot:
            tg.start_soon(run_pivot_step)
        tg.start_soon(run_correlate_step)
    await step("pivoted and correlated" if run_pivot else "correlated", 2)
    assert correlation is not None

    findings = significant_findings(pivoted, related_budget) if pivoted is not None else []
    slots: list[RelatedCorrelation | None] = [None] * len(findings)

    async def one(index: int, node: PivotNode, reason: str) -> None:
        slots[index] = await _correlate_related(node, reason, sources, correlation_scope, lookback_days)

    async with anyio.create_task_group() as tg:
        for index, (node, reason) in enumerate(findings):
            tg.start_soon(one, index, node, reason)
    related = [item for item in slots if item is not None]
    await step("done", 3)

    combined = combine(enrichment, pivoted, correlation, related)
    errors: list[ErrorItem] = [*enrichment.errors, *(pivoted.errors if pivoted else []), *correlation.errors]
    chain = ChainDecision(
        pivot="ran" if run_pivot else "skipped",
        pivot_reason=why,
        pivot_if=pivot_if,
        related_correlated=[r.value for r in related],
        related_budget=related_budget,
    )
    result = AnalysisResult(
        analysis_type="full",
        data_mode=sources.data_mode,
        indicator=indicator_info(indicator),
        enrichment=enrichment,
        pivot=pivoted,
        correlation=correlation,
        related_correlations=related,
        chain=chain,
        combined_assessment=combined,
        errors=errors,
        summary="",
    )
    result.summary = _summary(result)
    return result


def single(analysis_type: Literal["enrich", "pivot", "correlate"], section: Any) -> AnalysisResult:
    """Wrap one workflow's result in the master shape (analyze_ioc with one analysis type)."""
    return AnalysisResult(
        analysis_type=analysis_type,
        data_mode=section.data_mode,
        indicator=section.indicator,
        enrichment=section if analysis_type == "enrich" else None,
        pivot=section if analysis_type == "pivot" else None,
        correlation=section if analysis_type == "correlate" else None,
        errors=section.errors,
        summary=section.summary,
    )


def _summary(result: AnalysisResult) -> str:
    combined, chain = result.combined_assessment, result.chain
    assert combined is not None and chain is not None
    parts = [
        f"{result.indicator.type} {result.indicator.value}: priority {combined.priority} "
        f"(threat {combined.threat_level}, exposure {combined.exposure_level}, verdict {combined.verdict})."
    ]
    if result.enrichment:
        verdict = result.enrichment.assessment
        parts.append(
            f"Enrich: verdict {verdict.verdict}, risk {verdict.risk_level} ({verdict.agreement}, "
            f"{verdict.confidence.level} confidence)."
        )
    parts.append(f"Pivot {chain.pivot}: {chain.pivot_reason}.")
    if result.pivot:
        context = result.pivot.campaign_context
        named = ", ".join(n for n in (context.threat_actor, context.campaign_name) if n) or "no attribution"
        parts.append(f"Pivot found {len(result.pivot.graph.nodes) - 1} related entities; {named}.")
    if result.correlation:
        cases = result.correlation.case_correlations.total_related_cases
        parts.append(
            f"Correlate: {cases if cases is not None else 'unknown'} related case(s), exposure "
            f"{result.correlation.risk_assessment.exposure_level}."
        )
    if combined.drivers:
        parts.append("Drivers: " + "; ".join(combined.drivers[:4]) + ".")
    if result.errors:
        failed = [f"{e.section} {e.status.value}" for e in result.errors]
        parts.append(
            "Partial: " + "; ".join(failed[:5]) + (f"; and {len(failed) - 5} more" if len(failed) > 5 else "") + "."
        )
    if result.data_mode != "live":
        parts.append(data_mode_note(result.data_mode))
    return " ".join(parts)
