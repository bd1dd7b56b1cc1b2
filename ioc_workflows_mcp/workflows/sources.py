"""The upstream facades a workflow reads from, bundled with the settings that bound them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ioc_workflows_mcp.cache import SessionCache, SingleFlight
from ioc_workflows_mcp.settings import Config, Settings
from ioc_workflows_mcp.upstream.gti import GtiFacade
from ioc_workflows_mcp.upstream.pool import UpstreamPool
from ioc_workflows_mcp.upstream.siem import SiemFacade
from ioc_workflows_mcp.upstream.soar import SoarFacade


@dataclass(frozen=True)
class Sources:
    gti: GtiFacade
    siem: SiemFacade
    soar: SoarFacade
    settings: Settings
    data_mode: str
    cache: SessionCache | None = None
    # Entities of closed SOAR cases never change; kept for the life of these sources (one MCP session).
    case_entities: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_pool(cls, pool: UpstreamPool, config: Config, *, cached: bool = True) -> Sources:
        """Facades for one session: their own answer cache (unless ``cached`` is False) and flight group."""
        cache = config.settings.cache
        session = SessionCache(cache.max_entries, cache.ttl_seconds, cache.not_found_ttl_seconds) if cached else None
        flights = SingleFlight()
        return cls(
            gti=GtiFacade(pool, session, flights),
            siem=SiemFacade(pool, session, flights),
            soar=SoarFacade(pool, session, flights),
            settings=config.settings,
            data_mode=config.data_mode,
            cache=session,
        )
