"""The enrich workflow: the runbook's three steps, run concurrently and merged.

1. the GTI report for the indicator's type (skipped by policy for non-routable addresses);
2. the SIEM entity lookup (``lookup_entity``) plus a UDM event search for the affected systems, because
   ``lookup_entity`` prints related entity types but never their values;
3. the SIEM IOC matches (``get_ioc_matches``), filtered to this indicator because the tool has no filter.

No step depends on another, so all upstream calls start at once; the wall time is that of the slowest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import anyio

from ioc_workflows_mcp import scoring
from ioc_workflows_mcp.indicator import Indicator
from ioc_workflows_mcp.models import (
    Assessment,
    Confidence,
    EnrichResult,
    ErrorItem,
    Finding,
    GtiAnalysis,
    IndicatorInfo,
    IocMatch,
    IocMatches,
    SectionInfo,
    SiemContext,
    Status,
    data_mode_note,
)
from ioc_workflows_mcp.upstream.base import CallTrace, cap_untrusted, ordered
from ioc_workflows_mcp.upstream.gti import GtiReport
from ioc_workflows_mcp.upstream.pool import UpstreamFailure
from ioc_workflows_mcp.upstream.siem import (
    EntitySummary,
    IocMatchBlock,
    UdmEvents,
    affected_systems,
    event_involves,
    match_belongs_to,
)
from ioc_workflows_mcp.workflows.sources import Sources

T = TypeVar("T")


@dataclass
class _Outcome:
    """One step's answer or its failure."""

    value: Any = None
    status: Status = Status.OK
    reason: str | None = None
    retry_after: float | None = None


async def _attempt(step: Any, *args: Any) -> _Outcome:
    try:
        return _Outcome(value=await step(*args))
    except UpstreamFailure as failure:
        return _Outcome(status=failure.status, reason=failure.message, retry_after=failure.retry_after)


def indicator_info(indicator: Indicator) -> IndicatorInfo:
    return IndicatorInfo(
        raw=indicator.raw,
        value=indicator.value,
        type=indicator.type.value,
        defanged=indicator.defanged,
        port=indicator.port,
        host=indicator.host,
        host_type=indicator.host_type.value if indicator.host_type else None,
        flags=list(indicator.flags),
        warnings=list(indicator.warnings),
        external_ti_allowed=indicator.external_ti_allowed,
        known_benign=indicator.known_benign,
    )


def _threat_types(attributes: dict[str, Any]) -> list[str]:
    """Threat categories from every place VirusTotal keeps them, de-duplicated, lower case."""
    found: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, str):
            item = value.strip().lower()
            if item and item not in found:
                found.append(item)

    classification = attributes.get("popular_threat_classification")
    if isinstance(classification, dict):
        for key in ("popular_threat_category", "popular_threat_name"):
            for entry in classification.get(key) or []:
                if isinstance(entry, dict):
                    add(entry.get("value"))
        add(classification.get("suggested_threat_label"))
    categories = attributes.get("categories")
    if isinstance(categories, dict):
        for value in categories.values():
            add(value)
    for name in attributes.get("threat_names") or []:
        add(name)
    assessment = attributes.get("gti_assessment")
    if isinstance(assessment, dict):
        factors = assessment.get("contributing_factors")
        if isinstance(factors, dict):
            for value in factors.get("normalised_categories") or []:
                add(value)
    return found


def _gti_section(indicator: Indicator, outcome: _Outcome) -> tuple[GtiAnalysis, scoring.Evidence]:
    documented = ("reputation_score", "threat_types", "first_submission", "community_score")
    evidence = scoring.Evidence(gti_verdict=None)
    empty: dict[str, Any] = {
        "reputation_score": None,
        "threat_types": [],
        "first_submission": None,
        "community_score": None,
    }
    if outcome.status is not Status.OK:
        info = SectionInfo(
            status=outcome.status,
            reason=outcome.reason,
            retry_after_seconds=outcome.retry_after,
            null_fields={name: _null_reason(outcome) for name in documented if name != "threat_types"},
        )
        return GtiAnalysis(**empty, section=info), evidence
    status, report, reason = outcome.value
    if report is None:
        info = SectionInfo(
            status=status,
            reason=reason,
            null_fields={name: reason or status.value for name in documented if name != "threat_types"},
        )
        return GtiAnalysis(**empty, section=info), evidence

    assert isinstance(report, GtiReport)
    attrs = report.attributes
    nulls: dict[str, str] = {}
    score, score_source = scoring.threat_score(attrs)
    if score is None:
        nulls["reputation_score"] = "GTI gave no threat score and no engine results"
    first = scoring.iso_date(attrs.get("first_submission_date"))
    if first is None:
        nulls["first_submission"] = (
            f"VirusTotal keeps no first-submission date for {indicator.family} objects"
            if indicator.family in ("domain", "ip")
            else "the report has no first_submission_date"
        )
    community = scoring.community_score(attrs)
    if community is None:
        nulls["community_score"] = "no community votes"
    verdict, verdict_source = scoring.gti_verdict(attrs)
    stats = scoring.EngineStats.from_attributes(attrs)
    associations = report.relationships.get("associations", {})
    association_ids = [
        str(item.get("id"))
        for item in (associations.get("data") or [] if isinstance(associations, dict) else [])
        if isinstance(item, dict) and item.get("id")
    ]
    assessment = attrs.get("gti_assessment") if isinstance(attrs.get("gti_assessment"), dict) else {}
    reason_text = f"found; verdict {verdict} ({verdict_source})"
    if score_source and score_source != "gti_assessment.threat_score":
        reason_text += f"; score {score_source}"
    analysis = GtiAnalysis(
        reputation_score=f"{score}/100" if score is not None else None,
        threat_types=_threat_types(attrs),
        first_submission=first,
        community_score=f"{community}/100" if community is not None else None,
        verdict=verdict,
        severity=scoring.severity(attrs),
        detection_ratio=f"{stats.malicious}/{stats.total}" if stats else None,
        reputation=attrs.get("reputation") if isinstance(attrs.get("reputation"), int) else None,
        creation_date=scoring.iso_date(attrs.get("creation_date")),
        last_analysis_date=scoring.iso_date(attrs.get("last_analysis_date")),
        associations=association_ids,
        untrusted_description=cap_untrusted(assessment.get("description")) if assessment else None,
        section=SectionInfo(status=Status.OK, reason=reason_text, null_fields=nulls),
    )
    evidence = scoring.Evidence(
        gti_verdict=verdict,
        gti_verdict_source=verdict_source,
        gti_engines_malicious=stats.malicious if stats else 0,
        gti_severity=analysis.severity,
    )
    return analysis, evidence


def _null_reason(outcome: _Outcome) -> str:
    return f"{outcome.status.value}: {outcome.reason}" if outcome.reason else outcome.status.value


def _siem_section(indicator: Indicator, entity: _Outcome, udm: _Outcome, aliases: frozenset[str]) -> SiemContext:
    nulls: dict[str, str] = {}
    summary: EntitySummary | None = entity.value if entity.status is Status.OK else None
    if entity.status is not Status.OK:
        for name in ("first_seen", "last_seen", "event_count"):
            nulls[name] = _null_reason(entity)
        status, reason = entity.status, entity.reason
    elif summary is None:
        status, reason = Status.NOT_FOUND, "the SIEM has no entity for this indicator in the window"
        for name in ("first_seen", "last_seen", "event_count"):
            nulls[name] = reason
    else:
        status, reason = Status.OK, "entity found"
        if summary.first_seen is None:
            nulls["first_seen"] = "the entity summary gives no first-seen time"
        if summary.last_seen is None:
            nulls["last_seen"] = "the entity summary gives no last-seen time"
        if summary.total_events is None:
            nulls["event_count"] = "the entity summary has no timeline"

    systems: list[str] | None = None
    udm_count: int | None = None
    if udm.status is Status.OK:
        events: UdmEvents = udm.value
        involved = [event for event in events.events if event_involves(event, indicator, aliases)]
        systems = affected_systems(involved, indicator, aliases)
        udm_count = len(involved)
        if status is Status.NOT_FOUND and involved:
            status, reason = Status.OK, "no entity summary, but UDM events involve the indicator"
    else:
        nulls["affected_systems"] = _null_reason(udm)
        if status is Status.OK:
            status, reason = Status.DEGRADED, f"UDM event search failed: {udm.reason}"

    alert_count = None
    rules: list[str] = []
    if summary is not None:
        alert_count = summary.total_alerts if summary.total_alerts is not None else sum(summary.alerts.values())
        rules = sorted(summary.alerts)
    else:
        for name in ("entity_type", "alert_count"):
            nulls[name] = nulls.get("first_seen") or "no entity summary"
    return SiemContext(
        first_seen=summary.first_seen if summary else None,
        last_seen=summary.last_seen if summary else None,
        event_count=summary.total_events if summary else None,
        affected_systems=systems,
        entity_type=summary.entity_type if summary else None,
        alert_count=alert_count,
        alert_rules=rules,
        udm_event_count=udm_count,
        section=SectionInfo(
            status=status,
            reason=reason,
            retry_after_seconds=entity.retry_after or udm.retry_after,
            null_fields=nulls,
        ),
    )


def _explain_nulls(section: GtiAnalysis | SiemContext | IocMatches) -> None:
    """Every null field of a section gets a reason: the section's own when it did not answer, else that the
    upstream's answer had no such value. A reason set where the value was computed is kept."""
    info = section.section
    if info.status is Status.OK or info.status is Status.DEGRADED:
        source = {"GtiAnalysis": "the GTI report", "SiemContext": "the SIEM's answer"}.get(
            type(section).__name__, "the SIEM's IOC matches"
        )
        fallback = f"{source} has no such value for this indicator"
    else:
        fallback = f"{info.status.value}: {info.reason}" if info.reason else info.status.value
    for name in type(section).model_fields:
        if name != "section" and getattr(section, name) is None and name not in info.null_fields:
            info.null_fields[name] = fallback


def _file_aliases(gti_outcome: _Outcome) -> frozenset[str]:
    """The other hashes of a file, from its GTI report, so a sha1 input matches a sha256 IOC."""
    if gti_outcome.status is not Status.OK or gti_outcome.value[1] is None:
        return frozenset()
    report: GtiReport = gti_outcome.value[1]
    if report.object_type != "file":
        return frozenset()
    hashes = (report.attributes.get(key) for key in ("md5", "sha1", "sha256"))
    return frozenset(value for value in hashes if isinstance(value, str) and value)


def _ioc_section(indicator: Indicator, outcome: _Outcome, limit: int, aliases: frozenset[str]) -> IocMatches:
    if outcome.status is not Status.OK:
        reason = _null_reason(outcome)
        return IocMatches(
            match_count=None,
            recent_matches=[],
            match_types=[],
            section=SectionInfo(
                status=outcome.status,
                reason=outcome.reason,
                retry_after_seconds=outcome.retry_after,
                null_fields={"match_count": reason},
            ),
        )
    blocks: list[IocMatchBlock] = outcome.value
    mine = [block for block in blocks if match_belongs_to(block, indicator, aliases)]
    sources = sorted({source for block in mine for source in block.sources})
    truncated = len(blocks) >= limit
    reason = f"{len(mine)} of the SIEM's {len(blocks)} IOC matches in the window are this indicator"
    if truncated:
        reason += f"; the SIEM returned the maximum of {limit}, so more may exist"
    return IocMatches(
        match_count=len(mine),
        recent_matches=[IocMatch(type=b.type, value=b.value, sources=b.sources) for b in mine],
        match_types=sorted({block.type for block in mine}),
        sources=sources,
        possibly_truncated=truncated,
        section=SectionInfo(status=Status.DEGRADED if truncated else Status.OK, reason=reason),
    )


def _provenance(trace: CallTrace, gti: GtiAnalysis, siem: SiemContext, iocs: IocMatches) -> None:
    for call in ordered(trace.calls):
        if call.upstream == "gti":
            gti.section.provenance.append(call)
        elif call.tool == "get_ioc_matches":
            iocs.section.provenance.append(call)
        else:
            siem.section.provenance.append(call)


def _cache_note(trace: CallTrace) -> str:
    """Say so when answers came from this session's cache (their ages are in each section's provenance)."""
    hits = sum(1 for call in trace.calls if call.cache_age_seconds is not None)
    if not hits:
        return ""
    share = "All" if hits == len(trace.calls) else f"{hits} of {len(trace.calls)}"
    return f" {share} upstream answers from this session's cache."


def _summary(indicator: Indicator, data_mode: str, result: dict[str, Any]) -> str:
    gti: GtiAnalysis = result["gti_analysis"]
    siem: SiemContext = result["siem_context"]
    iocs: IocMatches = result["ioc_matches"]
    assessment: Assessment = result["assessment"]
    parts = [
        f"{indicator.type.value} {indicator.value}: verdict {assessment.verdict}, risk {assessment.risk_level}"
        f" (confidence {assessment.confidence.level}, {assessment.agreement})."
    ]
    if gti.section.status is Status.OK:
        parts.append(
            f"GTI: {gti.verdict}, score {gti.reputation_score or 'n/a'}, engines {gti.detection_ratio or 'n/a'}."
        )
    elif gti.section.status is Status.NOT_FOUND:
        parts.append("GTI: not found (unknown to threat intelligence; this is not a clean verdict).")
    elif gti.section.status is Status.SKIPPED_POLICY:
        parts.append(f"GTI: skipped by policy ({gti.section.reason}).")
    else:
        parts.append(f"GTI: FAILED, {gti.section.status.value} ({gti.section.reason}); verdict unknown, not clean.")
    if siem.section.status in (Status.OK, Status.DEGRADED):
        facts = []  # only what the SIEM gave; a missing fact is left out, never shown as zero
        if siem.first_seen and siem.last_seen:
            facts.append(f"seen {siem.first_seen} to {siem.last_seen}")
        if siem.event_count is not None:
            facts.append(f"{siem.event_count} events")
        if siem.alert_count is not None:
            facts.append(f"{siem.alert_count} alerts")
        if siem.affected_systems is not None:
            facts.append(f"{len(siem.affected_systems)} affected systems")
        if siem.first_seen is None and siem.udm_event_count:
            facts.append(f"{siem.udm_event_count} UDM events involve it (no entity summary)")
        parts.append("SIEM: " + (", ".join(facts) or "no details") + ".")
    elif siem.section.status is Status.NOT_FOUND:
        parts.append("SIEM: no entity in the window.")
    else:
        parts.append(f"SIEM: FAILED, {siem.section.status.value} ({siem.section.reason}).")
    if iocs.section.status in (Status.OK, Status.DEGRADED):
        parts.append(f"IOC matches: {iocs.match_count}.")
    else:
        parts.append(f"IOC matches: FAILED, {iocs.section.status.value}.")
    if data_mode != "live":
        parts.append(data_mode_note(data_mode))
    return " ".join(parts)


async def enrich(indicator: Indicator, sources: Sources, lookback_days: int = 30) -> EnrichResult:
    """Run the enrich workflow. Never raises for upstream trouble: failures become section statuses."""
    settings = sources.settings
    hours_back = lookback_days * 24
    trace = CallTrace()
    gti_outcome = _Outcome(status=Status.SKIPPED_POLICY, reason=indicator.ti_skip_reason)
    entity = udm = iocs = _Outcome()

    async def run_gti() -> None:
        nonlocal gti_outcome
        gti_outcome = await _attempt(sources.gti.report, indicator, trace)

    async def run_entity() -> None:
        nonlocal entity
        entity = await _attempt(sources.siem.entity_summary, indicator, hours_back, trace)

    async def run_udm() -> None:
        nonlocal udm
        udm = await _attempt(sources.siem.udm_events, indicator, hours_back, settings.udm_event_limit, trace)

    async def run_iocs() -> None:
        nonlocal iocs
        iocs = await _attempt(sources.siem.ioc_matches, hours_back, settings.ioc_match_limit, trace)

    async with anyio.create_task_group() as tg:
        if indicator.external_ti_allowed:
            tg.start_soon(run_gti)
        tg.start_soon(run_entity)
        tg.start_soon(run_udm)
        tg.start_soon(run_iocs)

    if not indicator.external_ti_allowed:
        gti_outcome = _Outcome(
            status=Status.SKIPPED_POLICY,
            reason=f"skipped: {indicator.ti_skip_reason or 'policy'}; no external threat intelligence was asked",
        )
    gti, evidence = _gti_section(indicator, gti_outcome)
    aliases = _file_aliases(gti_outcome)
    siem = _siem_section(indicator, entity, udm, aliases)
    matches = _ioc_section(indicator, iocs, settings.ioc_match_limit, aliases)
    _provenance(trace, gti, siem, matches)
    for section in (gti, siem, matches):
        _explain_nulls(section)

    evidence.ioc_match_count = matches.match_count or 0
    evidence.ioc_sources = len(matches.sources)
    evidence.siem_alerts = siem.alert_count or 0
    evidence.siem_seen = siem.section.status is Status.OK
    errors: list[ErrorItem] = []
    for name, section, upstream in (
        ("gti_analysis", gti.section, "gti"),
        ("siem_context", siem.section, "secops"),
        ("ioc_matches", matches.section, "secops"),
    ):
        if section.status.failed or section.status is Status.DEGRADED:
            errors.append(
                ErrorItem(
                    section=name,
                    upstream=upstream,
                    status=section.status,
                    message=section.reason or section.status.value,
                )
            )
        if section.status.failed:
            evidence.failed_sections.append(name)

    verdict = scoring.cross_validate(evidence)
    confidence = Confidence(level=verdict.level, score=verdict.score, reasons=verdict.reasons)
    assessment = Assessment(
        verdict=verdict.verdict,
        risk_level=verdict.risk_level,
        agreement=verdict.agreement,
        confidence=confidence,
        notes=verdict.notes,
    )
    findings = _findings(indicator, gti, siem, matches, confidence)
    parts: dict[str, Any] = {
        "gti_analysis": gti,
        "siem_context": siem,
        "ioc_matches": matches,
        "assessment": assessment,
    }
    return EnrichResult(
        data_mode=sources.data_mode,
        indicator=indicator_info(indicator),
        lookback_days=lookback_days,
        gti_analysis=gti,
        siem_context=siem,
        ioc_matches=matches,
        assessment=assessment,
        findings=findings,
        errors=errors,
        summary=_summary(indicator, sources.data_mode, parts) + _cache_note(trace),
    )


def _finding(text: str, kind: str, reason: str) -> Finding:
    level, score = scoring.finding_confidence(kind)
    return Finding(finding=text, confidence=Confidence(level=level, score=score, reasons=[reason]))


def _findings(
    indicator: Indicator, gti: GtiAnalysis, siem: SiemContext, iocs: IocMatches, overall: Confidence
) -> list[Finding]:
    """Each fact worth an analyst's attention, with the confidence behind it."""
    findings: list[Finding] = []
    if gti.section.status is Status.OK and gti.verdict:
        kind = "gti_assessment" if "gti_assessment" in (gti.section.reason or "") else "gti_engines"
        text = f"GTI verdict {gti.verdict}, threat score {gti.reputation_score}, engines {gti.detection_ratio}"
        findings.append(_finding(text, kind, gti.section.reason or ""))
    if iocs.match_count:
        kind = "ioc_match_multi_feed" if len(iocs.sources) >= 2 else "ioc_match_single_feed"
        text = f"{iocs.match_count} SIEM IOC match(es) from {', '.join(iocs.sources) or 'unnamed feeds'}"
        findings.append(_finding(text, kind, "the SIEM's own intelligence feeds match it"))
    if siem.alert_count:
        rules = ", ".join(siem.alert_rules) or "unnamed rules"
        text = f"{siem.alert_count} SIEM alert(s) on the entity: {rules}"
        findings.append(_finding(text, "siem_alerts", "detections fired in this environment"))
    if siem.affected_systems:
        shown = ", ".join(siem.affected_systems[:10])
        text = f"{len(siem.affected_systems)} internal system(s) involved: {shown}"
        findings.append(_finding(text, "affected_systems", "UDM events name these principals"))
    if indicator.known_benign:
        text = f"known benign or shared infrastructure: {indicator.known_benign}"
        findings.append(_finding(text, "benign_list", "bundled benign list (ioc_workflows_mcp/data/README.md)"))
    findings.append(Finding(finding=f"overall verdict ({overall.level} confidence)", confidence=overall))
    return findings
