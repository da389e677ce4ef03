"""``POST /v1/audio/speech`` through the official ``openai`` SDK: valid audio in every format, streamed."""

from __future__ import annotations

from typing import cast

import pytest
from openai import AsyncOpenAI

from gateway.speech.audio import decode_audio
from gateway.speech.service import SpeechServices
from gateway.voice.engines import Engines
from signaling.speech_service import SPEECH
from tests.speech.conftest import API_KEY, SpeechGateway
from tests.support.speech import word_error_rate

TEXT = ("The gateway speaks as it synthesises. Each clause leaves as soon as it is ready, "
        "so a listener hears the first words early. The rest follows while it is spoken, "
        "one sentence after another, until the text ends.")


async def _speak(client: AsyncOpenAI, fmt: str, text: str = TEXT, **kwargs: object) -> list[bytes]:
    async with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=text, response_format=fmt, **kwargs) as response:  # type: ignore[arg-type]
        assert response.status_code == 200
        return [chunk async for chunk in response.iter_bytes()]


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
async def test_every_format_is_valid_audio_that_says_the_text(openai_client: AsyncOpenAI, engines: Engines,
                                                               fmt: str) -> None:
    audio = decode_audio(b"".join(await _speak(openai_client, fmt, "Ask not what your country can do for you.")),
                         max_seconds=60)
    assert 1.0 < len(audio) / 16_000 < 6.0
    heard = await engines.asr.transcribe(audio)
    assert word_error_rate("ask not what your country can do for you", heard.text) <= 0.25, heard.text


async def test_pcm_is_24khz_s16le(openai_client: AsyncOpenAI, engines: Engines) -> None:
    import numpy as np

    pcm = b"".join(await _speak(openai_client, "pcm", "One two three."))
    assert len(pcm) % 2 == 0
    seconds = len(pcm) / 2 / 24_000
    assert 0.5 < seconds < 4.0
    samples = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    assert float(np.abs(samples).max()) > 0.1  # speech, not silence


async def test_first_audio_leaves_before_the_text_is_synthesised(speech_gateway: SpeechGateway,
                                                                   openai_client: AsyncOpenAI) -> None:
    service = cast(SpeechServices, speech_gateway.server.app[SPEECH])
    running_at_first_bytes = None
    chunks = 0
    async with openai_client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="nova", input=TEXT * 2, response_format="mp3") as response:
        async for _chunk in response.iter_bytes():
            if running_at_first_bytes is None:
                running_at_first_bytes = service.jobs
            chunks += 1
    assert running_at_first_bytes == 1  # the synthesis was still running when the first bytes arrived
    assert chunks > 1
    assert service.jobs == 0


async def test_speed_changes_the_duration(openai_client: AsyncOpenAI) -> None:
    text = "This sentence is spoken at two speeds."
    normal = decode_audio(b"".join(await _speak(openai_client, "wav", text)), max_seconds=60)
    fast = decode_audio(b"".join(await _speak(openai_client, "wav", text, speed=2.0)), max_seconds=60)
    assert len(fast) < 0.7 * len(normal)


async def test_models_lists_what_is_served(openai_client: AsyncOpenAI) -> None:
    ids = [model.id async for model in openai_client.models.list()]
    assert {"whisper-1", "tts-1", "voice-gateway-asr", "voice-gateway-tts"} <= set(ids)


async def test_a_client_that_leaves_mid_stream_frees_its_job(speech_gateway: SpeechGateway) -> None:
    import asyncio

    import aiohttp

    service = cast(SpeechServices, speech_gateway.server.app[SPEECH])
    body = {"model": "tts-1", "voice": "alloy", "input": TEXT * 4, "response_format": "wav"}
    async with aiohttp.ClientSession() as http, http.post(
            speech_gateway.url + "/v1/audio/speech", json=body,
            headers={"Authorization": f"Bearer {API_KEY}"}) as response:
        assert response.status == 200
        await response.content.readany()  # the first clause
        assert service.jobs == 1
    for _ in range(100):  # the connection is closed: the synthesis stops at its next clause
        if service.jobs == 0:
            break
        await asyncio.sleep(0.05)
    assert service.jobs == 0
