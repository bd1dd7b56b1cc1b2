"""Facade of secops-soar-mcp (SOAR cases, alerts and entities).

The real server passes the SOAR REST JSON through verbatim and carries no structuredContent: a dict is
one text block, a list is one block per element. When the SOAR HTTP call fails, the tool returns
nothing: zero content blocks with isError false, so "no content" is the only sign of an API error.
There is no "find cases by indicator" endpoint and ``list_cases`` has no filter (research/upstreams.md §4).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ioc_workflows_mcp.models import Status
from ioc_workflows_mcp.upstream.base import CallTrace, Facade
from ioc_workflows_mcp.upstream.pool import ToolOutput


class SoarOutputError(ValueError):
    """A SOAR tool result we cannot use; ``empty`` when the server hid an HTTP error."""

    def __init__(self, message: str, empty: bool = False):
        super().__init__(message)
        self.empty = empty


def parse_json_blocks(output: ToolOutput, tool: str) -> Any:
    """A dict result (one block) or a list result (one block per element)."""
    if output.is_error:
        raise SoarOutputError(f"{tool} failed: {output.text[:300]}")
    if not output.texts:
        raise SoarOutputError(
            f"{tool} returned no content: the SOAR API call failed (the server hides the HTTP status)", empty=True
        )
    try:
        items = [json.loads(text) for text in output.texts]
    except json.JSONDecodeError as exc:
        raise SoarOutputError(f"{tool} returned text that is not JSON: {exc}") from None
    return items[0] if len(items) == 1 and isinstance(items[0], dict) else items


@dataclass(frozen=True)
class SoarCase:
    id: str
    title: str
    description: str
    status: str | None
    priority: str | None
    stage: str | None
    assignee: str | None
    environment: str | None
    created: str | None
    updated: str | None
    tags: tuple[str, ...] = ()

    @property
    def closed(self) -> bool:
        return (self.status or "").lower() in ("closed", "close", "resolved")

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SoarCase:
        tags = tuple(
            str(tag.get("displayName"))
            for tag in raw.get("tags") or []
            if isinstance(tag, dict) and tag.get("displayName")
        )
        return cls(
            id=str(raw.get("id", "")),
            title=str(raw.get("displayName") or ""),
            description=str(raw.get("description") or ""),
            status=raw.get("status"),
            priority=raw.get("priority"),
            stage=raw.get("stage"),
            assignee=raw.get("assignee"),
            environment=raw.get("environment"),
            created=raw.get("createTime"),
            updated=raw.get("updateTime"),
            tags=tags,
        )


@dataclass(frozen=True)
class CasePage:
    cases: list[SoarCase]
    next_token: str | None
    total: int | None


@dataclass(frozen=True)
class SoarEntity:
    identifier: str
    entity_type: str | None
    alert_group: str
    environment: str | None = None
    suspicious: bool | None = None
    internal: bool | None = None


@dataclass(frozen=True)
class CaseAlerts:
    """The alert groups of a case and the rule names behind them."""

    group_ids: list[str]
    rules: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EntityHit:
    """One row of SOAR's entity search."""

    identifier: str
    entity_type: str | None
    environment: str | None
    cases_count: int


class SoarFacade(Facade):
    upstream = "soar"
    tools: ClassVar[dict[str, frozenset[str]]] = {
        "list_cases": frozenset({"next_page_token"}),
        "list_alert_group_identifiers_by_case": frozenset({"case_id"}),
        "get_entities_by_alert_group_identifiers": frozenset({"case_id", "alert_group_identifiers"}),
        "search_entity": frozenset({"term"}),
    }

    def result_kind(self, tool: str, output: ToolOutput) -> str | None:
        """Only a JSON answer is kept: no content (a hidden HTTP error) or text that is not JSON is a failure."""
        try:
            parse_json_blocks(output, tool)
        except SoarOutputError:
            return None
        return "found"

    async def _json(self, trace: CallTrace, tool: str, arguments: dict[str, Any]) -> Any:
        output = await self._call(trace, tool, arguments)
        try:
            return parse_json_blocks(output, tool)
        except SoarOutputError as exc:
            raise self.failure(Status.UNAVAILABLE, str(exc)) from None

    async def list_cases(self, page_token: str | None, trace: CallTrace) -> CasePage:
        arguments = {"next_page_token": page_token} if page_token else {}
        body = await self._json(trace, "list_cases", arguments)
        if not isinstance(body, dict) or not isinstance(body.get("cases"), list):
            raise self.failure(Status.DEGRADED, "list_cases did not return an object with a cases list")
        cases = [SoarCase.from_json(raw) for raw in body["cases"] if isinstance(raw, dict)]
        token = body.get("nextPageToken") or None
        total = body.get("totalSize") if isinstance(body.get("totalSize"), int) else None
        return CasePage(cases=cases, next_token=token, total=total)

    async def alert_groups(self, case_id: str, trace: CallTrace) -> list[str]:
        body = await self._json(trace, "list_alert_group_identifiers_by_case", {"case_id": case_id})
        alerts = body.get("caseAlerts") if isinstance(body, dict) else None
        if not isinstance(alerts, list):
            return []
        groups = [
            str(a["alertGroupIdentifier"]) for a in alerts if isinstance(a, dict) and a.get("alertGroupIdentifier")
        ]
        return list(dict.fromkeys(groups))

    async def entities(self, case_id: str, groups: list[str], trace: CallTrace) -> list[SoarEntity]:
        if not groups:
            return []
        arguments = {"case_id": case_id, "alert_group_identifiers": groups}
        body = await self._json(trace, "get_entities_by_alert_group_identifiers", arguments)
        rows = body if isinstance(body, list) else [body]
        found: list[SoarEntity] = []
        for row in rows:
            if not isinstance(row, dict):
                continue
            group = str(row.get("alertGroupIdentifier") or "")
            for entity in row.get("entities") or []:
                if isinstance(entity, dict) and entity.get("identifier"):
                    found.append(
                        SoarEntity(
                            identifier=str(entity["identifier"]),
                            entity_type=entity.get("entityType"),
                            alert_group=group,
                            environment=entity.get("environment"),
                            suspicious=entity.get("isSuspicious"),
                            internal=entity.get("isInternal"),
                        )
                    )
        return found

    async def search_entity(self, term: str, trace: CallTrace) -> list[EntityHit]:
        body = await self._json(trace, "search_entity", {"term": term})
        rows = body.get("objectsList") if isinstance(body, dict) else None
        hits: list[EntityHit] = []
        for row in rows or []:
            if isinstance(row, dict) and row.get("identifier"):
                count = row.get("casesCount")
                hits.append(
                    EntityHit(
                        identifier=str(row["identifier"]),
                        entity_type=row.get("type"),
                        environment=row.get("environment"),
                        cases_count=count if isinstance(count, int) else 0,
                    )
                )
        return hits
