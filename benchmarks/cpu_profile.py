"""Where the gateway's CPU goes at saturation, before and after the cheaper-calls switches, in one run.

For each mode, starts a gateway, runs the load test (``--callers`` callers in conversation, clips of
3-12 s, a quarter of replies talked over) for ``--duration`` s, and over its middle ``--profile`` s
samples the gateway with py-spy (``--threads``, active samples only) and reads every thread's CPU
time from ``/proc/<pid>/task/*/stat``. Threads are named by py-spy's report (native thread ids);
threads py-spy does not know (CTranslate2's and onnxruntime's own pools) are counted as "native".

Modes: ``before`` turns off the switches of docs/benchmarks.md "Where the CPU went"
(``media.opus_decode_16k``, ``engines.vad_batching``, ``engines.tts_phrase_cache_bytes``,
``engines.asr_partial_window_ms``, ``engines.asr_partial_min_window_ms``); ``after`` is the defaults.
Prints, per mode: overhead p50/p95, turns, WER, gateway CPU (% of one core) and its share per
thread, and the hottest Python functions (leaf frames). The machine's speed (benchmarks/machine.py)
is measured before and after. Needs py-spy (the ``bench`` extra) and ptrace rights.

Usage: python benchmarks/cpu_profile.py [--callers 12 --duration 60 --profile 30]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.latency import start_gateway_process  # noqa: E402
from benchmarks.machine import machine_speed  # noqa: E402
from qa.loadtest import LoadOptions, run_loadtest  # noqa: E402

BEFORE = ("media.opus_decode_16k=false", "engines.vad_batching=false", "engines.tts_phrase_cache_bytes=0",
          "engines.asr_partial_window_ms=0", "engines.asr_partial_min_window_ms=10000")
MODES: dict[str, tuple[str, ...]] = {"before": BEFORE, "after": ()}
TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of ``pid``."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        times[int(task.name)] = (int(fields[11]) + int(fields[12])) / TICK
    return times


def parse_raw(text: str) -> tuple[dict[int, str], collections.Counter[str]]:
    """(thread id → name, samples per leaf function) from py-spy's raw (collapsed) output."""
    names: dict[int, str] = {}
    leaves: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        head, _, frames = stack.partition(";")
        if not head.startswith("thread (") or not count.isdigit():
            continue
        tid, _, name = head[len("thread ("):].partition("): ")
        names[int(tid, 0)] = name
        leaf = frames.rsplit(";", 1)[-1] if frames else "(idle)"
        leaves[f"{name}: {leaf}"] += int(count)
    return names, leaves


def read_text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def profile(pid: int, seconds: float, out: Path) -> dict[str, Any]:
    """Per-thread CPU and py-spy leaves of ``pid`` over ``seconds``."""
    before = thread_cpu(pid)
    started = time.monotonic()
    spy = await asyncio.create_subprocess_exec(
        shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")), "record", "-p", str(pid),
        "-d", str(int(seconds)), "-r", "20", "--threads", "--nonblocking", "-f", "raw", "-o", str(out),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await spy.wait()
    after, wall = thread_cpu(pid), time.monotonic() - started
    names, leaves = parse_raw(read_text(out))
    per_name: dict[str, float] = collections.defaultdict(float)
    for tid, cpu in after.items():
        name = names.get(tid, "native (not a Python thread)")
        per_name[name.split("-")[0] if name.startswith(("asr-", "tts-", "vad-")) else name] += cpu - before.get(tid, 0)
    total = sum(per_name.values())
    busiest = sorted(per_name.items(), key=lambda kv: -kv[1])[:10]
    return {"cpu_percent": round(100 * total / wall, 1),
            "threads_percent": {k: round(100 * v / wall, 1) for k, v in busiest},
            "top_leaves": leaves.most_common(15), "samples": sum(leaves.values())}


async def run_mode(mode: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    extra = ["--max-calls", str(args.callers * 2), "--set", "limits.max_calls_per_client=0",
             "--set", "limits.calls_per_client_per_minute=0", "--set", "server.grpc_port=0",
             # A stalled machine (shared, busy) brings audio in bursts; ending those calls would end the test.
             "--set", "limits.max_dropped_audio_seconds=0"]
    for setting in MODES[mode]:
        extra += ["--set", setting]
    process, url = await start_gateway_process(extra)
    try:
        options = LoadOptions(url=url, callers=args.callers, duration_s=args.duration, speech=str(args.speech),
                              ramp_s=min(args.duration / 4, args.callers * 0.5), processes=2, out=None,
                              barge_in_rate=0.25, seed=args.callers, max_clip_s=12.0)
        load = asyncio.ensure_future(run_loadtest(options, progress=None))
        await asyncio.sleep((args.duration - args.profile) / 2)
        profiled = await profile(process.pid, args.profile, workdir / f"{mode}.raw")
        # A caller whose call the gateway ended can wait on it for long: the report is given up on then.
        try:
            report = await asyncio.wait_for(load, args.duration + 120)
        except TimeoutError:
            report = {"overhead_ms": {"p50": None, "p95": None}, "turns": None, "wer": None, "failed_turns": None,
                      "replies_with_underrun": None}
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    return {"mode": mode, "overhead_ms": report["overhead_ms"], "turns": report["turns"], "wer": report["wer"],
            "failed_turns": report["failed_turns"], "underruns": report["replies_with_underrun"], **profiled}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=int, default=12)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--profile", type=float, default=30.0)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--speech", type=Path, default=REPO.parent / "shared" / "speech" / "manifest.tsv")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "cpu_profile.json")
    args = parser.parse_args()
    print("machine before:", machine_speed())
    with tempfile.TemporaryDirectory() as workdir:
        results = [await run_mode(mode, args, Path(workdir)) for mode in args.modes]
    print("machine after:", machine_speed())
    for row in results:
        overhead = row["overhead_ms"]
        print(f"\n{row['mode']}: overhead p50 {overhead['p50']} / p95 {overhead['p95']} ms, {row['turns']} turns, "
              f"{row['failed_turns']} failed, {row['underruns']} underruns, WER {row['wer']}; "
              f"gateway CPU {row['cpu_percent']} % of a core")
        for name, percent in row["threads_percent"].items():
            print(f"    {percent:>6} %  {name}")
        print("  hottest leaf frames (py-spy samples):")
        for leaf, count in row["top_leaves"][:10]:
            print(f"    {100 * count / max(1, row['samples']):>5.1f} %  {leaf}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
