"""CPU cost of one ASR decode and of one second of TTS, per thread setting, in the same run.

On a machine whose cores are shared by many calls, what limits capacity is CPU time per unit of
work, not the wall time of one job on an idle machine. This measures both (process CPU time via
``resource.getrusage``, which counts every thread, spinning ones included) for:

- Whisper (the default model, fitted window) on every manifest clip ≤ 4 s: CTranslate2 with 2
  and 1 threads, with numpy's BLAS (Whisper's feature extraction) left at one spinning thread
  per core (the baseline) and limited to one thread; and a partial decode (the 6 s least window of
  ``engines.asr_partial_min_window_ms``, instead of the finals' 10 s);
- Piper (the default voice) on a few sentences: onnxruntime's default intra-op pool (one spinning
  thread per core, the baseline) and one thread per synthesis.

Prints p50/p95 per decode (ASR) and the CPU real-time factor (TTS), with ratios to the baseline.

Usage: python benchmarks/engine_cpu.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from threadpoolctl import threadpool_limits  # noqa: E402

from benchmarks.machine import machine_speed  # noqa: E402
from media.pcm import read_audio_file  # noqa: E402
from tests.support.speech import manifest  # noqa: E402

SENTENCES = [
    "You said: the quick brown fox jumped over the lazy dog near the river bank.",
    "I would like to book a table for two at seven tonight, please.",
    "Well, that is an interesting question about the weather tomorrow.",
]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(job: Callable[[], Any], repeat: int) -> tuple[list[float], list[float]]:
    """(wall ms, CPU ms) of each of ``repeat`` runs of ``job``."""
    job()  # warm up
    walls, cpus = [], []
    for _ in range(repeat):
        cpu, wall = cpu_seconds(), time.perf_counter()
        job()
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((cpu_seconds() - cpu) * 1000)
    return walls, cpus


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def asr_rows(repeat: int) -> list[dict[str, Any]]:
    from engines.whisper import WhisperRecognizer

    clips = [read_audio_file(u.path) for u in manifest() if u.duration <= 4.0]
    rows = []
    for threads, blas, partial in ((2, None, False), (2, 1, False), (1, 1, False), (1, 1, True)):
        recognizer = WhisperRecognizer(None, cpu_threads=threads, partial_min_window_ms=6000)
        walls: list[float] = []
        cpus: list[float] = []
        with threadpool_limits(limits=blas, user_api="blas"):
            for clip in clips:
                wall, cpu = measure(functools.partial(recognizer._transcribe_blocking, clip, partial=partial), repeat)
                walls += wall
                cpus += cpu
        recognizer.close()
        rows.append({"engine": "asr", "setting": f"ctranslate2 {threads} thread(s), BLAS "
                     + ("1 thread" if blas else "default (spinning)") + (", partial: 6 s window" if partial else ""),
                     "wall_p50_ms": round(statistics.median(walls), 1), "wall_p95_ms": round(p(walls, 0.95), 1),
                     "cpu_p50_ms": round(statistics.median(cpus), 1), "cpu_p95_ms": round(p(cpus, 0.95), 1)})
    return rows


def synthesize_all(voice: Any) -> None:
    for text in SENTENCES:
        list(voice.synthesize(text))


def tts_rows(repeat: int) -> list[dict[str, Any]]:
    from piper import PiperVoice

    from engines.piper_tts import _bounded_session as session
    from engines.piper_tts import packaged_voice_path

    path = packaged_voice_path()
    rows = []
    for intra in (0, 1):
        voice = PiperVoice.load(str(path))
        voice.session = session(path, intra, ["CPUExecutionProvider"])
        rate = voice.config.sample_rate
        seconds = sum(len(c.audio_float_array) for t in SENTENCES for c in voice.synthesize(t)) / rate
        walls, cpus = measure(functools.partial(synthesize_all, voice), repeat * 3)
        rows.append({"engine": "tts", "setting": "onnxruntime " + ("1 thread" if intra else "default pool (spinning)"),
                     "wall_rtf_p50": round(statistics.median(walls) / 1000 / seconds, 4),
                     "cpu_rtf_p50": round(statistics.median(cpus) / 1000 / seconds, 4),
                     "cpu_rtf_p95": round(p(cpus, 0.95) / 1000 / seconds, 4)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "engine_cpu.json")
    args = parser.parse_args()
    print("machine before:", machine_speed())
    asr, tts = asr_rows(args.repeat), tts_rows(args.repeat)
    print("machine after:", machine_speed())
    print("\nASR decode of a clip ≤ 4 s                       wall p50 / p95 (ms)   CPU p50 / p95 (ms)   CPU p50 ratio")
    for row in asr:
        print(f"{row['setting']:<62} {row['wall_p50_ms']:>6} / {row['wall_p95_ms']:<6}  {row['cpu_p50_ms']:>6} / "
              f"{row['cpu_p95_ms']:<6}  {row['cpu_p50_ms'] / asr[0]['cpu_p50_ms']:.2f}")
    print("\nTTS                                   wall RTF p50   CPU RTF p50 / p95   CPU p50 ratio")
    for row in tts:
        print(f"{row['setting']:<40} {row['wall_rtf_p50']:>8}   {row['cpu_rtf_p50']:>8} / {row['cpu_rtf_p95']:<8}  "
              f"{row['cpu_rtf_p50'] / tts[0]['cpu_rtf_p50']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"asr": asr, "tts": tts}, indent=2) + "\n")


if __name__ == "__main__":
    main()
