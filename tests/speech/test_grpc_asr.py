"""``nvidia.riva.asr.RivaSpeechRecognition`` through the official ``nvidia-riva-client``, every shared clip.

The Riva client is blocking: it runs in a thread while the gateway serves on the test's loop.
"""

from __future__ import annotations

import asyncio

import pytest
import riva.client

from tests.speech.conftest import SpeechGateway
from tests.speech.riva_clients import auth, chunks, pcm16, recognition_config
from tests.support.speech import manifest, utterance, word_error_rate

MAX_CORPUS_WER = 0.09  # offline: the HTTP path's decode windows (measured 0.077; the call path 0.073)
MAX_STREAMING_WER = 0.10  # streaming finals, endpointed utterance by utterance (measured 0.082)


def _corpus_wer(pairs: list[tuple[str, str]]) -> float:
    errors = sum(word_error_rate(ref, hyp) * len(ref.split()) for ref, hyp in pairs)
    return errors / sum(len(ref.split()) for ref, _ in pairs)


async def test_offline_recognize_every_clip_as_sent_by_the_client(speech_gateway: SpeechGateway) -> None:
    """WAV files as the Riva client sends them (a RIFF header under LINEAR_PCM), the FLAC one as FLAC."""
    service = riva.client.ASRService(auth(speech_gateway.grpc_uri))

    def recognize_all() -> list[tuple[str, str]]:
        pairs = []
        for clip in manifest():
            config = recognition_config()
            if clip.file.endswith(".flac"):
                config.encoding = riva.client.AudioEncoding.FLAC
            response = service.offline_recognize(clip.path.read_bytes(), config)
            text = " ".join(result.alternatives[0].transcript for result in response.results)
            pairs.append((clip.transcript, text))
        return pairs

    assert _corpus_wer(await asyncio.to_thread(recognize_all)) <= MAX_CORPUS_WER


async def test_offline_raw_pcm_at_another_rate(speech_gateway: SpeechGateway) -> None:
    clip = utterance("timit_LDC93S1.wav")
    service = riva.client.ASRService(auth(speech_gateway.grpc_uri))
    response = await asyncio.to_thread(service.offline_recognize, pcm16(clip, 44_100), recognition_config(44_100))
    assert word_error_rate(clip.transcript, response.results[0].alternatives[0].transcript) < 0.3
    assert abs(response.results[-1].audio_processed - clip.duration) < 0.6


@pytest.mark.slow
async def test_streaming_with_interim_results_every_clip(speech_gateway: SpeechGateway) -> None:
    service = riva.client.ASRService(auth(speech_gateway.grpc_uri))

    def stream(data: bytes) -> tuple[list[str], list[str], float]:
        config = riva.client.StreamingRecognitionConfig(config=recognition_config(), interim_results=True)
        finals, interims, processed = [], [], 0.0
        for response in service.streaming_response_generator(chunks(data), config):
            for result in response.results:
                (finals if result.is_final else interims).append(result.alternatives[0].transcript)
                processed = max(processed, result.audio_processed)
        return finals, interims, processed

    pairs = []
    for clip in manifest():
        finals, interims, processed = await asyncio.to_thread(stream, pcm16(clip))
        pairs.append((clip.transcript, " ".join(finals)))
        assert finals, clip.file
        if clip.duration > 3:
            assert interims, clip.file  # interim hypotheses while the speech goes on
        assert processed <= clip.duration + 0.2
    assert _corpus_wer(pairs) <= MAX_STREAMING_WER


async def test_endpointing_splits_utterances_at_pauses(speech_gateway: SpeechGateway) -> None:
    """Two clips with 1.5 s of silence between them: two finals with the default stop_history (800 ms); one
    with stop_history 2000 ms."""
    first, second = utterance("ps_cards_001.wav"), utterance("ps_goforward.wav")
    data = pcm16(first) + b"\0\0" * 24_000 + pcm16(second)
    service = riva.client.ASRService(auth(speech_gateway.grpc_uri))

    def finals(stop_history: int) -> list[str]:
        config = riva.client.StreamingRecognitionConfig(config=recognition_config(), interim_results=False)
        riva.client.add_endpoint_parameters_to_config(config, 0, 0.0, stop_history, 0, 0.0, 0.0)
        return [result.alternatives[0].transcript for response in
                service.streaming_response_generator(chunks(data), config) for result in response.results
                if result.is_final]

    split = await asyncio.to_thread(finals, 0)
    assert len(split) == 2
    assert word_error_rate(first.transcript, split[0]) < 0.4 and word_error_rate(second.transcript, split[1]) < 0.4
    assert len(await asyncio.to_thread(finals, 4000)) == 1  # the clips' own silences make the gap ~2.5 s
