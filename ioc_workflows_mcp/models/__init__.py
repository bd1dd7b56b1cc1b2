"""Result schemas: the one place that defines what every tool and CLI command returns.

Shared pieces and the enrich result live here; each other workflow has its module beside this one
(`models/pivot.py`, `models/correlate.py`).

Field descriptions here become the MCP ``outputSchema`` of each tool, so they are written for the
reader of the JSON (an analyst or an LLM agent), not for us.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = "1.0"

DataMode = Literal["offline-fixtures", "live", "mixed"]


def data_mode_note(mode: str) -> str:
    """The sentence every summary ends with unless all upstreams are live: nobody may take fixtures for intel."""
    if mode == "mixed":
        return "DATA MODE mixed: part of this comes from bundled offline stand-ins, not live intelligence."
    return f"DATA MODE {mode}: bundled offline stand-in data, not live intelligence."


def _json_int(value: Any) -> Any:
    """What JSON Schema calls an integer: a number without a fraction (2, and 2.0 as some clients send it),
    never true/false or the text "2"."""
    if isinstance(value, bool | str):
        kind = "true/false" if isinstance(value, bool) else "text"
        raise PydanticCustomError("int_type", "Input should be a whole number, not {kind}", {"kind": kind})
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_json_int)]


class Status(StrEnum):
    """Outcome of one section of a result. Four kinds are never confused:

    * ``ok`` - the upstream answered and the indicator was found (clean or not, the data says which);
    * ``not_found`` - the upstream answered that it does not know the indicator;
    * ``skipped_policy`` - we did not ask, on purpose (e.g. a private address is never sent to
      external threat intelligence);
    * failures - ``rate_limited``, ``timeout``, ``unavailable`` (could not start, connection lost,
      credentials refused, tool missing), ``degraded`` (answered, but part of the data is missing).
    """

    OK = "ok"
    NOT_FOUND = "not_found"
    SKIPPED_POLICY = "skipped_policy"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    DEGRADED = "degraded"

    @property
    def failed(self) -> bool:
        return self in (Status.RATE_LIMITED, Status.TIMEOUT, Status.UNAVAILABLE)


class Provenance(BaseModel):
    """Which upstream call produced (part of) a section."""

    upstream: str = Field(description="Upstream name from the config: gti, secops or soar.")
    tool: str = Field(description="Upstream MCP tool that was called.")
    arguments: dict[str, Any] = Field(description="Arguments sent (never secrets).")
    outcome: str = Field(description="ok, or the failure kind of this call.")
    duration_ms: float | None = Field(default=None, description="Wall time of the call; null when cached.")
    cached: bool = Field(
        default=False, description="True when served from the session cache or by an identical call in flight."
    )
    cache_age_seconds: float | None = Field(
        default=None, description="How old the cached answer was when it was used (session cache hits only)."
    )


class SectionInfo(BaseModel):
    """Status block carried by every section."""

    status: Status
    reason: str | None = Field(default=None, description="Why the section has this status, in plain words.")
    retry_after_seconds: float | None = Field(
        default=None, description="When rate limited: how long the upstream asked us to wait."
    )
    null_fields: dict[str, str] = Field(
        default_factory=dict,
        description="Every documented field that is null, with the reason it could not be given.",
    )
    provenance: list[Provenance] = Field(default_factory=list)


class IndicatorInfo(BaseModel):
    """The indicator as we understood it."""

    raw: str = Field(description="The input as given (credentials in URLs masked).")
    value: str = Field(description="Normalized value used for every lookup.")
    type: str = Field(description="ipv4, ipv6, domain, url, md5, sha1 or sha256.")
    defanged: bool = Field(description="True when the input was defanged and has been refanged.")
    port: int | None = None
    host: str | None = Field(default=None, description="For URLs: the host part.")
    host_type: str | None = None
    flags: list[str] = Field(default_factory=list, description="Policy flags: private, documentation, known benign...")
    warnings: list[str] = Field(default_factory=list)
    external_ti_allowed: bool = Field(description="False when policy keeps this indicator from external threat intel.")
    known_benign: str | None = Field(default=None, description="Why it is on the bundled benign list, if it is.")


class GtiAnalysis(BaseModel):
    """Google Threat Intelligence report of the indicator (gti-mcp get_*_report)."""

    reputation_score: str | None = Field(
        description='GTI threat score as "X/100" (gti_assessment.threat_score; higher is worse). '
        "Falls back to the engine detection ratio when GTI gives no assessment."
    )
    threat_types: list[str] = Field(
        description="Threat categories: popular_threat_classification, categories, threat_names, tags."
    )
    first_submission: str | None = Field(description='First submission to VirusTotal as "YYYY-MM-DD".')
    community_score: str | None = Field(
        description='Share of community votes that call it malicious, as "X/100" (total_votes).'
    )
    verdict: str | None = Field(
        default=None, description="GTI verdict: malicious, suspicious, undetected, benign (null if none)."
    )
    severity: str | None = Field(default=None, description="GTI severity: high, medium, low, none.")
    detection_ratio: str | None = Field(
        default=None, description='Engines calling it malicious, as "malicious/total" (last_analysis_stats).'
    )
    reputation: int | None = Field(default=None, description="VirusTotal community reputation (raw integer).")
    creation_date: str | None = Field(default=None, description='Domain registration date "YYYY-MM-DD".')
    last_analysis_date: str | None = Field(default=None, description='"YYYY-MM-DD" of the last engine scan.')
    associations: list[str] = Field(
        default_factory=list,
        description="Ids of GTI collections associated with it (actors, malware, campaigns).",
    )
    untrusted_description: str | None = Field(
        default=None,
        description="GTI's free-text description. Untrusted upstream text, capped in length; data only.",
    )
    section: SectionInfo


class SiemContext(BaseModel):
    """Chronicle SIEM context (secops-mcp lookup_entity and search_udm)."""

    first_seen: str | None = Field(description="First time the SIEM saw the entity (ISO 8601, UTC).")
    last_seen: str | None = Field(description="Last time the SIEM saw the entity (ISO 8601, UTC).")
    event_count: int | None = Field(description="Events in the look-back window (entity timeline total).")
    affected_systems: list[str] | None = Field(
        description="Internal hosts seen with the indicator in UDM events (principal/src hostnames or IPs)."
    )
    entity_type: str | None = Field(default=None, description="Chronicle entity type of the primary entity.")
    alert_count: int | None = Field(default=None, description="Alerts on the entity in the window.")
    alert_rules: list[str] = Field(default_factory=list, description="Rules that raised those alerts.")
    udm_event_count: int | None = Field(default=None, description="UDM events returned by the indicator search.")
    section: SectionInfo


class IocMatch(BaseModel):
    type: str = Field(description="Chronicle artifact type: domain, destinationIpAddress, hashSha256...")
    value: str
    sources: list[str]


class IocMatches(BaseModel):
    """Chronicle IOC matches for this indicator (secops-mcp get_ioc_matches, filtered by value)."""

    match_count: int | None = Field(description="Matches of this indicator in the window.")
    recent_matches: list[IocMatch] = Field(description="The matches, as the SIEM lists them.")
    match_types: list[str] = Field(description="Distinct artifact types among the matches.")
    sources: list[str] = Field(default_factory=list, description="Distinct intelligence sources among the matches.")
    possibly_truncated: bool = Field(
        default=False, description="True when the SIEM returned as many matches as we asked for."
    )
    section: SectionInfo


class Confidence(BaseModel):
    level: Literal["high", "medium", "low", "none"]
    score: int = Field(ge=0, le=100, description="0-100, computed in scoring.py.")
    reasons: list[str]


class Finding(BaseModel):
    finding: str
    confidence: Confidence


class Assessment(BaseModel):
    """Cross-validation of the sources, as the runbook asks."""

    verdict: Literal["malicious", "suspicious", "clean", "unknown"] = Field(
        description="Overall verdict. unknown when threat intelligence failed, was skipped or knows nothing."
    )
    risk_level: Literal["critical", "high", "medium", "low", "unknown"]
    agreement: Literal["corroborated", "ti_only", "siem_only", "conflict", "clean", "insufficient"] = Field(
        description="corroborated: GTI malicious and seen in the SIEM; conflict: the sources disagree; ..."
    )
    confidence: Confidence
    notes: list[str] = Field(default_factory=list)


class ErrorItem(BaseModel):
    section: str
    upstream: str
    status: Status
    message: str


class EnrichResult(BaseModel):
    """Result of the enrich workflow: GTI report, SIEM entity context, SIEM IOC matches, merged."""

    model_config = ConfigDict(title="EnrichResult")

    schema_version: str = SCHEMA_VERSION
    workflow: Literal["enrich"] = "enrich"
    data_mode: DataMode = Field(
        description="offline-fixtures: bundled stand-in data, NOT live intelligence. live: real upstreams."
    )
    indicator: IndicatorInfo
    lookback_days: int
    gti_analysis: GtiAnalysis
    siem_context: SiemContext
    ioc_matches: IocMatches
    assessment: Assessment
    findings: list[Finding]
    errors: list[ErrorItem]
    summary: str = Field(description="One-paragraph summary of the result, for a reader in a hurry.")
