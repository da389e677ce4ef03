"""Lifecycle events on a Redis stream (``events.redis_stream``): durable, at-least-once, shared by a cluster.

Each event is appended with ``XADD <stream> MAXLEN ~ <events.redis_stream_maxlen> * type <type> event <json>``
(one pipeline per batch of up to 100 queued events). Once Redis has it, an event outlives the instance that
emitted it (a crash, a SIGKILL): consumers read the stream with a consumer group (``XREADGROUP`` … ``XACK``,
docs/deployment.md), each event once per group while they acknowledge, again after a consumer's crash.

Delivery is at-least-once: while Redis cannot be reached (connection refused, a command past
``cluster.redis_timeout_seconds``), the batch is retried with backoff (0.5 s doubling to 5 s) for as long as it
takes, and new events wait in the sink's bounded queue (``events.queue_size``); beyond it they are dropped and
counted (``voice_gateway_lifecycle_events_dropped_total{sink="redis_stream"}``) and logged whole. A batch whose
reply was lost may be appended twice: consumers de-duplicate on the event's ``id``. At shutdown the sink gets
``events.shutdown_flush_seconds`` like the others; what it could not append by then is counted and logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.ops.lifecycle import MAX_BACKOFF_SECONDS, Counted, Event, QueuedSink, Undelivered, ignore

logger = logging.getLogger(__name__)


def redis_client(url: str, timeout: float) -> aioredis.Redis:
    """A client whose every command gives up after ``timeout`` seconds, with no retries of its own (the caller
    decides: a request answers 503 at once, a sink backs off). Connections are made on first use."""
    return aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                   retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0)


class AppendingSink(QueuedSink):
    """A sink that appends batches to a durable log (a Redis stream, a NATS JetStream stream) and retries each
    batch with backoff for as long as it takes, or until the shutdown deadline (see the module doc)."""

    batch_size = 100
    #: What a failed append raises (the store is unreachable or slow): retried, never a crash.
    retried_errors: tuple[type[BaseException], ...] = (OSError, TimeoutError)

    def __init__(self, *, retry_delay: float = 0.5, on_retry: Counted = ignore, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._retry_delay = retry_delay
        self._on_retry = on_retry
        self.retried = 0

    async def _deliver(self, batch: list[Event]) -> Undelivered:
        attempt = 0
        while True:
            try:
                await self._append(batch)
            except self.retried_errors as exc:
                problem = repr(exc)
            else:
                if attempt:
                    logger.info("events: %s sink: delivered again after %d attempt(s)", self.name, attempt + 1)
                return []
            delay = min(self._retry_delay * 2 ** attempt, MAX_BACKOFF_SECONDS)
            if delay >= self.time_left():
                return [(event, f"unreachable until the shutdown deadline: {problem}") for event in batch]
            if attempt == 0:
                logger.warning("events: %s sink cannot deliver (%s); retrying, %d event(s) queued", self.name,
                               problem, self._queue.qsize() + len(batch))
            attempt += 1
            self.retried += 1
            self._on_retry(self.name)
            await asyncio.sleep(delay)

    async def _append(self, batch: list[Event]) -> None:
        """Append ``batch`` durably, or raise one of :attr:`retried_errors`."""
        raise NotImplementedError


class RedisStreamSink(AppendingSink):
    """Appends events to a Redis stream (see the module doc); retries until Redis answers or shutdown ends."""

    name = "redis_stream"
    retried_errors = (RedisError, OSError, TimeoutError)

    def __init__(self, client: aioredis.Redis, stream: str, *, maxlen: int = 100_000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client = client
        self._stream = stream
        self._maxlen = maxlen

    async def _append(self, batch: list[Event]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for event in batch:
            fields: dict[Any, Any] = {"type": str(event.get("type", "")),
                                      "event": json.dumps(event, separators=(",", ":"))}
            pipe.xadd(self._stream, fields, maxlen=self._maxlen, approximate=True)
        await pipe.execute()

    async def _release(self) -> None:
        await self._client.aclose()
