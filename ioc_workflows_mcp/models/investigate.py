"""The master result: what ``analyze_ioc`` and ``investigate_ioc`` return.

One shape for every analysis type, so a host can read any of them the same way: the workflow sections
that ran are filled (``enrichment``, ``pivot``, ``correlation``), the others are null. The full chain also
says what it decided (``chain``) and merges the sections into one threat and exposure assessment.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ioc_workflows_mcp.models import SCHEMA_VERSION, DataMode, EnrichResult, ErrorItem, IndicatorInfo
from ioc_workflows_mcp.models.correlate import CorrelateResult
from ioc_workflows_mcp.models.pivot import PivotResult

Level = Literal["critical", "high", "medium", "low", "none", "unknown"]


class RelatedCorrelation(BaseModel):
    """Correlation of one significant pivot finding with the organization's cases and alerts."""

    value: str
    type: str
    why_chosen: str = Field(description="Why this finding was correlated (verdict, score, relationship).")
    total_related_cases: int | None
    case_ids: list[str]
    exposure_level: Level
    affected_systems: list[str]
    status: str = Field(description="ok, or the status of the failed part.")


class ChainDecision(BaseModel):
    """What the chain did and why."""

    pivot: Literal["ran", "skipped"]
    pivot_reason: str = Field(
        description="The enrichment risk against the documented threshold, or the caller's choice."
    )
    pivot_if: Literal["high_risk", "always", "never"]
    related_correlated: list[str] = Field(description="Pivot findings correlated beside the indicator itself.")
    related_budget: int = Field(description="At most this many pivot findings are correlated.")


class CombinedAssessment(BaseModel):
    """Threat (what it is) and exposure (whether it touched us) merged into one priority."""

    threat_level: Level = Field(description="From the enrichment's risk, raised by pivot attribution.")
    exposure_level: Level = Field(description="Highest exposure of the indicator and its correlated findings.")
    priority: Literal["P1", "P2", "P3", "P4", "unknown"] = Field(
        description="P1 act now (high threat and exposed), P2 high threat or exposure, P3 medium, P4 low; "
        "scoring.combined_priority."
    )
    verdict: str = Field(description="The enrichment verdict (malicious, suspicious, clean, unknown).")
    drivers: list[str] = Field(description="The findings that drove the assessment, strongest first.")


class AnalysisResult(BaseModel):
    """Result of analyze_ioc / investigate_ioc: the workflow sections that ran, merged."""

    model_config = ConfigDict(title="AnalysisResult")

    schema_version: str = SCHEMA_VERSION
    analysis_type: Literal["enrich", "pivot", "correlate", "full"]
    data_mode: DataMode = Field(
        description="offline-fixtures: bundled stand-in data, NOT live intelligence. live: real upstreams."
    )
    indicator: IndicatorInfo
    enrichment: EnrichResult | None = Field(description="The enrich workflow's result, when it ran.")
    pivot: PivotResult | None = Field(description="The pivot workflow's result, when it ran.")
    correlation: CorrelateResult | None = Field(description="The correlate workflow's result, when it ran.")
    related_correlations: list[RelatedCorrelation] = Field(
        default_factory=list, description="Full chain: pivot findings correlated too."
    )
    chain: ChainDecision | None = Field(default=None, description="Full chain: what it decided.")
    combined_assessment: CombinedAssessment | None = Field(default=None, description="Full chain only.")
    errors: list[ErrorItem] = Field(description="Every failed or degraded section of every workflow that ran.")
    summary: str
