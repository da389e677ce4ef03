"""What waits to be written to one WebSocket: in order, bounded in bytes, written by one task.

Events are produced synchronously (the session's ``send``), a socket is written asynchronously;
a client that stops reading makes the kernel's buffer fill and ``send_str`` wait. The writer
queues up to ``max_bytes`` and then gives up on the client (``on_overflow``: the transport
closes it with 1008) rather than holding its call's events without bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from aiohttp import web

logger = logging.getLogger(__name__)


class SocketWriter:
    def __init__(self, ws: web.WebSocketResponse, *, max_bytes: int, on_overflow: Callable[[], None],
                 label: str = "") -> None:
        self._ws = ws
        self._max_bytes = max_bytes
        self._on_overflow = on_overflow
        self._label = label
        self._queue: deque[str] = deque()
        self.queued_bytes = 0
        self.overflowed = False
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._task: asyncio.Task[None] | None = None

    def send(self, text: str) -> None:
        """Queue ``text``; past ``max_bytes`` nothing more is queued and ``on_overflow`` is told (once)."""
        if self.overflowed:
            return
        if self.queued_bytes + len(text) > self._max_bytes:
            self.overflowed = True
            logger.warning("%s: the client does not read its socket (%d bytes waiting); giving up on it",
                           self._label, self.queued_bytes)
            self._on_overflow()
            return
        self._queue.append(text)
        self.queued_bytes += len(text)
        self._drained.clear()
        self._wake.set()

    async def run(self) -> None:
        """Write until the socket closes or this task is cancelled (run it in the owner's task set)."""
        self._task = asyncio.current_task()
        while not self._ws.closed:
            if not self._queue:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._write_one()
        self._drained.set()

    async def _write_one(self) -> None:
        text = self._queue.popleft()
        self.queued_bytes -= len(text)
        try:
            await self._ws.send_str(text)
        except ConnectionError:
            self._queue.clear()
            self.queued_bytes = 0

    async def flush(self) -> None:
        """Wait until what was queued was written (written here once the writing task has ended)."""
        if self._task is not None and not self._task.done():
            await self._drained.wait()
            return
        while self._queue and not self._ws.closed:
            await self._write_one()
