"""The Realtime WebSocket refuses what it should, with clear codes, before and after the upgrade.

An app with fake engines (timing-exact, fast); the real speech paths are in test_websocket.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from gateway.app.application import create_app
from gateway.config import AuthConfig, EventsConfig, GatewayConfig, LimitsConfig
from gateway.session.session import MAX_APPEND_BYTES
from tests.support.calls import without_load_shedding
from tests.support.fakes import fake_engines

KEY = "sk-server-key-0123456789"


def app_config(**auth: Any) -> GatewayConfig:
    return without_load_shedding(GatewayConfig(
        events=EventsConfig(file=""), auth=AuthConfig(**auth),
        limits=LimitsConfig(max_audio_lead_seconds=1.0, max_dropped_audio_seconds=2.0)))


@pytest.fixture
async def client(aiohttp_client: Any) -> Any:
    return await aiohttp_client(create_app(app_config(), engines=fake_engines()[0]))


@pytest.fixture
async def keyed(aiohttp_client: Any) -> Any:
    return await aiohttp_client(create_app(app_config(api_keys=(KEY,)), engines=fake_engines()[0]))


async def next_event(ws: Any, type_: str, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.receive()
            assert message.type == WSMsgType.TEXT, message
            event = json.loads(message.data)
            if event["type"] == type_:
                return event  # type: ignore[no-any-return]


async def opened(client: Any, **kwargs: Any) -> Any:
    ws = await client.ws_connect("/v1/realtime?model=gpt-realtime", **kwargs)
    created = await next_event(ws, "session.created")
    assert created["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    return ws


def append(data: bytes) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()})


async def test_non_json_binary_and_oversized_events_are_errors_and_the_socket_stays(client: Any) -> None:
    ws = await opened(client)
    await ws.send_str("{not json")
    assert (await next_event(ws, "error"))["error"]["code"] == "invalid_json"
    await ws.send_bytes(b"\x00\x01")
    assert (await next_event(ws, "error"))["error"]["code"] == "invalid_event"
    big = json.dumps({"type": "session.update", "session": {"instructions": "x" * (70 * 1024)}})
    await ws.send_str(big)
    assert (await next_event(ws, "error"))["error"]["code"] == "event_too_large"
    await ws.send_str(json.dumps({"type": "session.update", "session": {"instructions": "still here"}}))
    assert (await next_event(ws, "session.updated"))["session"]["instructions"] == "still here"
    await ws.close()


async def test_a_message_beyond_the_append_bound_closes_with_1009(client: Any) -> None:
    ws = await opened(client)
    await ws.send_str(append(bytes(MAX_APPEND_BYTES)))  # base64 makes it a third larger than the bound
    async with asyncio.timeout(5):
        while (message := await ws.receive()).type == WSMsgType.TEXT:
            pass
    assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


async def test_audio_not_in_the_format_is_refused(client: Any) -> None:
    ws = await opened(client)
    await ws.send_str(append(b"\x00\x01\x02"))  # PCM16: an odd byte count is no audio
    error = (await next_event(ws, "error"))["error"]
    assert (error["code"], error["param"]) == ("invalid_audio", "audio")
    await ws.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": "***not base64***"}))
    assert (await next_event(ws, "error"))["error"]["code"] == "invalid_audio"
    await ws.send_str(json.dumps({"type": "session.update", "session": {"audio": {"input": {
        "format": {"type": "audio/opus"}}}}}))
    error = (await next_event(ws, "error"))["error"]
    assert (error["code"], error["param"]) == ("invalid_value", "session.audio.input.format")
    await ws.send_str(json.dumps({"type": "session.update", "session": {"audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 16000}}}}}))
    assert (await next_event(ws, "error"))["error"]["code"] == "invalid_value"
    await ws.close()


async def test_a_flood_faster_than_real_time_is_dropped_then_ends_the_call(client: Any) -> None:
    ws = await opened(client)
    chunk = append(bytes(48_000 // 2))  # 0.5 s of 24 kHz PCM16 per message, sent without pause
    errors: list[str] = []
    ended: dict[str, Any] | None = None
    async with asyncio.timeout(10):
        for _ in range(40):  # 20 s of audio at once: far beyond the 1 s lead and the 2 s of drops allowed
            if ws.closed:
                break
            await ws.send_str(chunk)
        while (message := await ws.receive()).type == WSMsgType.TEXT:
            event = json.loads(message.data)
            if event["type"] == "error":
                errors.append(event["error"]["code"])
            if event["type"] == "gateway.session.ended":
                ended = event
    assert "input_audio_too_fast" in errors
    assert ended is not None and ended["reason"] == "audio_too_fast"
    assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)


async def test_one_flooding_call_does_not_hurt_another(client: Any) -> None:
    calm = await opened(client)
    flood = await opened(client)
    for _ in range(40):
        if flood.closed:
            break
        await flood.send_str(append(bytes(24_000)))
    await calm.send_str(json.dumps({"type": "session.update", "session": {"instructions": "fine"}}))
    assert (await next_event(calm, "session.updated"))["session"]["instructions"] == "fine"
    await calm.close()
    await flood.close()


async def test_turn_detection_null_and_formats_are_reported_in_the_ga_shape(client: Any) -> None:
    ws = await opened(client)
    await ws.send_str(json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {
        "input": {"format": {"type": "audio/pcmu"}, "turn_detection": None},
        "output": {"format": {"type": "audio/pcma"}}}}}))
    audio = (await next_event(ws, "session.updated"))["session"]["audio"]
    assert audio["input"]["format"] == {"type": "audio/pcmu", "rate": 8000}
    assert audio["output"]["format"] == {"type": "audio/pcma", "rate": 8000}
    assert audio["input"]["turn_detection"] is None
    await ws.send_str(json.dumps({"type": "input_audio_buffer.commit"}))  # nothing appended yet
    assert (await next_event(ws, "error"))["error"]["code"] == "input_audio_buffer_commit_empty"
    await ws.close()


async def test_not_an_upgrade_is_426_json(client: Any) -> None:
    response = await client.get("/v1/realtime")
    assert response.status == 426
    assert (await response.json())["error"]["code"] == "websocket_required"


async def test_keys_are_required_when_configured(keyed: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await keyed.ws_connect("/v1/realtime", headers=headers)
        assert refused.value.status == 401
    response = await keyed.get("/v1/realtime", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                        "Sec-WebSocket-Version": "13",
                                                        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "missing_api_key"
    ws = await opened(keyed, headers={"Authorization": f"Bearer {KEY}"})
    await ws.close()


async def test_the_browser_form_authenticates_with_subprotocols(keyed: Any) -> None:
    ws = await opened(keyed, protocols=("realtime", f"openai-insecure-api-key.{KEY}"))
    assert ws.protocol == "realtime"
    await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await keyed.ws_connect("/v1/realtime", protocols=("realtime", "openai-insecure-api-key.nope"))
    assert refused.value.status == 401


async def test_a_client_secret_places_one_socket_call(keyed: Any) -> None:
    minted = await keyed.post("/v1/realtime/client_secrets", headers={"Authorization": f"Bearer {KEY}"},
                              json={"session": {"instructions": "bound"}})
    token = (await minted.json())["value"]
    ws = await keyed.ws_connect("/v1/realtime", headers={"Authorization": f"Bearer {token}"})
    created = await next_event(ws, "session.created")
    assert created["session"]["instructions"] == "bound"
    with pytest.raises(aiohttp.WSServerHandshakeError) as reused:
        await keyed.ws_connect("/v1/realtime", headers={"Authorization": f"Bearer {token}"})
    assert reused.value.status == 401
    await ws.close()


async def test_sideband_refusals_are_json_before_the_upgrade(client: Any, keyed: Any) -> None:
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    response = await client.get("/v1/realtime?call_id=rtc_0123", headers=upgrade)
    assert (response.status, (await response.json())["error"]["code"]) == (403, "sideband_disabled")
    response = await keyed.get("/v1/realtime?call_id=rtc_0123", headers=upgrade)
    assert (response.status, (await response.json())["error"]["code"]) == (401, "missing_api_key")
    response = await keyed.get("/v1/realtime?call_id=rtc_0123", headers={**upgrade, "Authorization": f"Bearer {KEY}"})
    assert (response.status, (await response.json())["error"]["code"]) == (404, "call_not_found")


async def test_a_sideband_sees_a_socket_call_and_detaching_never_ends_it(keyed: Any) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    call = await opened(keyed, headers=auth)
    await call.send_str(json.dumps({"type": "session.update", "session": {"instructions": "one"}}))
    call_id = (await next_event(call, "session.updated"))["session"]["id"]
    sidebands = [await keyed.ws_connect(f"/v1/realtime?call_id={call_id}", headers=auth) for _ in range(2)]
    for sideband in sidebands:
        assert (await next_event(sideband, "session.created"))["session"]["instructions"] == "one"
    await sidebands[0].send_str(json.dumps({"type": "session.update", "session": {"instructions": "two"}}))
    for ws in (call, *sidebands):
        assert (await next_event(ws, "session.updated"))["session"]["instructions"] == "two"
    await sidebands[1].send_str("{bad")  # an error goes to that sideband only
    assert (await next_event(sidebands[1], "error"))["error"]["code"] == "invalid_json"
    for sideband in sidebands:
        await sideband.close()
    await call.send_str(json.dumps({"type": "session.update", "session": {"instructions": "three"}}))
    assert (await next_event(call, "session.updated"))["session"]["instructions"] == "three"
    await call.close()


async def test_a_listening_client_is_not_taken_for_gone_and_its_end_closes_the_sidebands(aiohttp_client: Any) -> None:
    config = without_load_shedding(GatewayConfig(events=EventsConfig(file=""), auth=AuthConfig(api_keys=(KEY,)),
                                                 limits=LimitsConfig(media_timeout_seconds=1.0)))
    client = await aiohttp_client(create_app(config, engines=fake_engines()[0]))
    auth = {"Authorization": f"Bearer {KEY}"}
    call = await client.ws_connect("/v1/realtime", headers=auth)
    call_id = (await next_event(call, "session.created"))["session"]["id"]
    sideband = await client.ws_connect(f"/v1/realtime?call_id={call_id}", headers=auth)
    await next_event(sideband, "session.created")
    await asyncio.sleep(2.5)  # sends nothing for more than limits.media_timeout_seconds
    await call.send_str(json.dumps({"type": "session.update", "session": {"instructions": "awake"}}))
    assert (await next_event(call, "session.updated"))["session"]["instructions"] == "awake"
    await call.close()  # the caller leaves: the call ends, and its sidebands are closed
    async with asyncio.timeout(5):
        while (message := await sideband.receive()).type == WSMsgType.TEXT:
            pass
    assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)


async def test_a_sideband_hears_a_socket_calls_audio_events_too(keyed: Any) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    call = await keyed.ws_connect("/v1/realtime", headers=auth)
    call_id = (await next_event(call, "session.created"))["session"]["id"]
    sideband = await keyed.ws_connect(f"/v1/realtime?call_id={call_id}", headers=auth)
    await next_event(sideband, "session.created")
    await sideband.send_str(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "two words"}]}}))
    await sideband.send_str(json.dumps({"type": "response.create"}))
    for ws in (call, sideband):
        delta = await next_event(ws, "response.output_audio.delta")
        assert base64.b64decode(delta["delta"])
        done = await next_event(ws, "response.output_audio.done")
        assert done["response_id"] == delta["response_id"]
        assert (await next_event(ws, "response.done"))["response"]["status"] == "completed"
    await sideband.close()
    await call.close()


async def test_socket_calls_count_against_the_per_client_limits(aiohttp_client: Any) -> None:
    config = without_load_shedding(GatewayConfig(events=EventsConfig(file=""), limits=LimitsConfig(max_calls=4)))
    client = await aiohttp_client(create_app(config, engines=fake_engines()[0]))  # a quarter of 4: one per client
    first = await opened(client)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/v1/realtime")
    assert refused.value.status == 429
    await first.close()
    async with asyncio.timeout(5):
        while True:  # the call ends once its socket closed
            try:
                again = await opened(client)
                break
            except aiohttp.WSServerHandshakeError:
                await asyncio.sleep(0.05)
    await again.close()


async def test_appends_do_not_count_against_the_event_rate_limit(client: Any) -> None:
    ws = await opened(client)
    started = asyncio.get_running_loop().time()
    for i in range(300):  # 10 ms appends, 100 a second for 3 s: twice limits.max_events_per_second (50)
        await ws.send_str(append(bytes(480)))
        await asyncio.sleep(max(0.0, started + (i + 1) * 0.01 - asyncio.get_running_loop().time()))
    await ws.send_str(json.dumps({"type": "session.update", "session": {"instructions": "after the audio"}}))
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while not seen or seen[-1]["type"] != "session.updated":
            seen.append(json.loads((await ws.receive()).data))
    assert [e for e in seen if e["type"] == "error"] == []  # no rate_limited, no input_audio_too_fast
    assert seen[-1]["session"]["instructions"] == "after the audio"
    for _ in range(300):  # ordinary events at once: beyond the burst of 100, they are dropped and told
        await ws.send_str(json.dumps({"type": "input_audio_buffer.clear"}))
    assert (await next_event(ws, "error"))["error"]["code"] == "rate_limited"
    await ws.close()
