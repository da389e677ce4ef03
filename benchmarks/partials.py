"""CPU cost of the partial transcripts of one utterance: whole-utterance re-decodes vs bounded windows.

Feeds real utterances (the manifest's 3 s, 11 s and the first 12 s of the 18 s clip: the load
test's 3-12 s range) through :class:`gateway.voice.transcription.PartialTranscriber` with the real
Whisper recogniser, one partial every 800 ms of audio (as the gateway does), waiting for each, so
none is shed: the cost on an idle recogniser. Three modes, in the same run:

- ``whole``: every partial re-decodes the whole utterance over the finals' 10 s least window (before);
- ``window``: at most 5 s since the last seam (``engines.asr_partial_window_ms``);
- ``window+6s``: the same over a 6 s least window (``engines.asr_partial_min_window_ms``; the default).

Prints, per mode, the CPU of all partials of an utterance (process CPU time, every thread), per
partial p50/p95, the audio decoded, the deltas' word error rate against the reference, and checks
that the final (a decode of the whole utterance) is the same in every mode. The machine's speed
(benchmarks/machine.py) is measured before and after.

Usage: python benchmarks/partials.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import resource
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.machine import machine_speed  # noqa: E402
from engines.base import SAMPLE_RATE  # noqa: E402
from engines.whisper import WhisperRecognizer  # noqa: E402
from gateway.aio import TaskSet  # noqa: E402
from gateway.voice.transcription import PartialTranscriber  # noqa: E402
from qa.measure import normalize, word_errors  # noqa: E402
from tests.support.speech import manifest  # noqa: E402

MODES = (("whole", 0, 10_000), ("window", 5000, 10_000), ("window+6s", 5000, 6000))
INTERVAL = SAMPLE_RATE * 8 // 10


def cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1000


def clips() -> list[tuple[str, Any, str]]:
    """(name, 16 kHz audio, reference) of a 3 s, an 11 s and a 12 s utterance."""
    chosen = []
    for clip in manifest():
        if clip.path.name == "ps_cards_005.wav" or clip.path.name == "whisper_jfk.flac":
            chosen.append((clip.path.name, clip.audio(), clip.transcript))
    return chosen


async def partials_of(recognizer: WhisperRecognizer, audio: Any, window_ms: int) -> tuple[str, list[float], int]:
    """(the deltas' text, CPU ms of each partial, samples decoded) for one utterance fed at 800 ms steps."""
    tasks = TaskSet("bench")
    deltas: list[str] = []
    partials = PartialTranscriber(recognizer, deltas.append, interval_samples=INTERVAL, tasks=tasks,
                                  window_samples=window_ms * SAMPLE_RATE // 1000)
    costs: list[float] = []
    for end in range(INTERVAL, len(audio) + 1, INTERVAL):
        started = cpu_ms()
        partials.maybe_decode(functools.partial(audio.__getitem__, slice(0, end)), end)
        if partials._task is not None:
            await partials._task
        costs.append(cpu_ms() - started)
    await tasks.close()
    return "".join(deltas), costs, partials.samples_decoded


async def run(repeat: int) -> list[dict[str, Any]]:
    utterances = clips()
    harvard = next(c for c in manifest() if c.path.name == "realpython_harvard.wav")
    utterances.append(("harvard[:12s]", harvard.audio()[: 12 * SAMPLE_RATE], ""))
    rows = []
    for mode, window_ms, min_window_ms in MODES:
        recognizer = WhisperRecognizer(partial_min_window_ms=min_window_ms)
        await recognizer.transcribe(utterances[0][1], partial=True)  # warm-up
        for name, audio, reference in utterances:
            totals, each, decoded, text = [], [], 0, ""
            for _ in range(repeat):
                text, costs, decoded = await partials_of(recognizer, audio, window_ms)
                totals.append(sum(costs))
                each += [c for c in costs if c > 1]
            final = (await recognizer.transcribe(audio)).text
            ordered = sorted(each)
            rows.append({"mode": mode, "clip": name, "seconds": round(len(audio) / SAMPLE_RATE, 1),
                         "partials_cpu_ms": round(statistics.median(totals)), "partials": len(each) // repeat,
                         "partial_p50_ms": round(statistics.median(ordered)),
                         "partial_p95_ms": round(ordered[round(0.95 * (len(ordered) - 1))]),
                         "audio_decoded_s": round(decoded / SAMPLE_RATE, 1),
                         "delta_wer": round(word_errors(reference, text) / max(1, len(normalize(reference))), 3)
                         if reference else None, "final": final, "deltas": text})
        recognizer.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print("machine before:", machine_speed())
    rows = asyncio.run(run(args.repeat))
    print("machine after:", machine_speed())
    base = {row["clip"]: row for row in rows if row["mode"] == "whole"}
    print(f"\n{'mode':<10} {'clip':<18} {'s':>5} {'partials CPU ms':>16} {'ratio':>6} {'n':>3} "
          f"{'p50/p95 ms':>11} {'decoded s':>9} {'delta WER':>9}  final same")
    for row in rows:
        ref = base[row["clip"]]
        print(f"{row['mode']:<10} {row['clip']:<18} {row['seconds']:>5} {row['partials_cpu_ms']:>16} "
              f"{row['partials_cpu_ms'] / ref['partials_cpu_ms']:>6.2f} {row['partials']:>3} "
              f"{row['partial_p50_ms']:>5}/{row['partial_p95_ms']:<5} {row['audio_decoded_s']:>9} "
              f"{row['delta_wer'] if row['delta_wer'] is not None else '-':>9}  {row['final'] == ref['final']}")
    for row in rows:
        print(f"{row['mode']:<10} {row['clip']:<18} deltas: {row['deltas']!r}")


if __name__ == "__main__":
    main()
