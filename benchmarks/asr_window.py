"""ASR decode cost: Whisper's fixed 30 s window versus a window fitted to the utterance.

Decodes every file of ../shared/speech/manifest.tsv (files over 28 s always use the standard
faster-whisper path) ``--repeat`` times in each mode with the default model, and prints per-decode
p50/p95 time, the speed ratio and the corpus word error rate of each mode.

Usage: python benchmarks/asr_window.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engines.whisper import WhisperRecognizer  # noqa: E402
from qa.measure import normalize, word_errors  # noqa: E402
from tests.support.speech import Utterance, manifest  # noqa: E402


async def measure(fitted: bool, clips: list[tuple[Utterance, Any]], repeat: int) -> tuple[float, float, float]:
    recognizer = WhisperRecognizer(fitted_window=fitted)
    await recognizer.transcribe(clips[0][1])  # warm-up
    times, errors, words = [], 0, 0
    for _ in range(repeat):
        for clip, audio in clips:
            transcript = await recognizer.transcribe(audio)
            times.append(transcript.compute_seconds * 1000)
            errors += word_errors(clip.transcript, transcript.text)
            words += len(normalize(clip.transcript))
    recognizer.close()
    ordered = sorted(times)
    return statistics.median(ordered), ordered[round(0.95 * (len(ordered) - 1))], errors / words


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    clips = [(u, u.audio()) for u in manifest()]
    results = {fitted: await measure(fitted, clips, args.repeat) for fitted in (False, True)}
    for fitted, (p50, p95, wer) in results.items():
        name = "fitted window" if fitted else "30 s window  "
        print(f"{name}: decode p50 {p50:.0f} ms, p95 {p95:.0f} ms, WER {wer:.3f}")
    print(f"speed-up p50: {results[False][0] / results[True][0]:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
