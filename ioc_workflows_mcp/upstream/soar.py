"""Facade of secops-soar-mcp (SOAR cases, alerts and entities).

The real server passes the SOAR REST JSON through verbatim and carries no structuredContent: a dict is
one text block, a list is one block per element. When the SOAR HTTP call fails, the tool returns
nothing: zero content blocks with isError false. There is no "find cases by indicator" endpoint.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from ioc_workflows_mcp.models import Status
from ioc_workflows_mcp.upstream.base import CallTrace, Facade
from ioc_workflows_mcp.upstream.pool import ToolOutput


def parse_json_blocks(output: ToolOutput, tool: str) -> Any:
    """A dict result (one block) or a list result (one block per element)."""
    if output.is_error:
        raise ValueError(f"{tool} failed: {output.text[:300]}")
    if not output.texts:
        raise LookupError(f"{tool} returned no content: the SOAR API call failed (the server hides the HTTP error)")
    items = [json.loads(text) for text in output.texts]
    return items[0] if len(items) == 1 and isinstance(items[0], dict) else items


class SoarFacade(Facade):
    upstream = "soar"
    tools: ClassVar[dict[str, frozenset[str]]] = {
        "list_cases": frozenset({"next_page_token"}),
    }

    async def list_cases(self, page_token: str | None, trace: CallTrace) -> dict[str, Any]:
        arguments = {"next_page_token": page_token} if page_token else {}
        output = await self._call(trace, "list_cases", arguments)
        try:
            body = parse_json_blocks(output, "list_cases")
        except (ValueError, LookupError) as exc:
            raise self.failure(Status.UNAVAILABLE, str(exc)) from None
        if not isinstance(body, dict):
            raise self.failure(Status.DEGRADED, "list_cases did not return an object")
        return body
