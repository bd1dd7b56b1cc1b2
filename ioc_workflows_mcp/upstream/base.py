"""What the facades share: a call trace for provenance, and turning a call into data or a failure."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

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


def aggregate(calls: list[Provenance], keep: int = 3) -> list[Provenance]:
    """Provenance that stays readable: a tool called more than ``keep`` times becomes one entry with the
    call count, the first call's arguments, the outcomes and the summed duration."""
    groups: dict[tuple[str, str], list[Provenance]] = {}
    for call in calls:
        groups.setdefault((call.upstream, call.tool), []).append(call)
    out: list[Provenance] = []
    for (upstream, tool), group in groups.items():
        if len(group) <= keep:
            out.extend(group)
            continue
        failed = [call.outcome for call in group if call.outcome != "ok"]
        outcome = "ok" if not failed else f"{len(failed)} of {len(group)} not ok ({', '.join(sorted(set(failed)))})"
        total = sum(call.duration_ms or 0 for call in group)
        out.append(
            Provenance(
                upstream=upstream,
                tool=tool,
                arguments={"calls": len(group), "first": group[0].arguments},
                outcome=outcome,
                duration_ms=round(total, 1),
            )
        )
    return out


class Facade:
    """Base of the gti, siem and soar facades: one upstream, calls recorded in a trace."""

    upstream = ""
    # tool name -> argument names we send; `doctor` checks the upstream accepts exactly these.
    tools: ClassVar[dict[str, frozenset[str]]] = {}

    def __init__(self, pool: UpstreamPool):
        self.pool = pool

    async def _call(self, trace: CallTrace, tool: str, arguments: dict[str, Any]) -> ToolOutput:
        started = time.perf_counter()
        try:
            output = await self.pool.call(self.upstream, tool, arguments)
        except UpstreamFailure as failure:
            trace.record(self.upstream, tool, arguments, failure.status.value, started)
            raise
        trace.record(self.upstream, tool, arguments, "error" if output.is_error else "ok", started)
        return output

    def failure(self, status: Status, message: str, retry_after: float | None = None) -> UpstreamFailure:
        return UpstreamFailure(self.upstream, status, message, retry_after)
