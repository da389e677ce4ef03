"""One caller utterance, from its first speech to its commit, and the work started for it.

An utterance owns two pieces of background work, both tasks of the conversation's
:class:`~gateway.aio.TaskSet`: the *speculation* (the final decode, and with a
speculative agent the reply, prepared at the first pause, before the turn is
confirmed) and the *finishing* (the turn's end: wait for the transcript and the
reply's first audio, then commit). Keeping them here gives the conversation one
place that starts, takes over and drops them, so a pause that turns out not to be
a turn, ``input_audio_buffer.clear`` and hang-up all stop the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from engines import Transcript
from gateway.aio import TaskSet
from gateway.protocol import server_events as events
from gateway.protocol.server_events import Event
from gateway.voice.reply import Reply
from gateway.voice.transcription import PartialTranscriber


@dataclass
class Prepared:
    """The final transcript of an utterance and, if one was started, its reply (held back)."""

    transcript: Transcript
    asr_done_at: float
    reply: Reply | None


class Utterance:
    def __init__(self, *, item_id: str, start_sample: int, partials: PartialTranscriber, tasks: TaskSet) -> None:
        self.item_id = item_id
        self.start_sample = start_sample
        self.partials = partials
        self.end_ms = 0
        self.speech_end_at = 0.0
        self._tasks = tasks
        self._speculation: asyncio.Task[Prepared] | None = None
        self._finishing: asyncio.Task[None] | None = None

    @property
    def finishing(self) -> bool:
        """The turn ended and is being committed (speech that resumes now calls :meth:`resume`)."""
        return self._finishing is not None

    def speculate(self, preparation: Coroutine[Any, Any, Prepared]) -> None:
        """Prepare the turn's end now, dropping an earlier preparation."""
        self.drop_speculation()
        self._speculation = self._tasks.create_task(preparation, name=f"speculate-{self.item_id}")

    @property
    def speculation(self) -> asyncio.Task[Prepared] | None:
        """The preparation under way, if any (still this utterance's: :meth:`resume` drops it)."""
        return self._speculation

    def take_speculation(self) -> asyncio.Task[Prepared] | None:
        """The preparation under way, if any, now the caller's to await (it is no longer dropped here)."""
        task, self._speculation = self._speculation, None
        return task

    def drop_speculation(self) -> None:
        """Throw away the preparation: cancel it, or interrupt the reply it prepared."""
        task, self._speculation = self._speculation, None
        if task is None:
            return
        if not task.done():
            task.cancel()
        elif not task.cancelled() and task.exception() is None and (reply := task.result().reply) is not None:
            reply.interrupt()

    def finish(self, finishing: Coroutine[Any, Any, None]) -> None:
        """The turn ended: run ``finishing`` (which commits it) in the background."""
        self._finishing = self._tasks.create_task(finishing, name=f"finish-{self.item_id}")

    def resume(self) -> None:
        """Speech resumed before the commit: a pause is not a turn, so the turn's end and its reply are dropped."""
        if self._finishing is not None:
            self._finishing.cancel()
            self._finishing = None
        self.drop_speculation()

    def discard(self) -> None:
        """Stop everything started for this utterance (``input_audio_buffer.clear``, hang-up)."""
        self.partials.cancel()
        self.drop_speculation()
        if self._finishing is not None:
            self._finishing.cancel()


def committed_events(item_id: str, text: str, previous: str | None) -> list[Event]:
    """What a committed user turn says on the wire, in order."""
    item = events.message_item(item_id, "user", text, status="completed", audio=True)
    return [events.input_committed(item_id, previous), events.item_added(item, previous),
            events.item_done(item, previous), events.transcription_completed(item_id, text)]
