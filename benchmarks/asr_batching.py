"""Cross-call batching: concurrent final decodes in one CTranslate2 generate, versus one by one.

``N`` concurrent streams (1/4/8/16) each ask for ``--per-stream`` final transcripts of the shared speech
(clips under 9 s: one fitted window), all at once, through :class:`engines.whisper.WhisperRecognizer` with
``batching`` on and off — two recognisers in the same run, the order alternated per ``N``. Prints, per mode,
the decodes' latency (submitted → text) p50/p95, the throughput (decodes/s) and the ratio, whether the texts
are identical, and the machine's speed (benchmarks/machine.py).

``--tts`` also measures Piper: ``N`` clauses synthesised as one onnxruntime run of a padded batch, versus one
run each (the shape the worker uses today).

It runs on whatever device ``--device`` (``engines.device``: auto | cpu | cuda, default auto) resolves to and
prints it, so the same command gives per-engine figures on a GPU host.

Usage: python benchmarks/asr_batching.py [--streams 1,4,8,16] [--per-stream 2] [--tts] [--device auto]
       [--compute-type int8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.machine import machine_speed  # noqa: E402
from engines.whisper import WhisperRecognizer  # noqa: E402
from tests.support.speech import manifest  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


async def _streams(recognizer: WhisperRecognizer, clips: list[Any], streams: int, per_stream: int) -> dict[str, Any]:
    latencies: list[float] = []
    texts: dict[tuple[int, int], str] = {}

    async def stream(index: int) -> None:
        for turn in range(per_stream):
            clip = clips[(index + turn * streams) % len(clips)]
            started = time.perf_counter()
            transcript = await recognizer.transcribe(clip)
            latencies.append((time.perf_counter() - started) * 1000)
            texts[(index, turn)] = transcript.text

    started = time.perf_counter()
    await asyncio.gather(*(stream(i) for i in range(streams)))
    wall = time.perf_counter() - started
    return {"p50": statistics.median(latencies), "p95": _pct(latencies, 0.95),
            "throughput": len(latencies) / wall, "texts": texts}


async def measure_asr(streams_list: list[int], per_stream: int, device: str, compute_type: str) -> None:
    clips = [u.audio() for u in manifest() if u.duration < 9.0]
    engines = {mode: WhisperRecognizer(batching=mode, device=device, compute_type=compute_type)
               for mode in (True, False)}
    print(f"whisper on {engines[True].device}, compute type {engines[True].compute_type}")
    for recognizer in engines.values():
        await recognizer.transcribe(clips[0])  # warm-up
    print("streams  mode       p50 ms   p95 ms   decodes/s   (batched/unbatched)")
    for n, streams in enumerate(streams_list):
        order = (True, False) if n % 2 == 0 else (False, True)
        results = {mode: await _streams(engines[mode], clips, streams, per_stream) for mode in order}
        same = results[True]["texts"] == results[False]["texts"]
        for mode in (False, True):
            r = results[mode]
            ratio = f"   x{r['throughput'] / results[False]['throughput']:.2f} throughput" if mode else ""
            print(f"{streams:7d}  {'batched  ' if mode else 'one-by-one'} {r['p50']:7.0f}  {r['p95']:7.0f}"
                  f"   {r['throughput']:9.2f}{ratio}")
        print(f"         texts identical: {same}")
    for recognizer in engines.values():
        recognizer.close()


def measure_tts(streams_list: list[int], device: str, repeat: int = 3) -> None:
    """Piper: a padded batch of N clauses in one session.run versus N runs (one thread, as in the worker)."""
    from engines.piper_tts import PiperSynthesizer

    tts = PiperSynthesizer(threads=1, device=device)
    print(f"piper on {tts.device}")
    voice = next(iter(tts._voices.values()))  # a benchmark reads the session directly
    clauses = ["Sure, I can help with that.", "The weather tomorrow looks sunny and warm.",
               "Your order has shipped.", "Is there anything else I can do for you today?"]
    ids = [voice.phonemes_to_ids(voice.phonemize(text)[0]) for text in clauses]
    scales = np.array([voice.config.noise_scale, voice.config.length_scale, voice.config.noise_w_scale], np.float32)

    def run(batch: list[list[int]]) -> None:
        width = max(len(x) for x in batch)
        array = np.zeros((len(batch), width), np.int64)
        for i, x in enumerate(batch):
            array[i, : len(x)] = x
        voice.session.run(None, {"input": array, "input_lengths": np.array([len(x) for x in batch], np.int64),
                                 "scales": scales})

    print("clauses  one-by-one ms  one batch ms  ratio")
    for streams in streams_list:
        batch = [ids[i % len(ids)] for i in range(streams)]
        run(batch[:1])
        lone = min(_timed(lambda b=batch: [run([x]) for x in b]) for _ in range(repeat))
        together = min(_timed(lambda b=batch: run(b)) for _ in range(repeat))
        print(f"{streams:7d}  {lone:13.0f}  {together:12.0f}  x{lone / together:.2f}")
    tts.close()


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="1,4,8,16")
    parser.add_argument("--per-stream", type=int, default=2)
    parser.add_argument("--tts", action="store_true")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--compute-type", default="int8")
    args = parser.parse_args()
    streams = [int(x) for x in args.streams.split(",")]
    print("machine before:", machine_speed())
    await measure_asr(streams, args.per_stream, args.device, args.compute_type)
    if args.tts:
        measure_tts(streams, args.device)
    print("machine after:", machine_speed())


if __name__ == "__main__":
    asyncio.run(main())
