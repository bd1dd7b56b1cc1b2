"""The upstream facades a workflow reads from, bundled with the settings that bound them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    # Entities of closed SOAR cases never change; kept for the life of these sources (one MCP session).
    case_entities: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_pool(cls, pool: UpstreamPool, config: Config) -> Sources:
        return cls(
            gti=GtiFacade(pool),
            siem=SiemFacade(pool),
            soar=SoarFacade(pool),
            settings=config.settings,
            data_mode=config.data_mode,
        )
