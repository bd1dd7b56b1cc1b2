"""Every verdict, score, confidence and risk formula, in one documented place.

Nothing here talks to an upstream: each function takes plain values and returns plain values, so the
formulas can be read, tested and changed in one file. Where a number comes from outside, the comment
says where.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Verdict = Literal["malicious", "suspicious", "clean", "unknown"]

# Engine thresholds when GTI gives no verdict of its own. XSOAR's VirusTotal integration calls a file
# malicious at 10 positives and Cortex at 1 (research/peers.md §c); single-engine hits are known noise
# (peers.md §d), so we sit between: 5 or more engines is malicious, 1-4 is suspicious.
MALICIOUS_ENGINES = 5
SUSPICIOUS_ENGINES = 1
# Suspicious verdicts from engines weigh half a malicious one in the derived score (the same weight the
# fastmcp-threatintel peer uses, peers.md §c).
SUSPICIOUS_WEIGHT = 0.5

_GTI_VERDICTS: dict[str, Verdict] = {
    "VERDICT_MALICIOUS": "malicious",
    "VERDICT_SUSPICIOUS": "suspicious",
    "VERDICT_UNDETECTED": "clean",
    "VERDICT_BENIGN": "clean",
}


def _value(node: Any) -> Any:
    """GTI wraps each assessment field as {"value": x}."""
    return node.get("value") if isinstance(node, dict) else None


def iso_date(epoch: Any) -> str | None:
    """VirusTotal dates are epoch seconds; the documented output is YYYY-MM-DD (UTC)."""
    if isinstance(epoch, bool) or not isinstance(epoch, int | float) or epoch <= 0:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class EngineStats:
    malicious: int
    suspicious: int
    total: int

    @classmethod
    def from_attributes(cls, attributes: dict[str, Any]) -> EngineStats | None:
        stats = attributes.get("last_analysis_stats")
        if not isinstance(stats, dict):
            return None
        counts = {key: value for key, value in stats.items() if isinstance(value, int)}
        # Engines that timed out, failed or could not handle the type gave no opinion.
        no_opinion = ("timeout", "confirmed-timeout", "failure", "type-unsupported")
        total = sum(value for key, value in counts.items() if key not in no_opinion)
        return cls(counts.get("malicious", 0), counts.get("suspicious", 0), total)


def gti_verdict(attributes: dict[str, Any]) -> tuple[Verdict, str]:
    """Verdict of a found GTI object and where it came from.

    GTI's own ``gti_assessment.verdict`` wins. Without it, the engine counts decide with the thresholds
    above. A found object with no opinion either way is ``clean``: found and nobody calls it bad.
    """
    assessment = attributes.get("gti_assessment")
    verdict = (
        _GTI_VERDICTS.get(str(_value(assessment.get("verdict")))) if isinstance(assessment, dict) else None
    )
    if verdict:
        return verdict, "gti_assessment.verdict"
    stats = EngineStats.from_attributes(attributes)
    if stats is None or stats.total == 0:
        return "clean", "no engine results and no GTI verdict"
    if stats.malicious >= MALICIOUS_ENGINES:
        return "malicious", f"{stats.malicious} engines flag it (threshold {MALICIOUS_ENGINES})"
    if stats.malicious >= SUSPICIOUS_ENGINES or stats.suspicious >= MALICIOUS_ENGINES:
        return "suspicious", f"{stats.malicious} malicious / {stats.suspicious} suspicious engine results"
    return "clean", f"0 of {stats.total} engines flag it"


def threat_score(attributes: dict[str, Any]) -> tuple[int | None, str | None]:
    """0-100, higher is worse: GTI's threat_score, else (malicious + 0.5 x suspicious) / engines x 100."""
    assessment = attributes.get("gti_assessment")
    if isinstance(assessment, dict):
        score = _value(assessment.get("threat_score"))
        if isinstance(score, int | float) and not isinstance(score, bool):
            return max(0, min(100, round(score))), "gti_assessment.threat_score"
    stats = EngineStats.from_attributes(attributes)
    if stats is None or stats.total == 0:
        return None, None
    derived = (stats.malicious + SUSPICIOUS_WEIGHT * stats.suspicious) / stats.total * 100
    return round(derived), "derived from last_analysis_stats: (malicious + 0.5 x suspicious) / engines"


def community_score(attributes: dict[str, Any]) -> int | None:
    """Share of community votes calling it malicious, 0-100 (total_votes). None without votes."""
    votes = attributes.get("total_votes")
    if not isinstance(votes, dict):
        return None
    bad, good = int(votes.get("malicious") or 0), int(votes.get("harmless") or 0)
    if bad + good == 0:
        return None
    return round(100 * bad / (bad + good))


def severity(attributes: dict[str, Any]) -> str | None:
    assessment = attributes.get("gti_assessment")
    raw = _value(assessment.get("severity")) if isinstance(assessment, dict) else None
    return str(raw).removeprefix("SEVERITY_").lower() if raw else None


# --- cross-validation -------------------------------------------------------------------------------

# Points behind the confidence of the overall verdict. A verdict is believed more when independent
# sources agree (the runbook's cross-validation step) and less when evidence is missing or conflicting.
POINTS_GTI_ASSESSMENT = 40  # GTI's own verdict (analyst- and model-backed)
POINTS_GTI_ENGINES = 25  # verdict derived from engine counts only
POINTS_MANY_ENGINES = 10  # ... with at least MALICIOUS_ENGINES engines agreeing
POINTS_SIEM_IOC_MATCH = 20  # the SIEM's own threat feeds match the indicator
POINTS_MULTI_FEED = 5  # ... from two or more feeds
POINTS_SIEM_ALERTS = 15  # detections fired on the entity in the window
POINTS_CORROBORATED = 15  # TI says bad and the SIEM saw it: independent agreement
PENALTY_CONFLICT = 20  # TI says clean while SIEM feeds match it
PENALTY_FAILED_SECTION = 15  # each section that failed: evidence we could not see
LEVELS = ((70, "high"), (40, "medium"), (1, "low"))


@dataclass
class Evidence:
    """What the enrich sections found, reduced to what the cross-validation needs."""

    gti_verdict: Verdict | None  # None when GTI failed, was skipped or does not know the indicator
    gti_verdict_source: str | None = None
    gti_engines_malicious: int = 0
    ioc_match_count: int = 0
    ioc_sources: int = 0
    siem_alerts: int = 0
    siem_seen: bool = False
    failed_sections: list[str] = field(default_factory=list)


@dataclass
class CrossValidation:
    verdict: Verdict
    risk_level: Literal["critical", "high", "medium", "low", "unknown"]
    agreement: Literal["corroborated", "ti_only", "siem_only", "conflict", "clean", "insufficient"]
    score: int
    level: Literal["high", "medium", "low", "none"]
    reasons: list[str]
    notes: list[str]


def confidence_level(score: int) -> Literal["high", "medium", "low", "none"]:
    for floor, name in LEVELS:
        if score >= floor:
            return name  # type: ignore[return-value]
    return "none"


def cross_validate(ev: Evidence) -> CrossValidation:
    """Merge GTI and SIEM evidence into one verdict, a risk level and an explained confidence."""
    reasons: list[str] = []
    notes: list[str] = []
    score = 0
    ti_bad = ev.gti_verdict in ("malicious", "suspicious")
    siem_signal = ev.ioc_match_count > 0 or ev.siem_alerts > 0

    if ev.gti_verdict is not None:
        if ev.gti_verdict_source == "gti_assessment.verdict":
            score += POINTS_GTI_ASSESSMENT
            reasons.append(f"GTI assessment says {ev.gti_verdict} (+{POINTS_GTI_ASSESSMENT})")
        else:
            score += POINTS_GTI_ENGINES
            reasons.append(f"engine results say {ev.gti_verdict} (+{POINTS_GTI_ENGINES})")
        if ev.gti_engines_malicious >= MALICIOUS_ENGINES:
            score += POINTS_MANY_ENGINES
            reasons.append(f"{ev.gti_engines_malicious} engines flag it (+{POINTS_MANY_ENGINES})")
    if ev.ioc_match_count:
        score += POINTS_SIEM_IOC_MATCH
        reasons.append(f"{ev.ioc_match_count} SIEM IOC match(es) (+{POINTS_SIEM_IOC_MATCH})")
        if ev.ioc_sources >= 2:
            score += POINTS_MULTI_FEED
            reasons.append(f"{ev.ioc_sources} independent intelligence feeds (+{POINTS_MULTI_FEED})")
    if ev.siem_alerts:
        score += POINTS_SIEM_ALERTS
        reasons.append(f"{ev.siem_alerts} SIEM alert(s) on the entity (+{POINTS_SIEM_ALERTS})")

    if ti_bad and siem_signal:
        agreement = "corroborated"
        score += POINTS_CORROBORATED
        reasons.append(f"GTI and the SIEM agree (+{POINTS_CORROBORATED})")
    elif ti_bad:
        agreement = "ti_only"
        notes.append("GTI calls it bad, but the SIEM has no IOC match or alert for it in the window.")
    elif ev.gti_verdict == "clean" and siem_signal:
        agreement = "conflict"
        score -= PENALTY_CONFLICT
        reasons.append(f"GTI finds it clean but the SIEM matches or alerts on it (-{PENALTY_CONFLICT})")
        notes.append("Sources disagree: GTI finds it clean, the SIEM's feeds or detections do not.")
    elif ev.gti_verdict == "clean":
        agreement = "clean"
    elif siem_signal:
        agreement = "siem_only"
        notes.append("Only the SIEM has evidence; GTI gave no verdict.")
    else:
        agreement = "insufficient"
    for section in ev.failed_sections:
        score -= PENALTY_FAILED_SECTION
        reasons.append(f"{section} failed, its evidence is missing (-{PENALTY_FAILED_SECTION})")

    score = max(0, min(100, score))
    if ev.gti_verdict in ("malicious", "suspicious"):
        verdict: Verdict = ev.gti_verdict
    elif ev.gti_verdict == "clean":
        verdict = "suspicious" if siem_signal else "clean"
    else:
        verdict = "suspicious" if siem_signal else "unknown"

    if verdict == "malicious":
        risk = "critical" if agreement == "corroborated" else "high"
    elif verdict == "suspicious":
        risk = "medium"
    elif verdict == "clean":
        risk = "low"
    else:
        risk = "unknown"
    if verdict == "unknown" and ev.gti_verdict is None:
        notes.append("No threat-intelligence verdict: the risk is unknown, not low.")
    return CrossValidation(verdict, risk, agreement, score, confidence_level(score), reasons, notes)  # type: ignore[arg-type]


# Confidence of one finding on its own, by the kind of evidence behind it. GTI's assessment and detections
# fired in the environment are strong; engine counts alone and a single feed match are weaker (single-source
# hits are a known source of false positives, peers.md §d); the bundled benign list is curated.
FINDING_SCORES: dict[str, int] = {
    "gti_assessment": 80,
    "gti_engines": 50,
    "ioc_match_multi_feed": 80,
    "ioc_match_single_feed": 60,
    "siem_alerts": 80,
    "affected_systems": 60,
    "benign_list": 90,
}


def finding_confidence(kind: str) -> tuple[Literal["high", "medium", "low", "none"], int]:
    score = FINDING_SCORES[kind]
    return confidence_level(score), score


# --- correlate ---------------------------------------------------------------------------------------

# SOAR priorities, lowest to highest (secops-soar-mcp change_case_priority values).
PRIORITY_RANK = {"PriorityUnspecified": 0, "PriorityInfo": 1, "PriorityLow": 2, "PriorityMedium": 3,
                 "PriorityHigh": 4, "PriorityCritical": 5}
# More systems than this is a spread, not an incident on one host (exposure "high").
WIDE_SPREAD_SYSTEMS = 3
# Related cases in one window that make a recurrence: 2 is a repeat, 3 or more is a pattern.
RECURRENCE_REPEAT, RECURRENCE_PATTERN = 2, 3

CorrelationLevel = Literal["critical", "high", "medium", "low", "none", "unknown"]


@dataclass
class CorrelationRisk:
    exposure: CorrelationLevel
    recurrence: CorrelationLevel
    impact: CorrelationLevel
    reasons: list[str]


def organizational_scope(systems: int, environments: list[str], assignees: list[str]) -> str:
    """One line that says how far the indicator reaches inside the organization."""
    if systems == 0 and not environments:
        return "no internal footprint found"
    where = f"{len(environments)} environment(s): {', '.join(environments)}" if environments else "no SOAR case"
    teams = f"; handled by {', '.join(assignees)}" if assignees else ""
    spread = "one system" if systems == 1 else f"{systems} systems"
    return f"{spread} across {where}{teams}"


def _is_open(status: str | None) -> bool:
    return (status or "").lower() not in ("closed", "close", "resolved")


def correlation_risk(
    cases: list[tuple[str | None, str | None]] | None,
    related_alerts: int | None,
    affected_systems: int | None,
) -> CorrelationRisk:
    """Exposure, recurrence and business impact from related cases (status, priority), alerts and systems.

    * exposure: critical when an open case of high/critical priority exists and the indicator spread to more
      than WIDE_SPREAD_SYSTEMS systems; high for such a case or such a spread; medium for any related case or
      alert; low for events only (systems seen, nothing raised); none when nothing was found.
    * recurrence: from the number of related cases in the window: >= RECURRENCE_PATTERN high, >= RECURRENCE_REPEAT
      medium, 1 low, 0 none.
    * business impact: from the highest priority among related cases (critical/high/medium/low), raised one step
      when the spread is wide; none without cases.
    Any input that failed makes the levels it feeds "unknown", never low.
    """
    reasons: list[str] = []
    if cases is None:
        reasons.append("SOAR cases could not be read: recurrence and business impact are unknown")
    open_urgent = any(_is_open(s) and PRIORITY_RANK.get(p or "", 0) >= 4 for s, p in cases or [])
    wide = affected_systems is not None and affected_systems > WIDE_SPREAD_SYSTEMS
    if cases is None and (related_alerts is None or affected_systems is None):
        exposure: CorrelationLevel = "unknown"
    elif open_urgent and wide:
        exposure = "critical"
        reasons.append(f"open high-priority case and {affected_systems} systems involved")
    elif open_urgent or wide:
        exposure = "high"
        reasons.append("open high-priority case" if open_urgent else f"{affected_systems} systems involved")
    elif cases or related_alerts:
        exposure = "medium"
        reasons.append(f"{len(cases or [])} related case(s), {related_alerts or 0} related alert(s)")
    elif affected_systems:
        exposure = "low"
        reasons.append(f"seen on {affected_systems} system(s) with no case or alert")
    elif cases is None or related_alerts is None or affected_systems is None:
        exposure = "unknown"
        reasons.append("nothing found, but part of the evidence could not be read")
    else:
        exposure = "none"
        reasons.append("no related case, alert or event")

    if cases is None:
        recurrence: CorrelationLevel = "unknown"
        impact: CorrelationLevel = "unknown"
    else:
        count = len(cases)
        recurrence = ("high" if count >= RECURRENCE_PATTERN else "medium" if count >= RECURRENCE_REPEAT
                      else "low" if count == 1 else "none")
        if count:
            reasons.append(f"{count} related case(s) in the window: recurrence {recurrence}")
        top = max((PRIORITY_RANK.get(p or "", 0) for _, p in cases), default=-1)
        levels: list[CorrelationLevel] = ["low", "low", "low", "medium", "high", "critical"]
        if top < 0:
            impact = "none"
        else:
            step = min(len(levels) - 1, top + (1 if wide else 0))
            impact = levels[step]
            reasons.append(f"highest case priority rank {top}{' raised for wide spread' if wide else ''}")
    return CorrelationRisk(exposure, recurrence, impact, reasons)
