"""Silero VAD batched across calls: the same probabilities as each call alone, real speech, real model."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from engines.silero import WINDOW_SAMPLES, SileroVad
from engines.worker import InferenceWorker
from tests.support.speech import manifest

FILES = ["timit_LDC93S1.wav", "ps_goforward.wav", "ps_cards_005.wav", "whisper_jfk.flac", "uberi_english.wav"]


def _windows(name: str) -> np.ndarray:
    audio = next(u for u in manifest() if u.file == name).audio()[: 3 * 16_000]
    return audio[: len(audio) // WINDOW_SAMPLES * WINDOW_SAMPLES].reshape(-1, WINDOW_SAMPLES)


async def _alone(windows: np.ndarray) -> list[float]:
    vad = SileroVad(batching=False)
    stream = vad.stream()
    probabilities = [p for i in range(0, len(windows), 3) for p in await stream.probabilities(windows[i: i + 3])]
    vad.close()
    return probabilities


async def _call(vad: SileroVad, windows: np.ndarray, gate: threading.Event) -> list[float]:
    """One call feeding 1-3 windows at a time (as 20 ms frames make them), every feed queued behind ``gate``."""
    stream, out = vad.stream(), []
    for i, count in enumerate(range(0, len(windows), 3)):
        if i == 0:
            await asyncio.sleep(0.05)
            gate.set()
        out += await stream.probabilities(windows[count: count + 1 + i % 3])
        out += await stream.probabilities(windows[count + 1 + i % 3: count + 3])
    return out


async def test_batched_windows_of_several_calls_have_each_calls_own_probabilities() -> None:
    clips = [_windows(name) for name in FILES]
    expected = [await _alone(windows) for windows in clips]
    worker = InferenceWorker("vad", threads=1, max_pending=4096)
    vad = SileroVad(worker=worker)
    gate = threading.Event()
    blocker = asyncio.ensure_future(worker.run(gate.wait))  # the first feeds of every call queue up behind it
    got = await asyncio.gather(*(_call(vad, windows, gate) for windows in clips))
    await blocker
    for alone, batched in zip(expected, got, strict=True):
        assert len(batched) == len(alone)
        assert np.allclose(batched, alone, atol=1e-4)
        assert max(alone) > 0.9  # real speech, not a trivial all-zero case
    assert vad.windows_run == sum(len(w) for w in clips)
    assert vad.model_runs < vad.windows_run  # some windows did run together
    vad.close()
    worker.close()


async def test_without_batching_each_window_is_one_run() -> None:
    vad = SileroVad(batching=False)
    streams = [vad.stream() for _ in range(3)]
    windows = _windows(FILES[0])[:4]
    await asyncio.gather(*(s.probabilities(windows) for s in streams))
    assert vad.model_runs == vad.windows_run == 12
    assert await streams[0].probabilities(windows[:0]) == []
    vad.close()
