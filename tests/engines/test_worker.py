from __future__ import annotations

import asyncio
import threading

import pytest

from engines.errors import EngineError
from engines.worker import PRIORITY_HIGH, PRIORITY_LOW, InferenceWorker


async def test_urgent_jobs_run_before_queued_low_priority_ones() -> None:
    worker = InferenceWorker("test", threads=1)
    gate = threading.Event()
    order: list[str] = []
    blocker = worker.submit(gate.wait)
    low = worker.submit(lambda: order.append("low"), priority=PRIORITY_LOW)
    high = worker.submit(lambda: order.append("high"), priority=PRIORITY_HIGH)
    gate.set()
    await asyncio.gather(blocker, low, high)
    assert order == ["high", "low"]
    worker.close()


async def test_cancelled_jobs_are_skipped_and_errors_reach_the_caller() -> None:
    worker = InferenceWorker("test", threads=1)
    gate = threading.Event()
    ran: list[int] = []
    blocker = worker.submit(gate.wait)
    skipped = worker.submit(lambda: ran.append(1))
    skipped.cancel()
    gate.set()
    await blocker

    def boom() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        await worker.run(boom)
    assert ran == []
    assert worker.queue_depth == 0
    worker.close()


async def test_a_full_queue_is_refused_as_retryable() -> None:
    worker = InferenceWorker("test", threads=1, max_pending=2)
    gate = threading.Event()
    jobs = [worker.submit(gate.wait), worker.submit(gate.wait)]
    with pytest.raises(EngineError) as info:
        worker.submit(gate.wait)
    assert info.value.retryable
    gate.set()
    await asyncio.gather(*jobs)
    worker.close()


async def test_utilization_counts_running_and_recent_jobs_and_decays() -> None:
    worker = InferenceWorker("test", threads=1)
    assert worker.utilization == 0.0
    gate = threading.Event()
    job = worker.submit(gate.wait)
    await asyncio.sleep(0.3)
    running = worker.utilization
    assert 0.1 <= running <= 0.2  # 0.3 s busy out of a 2 s window
    gate.set()
    await job
    await asyncio.sleep(0.2)
    assert 0.1 <= worker.utilization <= running + 0.01  # the finished job still counts, idle time does not
    worker.close()
