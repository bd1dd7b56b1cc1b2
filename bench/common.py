"""Helpers shared by the measurements: statistics, call recording, product processes, /proc memory.

Nothing here changes product behaviour. Upstream calls are counted the way tests/test_cache.py counts them
(``pool.connections[name].calls``); :class:`CallLog` additionally wraps one pool instance's ``call`` to keep
each call's tool, arguments and start/end times, so a measurement can find repeated calls and the number
of sequential rounds an analysis took.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CONSOLE = str(Path(sys.executable).with_name("ioc-workflows-mcp"))

# Indicators from fixtures/README.md that GTI knows and the SIEM has something on.
INDICATORS = [
    "secure-update.example.net",
    "login.example.net",
    "203.0.113.66",
    "198.51.100.7",
    "docs.example.org",
    "https://login.example.net/reset",
    "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
]


# -- statistics ----------------------------------------------------------------------------------------


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return round(ordered[rank - 1], 3)


def ratio(num: float | None, den: float | None) -> float | None:
    if num is None or not den:
        return None
    return round(num / den, 3)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


# -- upstream call recording ---------------------------------------------------------------------------


@dataclass
class Call:
    upstream: str
    tool: str
    arguments: dict[str, Any]
    start: float
    end: float = 0.0


@dataclass
class CallLog:
    """Wraps ``pool.call`` of one pool instance (not the class) and records every call that reached it."""

    calls: list[Call] = field(default_factory=list)

    def install(self, pool: Any) -> None:
        original = pool.call

        async def recorded(upstream: str, tool: str, arguments: dict[str, Any]) -> Any:
            entry = Call(upstream, tool, dict(arguments), time.perf_counter())
            self.calls.append(entry)
            try:
                return await original(upstream, tool, arguments)
            finally:
                entry.end = time.perf_counter()

        pool.call = recorded

    def mark(self) -> int:
        return len(self.calls)

    def since(self, mark: int) -> list[Call]:
        return self.calls[mark:]


def pool_calls(pool: Any) -> dict[str, int]:
    """Calls that reached each upstream session (as tests/test_cache.py counts them)."""
    return {name: conn.calls for name, conn in pool.connections.items()}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before.get(name, 0) for name in after}


def repeated(calls: list[Call]) -> int:
    """Calls with the same upstream, tool and arguments as an earlier call of the same analysis."""
    keys = Counter((c.upstream, c.tool, json.dumps(c.arguments, sort_keys=True, default=str)) for c in calls)
    return sum(n - 1 for n in keys.values() if n > 1)


def rounds(calls: list[Call], latency_s: float) -> float:
    """The analysis' upstream time measured in latencies: the time during which at least one call was in
    flight, divided by one latency. Calls run together count once; calls run one after another add up."""
    if not calls or latency_s <= 0:
        return 0.0
    spans = sorted((c.start, c.end or c.start) for c in calls)
    busy, cur_start, cur_end = 0.0, spans[0][0], spans[0][1]
    for start, end in spans[1:]:
        if start > cur_end:
            busy += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    busy += cur_end - cur_start
    return round(busy / latency_s, 2)


def per_upstream(calls: list[Call]) -> dict[str, int]:
    return dict(sorted(Counter(c.upstream for c in calls).items()))


def per_tool(calls: list[Call]) -> dict[str, int]:
    return dict(sorted(Counter(f"{c.upstream}.{c.tool}" for c in calls).items()))


# -- processes -----------------------------------------------------------------------------------------


def product_env(**extra: str) -> dict[str, str]:
    """Environment for a product or stand-in process: ours minus any config file, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "IOC_WORKFLOWS_CONFIG"}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> float:
    """Seconds until 127.0.0.1:port accepts a connection."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return time.perf_counter() - started
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class HttpServer:
    """``ioc-workflows-mcp serve --transport http`` on 127.0.0.1 only, as a child process."""

    def __init__(self, env: dict[str, str], config: str | None = None):
        self.port = free_port()
        args = [CONSOLE]
        if config:
            args += ["--config", config]
        args += ["serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(self.port)]
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        self.listen_s = wait_port(self.port)
        self.url = f"http://127.0.0.1:{self.port}/mcp"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self) -> HttpServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# -- memory --------------------------------------------------------------------------------------------


def parent_pid(pid: int) -> int | None:
    """The parent of ``pid`` from /proc (None when it is gone). The tests read processes with it too."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (ppid := parent_pid(int(entry))) is not None:
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int) -> list[int]:
    tree, out, todo = _children(), [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(tree.get(current, []))
    return out


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mib(pid: int) -> dict[str, Any]:
    pids = descendants(pid)
    per = {p: rss_kib(p) for p in pids}
    return {
        "server_mib": round(per.get(pid, 0) / 1024, 1),
        "children_mib": round(sum(v for p, v in per.items() if p != pid) / 1024, 1),
        "total_mib": round(sum(per.values()) / 1024, 1),
        "processes": len(pids),
    }
