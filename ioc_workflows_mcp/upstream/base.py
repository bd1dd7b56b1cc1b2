"""What the facades share: a call trace for provenance, and turning a call into data or a failure."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ioc_workflows_mcp.cache import SessionCache, SingleFlight, call_key
from ioc_workflows_mcp.models import Provenance, Status
from ioc_workflows_mcp.upstream.pool import ToolOutput, UpstreamFailure, UpstreamPool

# Upstream text that ends up in a result is untrusted; this caps each string we keep.
UNTRUSTED_TEXT_LIMIT = 500


def cap_untrusted(text: str | None, limit: int = UNTRUSTED_TEXT_LIMIT) -> str | None:
    """Cap a free-text string from an upstream; mark the cut so nobody mistakes it for the whole."""
    if text is None:
        return None
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class CallTrace:
    """Provenance of every upstream call one workflow made, in the order they finished."""

    calls: list[Provenance] = field(default_factory=list)

    def record(
        self, upstream: str, tool: str, arguments: dict[str, Any], outcome: str, started: float | None
    ) -> Provenance:
        duration = None if started is None else round((time.perf_counter() - started) * 1000, 1)
        entry = Provenance(upstream=upstream, tool=tool, arguments=arguments, outcome=outcome, duration_ms=duration)
        self.calls.append(entry)
        return entry


def ordered(calls: list[Provenance]) -> list[Provenance]:
    """Calls in a stable order (upstream, tool, arguments): concurrent calls finish in any order, and the
    same analysis must give the same result."""
    return sorted(calls, key=lambda c: (c.upstream, c.tool, json.dumps(c.arguments, sort_keys=True, default=str)))


def aggregate(calls: list[Provenance], keep: int = 3) -> list[Provenance]:
    """Provenance that stays readable: a tool called more than ``keep`` times becomes one entry with the
    call count, one call's arguments as an example, the outcomes and the summed duration."""
    groups: dict[tuple[str, str], list[Provenance]] = {}
    for call in ordered(calls):
        groups.setdefault((call.upstream, call.tool), []).append(call)
    out: list[Provenance] = []
    for (upstream, tool), group in groups.items():
        if len(group) <= keep:
            out.extend(group)
            continue
        failed = [call.outcome for call in group if call.outcome != "ok"]
        outcome = "ok" if not failed else f"{len(failed)} of {len(group)} not ok ({', '.join(sorted(set(failed)))})"
        total = sum(call.duration_ms or 0 for call in group)
        # Calls finish in any order; the example shown is picked by content, so results stay deterministic.
        example = min(group, key=lambda call: json.dumps(call.arguments, sort_keys=True, default=str)).arguments
        out.append(
            Provenance(
                upstream=upstream,
                tool=tool,
                arguments={"calls": len(group), "example": example},
                outcome=outcome,
                duration_ms=round(total, 1),
            )
        )
    return out


class Facade:
    """Base of the gti, siem and soar facades: one upstream, calls recorded in a trace.

    Every call goes through the session cache (when the facade has one) and a single-flight group, so
    identical calls made while one is in flight run once, and a repeated analysis in one session makes
    no upstream call at all.
    """

    upstream = ""
    # tool name -> argument names we send; `doctor` checks the upstream accepts exactly these.
    tools: ClassVar[dict[str, frozenset[str]]] = {}

    def __init__(self, pool: UpstreamPool, cache: SessionCache | None = None, flights: SingleFlight | None = None):
        self.pool = pool
        self.cache = cache
        self.flights = flights or SingleFlight()

    def result_kind(self, tool: str, output: ToolOutput) -> str | None:
        """How long an answer may be kept: "found", "not_found", or None for never (a failure).

        The base rule: an isError result or an empty one is a failure. Facades refine it with what they
        know of their upstream's in-band errors and not-found answers.
        """
        return None if output.is_error or not output.texts else "found"

    async def _call(self, trace: CallTrace, tool: str, arguments: dict[str, Any]) -> ToolOutput:
        key = call_key(self.upstream, tool, arguments)
        if self.cache is not None:
            hit = self.cache.lookup(key)
            if hit is not None:
                cached, age = hit
                trace.calls.append(
                    Provenance(
                        upstream=self.upstream,
                        tool=tool,
                        arguments=arguments,
                        outcome="ok",
                        cached=True,
                        cache_age_seconds=round(age, 1),
                    )
                )
                return cached
        started = time.perf_counter()
        try:
            output, shared = await self.flights.run(key, lambda: self.pool.call(self.upstream, tool, arguments))
        except UpstreamFailure as failure:
            trace.record(self.upstream, tool, arguments, failure.status.value, started)
            raise
        entry = trace.record(self.upstream, tool, arguments, "error" if output.is_error else "ok", started)
        entry.cached = shared
        if self.cache is not None and not shared:
            self.cache.put(key, output, self.result_kind(tool, output))
        return output

    def failure(self, status: Status, message: str, retry_after: float | None = None) -> UpstreamFailure:
        return UpstreamFailure(self.upstream, status, message, retry_after)
