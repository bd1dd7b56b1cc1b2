"""One measurement per process: ``python bench/measure.py NAME [--runs N ...]`` prints one JSON object.

``bench/run.py`` runs every measurement this way, each in a fresh process with its own upstream stand-ins.
Names: enrich, pivot, repeat, correlate, overhead, throughput, startup (items (a)-(g) of issue 7).

The stand-ins read ``IOC_STANDIN_LATENCY_MS`` / ``IOC_STANDIN_JITTER_MS`` when they start, and the product
passes both through to the stand-ins it starts, so this process sets them before loading the config.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import itertools

from bench import common
from bench.common import CallLog, median, ms, pct, ratio


def _set_latency(latency_ms: float, jitter_ms: float) -> None:
    os.environ["IOC_STANDIN_LATENCY_MS"] = str(latency_ms)
    os.environ["IOC_STANDIN_JITTER_MS"] = str(jitter_ms)
    os.environ.pop("IOC_WORKFLOWS_CONFIG", None)


def _load(config_path: str | None = None) -> Any:
    from ioc_workflows_mcp.settings import load_config

    return load_config(config_path)


@contextlib.asynccontextmanager
async def _plain_clients(names: list[str]) -> Any:
    """Plain ``mcp.Client`` sessions to the stand-ins, one per name, as a runbook agent's host would hold."""
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    devnull = open(os.devnull, "w")  # noqa: SIM115
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(devnull.close)
        clients: list[Any] = []
        for name in names:
            upstream = name.split("#")[0]
            params = StdioServerParameters(
                command=common.PYTHON,
                args=["-m", "ioc_workflows_mcp.offline", upstream],
                env=common.product_env(),
            )
            client = Client(stdio_client(params, errlog=devnull), mode="legacy")
            clients.append(await stack.enter_async_context(client))
        yield dict(zip(names, clients, strict=True))


def _sections_provenance(data: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key in ("gti_analysis", "siem_context", "ioc_matches"):
        out.extend(data.get(key, {}).get("section", {}).get("provenance", []))
    return out


# -- (a) enrich ----------------------------------------------------------------------------------------


async def m_enrich(opts: argparse.Namespace) -> dict[str, Any]:
    from mcp import Client

    from ioc_workflows_mcp.indicator import Indicator
    from ioc_workflows_mcp.upstream.pool import UpstreamPool
    from ioc_workflows_mcp.workflows.enrich import enrich
    from ioc_workflows_mcp.workflows.sources import Sources

    value = "secure-update.example.net"
    indicator = Indicator.parse(value)
    config = _load()
    ours, ours_mcp, baseline, single, secops_one, secops_three = [], [], [], [], [], []
    calls_ours: list[int] = []
    rounds_ours: list[float] = []
    latency_s = opts.latency_ms / 1000
    async with UpstreamPool(config) as pool, _plain_clients(["gti", "secops", "secops#2", "secops#3"]) as plain:
        log = CallLog()
        log.install(pool)
        await enrich(Indicator.parse("login.example.net"), Sources.from_pool(pool, config))  # start the upstreams
        mark = log.mark()
        await enrich(indicator, Sources.from_pool(pool, config))
        replay = [(c.upstream, c.tool, c.arguments) for c in log.since(mark)]
        secops_calls = [(tool, args) for up, tool, args in replay if up == "secops"]
        with common.HttpServer(common.product_env()) as server:
            async with Client(server.url, mode="legacy") as warm:  # start the server's upstreams
                await warm.call_tool("enrich_ioc", {"ioc_value": "login.example.net"})
            for _ in range(opts.runs):
                # ours, in process: a fresh session cache each run, so every call reaches the upstream
                before, mark = common.pool_calls(pool), log.mark()
                t0 = time.perf_counter()
                await enrich(indicator, Sources.from_pool(pool, config))
                ours.append(ms(time.perf_counter() - t0))
                calls_ours.append(sum(common.delta(before, common.pool_calls(pool)).values()))
                rounds_ours.append(common.rounds(log.since(mark), latency_s))
                # ours, as an MCP host sees it: enrich_ioc over streamable HTTP, a new session (empty cache)
                async with Client(server.url, mode="legacy") as client:
                    t0 = time.perf_counter()
                    result = await client.call_tool("enrich_ioc", {"ioc_value": value})
                    ours_mcp.append(ms(time.perf_counter() - t0))
                    assert not any(p["cached"] for p in _sections_provenance(result.structured_content or {}))
                # the runbook baseline: the same upstream calls one after another through plain clients
                t0 = time.perf_counter()
                for upstream, tool, args in replay:
                    await plain[upstream].call_tool(tool, args)
                baseline.append(ms(time.perf_counter() - t0))
                # one upstream latency, measured: one call through a plain client
                t0 = time.perf_counter()
                await plain["gti"].call_tool(*next((t, a) for u, t, a in replay if u == "gti"))
                single.append(ms(time.perf_counter() - t0))
                # the secops calls at once on ONE session (what the pool does) vs on three sessions
                t0 = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    for tool, args in secops_calls:
                        tg.start_soon(plain["secops"].call_tool, tool, args)
                secops_one.append(ms(time.perf_counter() - t0))
                t0 = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    for (tool, args), name in zip(secops_calls, ["secops", "secops#2", "secops#3"], strict=False):
                        tg.start_soon(plain[name].call_tool, tool, args)
                secops_three.append(ms(time.perf_counter() - t0))
    m_ours, m_single = median(ours), median(single)
    return {
        "indicator": value,
        "runs": opts.runs,
        "upstream_calls": {
            "ours": median(calls_ours),
            "baseline": len(replay),
            "per_tool": common.per_tool([common.Call(u, t, a, 0) for u, t, a in replay]),
        },
        "ours_ms": {"median": m_ours, "all": ours},
        "ours_mcp_http_ms": {"median": median(ours_mcp), "all": ours_mcp},
        "baseline_sequential_ms": {"median": median(baseline), "all": baseline},
        "one_upstream_call_ms": {"median": m_single, "all": single},
        "ratio_vs_injected_latency": ratio(m_ours, opts.latency_ms),
        "ratio_vs_measured_single_call": ratio(m_ours, m_single),
        "ratio_mcp_vs_measured_single_call": ratio(median(ours_mcp), m_single),
        "speedup_vs_baseline": ratio(median(baseline), m_ours),
        "upstream_rounds_median": median(rounds_ours),
        "secops_3_calls_one_session_ms": median(secops_one),
        "secops_3_calls_three_sessions_ms": median(secops_three),
        "target": "ratio <= 1.3",
    }


# -- (b) pivot -----------------------------------------------------------------------------------------


async def _pivot_runs(pool: Any, config: Any, log: CallLog, depth: int, runs: int, lat: float) -> dict[str, Any]:
    from ioc_workflows_mcp.indicator import Indicator
    from ioc_workflows_mcp.workflows.pivot import pivot
    from ioc_workflows_mcp.workflows.sources import Sources

    indicator = Indicator.parse("secure-update.example.net")
    walls, calls, rounds, reps = [], [], [], []
    budget: dict[str, Any] = {}
    per_tool: dict[str, int] = {}
    for _ in range(runs):
        before, mark = common.pool_calls(pool), log.mark()
        t0 = time.perf_counter()
        result = await pivot(indicator, Sources.from_pool(pool, config), pivot_depth=depth)
        walls.append(ms(time.perf_counter() - t0))
        calls.append(sum(common.delta(before, common.pool_calls(pool)).values()))
        made = log.since(mark)
        rounds.append(common.rounds(made, lat))
        reps.append(common.repeated(made))
        per_tool = common.per_tool(made)
        budget = result.budget.model_dump(mode="json")
        lists = len(result.graph.relationship_sets)
    expanded = budget.get("entities_expanded") or 0
    # gti-mcp returns one relationship of one entity per call, so expanding an entity costs one call per
    # relationship asked for (6 for a domain): the floor is those lists plus the indicator's own report.
    floor = lists + 1
    return {
        "wall_ms": {"median": median(walls), "all": walls},
        "upstream_calls": median(calls),
        "budget_calls": budget.get("calls"),
        "entities_expanded": expanded,
        "entities_in_graph": budget.get("entities_in_graph"),
        "per_level": budget.get("per_level"),
        "cut_reasons": budget.get("cut_reasons"),
        "calls_per_entity_expanded": ratio(median(calls), expanded),
        "relationship_lists": lists,
        "minimum_calls": floor,
        "calls_over_minimum": ratio(median(calls), floor),
        "repeated_calls": median(reps),
        "upstream_rounds": median(rounds),
        "per_tool": per_tool,
    }


async def m_pivot(opts: argparse.Namespace) -> dict[str, Any]:
    from ioc_workflows_mcp.upstream.pool import UpstreamPool

    lat = opts.latency_ms / 1000
    configs = {}
    for cap in (4, 64):
        path = Path(tempfile.mkdtemp(prefix="bench-cfg-")) / f"cap{cap}.json"
        path.write_text(json.dumps({"settings": {"upstreams": {"gti": {"max_concurrency": cap}}}}))
        configs[cap] = str(path)
    out: dict[str, Any] = {"indicator": "secure-update.example.net", "runs": opts.runs, "latency_ms": opts.latency_ms}
    async with (
        UpstreamPool(_load()) as pool,
        UpstreamPool(_load(configs[4])) as pool4,
        UpstreamPool(_load(configs[64])) as pool64,
    ):
        out["gti_max_concurrency"] = pool.config.settings.policy("gti").max_concurrency
        pools = {"default": pool, "cap4": pool4, "cap64": pool64}
        logs = {}
        for name, p in pools.items():
            logs[name] = CallLog()
            logs[name].install(p)
            await _pivot_runs(p, p.config, logs[name], 1, 1, lat)  # start the upstreams
        for depth in (2, 3):
            row = await _pivot_runs(pool, pool.config, logs["default"], depth, opts.runs, lat)
            row["wall_over_depth_x_latency"] = ratio(row["wall_ms"]["median"], depth * opts.latency_ms)
            for name in ("cap4", "cap64"):
                other = await _pivot_runs(pools[name], pools[name].config, logs[name], depth, opts.runs, lat)
                row[f"with_gti_max_concurrency_{name[3:]}"] = {
                    "wall_ms": other["wall_ms"]["median"],
                    "wall_over_depth_x_latency": ratio(other["wall_ms"]["median"], depth * opts.latency_ms),
                    "upstream_rounds": other["upstream_rounds"],
                    "upstream_calls": other["upstream_calls"],
                }
            out[f"depth{depth}"] = row
    return out


# -- (c) repeated analysis -----------------------------------------------------------------------------


async def m_repeat(opts: argparse.Namespace) -> dict[str, Any]:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    from ioc_workflows_mcp.indicator import Indicator
    from ioc_workflows_mcp.upstream.pool import UpstreamPool
    from ioc_workflows_mcp.workflows.enrich import enrich
    from ioc_workflows_mcp.workflows.investigate import investigate
    from ioc_workflows_mcp.workflows.pivot import pivot
    from ioc_workflows_mcp.workflows.sources import Sources

    value = "secure-update.example.net"
    indicator = Indicator.parse(value)
    out: dict[str, Any] = {"indicator": value, "runs": opts.runs}
    async with UpstreamPool(_load()) as pool:
        log = CallLog()
        log.install(pool)
        await investigate(Indicator.parse("login.example.net"), Sources.from_pool(pool, pool.config))  # start all
        sources = Sources.from_pool(pool, pool.config)
        rows = {}
        for name, fn in (
            ("enrich", lambda: enrich(indicator, sources)),
            ("pivot_depth2", lambda: pivot(indicator, sources, pivot_depth=2)),
            ("investigate", lambda: investigate(indicator, sources)),
        ):
            before = common.pool_calls(pool)
            t0 = time.perf_counter()
            await fn()
            cold = ms(time.perf_counter() - t0)
            cold_calls = sum(common.delta(before, common.pool_calls(pool)).values())
            before, mark = common.pool_calls(pool), log.mark()
            hits = []
            for _ in range(opts.runs):
                t0 = time.perf_counter()
                await fn()
                hits.append(ms(time.perf_counter() - t0))
            rows[name] = {
                "first_ms": cold,
                "first_upstream_calls": cold_calls,
                "repeat_upstream_calls_total": sum(common.delta(before, common.pool_calls(pool)).values()),
                "repeat_upstream_calls_per_tool": common.per_tool(log.since(mark)),
                "repeat_in_process_ms": {"p50": median(hits), "p99": pct(hits, 99)},
            }
        out["in_process"] = rows
    # the same through the server over stdio: one process is one session
    params = StdioServerParameters(command=common.CONSOLE, args=[], env=common.product_env())
    with open(os.devnull, "w") as devnull:
        async with Client(stdio_client(params, errlog=devnull), mode="legacy") as client:
            t0 = time.perf_counter()
            first = await client.call_tool("enrich_ioc", {"ioc_value": value})
            first_ms = ms(time.perf_counter() - t0)
            hits, upstream = [], 0
            for _ in range(opts.runs):
                t0 = time.perf_counter()
                again = await client.call_tool("enrich_ioc", {"ioc_value": value})
                hits.append(ms(time.perf_counter() - t0))
                upstream += sum(not p["cached"] for p in _sections_provenance(again.structured_content or {}))
    out["mcp_stdio"] = {
        "first_call_ms_incl_upstream_start": first_ms,
        "first_call_uncached": sum(not p["cached"] for p in _sections_provenance(first.structured_content or {})),
        "repeat_upstream_calls_total": upstream,
        "cache_hit_round_trip_ms": {"p50": median(hits), "p99": pct(hits, 99)},
        "cache_hit_over_latency": ratio(median(hits), opts.latency_ms),
    }
    return out


# -- (d) correlate over many cases ---------------------------------------------------------------------


async def m_correlate(opts: argparse.Namespace) -> dict[str, Any]:
    from bench.big_fixtures import build

    fixtures = build(Path(tempfile.mkdtemp(prefix="bench-fixtures-")), opts.cases)
    os.environ["IOC_WORKFLOWS_FIXTURES"] = str(fixtures)

    from ioc_workflows_mcp.indicator import Indicator
    from ioc_workflows_mcp.upstream.base import CallTrace
    from ioc_workflows_mcp.upstream.pool import UpstreamPool
    from ioc_workflows_mcp.workflows.correlate import correlate
    from ioc_workflows_mcp.workflows.sources import Sources

    value = "secure-update.example.net"
    indicator = Indicator.parse(value)
    lat = opts.latency_ms / 1000
    out: dict[str, Any] = {
        "indicator": value,
        "cases": opts.cases,
        "scope": "comprehensive (365 days)",
        "latency_ms": opts.latency_ms,
    }
    async with UpstreamPool(_load()) as pool:
        log = CallLog()
        log.install(pool)
        await correlate(Indicator.parse("docs.example.org"), Sources.from_pool(pool, pool.config))  # start them
        answers = {}
        for mode, narrow, runs in (("narrowed", True, opts.runs), ("full_scan", False, opts.full_runs)):
            walls, calls = [], []
            result: Any = None
            made: list[Any] = []
            for _ in range(runs):
                before, mark = common.pool_calls(pool), log.mark()
                t0 = time.perf_counter()
                result = await correlate(
                    indicator, Sources.from_pool(pool, pool.config), "comprehensive", narrow=narrow
                )
                walls.append(ms(time.perf_counter() - t0))
                calls.append(sum(common.delta(before, common.pool_calls(pool)).values()))
                made = log.since(mark)
            answers[mode] = sorted(result.case_correlations.case_ids)
            stats = result.search_stats.model_dump(mode="json")
            out[mode] = {
                "runs": runs,
                "wall_ms": {"median": median(walls), "all": walls},
                "upstream_calls": median(calls),
                "per_tool": common.per_tool(made),
                "upstream_rounds": common.rounds(made, lat),
                "repeated_calls": common.repeated(made),
                "search_stats": stats,
                "matched_case_ids": answers[mode],
            }
        hits = await Sources.from_pool(pool, pool.config).soar.search_entity(value, CallTrace())
        out["entity_search_hits"] = len(hits)
        out["same_answer"] = answers["narrowed"] == answers["full_scan"]
        out["calls_saved_by_narrowing"] = out["full_scan"]["upstream_calls"] - out["narrowed"]["upstream_calls"]
        n = out["narrowed"]
        pages = n["per_tool"].get("soar.list_cases", 0)
        siem = sum(v for k, v in n["per_tool"].items() if k.startswith("secops."))
        matched_entity_cases = len(answers["narrowed"])
        # lower bound with the upstream's tools: every page (titles are only in the list), the entity search,
        # get_entity_details per hit (its linkedCases name the cases), two calls per matched case (its alert
        # groups and entities, for the rules and systems reported), and the SIEM calls
        out["lower_bound_calls"] = pages + 1 + len(hits) + 2 * matched_entity_cases + siem
        out["narrowed_over_lower_bound"] = ratio(n["upstream_calls"], out["lower_bound_calls"])
    return out


# -- (e) server overhead -------------------------------------------------------------------------------


async def m_overhead(opts: argparse.Namespace) -> dict[str, Any]:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    from ioc_workflows_mcp.indicator import Indicator
    from ioc_workflows_mcp.upstream.pool import UpstreamPool
    from ioc_workflows_mcp.workflows.enrich import enrich
    from ioc_workflows_mcp.workflows.pivot import pivot
    from ioc_workflows_mcp.workflows.sources import Sources

    value = "secure-update.example.net"
    out: dict[str, Any] = {"latency_ms": 0, "calls": opts.calls}
    params = StdioServerParameters(command=common.CONSOLE, args=[], env=common.product_env())
    with open(os.devnull, "w") as devnull:
        async with Client(stdio_client(params, errlog=devnull), mode="legacy") as client:
            t0 = time.perf_counter()
            await client.list_tools()
            list_ms = ms(time.perf_counter() - t0)
            await client.call_tool("enrich_ioc", {"ioc_value": value})  # warm: upstreams started, cache filled
            await client.call_tool("pivot_ioc", {"ioc_value": value, "pivot_depth": 2})
            rows: dict[str, list[float]] = {"enrich_cached": [], "enrich_3_uncached_calls": [], "pivot2_cached": []}
            sizes: dict[str, int] = {}
            for i in range(opts.calls):
                t0 = time.perf_counter()
                r = await client.call_tool("enrich_ioc", {"ioc_value": value})
                rows["enrich_cached"].append(ms(time.perf_counter() - t0))
                sizes["enrich"] = len(json.dumps(r.structured_content))
                # a new lookback window: the 3 SIEM calls are new (GTI's answer is reused), stand-ins at 0 ms
                t0 = time.perf_counter()
                await client.call_tool("enrich_ioc", {"ioc_value": value, "lookback_days": 1 + i % 365})
                rows["enrich_3_uncached_calls"].append(ms(time.perf_counter() - t0))
            for _ in range(max(10, opts.calls // 5)):
                t0 = time.perf_counter()
                r = await client.call_tool("pivot_ioc", {"ioc_value": value, "pivot_depth": 2})
                rows["pivot2_cached"].append(ms(time.perf_counter() - t0))
                sizes["pivot2"] = len(json.dumps(r.structured_content))
    for name, values in rows.items():
        out[name] = {"p50_ms": median(values), "p99_ms": pct(values, 99), "n": len(values)}
    out["tools_list_ms"] = list_ms
    out["structured_bytes"] = sizes
    # the same work in process (no MCP, no JSON): what the server adds on top
    async with UpstreamPool(_load()) as pool:
        sources = Sources.from_pool(pool, pool.config)
        ind = Indicator.parse(value)
        await enrich(ind, sources)
        res = await pivot(ind, sources, pivot_depth=2)
        inproc: dict[str, list[float]] = {
            "enrich_cached": [],
            "pivot2_cached": [],
            "enrich_dump": [],
            "pivot2_dump": [],
        }
        for _ in range(opts.calls // 2):
            t0 = time.perf_counter()
            e = await enrich(ind, sources)
            inproc["enrich_cached"].append(ms(time.perf_counter() - t0))
            t0 = time.perf_counter()
            e.model_dump(mode="json")
            inproc["enrich_dump"].append(ms(time.perf_counter() - t0))
        for _ in range(max(10, opts.calls // 5)):
            t0 = time.perf_counter()
            res = await pivot(ind, sources, pivot_depth=2)
            inproc["pivot2_cached"].append(ms(time.perf_counter() - t0))
            t0 = time.perf_counter()
            res.model_dump(mode="json")
            inproc["pivot2_dump"].append(ms(time.perf_counter() - t0))
    out["in_process_p50_ms"] = {k: median(v) for k, v in inproc.items()}
    out["server_adds_p50_ms"] = {
        "enrich": round(out["enrich_cached"]["p50_ms"] - out["in_process_p50_ms"]["enrich_cached"], 2),
        "pivot2": round(out["pivot2_cached"]["p50_ms"] - out["in_process_p50_ms"]["pivot2_cached"], 2),
    }
    return out


# -- (f) throughput ------------------------------------------------------------------------------------


async def _load_level(url: str, sessions: int, seconds: float, counter: list[int]) -> dict[str, Any]:
    from mcp import Client

    done: list[float] = []
    upstream: list[int] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal errors
        async with Client(url, mode="legacy") as client:
            while time.perf_counter() < deadline:
                counter[0] += 1
                n = counter[0]
                args = {"ioc_value": common.INDICATORS[n % len(common.INDICATORS)], "lookback_days": 1 + n % 365}
                t0 = time.perf_counter()
                try:
                    r = await client.call_tool("enrich_ioc", args)
                except Exception:
                    errors += 1
                    continue
                done.append(ms(time.perf_counter() - t0))
                upstream.append(sum(not p["cached"] for p in _sections_provenance(r.structured_content or {})))

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for k in range(sessions):
            tg.start_soon(worker, k)
    elapsed = time.perf_counter() - t0
    return {
        "sessions": sessions,
        "analyses": len(done),
        "analyses_per_s": round(len(done) / elapsed, 2),
        "p50_ms": median(done),
        "p99_ms": pct(done, 99),
        "upstream_calls_per_analysis": median([float(u) for u in upstream]),
        "errors": errors,
    }


def _saturation(levels: list[dict[str, Any]]) -> int | None:
    """The first session count after which one more step adds less than 10% throughput."""
    for here, nxt in itertools.pairwise(levels):
        if nxt["analyses_per_s"] < here["analyses_per_s"] * 1.1:
            return here["sessions"]
    return None


async def m_throughput(opts: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"seconds_per_level": opts.seconds, "transport": "streamable HTTP, 127.0.0.1"}
    for label, latency in (("latency_default", opts.latency_ms), ("latency_0", 0.0)):
        env = common.product_env(
            IOC_STANDIN_LATENCY_MS=str(latency), IOC_STANDIN_JITTER_MS=str(opts.jitter_ms if latency else 0)
        )
        levels = []
        with common.HttpServer(env) as server:
            counter = [0]
            await _load_level(server.url, 1, 0.5, counter)  # start the upstreams
            for sessions in opts.sessions:
                levels.append(await _load_level(server.url, sessions, opts.seconds, counter))
        out[label] = {
            "latency_ms": latency,
            "levels": levels,
            "saturates_at_sessions": _saturation(levels),
            "peak_analyses_per_s": max(level["analyses_per_s"] for level in levels),
        }
    return out


# -- (g) start-up and memory ---------------------------------------------------------------------------


async def m_startup(opts: argparse.Namespace) -> dict[str, Any]:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    value = "secure-update.example.net"
    rows: dict[str, list[float]] = {
        k: []
        for k in ("initialize", "tools_list", "first_enrich", "second_enrich", "first_correlate", "second_correlate")
    }
    params = StdioServerParameters(command=common.CONSOLE, args=[], env=common.product_env())
    with open(os.devnull, "w") as devnull:
        for _ in range(opts.runs):
            t0 = time.perf_counter()
            async with Client(stdio_client(params, errlog=devnull), mode="legacy") as client:
                rows["initialize"].append(ms(time.perf_counter() - t0))
                await client.list_tools()
                rows["tools_list"].append(ms(time.perf_counter() - t0))  # from spawn
                for tool, other in (("enrich", "login.example.net"), ("correlate", "login.example.net")):
                    t1 = time.perf_counter()
                    await client.call_tool(f"{tool}_ioc", {"ioc_value": value})
                    rows[f"first_{tool}"].append(ms(time.perf_counter() - t1))
                    t1 = time.perf_counter()
                    await client.call_tool(f"{tool}_ioc", {"ioc_value": other})
                    rows[f"second_{tool}"].append(ms(time.perf_counter() - t1))
    out: dict[str, Any] = {"runs": opts.runs, "latency_ms": 0, "transport": "stdio"}
    out["median_ms"] = {k: median(v) for k, v in rows.items()}
    med = out["median_ms"]
    out["upstream_start_paid_once_ms"] = {
        "gti+secops (first enrich - second enrich)": round(med["first_enrich"] - med["second_enrich"], 1),
        "soar (first correlate - second correlate)": round(med["first_correlate"] - med["second_correlate"], 1),
    }
    # memory: the HTTP server process and its children (the stand-ins), from /proc
    from mcp import Client as HttpClient

    with common.HttpServer(common.product_env()) as server:
        pid = server.proc.pid
        await anyio.sleep(0.5)
        rest = common.tree_rss_mib(pid)
        async with HttpClient(server.url, mode="legacy") as client:
            await client.call_tool("enrich_ioc", {"ioc_value": value})
            await client.call_tool("correlate_ioc", {"ioc_value": value})
        started = common.tree_rss_mib(pid)
        counter = [0]
        done = 0
        t0 = time.perf_counter()
        while done < opts.analyses:
            per = min(opts.analyses - done, 50)

            async def batch(n: int = per) -> int:
                async with HttpClient(server.url, mode="legacy") as client:  # a new session each batch
                    for _ in range(n):
                        counter[0] += 1
                        k = counter[0]
                        tool = "correlate_ioc" if k % 10 == 0 else "enrich_ioc"
                        args = {"ioc_value": common.INDICATORS[k % len(common.INDICATORS)]}
                        if tool == "enrich_ioc":
                            args["lookback_days"] = 1 + k % 365
                        await client.call_tool(tool, args)
                return n

            async with anyio.create_task_group() as tg:
                for _ in range(2):
                    tg.start_soon(batch, per // 2 + per % 2 if _ == 0 else per // 2)
            done += per
        elapsed = time.perf_counter() - t0
        after = common.tree_rss_mib(pid)
    out["memory"] = {
        "at_rest_no_upstreams": rest,
        "after_first_analyses_upstreams_started": started,
        f"after_{opts.analyses}_analyses": after,
        "analyses": opts.analyses,
        "analyses_seconds": round(elapsed, 1),
        "note": "1 in 10 is correlate_ioc; 2 sessions at a time, a new session every 25 analyses; latency 0",
    }
    return out


MEASUREMENTS = {
    "enrich": m_enrich,
    "pivot": m_pivot,
    "repeat": m_repeat,
    "correlate": m_correlate,
    "overhead": m_overhead,
    "throughput": m_throughput,
    "startup": m_startup,
}
ZERO_LATENCY = {"overhead", "startup"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=sorted(MEASUREMENTS))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--full-runs", type=int, default=1, help="correlate: full-scan runs")
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--jitter-ms", type=float, default=20)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=200, help="overhead: tool calls per row")
    parser.add_argument("--seconds", type=float, default=4, help="throughput: seconds per concurrency level")
    parser.add_argument("--sessions", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8, 16])
    parser.add_argument("--analyses", type=int, default=1000, help="startup: analyses before the memory reading")
    opts = parser.parse_args()
    if opts.name in ZERO_LATENCY:
        _set_latency(0, 0)
    else:
        _set_latency(opts.latency_ms, opts.jitter_ms)
    t0 = time.perf_counter()
    result = anyio.run(MEASUREMENTS[opts.name], opts)
    result["measurement_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
