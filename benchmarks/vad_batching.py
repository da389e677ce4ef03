"""CPU per VAD window with 1, 4 and 12 calls: each call's windows alone vs batched across calls.

Each of N calls (real speech from the manifest) feeds its 32 ms windows one at a time as fast as
the VAD answers (the saturated case, when windows of several calls are due together), through
one shared :class:`SileroVad` with ``batching`` off (before) and on, in the same run. Prints the
process CPU µs per window (p50/p95 over ``--repeat`` runs), the mean batch, and the ratio; the
machine's speed (benchmarks/machine.py) is measured before and after.

Usage: python benchmarks/vad_batching.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.machine import machine_speed  # noqa: E402
from engines.silero import WINDOW_SAMPLES, SileroVad  # noqa: E402
from tests.support.speech import manifest  # noqa: E402

WINDOWS = 150  # per call: 4.8 s of audio


def cpu_us() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1e6


def call_windows(calls: int) -> list[np.ndarray]:
    audio = np.concatenate([u.audio() for u in manifest()[:8]])
    per_call = WINDOWS * WINDOW_SAMPLES
    return [np.roll(audio, i * 7919)[:per_call].reshape(WINDOWS, WINDOW_SAMPLES) for i in range(calls)]


async def feed(vad: SileroVad, windows: np.ndarray) -> None:
    stream = vad.stream()
    for i in range(len(windows)):
        await stream.probabilities(windows[i: i + 1])


async def per_window(batching: bool, calls: int) -> tuple[float, float]:
    """(CPU µs per window, mean batch) of ``calls`` calls fed at once."""
    vad = SileroVad(batching=batching)
    await feed(vad, call_windows(1)[0][:10])  # warm-up
    vad.windows_run = vad.model_runs = 0
    clips = call_windows(calls)
    started = cpu_us()
    await asyncio.gather(*(feed(vad, windows) for windows in clips))
    cost = (cpu_us() - started) / (calls * WINDOWS)
    batch = vad.windows_run / max(1, vad.model_runs)
    vad.close()
    return cost, batch


async def run(repeat: int) -> None:
    print(f"\n{'calls':>5} {'mode':<9} {'CPU µs/window p50/p95':>22} {'mean batch':>11} {'ratio':>6}")
    for calls in (1, 4, 12):
        results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(repeat):  # interleaved, so both see the same machine
            for batching in (False, True):
                results[batching].append(await per_window(batching, calls))
        base = statistics.median(c for c, _ in results[False])
        for batching, rows in results.items():
            costs = sorted(c for c, _ in rows)
            print(f"{calls:>5} {'batched' if batching else 'alone':<9} {statistics.median(costs):>12.0f} / "
                  f"{costs[round(0.95 * (len(costs) - 1))]:<7.0f} {statistics.mean(b for _, b in rows):>11.1f} "
                  f"{statistics.median(costs) / base:>6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print("machine before:", machine_speed())
    asyncio.run(run(args.repeat))
    print("machine after:", machine_speed())


if __name__ == "__main__":
    main()
