"""Markdown renderings of results, for a terminal or a ticket. The JSON has everything; these are readings."""

from __future__ import annotations

from typing import Any

from ioc_workflows_mcp.models import EnrichResult, SectionInfo
from ioc_workflows_mcp.models.correlate import CorrelateResult
from ioc_workflows_mcp.models.investigate import AnalysisResult
from ioc_workflows_mcp.models.pivot import PivotResult


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) if value else "—"
    return str(value).replace("|", "\\|")


def _section(title: str, info: SectionInfo, rows: list[tuple[str, Any]]) -> list[str]:
    lines = [f"## {title}", "", f"status: **{info.status.value}**" + (f" — {info.reason}" if info.reason else ""), ""]
    lines += ["| field | value |", "|---|---|"]
    for name, value in rows:
        shown = _cell(value)
        if value is None and name in info.null_fields:
            shown = f"— ({info.null_fields[name]})"
        lines.append(f"| {name} | {shown} |")
    return [*lines, ""]


def _banner(data_mode: str) -> list[str]:
    if data_mode == "live":
        return []
    return [f"> **DATA MODE {data_mode}**: bundled offline stand-in data, not live intelligence.", ""]


def enrich_markdown(result: EnrichResult) -> str:
    ind = result.indicator
    gti, siem, iocs, verdict = result.gti_analysis, result.siem_context, result.ioc_matches, result.assessment
    lines = [f"# {ind.type} `{ind.value}` — {verdict.verdict}, risk {verdict.risk_level}", ""]
    lines += _banner(result.data_mode)
    if ind.flags or ind.warnings:
        lines += [f"- {item}" for item in [*ind.flags, *ind.warnings]] + [""]
    lines += [result.summary, ""]
    lines += _section("GTI analysis", gti.section, [
        ("reputation_score", gti.reputation_score), ("threat_types", gti.threat_types),
        ("first_submission", gti.first_submission), ("community_score", gti.community_score),
        ("verdict", gti.verdict), ("detection_ratio", gti.detection_ratio),
    ])  # fmt: skip
    lines += _section("SIEM context", siem.section, [
        ("first_seen", siem.first_seen), ("last_seen", siem.last_seen), ("event_count", siem.event_count),
        ("affected_systems", siem.affected_systems), ("alert_rules", siem.alert_rules),
    ])  # fmt: skip
    lines += _section("IOC matches", iocs.section, [
        ("match_count", iocs.match_count), ("match_types", iocs.match_types), ("sources", iocs.sources),
    ])  # fmt: skip
    lines += ["## Assessment", "", f"confidence **{verdict.confidence.level}** ({verdict.confidence.score}/100),"
              f" agreement {verdict.agreement}", ""]  # fmt: skip
    lines += [f"- {reason}" for reason in verdict.confidence.reasons]
    lines += [f"- note: {note}" for note in verdict.notes]
    return "\n".join(lines).rstrip() + "\n"


def pivot_markdown(result: PivotResult) -> str:
    direct, campaign = result.direct_relationships, result.campaign_context
    lines = [f"# pivot of {result.indicator.type} `{result.indicator.value}`, depth {result.pivot_depth}", ""]
    lines += _banner(result.data_mode)
    lines += [result.summary, "", "## Direct relationships", ""]
    for label, items in (("domains", direct.related_domains), ("IPs", direct.related_ips),
                         ("files", direct.related_files), ("URLs", direct.related_urls)):  # fmt: skip
        shown = ", ".join(f"`{item.value}` ({item.verdict or 'unknown'})" for item in items[:10])
        lines.append(f"- {label} ({len(items)}): {shown}{' ...' if len(items) > 10 else ''}")
    lines += ["", "## Campaign context", ""]
    nulls = campaign.section.null_fields
    lines.append(f"- threat actor: {campaign.threat_actor or 'none (' + nulls.get('threat_actor', '') + ')'}")
    lines.append(f"- campaign: {campaign.campaign_name or 'none (' + nulls.get('campaign_name', '') + ')'}")
    for cand in campaign.candidates:
        lines.append(f"  - {cand.collection_type} {cand.name or cand.collection_id}: {cand.paths} path(s)")
    span = campaign.timeline_span
    lines.append(f"- timeline: {f'{span.first_seen} to {span.last_seen} ({span.days} days)' if span else 'no dates'}")
    conf = result.confidence_assessment
    lines.append(
        f"- confidence: relationships {conf.relationship_confidence.level}, attribution "
        f"{conf.attribution_confidence.level}, infrastructure {conf.infrastructure_confidence.level}"
    )
    usage = result.budget
    lines += [
        "",
        f"budget: {usage.calls} calls of {usage.limits.max_calls}; cut: {'; '.join(usage.cut_reasons) or 'no'}",
    ]
    return "\n".join(lines) + "\n"


def correlate_markdown(result: CorrelateResult) -> str:
    cases, pattern, risk = result.case_correlations, result.pattern_analysis, result.risk_assessment
    lines = [
        f"# correlation of {result.indicator.type} `{result.indicator.value}` — exposure {risk.exposure_level}",
        "",
    ]
    lines += _banner(result.data_mode)
    lines += [result.summary, ""]
    lines += _section(f"SOAR cases (last {result.case_window_days} days)", cases.section, [
        ("total_related_cases", cases.total_related_cases), ("case_ids", cases.case_ids),
        ("first_occurrence", cases.first_occurrence), ("most_recent", cases.most_recent),
    ])  # fmt: skip
    for case in result.matched_cases:
        why = "; ".join(f"{reason.how}: {reason.detail}" for reason in case.matched_by)
        lines.append(f"- case {case.case_id} [{case.status}, {case.priority}, {case.environment}]: {why}")
    lines.append("")
    lines += _section("Patterns", pattern.section, [
        ("attack_patterns", pattern.attack_patterns), ("affected_systems_count", pattern.affected_systems_count),
        ("organizational_scope", pattern.organizational_scope),
    ])  # fmt: skip
    lines += ["## Risk", "", f"exposure **{risk.exposure_level}**, recurrence **{risk.recurrence_risk}**, "
              f"business impact **{risk.business_impact}**", ""]  # fmt: skip
    lines += [f"- {reason}" for reason in risk.reasons]
    return "\n".join(lines).rstrip() + "\n"


def analysis_markdown(result: AnalysisResult) -> str:
    parts: list[str] = []
    if result.combined_assessment is not None and result.chain is not None:
        combined = result.combined_assessment
        parts += [f"# investigation of {result.indicator.type} `{result.indicator.value}` — priority "
                  f"{combined.priority}", ""]  # fmt: skip
        parts += _banner(result.data_mode)
        parts += [
            result.summary,
            "",
            f"threat **{combined.threat_level}**, exposure **{combined.exposure_level}**, "
            f"verdict **{combined.verdict}**; pivot {result.chain.pivot}: {result.chain.pivot_reason}",
            "",
        ]
        parts += [f"- {driver}" for driver in combined.drivers] + [""]
        for item in result.related_correlations:
            parts.append(
                f"- related {item.type} `{item.value}` ({item.why_chosen}): "
                f"{item.total_related_cases} case(s), exposure {item.exposure_level}"
            )
        parts.append("")
    for section in (result.enrichment, result.pivot, result.correlation):
        if section is not None:
            parts.append(to_markdown(section))
    return "\n".join(parts).rstrip() + "\n"


def to_markdown(result: EnrichResult | PivotResult | CorrelateResult | AnalysisResult) -> str:
    if isinstance(result, AnalysisResult):
        return analysis_markdown(result)
    if isinstance(result, PivotResult):
        return pivot_markdown(result)
    if isinstance(result, CorrelateResult):
        return correlate_markdown(result)
    return enrich_markdown(result)
