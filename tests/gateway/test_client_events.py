"""Client events on oai-events: errors for bad ones, the call goes on."""

from __future__ import annotations

from qa.caller import Caller


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


async def test_semantic_vad_is_served_by_server_vad_and_items_can_be_retrieved(caller: Caller) -> None:
    await caller.wait_event("session.created")
    caller.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "semantic_vad", "eagerness": "auto"}}}}})
    updated = await caller.wait_event("session.updated")
    assert updated["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
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
