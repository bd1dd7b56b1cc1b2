"""Caching in front of the upstreams: single-flight today; the session TTL cache will live here too.

:class:`SingleFlight` makes identical calls that are in flight at the same time run once: the first
caller runs the call, later callers with the same key wait for it and get the same answer (or the same
exception). Nothing is kept after the call finishes, so it never serves stale data; a TTL cache can sit in
front of it. Keys must be hashable and must never contain secrets (they are plain tool names and arguments).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio
from cachetools import TLRUCache

T = TypeVar("T")

__all__ = ["SessionCache", "SingleFlight", "call_key"]


def call_key(upstream: str, tool: str, arguments: dict[str, Any]) -> tuple[str, str, str]:
    """A stable key for one upstream tool call: the same tool with the same arguments, in any order."""
    return upstream, tool, json.dumps(arguments, sort_keys=True, default=str, separators=(",", ":"))


@dataclass
class _Flight(Generic[T]):
    done: anyio.Event = field(default_factory=anyio.Event)
    value: Any = None
    error: BaseException | None = None
    waiters: int = 0


class SingleFlight:
    """Run each key at most once at a time; concurrent callers with the same key share the result."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight[Any]] = {}
        self.started = 0  # calls actually made
        self.joined = 0  # calls answered by joining one already in flight

    def in_flight(self, key: Hashable) -> bool:
        return key in self._flights

    async def run(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """``(result, shared)``: ``shared`` is True when another caller's identical call answered it.

        An exception raised by ``fn`` is raised to every caller of that flight. Cancelling a waiter does
        not cancel the call; cancelling the caller that runs it makes the waiters see the cancellation
        as an error of their own and retry (the next one runs the call).
        """
        while True:
            flight = self._flights.get(key)
            if flight is None:
                break
            flight.waiters += 1
            await flight.done.wait()
            if isinstance(flight.error, anyio.get_cancelled_exc_class()):
                continue  # the runner was cancelled, not the call's fault: try again
            self.joined += 1
            if flight.error is not None:
                raise flight.error
            return flight.value, True
        flight = _Flight()
        self._flights[key] = flight
        self.started += 1
        try:
            flight.value = await fn()
            return flight.value, False
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            del self._flights[key]
            flight.done.set()


class SessionCache:
    """Upstream answers kept for one MCP session, each for as long as its kind allows.

    A found result lives ``ttl_seconds``; a not-found result lives ``not_found_ttl_seconds`` (shorter: an
    indicator unknown today may be known tomorrow). Failures are never kept. The number of entries is
    bounded by ``max_entries`` (least recently used go first), so memory is bounded by the cache size.
    """

    def __init__(
        self,
        max_entries: int,
        ttl_seconds: float,
        not_found_ttl_seconds: float,
        timer: Callable[[], float] = time.monotonic,
    ):
        self._ttl = {"found": ttl_seconds, "not_found": not_found_ttl_seconds}
        self._timer = timer
        # entries are (value, ttl, stored at)
        self._data: TLRUCache[Hashable, tuple[Any, float, float]] | None = (
            TLRUCache(maxsize=max_entries, ttu=lambda _key, value, now: now + value[1], timer=timer)
            if max_entries
            else None
        )
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        found = self.lookup(key)
        return None if found is None else found[0]

    def lookup(self, key: Hashable) -> tuple[Any, float] | None:
        """``(value, age in seconds)`` of a live entry, or None."""
        entry = self._data.get(key) if self._data is not None else None
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        return entry[0], self._timer() - entry[2]

    def put(self, key: Hashable, value: Any, kind: str | None) -> None:
        """Keep ``value`` under ``key`` for the TTL of ``kind`` ("found", "not_found"); None keeps nothing."""
        ttl = self._ttl.get(kind or "", 0)
        if self._data is not None and ttl > 0:
            self._data[key] = (value, ttl, self._timer())

    def __len__(self) -> int:
        return len(self._data) if self._data is not None else 0
