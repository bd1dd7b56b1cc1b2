"""The pivot workflow: the indicator's relationships in GTI, explored breadth first to depth 1-3.

How one pivot runs:

* level 0 is the indicator. Each level takes the entities the previous one discovered, best first
  (malicious, then suspicious, unknown, clean; higher threat score first), up to the budget;
* relationships are fetched with ``descriptors_only=False``, so every related entity comes as its whole
  GTI object, verdict, tags and dates included (``limit`` from the budget; gti-mcp follows ``meta.cursor``
  itself up to it). gti-mcp takes one relationship per call: expanding an entity costs one call per
  relationship asked for;
* the indicator's report goes out with its relationship calls (one round trip; report first when gti has
  a rate limit). Below the indicator, only an entity that came without its own object (reached through a
  DNS resolution, which carries detection counts only) is *vetted* with its report first: one GTI does
  not know, calls benign, or tags as shared infrastructure is kept as a leaf. All calls of a level run at
  once; the pool's per-upstream cap bounds them, and identical calls in flight are made once
  (:mod:`ioc_workflows_mcp.cache`);
* what comes back becomes nodes and edges. A visited set keeps every entity expanded once at most.
  Never expanded, each kept as a leaf with its reason: private/reserved/documentation/special-use values
  (policy), the bundled known-benign list, GTI-benign or shared-infrastructure tagged entities, targets of
  a hub fan-out (``scoring.is_hub_fanout``), collections (they are attribution), and whatever depth or the
  budget leaves unexplored;
* the filters (min verdict, min score, max age) leave related entities out of the graph and count them.

Upstream failures never escape: a failed call marks that relationship set (or that entity's vetting)
with its status, and the rest of the graph stands.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from ioc_workflows_mcp import scoring
from ioc_workflows_mcp.indicator import Indicator, IndicatorError
from ioc_workflows_mcp.models import Confidence, ErrorItem, SectionInfo, Status, data_mode_note
from ioc_workflows_mcp.models.pivot import (
    AttributionCandidate,
    BudgetUsage,
    CampaignContext,
    ConfidenceAssessment,
    DirectRelationships,
    InfrastructureOverlap,
    PivotBudget,
    PivotEdge,
    PivotFilters,
    PivotGraph,
    PivotNode,
    PivotResult,
    RelatedEntity,
    RelationshipSet,
    TimelineSpan,
)
from ioc_workflows_mcp.upstream.base import CallTrace, ordered
from ioc_workflows_mcp.upstream.gti import (
    ALLOWED_RELATIONSHIPS,
    COLLECTION_REPORT_TOOL,
    KNOWN_SERVER_CAPS,
    RELATED_TOOLS,
    REPORT_TOOLS,
    GtiReport,
    RelationshipError,
)
from ioc_workflows_mcp.upstream.pool import UpstreamFailure
from ioc_workflows_mcp.workflows.enrich import indicator_info
from ioc_workflows_mcp.workflows.sources import Sources

MAX_DEPTH = 3

# The runbook's default relationship sets per entity type (issue 4, item 2).
DEFAULT_RELATIONSHIPS: dict[str, tuple[str, ...]] = {
    "domain": ("resolutions", "communicating_files", "downloaded_files", "urls", "subdomains", "associations"),
    "ip": ("resolutions", "communicating_files", "downloaded_files", "urls", "associations"),
    "file": (
        "contacted_domains",
        "contacted_ips",
        "contacted_urls",
        "dropped_files",
        "execution_parents",
        "associations",
    ),
    "url": (
        "contacted_domains",
        "contacted_ips",
        "downloaded_files",
        "last_serving_ip_address",
        "network_location",
        "associations",
    ),
}
_TYPE_WORDS = {
    "domain": "domain",
    "ip": "ip",
    "ip_address": "ip",
    "ipv4": "ip",
    "ipv6": "ip",
    "file": "file",
    "hash": "file",
    "url": "url",
}
_HINTS = {"domain": "domain", "ip": "ip", "file": "hash", "url": "url"}
_COLLECTION_PREFIXES = {
    "threat-actor": "threat-actor",
    "malware": "malware-family",
    "campaign": "campaign",
    "report": "report",
    "software-toolkit": "software-toolkit",
    "vulnerability": "vulnerability",
}
# Why a node is a leaf, by kind; the kinds in _SHARED_KINDS count as benign/shared infrastructure.
_SHARED_KINDS = frozenset({"known_benign", "gti_benign", "shared_tag", "hub"})

Progress = Callable[[float, float | None, str | None], Awaitable[None]]


class PivotArgumentError(ValueError):
    """Bad pivot arguments (depth, relationship names, budget, filters); the message says what to fix."""


def resolve_relationships(relationships: list[str] | dict[str, list[str]] | None) -> dict[str, tuple[str, ...]]:
    """The relationship set per entity type. ``None``: the defaults. A list: each name for every type
    whose GTI tool accepts it. A dict ``{type: [names]}``: exactly those per type (others keep defaults).
    Names gti-mcp does not accept are an error that lists what it does accept."""
    if relationships is None:
        return dict(DEFAULT_RELATIONSHIPS)
    if isinstance(relationships, dict):
        chosen = dict(DEFAULT_RELATIONSHIPS)
        for word, names in relationships.items():
            family = _TYPE_WORDS.get(str(word).strip().lower())
            if family is None:
                raise PivotArgumentError(f"relationships: unknown entity type {word!r}; use domain, ip, file or url")
            names = [str(name).strip() for name in names]
            bad = [name for name in names if name not in ALLOWED_RELATIONSHIPS[family]]
            if bad:
                raise PivotArgumentError(
                    f"relationships: {', '.join(bad)} not accepted by gti-mcp for {family}; accepted: "
                    + ", ".join(ALLOWED_RELATIONSHIPS[family])
                )
            chosen[family] = tuple(dict.fromkeys(names))
        return chosen
    names = [str(name).strip() for name in relationships]
    if not names:
        raise PivotArgumentError("relationships: give at least one relationship name, or omit it for the defaults")
    unknown = [name for name in names if not any(name in allowed for allowed in ALLOWED_RELATIONSHIPS.values())]
    if unknown:
        raise PivotArgumentError(
            f"relationships: {', '.join(unknown)} is not a GTI relationship name gti-mcp accepts; e.g. "
            + ", ".join(sorted(set().union(*DEFAULT_RELATIONSHIPS.values())))
        )
    return {
        family: tuple(name for name in dict.fromkeys(names) if name in ALLOWED_RELATIONSHIPS[family])
        for family in DEFAULT_RELATIONSHIPS
    }


# --------------------------------------------------------------------------------------------------
# The graph while it is built


@dataclass
class _Node:
    key: str
    type: str  # domain, ip, file, url, collection
    id: str
    value: str
    depth: int
    attrs: dict[str, Any] = field(default_factory=dict)
    lookup: str | None = None  # what the GTI tools take: domain, IP, hash or URL text
    edge_date: int | None = None
    verdict: str | None = None
    verdict_source: str | None = None
    score: int | None = None
    reason: str | None = None
    leaf_kind: str | None = None
    expanded: bool = False
    vetted: bool = False
    own_data: bool = False  # its own GTI object came with it (not a resolution's summary): no report needed
    gti_id: str | None = None
    sets_ok: int = 0
    sets_failed: int = 0
    order: int = 0

    def judge(self) -> None:
        """Verdict and score from what GTI gave about it (report or related-object attributes)."""
        if "gti_assessment" in self.attrs or "last_analysis_stats" in self.attrs:
            self.verdict, self.verdict_source = scoring.gti_verdict(self.attrs)
            self.score = scoring.threat_score(self.attrs)[0]

    def leaf(self, kind: str, reason: str) -> None:
        if self.reason is None:
            self.leaf_kind, self.reason = kind, reason

    def recency(self) -> int | None:
        if self.edge_date:
            return self.edge_date
        return scoring.recency_epoch(self.attrs)


@dataclass
class _Run:
    sources: Sources
    trace: CallTrace
    budget: PivotBudget
    progress: Progress | None
    planned: int = 0
    root_calls: int = 0
    done: int = 0
    cut_reasons: list[str] = field(default_factory=list)
    errors: list[ErrorItem] = field(default_factory=list)

    async def report_progress(self, message: str | None = None) -> None:
        if self.progress is None:
            return
        try:
            await self.progress(float(self.done), float(max(self.planned, self.done)) or None, message)
        except Exception:  # a client that went away must not break the pivot
            self.progress = None

    async def gti(self, tool: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        """One gti call (the facade puts the session cache and single-flight in front); progress after it."""
        try:
            value = await fn()
        except BaseException:
            self.done += 1
            raise
        self.done += 1
        await self.report_progress(f"{tool}: {self.done} of {max(self.planned, self.done)} calls done")
        return value

    def usage(self) -> tuple[int, int]:
        """(calls that reached the upstream, calls answered by the session cache or an identical call)."""
        gti = [call for call in self.trace.calls if call.upstream == "gti"]
        shared = sum(1 for call in gti if call.cached)
        return len(gti) - shared, shared


def _failure_of(exc: BaseException) -> tuple[Status, str]:
    if isinstance(exc, UpstreamFailure):
        return exc.status, exc.message
    if isinstance(exc, RelationshipError):
        return exc.status, exc.reason
    return Status.DEGRADED, f"unexpected error: {type(exc).__name__}: {str(exc)[:200]}"


def _entity(
    obj: dict[str, Any], source_type: str
) -> tuple[str, str, str, str | None, dict[str, Any], int | None] | None:
    """(type, id, value, lookup, attributes, edge_date) of a related object; None if it is no entity."""
    kind, oid = str(obj.get("type")), str(obj.get("id"))
    attrs = obj.get("attributes") if isinstance(obj.get("attributes"), dict) else {}
    if kind == "resolution":
        date = attrs.get("date") if isinstance(attrs.get("date"), int) else None
        if source_type == "ip":
            host = attrs.get("host_name")
            stats = attrs.get("host_name_last_analysis_stats")
            if not isinstance(host, str) or not host:
                return None
            host = host.lower().rstrip(".")
            return "domain", host, host, host, ({"last_analysis_stats": stats} if stats else {}), date
        ip = attrs.get("ip_address")
        stats = attrs.get("ip_address_last_analysis_stats")
        if not isinstance(ip, str) or not ip:
            return None
        return "ip", ip, ip, ip, ({"last_analysis_stats": stats} if stats else {}), date
    if kind == "domain":
        name = oid.lower().rstrip(".")
        return "domain", name, name, name, attrs, None
    if kind == "ip_address":
        return "ip", oid, oid, oid, attrs, None
    if kind == "file":
        return "file", oid.lower(), oid.lower(), oid.lower(), attrs, None
    if kind == "url":
        text = attrs.get("url") or attrs.get("last_final_url")
        text = text if isinstance(text, str) and text else None
        return "url", oid, text or oid, text, attrs, None
    if kind == "collection":
        name = attrs.get("name") if isinstance(attrs.get("name"), str) else None
        return "collection", oid, name or oid, None, attrs, None
    return None


def _collection_type(node: _Node) -> str:
    declared = node.attrs.get("collection_type")
    if isinstance(declared, str) and declared:
        return declared
    prefix = node.id.split("--", 1)[0]
    return _COLLECTION_PREFIXES.get(prefix, prefix or "collection")


def _policy_leaf(node: _Node) -> None:
    """Leaf rules that need no upstream call: policy, the bundled benign list, GTI benign, shared tags."""
    if node.type == "collection":
        node.leaf("collection", "collection: attribution, not infrastructure to expand")
        return
    if node.lookup is None:
        node.leaf("no_lookup", "GTI gave no URL text for it, so it cannot be looked up")
        return
    try:
        parsed = Indicator.parse(node.lookup, _HINTS[node.type])
    except IndicatorError as exc:
        node.leaf("invalid", f"not a valid indicator: {exc}")
        return
    if not parsed.external_ti_allowed:
        node.leaf("policy", f"{parsed.ti_skip_reason}; never sent to external threat intelligence")
    elif parsed.known_benign:
        node.leaf("known_benign", f"known benign / shared infrastructure: {parsed.known_benign}")
    _gti_leaf(node)


def _gti_leaf(node: _Node) -> None:
    assessment = node.attrs.get("gti_assessment")
    verdict = assessment.get("verdict") if isinstance(assessment, dict) else None
    if isinstance(verdict, dict) and verdict.get("value") == "VERDICT_BENIGN":
        node.leaf("gti_benign", "GTI verdict benign (VERDICT_BENIGN): not expanded")
    tags = node.attrs.get("tags")
    shared = sorted(scoring.SHARED_INFRA_TAGS.intersection(tags)) if isinstance(tags, list) else []
    if shared:
        node.leaf("shared_tag", f"shared infrastructure (GTI tag {', '.join(shared)}): not expanded")


class _Graph:
    def __init__(self, run: _Run, budget: PivotBudget, filters: PivotFilters, now: float):
        self.run = run
        self.budget = budget
        self.filters = filters
        self.now = now
        self.nodes: dict[str, _Node] = {}
        self.edges: dict[tuple[str, str, str], PivotEdge] = {}
        self.sets: list[RelationshipSet] = []
        self.filtered: dict[str, set[str]] = {}
        self.dropped: set[str] = set()

    def add(self, node: _Node) -> _Node:
        node.order = len(self.nodes)
        self.nodes[node.key] = node
        return node

    def edge(self, source: str, target: str, relationship: str, date: int | None) -> None:
        key = (source, target, relationship)
        if key not in self.edges:
            self.edges[key] = PivotEdge(
                source=source, target=target, relationship=relationship, date=scoring.iso_date(date)
            )

    def filter_reason(self, node: _Node) -> str | None:
        f = self.filters
        if f.min_verdict is not None:
            if node.verdict is None:
                return "no_verdict"
            if not scoring.verdict_at_least(node.verdict, f.min_verdict):
                return "verdict_below_minimum"
        if f.min_score is not None:
            if node.score is None:
                return "no_score"
            if node.score < f.min_score:
                return "score_below_minimum"
        if f.max_age_days is not None:
            seen = node.recency()
            if seen is None:
                return "no_date"
            if self.now - seen > f.max_age_days * 86400:
                return "older_than_max_age"
        return None

    def absorb(self, source: _Node, relationship: str, items: list[dict[str, Any]], depth: int) -> RelationshipSet:
        """Turn one relationship list into nodes and edges; returns its record."""
        limit = self.budget.max_items_per_relationship
        returned = len(items)
        truncated, why = False, None
        cap = KNOWN_SERVER_CAPS.get(relationship)
        if returned >= limit:
            truncated, why = True, f"returned the limit of {limit}; more may exist (raise max_items_per_relationship)"
        elif cap is not None and returned == cap:
            truncated, why = True, f"stopped at VirusTotal's cap of {cap} {relationship} with no cursor: more may exist"
        hub = scoring.is_hub_fanout(returned, limit, source.verdict)
        kept = 0
        for obj in items:
            found = _entity(obj, source.type)
            if found is None:
                self.filtered.setdefault("not_an_entity", set()).add(f"{obj.get('type')}:{obj.get('id')}")
                continue
            kind, oid, value, lookup, attrs, date = found
            key = f"{kind}:{oid}"
            if key == source.key:
                continue
            own_data = obj.get("type") != "resolution" and bool(attrs)
            existing = self.nodes.get(key)
            if existing is not None:
                for name, item in attrs.items():
                    existing.attrs.setdefault(name, item)
                existing.own_data = existing.own_data or own_data
                if existing.verdict is None:
                    existing.judge()
                if existing.depth == depth and not hub and existing.leaf_kind == "hub":
                    existing.reason = existing.leaf_kind = None  # reached through a non-hub edge too
                    _policy_leaf(existing)
                self.edge(source.key, key, relationship, date)
                kept += 1
                continue
            node = _Node(key=key, type=kind, id=oid, value=value, depth=depth, attrs=dict(attrs), lookup=lookup)
            node.edge_date, node.own_data = date, own_data
            node.judge()
            if kind != "collection":
                reason = self.filter_reason(node)
                if reason is not None:
                    self.filtered.setdefault(reason, set()).add(key)
                    continue
            if len(self.nodes) >= self.budget.max_entities:
                self.dropped.add(key)
                continue
            self.add(node)
            _policy_leaf(node)
            if hub and kind != "collection":
                node.leaf("hub", f"reached only through a hub: {source.value} {relationship} returned {returned} items")
            self.edge(source.key, key, relationship, date)
            kept += 1
        status_reason = why if truncated else None
        record = RelationshipSet(
            source=source.key,
            relationship=relationship,
            status="ok",
            reason=status_reason,
            returned=returned,
            kept=kept,
            limit=limit,
            possibly_truncated=truncated,
            truncation_reason=why,
            hub=hub,
        )
        self.sets.append(record)
        return record


# --------------------------------------------------------------------------------------------------
# The search


async def _vet(run: _Run, node: _Node) -> None:
    """The entity's own GTI report: verdict, tags, and whether GTI knows it at all."""
    try:
        indicator = Indicator.parse(node.lookup, _HINTS[node.type])
    except IndicatorError as exc:
        node.leaf("invalid", f"not a valid indicator: {exc}")
        return
    tool = REPORT_TOOLS[node.type][0]
    try:
        status, report, reason = await run.gti(tool, lambda: run.sources.gti.report(indicator, run.trace))
    except Exception as exc:
        failed, why = _failure_of(exc)
        run.errors.append(
            ErrorItem(section="graph", upstream="gti", status=failed, message=f"{node.key} report: {why}")
        )
        return  # not vetted; its relationships are still tried
    node.vetted = True
    if report is not None and report.object_id:
        node.gti_id = report.object_id.lower() if node.type == "file" else report.object_id
    if report is None:
        if status is Status.NOT_FOUND:
            node.leaf("not_found", "not known to GTI (NotFoundError): nothing to expand")
        else:
            run.errors.append(
                ErrorItem(section="graph", upstream="gti", status=status, message=f"{node.key} report: {reason}")
            )
        return
    assert isinstance(report, GtiReport)
    node.attrs.update(report.attributes)
    node.judge()
    if node.type == "file" and report.object_id:
        node.lookup = report.object_id
    _gti_leaf(node)


async def _expand_one(run: _Run, graph: _Graph, node: _Node, relationship: str, out: dict[Any, Any]) -> None:
    limit = graph.budget.max_items_per_relationship
    tool = RELATED_TOOLS[node.type][0]
    try:
        items = await run.gti(
            tool, lambda: run.sources.gti.related(node.type, node.lookup or "", relationship, limit, run.trace)
        )
        out[(node.key, relationship)] = ("ok", items)
    except Exception as exc:
        out[(node.key, relationship)] = ("error", _failure_of(exc))


def _select(
    run: _Run, graph: _Graph, frontier: list[_Node], rels: dict[str, tuple[str, ...]], depth: int
) -> list[_Node]:
    """Phase 1 of a level: the entities to look at, best first, within the per-level cap. Below the
    indicator, one that came without its own GTI object (a resolution's summary) costs one vetting call
    now, so it needs room for that and one relationship call."""
    budget = graph.budget
    chosen: list[_Node] = []
    expandable = [n for n in frontier if n.reason is None]
    for node in sorted(expandable, key=lambda n: (*scoring.expansion_priority(n.verdict, n.score), n.order)):
        if not rels.get(node.type):
            node.leaf("no_relationships", f"no requested relationship applies to a {node.type}")
            continue
        if len(chosen) >= budget.max_entities_per_level:
            node.leaf(
                "budget", f"budget: max_entities_per_level ({budget.max_entities_per_level}) reached at depth {depth}"
            )
            continue
        vet = _needs_report(node, depth)
        if budget.max_calls - run.planned < (2 if vet else 1):
            node.leaf("budget", f"budget: max_calls ({budget.max_calls}) reached")
            continue
        run.planned += 1 if vet else 0
        chosen.append(node)
    return chosen


def _allot(
    run: _Run, graph: _Graph, chosen: list[_Node], rels: dict[str, tuple[str, ...]]
) -> list[tuple[_Node, tuple[str, ...]]]:
    """Phase 2: relationship calls for the entities still worth expanding, best first, within max_calls."""
    budget = graph.budget
    work: list[tuple[_Node, tuple[str, ...]]] = []
    for node in chosen:
        if node.reason is not None:  # vetting made it a leaf
            continue
        names = rels[node.type]
        room = budget.max_calls - run.planned
        if room < 1:
            node.leaf("budget", f"budget: max_calls ({budget.max_calls}) reached")
            continue
        take = names[:room]
        if len(take) < len(names):
            run.cut_reasons.append(
                f"budget: max_calls ({budget.max_calls}): {node.key} expanded with {', '.join(take)} only; "
                f"not fetched: {', '.join(names[len(take) :])}"
            )
        run.planned += len(take)
        work.append((node, take))
    return work


def _needs_report(node: _Node, depth: int) -> bool:
    """Below the indicator, an entity is vetted with its own report only when its GTI object did not come
    with the relationship that found it (``descriptors_only=False`` returns whole objects, verdict and
    tags included; a resolution carries only detection counts)."""
    return depth > 0 and not node.own_data


async def _fetch(
    run: _Run, graph: _Graph, work: list[tuple[_Node, tuple[str, ...]]], results: dict[Any, Any]
) -> dict[Any, Any]:
    """The relationship calls of ``work`` at once (the pool's cap bounds them), answers into ``results``."""
    async with anyio.create_task_group() as tg:
        for node, names in work:
            for name in names:
                tg.start_soon(_expand_one, run, graph, node, name, results)
    return results


async def _level(
    run: _Run, graph: _Graph, frontier: list[_Node], rels: dict[str, tuple[str, ...]], depth: int
) -> list[_Node]:
    """Expand one level below the indicator; returns the nodes discovered at depth + 1.

    The calls are allotted first, best entities first; then every entity runs at once: one that needs
    vetting asks for its report and fetches its relationships only if it stays expandable (the calls it
    had been allotted are then not made), the others fetch theirs straight away. So a level costs the
    round trips of its slowest entity, not a vetting phase plus a relationship phase."""
    chosen = _select(run, graph, frontier, rels, depth)
    await run.report_progress(f"depth {depth + 1}: looking at {len(chosen)} entities")
    work = _allot(run, graph, chosen, rels)
    results: dict[Any, Any] = {}

    async def one(node: _Node, names: tuple[str, ...]) -> None:
        if _needs_report(node, depth):
            await _vet(run, node)
            if node.reason is not None:  # vetting made it a leaf
                run.planned -= len(names)
                return
        await _fetch(run, graph, [(node, names)], results)

    async with anyio.create_task_group() as tg:
        for node, names in work:
            tg.start_soon(one, node, names)
    return await _absorb_level(run, graph, [(n, names) for n, names in work if n.reason is None], results, depth)


async def _root_level(run: _Run, graph: _Graph, root: _Node, rels: dict[str, tuple[str, ...]]) -> list[_Node]:
    """Depth 0: the indicator's report and its relationship lists, fetched together (one round trip, not
    two), since the indicator is expanded whatever its verdict. Only an indicator GTI does not know wastes
    the relationship calls; so when a rate limit is configured for gti (every call counts), the report
    goes first and an unknown indicator costs one call."""
    run.planned += 1
    work = _allot(run, graph, [root], rels)
    await run.report_progress("fetching the indicator's report and relationships")
    if run.sources.settings.policy("gti").requests_per_minute is None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_vet, run, root)
            results = await _fetch(run, graph, work, {})
    else:
        await _vet(run, root)
        results = {} if root.leaf_kind == "not_found" else await _fetch(run, graph, work, {})
    if root.leaf_kind in ("gti_benign", "shared_tag"):
        root.reason = root.leaf_kind = None  # the caller asked for this one; hubs under it are still leaves
    if root.leaf_kind == "not_found":
        run.planned = run.done  # its relationships are not read (or not even asked for)
        return []
    if root.gti_id and root.type in ("file", "url") and root.gti_id != root.id:
        # GTI keys files by sha256 and URLs by their sha256 id: so do edges pointing back at the indicator.
        old_key = root.key
        del graph.nodes[old_key]
        root.id, root.key = root.gti_id, f"{root.type}:{root.gti_id}"
        graph.nodes[root.key] = root
        results = {(root.key if key == old_key else key, name): value for (key, name), value in results.items()}
    return await _absorb_level(run, graph, work, results, 0)


async def _absorb_level(
    run: _Run, graph: _Graph, work: list[tuple[_Node, tuple[str, ...]]], results: dict[Any, Any], depth: int
) -> list[_Node]:
    """The level's answers into the graph, in a deterministic order; returns the nodes discovered."""
    before = set(graph.nodes)
    for node, names in work:  # deterministic: priority order, then relationship order
        node.expanded = True
        for name in names:
            kind, payload = results[(node.key, name)]
            if kind == "ok":
                graph.absorb(node, name, payload, depth + 1)
                node.sets_ok += 1
                continue
            status, why = payload
            node.sets_failed += 1
            graph.sets.append(
                RelationshipSet(
                    source=node.key,
                    relationship=name,
                    status=status.value,
                    reason=why,
                    returned=0,
                    kept=0,
                    limit=graph.budget.max_items_per_relationship,
                    possibly_truncated=True,
                    truncation_reason=f"the call failed ({status.value}): this edge set is incomplete",
                )
            )
            run.errors.append(
                ErrorItem(section="graph", upstream="gti", status=status, message=f"{node.key} {name}: {why}")
            )
    discovered = [graph.nodes[key] for key in graph.nodes if key not in before]
    await run.report_progress(f"depth {depth + 1} done: {len(discovered)} new entities")
    return discovered


async def _name_collections(run: _Run, graph: _Graph) -> None:
    """get_collection_report for collections that came without a name, as far as the budget allows."""
    nameless = [n for n in graph.nodes.values() if n.type == "collection" and not isinstance(n.attrs.get("name"), str)]
    room = graph.budget.max_calls - run.planned
    if len(nameless) > room:
        run.cut_reasons.append(f"budget: max_calls: {len(nameless) - max(room, 0)} collection name(s) not looked up")
    todo = nameless[: max(room, 0)]
    run.planned += len(todo)

    async def one(node: _Node) -> None:
        try:
            _, report, _ = await run.gti(COLLECTION_REPORT_TOOL, lambda: run.sources.gti.collection(node.id, run.trace))
        except Exception as exc:
            failed, why = _failure_of(exc)
            run.errors.append(
                ErrorItem(section="campaign_context", upstream="gti", status=failed, message=f"{node.key}: {why}")
            )
            return
        if report is not None:
            node.attrs.update(report.attributes)
            if isinstance(report.attributes.get("name"), str):
                node.value = report.attributes["name"]

    if todo:
        async with anyio.create_task_group() as tg:
            for node in todo:
                tg.start_soon(one, node)


# --------------------------------------------------------------------------------------------------
# The result


def _confidence(parts: scoring.PivotConfidence) -> Confidence:
    score, level, reasons = parts
    return Confidence(level=level, score=score, reasons=reasons)


def _node_model(node: _Node) -> PivotNode:
    return PivotNode(
        key=node.key,
        type=node.type,  # type: ignore[arg-type]
        id=node.id,
        value=node.value,
        depth=node.depth,
        verdict=node.verdict,  # type: ignore[arg-type]
        verdict_source=node.verdict_source,
        threat_score=node.score,
        collection_type=_collection_type(node) if node.type == "collection" else None,
        last_seen=scoring.iso_date(node.recency()),
        expanded=node.expanded,
        not_expanded_reason=None if node.expanded else node.reason,
        expansion_status=(
            None
            if not node.expanded
            else "ok"
            if node.sets_failed == 0
            else "failed"
            if node.sets_ok == 0
            else "partial"
        ),
    )


def _attribution(graph: _Graph, root: _Node) -> tuple[list[AttributionCandidate], dict[str, Any]]:
    supporters: dict[str, set[str]] = {}
    for (source, target, _), _edge in graph.edges.items():
        if graph.nodes[target].type == "collection" and graph.nodes[source].type != "collection":
            supporters.setdefault(target, set()).add(source)
    candidates = []
    for key, support in supporters.items():
        node = graph.nodes[key]
        name = node.attrs.get("name") if isinstance(node.attrs.get("name"), str) else None
        candidates.append(
            AttributionCandidate(
                collection_id=node.id,
                collection_type=_collection_type(node),
                name=name,
                paths=len(support),
                supporting_entities=sorted(support, key=lambda k: graph.nodes[k].order),
            )
        )
    candidates.sort(key=lambda c: (-c.paths, c.name or "~", c.collection_id))
    picks: dict[str, Any] = {"root": root.key}
    for kind in ("threat-actor", "campaign"):
        of_kind = [c for c in candidates if c.collection_type == kind]
        if not of_kind:
            picks[kind] = (None, f"no {kind} collection is associated with any entity reached", False)
        elif len(of_kind) > 1 and of_kind[1].paths == of_kind[0].paths:
            names = ", ".join(c.name or c.collection_id for c in of_kind[:3])
            picks[kind] = (None, f"ambiguous: {names} are equally supported ({of_kind[0].paths} path(s) each)", True)
        elif of_kind[0].name is None:
            picks[kind] = (None, f"{of_kind[0].collection_id} is associated but its name could not be read", False)
        else:
            picks[kind] = (of_kind[0], None, False)
    return candidates, picks


_LEAF_WORDS = {
    "known_benign": "known benign",
    "gti_benign": "GTI benign",
    "shared_tag": "shared infrastructure",
    "hub": "reached only through a hub",
    "policy": "private/reserved (never sent to GTI)",
}


def _leaf_counts(nodes: list[_Node]) -> dict[str, int]:
    """Entities left unexpanded on purpose, by why (in a fixed order), for the summary."""
    counts: dict[str, int] = {}
    for kind, word in _LEAF_WORDS.items():
        n = sum(1 for node in nodes if node.leaf_kind == kind)
        if n:
            counts[word] = n
    return counts


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _summary(result: dict[str, Any]) -> str:
    ind = result["indicator"]
    parts = [f"Pivot of {ind.type} {ind.value} to depth {result['depth']}:"]
    parts.append(
        f"{_count(result['nodes'], 'entity', 'entities')}, {_count(result['edges'], 'relation')}, "
        f"{result['expanded']} expanded, {_count(result['calls'], 'upstream call')}."
    )
    actor, campaign = result["actor"], result["campaign"]
    if result["status_note"]:
        pass  # not pivoted (policy, or unknown to GTI): the note says why, and no attribution was looked for
    elif actor or campaign:
        named = [f"threat actor {actor}"] if actor else []
        named += [f"campaign {campaign}"] if campaign else []
        parts.append(f"Attribution: {', '.join(named)} ({result['attribution'].level} confidence).")
    elif result["attribution_unknown"]:
        parts.append(f"Attribution unknown: {result['attribution_unknown'].split(':')[0]}.")
    else:
        parts.append("No attribution: no threat actor or campaign is supported by the data.")
    if result["families"]:
        parts.append(f"Malware: {', '.join(result['families'])}.")
    if result["leaves"] and not result["status_note"]:
        counts = ", ".join(f"{n} {kind}" for kind, n in result["leaves"].items())
        parts.append(f"Not expanded on purpose: {counts}.")
    if result["cut"]:
        parts.append("The budget cut the exploration (see budget.cut_reasons).")
    if result["truncated"]:
        parts.append("Some relationship lists may be truncated.")
    if result["errors"]:
        parts.append(f"{result['errors']} upstream call(s) failed; the graph is partial.")
    if result["status_note"]:
        note = result["status_note"]
        parts.append(note[:1].upper() + note[1:] + ("" if note.endswith(".") else "."))
    if result["data_mode"] != "live":
        parts.append(data_mode_note(result["data_mode"]))
    return " ".join(parts)


async def pivot(
    indicator: Indicator,
    sources: Sources,
    pivot_depth: int = 1,
    relationships: list[str] | dict[str, list[str]] | None = None,
    budget: PivotBudget | dict[str, Any] | None = None,
    filters: PivotFilters | dict[str, Any] | None = None,
    progress: Progress | None = None,
    *,
    now: float | None = None,
) -> PivotResult:
    """Run the pivot workflow. Raises :class:`PivotArgumentError` for bad arguments only; upstream
    trouble becomes statuses and errors in the result."""
    if isinstance(pivot_depth, bool) or not isinstance(pivot_depth, int) or not 1 <= pivot_depth <= MAX_DEPTH:
        raise PivotArgumentError(f"pivot_depth must be 1, 2 or 3 (got {pivot_depth!r})")
    rels = resolve_relationships(relationships)
    try:
        limits = budget if isinstance(budget, PivotBudget) else PivotBudget.model_validate(budget or {})
        chosen_filters = filters if isinstance(filters, PivotFilters) else PivotFilters.model_validate(filters or {})
    except ValueError as exc:
        raise PivotArgumentError(f"invalid budget or filters: {exc}") from None
    now = time.time() if now is None else now

    run = _Run(sources=sources, trace=CallTrace(), budget=limits, progress=progress)
    graph = _Graph(run, limits, chosen_filters, now)
    family = indicator.family
    root = graph.add(
        _Node(
            key=f"{family}:{indicator.value}",
            type=family,
            id=indicator.value,
            value=indicator.value,
            depth=0,
            lookup=indicator.value,
        )
    )
    root_status: Status | None = None
    root_reason: str | None = None
    if not indicator.external_ti_allowed:
        root_status = Status.SKIPPED_POLICY
        root_reason = f"skipped: {indicator.ti_skip_reason}; no external threat intelligence was asked"
        root.leaf("policy", root_reason)
    elif indicator.known_benign:
        root_status = Status.SKIPPED_POLICY
        root_reason = f"known benign / shared infrastructure: {indicator.known_benign}; pivot fan-out suppressed"
        root.leaf("known_benign", root_reason)
    elif not rels.get(family):
        raise PivotArgumentError(f"relationships: none of the requested names applies to a {family}")
    else:
        frontier = await _root_level(run, graph, root, rels)
        run.root_calls = len(run.trace.calls)
        if root.leaf_kind == "not_found":
            root_status, root_reason = (
                Status.NOT_FOUND,
                "not known to Google Threat Intelligence: nothing to pivot from",
            )
        for depth in range(1, pivot_depth):
            if not frontier:
                break
            frontier = await _level(run, graph, frontier, rels, depth)
        for node in frontier:
            if node.reason is None and node.type != "collection":
                node.leaf("depth", f"depth limit: pivot_depth={pivot_depth}")
        await _name_collections(run, graph)

    if graph.dropped:
        run.cut_reasons.append(
            f"budget: max_entities ({limits.max_entities}): {len(graph.dropped)} related entities not added"
        )
    budget_cut_nodes = [n for n in graph.nodes.values() if n.leaf_kind == "budget"]
    if budget_cut_nodes:
        cut_count = _count(len(budget_cut_nodes), "entity", "entities")
        run.cut_reasons.append(f"{cut_count} not expanded for budget (see their reasons)")
    return _assemble(indicator, sources, graph, run, root, root_status, root_reason, pivot_depth, rels, chosen_filters)


def _assemble(
    indicator: Indicator,
    sources: Sources,
    graph: _Graph,
    run: _Run,
    root: _Node,
    root_status: Status | None,
    root_reason: str | None,
    depth: int,
    rels: dict[str, tuple[str, ...]],
    filters: PivotFilters,
) -> PivotResult:
    nodes = sorted(graph.nodes.values(), key=lambda n: n.order)
    root_sets = [s for s in graph.sets if s.source == root.key]
    failed_root = [s for s in root_sets if s.status != "ok"]
    truncated = any(s.possibly_truncated for s in graph.sets)
    cut = bool(run.cut_reasons)

    # direct relationships (depth 1)
    direct: dict[str, list[RelatedEntity]] = {"domain": [], "ip": [], "file": [], "url": []}
    for node in nodes:
        if node.depth != 1 or node.type not in direct:
            continue
        names = sorted({e.relationship for e in graph.edges.values() if e.source == root.key and e.target == node.key})
        direct[node.type].append(
            RelatedEntity(
                value=node.value,
                id=node.id,
                verdict=node.verdict,  # type: ignore[arg-type]
                threat_score=node.score,
                relationships=names,
                not_expanded_reason=None if node.expanded else node.reason,
            )
        )
    root_calls = ordered(run.trace.calls[: run.root_calls or len(run.trace.calls)])
    if root_status is not None:
        direct_info = SectionInfo(status=root_status, reason=root_reason, provenance=root_calls)
    elif root_sets and len(failed_root) == len(root_sets):
        first = Status(failed_root[0].status)
        direct_info = SectionInfo(
            status=first, reason=f"every relationship call failed: {failed_root[0].reason}", provenance=root_calls
        )
    elif failed_root:
        direct_info = SectionInfo(
            status=Status.DEGRADED,
            reason=f"{len(failed_root)} of {len(root_sets)} relationship calls failed: "
            + ", ".join(s.relationship for s in failed_root),
            provenance=root_calls,
        )
    else:
        direct_info = SectionInfo(
            status=Status.OK,
            reason=f"{sum(len(v) for v in direct.values())} related entities from {len(root_sets)} relationships",
            provenance=root_calls,
        )

    # attribution
    candidates, picks = _attribution(graph, root)
    actor, actor_reason, actor_ambiguous = picks.get("threat-actor", (None, None, False))
    campaign, campaign_reason, campaign_ambiguous = picks.get("campaign", (None, None, False))
    families = [c.name or c.collection_id for c in candidates if c.collection_type == "malware-family"]
    basis = actor or campaign
    if basis is None:
        fams = [c for c in candidates if c.collection_type == "malware-family"]
        basis = fams[0] if fams else None
    attribution = _confidence(
        scoring.attribution_confidence(
            basis.paths if basis else 0,
            bool(basis and root.key in basis.supporting_entities),
            actor_ambiguous or campaign_ambiguous,
        )
    )
    if basis is not None and actor is None and campaign is None:
        attribution.reasons.append(f"malware family only ({basis.name or basis.collection_id}): no actor or campaign")

    # overlap, timeline, confidences
    entity_nodes = [n for n in nodes if n.type != "collection" and n.key != root.key]
    considered = [n for n in entity_nodes if n.leaf_kind not in _SHARED_KINDS and n.leaf_kind != "policy"]
    sources_of: dict[str, set[str]] = {}
    for edge in graph.edges.values():
        sources_of.setdefault(edge.target, set()).add(edge.source)
    shared = [n.key for n in considered if len(sources_of.get(n.key, set())) >= 2]
    overlap = InfrastructureOverlap(
        score=scoring.infrastructure_overlap(len(shared), len(considered)),
        shared_entities=shared,
        considered=len(considered),
        description=(
            f"{len(shared)} of {len(considered)} related entities are reached from two or more entities"
            if depth > 1
            else "depth 1 shows direct relations only; overlap needs pivot_depth 2 or more"
        ),
    )
    epochs: list[int] = []
    for node in nodes:
        if node.type == "collection" or node.leaf_kind in _SHARED_KINDS:
            continue
        if node is root or node.verdict in ("malicious", "suspicious"):
            for name in scoring.TIMELINE_FIELDS:
                value = node.attrs.get(name)
                if isinstance(value, int) and not isinstance(value, bool):
                    epochs.append(value)
    for (source, target, _), edge in graph.edges.items():
        ends = (graph.nodes[source], graph.nodes[target])
        if edge.date and all(n.leaf_kind not in _SHARED_KINDS for n in ends):
            epoch = next((n.edge_date for n in ends if n.edge_date), None)
            if epoch:
                epochs.append(epoch)
    span = scoring.timeline_span(epochs)
    timeline = (
        TimelineSpan(first_seen=span[0], last_seen=span[1], days=span[2], dated_items=len(epochs)) if span else None
    )

    relationship = _confidence(
        scoring.relationship_confidence(
            sum(1 for s in graph.sets if s.status == "ok"),
            len(graph.sets),
            [
                scoring.evidence_verdict(n.verdict, n.verdict_source)
                for n in nodes
                if n.depth == 1 and n.type != "collection"
            ],
            cut,
            truncated,
        )
    )
    infrastructure = _confidence(
        scoring.infrastructure_confidence(
            [
                scoring.evidence_verdict(n.verdict, n.verdict_source)
                for n in entity_nodes
                if n.type in ("domain", "ip", "url") and n.leaf_kind not in _SHARED_KINDS
            ],
            sum(1 for n in entity_nodes if n.leaf_kind in _SHARED_KINDS),
        )
    )

    attribution_unknown: str | None = None
    nulls: dict[str, str] = {}
    if actor is None:
        nulls["threat_actor"] = actor_reason or "no threat actor"
    if campaign is None:
        nulls["campaign_name"] = campaign_reason or "no campaign"
    if timeline is None:
        nulls["timeline_span"] = "no activity dates among the entities reached"
    if root_status is not None:
        not_looked = f"not looked for: the indicator was not pivoted ({root_reason})"
        for name in ("threat_actor", "campaign_name"):
            nulls[name] = not_looked
        attribution.reasons = [not_looked]
        campaign_info = SectionInfo(status=root_status, reason=root_reason, null_fields=nulls)
    else:
        collection_calls = [c for c in run.trace.calls if c.tool == COLLECTION_REPORT_TOOL]
        association_calls = [c for c in run.trace.calls if c.arguments.get("relationship_name") == "associations"]
        root_associations = [s for s in graph.sets if s.relationship == "associations" and s.source == root.key]
        if candidates:
            status, reason = Status.OK, f"{len(candidates)} collection(s) reached through associations"
        elif not any(s.status == "ok" for s in root_associations):
            # The indicator's own associations were not read: "no attribution" would be a claim the data
            # cannot back.
            if root_associations:
                failed = Status(root_associations[0].status)
                status = failed if failed.failed else Status.UNAVAILABLE
                reason = "the indicator's associations could not be read (the call failed)"
            elif "associations" not in rels.get(root.type, ()):
                status, reason = Status.DEGRADED, "associations were not among the requested relationships"
            else:
                status, reason = Status.DEGRADED, "the budget left no call for the indicator's associations"
            reason += ": attribution unknown, not absent"
            attribution_unknown = reason
            attribution.reasons = [reason]
            for name in ("threat_actor", "campaign_name"):
                nulls[name] = reason
        else:
            status = Status.OK
            reason = "the data supports no attribution: no collection is associated with any entity reached"
        campaign_info = SectionInfo(
            status=status,
            reason=reason,
            null_fields=nulls,
            provenance=ordered(association_calls + collection_calls),
        )

    failed_sets = [s for s in graph.sets if s.status != "ok"]
    graph_status = Status.OK if root_status is None else root_status
    graph_reason = root_reason or f"{len(graph.nodes)} entities, {len(graph.edges)} relations"
    if root_status is None and (failed_sets or run.errors):
        graph_status = Status.DEGRADED
        graph_reason = f"{len(run.errors)} upstream call(s) failed; the rest of the graph is intact"
    if cut:
        graph_reason += "; cut by the budget"
    level_rows: list[dict[str, int]] = []
    for level in range(depth):
        level_rows.append(
            {
                "depth": level,
                "expanded": sum(1 for n in nodes if n.depth == level and n.expanded),
                "discovered": sum(1 for n in nodes if n.depth == level + 1),
            }
        )
    calls, shared_calls = run.usage()
    usage = BudgetUsage(
        limits=graph.budget,
        calls=calls,
        shared_calls=shared_calls,
        entities_expanded=sum(1 for n in nodes if n.expanded),
        entities_in_graph=len(nodes),
        per_level=level_rows,
        cut=cut,
        cut_reasons=run.cut_reasons,
    )
    filtered = {reason: len(keys) for reason, keys in sorted(graph.filtered.items())}
    summary = _summary(
        {
            "indicator": indicator,
            "depth": depth,
            "nodes": len(nodes),
            "edges": len(graph.edges),
            "expanded": usage.entities_expanded,
            "calls": calls,
            "actor": actor.name if actor else None,
            "campaign": campaign.name if campaign else None,
            "attribution": attribution,
            "attribution_unknown": attribution_unknown,
            "families": families,
            "leaves": _leaf_counts(nodes),
            "cut": cut,
            "truncated": truncated,
            "errors": len(run.errors),
            "status_note": root_reason if root_status is not None else None,
            "data_mode": sources.data_mode,
        }
    )
    return PivotResult(
        data_mode=sources.data_mode,  # type: ignore[arg-type]
        indicator=indicator_info(indicator),
        pivot_depth=depth,
        relationships={family: list(names) for family, names in rels.items()},
        filters=filters,
        direct_relationships=DirectRelationships(
            related_domains=direct["domain"],
            related_ips=direct["ip"],
            related_files=direct["file"],
            related_urls=direct["url"],
            section=direct_info,
        ),
        campaign_context=CampaignContext(
            threat_actor=actor.name if actor else None,
            campaign_name=campaign.name if campaign else None,
            malware_families=families,
            infrastructure_overlap=overlap,
            timeline_span=timeline,
            candidates=candidates,
            section=campaign_info,
        ),
        confidence_assessment=ConfidenceAssessment(
            relationship_confidence=relationship,
            attribution_confidence=attribution,
            infrastructure_confidence=infrastructure,
        ),
        graph=PivotGraph(
            nodes=[_node_model(n) for n in nodes],
            edges=list(graph.edges.values()),
            relationship_sets=graph.sets,
            section=SectionInfo(status=graph_status, reason=graph_reason, provenance=ordered(run.trace.calls)),
        ),
        budget=usage,
        possibly_truncated=truncated,
        filtered=filtered,
        errors=run.errors,
        summary=summary,
    )
