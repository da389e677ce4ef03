"""Client events: each message parsed once into a typed event, or refused with a stable code.

The first tests check :func:`parse_client_event` alone; the last ones, a real caller on a real
call: errors come back as ``error`` events and the call goes on.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.protocol.client_events import (
    BadClientEvent,
    ClientItem,
    ConversationItemCreate,
    ConversationItemRetrieve,
    GatewayResponseTextDelta,
    GatewayResponseTextDone,
    InputAudioBufferClear,
    InputAudioBufferCommit,
    OutputAudioBufferClear,
    ResponseCancel,
    ResponseCreate,
    SessionUpdate,
    parse_client_event,
)
from qa.caller import Caller

MAX = 64 * 1024


def parsed(event: dict[str, Any]) -> object:
    return parse_client_event(json.dumps(event), max_bytes=MAX)


def refused(message: object) -> BadClientEvent:
    with pytest.raises(BadClientEvent) as info:
        parse_client_event(message if not isinstance(message, dict) else json.dumps(message), max_bytes=MAX)
    return info.value


def test_each_client_event_is_parsed_into_its_typed_event() -> None:
    item = {"id": "item_1", "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "hi"}, {"type": "text", "text": "there"}]}
    assert parsed({"type": "session.update", "event_id": "e1", "session": {"voice": "joe"}}) == SessionUpdate(
        {"voice": "joe"}, "e1")
    assert parsed({"type": "input_audio_buffer.clear"}) == InputAudioBufferClear()
    assert parsed({"type": "input_audio_buffer.commit", "event_id": "e2"}) == InputAudioBufferCommit("e2")
    assert parsed({"type": "response.cancel"}) == ResponseCancel()
    assert parsed({"type": "output_audio_buffer.clear"}) == OutputAudioBufferClear()
    assert parsed({"type": "conversation.item.create", "item": item}) == ConversationItemCreate(
        ClientItem("item_1", "user", "hi there"))
    assert parsed({"type": "conversation.item.retrieve", "item_id": "item_1"}) == ConversationItemRetrieve("item_1")
    assert parsed({"type": "response.create"}) == ResponseCreate(text_stream=False)
    assert parsed({"type": "response.create", "response": {"text_stream": True}}) == ResponseCreate(text_stream=True)
    assert parsed({"type": "gateway.response.text.delta", "delta": "Hel"}) == GatewayResponseTextDelta(None, "Hel")
    assert parsed({"type": "gateway.response.text.delta", "response_id": "resp_1", "delta": 5}) == \
        GatewayResponseTextDelta("resp_1", None)  # refused by the session, once it knows the response is live
    assert parsed({"type": "gateway.response.text.done", "response_id": "resp_1"}) == GatewayResponseTextDone("resp_1")
    made_up = parsed({"type": "conversation.item.create", "item": {**item, "id": ""}})
    assert isinstance(made_up, ConversationItemCreate) and made_up.item.id.startswith("item_")


@pytest.mark.parametrize(("message", "code", "text", "event_id"), [
    ("{not json", "invalid_json", "message is not valid JSON", None),
    (b"\x00\x01binary", "invalid_event", "binary messages are not supported; send JSON text", None),
    (12, "invalid_event", "unsupported message", None),
    ('["a", "list"]', "invalid_event", "an event must be a JSON object", None),
    ('{"type": "session.update", "session": {"instructions": "' + "x" * MAX + '"}}', "event_too_large",
     f"events are limited to {MAX} bytes", None),
    ({"no": "type", "event_id": "evt_1"}, "missing_type", "an event must have a string 'type'", "evt_1"),
    ({"type": "no.such.event", "event_id": "evt_2"}, "unknown_event", "unknown event type 'no.such.event'", "evt_2"),
    ({"type": "session.update", "event_id": "evt_3", "session": "x"}, "invalid_value", "session: must be an object",
     "evt_3"),
    ({"type": "conversation.item.create", "item": {"type": "function_call"}}, "invalid_item",
     "item.call_id: must be the call_id of a function call", None),
    ({"type": "conversation.item.create", "item": {"type": "image"}}, "invalid_item",
     "item must be an object of type 'message'", None),
    ({"type": "conversation.item.create", "item": {"role": "tool"}}, "invalid_item",
     "item.role must be 'user', 'assistant' or 'system'", None),
    ({"type": "conversation.item.create", "item": {"role": "user", "content": []}}, "invalid_item",
     "item.content must be a non-empty list", None),
    ({"type": "conversation.item.create", "item": {"role": "user", "content": [{"type": "input_audio"}]}},
     "invalid_item", "content parts must be text ('input_text', 'output_text', 'text')", None),
    ({"type": "conversation.item.create", "item": {"role": "user", "content": [{"type": "text", "text": 1}]}},
     "invalid_item", "content part text must be a string", None),
    ({"type": "conversation.item.retrieve", "item_id": 42, "event_id": "evt_4"}, "item_not_found",
     "no item with id 42", "evt_4"),
    ({"type": "response.create", "response": {"text_stream": "yes"}}, "invalid_value",
     "response must be an object and response.text_stream a boolean", None),
    ({"type": "response.create", "response": None}, "invalid_value",
     "response must be an object and response.text_stream a boolean", None),
    ({"type": "gateway.response.text.done", "response_id": None}, "response_not_found",
     "no such streamed response", None),
])
def test_bad_events_are_refused_with_a_stable_code(message: object, code: str, text: str,
                                                   event_id: str | None) -> None:
    error = refused(message)
    assert (error.code, error.event_id) == (code, event_id)
    assert str(error).startswith(text)


def test_only_a_string_event_id_is_echoed() -> None:
    assert refused({"type": "no.such.event", "event_id": 7}).event_id is None
    assert parsed({"type": "response.cancel", "event_id": ["x"]}) == ResponseCancel(None)


async def test_bad_client_events_get_error_events_and_the_call_goes_on(caller: Caller) -> None:
    await caller.wait_event("session.created")
    caller.send_raw("{not json")
    caller.send_raw(b"\x00\x01binary")
    caller.send_raw('["a", "list"]')
    caller.send({"no": "type", "event_id": "evt_1"})
    caller.send({"type": "no.such.event", "event_id": "evt_2"})
    caller.send({"type": "session.update", "event_id": "evt_3", "session": {"turn_detection": {"threshold": 7}}})
    caller.send({"type": "response.cancel", "event_id": "evt_4"})
    caller.send_raw('{"type": "session.update", "session": {"instructions": "' + "x" * 70_000 + '"}}')
    caller.send({"type": "session.update", "event_id": "evt_5", "session": {"instructions": "Still here."}})
    updated = await caller.wait_event("session.updated")
    assert updated["session"]["instructions"] == "Still here."
    errors = [e["error"] for e in caller.events_of("error")]
    codes = [e["code"] for e in errors]
    assert codes == ["invalid_json", "invalid_event", "invalid_event", "missing_type", "unknown_event",
                     "invalid_value", "response_cancel_not_active", "event_too_large"]
    by_code = {e["code"]: e for e in errors}
    assert by_code["unknown_event"]["event_id"] == "evt_2"
    assert by_code["invalid_value"]["param"] == "session.turn_detection.threshold"
    assert by_code["invalid_value"]["event_id"] == "evt_3"


async def test_a_flood_of_events_is_rate_limited(caller: Caller) -> None:
    await caller.wait_event("session.created")
    for i in range(1000):
        caller.send({"type": "input_audio_buffer.clear", "event_id": f"e{i}"})
    limited = await caller.wait_event("error", where=lambda e: e["error"]["code"] == "rate_limited", timeout=10)
    assert "dropped" in limited["error"]["message"]
    cleared = len(caller.events_of("input_audio_buffer.cleared"))
    assert 0 < cleared < 1000


async def test_semantic_vad_is_reported_truthfully_and_items_can_be_retrieved(caller: Caller) -> None:
    await caller.wait_event("session.created")
    caller.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}}})
    updated = await caller.wait_event("session.updated")
    turn_detection = updated["session"]["audio"]["input"]["turn_detection"]
    assert turn_detection["type"] == "semantic_vad" and turn_detection["eagerness"] == "high"
    assert "silence_duration_ms" not in turn_detection
    caller.send({"type": "conversation.item.create", "item": {
        "id": "item_mine", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}})
    await caller.wait_event("conversation.item.done")
    caller.send({"type": "conversation.item.retrieve", "item_id": "item_mine"})
    retrieved = await caller.wait_event("conversation.item.retrieved")
    assert retrieved["item"]["id"] == "item_mine"
    assert retrieved["item"]["content"][0]["text"] == "hi"
    caller.send({"type": "conversation.item.retrieve", "item_id": "item_nope", "event_id": "evt_r"})
    error = await caller.wait_event("error")
    assert error["error"]["code"] == "item_not_found" and error["error"]["event_id"] == "evt_r"
