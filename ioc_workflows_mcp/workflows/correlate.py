"""The correlate workflow: has this indicator touched the organization, where, and how often.

SOAR (cases in the ``correlation_scope`` window). The real server has no case filter, so:

1. ``search_entity(term=value)`` first: SOAR's entity index says how many cases carry the indicator as an
   entity. Zero means no case needs an entity check; N means the checks can stop once N are found.
2. ``list_cases`` pages, newest first, until a page lies wholly before the window.
3. For each case in the window: its title and description are searched for the indicator (refanged,
   case-insensitive), and its entities (alert group identifiers, then the entities of those groups) are
   compared with the normalized indicator. A URL also matches its host. Closed cases' entities are cached.

SIEM (``lookback_days``): the entity summary names the rules that fired on the entity, the open alerts in
the window are kept when their rule is one of those, and a UDM event search gives the affected systems
and the event types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from ioc_workflows_mcp import scoring
from ioc_workflows_mcp.indicator import Indicator, IndicatorError
from ioc_workflows_mcp.models import ErrorItem, SectionInfo, Status, data_mode_note
from ioc_workflows_mcp.models.correlate import (
    CaseCorrelations,
    CorrelateResult,
    MatchedCase,
    MatchReason,
    PatternAnalysis,
    RelatedAlert,
    RiskAssessment,
    SearchStats,
)
from ioc_workflows_mcp.upstream.base import CallTrace, aggregate, cap_untrusted
from ioc_workflows_mcp.upstream.pool import UpstreamFailure
from ioc_workflows_mcp.upstream.siem import AlertBlock, EntitySummary, UdmEvents, affected_systems
from ioc_workflows_mcp.upstream.soar import CasePage, SoarCase, SoarEntity
from ioc_workflows_mcp.workflows.enrich import indicator_info
from ioc_workflows_mcp.workflows.sources import Sources

SCOPE_DAYS = {"recent": 30, "extended": 90, "comprehensive": 365}
# Entity checks of one page run together, at most this many at a time (the pool caps the upstream too).
CASE_CHECK_CONCURRENCY = 8
# Security alerts asked for in the window; the text lists the newest first.
ALERT_LIMIT = 200

_GROUP_SUFFIX = re.compile(r"_[0-9a-f]{6,}$", re.IGNORECASE)
_DEFANG_IN_TEXT = [
    (re.compile(r"[\[\(\{]\s*(?:\.|dot)\s*[\]\)\}]", re.IGNORECASE), "."),
    (re.compile(r"\bh(?:xx|\*\*)p(s?)(?=[:\[])", re.IGNORECASE), r"http\1"),
    (re.compile(r"[\[\(\{]\s*:\s*[\]\)\}]"), ":"),
    (re.compile(r"[\[\(\{]\s*://\s*[\]\)\}]"), "://"),
]


def scope_days(scope: str) -> int:
    try:
        return SCOPE_DAYS[scope]
    except KeyError:
        raise ValueError(f"correlation_scope must be one of {', '.join(SCOPE_DAYS)}, not {scope!r}") from None


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def text_mention(text: str, indicator: Indicator) -> MatchReason | None:
    """Does free text (a case title or description) name the indicator? Refangs bracketed dots first."""
    if not text:
        return None
    lowered = text.lower()
    refanged = lowered
    for pattern, replacement in _DEFANG_IN_TEXT:
        refanged = pattern.sub(replacement, refanged)
    needle = indicator.value.lower()
    pattern = re.compile(r"(?<![a-z0-9\-.])" + re.escape(needle) + r"(?![a-z0-9\-]|\.[a-z0-9])")
    for candidate, how in ((lowered, "text_mention"), (refanged, "text_mention_defanged")):
        found = pattern.search(candidate)
        if found:
            start = max(0, found.start() - 20)
            return MatchReason(how=how, detail=cap_untrusted(text[start : found.end() + 20], 120) or "")
    return None


class EntityMatcher:
    """Compares SOAR entity identifiers with the indicator, normalizing each identifier once."""

    def __init__(self, indicator: Indicator, aliases: frozenset[str] = frozenset()):
        self.indicator = indicator
        self.values = {indicator.value.lower(), *(alias.lower() for alias in aliases)}
        self.host = indicator.host.lower() if indicator.family == "url" and indicator.host else None
        self.domain = indicator.value.lower() if indicator.family == "domain" else None
        self._seen: dict[str, tuple[str, str | None] | None] = {}

    def _normalized(self, identifier: str) -> tuple[str, str | None] | None:
        """(normalized value, host if it is a URL), parsed once per identifier."""
        if identifier not in self._seen:
            try:
                parsed = Indicator.parse(identifier)
            except IndicatorError:
                self._seen[identifier] = None
            else:
                host = parsed.host.lower() if parsed.family == "url" and parsed.host else None
                self._seen[identifier] = (parsed.value.lower(), host)
        return self._seen[identifier]

    def match(self, entity: SoarEntity) -> MatchReason | None:
        normalized = self._normalized(entity.identifier)
        if normalized is None:
            return None
        value, url_host = normalized
        detail = f"{entity.entity_type or 'entity'} {entity.identifier}"
        if value in self.values:
            return MatchReason(how="entity", detail=detail)
        if self.host and value == self.host:
            return MatchReason(how="url_host_entity", detail=detail)
        if self.domain and url_host == self.domain:
            return MatchReason(how="url_on_domain_entity", detail=detail)
        return None


@dataclass
class _CaseScan:
    matched: list[MatchedCase] = field(default_factory=list)
    entities: list[SoarEntity] = field(default_factory=list)
    pages: int = 0
    seen: int = 0
    in_window: int = 0
    checked: int = 0
    from_cache: int = 0
    expected: int | None = None
    narrowed: bool = False
    stopped_early: bool = False
    status: Status = Status.OK
    reason: str | None = None


def _rules_of(groups: list[str]) -> list[str]:
    """Alert group identifiers are the rule name plus a hash suffix (``outbound_c2_beacon_5f2a...``)."""
    return sorted({_GROUP_SUFFIX.sub("", group) for group in groups if group})


async def _scan_cases(
    indicator: Indicator,
    sources: Sources,
    window_start: datetime,
    trace: CallTrace,
    aliases: frozenset[str],
    narrow: bool,
) -> _CaseScan:
    soar = sources.soar
    scan = _CaseScan()
    matcher = EntityMatcher(indicator, aliases)
    case_cache = sources.case_entities

    async def search() -> None:
        try:
            hits = await soar.search_entity(indicator.value, trace)
        except UpstreamFailure as failure:
            scan.reason = f"entity search failed ({failure.message}); every case in the window was checked"
        else:
            relevant = [hit for hit in hits if matcher.match(SoarEntity(hit.identifier, hit.entity_type, ""))]
            scan.expected = sum(hit.cases_count for hit in relevant)
            scan.narrowed = True

    pages: dict[str | None, CasePage | UpstreamFailure] = {}

    async def load(token: str | None) -> None:
        """One page of cases; a failure is kept as the page's answer, to be reported where it is read."""
        try:
            pages[token] = await soar.list_cases(token, trace)
        except UpstreamFailure as failure:
            pages[token] = failure

    # The entity search and the first page are independent: one round trip for both.
    async with anyio.create_task_group() as tg:
        if narrow:
            tg.start_soon(search)
        tg.start_soon(load, None)

    limiter = anyio.CapacityLimiter(CASE_CHECK_CONCURRENCY)
    entity_matches = 0

    async def check(case: SoarCase, out: dict[str, tuple[list[str], list[SoarEntity]]]) -> None:
        async with limiter:
            cached = case_cache.get(case.id) if case.closed else None
            if cached is not None:
                groups, entities = cached
                scan.from_cache += 1
            else:
                groups = await soar.alert_groups(case.id, trace)
                entities = await soar.entities(case.id, groups, trace)
                scan.checked += 1
                if case.closed:
                    case_cache[case.id] = (groups, entities)
        out[case.id] = (groups, entities)

    token: str | None = None
    while True:
        page = pages.pop(token)
        if isinstance(page, UpstreamFailure):
            scan.status, scan.reason = page.status, f"list_cases failed on page {scan.pages + 1}: {page.message}"
            return scan
        scan.pages += 1
        scan.seen += len(page.cases)
        window = [case for case in page.cases if (_time(case.created) or window_start) >= window_start]
        scan.in_window += len(window)
        older = [case for case in page.cases if (_time(case.created) or window_start) < window_start]
        # Newest first: a page wholly older than the window is the last one read. Otherwise the next page
        # is needed whatever this one holds, so it loads while this page's cases are checked.
        token = page.next_token
        last = not token or (bool(page.cases) and len(older) == len(page.cases))
        need_entities = not scan.narrowed or (scan.expected or 0) > entity_matches
        details: dict[str, tuple[list[str], list[SoarEntity]]] = {}
        try:
            async with anyio.create_task_group() as tg:
                if not last:
                    tg.start_soon(load, token)
                if need_entities:
                    for case in window:
                        tg.start_soon(check, case, details)
        except* UpstreamFailure as group:
            failure = group.exceptions[0]
            assert isinstance(failure, UpstreamFailure)
            scan.status = Status.DEGRADED
            scan.reason = f"entity checks failed for some cases: {failure.message}"
        if window and not need_entities:
            scan.stopped_early = True
        for case in window:
            reasons: list[MatchReason] = []
            groups, entities = details.get(case.id, ([], []))
            entity_reason = next((r for r in (matcher.match(e) for e in entities) if r), None)
            if entity_reason:
                reasons.append(entity_reason)
                entity_matches += 1
            mention = text_mention(case.title, indicator) or text_mention(case.description, indicator)
            if mention:
                reasons.append(mention)
            if reasons:
                scan.entities.extend(entities)
                scan.matched.append(
                    MatchedCase(
                        case_id=case.id,
                        untrusted_title=cap_untrusted(case.title, 200) or "",
                        status=case.status,
                        priority=case.priority,
                        environment=case.environment,
                        assignee=case.assignee,
                        created=case.created,
                        updated=case.updated,
                        alert_rules=_rules_of(groups),
                        matched_by=reasons,
                    )
                )
        if last:
            break
    return scan


@dataclass
class _Siem:
    summary: EntitySummary | None = None
    alerts: list[AlertBlock] = field(default_factory=list)
    events: UdmEvents | None = None
    failures: list[tuple[str, UpstreamFailure]] = field(default_factory=list)


async def _siem(indicator: Indicator, sources: Sources, hours_back: int, trace: CallTrace) -> _Siem:
    siem = sources.siem
    out = _Siem()

    async def entity() -> None:
        try:
            out.summary = await siem.entity_summary(indicator, hours_back, trace)
        except UpstreamFailure as failure:
            out.failures.append(("lookup_entity", failure))

    async def alerts() -> None:
        try:
            out.alerts = await siem.security_alerts(hours_back, ALERT_LIMIT, trace)
        except UpstreamFailure as failure:
            out.failures.append(("get_security_alerts", failure))

    async def events() -> None:
        try:
            out.events = await siem.udm_events(indicator, hours_back, sources.settings.udm_event_limit, trace)
        except UpstreamFailure as failure:
            out.failures.append(("search_udm", failure))

    async with anyio.create_task_group() as tg:
        tg.start_soon(entity)
        tg.start_soon(alerts)
        tg.start_soon(events)
    return out


def _event_patterns(events: UdmEvents | None) -> list[str]:
    """UDM event types, and MITRE tactics/techniques when the events' security results carry them."""
    found: set[str] = set()
    for event in events.events if events else []:
        udm: dict[str, Any] = event.get("udm") if isinstance(event.get("udm"), dict) else event
        metadata = udm.get("metadata") if isinstance(udm.get("metadata"), dict) else {}
        if metadata.get("eventType"):
            found.add(f"event:{metadata['eventType']}")
        for result in udm.get("securityResult") or udm.get("security_result") or []:
            if not isinstance(result, dict):
                continue
            attack = result.get("attackDetails") if isinstance(result.get("attackDetails"), dict) else {}
            for key, prefix in (("tactics", "mitre-tactic"), ("techniques", "mitre-technique")):
                for item in attack.get(key) or []:
                    if isinstance(item, dict) and (item.get("id") or item.get("name")):
                        label = " ".join(str(part) for part in (item.get("id"), item.get("name")) if part)
                        found.add(f"{prefix}:{label}")
    return sorted(found)


async def file_aliases(indicator: Indicator, sources: Sources, trace: CallTrace) -> frozenset[str]:
    """A file's other hashes from its GTI report (one call, usually already in the session cache), so a
    case that records the md5 matches a sha256 indicator. Empty for other types, when policy keeps the
    indicator from threat intelligence, or when GTI cannot say."""
    if indicator.family != "file" or not indicator.external_ti_allowed:
        return frozenset()
    try:
        status, report, _ = await sources.gti.report(indicator, trace)
    except UpstreamFailure:
        return frozenset()
    if status is not Status.OK or report is None:
        return frozenset()
    hashes = (report.attributes.get(key) for key in ("md5", "sha1", "sha256"))
    return frozenset(value.lower() for value in hashes if isinstance(value, str) and value) - {indicator.value}


async def correlate(
    indicator: Indicator,
    sources: Sources,
    correlation_scope: str = "recent",
    lookback_days: int = 30,
    *,
    now: datetime | None = None,
    aliases: frozenset[str] = frozenset(),
    narrow: bool = True,
) -> CorrelateResult:
    """Run the correlate workflow. Never raises for upstream trouble: failures become section statuses."""
    window_days = scope_days(correlation_scope)
    now = now or datetime.now(UTC)
    window_start = now - timedelta(days=window_days)
    trace = CallTrace()
    scan = _CaseScan()
    siem = _Siem()

    async def run_cases() -> None:
        nonlocal scan
        hashes = aliases or await file_aliases(indicator, sources, trace)
        scan = await _scan_cases(indicator, sources, window_start, trace, hashes, narrow)

    async def run_siem() -> None:
        nonlocal siem
        siem = await _siem(indicator, sources, lookback_days * 24, trace)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_cases)
        tg.start_soon(run_siem)

    errors: list[ErrorItem] = []
    # The case section's provenance: the SOAR calls, and the GTI report that gave a file's other hashes.
    soar_calls = aggregate([call for call in trace.calls if call.upstream in ("soar", "gti")])
    siem_calls = aggregate([call for call in trace.calls if call.upstream == "secops"])

    # Cases.
    matched = sorted(scan.matched, key=lambda case: _time(case.created) or now, reverse=True)
    cases_failed = scan.status.failed
    if cases_failed:
        errors.append(
            ErrorItem(
                section="case_correlations",
                upstream="soar",
                status=scan.status,
                message=scan.reason or scan.status.value,
            )
        )
        nulls = {
            name: f"{scan.status.value}: {scan.reason}"
            for name in ("total_related_cases", "first_occurrence", "most_recent")
        }
        cases = CaseCorrelations(
            total_related_cases=None,
            case_ids=[],
            first_occurrence=None,
            most_recent=None,
            section=SectionInfo(status=scan.status, reason=scan.reason, null_fields=nulls, provenance=soar_calls),
        )
    else:
        created = [t for t in (_time(c.created) for c in matched) if t]
        updated = [t for t in (_time(c.updated or c.created) for c in matched) if t]
        reason = f"{len(matched)} of {scan.in_window} cases in the last {window_days} days involve it" + (
            f"; {scan.reason}" if scan.reason else ""
        )
        nulls = (
            {}
            if matched
            else {"first_occurrence": "no related case in the window", "most_recent": "no related case in the window"}
        )
        if scan.status is Status.DEGRADED:
            errors.append(
                ErrorItem(section="case_correlations", upstream="soar", status=scan.status, message=scan.reason or "")
            )
        cases = CaseCorrelations(
            total_related_cases=len(matched),
            case_ids=[case.case_id for case in matched],
            first_occurrence=min(created).strftime("%Y-%m-%dT%H:%M:%SZ") if created else None,
            most_recent=max(updated).strftime("%Y-%m-%dT%H:%M:%SZ") if updated else None,
            section=SectionInfo(
                status=scan.status if matched or scan.status is not Status.OK else Status.OK,
                reason=reason,
                null_fields=nulls,
                provenance=soar_calls,
            ),
        )

    # SIEM.
    siem_failed = {tool: failure for tool, failure in siem.failures}
    for tool, failure in siem.failures:
        errors.append(
            ErrorItem(
                section="pattern_analysis",
                upstream="secops",
                status=failure.status,
                message=f"{tool}: {failure.message}",
            )
        )
    entity_rules = set(siem.summary.alerts) if siem.summary else set()
    related_alerts = [
        RelatedAlert(rule=a.rule, created=a.created, status=a.status, severity=a.severity, case=a.case)
        for a in siem.alerts
        if a.rule in entity_rules
    ]
    systems = set(affected_systems(siem.events.events, indicator, aliases) if siem.events else [])
    for entity in scan.entities:
        if (entity.entity_type or "").upper() == "HOSTNAME" and entity.internal:
            systems.add(entity.identifier.lower())
    systems_sorted = sorted(systems, key=str.lower)
    patterns = sorted(
        {*entity_rules, *(rule for case in matched for rule in case.alert_rules), *_event_patterns(siem.events)}
    )
    environments = sorted({case.environment for case in matched if case.environment})
    assignees = sorted({case.assignee for case in matched if case.assignee})
    scope_text = scoring.organizational_scope(len(systems_sorted), environments, assignees)
    missing = [f"{tool} {failure.status.value}" for tool, failure in siem_failed.items()]
    if cases_failed:
        missing.append(f"SOAR cases {scan.status.value}")
    if not missing:
        pattern_status, pattern_reason = Status.OK, "from SOAR cases, SIEM alerts on the entity and UDM events"
    else:
        everything_failed = len(siem_failed) == 3 and cases_failed
        pattern_status = Status.UNAVAILABLE if everything_failed else Status.DEGRADED
        pattern_reason = "partial: " + "; ".join(missing)
    systems_known = "search_udm" not in siem_failed and not cases_failed
    pattern = PatternAnalysis(
        attack_patterns=patterns,
        affected_systems_count=len(systems_sorted) if systems_known else None,
        organizational_scope=scope_text if systems_known else None,
        environments=environments,
        assignees=assignees,
        section=SectionInfo(
            status=pattern_status,
            reason=pattern_reason,
            null_fields={}
            if systems_known
            else {
                "affected_systems_count": "the UDM event search or the SOAR case scan failed",
                "organizational_scope": "the UDM event search or the SOAR case scan failed",
            },
            provenance=siem_calls,
        ),
    )

    risk = scoring.correlation_risk(
        cases=None if cases_failed else [(c.status, c.priority) for c in matched],
        related_alerts=None if siem_failed.keys() & {"lookup_entity", "get_security_alerts"} else len(related_alerts),
        affected_systems=len(systems_sorted) if systems_known else None,
        known_benign=indicator.known_benign,
    )
    result = CorrelateResult(
        data_mode=sources.data_mode,
        indicator=indicator_info(indicator),
        correlation_scope=correlation_scope,  # type: ignore[arg-type]
        case_window_days=window_days,
        lookback_days=lookback_days,
        case_correlations=cases,
        pattern_analysis=pattern,
        risk_assessment=RiskAssessment(
            exposure_level=risk.exposure,
            recurrence_risk=risk.recurrence,
            business_impact=risk.impact,
            reasons=risk.reasons,
        ),
        matched_cases=matched,
        affected_systems=systems_sorted,
        related_alerts=related_alerts,
        search_stats=SearchStats(
            pages_read=scan.pages,
            cases_seen=scan.seen,
            cases_in_window=scan.in_window,
            cases_entity_checked=scan.checked,
            cases_from_cache=scan.from_cache,
            narrowed_by_entity_search=scan.narrowed,
            expected_cases=scan.expected,
            stopped_early=scan.stopped_early,
        ),
        errors=errors,
        summary="",
    )
    result.summary = _summary(result)
    return result


def some(items: list[str], shown: int = 5) -> str:
    """The first ``shown`` items, and how many more there are: a summary never drops items silently."""
    more = len(items) - shown
    return ", ".join(items[:shown]) + (f" and {more} more" if more > 0 else "")


def _summary(result: CorrelateResult) -> str:
    cases, pattern, risk = result.case_correlations, result.pattern_analysis, result.risk_assessment
    parts = [
        f"{result.indicator.type} {result.indicator.value}: exposure {risk.exposure_level}, "
        f"recurrence {risk.recurrence_risk}, business impact {risk.business_impact}."
    ]
    if cases.total_related_cases is None:
        parts.append(f"SOAR cases: FAILED, {cases.section.status.value} ({cases.section.reason}); exposure unknown.")
    else:
        parts.append(
            f"SOAR: {cases.total_related_cases} related case(s) in the last {result.case_window_days} days"
            + (f" ({some(cases.case_ids)})" if cases.case_ids else "")
            + "."
        )
    parts.append(
        f"SIEM: {len(result.related_alerts)} related open alert(s), "
        f"{pattern.affected_systems_count if pattern.affected_systems_count is not None else '?'} "
        f"affected system(s) in the last {result.lookback_days} days."
    )
    if result.errors:
        parts.append("Partial result: " + "; ".join(f"{e.section} {e.status.value}" for e in result.errors) + ".")
    if result.data_mode != "live":
        parts.append(data_mode_note(result.data_mode))
    return " ".join(parts)
