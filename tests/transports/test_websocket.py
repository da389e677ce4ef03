"""The Realtime WebSocket with the official ``openai`` SDK: real speech streamed in real time, real engines.

Only the base URLs differ from OpenAI's. Transcripts are scored against the manifest (and against
the same clips over WebRTC in the same test), replies are transcribed back by the gateway's own
recogniser, a barge-in and a client's truncation cancel the reply, and a transcription session
never responds.
"""

from __future__ import annotations

import asyncio
import base64
import time

import numpy as np
import pytest

from gateway.voice.engines import Engines
from media.g711 import G711Decoder, G711Encoder
from qa.caller import Caller
from tests.support.speech import utterance, word_error_rate
from tests.transports.sdk_caller import SdkCaller, pcm24_to_16k, sdk_call

pytestmark = pytest.mark.slow

CLIPS = ["ps_goforward.wav", "timit_LDC93S1.wav", "ps_cards_005.wav"]


async def spoken_text(engines: Engines, audio16k: np.ndarray) -> str:
    return (await engines.asr.transcribe(audio16k.astype(np.float32))).text


async def one_turn(caller: SdkCaller, clip_name: str) -> tuple[float, dict, dict]:
    """Say a clip; the turn's transcription and its reply's response.done."""
    clip = utterance(clip_name)
    since = time.monotonic()
    await caller.say(clip.audio())
    completed = await caller.wait_event("conversation.item.input_audio_transcription.completed", since=since)
    done = await caller.wait_event("response.done", since=since, timeout=60)
    return word_error_rate(clip.transcript, completed["transcript"]), completed, done


async def test_turns_are_transcribed_and_answered_with_intelligible_audio(gateway_url: str, engines: Engines) -> None:
    async with sdk_call(gateway_url) as caller:
        created = await caller.wait_event("session.created")
        assert created["session"]["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
        for name in CLIPS:
            since = time.monotonic()
            wer, completed, done = await one_turn(caller, name)
            assert wer <= 0.25, completed["transcript"]
            assert completed["item_id"]
            response = done["response"]
            assert response["status"] == "completed"
            item_id = response["output"][0]["id"]
            deltas = [e for e in caller.of("response.output_audio.delta", since=since)
                      if e["response_id"] == response["id"]]
            assert deltas and all(e["item_id"] == item_id for e in deltas)
            types = caller.types(since=since)
            last_delta = max(i for i, t in enumerate(types) if t == "response.output_audio.delta")
            assert last_delta < types.index("response.output_audio.done") < types.index("response.done")
            heard = await spoken_text(engines, pcm24_to_16k(caller.reply_audio(response["id"])))
            spoken = response["output"][0]["content"][0]["transcript"]
            assert spoken.startswith("You said:")
            assert word_error_rate(spoken, heard) <= 0.35, (spoken, heard)


async def test_transcripts_are_as_good_as_over_webrtc(gateway_url: str) -> None:
    socket_wer, webrtc_wer = [], []
    async with sdk_call(gateway_url) as caller:
        await caller.wait_event("session.created")
        for name in CLIPS:
            socket_wer.append((await one_turn(caller, name))[0])
    webrtc = Caller(gateway_url)
    await webrtc.connect()
    try:
        for name in CLIPS:
            clip = utterance(name)
            _, end = await webrtc.say(clip.audio(), 16_000)
            completed = await webrtc.wait_event("conversation.item.input_audio_transcription.completed",
                                                since=end - clip.duration - 1)
            webrtc_wer.append(word_error_rate(clip.transcript, completed["transcript"]))
            await webrtc.wait_event("response.done", since=end, timeout=60)
    finally:
        await webrtc.hangup()
    assert np.mean(socket_wer) <= np.mean(webrtc_wer) + 0.05, (socket_wer, webrtc_wer)


async def test_barge_in_cancels_the_reply(gateway_url: str) -> None:
    async with sdk_call(gateway_url) as caller:
        await caller.wait_event("session.created")
        since = time.monotonic()
        await caller.say(utterance("timit_LDC93S1.wav").audio(), trailing_silence=0.6)
        first = await caller.wait_event("response.output_audio.delta", since=since, timeout=60)
        interrupt_at = time.monotonic()
        await caller.say(utterance("ps_goforward.wav").audio())
        done = await caller.wait_event("response.done", since=since, timeout=30,
                                       where=lambda e: e["response"]["id"] == first["response_id"])
        assert done["response"]["status"] == "cancelled"
        truncated = await caller.wait_event("conversation.item.truncated", since=interrupt_at)
        assert truncated["item_id"] == first["item_id"]
        done_at = next(at for at, e in caller.events if e is done)
        late = [e for at, e in caller.events if at > done_at and e["type"] == "response.output_audio.delta"
                and e["response_id"] == first["response_id"]]
        assert not late
        # The interrupting turn is answered in its turn.
        nxt = await caller.wait_event("response.done", since=interrupt_at, timeout=60,
                                      where=lambda e: e["response"]["id"] != first["response_id"])
        assert nxt["response"]["status"] == "completed"


async def test_the_client_truncates_what_it_did_not_play(gateway_url: str) -> None:
    async with sdk_call(gateway_url) as caller:
        await caller.wait_event("session.created")
        since = time.monotonic()
        await caller.say(utterance("ps_cards_005.wav").audio(), trailing_silence=0.8)
        first = await caller.wait_event("response.output_audio.delta", since=since, timeout=60)
        while len(caller.reply_audio(first["response_id"])) < 0.6 * 48_000:  # noqa: ASYNC110 - 0.6 s received
            await asyncio.sleep(0.02)
        await caller.connection.conversation.item.truncate(item_id=first["item_id"], content_index=0,
                                                           audio_end_ms=300)
        truncated = await caller.wait_event("conversation.item.truncated", since=since)
        assert (truncated["item_id"], truncated["audio_end_ms"]) == (first["item_id"], 300)
        done = await caller.wait_event("response.done", since=since, timeout=30)
        assert done["response"]["status"] == "cancelled"
        await caller.connection.conversation.item.truncate(item_id="item_nope", content_index=0, audio_end_ms=0)
        assert (await caller.wait_event("error", since=since))["error"]["code"] == "item_not_found"


async def test_a_transcription_session_transcribes_and_never_responds(gateway_url: str) -> None:
    async with sdk_call(gateway_url, intent="transcription") as caller:
        created = await caller.wait_event("session.created")
        assert created["session"]["type"] == "transcription"
        for name in ("ps_goforward.wav", "timit_LDC93S1.wav"):
            clip = utterance(name)
            since = time.monotonic()
            await caller.say(clip.audio())
            completed = await caller.wait_event("conversation.item.input_audio_transcription.completed", since=since)
            assert word_error_rate(clip.transcript, completed["transcript"]) <= 0.25
            deltas = caller.of("conversation.item.input_audio_transcription.delta", since=since)
            assert all(d["item_id"] == completed["item_id"] for d in deltas)
        await asyncio.sleep(1.0)
        assert not caller.of("response.created")
        await caller.connection.response.create()
        assert (await caller.wait_event("error"))["error"]["code"] == "transcription_session"


async def test_without_turn_detection_the_client_commits(gateway_url: str) -> None:
    async with sdk_call(gateway_url) as caller:
        await caller.wait_event("session.created")
        await caller.connection.session.update(session={"type": "realtime", "audio": {"input": {
            "turn_detection": None}}})
        await caller.wait_event("session.updated")
        clip = utterance("ps_goforward.wav")
        since = time.monotonic()
        await caller.say(clip.audio(), trailing_silence=0.5)
        assert not caller.of("input_audio_buffer.speech_started", since=since)
        await caller.connection.input_audio_buffer.commit()
        completed = await caller.wait_event("conversation.item.input_audio_transcription.completed", since=since)
        assert word_error_rate(clip.transcript, completed["transcript"]) <= 0.25
        await asyncio.sleep(0.5)
        assert not caller.of("response.created", since=since)  # no turn detection: no automatic reply
        await caller.connection.response.create()
        done = await caller.wait_event("response.done", since=since, timeout=60)
        assert done["response"]["status"] == "completed"
        await caller.say(clip.audio()[:8000], trailing_silence=0.1)
        await caller.connection.input_audio_buffer.clear()
        await caller.wait_event("input_audio_buffer.cleared", since=since)


async def test_g711_in_and_out(gateway_url: str, engines: Engines) -> None:
    async with sdk_call(gateway_url) as caller:
        await caller.wait_event("session.created")
        await caller.connection.session.update(session={"type": "realtime", "audio": {
            "input": {"format": {"type": "audio/pcmu"}}, "output": {"format": {"type": "audio/pcmu"}}}})
        await caller.wait_event("session.updated")
        clip = utterance("timit_LDC93S1.wav")
        since = time.monotonic()
        ulaw = G711Encoder("pcmu", rate=16_000).encode(clip.audio())
        await caller.send_pcm(ulaw, bytes_per_second=8000)
        await caller.send_pcm(bytes([0xFF]) * 8000, bytes_per_second=8000)
        completed = await caller.wait_event("conversation.item.input_audio_transcription.completed", since=since)
        assert word_error_rate(clip.transcript, completed["transcript"]) <= 0.3
        done = await caller.wait_event("response.done", since=since, timeout=60)
        reply = b"".join(base64.b64decode(e["delta"]) for e in caller.of("response.output_audio.delta", since=since))
        assert len(reply) > 8000  # more than a second of 8 kHz μ-law
        heard = await spoken_text(engines, G711Decoder("pcmu").decode(reply))
        assert word_error_rate(done["response"]["output"][0]["content"][0]["transcript"], heard) <= 0.4
