"""A small inference worker: threads fed from a bounded priority queue.

Final transcripts must not wait behind partial ones, and the first clause of a
reply must not wait behind later clauses, so jobs carry a priority (lower runs
first). A job whose future was cancelled before it started is skipped.

Batch work (the speech services: ``/v1/audio/*`` and the gRPC services) runs in
a *batch lane* (:func:`batch_lane`): below every live priority, bounded apart
(``max_batch_pending``) so that a queue of uploads never makes a live call's job
refused, and left out of :attr:`InferenceWorker.queue_depth` and
:attr:`InferenceWorker.recent_wait_ms` — batch jobs wait by design, and a call's
admission and partial-transcript shedding read those figures. A running job is
never pre-empted, so batch callers cut their work into short jobs (the speech
services decode at most one ~20 s window a job).

Cross-call batching (:meth:`InferenceWorker.run_batched`): jobs submitted with the same
``batch_key`` and priority that are *already queued* when a thread takes one of them run
together, as one call of their ``batch_fn`` (Whisper's final decodes: one batched
CTranslate2 generate). Nothing waits to form a batch: a lone job runs at once, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from engines.errors import EngineError

logger = logging.getLogger(__name__)

T = TypeVar("T")

PRIORITY_HIGH = 0
PRIORITY_NORMAL = 1
PRIORITY_LOW = 2
PRIORITY_BATCH = 3  # the batch lane: after every live job

_BATCH = contextvars.ContextVar("engines_batch_lane", default=False)


@contextlib.contextmanager
def batch_lane() -> Iterator[None]:
    """Jobs submitted in this context (and the tasks it starts) run in the batch lane, whatever priority
    the engine asks for: the speech services wrap their engine calls in it, the calls never do."""
    token = _BATCH.set(True)
    try:
        yield
    finally:
        _BATCH.reset(token)


def in_batch_lane() -> bool:
    return _BATCH.get()

#: Seconds over which :attr:`InferenceWorker.utilization` is measured.
UTILIZATION_WINDOW = 2.0


@dataclass(order=True)
class _Job(Generic[T]):
    priority: int
    sequence: int
    batch: bool = field(compare=False)
    fn: Callable[[], T] = field(compare=False)
    future: asyncio.Future[T] = field(compare=False)
    loop: asyncio.AbstractEventLoop = field(compare=False)
    submitted: float = field(compare=False, default_factory=time.monotonic)
    batch_key: tuple[object, int, int] | None = field(compare=False, default=None)  # (key, min, max): one batch_fn call
    item: Any = field(compare=False, default=None)
    batch_fn: Callable[[list[Any]], list[Any]] | None = field(compare=False, default=None)


class InferenceWorker:
    """Runs blocking model calls off the event loop, most urgent first."""

    def __init__(self, name: str, *, threads: int = 1, max_pending: int = 64, max_batch_pending: int = 16) -> None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self.name = name
        self._queue: queue.PriorityQueue[_Job[Any] | tuple[int, int, None]] = queue.PriorityQueue()
        self._max_pending = max_pending
        self._max_batch_pending = max_batch_pending
        self._batch_pending = 0
        self._counter = itertools.count()
        self._pending = 0
        self._wait_ewma = 0.0
        self._wait_updated = 0.0
        self._lock = threading.Lock()
        self._finished: deque[tuple[float, float]] = deque()  # (started, ended) of recent jobs
        self._running: dict[int, float] = {}  # thread id -> when its current job started
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def queue_depth(self) -> int:
        """Live jobs submitted and not yet finished (the batch lane's are :attr:`batch_depth`)."""
        return self._pending

    @property
    def batch_depth(self) -> int:
        """Batch-lane jobs submitted and not yet finished."""
        return self._batch_pending

    @property
    def recent_wait_ms(self) -> float:
        """Smoothed time jobs waited in the queue before running (decays when idle)."""
        idle = time.monotonic() - self._wait_updated
        return float(self._wait_ewma * 1000 * (0.5 ** max(0.0, idle - 1.0)))

    @property
    def utilization(self) -> float:
        """Share of the threads' time spent running jobs over the last :data:`UTILIZATION_WINDOW` s (0..1)."""
        now = time.monotonic()
        since = now - UTILIZATION_WINDOW
        with self._lock:
            self._drop_finished_before(since)
            busy = sum(end - max(start, since) for start, end in self._finished)
            busy += sum(now - max(start, since) for start in self._running.values())
        return min(1.0, busy / (UTILIZATION_WINDOW * len(self._threads)))

    def _drop_finished_before(self, since: float) -> None:
        """Forget jobs that ended before ``since`` (the lock is held)."""
        while self._finished and self._finished[0][1] <= since:
            self._finished.popleft()

    def submit(self, fn: Callable[[], T], *, priority: int = PRIORITY_NORMAL) -> asyncio.Future[T]:
        return self._submit(fn, priority)

    async def run_batched(self, item: Any, batch_fn: Callable[[list[Any]], list[T]], *, key: object,
                          priority: int = PRIORITY_NORMAL, min_batch: int = 2, max_batch: int = 16) -> T:
        """``batch_fn([item])[0]``, or one element of a ``batch_fn`` call over the queued jobs of ``key``.

        A batch forms only when at least ``min_batch`` such jobs are queued (fewer run one by one), and holds
        at most ``max_batch``. ``batch_fn`` maps items to results in order; it raising fails every job of it.
        """
        return await self._submit(lambda: batch_fn([item])[0], priority, (key, min_batch, max_batch), item,
                                  batch_fn)

    def _submit(self, fn: Callable[[], T], priority: int, batch_key: tuple[object, int, int] | None = None,
                item: Any = None, batch_fn: Callable[[list[Any]], list[Any]] | None = None) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        batch = _BATCH.get()
        with self._lock:
            if self._closed:
                raise EngineError(self.name, "worker is closed", retryable=False)
            if batch:
                if self._batch_pending >= self._max_batch_pending:
                    raise EngineError(self.name, "too many queued batch jobs", retryable=True)
                self._batch_pending += 1
            else:
                if self._pending >= self._max_pending:
                    raise EngineError(self.name, "too many queued jobs", retryable=True)
                self._pending += 1
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(PRIORITY_BATCH if batch else priority, next(self._counter), batch, fn, future, loop,
                             batch_key=None if batch else batch_key, item=item, batch_fn=batch_fn))
        return future

    async def run(self, fn: Callable[[], T], *, priority: int = PRIORITY_NORMAL) -> T:
        return await self.submit(fn, priority=priority)

    def close(self, wait: float = 5.0) -> None:
        """Stop taking jobs; the threads end after the queued ones, waited for up to ``wait`` s.

        The wait matters: a thread still inside a native runtime (CTranslate2) when the
        interpreter exits can abort the process ("terminate called without an active exception").
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for _ in self._threads:
            self._queue.put((1 << 30, next(self._counter), None))  # after every job, batch ones too
        deadline = time.monotonic() + wait
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if not isinstance(job, _Job):
                return
            if job.future.cancelled():
                self._done(job)
                continue
            jobs = [job, *self._take_batch(job)]
            started = time.monotonic()
            for each in jobs:
                if not each.batch:
                    self._wait_ewma = 0.7 * self._wait_ewma + 0.3 * (started - each.submitted)
                    self._wait_updated = started
            with self._lock:
                self._running[threading.get_ident()] = started
            results = self._call(jobs)
            for each in jobs:
                self._done(each)
            with self._lock:
                del self._running[threading.get_ident()]
                ended = time.monotonic()
                self._finished.append((started, ended))
                self._drop_finished_before(ended - UTILIZATION_WINDOW)
            for each, (value, error) in zip(jobs, results, strict=True):
                self._deliver(each, value, error)

    def _take_batch(self, job: _Job[Any]) -> list[_Job[Any]]:
        """The queued, not cancelled jobs of ``job``'s batch key and priority (up to its ``max_batch`` in all)."""
        if job.batch_fn is None or job.batch_key is None:
            return []
        min_batch, max_batch = job.batch_key[1], job.batch_key[2]  # see run_batched
        with self._queue.mutex:  # PriorityQueue's own lock: the heap is ours while it is held
            heap = self._queue.queue
            mates = [other for other in heap if isinstance(other, _Job) and other.batch_key == job.batch_key
                     and other.priority == job.priority and not other.future.cancelled()]
            mates = sorted(mates)[: max(0, max_batch - 1)] if len(mates) + 1 >= min_batch else []
            if mates:
                chosen = {id(other) for other in mates}
                heap[:] = [entry for entry in heap if id(entry) not in chosen]
                heapq.heapify(heap)
        return mates

    @staticmethod
    def _call(jobs: list[_Job[Any]]) -> list[tuple[Any, BaseException | None]]:
        """Run one job (its ``fn``) or a batch (one ``batch_fn`` call); (value, error) for each job."""
        try:
            if len(jobs) == 1:
                return [(jobs[0].fn(), None)]
            batch_fn = jobs[0].batch_fn
            assert batch_fn is not None
            values = batch_fn([each.item for each in jobs])
            if len(values) != len(jobs):
                raise RuntimeError(f"batch_fn returned {len(values)} results for {len(jobs)} items")
            return [(value, None) for value in values]
        except BaseException as exc:
            return [(None, exc)] * len(jobs)

    def _deliver(self, job: _Job[Any], value: Any, error: BaseException | None) -> None:
        try:
            if error is None:
                job.loop.call_soon_threadsafe(_set_result, job.future, value)
            else:
                job.loop.call_soon_threadsafe(_set_exception, job.future, error)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            logger.debug("%s: result dropped, event loop closed", self.name)

    def _done(self, job: _Job[Any]) -> None:
        with self._lock:
            if job.batch:
                self._batch_pending -= 1
            else:
                self._pending -= 1


def _set_result(future: asyncio.Future[T], result: T) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
