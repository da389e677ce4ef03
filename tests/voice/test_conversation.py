"""Conversation rules with fake engines, driven on the audio clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from engines.base import FloatArray
from gateway.agents import Agent, ConversationItem
from gateway.aio import TaskSet
from gateway.config import GatewayConfig
from gateway.protocol.session_settings import SessionSettings
from gateway.voice.conversation import Conversation
from gateway.voice.options import VoiceOptions
from media import OutboundAudioTrack
from media.outbound import FRAME_SAMPLES
from tests.support.fakes import fake_engines, loud, quiet


class Harness:
    def __init__(self, tasks: TaskSet | None = None) -> None:
        self.engines, self.asr = fake_engines()
        self.track = OutboundAudioTrack()
        self.events: list[dict[str, Any]] = []
        settings = SessionSettings.from_config(GatewayConfig(), self.engines.tts.voices)
        self.conversation = Conversation(
            call_id="rtc_test", engines=self.engines, track=self.track, send=self.events.append,
            settings=settings, tasks=tasks,
            options=VoiceOptions(max_utterance_seconds=30, tts_ahead_seconds=60, partial_interval_ms=0),
        )

    async def feed(self, audio: FloatArray) -> None:
        for i in range(0, len(audio), 320):  # 20 ms frames, as they arrive from the network
            await self.conversation.feed(audio[i : i + 320])
        await asyncio.sleep(0)

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_speech_resuming_after_the_turn_ended_but_before_the_reply_continues_the_turn() -> None:
    h = Harness()
    h.asr.release = asyncio.Event()  # the final transcript is slow
    await h.feed(loud(0.5))
    await h.feed(quiet(0.6))  # the turn ends (500 ms of silence)...
    assert len(h.of("input_audio_buffer.speech_stopped")) == 1
    await h.feed(loud(0.5))  # ...but the caller goes on before anything was committed
    await h.feed(quiet(0.6))
    h.asr.release.set()
    await settle()
    completed = h.of("conversation.item.input_audio_transcription.completed")
    assert len(completed) == 1
    assert completed[0]["transcript"].split() == ["word"] * 10  # all one second of speech
    assert len(h.of("response.created")) == 1
    started = h.of("input_audio_buffer.speech_started")
    assert len(started) == 2 and started[0]["item_id"] == started[1]["item_id"] == completed[0]["item_id"]
    await h.conversation.close()


async def test_speculative_final_decode_starts_at_the_pause_and_is_reused() -> None:
    h = Harness()
    await h.feed(loud(0.5))
    await h.feed(quiet(0.1))  # the pause: the final decode starts now
    assert len(h.asr.finals) == 1
    await h.feed(quiet(0.5))
    await settle()
    assert len(h.asr.finals) == 1  # the turn's end reused it
    assert h.types().count("response.created") == 1
    await h.conversation.close()


async def test_barge_in_truncates_to_the_audio_actually_played() -> None:
    h = Harness()
    await h.feed(loud(1.0))  # ten words heard: reply "You said: word × 10"
    await h.feed(quiet(0.6))
    await settle()
    response_id = h.of("response.created")[0]["response"]["id"]
    for _ in range(25):  # half a second of the reply is sent
        await h.track.recv()
    assert h.of("output_audio_buffer.started")
    await h.feed(loud(0.1))  # the caller talks over it: the reply pauses at once...
    assert h.track.paused and h.track.next_frame()[1] is None
    await h.feed(loud(0.6))
    await h.feed(quiet(0.1))  # ...and seven words (no backchannel) cancel it
    await settle()
    assert h.track.buffered_seconds == 0 and not h.track.paused
    truncated = h.of("conversation.item.truncated")[0]
    assert truncated["audio_end_ms"] == 25 * FRAME_SAMPLES * 1000 // 48000
    done = next(e for e in h.of("response.done") if e["response"]["id"] == response_id)
    assert done["response"]["status"] == "cancelled"
    heard = done["response"]["output"][0]["content"][0]["transcript"]
    # 500 ms of 100-ms-per-word tone: "You said:" (200 ms) then three "word"s.
    assert heard == "You said: word word word"
    assert h.of("output_audio_buffer.cleared")[0]["response_id"] == response_id
    await h.conversation.close()


def other_tasks() -> set[asyncio.Task[object]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def test_close_cancels_and_awaits_the_speculation_and_the_turn_being_finished() -> None:
    h = Harness()
    h.asr.release = asyncio.Event()  # the final decode never returns
    await h.feed(loud(0.5))
    await h.feed(quiet(0.1))  # the pause: the final decode starts
    assert len(h.asr.finals) == 1
    await h.feed(quiet(0.5))  # the turn ends and waits for it
    assert other_tasks()
    await h.conversation.close()
    assert not other_tasks()  # nothing the conversation started outlives it
    await h.conversation.close()  # safe twice


class ThinkingAgent(Agent):
    """Says one clause, then thinks for ever; remembers being closed."""

    closed = False

    async def reply(self, history: Sequence[ConversationItem], instructions: str) -> AsyncIterator[str]:
        try:
            yield "Hello there, "
            await asyncio.Event().wait()
        finally:
            self.closed = True


async def test_close_cancels_and_awaits_a_reply_whose_agent_is_still_thinking() -> None:
    tasks = TaskSet("session")
    h = Harness(tasks)
    conversation = h.conversation
    agent = ThinkingAgent()
    assert conversation.create_response(agent=agent)
    await settle()
    assert h.track.buffered_seconds > 0 and len(tasks) == 1  # the reply: spoken, and waiting for its agent
    await conversation.close()
    assert tasks.closed and len(tasks) == 0  # the session's task set, closed with the conversation
    assert agent.closed and not other_tasks()
    assert h.track.buffered_seconds == 0 and h.track.playing_tags == 0
    assert not [e for e in h.events if e["type"] == "response.done"]  # a hang-up says nothing more
