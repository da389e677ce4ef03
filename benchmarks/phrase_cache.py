"""What a repeated phrase costs: Piper synthesis vs a hit of the phrase cache (engines/phrase_cache.py).

Synthesises the echo agent's prefix and the default apology ``--repeat`` times each, through
the bare :class:`PiperSynthesizer` (baseline) and through :class:`PhraseCache` (one miss, then
hits), in the same run, and prints wall and process-CPU p50/p95 per phrase with ratios. The
machine's speed (benchmarks/machine.py) is measured before and after.

Usage: python benchmarks/phrase_cache.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.machine import machine_speed  # noqa: E402
from engines.base import SpeechSynthesizer  # noqa: E402
from engines.phrase_cache import PhraseCache  # noqa: E402
from engines.piper_tts import PiperSynthesizer  # noqa: E402

PHRASES = ("You said:", "Sorry, I can't answer that right now.")


def cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1000


async def costs(synthesizer: SpeechSynthesizer, repeat: int) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for _ in range(repeat):
        for text in PHRASES:
            cpu, wall = cpu_ms(), time.perf_counter()
            async for _piece in synthesizer.synthesize(text):
                pass
            walls.append((time.perf_counter() - wall) * 1000)
            cpus.append(cpu_ms() - cpu)
    return walls, cpus


def p95(values: list[float]) -> float:
    return sorted(values)[round(0.95 * (len(values) - 1))]


async def run(repeat: int) -> None:
    piper = PiperSynthesizer(threads=1)
    await piper.warm_up()
    cache = PhraseCache(piper)
    rows = {"piper": await costs(piper, repeat), "phrase cache": await costs(cache, repeat)}
    print(f"cache: {cache.hits} hits, {cache.misses} misses, {cache.bytes} bytes held")
    base = statistics.median(rows["piper"][1])
    print(f"\n{'':<14} {'wall p50/p95 ms':>16} {'CPU p50/p95 ms':>16} {'CPU p50 ratio':>14}")
    for name, (walls, cpus) in rows.items():
        print(f"{name:<14} {statistics.median(walls):>7.3f}/{p95(walls):<8.3f} {statistics.median(cpus):>7.3f}/"
              f"{p95(cpus):<8.3f} {statistics.median(cpus) / base:>14.4f}")
    piper.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print("machine before:", machine_speed())
    asyncio.run(run(args.repeat))
    print("machine after:", machine_speed())


if __name__ == "__main__":
    main()
