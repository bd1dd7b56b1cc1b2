"""Markdown rendering of a result, for a terminal or a ticket."""

from __future__ import annotations

from typing import Any

from ioc_workflows_mcp.models import EnrichResult, SectionInfo


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) if value else "—"
    return str(value).replace("|", "\\|")


def _section(title: str, info: SectionInfo, rows: list[tuple[str, Any]]) -> list[str]:
    lines = [
        f"## {title}",
        "",
        f"status: **{info.status.value}**" + (f" — {info.reason}" if info.reason else ""),
        "",
    ]
    lines += ["| field | value |", "|---|---|"]
    for name, value in rows:
        shown = _cell(value)
        if value is None and name in info.null_fields:
            shown = f"— ({info.null_fields[name]})"
        lines.append(f"| {name} | {shown} |")
    return [*lines, ""]


def to_markdown(result: EnrichResult) -> str:
    ind = result.indicator
    gti, siem, iocs, verdict = result.gti_analysis, result.siem_context, result.ioc_matches, result.assessment
    lines = [f"# {ind.type} `{ind.value}` — {verdict.verdict}, risk {verdict.risk_level}", ""]
    if result.data_mode != "live":
        lines += [
            f"> **DATA MODE {result.data_mode}**: bundled offline stand-in data, not live intelligence.",
            "",
        ]
    if ind.flags or ind.warnings:
        lines += [f"- {item}" for item in [*ind.flags, *ind.warnings]] + [""]
    lines += [result.summary, ""]
    lines += _section(
        "GTI analysis",
        gti.section,
        [
            ("reputation_score", gti.reputation_score),
            ("threat_types", gti.threat_types),
            ("first_submission", gti.first_submission),
            ("community_score", gti.community_score),
            ("verdict", gti.verdict),
            ("detection_ratio", gti.detection_ratio),
        ],
    )
    lines += _section(
        "SIEM context",
        siem.section,
        [
            ("first_seen", siem.first_seen),
            ("last_seen", siem.last_seen),
            ("event_count", siem.event_count),
            ("affected_systems", siem.affected_systems),
            ("alert_rules", siem.alert_rules),
        ],
    )
    lines += _section(
        "IOC matches",
        iocs.section,
        [
            ("match_count", iocs.match_count),
            ("match_types", iocs.match_types),
            ("sources", iocs.sources),
        ],
    )
    lines += [
        "## Assessment",
        "",
        f"confidence **{verdict.confidence.level}** ({verdict.confidence.score}/100),"
        f" agreement {verdict.agreement}",
        "",
    ]
    lines += [f"- {reason}" for reason in verdict.confidence.reasons]
    lines += [f"- note: {note}" for note in verdict.notes]
    return "\n".join(lines).rstrip() + "\n"
