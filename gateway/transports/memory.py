"""An in-process transport: the caller is code in the same process (tests, tools, a new transport's model).

It is the smallest complete :class:`~gateway.transports.base.Transport`: what the
session sends is kept in :attr:`MemoryTransport.sent`; :meth:`MemoryTransport.receive`
and :meth:`MemoryTransport.say` play the caller; the outbound track is paced
for real (20 ms a frame), and what it played is kept, so a test hears what a
caller would. Both are bounded; what did not fit is counted.
"""

from __future__ import annotations

import asyncio
from collections import deque

import numpy as np
from aiortc.mediastreams import MediaStreamError
from av.audio.frame import AudioFrame

from engines.base import FloatArray
from gateway.aio import TaskSet
from gateway.protocol.server_events import Event
from gateway.transports.base import TransportListener
from media import OutboundAudioTrack
from media.pcm import Int16Array

MAX_KEPT_EVENTS = 10_000
MAX_KEPT_FRAMES = 3_000  # 60 s of 20 ms frames
FRAME_SAMPLES_16K = 320  # what say() hands the session at a time: 20 ms at 16 kHz


class MemoryTransport:
    """A transport whose caller is the code holding it (see the module doc)."""

    def __init__(self, call_id: str = "memory") -> None:
        self.call_id = call_id
        self.audio_out = OutboundAudioTrack()
        self.events_open = False
        self.closed = False
        self.packets = 0
        self.sent: list[Event] = []
        self.events_dropped = 0
        self.played: deque[Int16Array] = deque(maxlen=MAX_KEPT_FRAMES)  # 48 kHz frames the caller heard
        self.frames_played = 0
        self._changed = asyncio.Event()
        self._listener: TransportListener | None = None
        self._tasks: TaskSet | None = None

    @property
    def event_audio(self) -> None:
        return None  # the caller's audio comes through say()

    def attach(self, listener: TransportListener, tasks: TaskSet) -> None:
        self._listener, self._tasks = listener, tasks

    def _attached(self) -> tuple[TransportListener, TaskSet]:
        if self._listener is None or self._tasks is None:
            raise RuntimeError("attach a session first")
        return self._listener, self._tasks

    # ----------------------------------------------------------- the caller

    def open(self) -> None:
        """Connect: events flow, the media path is up, and the caller starts hearing the track."""
        listener, tasks = self._attached()
        self.events_open = True
        listener.on_events_open()
        listener.on_connected()
        tasks.create_task(self._listen(), name=f"{self.call_id} listen")

    def receive(self, message: str | bytes) -> None:
        """One message from the caller."""
        self.packets += 1
        self._attached()[0].on_client_event(message)

    async def say(self, audio: FloatArray) -> None:
        """The caller's 16 kHz audio, handed over 20 ms at a time (as fast as the session takes it)."""
        listener, _ = self._attached()
        for start in range(0, len(audio), FRAME_SAMPLES_16K):
            self.packets += 1
            await listener.on_audio(audio[start : start + FRAME_SAMPLES_16K])

    def hang_up(self, reason: str = "connection_closed") -> None:
        """The caller goes away."""
        self._attached()[0].on_lost(reason)

    async def wait_event(self, type_: str, *, within: float = 5.0, since: int = 0) -> Event:
        """The first event of ``type_`` sent at index ``since`` or later, waiting ``within`` seconds for it."""
        async with asyncio.timeout(within):
            while True:
                for event in self.sent[since:]:
                    if event["type"] == type_:
                        return event
                self._changed.clear()
                await self._changed.wait()

    def types(self, since: int = 0) -> list[str]:
        return [event["type"] for event in self.sent[since:]]

    def heard(self) -> Int16Array:
        """Everything the track played (kept: the last :data:`MAX_KEPT_FRAMES` frames)."""
        return np.concatenate(list(self.played)) if self.played else np.zeros(0, np.int16)

    async def _listen(self) -> None:
        while True:
            try:
                frame = await self.audio_out.recv()
            except MediaStreamError:  # the track was stopped
                return
            if isinstance(frame, AudioFrame):
                self.played.append(frame.to_ndarray().reshape(-1).astype(np.int16))
                self.frames_played += 1

    # ------------------------------------------------------- the transport

    def send_event(self, event: Event) -> None:
        if len(self.sent) >= MAX_KEPT_EVENTS:
            self.events_dropped += 1
            return
        self.sent.append(event)
        self._changed.set()

    async def flush_events(self) -> None:
        return None  # nothing is buffered

    async def packets_received(self) -> int:
        return self.packets

    async def close(self) -> None:
        self.closed = True
        self.events_open = False
        self.audio_out.stop()
