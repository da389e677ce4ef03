"""``nvidia.riva.tts.RivaSpeechSynthesis`` through the official ``nvidia-riva-client``: offline and online."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import riva.client

from gateway.speech.audio import decode_audio
from gateway.voice.engines import Engines
from tests.speech.conftest import SpeechGateway
from tests.speech.riva_clients import auth
from tests.support.speech import word_error_rate

SENTENCE = "Ask not what your country can do for you."
LONG = ("The first clause leaves as soon as it is ready. The second follows while the first is heard, "
        "and the third after it, until the last words of the text are spoken.")


def _floats(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32768


async def test_synthesize_offline_is_the_text_at_the_asked_rate(speech_gateway: SpeechGateway,
                                                                 engines: Engines) -> None:
    service = riva.client.SpeechSynthesisService(auth(speech_gateway.grpc_uri))
    response = await asyncio.to_thread(service.synthesize, SENTENCE, voice_name="alloy", sample_rate_hz=16_000)
    audio = _floats(response.audio)
    assert 1.0 < len(audio) / 16_000 < 6.0
    heard = await engines.asr.transcribe(audio)
    assert word_error_rate(SENTENCE, heard.text) <= 0.25, heard.text


async def test_synthesize_online_streams_clause_by_clause(speech_gateway: SpeechGateway, engines: Engines) -> None:
    service = riva.client.SpeechSynthesisService(auth(speech_gateway.grpc_uri))

    def online() -> list[bytes]:
        return [response.audio for response in service.synthesize_online(LONG, sample_rate_hz=16_000)]

    pieces = await asyncio.to_thread(online)
    assert len(pieces) >= 3  # one or more per clause, sent as each is synthesised
    audio = _floats(b"".join(pieces))
    assert len(_floats(pieces[0])) < len(audio) / 2
    heard = await engines.asr.transcribe(audio)
    assert word_error_rate(LONG, heard.text) <= 0.3, heard.text


async def test_ogg_opus_output_decodes(speech_gateway: SpeechGateway) -> None:
    service = riva.client.SpeechSynthesisService(auth(speech_gateway.grpc_uri))
    response = await asyncio.to_thread(service.synthesize, SENTENCE, encoding=riva.client.AudioEncoding.OGGOPUS,
                                       sample_rate_hz=48_000)
    assert response.audio.startswith(b"OggS")
    assert 1.0 < len(decode_audio(io.BytesIO(response.audio).getvalue(), max_seconds=30)) / 16_000 < 6.0
