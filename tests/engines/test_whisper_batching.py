"""Batched final decodes: identical texts to one-by-one decodes on real speech, one generate per window."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from engines.whisper import WhisperRecognizer
from engines.worker import PRIORITY_HIGH, InferenceWorker
from qa.measure import normalize, word_errors
from tests.support.speech import manifest


@pytest.fixture(scope="module")
def recognizer() -> Iterator[WhisperRecognizer]:
    engine = WhisperRecognizer(batching=True)
    yield engine
    engine.close()


async def test_concurrent_finals_are_batched_and_their_texts_equal_one_by_one_decodes(
        recognizer: WhisperRecognizer, monkeypatch: pytest.MonkeyPatch) -> None:
    clips = [(u, u.audio()) for u in manifest() if u.duration < 9.0]
    lone = [recognizer._decode_fitted(audio) for _, audio in clips]
    batches: list[int] = []
    decode = recognizer._transcribe_batch

    def counting(audios: list[Any]) -> Any:
        batches.append(len(audios))
        return decode(audios)

    monkeypatch.setattr(recognizer, "_transcribe_batch", counting)
    gate = threading.Event()
    blocker = recognizer._worker.submit(gate.wait, priority=PRIORITY_HIGH)  # the finals queue up behind it
    finals = [asyncio.ensure_future(recognizer.transcribe(audio)) for _, audio in clips]
    await asyncio.sleep(0.05)
    gate.set()
    await blocker
    texts = [t.text for t in await asyncio.gather(*finals)]
    assert batches == [len(clips)]  # every queued final in one batch_fn call
    assert texts == lone
    errors = sum(word_errors(u.transcript, text) for (u, _), text in zip(clips, texts, strict=True))
    assert errors / sum(len(normalize(u.transcript)) for u, _ in clips) < 0.15


async def test_partials_and_a_lone_final_run_as_before(recognizer: WhisperRecognizer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    audio = manifest()[0].audio()
    batches: list[int] = []
    decode = recognizer._transcribe_batch
    monkeypatch.setattr(recognizer, "_transcribe_batch", lambda a: batches.append(len(a)) or decode(a))
    partial = await recognizer.transcribe(audio, partial=True)
    final = await recognizer.transcribe(audio)
    assert partial.text == final.text == recognizer._decode_fitted(audio)
    assert batches == [1]  # the partial never takes the batch path; the lone final is a batch of one


async def test_the_worker_batches_only_queued_jobs_of_one_key_and_fails_a_batch_together() -> None:
    worker = InferenceWorker("test", threads=1)
    gate = threading.Event()
    calls: list[list[int]] = []

    def double(items: list[int]) -> list[int]:
        calls.append(items)
        if 13 in items:
            raise ValueError("unlucky")
        return [2 * x for x in items]

    blocker = worker.submit(gate.wait, priority=PRIORITY_HIGH)
    a = [asyncio.ensure_future(worker.run_batched(x, double, key="a", priority=PRIORITY_HIGH)) for x in (1, 2, 3)]
    b = asyncio.ensure_future(worker.run_batched(10, double, key="b", priority=PRIORITY_HIGH))
    await asyncio.sleep(0.05)
    gate.set()
    await blocker
    assert await asyncio.gather(*a) == [2, 4, 6] and await b == 20
    assert sorted(calls) == [[1, 2, 3], [10]]
    gate.clear()
    blocker = worker.submit(gate.wait, priority=PRIORITY_HIGH)
    bad = [asyncio.ensure_future(worker.run_batched(x, double, key="a", priority=PRIORITY_HIGH)) for x in (12, 13)]
    await asyncio.sleep(0.05)
    gate.set()
    results = await asyncio.gather(*bad, return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)
    assert worker.queue_depth == 0
    calls.clear()
    gate.clear()
    blocker = worker.submit(gate.wait, priority=PRIORITY_HIGH)
    few = [asyncio.ensure_future(worker.run_batched(x, double, key="a", priority=PRIORITY_HIGH, min_batch=3))
           for x in (4, 5)]
    await asyncio.sleep(0.05)
    gate.set()
    assert await asyncio.gather(*few) == [8, 10]
    assert calls == [[4], [5]]  # under min_batch: one by one
    worker.close()


async def test_batch_lane_jobs_are_never_batched() -> None:
    from engines.worker import batch_lane

    worker = InferenceWorker("test", threads=1)
    gate = threading.Event()
    calls: list[list[int]] = []

    def ident(items: list[int]) -> list[int]:
        calls.append(items)
        return items

    blocker = worker.submit(gate.wait, priority=PRIORITY_HIGH)
    with batch_lane():
        jobs = [asyncio.ensure_future(worker.run_batched(x, ident, key="a")) for x in (1, 2, 3)]
    await asyncio.sleep(0.05)
    gate.set()
    await blocker
    assert await asyncio.gather(*jobs) == [1, 2, 3]
    assert calls == [[1], [2], [3]]  # the speech services' uploads keep their one-window jobs
    worker.close()
