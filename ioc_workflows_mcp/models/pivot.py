"""Result schema of the pivot workflow (relationship exploration with campaign attribution).

Field descriptions become the MCP ``outputSchema`` of ``pivot_ioc``; they are written for the reader of
the JSON. Every formula behind a number here is in ``scoring.py`` (section "pivot").
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ioc_workflows_mcp.models import (
    SCHEMA_VERSION,
    Confidence,
    DataMode,
    ErrorItem,
    IndicatorInfo,
    JsonInt,
    SectionInfo,
)

NodeType = Literal["domain", "ip", "file", "url", "collection"]
NodeVerdict = Literal["malicious", "suspicious", "clean", "unknown"]


class PivotBudget(BaseModel):
    """Limits of one pivot. Every field has a default; a caller may set any of them."""

    model_config = ConfigDict(extra="forbid")

    max_calls: JsonInt = Field(
        default=150, ge=1, le=1000, description="Upstream calls in all (reports, relationships, collections)."
    )
    max_entities_per_level: JsonInt = Field(
        default=10, ge=1, le=200, description="Entities expanded (their relationships fetched) in one level."
    )
    max_entities: JsonInt = Field(default=200, ge=1, le=5000, description="Nodes in the graph in all.")
    max_items_per_relationship: JsonInt = Field(
        default=20,
        ge=1,
        le=500,
        description="The `limit` sent with each relationship call: the upstream follows cursors up to it.",
    )


class BudgetUsage(BaseModel):
    limits: PivotBudget
    calls: int = Field(description="Upstream calls this pivot made.")
    shared_calls: int = Field(
        default=0,
        description="Calls answered by the session cache or by an identical call already in flight (not made again).",
    )
    entities_expanded: int = Field(description="Entities whose relationships were fetched.")
    entities_in_graph: int
    per_level: list[dict[str, int]] = Field(
        default_factory=list,
        description="Per level: depth, entities expanded, entities discovered at the next depth.",
    )
    cut: bool = Field(description="True when a limit stopped the exploration before it was complete.")
    cut_reasons: list[str] = Field(default_factory=list, description="Which limit cut what, in plain words.")


class PivotFilters(BaseModel):
    """What is expanded and reported. Items that fail are counted in ``filtered``, never silently dropped."""

    model_config = ConfigDict(extra="forbid")

    min_verdict: Literal["clean", "suspicious", "malicious"] | None = Field(
        default=None,
        description="Keep only related entities at least this bad (clean < suspicious < malicious). "
        "An entity whose verdict is unknown fails this filter.",
    )
    min_score: JsonInt | None = Field(
        default=None, ge=0, le=100, description="Keep only related entities with a threat score at least this."
    )
    max_age_days: JsonInt | None = Field(
        default=None,
        ge=1,
        le=36500,
        description="Keep only related entities seen within this many days (resolution date, last submission "
        "or last analysis, see scoring.PIVOT_RECENCY_FIELDS).",
    )


class PivotNode(BaseModel):
    key: str = Field(description='Graph id: "<type>:<id>", the id as GTI gives it (files: sha256, URLs: sha256 id).')
    type: NodeType
    id: str = Field(description="GTI object id.")
    value: str = Field(description="Readable value: the domain, IP, sha256, URL text, or collection name.")
    depth: int = Field(description="Hops from the pivoted indicator (0 is the indicator).")
    verdict: NodeVerdict | None = Field(default=None, description="Verdict where known (scoring.gti_verdict).")
    verdict_source: str | None = None
    threat_score: int | None = Field(default=None, description="0-100 where known.")
    collection_type: str | None = Field(
        default=None, description="For collections: threat-actor, malware-family, campaign, report..."
    )
    last_seen: str | None = Field(default=None, description='"YYYY-MM-DD" used for the recency filter.')
    expanded: bool = Field(description="True when this node's relationships were fetched.")
    not_expanded_reason: str | None = Field(
        default=None, description="Why it is a leaf: benign/shared infrastructure, policy, hub, depth, budget."
    )
    expansion_status: str | None = Field(
        default=None, description="ok, partial (some relationship calls failed) or failed."
    )


class PivotEdge(BaseModel):
    source: str = Field(description="Node key of the entity whose relationship was fetched.")
    target: str = Field(description="Node key of the related entity.")
    relationship: str = Field(description="GTI relationship name, e.g. resolutions, contacted_domains.")
    date: str | None = Field(default=None, description='"YYYY-MM-DD" of the relation when GTI gives one.')


class RelationshipSet(BaseModel):
    """One relationship call: what came back and whether it may be incomplete."""

    source: str
    relationship: str
    status: str = Field(description="ok, or the failure kind (rate_limited, unavailable, timeout, not_found).")
    reason: str | None = None
    returned: int = Field(description="Items the upstream returned.")
    kept: int = Field(description="Items kept in the graph (after filters and limits).")
    limit: int
    possibly_truncated: bool = Field(
        description="True when the list may be incomplete: it filled the limit, or stopped at a known server "
        "cap (VirusTotal subdomains: 100, no cursor)."
    )
    truncation_reason: str | None = None
    hub: bool = Field(default=False, description="True when this fan-out is a hub: its targets are not expanded.")


class RelatedEntity(BaseModel):
    value: str
    id: str
    verdict: NodeVerdict | None = None
    threat_score: int | None = None
    relationships: list[str] = Field(description="Relationships that link it to the indicator.")
    not_expanded_reason: str | None = None


class DirectRelationships(BaseModel):
    """The indicator's own relationships in GTI (depth 1)."""

    related_domains: list[RelatedEntity]
    related_ips: list[RelatedEntity]
    related_files: list[RelatedEntity]
    related_urls: list[RelatedEntity] = Field(default_factory=list)
    section: SectionInfo


class AttributionCandidate(BaseModel):
    collection_id: str
    collection_type: str = Field(description="threat-actor, campaign, malware-family, report...")
    name: str | None = Field(description="Collection name from GTI; null when it could not be read.")
    paths: int = Field(description="Independent paths: distinct graph entities associated with it.")
    supporting_entities: list[str] = Field(description="Node keys of those entities.")


class InfrastructureOverlap(BaseModel):
    score: int = Field(ge=0, le=100, description="scoring.infrastructure_overlap.")
    shared_entities: list[str] = Field(description="Entities reached from two or more different entities.")
    considered: int = Field(description="Related entities considered (benign and policy leaves excluded).")
    description: str


class TimelineSpan(BaseModel):
    first_seen: str = Field(description='"YYYY-MM-DD", earliest activity date in the graph.')
    last_seen: str
    days: int
    dated_items: int = Field(description="How many dates the span was computed from.")


class CampaignContext(BaseModel):
    """Attribution from the GTI collections reached through associations, and the activity it spans."""

    threat_actor: str | None = Field(
        description="Name of the best-supported threat actor; null when the data supports none (see section)."
    )
    campaign_name: str | None = Field(description="Name of the best-supported campaign; null when none.")
    malware_families: list[str] = Field(default_factory=list, description="Malware families, best supported first.")
    infrastructure_overlap: InfrastructureOverlap
    timeline_span: TimelineSpan | None = Field(description="Activity span; null when no dates were found.")
    candidates: list[AttributionCandidate] = Field(
        default_factory=list, description="Every collection reached, most paths first."
    )
    section: SectionInfo


class ConfidenceAssessment(BaseModel):
    relationship_confidence: Confidence = Field(description="scoring.relationship_confidence.")
    attribution_confidence: Confidence = Field(description="scoring.attribution_confidence.")
    infrastructure_confidence: Confidence = Field(description="scoring.infrastructure_confidence.")


class PivotGraph(BaseModel):
    nodes: list[PivotNode]
    edges: list[PivotEdge]
    relationship_sets: list[RelationshipSet]
    section: SectionInfo


class PivotResult(BaseModel):
    """Result of the pivot workflow: related infrastructure to depth 1-3, and the campaigns behind it."""

    model_config = ConfigDict(title="PivotResult")

    schema_version: str = SCHEMA_VERSION
    workflow: Literal["pivot"] = "pivot"
    data_mode: DataMode = Field(
        description="offline-fixtures: bundled stand-in data, NOT live intelligence. live: real upstreams."
    )
    indicator: IndicatorInfo
    pivot_depth: int
    relationships: dict[str, list[str]] = Field(description="Relationship names fetched per entity type.")
    filters: PivotFilters
    direct_relationships: DirectRelationships
    campaign_context: CampaignContext
    confidence_assessment: ConfidenceAssessment
    graph: PivotGraph
    budget: BudgetUsage
    possibly_truncated: bool = Field(description="True when any relationship list may be incomplete.")
    filtered: dict[str, int] = Field(
        description="Related entities left out by the filters, per reason (distinct entities)."
    )
    errors: list[ErrorItem]
    summary: str = Field(description="One-paragraph summary of the result, for a reader in a hurry.")
