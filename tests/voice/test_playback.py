"""ResponsePlayer: each reply's end follows the output's PlayoutResult; interrupting is idempotent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from gateway.agents import Agent, ConversationItem
from gateway.config import GatewayConfig
from gateway.ops.observers import CallObserver
from gateway.protocol.session_settings import SessionSettings
from gateway.voice.conversation import Conversation
from gateway.voice.options import VoiceOptions
from gateway.voice.output import AudioOutput
from media import OutboundAudioTrack
from media.outbound import FRAME_SAMPLES
from tests.support.fakes import fake_engines, loud, quiet


class Played(CallObserver):
    def __init__(self) -> None:
        self.played: list[tuple[float, float]] = []

    def reply_played(self, call_id: str, played_s: float, underrun_s: float) -> None:
        self.played.append((played_s, underrun_s))


class Harness:
    def __init__(self) -> None:
        engines, _asr = fake_engines()
        self.track = OutboundAudioTrack()
        self.observer = Played()
        self.events: list[dict[str, Any]] = []
        output: AudioOutput = self.track  # the WebRTC track is one AudioOutput
        self.conversation = Conversation(
            call_id="rtc_test", engines=engines, track=output, send=self.events.append,
            settings=SessionSettings.from_config(GatewayConfig(), engines.tts.voices),
            options=VoiceOptions(max_utterance_seconds=30, tts_ahead_seconds=60, partial_interval_ms=0),
            observer=self.observer,
        )

    async def feed(self, audio: Any) -> None:
        for i in range(0, len(audio), 320):
            await self.conversation.feed(audio[i : i + 320])
        for _ in range(20):
            await asyncio.sleep(0)

    async def reply_playing(self, frames: int) -> str:
        """A turn is answered and ``frames`` frames of the reply are sent; returns the response id."""
        await self.feed(loud(0.3))  # three words: "You said: word word word"
        await self.feed(quiet(0.6))
        for _ in range(frames):
            await self.track.recv()
        response_id = self.conversation.active_response_id
        assert response_id is not None
        return response_id

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]


async def test_a_reply_played_to_its_end_reports_its_playout() -> None:
    h = Harness()
    response_id = await h.reply_playing(1)
    while h.conversation.active_response_id is not None:
        await h.track.recv()
    [playback] = h.of("gateway.response.playback")
    samples = 5 * 4800  # five words of 100 ms
    assert playback == {**playback, "response_id": response_id, "played_ms": samples * 1000 // 48000,
                        "underrun_ms": 0}
    assert h.observer.played == [(samples / 48000, 0.0)]
    [done] = h.of("response.done")
    assert done["response"]["status"] == "completed"
    types = [e["type"] for e in h.events]
    assert types.index("output_audio_buffer.stopped") < types.index("gateway.response.playback") < types.index(
        "response.done")
    assert h.track.playing_tags == 0
    await h.conversation.close()


async def test_interrupting_twice_ends_the_reply_once_with_one_truncation() -> None:
    h = Harness()
    response_id = await h.reply_playing(10)
    assert h.conversation.cancel_response("client_cancelled")
    assert not h.conversation.cancel_response("client_cancelled")
    await h.feed(loud(0.1))  # a barge-in now finds nothing to interrupt
    assert h.conversation.barge_ins == 0
    [done] = h.of("response.done")
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    [truncated] = h.of("conversation.item.truncated")
    assert truncated["audio_end_ms"] == 10 * FRAME_SAMPLES * 1000 // 48000
    assert len(h.of("output_audio_buffer.cleared")) == 1
    [playback] = h.of("gateway.response.playback")
    assert playback["response_id"] == response_id and playback["played_ms"] == truncated["audio_end_ms"]
    await h.conversation.close()


class SlowAgent(Agent):
    """Says one clause, then thinks for ever."""

    async def reply(self, history: Sequence[ConversationItem], instructions: str) -> AsyncIterator[str]:
        yield "Hello there, "
        await asyncio.Event().wait()


async def test_a_reply_cut_while_its_audio_had_run_out_reports_the_underrun() -> None:
    h = Harness()
    assert h.conversation.create_response(agent=SlowAgent())
    for _ in range(20):
        await asyncio.sleep(0)
    while h.track.buffered_seconds > 0:
        await h.track.recv()
    for _ in range(3):  # silence while the reply is still active: the agent fell behind
        await h.track.recv()
    assert h.conversation.cancel_response("client_cancelled")
    [playback] = h.of("gateway.response.playback")
    assert playback["underrun_ms"] == 60
    assert 190 <= playback["played_ms"] <= 200  # "Hello there,": two words of 100 ms (less the resampler's tail)
    [(played_s, underrun_s)] = h.observer.played
    assert underrun_s == 3 * FRAME_SAMPLES / 48000 and played_s * 1000 // 1 == playback["played_ms"]
    assert h.of("conversation.item.truncated")[0]["audio_end_ms"] == playback["played_ms"]
    assert h.track.playing_tags == 0
    await h.conversation.close()


async def test_interrupting_a_reply_before_any_audio_reached_the_output_truncates_to_nothing() -> None:
    h = Harness()
    assert h.conversation.create_response()
    assert h.conversation.cancel_response("client_cancelled")  # in the same tick: nothing synthesised yet
    [truncated] = h.of("conversation.item.truncated")
    assert truncated["audio_end_ms"] == 0
    assert h.of("response.done")[0]["response"]["status"] == "cancelled"
    assert not h.of("gateway.response.playback") and not h.of("output_audio_buffer.cleared")
    await h.conversation.close()
    assert h.track.playing_tags == 0

