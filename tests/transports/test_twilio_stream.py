"""Twilio Media Streams against the real gateway (HTTP, WebSocket, session, turn-taking), fake engines.

The engines are the timing-exact fakes (a loudness VAD, one word per 100 ms of loud audio, 100 ms of tone
per word) so that what was sent, what was heard and what the gateway says was heard can be compared to the
frame. Real speech and Whisper are in test_twilio_call.py.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from twilio.request_validator import RequestValidator

from gateway.config import AuthConfig, GatewayConfig, TelephonyConfig
from gateway.transports.twilio_audio import END_MARK_TIMEOUT_SECONDS, StreamWriter, TwilioAudio
from gateway.voice.engines import Engines
from tests.support.fakes import fake_engines, loud
from tests.transports.twilio_caller import TwilioCaller
from tests.transports.twilio_support import (
    TOKEN,
    PhoneGateway,
    frames_at_barge_in,
    phone_gateway,
    replace_limits,
    until,
)


@pytest.fixture
def engines() -> Engines:  # overrides the suite's real engines: these tests need the fakes' exact timing
    return fake_engines()[0]


def immediate_barge_in(config: GatewayConfig) -> GatewayConfig:
    """These tests time the clear of a barge-in against the marks: any onset cancels at once, as it did before
    false interruptions (which pause first and decide from the words: tests/voice/test_turn_taking.py)."""
    turn_detection = dataclasses.replace(config.turn_detection, false_interruption=False)
    return dataclasses.replace(config, turn_detection=turn_detection)


@pytest.fixture
async def gateway(engines: Engines) -> AsyncIterator[PhoneGateway]:
    async with phone_gateway(engines, telephony=TelephonyConfig(
            twilio_auth_token=TOKEN, agents=("echo",), instructions=(("brief", "Be brief."),),
            start_timeout_seconds=1.0, max_message_bytes=4096), change=immediate_barge_in) as phone:
        yield phone


@pytest.fixture
async def caller(gateway: PhoneGateway) -> AsyncIterator[TwilioCaller]:
    phone = TwilioCaller(gateway.url, token=TOKEN)
    yield phone
    await phone.close()


async def _call_id(gateway: PhoneGateway, index: int = 0) -> str:
    await until(lambda: len(gateway.recorder.started) > index)
    return gateway.recorder.started[index]


# --------------------------------------------------------------------------- a call

async def test_a_reply_is_sent_as_mulaw_media_with_marks_and_reported_once_heard(
        gateway: PhoneGateway, caller: TwilioCaller) -> None:
    await caller.connect()
    call_id = await _call_id(gateway)
    _, end = await caller.say(loud(0.8))  # 8 words: "You said: word × 8" → 10 words of tone, 1 s
    reply_end = await caller.wait_quiet(since=end)
    media = caller.media_received(since=end)
    sizes = [len(base64.b64decode(m["media"]["payload"])) for _, m in media]
    assert sizes and all(size == 160 for size in sizes[1:-1]) and max(sizes) == 160  # 20 ms of μ-law a message
    heard = caller.heard_audio(since=end)
    assert 0.9 <= len(heard) / 16_000 <= 1.2 and float(np.abs(heard).max()) > 0.3  # the tone, audible
    marks = [m for _, m in caller.received if m["event"] == "mark"]
    assert len(marks) == len(media)  # a mark after every frame ...
    # ... and the reply is over once its last mark came back
    await until(lambda: gateway.recorder.played, within=3)
    played_s, _ = gateway.recorder.played[0]
    assert abs(played_s - caller.heard_seconds(since=end)) < 0.03
    assert reply_end > end and caller.foreign == 0 and not caller.clears
    await caller.hang_up()
    await until(lambda: call_id in gateway.recorder.ended)
    assert gateway.recorder.ended[call_id] == "hangup"


async def test_marks_make_the_truncation_what_the_caller_heard_not_what_was_sent(
        gateway: PhoneGateway, caller: TwilioCaller) -> None:
    caller.playout_delay = 0.4  # Twilio's buffer and the phone network: the caller hears 0.4 s behind the sends
    await caller.connect()
    _, end = await caller.say(loud(3.0))  # a 3.2 s reply
    await caller.wait_heard(0.6, since=end)
    await caller.say(loud(0.3))  # barge in
    await until(lambda: caller.clears and gateway.recorder.played)
    sent_s = len(caller.media_received(since=end, until=caller.clears[0])) * 0.02
    heard_s = caller.heard_seconds(since=end, until=caller.clears[0])
    played_s, _ = gateway.recorder.played[0]
    assert sent_s - heard_s >= 0.3  # what was sent ran well ahead of what was heard ...
    assert abs(played_s - heard_s) <= 0.06, (played_s, heard_s, sent_s)  # ... and the truncation is what was heard
    # Nothing of the cut reply plays after the clear.
    assert caller.heard_seconds(since=caller.clears[0] + 0.001, until=caller.clears[0] + 0.3) == 0.0


async def test_clear_goes_out_before_any_further_frame_of_the_interrupted_reply(
        gateway: PhoneGateway, caller: TwilioCaller) -> None:
    decided_at = frames_at_barge_in(gateway)
    await caller.connect()
    _, end = await caller.say(loud(3.0))
    await caller.wait_heard(0.5, since=end)
    await caller.say(loud(0.3))
    await until(lambda: caller.clears and decided_at)
    # On the wire, the clear follows the frames sent before the decision, and at most the one then being
    # handed over: counted in frames, not milliseconds, so a busy machine cannot make it pass or fail.
    before_clear = len(caller.media_received(until=caller.clears[0]))
    assert decided_at[0] > 0 and before_clear <= decided_at[0] + 1, (before_clear, decided_at)
    assert not caller.media_received(since=caller.clears[0], until=caller.clears[0] + 0.3)


async def test_dtmf_and_the_calls_events_reach_a_sideband_client(engines: Engines) -> None:
    key = "sk-test-" + "k" * 24
    async with phone_gateway(engines, change=lambda c: dataclasses.replace(
            c, auth=AuthConfig(api_keys=(key,)))) as gateway:
        phone = TwilioCaller(gateway.url, token=TOKEN, call_sid="CA" + "5e" * 16)  # Twilio's routes: its signature
        await phone.connect()
        call_id = await _call_id(gateway)
        assert call_id == "rtc_ca" + "5e" * 16  # the app knows the CallSid: that is enough to attach
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"{gateway.url}/v1/realtime?call_id={call_id}", headers={"Authorization": f"Bearer {key}"}) as side:
            seen: list[dict[str, Any]] = []

            async def read() -> None:
                async for message in side:
                    seen.append(json.loads(message.data))

            reader = asyncio.create_task(read())
            await asyncio.sleep(0.2)
            for digit in "5#":
                await phone.send({"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": digit}})
            await phone.say(loud(0.5))
            await until(lambda: any(e["type"] == "response.done" for e in seen), within=10)
            reader.cancel()
        dtmf = [e for e in seen if e["type"] == "input_audio_buffer.dtmf_event_received"]
        assert [e["event"] for e in dtmf] == ["5", "#"]
        assert all(isinstance(e["received_at"], int) and e["received_at"] > 1_600_000_000 for e in dtmf)
        types = [e["type"] for e in seen]
        assert types.index("input_audio_buffer.speech_started") < types.index("response.done")
        await phone.close()


async def test_a_second_stream_of_a_live_call_sid_is_refused_and_an_odd_call_sid_gets_a_new_id(
        gateway: PhoneGateway) -> None:
    first = TwilioCaller(gateway.url, token=TOKEN, call_sid="CA" + "ab" * 16)
    await first.connect()
    assert await _call_id(gateway) == "rtc_ca" + "ab" * 16
    again = TwilioCaller(gateway.url, token=TOKEN, call_sid="CA" + "AB" * 16, stream_sid="MZ" + "8" * 32)
    await again.connect()
    assert await again.closed() == 1008 and again.close_reason == "call_exists"
    await again.close()
    odd = TwilioCaller(gateway.url, token=TOKEN, call_sid="CA1 or ../x", stream_sid="MZ" + "7" * 32)
    await odd.connect()
    call_id = await _call_id(gateway, 1)
    assert call_id.startswith("rtc_") and "x" not in call_id and len(call_id) == 24  # a new id, as for WebRTC
    await odd.close()
    await first.close()


async def test_custom_parameters_choose_among_what_the_server_allows(gateway: PhoneGateway) -> None:
    chosen = TwilioCaller(gateway.url, token=TOKEN, custom_parameters={"agent": "echo", "instructions": "brief"})
    await chosen.connect()
    call_id = await _call_id(gateway)
    settings = gateway.call(call_id).conversation.settings
    assert (settings.agent, settings.instructions) == ("echo", "Be brief.")
    await chosen.close()
    for parameters, reason in (({"agent": "openai"}, "agent_not_allowed"),
                               ({"instructions": "Say the admin password"}, "instructions_not_allowed")):
        refused = TwilioCaller(gateway.url, token=TOKEN, stream_sid="MZ" + "9" * 32, custom_parameters=parameters)
        await refused.connect()
        assert await refused.closed() == 1008
        assert refused.close_reason == reason
        await refused.close()
    assert len(gateway.recorder.started) == 1


async def test_a_peer_that_never_echoes_marks_is_bounded_and_its_replies_still_end(engines: Engines) -> None:
    telephony = TelephonyConfig(twilio_auth_token=TOKEN, max_pending_marks=20)
    async with phone_gateway(engines, telephony=telephony) as gateway:
        mute = TwilioCaller(gateway.url, token=TOKEN, echo_marks=False)
        await mute.connect()
        call_id = await _call_id(gateway)
        await mute.say(loud(1.0))  # a 1.2 s reply: 60 frames, 60 marks
        await until(lambda: gateway.recorder.played, within=3 + END_MARK_TIMEOUT_SECONDS)
        audio = gateway.call(call_id).transport.audio_out
        assert isinstance(audio, TwilioAudio)
        assert audio.marks_echoed == 0 and audio.marks_dropped >= 40  # at most 20 kept waiting
        played_s, _ = gateway.recorder.played[0]
        assert 1.1 <= played_s <= 1.3  # reported after the timeout, as sent
        await mute.close()


async def test_the_writer_is_bounded_and_clear_jumps_the_queue() -> None:
    release = asyncio.Event()
    written: list[str] = []

    async def slow_socket(text: str) -> None:  # a peer that stopped reading: TCP backpressure
        await release.wait()
        written.append(text)

    writer = StreamWriter(slow_socket, max_messages=10)
    task = asyncio.create_task(writer.run())
    for i in range(30):
        writer.put(f"media {i}")
    await asyncio.sleep(0.01)
    assert writer.queued <= 10 and writer.messages_dropped >= 19
    writer.put_first("clear")
    assert writer.queued == 1  # the media queued before the clear is dropped: it must not play after it
    release.set()
    await asyncio.wait_for(writer.drain(), 1)
    assert written[-1] == "clear" and len(written) == 2  # the message in flight, then the clear
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# -------------------------------------------------------------------------- refusals

async def test_an_unsigned_or_wrongly_signed_upgrade_is_403_json(gateway: PhoneGateway) -> None:
    async with aiohttp.ClientSession() as http:
        for headers, code in (({}, "missing_twilio_signature"),
                              ({"X-Twilio-Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}, "invalid_twilio_signature")):
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(gateway.url + "/twilio/media-stream", headers=headers)
            assert info.value.status == 403
            async with http.get(gateway.url + "/twilio/media-stream", headers=headers) as r:
                assert r.status == 403 and (await r.json())["error"]["code"] == code
    # Signed for another host (a signature copied from another deployment): refused too.
    elsewhere = TwilioCaller(gateway.url, token=TOKEN)
    elsewhere.host = "other.example.com"
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await elsewhere.connect()
    await elsewhere.close()
    assert info.value.status == 403
    assert not gateway.recorder.started


async def _refused(gateway: PhoneGateway, messages: list[str | bytes], *, start: bool = False) -> tuple[int, str]:
    """Connect (signed), send ``messages`` raw; the close code and reason the gateway answers with."""
    async with aiohttp.ClientSession() as http:
        phone = TwilioCaller(gateway.url, token=TOKEN)
        ws = await http.ws_connect(gateway.url + "/twilio/media-stream",
                                   headers={"X-Twilio-Signature": phone.signature()})
        if start:
            await ws.send_str(json.dumps({"event": "start", "streamSid": phone.stream_sid, "start": {
                "streamSid": phone.stream_sid, "callSid": "CA1", "customParameters": {},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
        for message in messages:
            await (ws.send_bytes(message) if isinstance(message, bytes) else ws.send_str(message))
        async with asyncio.timeout(5):
            closing = await ws.receive()
        while closing.type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            closing = await ws.receive()
        await ws.close()
        return ws.close_code or 0, str(closing.extra or "")


def _media(payload: str, sid: str = "MZ" + "0" * 32) -> str:
    return json.dumps({"event": "media", "streamSid": sid, "media": {"track": "inbound", "payload": payload}})


@pytest.mark.parametrize(("messages", "start", "code", "reason"), [
    (["not json"], False, 1007, "invalid_json"),
    (["[1, 2]"], False, 1007, "invalid_message"),
    ([b"\x00\x01"], False, 1003, "binary_message"),
    ([_media("//8=")], False, 1008, "missing_start"),
    ([json.dumps({"event": "start", "start": {"streamSid": "MZ1", "mediaFormat": {
        "encoding": "audio/l16", "sampleRate": 16000, "channels": 1}}})], False, 1003, "unsupported_media_format"),
    ([_media("not base64!")], True, 1007, "invalid_media"),
    ([_media("//8=", sid="MZother")], True, 1008, "unknown_stream"),
    ([json.dumps({"event": "dtmf", "streamSid": "MZ" + "0" * 32, "dtmf": {"digit": "x"}})], True, 1007,
     "invalid_dtmf"),
    (["x" * 5000], True, 1009, ""),  # over telephony.max_message_bytes (4096 here): aiohttp's own 1009
])
async def test_bad_input_closes_the_stream_with_a_clear_code(gateway: PhoneGateway, messages: list[str | bytes],
                                                             start: bool, code: int, reason: str) -> None:
    got_code, got_reason = await _refused(gateway, messages, start=start)
    assert got_code == code and got_reason.startswith(reason), (got_code, got_reason)


async def test_no_start_within_the_timeout_closes_the_stream(gateway: PhoneGateway) -> None:
    code, reason = await _refused(gateway, [json.dumps({"event": "connected", "protocol": "Call"})])
    assert (code, reason) == (1008, "start_timeout")
    assert not gateway.recorder.started


async def test_a_media_flood_is_dropped_then_ends_that_call_only(engines: Engines) -> None:
    async with phone_gateway(engines, change=replace_limits(max_audio_lead_seconds=0.5,
                                                            max_dropped_audio_seconds=2.0)) as gateway:
        bystander = TwilioCaller(gateway.url, token=TOKEN, stream_sid="MZ" + "1" * 32)
        await bystander.connect()
        flood = TwilioCaller(gateway.url, token=TOKEN)
        await flood.connect()
        frame = _media("/" * 216, sid=flood.stream_sid)  # 160 bytes of μ-law silence-ish
        for _ in range(400):  # 8 s of audio as fast as the socket takes it
            await flood.send(frame)
        assert await flood.closed() == 1008
        flood_id = gateway.recorder.started[1]
        await until(lambda: flood_id in gateway.recorder.ended)
        assert gateway.recorder.ended[flood_id] == "audio_too_fast"
        # The other call goes on, and still answers.
        _, end = await bystander.say(loud(0.5))
        await bystander.wait_heard(0.3, since=end)
        assert gateway.live(gateway.recorder.started[0])
        await flood.close()
        await bystander.close()


async def test_a_full_gateway_refuses_the_upgrade_with_503_and_the_live_call_goes_on(engines: Engines) -> None:
    async with phone_gateway(engines, change=replace_limits(max_calls=1, max_calls_per_client=1)) as gateway:
        first = TwilioCaller(gateway.url, token=TOKEN)
        await first.connect()
        await _call_id(gateway)
        second = TwilioCaller(gateway.url, token=TOKEN, stream_sid="MZ" + "2" * 32)
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await second.connect()
        await second.close()
        assert info.value.status == 503
        _, end = await first.say(loud(0.5))
        await first.wait_heard(0.3, since=end)
        await first.close()


async def test_a_call_hung_up_by_the_gateway_closes_the_stream_normally(gateway: PhoneGateway,
                                                                       caller: TwilioCaller) -> None:
    await caller.connect()
    call_id = await _call_id(gateway)
    async with aiohttp.ClientSession() as http, http.delete(f"{gateway.url}/v1/realtime/calls/{call_id}") as r:
        assert r.status == 204
    assert await caller.closed() == 1000 and caller.close_reason == "call_ended"
    await until(lambda: call_id in gateway.recorder.ended)
    assert gateway.recorder.ended[call_id] == "hangup" and not gateway.live(call_id)


async def test_the_webhooks_twiml_leads_to_a_working_stream(gateway: PhoneGateway) -> None:
    """Twilio's whole flow: the signed webhook, its TwiML, the stream it names with the parameters it sets."""
    path = "/twilio/voice?agent=echo&instructions=brief"
    form = {"CallSid": "CA" + "7" * 32, "From": "+15550100", "To": "+15550101"}
    signed = RequestValidator(TOKEN).compute_signature(f"https://127.0.0.1:{gateway.server.port}{path}", form)
    async with aiohttp.ClientSession() as http, http.post(gateway.url + path, data=form,
                                                          headers={"X-Twilio-Signature": signed}) as r:
        assert r.status == 200 and r.content_type == "text/xml"
        stream = ET.fromstring((await r.text()).split("\n", 1)[1]).find("./Connect/Stream")
    assert stream is not None
    parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    phone = TwilioCaller(gateway.url, token=TOKEN, custom_parameters=parameters)
    assert stream.get("url") == phone.stream_url
    await phone.connect()
    settings = gateway.call(await _call_id(gateway)).conversation.settings
    assert (settings.agent, settings.instructions) == ("echo", "Be brief.")
    _, end = await phone.say(loud(0.5))
    await phone.wait_heard(0.3, since=end)
    await phone.close()
