"""Engines failing mid-call: an error event, the turn is skipped, the call goes on; a stalled TTS blocks nothing."""

from __future__ import annotations

import asyncio

import pytest

from gateway.voice import reply
from gateway.voice.engines import Engines
from qa.caller import Caller
from tests.security.support import STALL_VOICE, flaky_engines, running_gateway
from tests.support.speech import utterance, word_error_rate

pytestmark = pytest.mark.slow

COMPLETED = "conversation.item.input_audio_transcription.completed"


async def test_asr_and_tts_failures_skip_the_turn_and_the_call_goes_on(engines: Engines) -> None:
    wrapped, asr, tts = flaky_engines(engines)
    async with running_gateway(wrapped) as gateway:
        caller = Caller(gateway.url)
        await caller.connect()
        try:
            await caller.wait_event("session.created")

            asr.fail = True  # the recogniser raises on this turn
            _, end = await caller.say(utterance("ps_cards_005.wav").audio(), 16_000)
            error = await caller.wait_event("error", since=end - 4, timeout=15)
            assert error["error"]["code"] == "asr_failed" and error["error"]["type"] == "server_error"
            failed = await caller.wait_event("conversation.item.input_audio_transcription.failed", since=end - 4)
            assert failed["error"]["code"] == "asr_failed"
            asr.fail = False
            await asyncio.sleep(0.5)
            assert caller.events_of("response.created", since=end - 4) == []  # the turn was skipped

            tts.fail = True  # the synthesiser raises while speaking the reply
            clip = utterance("timit_LDC93S1.wav")
            _, end = await caller.say(clip.audio(), 16_000)
            completed = await caller.wait_event(COMPLETED, since=end - 4, timeout=15)
            assert word_error_rate(clip.transcript, completed["transcript"]) <= 0.25
            error = await caller.wait_event("error", since=end, timeout=15)
            assert error["error"]["code"] == "tts_failed"
            done = await caller.wait_event("response.done", since=end, timeout=15)
            assert done["response"]["status"] == "failed"
            tts.fail = False

            clip = utterance("ps_goforward.wav")  # and the next turn is answered as usual
            _, end = await caller.say(clip.audio(), 16_000)
            done = await caller.wait_event("response.done", since=end, timeout=20)
            assert done["response"]["status"] == "completed"
            assert word_error_rate(clip.transcript, done["response"]["output"][0]["content"][0]["transcript"]
                                   .removeprefix("You said:")) <= 0.25
            assert caller.received.audible_seconds(since=end) >= 0.5
            assert gateway.registry.has_call(caller.location.rsplit("/", 1)[1])  # type: ignore[union-attr]
        finally:
            await caller.hangup()


async def test_a_stalled_tts_blocks_neither_barge_in_nor_other_calls(engines: Engines,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reply, "SYNTHESIS_STALL_SECONDS", 30.0)
    wrapped, _, tts = flaky_engines(engines)
    async with running_gateway(wrapped) as gateway:
        stuck, other = Caller(gateway.url, session={"voice": STALL_VOICE}), Caller(gateway.url)
        await asyncio.gather(stuck.connect(), other.connect())
        try:
            _, stuck_end = await stuck.say(utterance("ps_cards_002.wav").audio(), 16_000)
            while tts.stalled == 0:  # noqa: ASYNC110 - the reply is being prepared
                await asyncio.sleep(0.05)

            # Meanwhile another call is answered as usual.
            _, other_end = await other.say(utterance("ps_goforward.wav").audio(), 16_000)
            done = await other.wait_event("response.done", since=other_end, timeout=20)
            assert done["response"]["status"] == "completed"
            assert stuck.events_of("response.created", since=stuck_end - 3) == []  # still stalled

            # The stuck caller talks again: heard at once; the stalled reply is dropped, the new turn answered.
            tts.stalling = False
            onset, end = await stuck.say(utterance("ps_cards_003.wav").audio(), 16_000)
            assert await stuck.wait_event("input_audio_buffer.speech_started", since=onset, timeout=5)
            done = await stuck.wait_event("response.done", since=end, timeout=20)
            assert done["response"]["status"] == "completed"

            # A stall nobody interrupts fails the reply after SYNTHESIS_STALL_SECONDS; the call goes on.
            monkeypatch.setattr(reply, "SYNTHESIS_STALL_SECONDS", 1.5)
            tts.stalling = True
            _, end = await stuck.say(utterance("ps_cards_001.wav").audio(), 16_000)
            error = await stuck.wait_event("error", since=end, timeout=15)
            assert error["error"]["code"] == "tts_failed" and "stalled" in error["error"]["message"]
            done = await stuck.wait_event("response.done", since=end, timeout=15)
            assert done["response"]["status"] == "failed"
            assert len(gateway.registry) == 2
        finally:
            await asyncio.gather(stuck.hangup(), other.hangup())
