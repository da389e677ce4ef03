"""Admission benchmark: the same load with the admission model on and off (the same-run baseline).

Starts a gateway with the defaults (``admission.enabled = true``), runs ``voice-gateway loadtest`` logic with
``--callers`` callers joining over ``--ramp`` seconds (speech ≤ ``--max-clip`` s, a quarter of the replies
talked over) for ``--duration`` seconds, polling ``/readyz`` and ``/metrics`` every second (headroom,
degradation level, learned call cost); then the same with ``admission.enabled = false`` (only
``limits.max_calls`` and the load checks: the behaviour of the issue). Prints, per mode: calls admitted and
refused, overhead p50/p95, replies with underruns, barge-in stop p50, the degradation levels seen; and the
ratios off / on. The machine's speed (benchmarks/machine.py) is measured before and after.

The callers run on the same machine (in 2 processes): their load counts in the machine's busy CPUs, which is
what the admission reads. A refused caller does not retry.

Usage: python benchmarks/admission.py [--callers 12] [--duration 40] [--ramp 10] [--max-clip 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.latency import start_gateway_process  # noqa: E402
from benchmarks.machine import machine_speed  # noqa: E402
from qa.loadtest import LoadOptions, run_loadtest  # noqa: E402

GAUGES = ("voice_gateway_admission_headroom_calls", "voice_gateway_cpu_utilization",
          "voice_gateway_degradation_level", 'voice_gateway_call_cost_cores{state="idle"}',
          'voice_gateway_call_cost_cores{state="active"}')


async def poll(url: str, samples: list[dict[str, Any]]) -> None:
    """Every second: /readyz's status and headroom, and the admission's gauges from /metrics."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with http.get(url + "/readyz") as r:
                    ready = await r.json()
                async with http.get(url + "/metrics") as r:
                    text = await r.text()
                gauges = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                          if line.startswith(GAUGES)}
                samples.append({"readyz": ready.get("status"), "headroom": ready.get("headroom_calls"),
                                "calls": ready.get("active_calls"), **gauges})
            await asyncio.sleep(1.0)


async def run_mode(name: str, settings: list[str], args: argparse.Namespace) -> dict[str, Any]:
    extra = ["--max-calls", str(max(16, args.callers)), "--set", "limits.max_calls_per_client=0",
             "--set", "limits.calls_per_client_per_minute=0"]
    for setting in settings:
        extra += ["--set", setting]
    process, url = await start_gateway_process(extra)
    samples: list[dict[str, Any]] = []
    poller = asyncio.create_task(poll(url, samples))
    try:
        await asyncio.sleep(3.0)  # the admission's calibration at engine load
        options = LoadOptions(url=url, callers=args.callers, duration_s=args.duration, speech=str(args.speech),
                              ramp_s=args.ramp, processes=2, out=None, barge_in_rate=0.25, seed=1,
                              max_clip_s=args.max_clip, timeout_s=10.0)  # an overloaded gateway: give up sooner
        # A load test on a saturated machine has been seen to hang (callers never finishing): bound it.
        report = await asyncio.wait_for(run_loadtest(options, progress=sys.stderr), args.duration + 180)
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    levels = sorted({int(s.get("voice_gateway_degradation_level", 0)) for s in samples})
    return {
        "mode": name,
        "admitted": report["calls"]["connected"],
        "refused": report["calls"]["connect_failures"],
        "turns": report["turns"],
        "overhead_ms": report["overhead_ms"],
        "barge_in_stop_ms": report["barge_in_stop_ms"],
        "replies_with_underrun": report["replies_with_underrun"],
        "degradation_levels": levels,
        "active_call_cores_last": samples[-1].get('voice_gateway_call_cost_cores{state="active"}') if samples else None,
        "samples": samples,
    }


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms"


def summary(rows: list[dict[str, Any]]) -> str:
    lines = ["| mode | admitted | refused | turns | overhead p50 | p95 | barge-in stop p50 | underruns | levels |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        o, b = r["overhead_ms"], r["barge_in_stop_ms"]
        lines.append(f"| {r['mode']} | {r['admitted']} | {r['refused']} | {r['turns']} | {_ms(o.get('p50'))} | "
                     f"{_ms(o.get('p95'))} | {_ms(b.get('p50'))} | {r['replies_with_underrun']} | "
                     f"{r['degradation_levels']} |")
    on, off = rows
    if on["overhead_ms"].get("p95") and off["overhead_ms"].get("p95"):
        lines.append(f"\np95 overhead off / on: {off['overhead_ms']['p95'] / on['overhead_ms']['p95']:.2f}x; "
                     f"calls admitted on / off: {on['admitted']} / {off['admitted']}")
    return "\n".join(lines)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=12)
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--ramp", type=float, default=10.0)
    parser.add_argument("--max-clip", type=float, default=4.0)
    speech = Path(os.environ.get("VOICE_GATEWAY_SPEECH_DIR", REPO.parent / "shared" / "speech"))
    parser.add_argument("--speech", type=Path, default=speech / "manifest.tsv")
    parser.add_argument("--out", type=Path, default=Path("admission-results.json"))
    args = parser.parse_args()
    before = machine_speed()
    rows = [await run_mode("admission on", [], args),
            await run_mode("admission off", ["admission.enabled=false"], args)]
    after = machine_speed()
    args.out.write_text(json.dumps({"machine_before": before, "machine_after": after, "args": vars(args) | {
        "speech": str(args.speech), "out": str(args.out)}, "rows": rows}, indent=1))
    print(f"machine before {before}\nmachine after  {after}")
    print(summary(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
