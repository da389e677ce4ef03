"""Call lifecycle events for other systems: ``call.started``, ``turn.completed``, ``call.ended``.

:class:`LifecycleEvents` turns observer notifications into JSON events and
publishes each one to every sink. A sink never slows a call: ``publish`` only
puts the event on a bounded queue (a full queue drops the event and counts it)
and a background task delivers it — as JSON lines to stdout or a file
(:class:`JsonLinesSink`), as an HTTP POST with retries (:class:`WebhookSink`) or
appended to a Redis stream (:class:`gateway.ops.redis_stream.RedisStreamSink`) or NATS JetStream
(:class:`gateway.ops.nats_stream.NatsStreamSink`).

Nothing is lost silently. An event a sink cannot deliver (a webhook that kept
failing, or the shutdown deadline) is counted (``dropped``, the
``lifecycle_events_dropped`` metric) and logged whole, one WARNING line an event
(events carry no user data), so that it can be replayed from the logs. At
shutdown the sinks get ``events.shutdown_flush_seconds`` (default 10 s) together:
a webhook's attempts and backoff are cut to that deadline, so a dead endpoint
costs the budget once, not ``webhook_event_timeout_seconds`` per queued event.

Events carry no user data (no transcripts). Fields: ``type``, ``id``, ``time``
(UTC, ISO 8601), ``call_id``, then per type — ``turn.completed``: ``item_id``,
``response_id``, ``speculative``, ``latency_ms`` (stage → ms after the end of
speech), ``overhead_ms``, ``asr_compute_ms``, ``audio_ms``; ``call.ended``:
``reason``, ``duration_s``, ``turns``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from gateway.config import EventsConfig
from gateway.ops.observers import CallObserver, TurnReport
from gateway.protocol import server_events as events

logger = logging.getLogger(__name__)

Event = dict[str, Any]
Counted = Callable[[str], None]  # told the sink's name
Undelivered = list[tuple[Event, str]]  # events a delivery could not deliver, each with why

#: The longest wait between two attempts at one event (the backoff doubles from ``retry_delay``).
MAX_BACKOFF_SECONDS = 5.0


def ignore(_sink: str) -> None:
    """The default :data:`Counted`: counts nothing."""


class QueuedSink:
    """A sink with a bounded queue and one delivery task (``start`` it on the loop, ``close`` it)."""

    name = "sink"
    batch_size = 1

    def __init__(self, *, queue_size: int = 1000, on_drop: Counted = ignore) -> None:
        self._queue: asyncio.Queue[Event] = asyncio.Queue(queue_size)
        self._on_drop = on_drop
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._deadline = math.inf  # loop time by which the shutdown flush ends
        self.dropped = 0
        self.delivered = 0

    def publish(self, event: Event) -> None:
        """Queue ``event``; never blocks, never raises."""
        if self._closed:
            self._undelivered([(event, "published after the sink closed")])
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._drop(1)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"events-{self.name}")

    def time_left(self) -> float:
        """Seconds until the shutdown deadline (infinite until :meth:`close`)."""
        return self._deadline - asyncio.get_running_loop().time()

    async def close(self, flush_s: float = 5.0) -> None:
        """Deliver what is queued within ``flush_s``; what is left is counted and logged."""
        if self._closed:
            return
        self._closed = True
        self._deadline = asyncio.get_running_loop().time() + flush_s
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(TimeoutError):  # deliveries stop at the deadline; a little slack for the last
                await asyncio.wait_for(self._queue.join(), flush_s + 0.5)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        left: Undelivered = []
        while not self._queue.empty():
            left.append((self._queue.get_nowait(), "not delivered before the shutdown deadline"))
        self._undelivered(left)
        if self.dropped:
            logger.warning("events: %s sink closed: %d delivered, %d not delivered", self.name, self.delivered,
                           self.dropped)
        await self._release()

    def _drop(self, count: int) -> None:
        previous, self.dropped = self.dropped, self.dropped + count
        for _ in range(count):
            self._on_drop(self.name)
        if previous == 0 or previous // 100 != self.dropped // 100:  # the first drop, then every 100th
            logger.warning("events: %s sink dropped %d event(s) so far", self.name, self.dropped)

    def _undelivered(self, lost: Undelivered) -> None:
        """Count ``lost`` and log each event whole: the record of what other systems did not get."""
        for event, why in lost:
            logger.warning("events: %s sink did not deliver %s (%s): %s", self.name, event.get("type"), why,
                           json.dumps(event, separators=(",", ":")))
        if lost:
            self._drop(len(lost))

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                lost = await self._deliver(batch)
            except asyncio.CancelledError:
                self._undelivered([(event, "delivery cut off at the shutdown deadline") for event in batch])
                raise
            except Exception as exc:
                logger.exception("events: %s sink failed", self.name)
                lost = [(event, repr(exc)) for event in batch]
            finally:
                for _ in batch:
                    self._queue.task_done()
            self.delivered += len(batch) - len(lost)
            self._undelivered(lost)

    async def _deliver(self, batch: list[Event]) -> Undelivered:
        """Deliver ``batch``; returns the events it could not deliver, each with why."""
        raise NotImplementedError

    async def _release(self) -> None:
        """Free resources after the last delivery."""


class JsonLinesSink(QueuedSink):
    """One JSON object per line, to stdout (``"-"``) or appended to a file; written off the loop."""

    name = "jsonl"
    batch_size = 100

    def __init__(self, target: str = "-", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._target = target

    async def _deliver(self, batch: list[Event]) -> Undelivered:
        text = "".join(json.dumps(event, separators=(",", ":")) + "\n" for event in batch)
        await asyncio.to_thread(self._write, text)
        return []

    def _write(self, text: str) -> None:
        if self._target == "-":
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            with open(self._target, "a", encoding="utf-8") as f:
                f.write(text)


class WebhookSink(QueuedSink):
    """POSTs each event as JSON; retries connection errors, timeouts, 408, 429 and 5xx with backoff.

    Each attempt gets ``timeout`` seconds, all attempts at one event (backoff included)
    ``event_timeout``; the backoff doubles from ``retry_delay`` up to :data:`MAX_BACKOFF_SECONDS`.
    After :meth:`close` every wait is cut to the shutdown deadline as well.
    """

    name = "webhook"

    def __init__(self, url: str, *, token: str = "", timeout: float = 5.0, retries: int = 3,
                 retry_delay: float = 0.5, event_timeout: float = 15.0, on_retry: Counted = ignore,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._retries = retries
        self._retry_delay = retry_delay
        self._event_timeout = event_timeout
        self._on_retry = on_retry
        self._session: aiohttp.ClientSession | None = None
        self.retried = 0

    async def _deliver(self, batch: list[Event]) -> Undelivered:
        lost = []
        for event in batch:
            problem = await self._post(event)
            if problem is not None:
                lost.append((event, problem))
        return lost

    async def _post(self, event: Event) -> str | None:
        """Deliver one event: None, or what went wrong the last time."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        loop = asyncio.get_running_loop()
        given_up_at = loop.time() + self._event_timeout
        problem, tried = "no time left before the shutdown deadline", 0
        for attempt in range(self._retries + 1):
            left = min(given_up_at - loop.time(), self.time_left())
            if attempt:
                delay = min(self._retry_delay * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
                if delay >= left:
                    break  # no time for another attempt
                self.retried += 1
                self._on_retry(self.name)
                await asyncio.sleep(delay)
                left = min(given_up_at - loop.time(), self.time_left())
            if left <= 0:
                break
            tried += 1
            try:
                async with self._session.post(self._url, json=event, headers=self._headers,
                                              timeout=aiohttp.ClientTimeout(total=min(self._timeout, left))) as r:
                    if r.status < 300:
                        return None
                    problem = f"HTTP {r.status}"
                    if r.status < 500 and r.status not in (408, 429):
                        break  # the consumer refuses this event: retrying will not help
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                problem = repr(exc)
        return f"gave up after {tried} attempt(s): {problem}"

    async def _release(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def build_sinks(config: EventsConfig, *, on_drop: Counted = ignore, on_retry: Counted = ignore,
                retry_delay: float = 0.5, redis_url: str = "", redis_timeout: float = 0.5) -> list[QueuedSink]:
    """The sinks ``config`` asks for; ``retry_delay`` is the webhook's and the stream's first backoff (it doubles).

    ``redis_url`` is the stream's Redis when ``events.redis_url`` is empty (``cluster.redis_url``).
    """
    sinks: list[QueuedSink] = []
    if config.redis_stream:
        from gateway.ops.redis_stream import RedisStreamSink, redis_client  # it builds on QueuedSink, defined here

        client = redis_client(config.redis_url or redis_url, redis_timeout)
        sinks.append(RedisStreamSink(client, config.redis_stream, maxlen=config.redis_stream_maxlen,
                                     retry_delay=retry_delay, queue_size=config.queue_size, on_drop=on_drop,
                                     on_retry=on_retry))
    if config.nats_url:
        from gateway.ops.nats_stream import NatsStreamSink  # as above

        sinks.append(NatsStreamSink(config.nats_url, config.nats_subject,
                                    retry_delay=retry_delay, queue_size=config.queue_size, on_drop=on_drop,
                                    on_retry=on_retry))
    if config.file:
        sinks.append(JsonLinesSink(config.file, queue_size=config.queue_size, on_drop=on_drop))
    if config.webhook_url:
        sinks.append(WebhookSink(config.webhook_url, token=config.webhook_token,
                                 timeout=config.webhook_timeout_seconds, retries=config.webhook_retries,
                                 retry_delay=retry_delay, event_timeout=config.webhook_event_timeout_seconds,
                                 queue_size=config.queue_size, on_drop=on_drop, on_retry=on_retry))
    return sinks


class LifecycleEvents(CallObserver):
    """Publishes ``call.started``, ``turn.completed`` and ``call.ended`` to every sink."""

    def __init__(self, sinks: Iterable[QueuedSink]) -> None:
        self.sinks = tuple(sinks)

    def _publish(self, type_: str, call_id: str, **fields: Any) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        event: Event = {"type": type_, "id": events.new_id("evt"), "time": now, "call_id": call_id, **fields}
        for sink in self.sinks:
            sink.publish(event)

    def call_started(self, call_id: str) -> None:
        self._publish("call.started", call_id)

    def turn_completed(self, call_id: str, report: TurnReport) -> None:
        self._publish("turn.completed", call_id, **report.breakdown())

    def call_ended(self, call_id: str, reason: str, duration_s: float, turns: int) -> None:
        self._publish("call.ended", call_id, reason=reason, duration_s=round(duration_s, 3), turns=turns)

    def start(self) -> None:
        for sink in self.sinks:
            sink.start()

    async def close(self, flush_s: float = 5.0) -> None:
        """Flush every sink at once within ``flush_s`` (``events.shutdown_flush_seconds``)."""
        await asyncio.gather(*(sink.close(flush_s) for sink in self.sinks))
