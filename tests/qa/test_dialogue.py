"""Dialogue bookkeeping with a scripted caller: replies whose events arrive after their audio."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from qa.caller import ReceivedAudio
from qa.dialogue import Dialogue, TurnResult


class _ScriptedCaller:
    def __init__(self) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.received = ReceivedAudio()

    def hear_reply(self, at: float) -> None:
        self.received.frames.append((at, np.full(960, 3000, np.int16)))

    def event(self, event: dict[str, Any]) -> None:
        self.events.append((time.monotonic(), event))


async def test_a_reply_heard_before_its_events_arrive_is_still_this_turns_reply() -> None:
    caller = _ScriptedCaller()
    dialogue = Dialogue(caller, timeout=5)  # type: ignore[arg-type]
    now = time.monotonic()
    turn = TurnResult(1, "clip.wav", now - 1.0, now - 0.5, 500, expected="go forward")
    caller.event({"type": "conversation.item.input_audio_transcription.completed", "transcript": "Go forward."})
    caller.hear_reply(now)  # the audio came over RTP first ...

    async def late_events() -> None:
        await asyncio.sleep(0.3)  # ... its response.created over the data channel 300 ms later
        caller.event({"type": "response.created", "response": {"id": "resp_1"}})

    events = asyncio.create_task(late_events())
    await dialogue._await_reply(turn)
    await events
    assert turn.error is None and turn.response_id == "resp_1"
    assert turn.transcript == "Go forward." and turn.wer == 0.0
    assert turn.events_late_ms is not None and 250 <= turn.events_late_ms <= 800
    assert turn.overhead_ms is not None and abs(turn.overhead_ms - 0.0) < 1.0
