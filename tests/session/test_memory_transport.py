"""The seam: a real RealtimeSession driven through an in-memory transport (no WebRTC anywhere).

Client events go in as raw messages and the caller's audio as 16 kHz frames; what comes back
is the server events the session sent and the audio its outbound track actually played.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from gateway.config import EventsConfig, GatewayConfig, LimitsConfig
from gateway.protocol.server_events import Event
from gateway.protocol.session_settings import SessionSettings
from gateway.session.outbox import MAX_EVENTS_BEFORE_OPEN
from gateway.session.session import RealtimeSession
from gateway.transports.memory import MemoryTransport
from gateway.voice.engines import Engines
from tests.support.fakes import fake_engines, loud, quiet
from tests.support.speech import utterance, word_error_rate

CONFIG = GatewayConfig(events=EventsConfig(file=""))


@dataclass
class Line:
    session: RealtimeSession
    transport: MemoryTransport
    closed: list[RealtimeSession] = field(default_factory=list)

    def send(self, event: Event) -> None:
        self.transport.receive(json.dumps(event))

    def errors(self) -> list[dict[str, object]]:
        return [event["error"] for event in self.transport.sent if event["type"] == "error"]


@contextlib.asynccontextmanager
async def line(engines: Engines | None = None, config: GatewayConfig = CONFIG, *,
               open_: bool = True) -> AsyncIterator[Line]:
    """A started session on a memory transport (opened unless ``open_`` is False); closed at the end."""
    if engines is None:
        engines, _asr = fake_engines()
    transport = MemoryTransport("rtc_mem")
    closed: list[RealtimeSession] = []
    session = RealtimeSession("rtc_mem", config, engines, SessionSettings.from_config(config, engines.tts.voices),
                              transport, on_closed=closed.append)
    session.start()
    if open_:
        transport.open()
    try:
        yield Line(session, transport, closed)
    finally:
        await session.close()


def audible_ms(transport: MemoryTransport) -> int:
    """How much of what the caller heard was not silence (20 ms frames)."""
    return 20 * sum(1 for frame in transport.played if np.abs(frame).max() > 1000)


async def test_events_wait_for_the_transport_and_session_created_comes_first() -> None:
    async with line(open_=False) as call:
        call.send({"type": "session.update", "event_id": "evt_1", "session": {"instructions": "Be brief."}})
        for _ in range(MAX_EVENTS_BEFORE_OPEN + 40):
            call.session.send({"type": "test.filler"})
        assert call.transport.sent == []  # nothing reaches a transport that is not open
        call.transport.open()
        types = call.transport.types()
        assert types[:2] == ["session.created", "session.updated"]
        assert len(types) == 1 + MAX_EVENTS_BEFORE_OPEN  # the queue is bounded ...
        assert call.session._outbox.dropped == 41  # ... and counts what it dropped
        created = call.transport.sent[0]["session"]
        assert created["id"] == "rtc_mem" and created["instructions"] == "Be brief."
        call.send({"type": "input_audio_buffer.clear"})
        assert call.transport.types()[-1] == "input_audio_buffer.cleared"  # once open, sent at once


async def test_an_added_item_is_spoken_on_response_create_and_can_be_retrieved() -> None:
    async with line() as call:
        text = "Three words here"
        call.send({"type": "conversation.item.create", "item": {
            "id": "item_client", "type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": text}]}})
        done_item = await call.transport.wait_event("conversation.item.done")
        assert done_item["item"]["id"] == "item_client"
        since = len(call.transport.sent)
        call.send({"type": "response.create"})
        done = await call.transport.wait_event("response.done", since=since)
        assert done["response"]["status"] == "completed"
        assert done["response"]["output"][0]["content"][0]["transcript"] == text
        types = call.transport.types(since)
        for earlier, later in [("response.created", "output_audio_buffer.started"),
                               ("output_audio_buffer.started", "output_audio_buffer.stopped"),
                               ("output_audio_buffer.stopped", "response.done")]:
            assert types.index(earlier) < types.index(later), types
        assert 240 <= audible_ms(call.transport) <= 360  # ToneTts: 100 ms a word, heard through the track
        playback = await call.transport.wait_event("gateway.response.playback", since=since)
        assert playback["response_id"] == done["response"]["id"] and playback["played_ms"] >= 300

        call.send({"type": "conversation.item.retrieve", "item_id": "item_client"})
        retrieved = await call.transport.wait_event("conversation.item.retrieved")
        assert retrieved["item"]["status"] == "completed"  # its latest state: the reply spoke it
        assert retrieved["item"]["content"][0] == {"type": "output_audio", "transcript": text}
        call.send({"type": "conversation.item.retrieve", "item_id": "item_nope", "event_id": "evt_r"})
        assert call.errors()[-1]["code"] == "item_not_found" and call.errors()[-1]["event_id"] == "evt_r"


async def test_client_streamed_text_is_spoken_and_bad_text_events_get_errors() -> None:
    async with line() as call:
        call.send({"type": "response.create", "response": {"text_stream": True}})
        created = await call.transport.wait_event("response.created")
        response_id = created["response"]["id"]
        call.send({"type": "gateway.response.text.delta", "response_id": "resp_other", "delta": "x", "event_id": "e1"})
        call.send({"type": "gateway.response.text.delta", "delta": 7, "event_id": "e2"})
        call.send({"type": "gateway.response.text.delta", "response_id": None, "delta": "x", "event_id": "e3"})
        call.send({"type": "gateway.response.text.delta", "response_id": response_id, "delta": "Hello from"})
        call.send({"type": "gateway.response.text.delta", "delta": " the client."})
        call.send({"type": "response.create", "event_id": "e4"})
        call.send({"type": "gateway.response.text.done"})
        done = await call.transport.wait_event("response.done")
        assert done["response"]["id"] == response_id and done["response"]["status"] == "completed"
        assert done["response"]["output"][0]["content"][0]["transcript"] == "Hello from the client."
        assert [(e["code"], e["event_id"]) for e in call.errors()] == [
            ("response_not_found", "e1"), ("invalid_value", "e2"), ("response_not_found", "e3"),
            ("conversation_already_has_active_response", "e4")]
        call.send({"type": "gateway.response.text.delta", "delta": "late"})  # for an ended response: dropped
        call.send({"type": "response.create", "response": {"text_stream": "yes"}, "event_id": "e5"})
        await asyncio.sleep(0)
        assert [(e["code"], e["event_id"]) for e in call.errors()[4:]] == [("invalid_value", "e5")]


async def test_bad_client_events_get_error_events_with_stable_codes_and_the_session_goes_on() -> None:
    async with line() as call:
        for raw in ["{not json", b"\x00\x01binary", '["a", "list"]', '{"type": 7, "event_id": "evt_0"}',
                    '{"type": "session.update", "session": {"instructions": "' + "x" * 70_000 + '"}}']:
            call.transport.receive(raw)
        for event in [
            {"no": "type", "event_id": "evt_1"},
            {"type": "no.such.event", "event_id": "evt_2"},
            {"type": "session.update", "event_id": "evt_3", "session": {"turn_detection": {"threshold": 7}}},
            {"type": "session.update", "event_id": "evt_4", "session": "loud"},
            {"type": "response.cancel", "event_id": "evt_5"},
            {"type": "output_audio_buffer.clear", "event_id": "evt_6"},
            {"type": "input_audio_buffer.commit", "event_id": "evt_7"},
            {"type": "conversation.item.create", "event_id": "evt_8", "item": {"role": "tool", "content": []}},
            {"type": "conversation.item.retrieve", "event_id": 9, "item_id": 42},
            {"type": "gateway.response.text.done", "event_id": "evt_10"},
        ]:
            call.send(event)
        call.send({"type": "session.update", "session": {"instructions": "Still here."}})
        updated = await call.transport.wait_event("session.updated")
        assert updated["session"]["instructions"] == "Still here."
        errors = call.errors()
        assert [e["code"] for e in errors] == [
            "invalid_json", "invalid_event", "invalid_event", "missing_type", "event_too_large", "missing_type",
            "unknown_event", "invalid_value", "invalid_value", "response_cancel_not_active", "no_active_output",
            "input_audio_buffer_commit_empty", "invalid_item", "item_not_found", "response_not_found"]
        assert [e["event_id"] for e in errors] == [
            None, None, None, "evt_0", None, "evt_1", "evt_2", "evt_3", "evt_4", "evt_5", "evt_6", "evt_7", "evt_8",
            None, "evt_10"]
        by_code = {e["code"]: e for e in errors}
        assert errors[7]["param"] == "session.turn_detection.threshold" and errors[8]["param"] == "session"
        assert by_code["unknown_event"]["message"] == "unknown event type 'no.such.event'"
        assert by_code["item_not_found"]["message"] == "no item with id 42"
        assert by_code["invalid_item"]["message"] == "item.role must be 'user', 'assistant' or 'system'"
        assert call.session.end_reason is None


async def test_a_flood_of_client_events_is_rate_limited_with_one_notice_a_second() -> None:
    config = GatewayConfig(events=EventsConfig(file=""), limits=LimitsConfig(max_events_per_second=10))
    async with line(config=config) as call:
        for i in range(100):
            call.send({"type": "input_audio_buffer.clear", "event_id": f"e{i}"})
        cleared = len([t for t in call.transport.types() if t == "input_audio_buffer.cleared"])
        assert 20 <= cleared <= 22  # the burst (2 × rate), and what refilled meanwhile
        assert [e["code"] for e in call.errors()] == ["rate_limited"]  # told once, not 80 times
        assert call.session._rate.dropped == 100 - cleared


async def test_the_callers_speech_is_a_turn_that_gets_a_spoken_reply() -> None:
    async with line() as call:
        await call.transport.say(np.concatenate([quiet(0.3), loud(1.0), quiet(0.8)]))
        done = await call.transport.wait_event("response.done")
        assert done["response"]["status"] == "completed"
        spoken = done["response"]["output"][0]["content"][0]["transcript"]
        assert spoken == "You said: " + " ".join(["word"] * 10)  # ScriptedAsr: a word per 100 ms of speech
        types = call.transport.types()
        order = ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                 "input_audio_buffer.committed", "conversation.item.input_audio_transcription.completed",
                 "response.created", "output_audio_buffer.started", "output_audio_buffer.stopped", "response.done"]
        assert [t for t in types if t in order] == order
        assert audible_ms(call.transport) >= 1000  # 12 words of tone were heard
        assert call.session.conversation.turns == 1


async def test_committing_held_speech_ends_the_turn_at_once() -> None:
    config = GatewayConfig(events=EventsConfig(file=""))
    async with line(config=config) as call:
        call.send({"type": "session.update", "session": {"turn_detection": {"silence_duration_ms": 5000}}})
        await call.transport.say(np.concatenate([loud(0.5), quiet(0.3)]))
        assert "input_audio_buffer.committed" not in call.transport.types()  # 5 s of silence would be needed
        call.send({"type": "input_audio_buffer.commit", "event_id": "evt_c"})
        committed = await call.transport.wait_event("input_audio_buffer.committed")
        completed = await call.transport.wait_event("conversation.item.input_audio_transcription.completed")
        assert completed["item_id"] == committed["item_id"] and completed["transcript"] == "word word word word word"
        assert call.errors() == []


async def test_close_cancels_and_awaits_every_task_tells_the_caller_and_deregisters_once() -> None:
    before = asyncio.all_tasks()
    async with line() as call:
        call.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "assistant", "content": [{"type": "text", "text": "a long reply " * 20}]}})
        call.send({"type": "response.create"})
        await call.transport.wait_event("output_audio_buffer.started")
        running = asyncio.all_tasks() - before - {asyncio.current_task()}
        assert len(call.session.tasks) >= 3  # the watchdog, the listening caller, the reply
        await call.session.close("idle_timeout")
        assert call.session.end_reason == "idle_timeout"
        assert len(call.session.tasks) == 0 and call.session.tasks.closed
        assert all(task.done() for task in running), [t for t in running if not t.done()]
        assert call.transport.closed and call.transport.audio_out.readyState == "ended"
        assert call.transport.types()[-1] == "gateway.session.ended"
        assert call.transport.sent[-1]["reason"] == "idle_timeout"
        await call.session.close("hangup")  # safe twice
        assert call.closed == [call.session]
        assert call.session.end_reason == "idle_timeout"


async def test_a_hangup_sends_no_notice_and_a_lost_transport_ends_the_session() -> None:
    async with line() as call:
        call.transport.hang_up("connection_failed")
        for _ in range(50):
            if call.closed:
                break
            await asyncio.sleep(0.01)
        assert call.closed == [call.session] and call.session.end_reason == "connection_failed"
        assert "gateway.session.ended" not in call.transport.types()  # the caller is gone: nothing to tell


async def test_deregistration_happens_even_when_closing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    async with line() as call:
        async def broken_close() -> None:
            raise RuntimeError("the conversation could not close")

        monkeypatch.setattr(call.session.conversation, "close", broken_close)
        with pytest.raises(RuntimeError):
            await call.session.close("shutdown")
        assert call.closed == [call.session]  # the registry forgets it anyway
        assert call.transport.closed  # and the transport is hung up


@pytest.mark.slow
async def test_real_speech_is_transcribed_and_answered_through_the_memory_transport(engines: Engines) -> None:
    clip = utterance("ps_goforward.wav")
    async with line(engines) as call:
        await call.transport.say(np.concatenate([clip.audio(), quiet(1.5)]))
        completed = await call.transport.wait_event("conversation.item.input_audio_transcription.completed",
                                                    within=30)
        assert word_error_rate(clip.transcript, completed["transcript"]) <= 0.25, completed["transcript"]
        done = await call.transport.wait_event("response.done", within=60)
        assert done["response"]["status"] == "completed"
        assert done["response"]["output"][0]["content"][0]["transcript"].startswith("You said:")
        assert audible_ms(call.transport) >= 1000
