"""Sandbox overhead, side by side: fleet-rlm's local sandbox vs dspy's own interpreters.

Run: `make bench` (or `uv run --extra bench python benchmarks/bench_sandbox.py [--quick]`).
Prints a table and writes results/bench_sandbox.json. Every peer runs in this one process,
on this machine, in this run, so the ratios are fair even where absolute numbers vary.

dspy.PythonInterpreter (Deno + Pyodide) imports one module from deno.land at start, which
is unreachable offline; fleet_rlm.bench.peers maps that import to a local shim.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from dspy.primitives.local_interpreter import LocalInterpreter  # noqa: E402

from fleet_rlm.bench.peers import NOTE, make_deno_interpreter  # noqa: E402
from fleet_rlm.sandbox.interpreter import SandboxInterpreter  # noqa: E402
from fleet_rlm.sandbox.local import LocalTransport, SandboxLimits  # noqa: E402
from fleet_rlm.testing import ScriptedLM  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


def instant(prompt: str = "") -> str:
    return "ok"


# -- the interpreters under test -------------------------------------------------------------


def make_fleet(tools: dict | None = None, memory_mb: int = 4096) -> SandboxInterpreter:
    return SandboxInterpreter(LocalTransport(SandboxLimits(memory_mb=memory_mb)), tools=tools)


def make_local(tools: dict | None = None) -> LocalInterpreter:
    return LocalInterpreter(tools=tools)


def make_deno(tools: dict | None = None):
    return make_deno_interpreter(tools)


PEERS: dict[str, Callable] = {
    "fleet-rlm local": make_fleet,
    "dspy LocalInterpreter": make_local,
    "dspy PythonInterpreter": make_deno,
}


# -- measuring --------------------------------------------------------------------------------


def timings(fn: Callable[[], object], n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def stats(samples: list[float]) -> dict:
    s = sorted(samples)
    return {
        "median_ms": statistics.median(s) * 1000,
        "p95_ms": s[min(len(s) - 1, int(0.95 * len(s)))] * 1000,
        "n": len(s),
    }


def bench_start(make: Callable, n: int) -> dict:
    def once() -> None:
        interp = make()
        try:
            interp.execute("print(1)")
        finally:
            interp.shutdown()

    return stats(timings(once, n, warmup=1))


def bench_step(make: Callable, n: int, code: str, tools: dict | None = None) -> dict:
    interp = make(tools)
    try:
        return stats(timings(lambda: interp.execute(code), n))
    finally:
        interp.shutdown()


def bench_batched(make: Callable, n: int) -> dict:
    """64 llm_query_batched prompts against an LM sleeping 200 ms, dspy's default concurrency."""
    rlm = dspy.RLM("q -> a", sub_lm=ScriptedLM(delay=0.2), max_llm_calls=10**6)
    tools = rlm._make_llm_tools()  # dspy's own llm_query / llm_query_batched, as RLM injects
    interp = make(tools)
    try:
        code = "r = llm_query_batched([f'p{i}' for i in range(64)])\nprint(len(r))"
        return stats(timings(lambda: interp.execute(code), n, warmup=1))
    finally:
        interp.shutdown()


def bench_context(make: Callable, size_mb: int, iterations: int = 10) -> dict:
    """An RLM-style run: the context is passed on every step, as dspy.RLM does."""
    context = "x" * (size_mb * MB)
    interp = make()
    try:
        per_step = []
        t_all = time.perf_counter()
        for i in range(iterations):
            t0 = time.perf_counter()
            interp.execute(f"n = len(context) + {i}", variables={"context": context})
            per_step.append(time.perf_counter() - t0)
        total = time.perf_counter() - t_all
        sent = getattr(interp, "bytes_sent", None)
        if sent is None:  # dspy's interpreters serialise every variable on every call
            sent = iterations * len(json.dumps({"context": context}))
        return {
            "total_s": total,
            "first_step_ms": per_step[0] * 1000,
            "later_step_median_ms": statistics.median(per_step[1:]) * 1000,
            "bytes_sent": sent,
        }
    finally:
        interp.shutdown()


def bench_gigabyte() -> dict:
    """1 GB context into the fleet-rlm sandbox: load time and peak memory on both sides."""
    import resource

    context = "y" * (1024 * MB)
    host_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    interp = make_fleet(memory_mb=6144)
    try:
        interp.execute("pass")
        t0 = time.perf_counter()
        interp.execute("n = len(context)", variables={"context": context})
        load_s = time.perf_counter() - t0
        out = interp.execute(
            "import resource\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"
        )
        sandbox_peak = int(out.strip())
    finally:
        interp.shutdown()
    host_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "context_bytes": len(context),
        "load_s": load_s,
        "sandbox_peak_bytes": sandbox_peak,
        "host_peak_bytes": host_peak,
        "host_peak_before_bytes": host_before,
        "sandbox_peak_x": sandbox_peak / len(context),
        "host_peak_x": host_peak / len(context),
    }


def bench_compute(n: int) -> dict:
    """`context.count(...)` on 100 MB: inside the sandbox vs in this (host) Python."""
    context = "abcdefghij" * (10 * MB)
    interp = make_fleet()
    try:
        interp.execute("pass", variables={"context": context})
        inside = timings(lambda: interp.execute("context.count('fgh')"), n, warmup=1)
    finally:
        interp.shutdown()
    host = timings(lambda: context.count("fgh"), n, warmup=1)
    return {"sandbox": stats(inside), "host": stats(host)}


# -- report -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, no 100 MB/1 GB")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_sandbox.json")
    parser.add_argument("--skip-deno", action="store_true", help="leave out PythonInterpreter")
    args = parser.parse_args()
    reps = 30 if args.quick else 200
    peers = {k: v for k, v in PEERS.items() if not (args.skip_deno and "Python" in k)}
    print(NOTE)

    results: dict = {
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "dspy": dspy.__version__,
        },
        "date": time.strftime("%Y-%m-%d"),
        "peers": {},
    }
    for name, make in peers.items():
        deno = "Python" in name
        print(f"measuring {name} ...", flush=True)
        r: dict = {}
        r["start"] = bench_start(make, 3 if deno else (5 if args.quick else 20))
        r["trivial_step"] = bench_step(make, reps, "x = 1 + 1; print(x)")
        r["tool_round_trip"] = bench_step(make, reps, "llm_query('hi')", {"llm_query": instant})
        r["batched_64x200ms"] = bench_batched(make, 3)
        sizes = [10] if (args.quick or deno) else [10, 100]
        for size in sizes:
            with contextlib.suppress(Exception):
                r[f"context_{size}mb_10_steps"] = bench_context(make, size)
        results["peers"][name] = r
    if not args.quick:
        print("measuring 1 GB context and compute ...", flush=True)
        results["gigabyte"] = bench_gigabyte()
    results["compute_100mb_count"] = bench_compute(5 if args.quick else 20)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"\nwrote {args.out}")


def print_table(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    peers = results["peers"]
    names = list(peers)
    base = names[0]
    m = results["machine"]
    table = Table(
        title=f"sandbox overhead ({m['cpus']} cores, Python {m['python']}, dspy {m['dspy']})"
    )
    table.add_column("measure")
    for name in names:
        table.add_column(name, justify="right")
    for key in ("start", "trivial_step", "tool_round_trip", "batched_64x200ms"):
        row = [key + " (median / p95 ms, n)"]
        for name in names:
            s = peers[name].get(key)
            cell = f"{s['median_ms']:.2f} / {s['p95_ms']:.2f}  n={s['n']}" if s else "-"
            if s and name != base and peers[base].get(key):
                cell += f"\n{s['median_ms'] / peers[base][key]['median_ms']:.1f}x ours"
            row.append(cell)
        table.add_row(*row)
    for size in (10, 100):
        key = f"context_{size}mb_10_steps"
        row = [f"{size} MB context, 10 steps\n(total s / later step ms / MB sent)"]
        for name in names:
            s = peers[name].get(key)
            row.append(
                f"{s['total_s']:.2f} / {s['later_step_median_ms']:.2f} / {s['bytes_sent'] / MB:.0f}"
                if s
                else "-"
            )
        table.add_row(*row)
    Console().print(table)
    if "gigabyte" in results:
        g = results["gigabyte"]
        print(
            f"1 GB context (fleet-rlm): load {g['load_s']:.2f} s, sandbox peak "
            f"{g['sandbox_peak_x']:.2f}x, host peak {g['host_peak_x']:.2f}x the context size"
        )
    c = results["compute_100mb_count"]
    print(
        f"context.count on 100 MB: sandbox {c['sandbox']['median_ms']:.1f} ms vs host "
        f"{c['host']['median_ms']:.1f} ms (includes one protocol round trip)"
    )


if __name__ == "__main__":
    main()
