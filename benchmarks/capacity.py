"""Capacity benchmark: the largest number of concurrent calls that keeps p95 overhead ≤ the target.

For each worker count (1 process, then ``--workers`` processes behind the front) and each N in
``--steps``, starts a gateway, runs ``voice-gateway loadtest`` logic with N callers in conversation
(speaking about half the time, some barge-ins) for ``--duration`` seconds, and records overhead
p50/p95, refusals, errors and the gateway's per-stage breakdown. Prints a table, the largest N that
meets the target for each mode, the ratio between the modes, and plots p50/p95 versus N.

The callers run on the same 2-core machine as the gateway (in ``--caller-processes`` processes):
their own Opus encoding and decoding is part of the load.

Usage: python benchmarks/capacity.py [--steps 4 8 12 16] [--duration 60] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.latency import start_gateway_process  # noqa: E402
from gateway.qa.loadtest import LoadOptions, run_loadtest  # noqa: E402

STAGES = ("turn_confirmed", "asr_final", "agent_first_text", "tts_first_audio", "first_packet_sent")


def stage_medians(report: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for stage in STAGES:
        values = [t["gateway"]["stages_ms"][stage] for t in report["turn_records"]
                  if (t.get("gateway") or {}).get("stages_ms", {}).get(stage) is not None]
        out[stage] = round(statistics.median(values), 1) if values else None
    return out


async def run_step(workers: int, callers: int, args: argparse.Namespace) -> dict[str, Any]:
    # All callers come from 127.0.0.1: lift the per-client limits so only capacity decides.
    extra = ["--max-calls", str(max(callers * 2, 16)), "--set", "limits.max_calls_per_client=0",
             "--set", "limits.calls_per_client_per_minute=0"]
    if workers > 1:
        extra += ["--workers", str(workers)]
    process, url = await start_gateway_process(extra, wait_workers=workers)
    try:
        options = LoadOptions(url=url, callers=callers, duration_s=args.duration, speech=str(args.speech),
                              ramp_s=min(args.duration / 3, callers * 0.5),
                              processes=min(callers, args.caller_processes),
                              out=None, barge_in_rate=0.25, seed=callers, max_clip_s=4.0)
        report = await run_loadtest(options, progress=sys.stderr)
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    overhead = report["overhead_ms"]
    return {
        "workers": workers,
        "callers": callers,
        "overhead_ms": overhead,
        "barge_in_stop_ms": report["barge_in_stop_ms"],
        "turns": report["turns"],
        "replies": report["replies"],
        "connect_failures": report["calls"]["connect_failures"],
        "errors": report["errors"],
        "stages_ms": stage_medians(report),
        "wer": report["wer"],
    }


def meets(step: dict[str, Any], target_ms: float) -> bool:
    p95 = step["overhead_ms"].get("p95")
    return (p95 is not None and p95 <= target_ms and not step["connect_failures"]
            and step["replies"] >= step["turns"] * 0.9)


def plot(results: list[dict[str, Any]], target_ms: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    for workers, colour in ((1, "tab:red"), (max(r["workers"] for r in results), "tab:green")):
        rows = sorted((r for r in results if r["workers"] == workers), key=lambda r: r["callers"])
        ns = [r["callers"] for r in rows]
        label = "1 process" if workers == 1 else f"{workers} worker processes"
        ax.plot(ns, [r["overhead_ms"].get("p50") for r in rows], "o--", color=colour, label=f"{label}: p50")
        ax.plot(ns, [r["overhead_ms"].get("p95") for r in rows], "o-", color=colour, label=f"{label}: p95")
    ax.axhline(target_ms, color="grey", lw=1, ls=":", label=f"target p95 ≤ {target_ms:.0f} ms")
    ax.set_xlabel("concurrent calls (callers on the same 2-core machine)")
    ax.set_ylabel("overhead (ms)")
    ax.set_title("Reply overhead versus concurrent calls")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 12, 16])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--caller-processes", type=int, default=2)
    parser.add_argument("--target-ms", type=float, default=500.0)
    parser.add_argument("--speech", type=Path, default=REPO.parent / "shared" / "speech" / "manifest.tsv")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "capacity.png")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    results = []
    for workers in (1, args.workers):
        for callers in args.steps:
            print(f"\n[{workers} worker(s), {callers} callers]", file=sys.stderr)
            results.append(await run_step(workers, callers, args))
    (args.out / "capacity.json").write_text(json.dumps({"results": results, "machine": os.uname()._asdict()
                                                        if hasattr(os.uname(), "_asdict") else " ".join(os.uname()),
                                                        "cpus": os.cpu_count()}, indent=2))
    plot(results, args.target_ms, args.plot)

    print("\nworkers  calls  turns  overhead p50 / p95 / max (ms)  barge-in p50  refused  errors")
    for r in results:
        o = r["overhead_ms"]
        print(f"{r['workers']:>7}  {r['callers']:>5}  {r['turns']:>5}  {o.get('p50')} / {o.get('p95')} / {o.get('max')}"
              f"  {r['barge_in_stop_ms'].get('p50')}  {r['connect_failures']}  {sum(r['errors'].values())}")
    best: dict[int, dict[str, Any] | None] = {}
    for workers in (1, args.workers):
        passing = [r for r in results if r["workers"] == workers and meets(r, args.target_ms)]
        best[workers] = max(passing, key=lambda r: r["callers"]) if passing else None
        if best[workers] is not None:
            r = best[workers]
            print(f"{workers} worker(s): largest N meeting p95 ≤ {args.target_ms:.0f} ms: {r['callers']} "
                  f"(stages at that N, ms after end of speech: {r['stages_ms']})")
        else:
            print(f"{workers} worker(s): no N met the target")
    one, many = best[1], best[args.workers]
    if one and many:
        print(f"capacity ratio ({args.workers} workers / 1 process): {many['callers'] / one['callers']:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
