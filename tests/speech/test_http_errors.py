"""Bad requests to the speech endpoints: JSON errors with stable codes and the right status."""

from __future__ import annotations

import io
import math
import struct
import wave

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from tests.speech.conftest import API_KEY, SpeechGateway, speech_config, start_gateway
from tests.support.speech import utterance

AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def _post_file(url: str, data: bytes | None, *, fields: dict[str, str] | None = None,
                     headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    status, body, _ = await _post_file_headers(url, data, fields=fields, headers=headers)
    return status, body


async def _post_file_headers(url: str, data: bytes | None, *, fields: dict[str, str] | None = None,
                             headers: dict[str, str] | None = None) -> tuple[int, dict[str, object], dict[str, str]]:
    form = aiohttp.FormData(default_to_multipart=True)
    for key, value in (fields or {"model": "whisper-1"}).items():
        form.add_field(key, value)
    if data is not None:
        form.add_field("file", data, filename="upload.wav")
    async with aiohttp.ClientSession() as session, session.post(
            url + "/v1/audio/transcriptions", data=form, headers=AUTH if headers is None else headers) as response:
        return response.status, await response.json(), dict(response.headers)


def _code(body: dict[str, object]) -> object:
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"type", "code", "message"}
    return error["code"]


async def test_bad_uploads(speech_gateway: SpeechGateway) -> None:
    url = speech_gateway.url
    for nothing in (None, b""):
        status, body = await _post_file(url, nothing)
        assert (status, _code(body)) == (400, "missing_file")
    status, body = await _post_file(url, b"this is not audio at all" * 100)
    assert (status, _code(body)) == (400, "invalid_audio")
    status, body = await _post_file(url, b"RIFF\x00\x00\x00\x00WAVEjunk")  # a header and nothing
    assert (status, _code(body)) == (400, "invalid_audio")
    clip = utterance("ps_cards_001.wav").path.read_bytes()
    status, body = await _post_file(url, clip, fields={"model": "whisper-1", "response_format": "xml"})
    assert (status, _code(body)) == (400, "invalid_response_format")
    status, body = await _post_file(url, clip, fields={"model": "no-such-model"})
    assert (status, _code(body)) == (400, "model_not_found")
    status, body = await _post_file(url, clip, fields={"model": "whisper-1", "language": "de"})
    assert (status, _code(body)) == (400, "unsupported_language")
    status, body = await _post_file(url, clip, fields={"model": "whisper-1", "timestamp_granularities[]": "word"})
    assert (status, _code(body)) == (400, "unsupported_timestamp_granularity")


def _ten_hour_header_wav() -> bytes:
    """A WAV whose header declares 10 hours of 16 kHz audio and holds one second."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(b"".join(struct.pack("<h", int(3000 * math.sin(i / 8))) for i in range(16_000)))
    data = bytearray(buffer.getvalue())
    declared = 10 * 3600 * 16_000 * 2
    data[4:8] = struct.pack("<I", declared + 36)
    data[40:44] = struct.pack("<I", declared)
    return bytes(data)


def _silent_flac(seconds: int) -> bytes:
    import av
    import numpy as np

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=16_000, layout="mono")
        for _ in range(seconds):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 16_000), np.int16), format="s16", layout="mono")
            frame.sample_rate = 16_000
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


async def test_too_big_and_too_long(engines: object) -> None:
    gateway = await start_gateway(speech_config(max_upload_bytes=600_000, max_audio_seconds=2),
                                  engines)  # type: ignore[arg-type]
    try:
        status, body = await _post_file(gateway.url, b"\0" * 700_000)
        assert (status, _code(body)) == (413, "file_too_large")
        status, body = await _post_file(gateway.url, utterance("ps_cards_005.wav").path.read_bytes())  # 3.5 s
        assert (status, _code(body)) == (400, "audio_too_long")
        status, body = await _post_file(gateway.url, _silent_flac(600))  # 10 minutes in a few kB
        assert (status, _code(body)) == (400, "audio_too_long")
        # A header that claims 10 hours over 1 s of samples: judged by what decodes, nothing more is read
        status, body = await _post_file(gateway.url, _ten_hour_header_wav())
        assert status == 200 and body["usage"] == {"type": "duration", "seconds": 1.0}
    finally:
        await gateway.server.close()


async def test_bad_auth(speech_gateway: SpeechGateway) -> None:
    clip = utterance("ps_cards_001.wav").path.read_bytes()
    status, body, headers = await _post_file_headers(speech_gateway.url, clip, headers={})
    assert (status, _code(body)) == (401, "missing_api_key")
    assert headers["WWW-Authenticate"].startswith("Bearer")
    wrong = {"Authorization": "Bearer sk-wrong-key-000000000"}
    status, body = await _post_file(speech_gateway.url, clip, headers=wrong)
    assert (status, _code(body)) == (401, "invalid_api_key")
    client = AsyncOpenAI(base_url=speech_gateway.url + "/v1", api_key="sk-wrong-key-000000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await client.audio.speech.create(model="tts-1", voice="alloy", input="Hello.")
    with pytest.raises(openai.AuthenticationError):
        await client.models.list()
    await client.close()


async def test_bad_speech_requests(openai_client: AsyncOpenAI, speech_gateway: SpeechGateway) -> None:
    cases = [({"voice": "no-such-voice"}, "unknown_voice"), ({"input": ""}, "empty_input"),
             ({"input": "   "}, "empty_input"), ({"input": "word " * 2000}, "input_too_long"),
             ({"response_format": "ogg"}, "invalid_response_format"), ({"speed": 9}, "invalid_value"),
             ({"model": "no-such-model"}, "model_not_found")]
    for change, code in cases:
        request = {"model": "tts-1", "voice": "alloy", "input": "Hello.", **change}
        with pytest.raises(openai.BadRequestError) as caught:
            await openai_client.audio.speech.create(**request)  # type: ignore[arg-type]
        assert caught.value.code == code, change
    async with aiohttp.ClientSession() as session, session.post(
            speech_gateway.url + "/v1/audio/speech", data=b"{not json", headers=AUTH) as response:
        assert response.status == 400 and _code(await response.json()) == "invalid_json"


async def test_per_client_and_gateway_job_bounds(engines: object) -> None:
    """A third concurrent request from one address is refused (429), not queued without bound."""
    import asyncio

    gateway = await start_gateway(speech_config(max_jobs_per_client=1), engines)  # type: ignore[arg-type]
    clip = utterance("ps_goforward.wav").path.read_bytes()  # small: both bodies are sent before the refusal
    try:
        results = await asyncio.gather(_post_file(gateway.url, clip), _post_file(gateway.url, clip))
        statuses = sorted(status for status, _ in results)
        assert statuses == [200, 429]
        assert any(_code(body) == "too_many_jobs" for status, body in results if status == 429)
    finally:
        await gateway.server.close()
