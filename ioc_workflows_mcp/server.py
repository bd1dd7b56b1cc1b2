"""The MCP tools. Thin: parse arguments, run a workflow, shape the result. No logic of its own."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from cachetools import LRUCache
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from ioc_workflows_mcp import __version__
from ioc_workflows_mcp.indicator import Indicator, IndicatorError
from ioc_workflows_mcp.models import EnrichResult, JsonInt
from ioc_workflows_mcp.models.correlate import CorrelateResult
from ioc_workflows_mcp.models.investigate import AnalysisResult
from ioc_workflows_mcp.models.pivot import PivotBudget, PivotFilters, PivotResult
from ioc_workflows_mcp.settings import Config, load_config
from ioc_workflows_mcp.upstream.pool import UpstreamPool
from ioc_workflows_mcp.workflows.correlate import correlate
from ioc_workflows_mcp.workflows.enrich import enrich
from ioc_workflows_mcp.workflows.investigate import PivotIf, investigate, single
from ioc_workflows_mcp.workflows.pivot import PivotArgumentError, pivot
from ioc_workflows_mcp.workflows.sources import Sources

log = logging.getLogger(__name__)

INSTRUCTIONS = """\
Deterministic IOC analysis. Give an indicator of compromise (IPv4/IPv6 address, domain, URL, or an
md5/sha1/sha256 file hash; defanged forms such as hxxp:// and [.] are accepted) and get one merged JSON
result from Google Threat Intelligence and the Chronicle SIEM, in one call instead of many.
Tools: enrich_ioc (GTI reputation + SIEM context + SIEM IOC matches, cross-validated), pivot_ioc
(related infrastructure and the actors/campaigns behind it, depth 1-3), correlate_ioc (the organization's
SOAR cases and SIEM alerts: exposure, recurrence, business impact), investigate_ioc (the whole chain with
one priority), and analyze_ioc (the runbook's entry point: pick enrich, pivot, correlate or full).
Every result has a top-level data_mode: "offline-fixtures" means bundled stand-in data, NOT live
intelligence. Every section has a status (ok, not_found, skipped_policy, rate_limited, timeout,
unavailable, degraded): a failed or skipped section means unknown, never clean."""

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=True, idempotent_hint=True, destructive_hint=False)

# `None` is accepted here so that it gets the indicator parser's own clear error ("empty or invalid IOC
# value"), not a generic type error (shared case C13).
IocValue = Annotated[
    str | None,
    Field(description="The indicator: IPv4/IPv6, domain, URL, or md5/sha1/sha256. Defanged input is accepted."),
]
IocType = Annotated[
    str | None,
    Field(
        description='Optional type: "IP Address", "Domain", "File Hash", "URL" or ip, ipv4, ipv6, domain, url, '
        "hash, md5, sha1, sha256. Detected when omitted; when given, the value is still checked against it."
    ),
]
CorrelationScope = Annotated[
    Literal["recent", "extended", "comprehensive"],
    Field(description="SOAR case window: recent = 30 days, extended = 90, comprehensive = 365."),
]
LookbackDays = Annotated[
    JsonInt,
    Field(
        ge=1,
        le=365,
        description="SIEM look-back window in days (1-365): entity history, IOC matches, events.",
    ),
]


# Sessions whose caches are kept at once; the least recently used session's cache goes first.
MAX_SESSIONS = 256


@dataclass
class AppState:
    config: Config
    pool: UpstreamPool
    sessions: LRUCache[str, Sources] = field(default_factory=lambda: LRUCache(maxsize=MAX_SESSIONS))

    def sources(self, ctx: Context) -> Sources:
        """The facades of the caller's MCP session, each session with a cache of its own.

        stdio serves one client per process, so the process is the session. Over streamable HTTP the
        ``Mcp-Session-Id`` names it; a request without one (the stateless 2026 protocol) gets a cache of
        its own, used within that one request only, so no two clients ever share entries.
        """
        headers = ctx.headers
        key = (
            "stdio"
            if headers is None
            else (f"http:{headers['mcp-session-id']}" if headers.get("mcp-session-id") else None)
        )
        if key is None:
            return Sources.from_pool(self.pool, self.config)
        found = self.sessions.get(key)
        if found is None:
            found = self.sessions[key] = Sources.from_pool(self.pool, self.config)
        return found


def _announce(config: Config) -> None:
    line = config.data_mode_line()
    if line:
        print(line, file=sys.stderr)


def build_server(config: Config | None = None) -> MCPServer:
    """The MCP server. ``config`` defaults to the config file or the offline stand-ins."""
    config = config or load_config()

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[AppState]:
        _announce(config)
        async with UpstreamPool(config) as pool:
            yield AppState(config=config, pool=pool)

    server = MCPServer(
        "ioc-workflows-mcp",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
    )

    def state(ctx: Context) -> AppState:
        return ctx.request_context.lifespan_context

    def parse(value: str | None, ioc_type: str | None) -> Indicator:
        try:
            return Indicator.parse(value, ioc_type)
        except IndicatorError as exc:
            raise ToolError(str(exc)) from None

    def shaped(result: EnrichResult | PivotResult | CorrelateResult | AnalysisResult) -> CallToolResult:
        return CallToolResult(
            content=[TextContent(type="text", text=result.summary)],
            structured_content=result.model_dump(mode="json"),
        )

    @server.tool(title="Enrich an indicator", annotations=READ_ONLY)
    async def enrich_ioc(
        ioc_value: IocValue, ctx: Context, ioc_type: IocType = None, lookback_days: LookbackDays = 30
    ) -> Annotated[CallToolResult, EnrichResult]:
        """Enrich one indicator of compromise: GTI reputation, SIEM context and SIEM IOC matches, merged.

        Runs the runbook's enrichment in one call, all upstream lookups at once:
        - gti_analysis: GTI threat score "X/100", threat types, first submission date, community score;
        - siem_context: first/last seen, event count and affected internal systems in the look-back window;
        - ioc_matches: the SIEM's threat-feed matches of this indicator;
        - assessment: the sources cross-validated into a verdict, risk level and explained confidence.
        Private, reserved and documentation addresses are never sent to external threat intelligence
        (gti_analysis status skipped_policy); the SIEM is still asked. A section that failed is reported
        with its status and reason, and the verdict is then unknown, never clean.
        """
        indicator = parse(ioc_value, ioc_type)
        return shaped(await enrich(indicator, state(ctx).sources(ctx), lookback_days))

    @server.tool(title="Analyze an indicator", annotations=READ_ONLY)
    async def analyze_ioc(
        ioc_value: IocValue,
        ctx: Context,
        ioc_type: IocType = None,
        analysis_type: Annotated[
            Literal["enrich", "pivot", "correlate", "full"],
            Field(
                description="Workflow: enrich, pivot, correlate, or full (enrich, then pivot when the risk is "
                "high, then correlate)."
            ),
        ] = "enrich",
        pivot_depth: Annotated[JsonInt, Field(ge=1, le=3, description="Pivot depth, 1-3 (pivot and full).")] = 1,
        correlation_scope: CorrelationScope = "recent",
        lookback_days: LookbackDays = 30,
    ) -> Annotated[CallToolResult, AnalysisResult]:
        """Analyze one indicator of compromise with the chosen workflow; the entry point of the IOC runbook.

        Returns one shape for every analysis_type: the workflow sections that ran are filled
        (enrichment, pivot, correlation; each the same as enrich_ioc, pivot_ioc, correlate_ioc return) and
        the others are null. "full" runs the chain of investigate_ioc with pivot_if="high_risk" and adds
        chain (what it decided and why) and combined_assessment (threat x exposure -> priority P1-P4, with the
        findings that drove it). correlation_scope sets the SOAR case window (recent 30 days, extended 90,
        comprehensive 365); lookback_days the SIEM window. Use pivot_ioc for budgets and filters.
        """
        unread = [
            f"{name}={value!r}"
            for name, value, default, readers in (
                ("pivot_depth", pivot_depth, 1, ("pivot", "full")),
                ("correlation_scope", correlation_scope, "recent", ("correlate", "full")),
                ("lookback_days", lookback_days, 30, ("enrich", "correlate", "full")),
            )
            if value != default and analysis_type not in readers
        ]
        if unread:
            raise ToolError(
                f"analysis_type={analysis_type!r} does not read {', '.join(unread)}: leave it out, or choose the "
                "analysis_type that uses it (pivot_depth: pivot, full; correlation_scope: correlate, full; "
                "lookback_days: enrich, correlate, full)"
            )
        indicator = parse(ioc_value, ioc_type)
        sources = state(ctx).sources(ctx)
        if analysis_type == "enrich":
            result = single("enrich", await enrich(indicator, sources, lookback_days))
        elif analysis_type == "pivot":
            result = single("pivot", await run_pivot(ctx, indicator, pivot_depth, None, None, None))
        elif analysis_type == "correlate":
            result = single("correlate", await correlate(indicator, sources, correlation_scope, lookback_days))
        else:
            result = await run_investigate(
                ctx, indicator, pivot_depth, correlation_scope, lookback_days, "high_risk", 2
            )
        return shaped(result)

    async def run_investigate(
        ctx: Context,
        indicator: Indicator,
        depth: int,
        scope: str,
        lookback_days: int,
        pivot_if: PivotIf,
        related_budget: int,
    ) -> AnalysisResult:
        async def progress(done: float, total: float | None, message: str | None) -> None:
            await ctx.report_progress(done, total, message)

        sources = state(ctx).sources(ctx)
        return await investigate(indicator, sources, depth, scope, lookback_days, pivot_if, related_budget, progress)

    @server.tool(title="Investigate an indicator: enrich, pivot, correlate", annotations=READ_ONLY)
    async def investigate_ioc(
        ioc_value: IocValue,
        ctx: Context,
        ioc_type: IocType = None,
        pivot_depth: Annotated[JsonInt, Field(ge=1, le=3, description="Pivot depth, 1-3.")] = 2,
        correlation_scope: CorrelationScope = "recent",
        lookback_days: LookbackDays = 30,
        pivot_if: Annotated[
            PivotIf,
            Field(description='When to pivot: "high_risk" (enrichment risk critical or high), "always", "never".'),
        ] = "high_risk",
        related_budget: Annotated[
            JsonInt, Field(ge=0, le=5, description="How many significant pivot findings to correlate too (0-5).")
        ] = 2,
    ) -> Annotated[CallToolResult, AnalysisResult]:
        """The whole IOC runbook in one call: enrich, pivot when the risk calls for it, correlate, merged.

        1. enrich the indicator (GTI + SIEM, cross-validated);
        2. pivot through GTI relationships when pivot_if says so: by default only when the enrichment's risk
           is critical or high (a pivot costs many upstream calls and threat-intelligence quota);
        3. correlate the indicator with SOAR cases (correlation_scope: recent 30 days, extended 90,
           comprehensive 365) and SIEM alerts and events (lookback_days), and then the most significant pivot
           findings (malicious or suspicious, nearest first), at most related_budget of them.
        Returns enrichment, pivot (null when skipped), correlation, related_correlations, chain (what was
        decided and why) and combined_assessment (threat level, exposure level, priority P1-P4 and the findings
        that drove it). Answers already fetched in this session (an earlier enrich_ioc of the same indicator)
        are reused, not fetched again. Progress notifications follow the three steps.
        """
        indicator = parse(ioc_value, ioc_type)
        result = await run_investigate(
            ctx, indicator, pivot_depth, correlation_scope, lookback_days, pivot_if, related_budget
        )
        return shaped(result)

    async def run_pivot(
        ctx: Context,
        indicator: Indicator,
        depth: int,
        relationships: list[str] | dict[str, list[str]] | None,
        budget: PivotBudget | None,
        filters: PivotFilters | None,
    ) -> PivotResult:
        async def progress(done: float, total: float | None, message: str | None) -> None:
            await ctx.report_progress(done, total, message)

        try:
            return await pivot(indicator, state(ctx).sources(ctx), depth, relationships, budget, filters, progress)
        except PivotArgumentError as exc:
            raise ToolError(str(exc)) from None

    @server.tool(title="Pivot from an indicator to related infrastructure and campaigns", annotations=READ_ONLY)
    async def pivot_ioc(
        ioc_value: IocValue,
        ctx: Context,
        ioc_type: IocType = None,
        pivot_depth: Annotated[
            JsonInt, Field(ge=1, le=3, description="Hops to explore, 1-3: 1 is the indicator's own relationships.")
        ] = 1,
        relationships: Annotated[
            list[str] | dict[str, list[str]] | None,
            Field(
                description="Override the relationship sets: a list of GTI relationship names (each used for every "
                'entity type that accepts it) or {"domain"|"ip"|"file"|"url": [names]}. Default: domain '
                "resolutions, communicating_files, downloaded_files, urls, subdomains, associations; ip the same "
                "without subdomains; file contacted_domains, contacted_ips, contacted_urls, dropped_files, "
                "execution_parents, associations; url contacted_domains, contacted_ips, downloaded_files, "
                "last_serving_ip_address, network_location, associations."
            ),
        ] = None,
        budget: Annotated[
            PivotBudget | None,
            Field(description="Limits: max_calls, max_entities_per_level, max_entities, max_items_per_relationship."),
        ] = None,
        min_verdict: Annotated[
            Literal["clean", "suspicious", "malicious"] | None,
            Field(description="Keep only related entities at least this bad; unknown verdicts are left out."),
        ] = None,
        min_score: Annotated[
            JsonInt | None, Field(ge=0, le=100, description="Keep only related entities with a threat score >= this.")
        ] = None,
        max_age_days: Annotated[
            JsonInt | None, Field(ge=1, le=36500, description="Keep only related entities seen within this many days.")
        ] = None,
    ) -> Annotated[CallToolResult, PivotResult]:
        """Pivot from one indicator through Google Threat Intelligence relationships, to depth 1-3, and attribute it.

        Explores breadth first, level by level, best entities first (malicious, suspicious, unknown, clean),
        each level's calls at once, every entity expanded once at most, within a budget (default 150 upstream
        calls, 10 entities per level, 200 entities, 20 items per relationship) that the result reports as used,
        with why the graph was cut. Never expands through private/reserved/documentation addresses, the bundled
        known-benign list (public resolvers, CDN front ends, empty-file hashes), GTI-benign or CDN-tagged
        entities, or hubs (a relationship that fills its limit on a non-malicious entity, or 100+ items): each
        stays a leaf with its reason. Returns direct_relationships (related_domains, related_ips, related_files),
        campaign_context (threat_actor, campaign_name from associated GTI collections with the number of
        independent paths; null with a reason when the data supports none; infrastructure_overlap,
        timeline_span), confidence_assessment (relationship, attribution, infrastructure; formulas in
        scoring.py), the graph (nodes, edges, one record per relationship call with possibly_truncated),
        budget usage and what the filters left out, counted per reason. A failed upstream call marks its edge
        set incomplete; the rest of the graph stands. Progress notifications are sent when the caller asks.
        """
        indicator = parse(ioc_value, ioc_type)
        filters = PivotFilters(min_verdict=min_verdict, min_score=min_score, max_age_days=max_age_days)
        return shaped(await run_pivot(ctx, indicator, pivot_depth, relationships, budget, filters))

    @server.tool(title="Correlate an indicator with the organization's cases and alerts", annotations=READ_ONLY)
    async def correlate_ioc(
        ioc_value: IocValue,
        ctx: Context,
        ioc_type: IocType = None,
        correlation_scope: CorrelationScope = "recent",
        lookback_days: LookbackDays = 30,
    ) -> Annotated[CallToolResult, CorrelateResult]:
        """Has this indicator touched the organization, where, and how often? SOAR cases + SIEM alerts and events.

        - correlation_scope sets the SOAR case window: recent = 30 days, extended = 90, comprehensive = 365.
          Cases are read newest first; a case matches when one of its alert entities is the indicator
          (case-insensitive; a URL also matches its host) or its title/description names it, defanged or not.
        - lookback_days sets the SIEM window (1-365 days) for open alerts on the entity and UDM events.
        Returns case_correlations (count, ids, first occurrence, most recent), pattern_analysis (attack
        patterns, affected systems, organizational scope), risk_assessment (exposure, recurrence, business
        impact by documented formulas), the matched cases with why each matched, the affected systems and
        the related alerts. A failed source is a section status; the levels it feeds are then unknown.
        """
        indicator = parse(ioc_value, ioc_type)
        return shaped(await correlate(indicator, state(ctx).sources(ctx), correlation_scope, lookback_days))

    _forbid_unknown_arguments(server)
    return server


def _forbid_unknown_arguments(server: MCPServer) -> None:
    """A misspelled argument (`depth` for `pivot_depth`) must be an error, not silently ignored: an agent that
    gets a name wrong would never find out. MCPServer has no public switch for it, so each tool's argument
    model is narrowed here, and its input schema says so (additionalProperties: false). Its errors are
    rewritten to name the argument, what it got and what it takes (:func:`_readable`)."""
    for tool in server._tool_manager.list_tools():
        tool.fn_metadata.arg_model = _strict_arguments(tool.name, tool.fn_metadata.arg_model)
        tool.parameters["additionalProperties"] = False


def _strict_arguments(tool_name: str, loose: type[BaseModel]) -> type[BaseModel]:
    class Strict(loose):  # type: ignore[valid-type,misc]
        model_config = ConfigDict(**loose.model_config, extra="forbid")

        @classmethod
        def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(obj, dict):
                # Many clients send null for "not given": an optional argument that has a default takes it.
                obj = {
                    key: value
                    for key, value in obj.items()
                    if not (value is None and key in cls.model_fields and _has_default(cls.model_fields[key]))
                }
            try:
                return super().model_validate(obj, *args, **kwargs)
            except ValidationError as exc:
                raise _readable(exc, tool_name, loose) from None

    Strict.__name__ = Strict.__qualname__ = loose.__name__
    return Strict


def _fields_at(model: type[BaseModel], path: tuple[str | int, ...]) -> list[str] | None:
    """The field names of the (nested) model at ``path`` of ``model``'s arguments, if there is one."""
    for part in path:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        nested = [t for t in (field.annotation, *getattr(field.annotation, "__args__", ())) if _is_model(t)]
        if not nested:
            return None
        model = nested[0]
    return list(model.model_fields)


def _has_default(field: FieldInfo) -> bool:
    return not field.is_required() and field.default is not None


def _is_model(candidate: Any) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)


def _json(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _readable(exc: ValidationError, tool_name: str, arguments: type[BaseModel]) -> ValidationError:
    """The same errors without pydantic's links and model names: each says which argument, what was
    wrong, what it got (as JSON), and what it takes (the names, or the argument's description). Still a
    ValidationError, so the SDK reports it as a tool error the caller can correct."""
    by_place: dict[tuple[str | int, ...], list[str]] = {}
    for error in exc.errors():
        # a union reports one error per member, located at the member's type ("list[str]"): one place
        loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and "[" in part))
        if error["type"] == "extra_forbidden":
            accepted = _fields_at(arguments, loc[:-1])
            takes = f"; {'it' if loc[:-1] else tool_name} takes: {', '.join(accepted)}" if accepted else ""
            message = f"unknown {'field' if len(loc) > 1 else 'argument'}{takes}"
        elif error["type"] == "missing":
            message = "required, and missing"
        else:
            message = re.sub(r" or instance of \w+", "", error["msg"])
            if "got" not in message:
                message += f"; got {_json(error.get('input'))}"
            field = arguments.model_fields.get(str(loc[0])) if loc else None
            if field is not None and field.description and len(loc) == 1:
                about = field.description.split(". ")[0].rstrip(".")
                message += f" ({about if len(about) <= 100 else about[:97] + '...'})"
        by_place.setdefault(loc, [])
        if message not in by_place[loc]:
            by_place[loc].append(message)
    lines = [
        {"type": PydanticCustomError("invalid_argument", " or ".join(messages)), "loc": loc, "input": None}
        for loc, messages in by_place.items()
    ]
    return ValidationError.from_exception_data(f"the arguments of {tool_name}", lines, hide_input=True)
