"""ASR decode cost: Whisper's fixed 30 s window versus a window fitted to the utterance.

Decodes every file of ../shared/speech/manifest.tsv (files over 28 s always use the standard
faster-whisper path) ``--repeat`` times in each mode with the default model, and prints per-decode
p50/p95 time, the speed ratio and the corpus word error rate of each mode.

Usage: python benchmarks/asr_window.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engines.whisper import WhisperRecognizer  # noqa: E402
from gateway.qa.measure import normalize, word_errors  # noqa: E402
from tests.support.speech import manifest  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    recognizer = WhisperRecognizer()
    clips = [(u, u.audio()) for u in manifest()]
    results = {}
    for fitted in (False, True):
        recognizer._fitted_window = fitted  # noqa: SLF001 - the benchmark flips the one setting it compares
        recognizer._transcribe_blocking(clips[0][1])  # noqa: SLF001 - warm-up
        times, errors, words = [], 0, 0
        for _ in range(args.repeat):
            for clip, audio in clips:
                started = time.perf_counter()
                text = recognizer._transcribe_blocking(audio).text  # noqa: SLF001 - decode without the worker
                times.append((time.perf_counter() - started) * 1000)
                errors += word_errors(clip.transcript, text)
                words += len(normalize(clip.transcript))
        ordered = sorted(times)
        results[fitted] = (statistics.median(ordered), ordered[round(0.95 * (len(ordered) - 1))], errors / words)
    recognizer.close()
    for fitted, (p50, p95, wer) in results.items():
        name = "fitted window" if fitted else "30 s window  "
        print(f"{name}: decode p50 {p50:.0f} ms, p95 {p95:.0f} ms, WER {wer:.3f}")
    print(f"speed-up p50: {results[False][0] / results[True][0]:.2f}x")


if __name__ == "__main__":
    main()
