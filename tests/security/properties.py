"""The properties hostile input must keep, checked one input at a time.

Used by the property tests (tests/security/test_event_fuzz.py) and by the long fuzz runs
(benchmarks/fuzz.py): each check asserts the property and returns what happened.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway.config import AgentsConfig, EventsConfig, GatewayConfig
from gateway.protocol.client_events import BadClientEvent, ClientEvent, parse_client_event
from gateway.protocol.server_events import Event
from gateway.protocol.session_settings import InvalidSession, SessionSettings
from gateway.session.session import RealtimeSession
from gateway.transports.memory import MemoryTransport
from tests.security.strategies import EVENT_ERRORS
from tests.support.fakes import fake_engines

#: A client-streamed response waits this long for its text (agents.client_text_timeout_seconds), then ends.
CLIENT_TEXT_SECONDS = 0.5
CONFIG = GatewayConfig(events=EventsConfig(file=""),
                       agents=AgentsConfig(client_text_timeout_seconds=CLIENT_TEXT_SECONDS))
#: The longest a fuzzed sequence's replies may take to end (the fake voice speaks 100 ms a word).
REPLY_SECONDS = 10.0
VOICES = ("tone", "joe")
AGENTS = ("echo",)


def checked_event(message: str | bytes) -> ClientEvent | BadClientEvent:
    """The typed event ``message`` holds, or the documented error refusing it."""
    try:
        event = parse_client_event(message, max_bytes=CONFIG.limits.max_event_bytes)
    except BadClientEvent as exc:
        assert exc.code in EVENT_ERRORS, exc.code
        assert exc.event_id is None or isinstance(exc.event_id, str)
        return exc
    assert isinstance(event, ClientEvent)
    return event


def checked_session(session: Any) -> SessionSettings | InvalidSession:
    """Valid settings after ``session.update`` with ``session``, or the error naming the bad key."""
    current = SessionSettings.from_config(CONFIG, VOICES)
    try:
        updated = current.updated(session, voices=VOICES, agents=AGENTS)
    except InvalidSession as exc:
        assert exc.param.startswith("session")
        return exc
    turn = updated.turn
    assert isinstance(updated.instructions, str) and len(updated.instructions) <= 16_000
    assert updated.voice in VOICES and updated.agent in AGENTS
    assert isinstance(turn.threshold, float) and 0.01 <= turn.threshold <= 0.99
    assert isinstance(turn.silence_duration_ms, int) and 100 <= turn.silence_duration_ms <= 5000
    assert isinstance(turn.prefix_padding_ms, int) and 0 <= turn.prefix_padding_ms <= 2000
    assert isinstance(turn.create_response, bool) and isinstance(turn.interrupt_response, bool)
    json.dumps(updated.to_dict("rtc_x", VOICES))  # session.updated can always be sent
    return updated


async def check_call_messages(messages: list[str | bytes]) -> list[Event]:
    """A session answers any messages with events and documented errors only, plays the replies they ask
    for to their end, and goes on.

    Every server event is checked where it leaves the session: the memory transport's ``send_event``
    keeps each one (:attr:`MemoryTransport.sent`), the conversation's and the replies' included.
    """
    engines, _ = fake_engines()
    transport = MemoryTransport("rtc_fuzz")
    call = RealtimeSession("rtc_fuzz", CONFIG, engines, SessionSettings.from_config(CONFIG, engines.tts.voices),
                           transport, on_closed=lambda _call: None)
    transport.open()
    try:
        for message in messages:
            transport.receive(message)  # never raises
        await replies_done(call, transport)
        assert transport.events_dropped == 0  # every event the session sent is in ``sent``
        for event in transport.sent:
            json.dumps(event)
            if event["type"] == "error":
                assert event["error"]["code"] in EVENT_ERRORS, event
        assert call.end_reason is None
        assert call.conversation.settings.voice in engines.tts.voices
        return list(transport.sent)
    finally:
        await call.close()


async def replies_done(call: RealtimeSession, transport: MemoryTransport, within: float = REPLY_SECONDS) -> None:
    """Wait until every response the messages started has sent its ``response.done``."""
    async with asyncio.timeout(within):
        while True:
            created = {e["response"]["id"] for e in transport.sent if e["type"] == "response.created"}
            done = {e["response"]["id"] for e in transport.sent if e["type"] == "response.done"}
            if created <= done and call.conversation.active_response_id is None:
                return
            await asyncio.sleep(0.01)
