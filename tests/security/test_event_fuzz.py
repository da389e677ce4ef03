"""Property-based tests: hostile data-channel messages get documented errors; the call goes on."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.call import Call
from gateway.client_events import BadClientEvent, parse_client_event
from gateway.config import EventsConfig, GatewayConfig
from gateway.qa.caller import Caller
from gateway.settings import InvalidSession, SessionSettings
from tests.security.strategies import EVENT_ERRORS, client_messages, sessions
from tests.support.fakes import fake_engines
from tests.support.speech import utterance, word_error_rate

CONFIG = GatewayConfig(events=EventsConfig(file=""))
VOICES = ("tone", "joe")
AGENTS = ("echo",)


@settings(max_examples=400, deadline=None)
@given(message=client_messages())
def test_parse_client_event_returns_an_event_or_a_documented_error(message: str | bytes) -> None:
    try:
        event = parse_client_event(message, max_bytes=CONFIG.limits.max_event_bytes)
    except BadClientEvent as exc:
        assert exc.code in EVENT_ERRORS
        assert exc.event_id is None or isinstance(exc.event_id, str)
        return
    assert isinstance(event, dict) and isinstance(event["type"], str)


@settings(max_examples=400, deadline=None)
@given(session=sessions())
def test_session_update_yields_valid_settings_or_names_the_bad_key(session: Any) -> None:
    current = SessionSettings.from_config(CONFIG, VOICES)
    try:
        updated = current.updated(session, voices=VOICES, agents=AGENTS)
    except InvalidSession as exc:
        assert exc.param.startswith("session")
        return
    turn = updated.turn
    assert isinstance(updated.instructions, str) and len(updated.instructions) <= 16_000
    assert updated.voice in VOICES and updated.agent in AGENTS
    assert isinstance(turn.threshold, float) and 0.01 <= turn.threshold <= 0.99
    assert isinstance(turn.silence_duration_ms, int) and 100 <= turn.silence_duration_ms <= 5000
    assert isinstance(turn.prefix_padding_ms, int) and 0 <= turn.prefix_padding_ms <= 2000
    assert isinstance(turn.create_response, bool) and isinstance(turn.interrupt_response, bool)
    json.dumps(updated.to_dict("rtc_x", VOICES))  # session.updated can always be sent


@settings(max_examples=60, deadline=None)
@given(messages=st.lists(client_messages(), min_size=1, max_size=25))
async def test_a_call_answers_any_message_with_events_and_documented_errors_only(messages: list[str | bytes]) -> None:
    engines, _ = fake_engines()
    call = Call("rtc_fuzz", CONFIG, engines, SessionSettings.from_config(CONFIG, engines.tts.voices),
                on_closed=lambda _call: None)
    sent: list[dict[str, Any]] = []
    call.send = sent.append  # type: ignore[method-assign,assignment]
    try:
        for message in messages:
            call._on_message(message)  # never raises
        await asyncio.sleep(0)
        for event in sent:
            json.dumps(event)
            if event["type"] == "error":
                assert event["error"]["code"] in EVENT_ERRORS, event
        assert call.end_reason is None
        assert call.conversation.settings.voice in engines.tts.voices
    finally:
        await call.close()


@pytest.mark.slow
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(burst=st.lists(client_messages(), min_size=40, max_size=60))
async def test_a_live_call_survives_a_burst_of_junk(caller: Caller, burst: list[str | bytes]) -> None:
    await caller.wait_event("session.created")
    since = time.monotonic()
    for message in burst * 5:  # 200-300 messages as fast as the data channel takes them: some are rate-limited
        caller.send_raw(message)
    await asyncio.sleep(2.5)  # the rate limiter refills
    caller.send({"type": "session.update", "event_id": "evt_back", "session": {
        "instructions": "Still here.", "voice": "joe", "agent": "echo", "turn_detection": {
            "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500,
            "create_response": True, "interrupt_response": True}}})
    updated = await caller.wait_event("session.updated", where=lambda e: e["session"]["instructions"] == "Still here.",
                                      timeout=10)
    assert updated["session"]["audio"]["input"]["turn_detection"]["threshold"] == 0.5
    codes = {event["error"]["code"] for event in caller.events_of("error")}
    assert codes <= EVENT_ERRORS, codes - EVENT_ERRORS
    await asyncio.sleep(1.0)  # let replies the junk started end
    if caller.events_of("response.created", since=since):
        caller.send({"type": "response.cancel"})
    clip = utterance("ps_goforward.wav")
    _, end = await caller.say(clip.audio(), 16_000)
    completed = await caller.wait_event("conversation.item.input_audio_transcription.completed", since=end - 4,
                                        timeout=20)
    assert word_error_rate(clip.transcript, completed["transcript"]) <= 0.25
