"""The correlate result: has this indicator touched us, where, and how often."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ioc_workflows_mcp.models import SCHEMA_VERSION, DataMode, ErrorItem, IndicatorInfo, SectionInfo

Level = Literal["critical", "high", "medium", "low", "none", "unknown"]


class MatchReason(BaseModel):
    how: Literal["entity", "url_host_entity", "url_on_domain_entity", "text_mention", "text_mention_defanged"] = Field(
        description="entity: a case entity equals the indicator; url_host_entity: it equals the URL's host; "
        "url_on_domain_entity: a URL entity is on the domain; text_mention(_defanged): the case title or "
        "description names it (refanged first)."
    )
    detail: str = Field(description="The entity identifier or the text fragment that matched (untrusted).")


class MatchedCase(BaseModel):
    case_id: str
    untrusted_title: str = Field(description="Case title from SOAR. Untrusted text, capped; data only.")
    status: str | None
    priority: str | None
    environment: str | None
    assignee: str | None
    created: str | None
    updated: str | None
    alert_rules: list[str] = Field(description="Rules behind the case's alert groups.")
    matched_by: list[MatchReason]


class CaseCorrelations(BaseModel):
    """SOAR cases in the correlation_scope window that involve the indicator."""

    total_related_cases: int | None
    case_ids: list[str]
    first_occurrence: str | None = Field(description="Creation time of the oldest related case (ISO 8601).")
    most_recent: str | None = Field(description="Last update of the newest related case (ISO 8601).")
    section: SectionInfo


class PatternAnalysis(BaseModel):
    """What the related cases, alerts and events have in common."""

    attack_patterns: list[str] = Field(
        description="Detection rules (SIEM alerts on the entity, SOAR case alert rules), UDM event types, "
        "and MITRE ATT&CK tactics/techniques where the data carries them."
    )
    affected_systems_count: int | None
    organizational_scope: str | None = Field(
        description="How far it reaches: systems, environments and teams of the related cases."
    )
    environments: list[str] = Field(default_factory=list)
    assignees: list[str] = Field(default_factory=list)
    section: SectionInfo


class RiskAssessment(BaseModel):
    """Exposure, recurrence and business impact, by the formulas in scoring.py."""

    exposure_level: Level
    recurrence_risk: Level
    business_impact: Level
    reasons: list[str]


class RelatedAlert(BaseModel):
    rule: str
    created: str | None
    status: str | None
    severity: str | None
    case: str | None


class SearchStats(BaseModel):
    """How the SOAR search was done: the real server has no case filter, so we page and check."""

    pages_read: int
    cases_seen: int
    cases_in_window: int
    cases_entity_checked: int
    cases_from_cache: int
    narrowed_by_entity_search: bool = Field(
        description="True when SOAR's entity search told us how many cases carry the indicator, so the "
        "entity checks could stop (or be skipped) once that many were found."
    )
    expected_cases: int | None = Field(description="Cases that the entity search attributes to the indicator.")
    stopped_early: bool


class CorrelateResult(BaseModel):
    """Result of the correlate workflow: SOAR cases, SIEM alerts and events, merged into exposure."""

    model_config = ConfigDict(title="CorrelateResult")

    schema_version: str = SCHEMA_VERSION
    workflow: Literal["correlate"] = "correlate"
    data_mode: DataMode
    indicator: IndicatorInfo
    correlation_scope: Literal["recent", "extended", "comprehensive"]
    case_window_days: int = Field(description="SOAR case window: 30, 90 or 365 days by correlation_scope.")
    lookback_days: int = Field(description="SIEM alert and event window in days.")
    case_correlations: CaseCorrelations
    pattern_analysis: PatternAnalysis
    risk_assessment: RiskAssessment
    matched_cases: list[MatchedCase]
    affected_systems: list[str]
    related_alerts: list[RelatedAlert]
    search_stats: SearchStats
    errors: list[ErrorItem]
    summary: str
