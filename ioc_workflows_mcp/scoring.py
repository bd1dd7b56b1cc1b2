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
    verdict = _GTI_VERDICTS.get(str(_value(assessment.get("verdict")))) if isinstance(assessment, dict) else None
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
    gti_severity: str | None = None  # high, medium, low, none (gti_assessment.severity), when GTI gives one
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
        # GTI's severity bounds the risk: a malicious-but-low-severity object (a test file such as EICAR, an
        # adware sample) is not a critical incident, however many engines flag it.
        if ev.gti_severity in ("low", "none"):
            risk = "medium"
            notes.append(f"GTI rates its severity {ev.gti_severity}: risk held at medium.")
        elif agreement == "corroborated" and ev.gti_severity != "medium":
            risk = "critical"
        else:
            risk = "high"
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
PRIORITY_RANK = {
    "PriorityUnspecified": 0,
    "PriorityInfo": 1,
    "PriorityLow": 2,
    "PriorityMedium": 3,
    "PriorityHigh": 4,
    "PriorityCritical": 5,
}
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
    known_benign: str | None = None,
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
        recurrence = (
            "high"
            if count >= RECURRENCE_PATTERN
            else "medium"
            if count >= RECURRENCE_REPEAT
            else "low"
            if count == 1
            else "none"
        )
        if count:
            reasons.append(f"{count} related case(s) in the window: recurrence {recurrence}")
        top = max((PRIORITY_RANK.get(p or "", 0) for _, p in cases), default=-1)
        levels: list[CorrelationLevel] = ["low", "low", "low", "medium", "high", "critical"]
        if top < 0:
            impact = "none"
        else:
            step = min(len(levels) - 1, top + (1 if wide else 0))
            impact = levels[step]
            name = next(key for key, rank in PRIORITY_RANK.items() if rank == top)
            reasons.append(
                f"highest related case priority {name}{', raised one step for the wide spread' if wide else ''}"
            )
    if known_benign:
        # Shared, known-benign infrastructure (a public resolver, an empty-file hash) shows up everywhere: its
        # sightings are noise, not exposure (shared case C30). Known levels are held at "low" at most.
        capped = {"critical": "low", "high": "low", "medium": "low"}
        exposure, recurrence, impact = (capped.get(level, level) for level in (exposure, recurrence, impact))  # type: ignore[assignment]
        reasons.append(f"known benign ({known_benign}): its sightings carry low weight")
    return CorrelationRisk(exposure, recurrence, impact, reasons)


# --- pivot ---------------------------------------------------------------------------------------------
#
# Every number the pivot workflow (workflows/pivot.py) computes. The exploration itself is a budgeted,
# best-first breadth-first search (research/peers.md (b)(3)(4)(5)); these are its rules and its scores.

PivotConfidence = tuple[int, Literal["high", "medium", "low", "none"], list[str]]

# Order used by the min_verdict filter and by expansion priority. unknown is below clean for the filter
# (no evidence never passes a "at least X" filter) but is expanded before clean (it may be anything).
PIVOT_VERDICT_ORDER: dict[str, int] = {"unknown": 0, "clean": 1, "suspicious": 2, "malicious": 3}
_EXPANSION_RANK: dict[str | None, int] = {"malicious": 0, "suspicious": 1, "unknown": 2, None: 2, "clean": 3}

# GTI tags that mark shared infrastructure on an IP or domain: a CDN edge, a public resolver or a sinkhole
# relates to everything behind it, so a pivot never expands through them (peers.md (b)(3)).
SHARED_INFRA_TAGS = frozenset({"cdn", "dns-resolver", "sinkhole"})

# A relationship list is a *hub fan-out*, and its targets are kept as leaves, when either
#  * it returned HUB_FANOUT_ABSOLUTE items or more, whatever the source's verdict: VirusTotal stops
#    subdomain lists at 100 (upstreams.md, C28), MISP caps correlations at 100 (peers.md §c), and a node
#    with that many relations is infrastructure many parties share (peers.md (b)(5), XSOAR scarcity); or
#  * it filled the limit we asked for (so more exist) on a source that is not malicious or suspicious:
#    a benign-ish node with that many relations is a popular site or shared host (example.com's 5,000
#    communicating files, C29), not attacker infrastructure.
HUB_FANOUT_ABSOLUTE = 100

# Recency of a related entity, for max_age_days: the first of these that is set. A resolution's own date
# comes first (when the domain last pointed at the IP), then the last time GTI saw the object submitted,
# then its last analysis.
PIVOT_RECENCY_FIELDS = ("date", "last_submission_date", "last_analysis_date", "last_modification_date")

# Activity dates that make the campaign timeline: when samples and URLs were first and last submitted,
# when a domain was registered, when a resolution was seen.
TIMELINE_FIELDS = ("first_submission_date", "last_submission_date", "creation_date")


def expansion_priority(verdict: str | None, score: int | None) -> tuple[int, int]:
    """Sort key of the best-first search: worse verdict first, then higher threat score."""
    return _EXPANSION_RANK.get(verdict, 2), -(score if score is not None else -1)


def verdict_at_least(verdict: str | None, minimum: str) -> bool:
    return PIVOT_VERDICT_ORDER.get(verdict or "unknown", 0) >= PIVOT_VERDICT_ORDER[minimum]


def recency_epoch(attributes: dict[str, Any]) -> int | None:
    for name in PIVOT_RECENCY_FIELDS:
        value = attributes.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return int(value)
    return None


def is_hub_fanout(returned: int, limit: int, source_verdict: str | None) -> bool:
    """See HUB_FANOUT_ABSOLUTE."""
    if returned >= HUB_FANOUT_ABSOLUTE:
        return True
    return returned >= limit and source_verdict not in ("malicious", "suspicious")


def evidence_verdict(verdict: str | None, source: str | None) -> str | None:
    """The verdict as evidence for the pivot confidences: "clean" only counts when GTI itself says so
    (gti_assessment); zero engine detections alone is no evidence (fresh attacker infrastructure has none),
    so it counts as unknown."""
    if verdict == "clean" and source != "gti_assessment.verdict":
        return None
    return verdict


def relationship_confidence(
    sets_ok: int, sets_attempted: int, direct_verdicts: list[str | None], cut: bool, truncated: bool
) -> PivotConfidence:
    """How far to trust that the reported relationships are complete and relevant, 0-100:

    ``50 x completeness + 50 x bad_share``, minus 10 when the budget cut the graph and 5 when a list may be
    truncated. completeness = relationship calls that answered / calls attempted. bad_share =
    (malicious + 0.5 x suspicious) / direct relations with a known verdict (0 when none is known), the
    verdicts taken through evidence_verdict.
    """
    reasons: list[str] = []
    if sets_attempted == 0:
        return 0, "none", ["no relationship was fetched"]
    completeness = sets_ok / sets_attempted
    reasons.append(f"{sets_ok}/{sets_attempted} relationship calls answered (+{round(50 * completeness)})")
    known = [v for v in direct_verdicts if v in ("malicious", "suspicious", "clean")]
    bad = sum(1 for v in known if v == "malicious") + SUSPICIOUS_WEIGHT * sum(1 for v in known if v == "suspicious")
    share = bad / len(known) if known else 0.0
    reasons.append(
        f"{bad:g} of {len(known)} direct relations with a verdict are malicious/suspicious (+{round(50 * share)})"
        if known
        else "no direct relation has a verdict (+0)"
    )
    score = 50 * completeness + 50 * share
    if cut:
        score -= 10
        reasons.append("the budget cut the exploration (-10)")
    if truncated:
        score -= 5
        reasons.append("some relationship lists may be truncated (-5)")
    final = max(0, min(100, round(score)))
    return final, confidence_level(final), reasons


ATTRIBUTION_BASE = 40  # one entity associated with the collection
ATTRIBUTION_PER_PATH = 15  # each further independent entity
ATTRIBUTION_PATH_CAP = 85  # paths alone never make certainty
ATTRIBUTION_DIRECT = 10  # the pivoted indicator itself is associated
ATTRIBUTION_AMBIGUOUS = 20  # another collection of the same type is as well supported


def attribution_confidence(paths: int, direct: bool, ambiguous: bool) -> PivotConfidence:
    """Confidence in the best-supported actor/campaign, 0-100: 0 without one; else
    ``min(85, 40 + 15 x (paths - 1)) + 10 if the indicator itself is associated - 20 if ambiguous``."""
    if paths <= 0:
        return 0, "none", ["no threat actor, campaign or malware family is associated"]
    score = min(ATTRIBUTION_PATH_CAP, ATTRIBUTION_BASE + ATTRIBUTION_PER_PATH * (paths - 1))
    reasons = [f"{paths} independent path(s) (+{score})"]
    if direct:
        score += ATTRIBUTION_DIRECT
        reasons.append(f"the indicator itself is associated (+{ATTRIBUTION_DIRECT})")
    if ambiguous:
        score -= ATTRIBUTION_AMBIGUOUS
        reasons.append(f"another collection of the same type is as well supported (-{ATTRIBUTION_AMBIGUOUS})")
    final = max(0, min(100, score))
    return final, confidence_level(final), reasons


def infrastructure_overlap(shared: int, considered: int) -> int:
    """Share of related entities reached from two or more different entities, 0-100:
    ``round(100 x shared / considered)`` (0 when nothing is considered). Converging paths are what tie
    infrastructure together; depth 1 can show none, since every relation there has the one source."""
    return round(100 * shared / considered) if considered else 0


SHARED_LEAF_PENALTY = 10  # each benign/shared-infrastructure neighbour, at most 3 of them


def infrastructure_confidence(infra_verdicts: list[str | None], shared_leaves: int) -> PivotConfidence:
    """How sure the related infrastructure (domains, IPs, URLs) is hostile rather than shared, 0-100:
    ``100 x (malicious + 0.5 x suspicious) / with_verdict - 10 x min(3, benign/shared leaves)``, the
    verdicts taken through evidence_verdict and the benign/shared leaves left out of the ratio (they
    count in the penalty instead)."""
    known = [v for v in infra_verdicts if v in ("malicious", "suspicious", "clean")]
    if not known:
        return 0, "none", ["no related infrastructure has a verdict"]
    bad = sum(1 for v in known if v == "malicious") + SUSPICIOUS_WEIGHT * sum(1 for v in known if v == "suspicious")
    score = 100 * bad / len(known)
    reasons = [f"{bad:g} of {len(known)} related domains/IPs/URLs with a verdict are malicious/suspicious"]
    if shared_leaves:
        penalty = SHARED_LEAF_PENALTY * min(3, shared_leaves)
        score -= penalty
        reasons.append(f"{shared_leaves} benign or shared-infrastructure neighbour(s) (-{penalty})")
    final = max(0, min(100, round(score)))
    return final, confidence_level(final), reasons


def timeline_span(epochs: list[int]) -> tuple[str, str, int] | None:
    """(first, last, days) over the activity dates (TIMELINE_FIELDS and resolution dates); None without."""
    dated = sorted(e for e in epochs if e > 0)
    if not dated:
        return None
    first, last = iso_date(dated[0]), iso_date(dated[-1])
    assert first is not None and last is not None
    return first, last, (dated[-1] - dated[0]) // 86400


# --- investigate (the chain) -------------------------------------------------------------------------

# pivot_if="high_risk" pivots when the enrichment's risk is one of these: a pivot costs many upstream calls
# (and VirusTotal quota), so it is spent on indicators already judged malicious.
PIVOT_RISK_LEVELS = ("critical", "high")
_RANK = {"none": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


@dataclass
class CombinedVerdict:
    threat: CorrelationLevel
    exposure: CorrelationLevel
    priority: Literal["P1", "P2", "P3", "P4", "unknown"]
    drivers: list[str]


def combined_priority(risk_level: str, attribution: tuple[str, str] | None, exposures: list[str]) -> CombinedVerdict:
    """Threat x exposure -> priority.

    * threat = the enrichment's risk level, raised to at least "high" when the pivot attributes the
      indicator to a named actor or campaign with high attribution confidence;
    * exposure = the highest known exposure among the indicator's and its correlated findings'
      correlations ("unknown" only when none is known);
    * priority: P1 when both are high or critical; P2 when either is; P3 when either is medium; P4 when both
      are known and lower; "unknown" when the threat is unknown and nothing raised the exposure.
    """
    drivers: list[str] = []
    threat = risk_level if risk_level in _RANK or risk_level == "unknown" else "unknown"
    if risk_level in ("critical", "high"):
        drivers.append(f"enrichment risk {risk_level}")
    if attribution is not None:
        names, confidence = attribution
        if confidence == "high" and _RANK.get(threat, -1) < _RANK["high"]:
            threat = "high"
        drivers.append(f"attributed to {names} ({confidence} confidence)")
    known = [level for level in exposures if level in _RANK]
    exposure = max(known, key=_RANK.__getitem__) if known else "unknown"
    if exposure in ("critical", "high", "medium"):
        drivers.append(f"exposure {exposure}")
    t, e = _RANK.get(threat, -1), _RANK.get(exposure, -1)
    if t >= 3 and e >= 3:
        priority = "P1"
    elif t >= 3 or e >= 3:
        priority = "P2"
    elif t == 2 or e == 2:
        priority = "P3"
    elif t >= 0 and e >= 0:
        priority = "P4"
    else:
        priority = "unknown"
    return CombinedVerdict(threat, exposure, priority, drivers)  # type: ignore[arg-type]
