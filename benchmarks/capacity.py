"""Capacity benchmark: the largest number of concurrent calls that keeps p95 overhead ≤ the target.

For each mode and each N in ``--steps``, starts a gateway, runs ``voice-gateway loadtest`` logic
with N callers in conversation (speaking about half the time, some barge-ins) for ``--duration``
seconds, and records overhead p50/p95, refusals, errors and the gateway's per-stage breakdown.
Prints a table, the largest N that meets the target for each mode, the ratios between the modes,
and plots p50/p95 versus N.

Modes: ``1 process`` (the defaults), ``--workers`` processes behind the front, and with
``--baseline`` the same single process configured as before the capacity work (aiortc encodes
every outbound frame, numpy's and onnxruntime's spinning thread pools, 2 CTranslate2 threads, one
TTS thread, partial transcripts not shed by load): the same-run baseline the ratios compare with.

The callers run on the same 2-core machine as the gateway (in ``--caller-processes`` processes):
their own Opus encoding and decoding is part of the load.

Usage: python benchmarks/capacity.py [--steps 4 8 12 16] [--duration 60] [--workers 2] [--baseline]
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
from qa.loadtest import LoadOptions, run_loadtest  # noqa: E402

#: The single process as configured before the capacity work (see docs/benchmarks.md).
BASELINE = ("media.opus_packets=false", "engines.blas_threads=0", "engines.tts_intra_threads=0",
            "engines.asr_threads=2", "engines.tts_threads=1", "engines.asr_partials_max_utilization=1")
STAGES = ("turn_confirmed", "asr_final", "agent_first_text", "tts_first_audio", "first_packet_sent")


def stage_medians(report: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for stage in STAGES:
        values = [t["gateway"]["stages_ms"][stage] for t in report["turn_records"]
                  if (t.get("gateway") or {}).get("stages_ms", {}).get(stage) is not None]
        out[stage] = round(statistics.median(values), 1) if values else None
    return out


def mode_name(workers: int, baseline: bool) -> str:
    if baseline:
        return "baseline"
    return "1 process" if workers == 1 else f"{workers} workers"


async def run_step(workers: int, callers: int, args: argparse.Namespace, *, baseline: bool = False) -> dict[str, Any]:
    # All callers come from 127.0.0.1: lift the per-client limits so only capacity decides.
    extra = ["--max-calls", str(max(callers * 2, 16)), "--set", "limits.max_calls_per_client=0",
             "--set", "limits.calls_per_client_per_minute=0"]
    if workers > 1:
        extra += ["--workers", str(workers)]
    for setting in BASELINE if baseline else ():
        extra += ["--set", setting]
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
    mode = mode_name(workers, baseline)
    (args.out / f"capacity-{mode.replace(' ', '-')}-{callers}.json").write_text(json.dumps(report, indent=1))
    return {
        "mode": mode,
        "workers": workers,
        "callers": callers,
        "overhead_ms": overhead,
        "barge_in_stop_ms": report["barge_in_stop_ms"],
        "turns": report["turns"],
        "replies": report["replies"],
        "connect_failures": report["calls"]["connect_failures"],
        "replies_with_underrun": report["replies_with_underrun"],
        "underrun_ms": report["underrun_ms"],
        "errors": report["errors"],
        "stages_ms": stage_medians(report),
        "wer": report["wer"],
    }


def meets(step: dict[str, Any], target_ms: float) -> bool:
    p95 = step["overhead_ms"].get("p95")
    return (p95 is not None and p95 <= target_ms and not step["connect_failures"]
            and not step["replies_with_underrun"] and step["replies"] >= step["turns"] * 0.9)


def plot(results: list[dict[str, Any]], target_ms: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    colours = {"baseline": "tab:grey", "1 process": "tab:red"}
    for label in dict.fromkeys(r["mode"] for r in results):
        colour = colours.get(label, "tab:green")
        rows = sorted((r for r in results if r["mode"] == label), key=lambda r: r["callers"])
        ns = [r["callers"] for r in rows]
        ax.plot(ns, [r["overhead_ms"].get("p50") for r in rows], "o--", color=colour, label=f"{label}: p50")
        ax.plot(ns, [r["overhead_ms"].get("p95") for r in rows], "o-", color=colour, label=f"{label}: p95")
    top = 3 * target_ms  # points above are written, not drawn off the scale
    ax.set_ylim(0, top)
    for r in results:
        p95 = r["overhead_ms"].get("p95")
        if p95 is not None and p95 > top:
            ax.annotate(f"{r['mode']} p95 {p95 / 1000:.1f} s", (r["callers"], top), textcoords="offset points",
                        xytext=(-60, -12 - 10 * (r["mode"] != "baseline")), fontsize=7)
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
    parser.add_argument("--baseline", action="store_true", help="also run the pre-optimisation configuration")
    parser.add_argument("--target-ms", type=float, default=500.0)
    parser.add_argument("--speech", type=Path, default=REPO.parent / "shared" / "speech" / "manifest.tsv")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "capacity.png")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    modes = [(1, False), (args.workers, False)] + ([(1, True)] if args.baseline else [])
    results = []
    for workers, baseline in modes:
        for callers in args.steps:
            print(f"\n[{mode_name(workers, baseline)}, {callers} callers]", file=sys.stderr)
            results.append(await run_step(workers, callers, args, baseline=baseline))
    (args.out / "capacity.json").write_text(json.dumps({"results": results, "machine": os.uname()._asdict()
                                                        if hasattr(os.uname(), "_asdict") else " ".join(os.uname()),
                                                        "cpus": os.cpu_count()}, indent=2))
    plot(results, args.target_ms, args.plot)

    print("\n     mode  calls  turns  overhead p50 / p95 / max (ms)  barge-in p50  refused  errors  underruns")
    for r in results:
        o = r["overhead_ms"]
        print(f"{r['mode']:>9}  {r['callers']:>5}  {r['turns']:>5}  {o.get('p50')} / {o.get('p95')} / {o.get('max')}"
              f"  {r['barge_in_stop_ms'].get('p50')}  {r['connect_failures']}  {sum(r['errors'].values())}"
              f"  {r['replies_with_underrun']}")
    best: dict[str, dict[str, Any] | None] = {}
    for workers, baseline in modes:
        mode = mode_name(workers, baseline)
        passing = [r for r in results if r["mode"] == mode and meets(r, args.target_ms)]
        best[mode] = max(passing, key=lambda r: r["callers"]) if passing else None
        if best[mode] is not None:
            r = best[mode]
            print(f"{mode}: largest N meeting p95 ≤ {args.target_ms:.0f} ms: {r['callers']} "
                  f"(stages at that N, ms after end of speech: {r['stages_ms']})")
        else:
            print(f"{mode}: no N met the target")
    one = best["1 process"]
    for mode, other in best.items():
        if mode != "1 process" and one and other:
            print(f"capacity ratio (1 process / {mode}): {one['callers'] / other['callers']:.2f}")
    for mode in best:
        if mode == "1 process":
            continue
        for callers in args.steps:
            ours = next((r for r in results if r["mode"] == "1 process" and r["callers"] == callers), None)
            theirs = next((r for r in results if r["mode"] == mode and r["callers"] == callers), None)
            if ours and theirs and ours["overhead_ms"].get("p95") and theirs["overhead_ms"].get("p95"):
                print(f"N={callers}: p95 overhead {mode} / 1 process = "
                      f"{theirs['overhead_ms']['p95'] / ours['overhead_ms']['p95']:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
