"""Transcription sessions and turn detection off, on the transport-neutral session (a memory transport,
as WebRTC's data channel and tracks would drive it; the WebSocket is in tests/transports/test_websocket.py)."""

from __future__ import annotations

import asyncio
import json

from gateway.config import EventsConfig, GatewayConfig
from gateway.protocol.session_settings import SessionSettings
from gateway.session.session import RealtimeSession
from gateway.transports.memory import MemoryTransport
from tests.support.fakes import fake_engines, loud, quiet

CONFIG = GatewayConfig(events=EventsConfig(file=""))


def started() -> tuple[RealtimeSession, MemoryTransport]:
    engines, _ = fake_engines()
    transport = MemoryTransport("rtc_tx")
    session = RealtimeSession("rtc_tx", CONFIG, engines, SessionSettings.from_config(CONFIG, engines.tts.voices),
                              transport, on_closed=lambda _: None)
    session.start()
    transport.open()
    return session, transport


async def test_a_transcription_session_transcribes_turns_and_never_responds() -> None:
    session, transport = started()
    try:
        transport.receive(json.dumps({"type": "session.update", "session": {"type": "transcription"}}))
        updated = await transport.wait_event("session.updated")
        assert updated["session"]["type"] == "transcription"
        assert updated["session"]["object"] == "realtime.transcription_session"
        await transport.say(loud(0.6))
        await transport.say(quiet(0.8))
        completed = await transport.wait_event("conversation.item.input_audio_transcription.completed")
        assert completed["transcript"] and completed["item_id"]
        await asyncio.sleep(0.3)
        assert "response.created" not in transport.types()
        transport.receive(json.dumps({"type": "response.create"}))
        error = await transport.wait_event("error")
        assert error["error"]["code"] == "transcription_session"
    finally:
        await session.close()


async def test_without_turn_detection_audio_waits_for_the_commit() -> None:
    session, transport = started()
    try:
        transport.receive(json.dumps({"type": "session.update", "session": {"audio": {"input": {
            "turn_detection": None}}}}))
        assert (await transport.wait_event("session.updated"))["session"]["audio"]["input"]["turn_detection"] is None
        await transport.say(loud(0.6))
        await transport.say(quiet(0.8))
        await asyncio.sleep(0.2)
        assert "input_audio_buffer.speech_started" not in transport.types()
        assert "input_audio_buffer.committed" not in transport.types()
        transport.receive(json.dumps({"type": "input_audio_buffer.commit"}))
        completed = await transport.wait_event("conversation.item.input_audio_transcription.completed")
        assert completed["transcript"]
        await asyncio.sleep(0.2)
        assert "response.created" not in transport.types()  # no automatic reply without turn detection
        transport.receive(json.dumps({"type": "input_audio_buffer.commit"}))  # nothing new appended
        assert (await transport.wait_event("error"))["error"]["code"] == "input_audio_buffer_commit_empty"
        # Turning it back on brings the automatic turns back.
        since = len(transport.sent)
        transport.receive(json.dumps({"type": "session.update", "session": {"audio": {"input": {
            "turn_detection": {"type": "server_vad"}}}}}))
        await transport.wait_event("session.updated", since=since)
        await transport.say(loud(0.6))
        await transport.say(quiet(0.8))
        await transport.wait_event("response.created", since=since, within=10)
    finally:
        await session.close()
