"""Server events on their way to the caller: held until the transport opens, ``session.created`` first."""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.protocol.server_events import Event
from gateway.session.transport import Transport

logger = logging.getLogger(__name__)

MAX_EVENTS_BEFORE_OPEN = 256


class Outbox:
    """Sends events through ``transport``; before it opens, queues up to ``limit`` of them (and counts the rest).

    A WebRTC caller's data channel opens a moment after the answer, while the
    conversation may already speak; those events wait here and follow the
    ``session.created`` that :meth:`open` sends first. An event beyond ``limit``
    is dropped and reported: counted in :attr:`dropped`, told to ``on_drop`` (the
    session tells its observer: the ``server_events_dropped`` metric), logged at
    the first drop and, with the total, when the transport opens.
    """

    def __init__(self, transport: Transport, *, call_id: str, limit: int = MAX_EVENTS_BEFORE_OPEN,
                 on_drop: Callable[[], None] | None = None) -> None:
        self._transport = transport
        self._call_id = call_id
        self._limit = limit
        self._on_drop = on_drop
        self._queue: list[Event] = []
        self._opened = False
        self.dropped = 0

    @property
    def is_open(self) -> bool:
        return self._opened and self._transport.events_open

    def send(self, event: Event) -> None:
        if self.is_open:
            self._transport.send_event(event)
        elif len(self._queue) < self._limit:
            self._queue.append(event)
        else:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()
            if self.dropped == 1:
                logger.warning("call %s: more than %d events before the event channel opened; dropping",
                               self._call_id, self._limit)

    def open(self, first: Event) -> None:
        """The transport opened: send ``first``, then what waited. Only the first call does anything."""
        if self._opened:
            return
        self._opened = True
        self._transport.send_event(first)
        queued, self._queue = self._queue, []
        for event in queued:
            self._transport.send_event(event)
        if self.dropped:
            logger.warning("call %s: the event channel opened; %d event(s) had been dropped before", self._call_id,
                           self.dropped)
