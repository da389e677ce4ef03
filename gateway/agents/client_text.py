"""Client-streamed text: the app pipes its own LLM tokens into a response it opened.

The app sends ``response.create`` with ``"response": {"text_stream": true}``,
then ``gateway.response.text.delta`` events and one ``gateway.response.text.done``
(docs/protocol.md, "Extension: streamed client text"). Each response gets one
:class:`ClientTextStream`; the call pushes the deltas into it and the reply
reads them like any agent's pieces, so speech starts on the first clause.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

from gateway.agents.base import Agent, AgentError, ConversationItem

logger = logging.getLogger(__name__)

MAX_BUFFERED_CHARS = 64_000


class ClientTextError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ClientTextStream(Agent):
    """An agent whose text is pushed by the client, delta by delta."""

    name = "client"
    speculative = True

    def __init__(self, *, idle_timeout: float, max_buffered_chars: int = MAX_BUFFERED_CHARS) -> None:
        self.response_id: str | None = None
        self._idle_timeout = idle_timeout
        self._max = max_buffered_chars
        self._buffer: list[str] = []
        self._buffered = 0
        self._ready = asyncio.Event()
        self.finished = False
        self.closed = False

    def push(self, delta: str) -> None:
        """Add text; raises :class:`ClientTextError` after ``finish()`` or when too much is waiting."""
        if self.finished:
            raise ClientTextError("response_text_done", "gateway.response.text.done was already sent for this response")
        if self._buffered + len(delta) > self._max:
            raise ClientTextError("response_text_overflow",
                                  f"more than {self._max} characters wait to be spoken; send text more slowly")
        if delta:
            self._buffer.append(delta)
            self._buffered += len(delta)
            self._ready.set()

    def finish(self) -> None:
        self.finished = True
        self._ready.set()

    async def reply(self, history: Sequence[ConversationItem], instructions: str) -> AsyncIterator[str]:
        try:
            while True:
                if self._buffer:
                    text = "".join(self._buffer)
                    self._buffer.clear()
                    self._buffered = 0
                    yield text
                    continue
                if self.finished:
                    return
                self._ready.clear()
                try:
                    async with asyncio.timeout(self._idle_timeout):
                        await self._ready.wait()
                except TimeoutError:
                    raise AgentError("client_text_timeout", f"no gateway.response.text.delta or .done for "
                                     f"{self._idle_timeout:g} s; the response was ended") from None
        finally:
            self.closed = True
            logger.debug("call %s: client text stream for %s closed", self.call_id, self.response_id)
