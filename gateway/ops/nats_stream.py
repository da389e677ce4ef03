"""Lifecycle events on NATS JetStream (``events.nats_url``): the second durable sink, beside the Redis stream.

Each event is published to ``events.nats_subject`` (``voice-gateway.events``) and waits for JetStream's
acknowledgement (the event is stored); a JetStream stream must hold the subject — when none does, the sink
creates ``VOICE_GATEWAY_EVENTS`` for it (file storage, at most 100,000 messages). Every event carries its
``id`` as ``Nats-Msg-Id``, so a batch retried after a lost acknowledgement is stored once (JetStream drops
duplicates within its window, 2 minutes by default): unlike the Redis stream, consumers see no duplicates
from the gateway's retries.

Delivery is as for the Redis stream (:class:`gateway.ops.redis_stream.AppendingSink`): while NATS is down the
batch is retried with backoff and new events wait in the bounded queue; drops are counted under
``sink="nats_stream"``. The client does not reconnect by itself (``allow_reconnect=False``): the sink connects
again on the next attempt, so an outage is the sink's retries, with its backoff and its metric.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError
from nats.js.errors import NotFoundError

from gateway.ops.lifecycle import Event
from gateway.ops.redis_stream import AppendingSink

logger = logging.getLogger(__name__)

STREAM_NAME = "VOICE_GATEWAY_EVENTS"
STREAM_MAX_MESSAGES = 100_000


async def _connection_error(exc: Exception) -> None:
    """The client's own error callback: a lost connection is the sink's to retry (it logs that), not an ERROR."""
    logger.info("events: nats_stream sink: connection error %r", exc)


class NatsStreamSink(AppendingSink):
    """Publishes events to a JetStream subject and waits for each to be stored (see the module doc)."""

    name = "nats_stream"
    retried_errors = (NatsError, JetStreamError, OSError, TimeoutError)

    def __init__(self, url: str, subject: str, *, timeout: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._url = url
        self._subject = subject
        self._timeout = timeout
        self._client: Client | None = None

    async def _append(self, batch: list[Event]) -> None:
        try:
            js = (await self._connected()).jetstream(timeout=self._timeout)
            for event in batch:
                payload = json.dumps(event, separators=(",", ":")).encode()
                await js.publish(self._subject, payload, timeout=self._timeout,
                                 headers={"Nats-Msg-Id": str(event.get("id", ""))})
        except BaseException:
            await self._disconnect()  # connect afresh on the next attempt
            raise

    async def _connected(self) -> Client:
        if self._client is not None and self._client.is_connected:
            return self._client
        await self._disconnect()
        client = await nats.connect(self._url, connect_timeout=max(1, round(self._timeout)), allow_reconnect=False,
                                    max_reconnect_attempts=0, error_cb=_connection_error)
        self._client = client
        js = client.jetstream(timeout=self._timeout)
        try:
            await js.find_stream_name_by_subject(self._subject)
        except NotFoundError:
            await js.add_stream(name=STREAM_NAME, subjects=[self._subject], max_msgs=STREAM_MAX_MESSAGES)
            logger.info("events: nats_stream sink created the JetStream stream %s for %s", STREAM_NAME,
                        self._subject)
        return client

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None and not client.is_closed:
            try:
                await client.close()
            except (NatsError, OSError, TimeoutError):
                pass

    async def _release(self) -> None:
        await self._disconnect()
