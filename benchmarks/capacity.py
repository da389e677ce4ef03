"""Capacity at the SLO: a ramp of callers against the gateway today, the gateway now, and a Pipecat bot.

For each system, in the same run on the same machine: callers (in ``--caller-processes`` processes
of their own) join ``--step`` at a time every ``--interval`` seconds up to ``--callers``, hold for
``--hold`` seconds, and talk: every utterance of ``../shared/speech`` up to 12 s (longer passages
split into sentences), a pause of 0.3–1 s after each reply, a quarter of the replies talked over.
A caller refused with 503 + ``Retry-After`` tries again after it (each refusal is counted).

The SLO (issue 18), for the admitted calls: p95 overhead ≤ 500 ms (first audible reply − end of
speech − the 500 ms end-of-turn silence; a turn without a reply counts as infinite), ≤ 1 % of
replies stalled (a silence ≥ 700 ms inside the reply, as the caller heard it: the same instrument
for every system), barge-in stop p95 ≤ 400 ms. Turns are grouped by how many calls were up when
the caller stopped speaking; **capacity at the SLO** is the largest N whose level and every level
below met it (``qa/slo.py``).

Systems: ``today`` is the gateway at ``--baseline-rev`` (a ``git worktree`` of it, run with this
virtualenv), ``ours`` the gateway of this checkout, ``pipecat`` the Pipecat 1.14 echo bot of
``benchmarks/pipecat_bot.py`` (SmallWebRTC, the same models loaded once and run with the gateway's
engine settings, 500 ms end of turn; ``--pipecat-stock`` for Pipecat's defaults) in
``.venv-pipecat`` (``make bench-deps``). Both gateways run with their defaults, except the
per-client limits (every caller comes from 127.0.0.1).

The machine's speed is measured at the start (``benchmarks/machine.py``, and the engines' CPU per
turn: Whisper decode, Piper RTF, VAD) and printed next to the capacity, with calls per core and the
share of the CPU-bound limit (cores ÷ the engines' CPU per second of call) each system reached.

Usage: python benchmarks/capacity.py [--systems today ours pipecat] [--baseline-rev 8d3dea9]
       [--callers 20] [--step 2] [--interval 10] [--hold 20] [--caller-processes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.capacity_setup import engine_speed, realistic_speech, start_pipecat, stop, today_worktree  # noqa: E402
from benchmarks.latency import start_gateway_process  # noqa: E402
from benchmarks.machine import machine_speed  # noqa: E402
from qa.loadtest import LoadOptions, run_loadtest  # noqa: E402
from qa.slo import Slo  # noqa: E402

#: All callers come from 127.0.0.1: the per-client limits are lifted so only capacity decides.
GATEWAY_FLAGS = ["--set", "limits.max_calls_per_client=0", "--set", "limits.calls_per_client_per_minute=0"]
SYSTEMS = ("today", "ours", "pipecat")


@contextlib.asynccontextmanager
async def system(name: str, args: argparse.Namespace) -> AsyncIterator[str]:
    """The URL of a running ``name``, stopped on exit."""
    extra = GATEWAY_FLAGS + [flag for setting in args.gateway_set for flag in ("--set", setting)]
    with contextlib.ExitStack() as stack:
        if name == "pipecat":
            process, url = await start_pipecat(args.pipecat_python, stock=args.pipecat_stock)
        else:
            tree = REPO if name == "ours" else stack.enter_context(today_worktree(args.baseline_rev))
            process, url = await start_gateway_process(extra, cwd=tree)
        try:
            yield url
        finally:
            stop(process)


async def ramp(name: str, speech: Path, args: argparse.Namespace) -> dict[str, Any]:
    steps = math.ceil(args.callers / args.step)
    async with system(name, args) as url:
        options = LoadOptions(url=url, callers=args.callers, duration_s=(steps - 1) * args.interval + args.hold,
                              speech=str(speech), processes=min(args.callers, args.caller_processes), out=None,
                              barge_in_rate=0.25, seed=args.seed, max_clip_s=12.0,
                              target="pipecat" if name == "pipecat" else "gateway",
                              ramp_step=args.step, ramp_interval_s=args.interval)
        print(f"\n[{label(name, args)}: {args.callers} callers, {args.step} every {args.interval:g} s]",
              file=sys.stderr)
        report = await run_loadtest(options, progress=sys.stderr)
    (args.out / f"capacity-{name}.json").write_text(json.dumps(report, indent=1))
    return report


def label(name: str, args: argparse.Namespace) -> str:
    return f"today ({args.baseline_rev})" if name == "today" else name


def summary(name: str, report: dict[str, Any], engines: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    slo, calls = report["slo"], report["calls"]
    capacity = slo["capacity"]
    return {
        "system": label(name, args), "capacity": capacity, "admitted": calls["connected"],
        "refused_callers": calls["refused_callers"], "refusals": calls["refusals"],
        "never_admitted": calls["never_admitted"], "connect_failures": calls["connect_failures"],
        "max_concurrent": calls["max_concurrent"],
        "calls_per_core": round(capacity / engines["cores"], 2),
        "share_of_cpu_bound": round(capacity / engines["cpu_bound_calls"], 3),
        "calls_meeting_slo": f"{slo['per_call']['met']}/{slo['per_call']['calls']}",
        "overall": slo["overall"], "levels": slo["levels"], "gateway_underruns": report["replies_with_underrun"],
        "errors": report["errors"], "wer": report["wer"],
    }


def ratio(a: int, b: int) -> str:
    return f"{a / b:.2f}" if b else ("∞" if a else "–")


def print_results(results: list[dict[str, Any]], machine: dict[str, Any], engines: dict[str, Any]) -> None:
    whisper = engines["whisper_decode_cpu_ms"]
    print(f"\nmachine   {machine['cpu']} × {machine['cpus']} · python loop {machine['python_loop_ms']} ms · "
          f"matmul {machine['matmul_ms']} ms · load average at start {machine['load_average']}")
    print(f"engines   Whisper decode {whisper['p50']} ms CPU p50 (mean {whisper['mean']}) over {engines['utterances']}"
          f" utterances of {engines['speech_s_mean']} s mean · Piper CPU RTF {engines['piper_cpu_rtf']} · VAD "
          f"{engines['vad_cpu_ms_per_s']} ms CPU/s · {engines['turn_engine_cpu_ms']} ms engine CPU per turn of "
          f"{engines['turn_cycle_s']} s → CPU-bound limit {engines['cpu_bound_calls']} calls on "
          f"{engines['cores']} cores")
    print(f"          (a decode padded to Whisper's 30 s window, as Pipecat's Whisper service makes it: "
          f"{engines['whisper_30s_window_cpu_ms']} ms CPU → CPU-bound limit {engines['cpu_bound_calls_30s_window']})")
    print(f"SLO       {Slo().describe()} (per level of concurrent calls: qa/slo.py)")
    print("\nsystem            capacity@SLO  calls/core  of CPU-bound  admitted  refused (callers/times)  max up"
          "  calls met SLO  overhead p50/p95 (ms)  stalled  barge-in p95")
    for r in results:
        o = r["overall"]
        print(f"{r['system']:<18}{r['capacity']:>12}  {r['calls_per_core']:>10}  {r['share_of_cpu_bound']:>12.1%}"
              f"  {r['admitted']:>8}  {r['refused_callers']:>10} / {r['refusals']:<11}  {r['max_concurrent']:>6}"
              f"  {r['calls_meeting_slo']:>13}  {o['overhead_p50_ms']} / {o['overhead_p95_ms']:<13}"
              f"  {o['stalled_replies']:>7}  {o['barge_in_p95_ms']}")
    levels = sorted({int(n) for r in results for n in r["levels"]})
    print("\np95 overhead (ms) per concurrent calls; *: the SLO missed at that level on O overhead, S stalls,"
          " B barge-in stop")
    print("calls  " + "  ".join(f"{r['system']:>18}" for r in results))
    for n in levels:
        cells = []
        for r in results:
            level = r["levels"].get(str(n))
            missed = "".join(k[0].upper() for k, ok in (level or {}).get("checks", {}).items() if not ok)
            cell = "–" if level is None else f"{level['overhead_p95_ms']}{'*' + missed if missed else ''}"
            cells.append(f"{cell:>18}")
        print(f"{n:>5}  " + "  ".join(cells))
    by_name = {r["system"].split(" ")[0]: r["capacity"] for r in results}
    if "ours" in by_name and "today" in by_name:
        print(f"\ncapacity ours / today:   {ratio(by_name['ours'], by_name['today'])} (target ≥ 1.5)")
    if "ours" in by_name and "pipecat" in by_name:
        print(f"capacity ours / pipecat: {ratio(by_name['ours'], by_name['pipecat'])} (target ≥ 2)")


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    for r, colour in zip(results, ("tab:grey", "tab:green", "tab:blue"), strict=False):
        # a level whose p95 is infinite (failed turns) is drawn at the top, as are those above 3 s
        points = sorted((int(n), min(v["overhead_p95_ms"], 3000) if isinstance(v["overhead_p95_ms"], (int, float))
                         else 3000) for n, v in r["levels"].items())
        ax.plot([n for n, _ in points], [v for _, v in points], "o-", color=colour,
                label=f"{r['system']}: capacity at the SLO {r['capacity']}")
    ax.axhline(500, color="grey", lw=1, ls=":", label="SLO: p95 overhead ≤ 500 ms")
    ax.set_ylim(0, 3000)
    ax.set_xlabel("concurrent calls (callers on the same machine)")
    ax.set_ylabel("p95 overhead at that level (ms; ≥ 3 s or failed turns: 3 s)")
    ax.set_title("Ramp: reply overhead versus concurrent calls")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--baseline-rev", default="8d3dea9", help="the revision that is 'today' (default 8d3dea9)")
    parser.add_argument("--callers", type=int, default=20)
    parser.add_argument("--step", type=int, default=2, help="callers joining at each step")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between steps")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds at the top of the ramp")
    parser.add_argument("--caller-processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--gateway-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for both gateways (repeatable), e.g. limits.max_calls=32")
    parser.add_argument("--pipecat-python", type=Path, default=REPO / ".venv-pipecat" / "bin" / "python")
    parser.add_argument("--pipecat-stock", action="store_true",
                        help="run the Pipecat bot as its examples do (per-call models, library defaults)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "capacity.png")
    args = parser.parse_args()
    if args.callers < 1 or args.step < 1 or args.interval <= 0 or args.hold <= 0:
        parser.error("--callers and --step must be ≥ 1, --interval and --hold positive")
    if "pipecat" in args.systems and not args.pipecat_python.exists():
        parser.error(f"{args.pipecat_python} not found: `make bench-deps` installs the Pipecat peer")
    if "today" in args.systems and subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet",
                                                   f"{args.baseline_rev}^{{commit}}"], capture_output=True).returncode:
        parser.error(f"--baseline-rev {args.baseline_rev}: no such commit here")
    args.out.mkdir(parents=True, exist_ok=True)
    return args


async def main(args: argparse.Namespace) -> None:

    # SIGTERM cancels the run, so the systems are stopped and today's worktree removed.
    this = asyncio.current_task()
    assert this is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, this.cancel)
    machine = machine_speed()
    with tempfile.TemporaryDirectory(prefix="capacity-speech-") as tmp:
        speech = realistic_speech(Path(tmp))
        engines = engine_speed(speech)
        print(f"machine {machine}\nengines {engines}", file=sys.stderr)
        reports = {name: await ramp(name, speech, args) for name in args.systems}
    results = [summary(name, report, engines, args) for name, report in reports.items()]
    machine_after = machine_speed()
    (args.out / "capacity.json").write_text(json.dumps(
        {"machine_before": machine, "machine_after": machine_after, "engines": engines, "settings": vars(args) | {
            "pipecat_python": str(args.pipecat_python), "out": str(args.out), "plot": str(args.plot)},
         "results": results}, indent=2) + "\n")
    plot(results, args.plot)
    print_results(results, machine, engines)
    print(f"machine at the end: python loop {machine_after['python_loop_ms']} ms · matmul {machine_after['matmul_ms']}"
          f" ms · load average {machine_after['load_average']}")


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
