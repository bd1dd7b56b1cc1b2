"""Run every benchmark of issue 7, each in a process of its own: ``.venv/bin/python bench/run.py``.

Writes ``bench/results/latest.json`` (all numbers) and ``bench/results/latest.md`` (the table that
docs/benchmarks.md quotes). ``--quick`` runs fewer repetitions; ``--only enrich,pivot`` picks measurements;
``--runs``, ``--latency-ms``, ``--jitter-ms`` and the per-measurement options below set the counts. About
5 minutes on 2 cores with the defaults, about 3 with ``--quick``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MEASURE = "bench/measure.py"
ORDER = ["enrich", "pivot", "repeat", "correlate", "overhead", "throughput", "startup"]


def _args(name: str, o: argparse.Namespace) -> list[str]:
    lat = ["--latency-ms", str(o.latency_ms), "--jitter-ms", str(o.jitter_ms)]
    return {
        "enrich": ["--runs", str(o.runs), *lat],
        "pivot": ["--runs", str(max(3, o.runs - 2)), *lat],
        "repeat": ["--runs", str(o.repeat_runs), *lat],
        "correlate": [
            "--runs",
            str(o.correlate_runs),
            "--full-runs",
            "1",
            "--cases",
            str(o.cases),
            "--latency-ms",
            str(o.correlate_latency_ms),
            "--jitter-ms",
            str(o.correlate_latency_ms / 10),
        ],
        "overhead": ["--calls", str(o.calls)],
        "throughput": ["--seconds", str(o.seconds), "--sessions", o.sessions, *lat],
        "startup": ["--runs", str(o.startup_runs), "--analyses", str(o.analyses)],
    }[name]


def _git() -> dict[str, Any]:
    def out(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {
        "commit": out("git", "rev-parse", "HEAD"),
        "dirty_files": out("git", "status", "--porcelain").count("\n") + bool(out("git", "status", "--porcelain")),
    }


def _f(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        value = f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return f"{value}{unit}"


def _rows(r: dict[str, Any], cmds: dict[str, str]) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    if e := r.get("enrich"):
        rows.append(
            (
                "(a) enrich wall / one upstream latency",
                f"**{_f(e['ratio_vs_injected_latency'])}** "
                f"(median {_f(e['ours_ms']['median'], ' ms')} / 200 ms injected); "
                f"{_f(e['ratio_vs_measured_single_call'])} vs the measured single call "
                f"({_f(e['one_upstream_call_ms']['median'], ' ms')}); "
                f"via MCP over HTTP {_f(e['ratio_mcp_vs_measured_single_call'])}; "
                f"{e['upstream_calls']['ours']} upstream calls "
                f"in {_f(e['upstream_rounds_median'])} latencies",
                "≤ 1.3",
                cmds["enrich"],
            )
        )
        rows.append(
            (
                "(a) enrich speedup over the sequential runbook (same 4 calls, plain mcp.Client)",
                f"**{_f(e['speedup_vs_baseline'])}×** ({_f(e['baseline_sequential_ms']['median'], ' ms')} vs "
                f"{_f(e['ours_ms']['median'], ' ms')}); the 3 secops calls: "
                f"{_f(e['secops_3_calls_one_session_ms'], ' ms')} "
                f"at once on one session, {_f(e['secops_3_calls_three_sessions_ms'], ' ms')} on three",
                "≈ number of calls (4×)",
                cmds["enrich"],
            )
        )
    if p := r.get("pivot"):
        for depth in (2, 3):
            d = p[f"depth{depth}"]
            w, wide = d["with_gti_max_concurrency_4"], d["with_gti_max_concurrency_64"]
            rows.append(
                (
                    f"(b) pivot depth {depth}: wall / (depth × latency)",
                    f"**{_f(d['wall_over_depth_x_latency'])}** ({_f(d['wall_ms']['median'], ' ms')}, "
                    f"{_f(d['upstream_rounds'])} latencies, gti max_concurrency {p['gti_max_concurrency']}); "
                    f"with max_concurrency 4: {_f(w['wall_over_depth_x_latency'])} "
                    f"({_f(w['upstream_rounds'])} latencies); 64: {_f(wide['wall_over_depth_x_latency'])} "
                    f"({_f(wide['upstream_rounds'])} latencies)",
                    "≈ 1 (one latency per level)",
                    cmds["pivot"],
                )
            )
            rows.append(
                (
                    f"(b) pivot depth {depth}: upstream calls vs minimum",
                    f"**{d['upstream_calls']} vs {d['minimum_calls']} = {_f(d['calls_over_minimum'])}×** (minimum: the "
                    f"{d['relationship_lists']} relationship lists of the {d['entities_expanded']} entities "
                    f"expanded, one call each in gti-mcp, + the indicator's report); "
                    f"{_f(d['calls_per_entity_expanded'])} calls per "
                    f"entity expanded; {d['repeated_calls']} repeated; "
                    + ", ".join(f"{k.split('.', 1)[1]} {v}" for k, v in d["per_tool"].items()),
                    "≤ 1.1×",
                    cmds["pivot"],
                )
            )
    if c := r.get("repeat"):
        ip, st = c["in_process"], c["mcp_stdio"]
        rows.append(
            (
                "(c) repeated analysis in one session: upstream calls",
                f"enrich **{st['repeat_upstream_calls_total']}** over {c['runs']} repeats (stdio), "
                f"{ip['enrich']['repeat_upstream_calls_total']} in process; pivot depth 2 "
                f"**{ip['pivot_depth2']['repeat_upstream_calls_total']}**; investigate "
                f"**{ip['investigate']['repeat_upstream_calls_total']}** "
                f"({ip['investigate']['repeat_upstream_calls_per_tool']})",
                "0",
                cmds["repeat"],
            )
        )
        rows.append(
            (
                "(c) cache-hit round trip (enrich_ioc, stdio)",
                f"p50 **{_f(st['cache_hit_round_trip_ms']['p50'], ' ms')}**, "
                f"p99 {_f(st['cache_hit_round_trip_ms']['p99'], ' ms')}"
                f" = {_f(st['cache_hit_over_latency'])} of one latency; "
                f"first call {_f(st['first_call_ms_incl_upstream_start'], ' ms')}"
                f" with upstream start-up",
                "≪ 1 latency",
                cmds["repeat"],
            )
        )
    if k := r.get("correlate"):
        n, f = k["narrowed"], k["full_scan"]
        lat = k["latency_ms"]
        rows.append(
            (
                f"(d) correlate over {k['cases']} cases (scope 365 d, latency {_f(lat)} ms)",
                f"narrowed **{n['upstream_calls']} calls, {_f(n['wall_ms']['median'], ' ms')}** "
                f"({_f(n['upstream_rounds'])} latencies); full scan {f['upstream_calls']} calls, "
                f"{_f(f['wall_ms']['median'], ' ms')}; same answer: {k['same_answer']} "
                f"({len(n['matched_case_ids'])} cases); "
                f"lower bound {k['lower_bound_calls']} calls ({_f(k['narrowed_over_lower_bound'])}× above it)",
                "fewest calls with the right answer",
                cmds["correlate"],
            )
        )
    if o := r.get("overhead"):
        rows.append(
            (
                "(e) server overhead, one tool call, zero-latency stand-ins (stdio, warm)",
                f"enrich_ioc cached p50 **{_f(o['enrich_cached']['p50_ms'], ' ms')}**, "
                f"p99 {_f(o['enrich_cached']['p99_ms'], ' ms')}; "
                f"with 3 upstream calls p50 {_f(o['enrich_3_uncached_calls']['p50_ms'], ' ms')}, p99 "
                f"{_f(o['enrich_3_uncached_calls']['p99_ms'], ' ms')}; pivot depth 2 cached p50 "
                f"{_f(o['pivot2_cached']['p50_ms'], ' ms')} ({o['structured_bytes'].get('pivot2')} B) of which "
                f"{_f(o['in_process_p50_ms']['pivot2_cached'], ' ms')} in the workflow",
                "small vs 1 latency",
                cmds["overhead"],
            )
        )
    if t := r.get("throughput"):
        for label in ("latency_default", "latency_0"):
            x = t[label]
            curve = ", ".join(f"{lv['sessions']}→{lv['analyses_per_s']}/s" for lv in x["levels"])
            rows.append(
                (
                    f"(f) throughput, enrich_ioc over streamable HTTP, latency {_f(x['latency_ms'])} ms",
                    f"peak **{_f(x['peak_analyses_per_s'])} analyses/s**, "
                    f"saturates at **{x['saturates_at_sessions']}** "
                    f"session(s); sessions→rate: {curve}",
                    "scales with sessions",
                    cmds["throughput"],
                )
            )
    if s := r.get("startup"):
        m, mem = s["median_ms"], s["memory"]
        after = next(v for k2, v in mem.items() if k2.startswith("after_") and k2.endswith("_analyses"))
        rows.append(
            (
                "(g) start-up (stdio): first tools/list; first tool call",
                f"tools/list **{_f(m['tools_list'], ' ms')}** from spawn (upstreams start lazily); first enrich "
                f"{_f(m['first_enrich'], ' ms')} vs second {_f(m['second_enrich'], ' ms')}; first correlate "
                f"{_f(m['first_correlate'], ' ms')} vs second {_f(m['second_correlate'], ' ms')}",
                "start-up paid once",
                cmds["startup"],
            )
        )
        rows.append(
            (
                "(g) memory RSS, server + children",
                f"at rest **{_f(mem['at_rest_no_upstreams']['total_mib'], ' MiB')}**; upstreams started "
                f"{_f(mem['after_first_analyses_upstreams_started']['total_mib'], ' MiB')}; "
                f"after {mem['analyses']} analyses "
                f"**{_f(after['total_mib'], ' MiB')}** (server {_f(after['server_mib'], ' MiB')})",
                "flat",
                cmds["startup"],
            )
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(ORDER), help="comma-separated: " + ",".join(ORDER))
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (about 3 minutes)")
    parser.add_argument("--runs", type=int, default=7, help="enrich runs (pivot: runs - 2, at least 3)")
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--jitter-ms", type=float, default=20)
    parser.add_argument("--repeat-runs", type=int, default=20)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--correlate-runs", type=int, default=3)
    parser.add_argument(
        "--correlate-latency-ms",
        type=float,
        default=20,
        help="(d) makes thousands of calls; at 200 ms it alone would take minutes",
    )
    parser.add_argument("--calls", type=int, default=200, help="overhead: calls per row")
    parser.add_argument("--seconds", type=float, default=4, help="throughput: seconds per level")
    parser.add_argument("--sessions", default="1,2,4,8,16")
    parser.add_argument("--startup-runs", type=int, default=3)
    parser.add_argument("--analyses", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=400, help="seconds per measurement process")
    o = parser.parse_args()
    if o.quick:
        o.runs, o.repeat_runs, o.correlate_runs, o.calls, o.seconds = 3, 5, 1, 50, 2
        o.sessions, o.startup_runs, o.analyses = "1,4,16", 1, 200
    names = [n for n in ORDER if n in o.only.split(",")]
    env = {k: v for k, v in os.environ.items() if k not in ("IOC_WORKFLOWS_CONFIG", "IOC_WORKFLOWS_FIXTURES")}
    results: dict[str, Any] = {}
    cmds: dict[str, str] = {}
    started = time.perf_counter()
    for name in names:
        argv = [MEASURE, name, *_args(name, o)]
        cmds[name] = ".venv/bin/python " + " ".join(argv)
        print(f"[bench] {name}: {cmds[name]}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=o.timeout
            )
        except subprocess.TimeoutExpired:
            results[name] = {"error": f"timed out after {o.timeout} s"}
            continue
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            results[name] = {"error": f"exit {done.returncode}", "stderr_tail": done.stderr[-2000:]}
            print(done.stderr[-2000:], file=sys.stderr)
            continue
        results[name] = json.loads(lines[-1])
        print(f"[bench] {name}: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    now = dt.datetime.now(dt.UTC)
    report = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "git": _git(),
        "options": vars(o),
        "commands": cmds,
        "total_seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    ok = {k: v for k, v in results.items() if "error" not in v}
    table = ["| measurement | result | target | command |", "|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | `{d}` |" for a, b, c, d in _rows(ok, cmds)]
    head = (
        f"{report['date']}, {report['machine']['cores']} cores, {report['machine']['platform']}, "
        f"Python {report['machine']['python']}, commit {report['git']['commit'][:10]} "
        f"({report['git']['dirty_files']} files modified), total {report['total_seconds']} s\n\n"
    )
    (out / "latest.md").write_text(head + "\n".join(table) + "\n")
    print(head + "\n".join(table))
    failed = [k for k, v in results.items() if "error" in v]
    if failed:
        print(f"[bench] failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
