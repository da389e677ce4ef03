"""Property-based tests: hostile data-channel messages get documented errors; the call goes on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.caller import Caller
from tests.security import properties
from tests.security.properties import check_call_messages, checked_event, checked_session
from tests.security.strategies import EVENT_ERRORS, REPLY_MESSAGES, call_messages, client_messages, sessions
from tests.support.speech import utterance, word_error_rate


@settings(max_examples=400, deadline=None)
@given(message=client_messages())
def test_parse_client_event_returns_an_event_or_a_documented_error(message: str | bytes) -> None:
    checked_event(message)


@settings(max_examples=400, deadline=None)
@given(session=sessions())
def test_session_update_yields_valid_settings_or_names_the_bad_key(session: Any) -> None:
    checked_session(session)


@settings(max_examples=60, deadline=None)
@given(messages=st.lists(call_messages(), min_size=1, max_size=25))
async def test_a_call_answers_any_message_with_events_and_documented_errors_only(messages: list[str | bytes]) -> None:
    await check_call_messages(messages)


async def test_the_call_check_plays_the_replies_out_and_checks_every_event_they_send(
        monkeypatch: pytest.MonkeyPatch) -> None:
    user_item, create = REPLY_MESSAGES[1], REPLY_MESSAGES[0]
    sent = await check_call_messages([user_item, create])
    types = [event["type"] for event in sent]
    assert [e["response"]["status"] for e in sent if e["type"] == "response.done"] == ["completed"]
    assert types.index("output_audio_buffer.started") < types.index("output_audio_buffer.stopped")
    # An error a reply sends (here: streamed text that never comes) is checked like any other event.
    monkeypatch.setattr(properties, "EVENT_ERRORS", EVENT_ERRORS - {"client_text_timeout"})
    with pytest.raises(AssertionError, match="client_text_timeout"):
        await check_call_messages([REPLY_MESSAGES[2]])


@pytest.mark.slow
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(burst=st.lists(client_messages(), min_size=40, max_size=60))
async def test_a_live_call_survives_a_burst_of_junk(caller: Caller, burst: list[str | bytes]) -> None:
    await caller.wait_event("session.created")
    since = time.monotonic()
    for message in burst * 5:  # 200-300 messages as fast as the data channel takes them: some are rate-limited
        # One beyond the answer's max-message-size aiortc refuses to send, as browsers do (what a raw SCTP peer
        # that sends one anyway does to its call: tests/security/test_webrtc_hostile.py, tests/transports/test_sctp.py).
        with contextlib.suppress(ValueError):
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
