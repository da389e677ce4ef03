"""A phone call end to end: a simulated Twilio caller ↔ the gateway with its real VAD, Whisper and Piper.

Several turns of real speech from ../shared/speech go in as μ-law 20 ms frames in real time; the
replies that come back (8 kHz μ-law, as a phone hears them) are transcribed with the gateway's own
Whisper, and a barge-in is cleared at once (at the onset's pause) and truncated to what the caller heard.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.config import GatewayConfig, TurnDetectionConfig
from gateway.voice.engines import Engines
from tests.support.calls import trimmed
from tests.support.ops import GatewayProcess
from tests.support.speech import utterance, word_error_rate
from tests.transports.twilio_caller import TwilioCaller
from tests.transports.twilio_support import TOKEN, PhoneGateway, frames_at_pause, phone_gateway, until

pytestmark = pytest.mark.slow

TURNS = ["ps_goforward.wav", "timit_LDC93S1.wav", "ps_cards_005.wav"]


def _one_turn_per_sentence(config: GatewayConfig) -> GatewayConfig:
    """A 1.2 s end-of-turn silence: JFK pauses for breath, and the long clip stays one turn."""
    return dataclasses.replace(config, turn_detection=TurnDetectionConfig(silence_duration_ms=1200))


@pytest.fixture
async def gateway(engines: Engines) -> AsyncIterator[PhoneGateway]:
    async with phone_gateway(engines, change=_one_turn_per_sentence) as phone:
        yield phone


@pytest.fixture
async def caller(gateway: PhoneGateway) -> AsyncIterator[TwilioCaller]:
    phone = TwilioCaller(gateway.url, token=TOKEN)
    await phone.connect()
    yield phone
    await phone.hang_up()


async def test_several_turns_are_answered_intelligibly(caller: TwilioCaller, gateway: PhoneGateway,
                                                       engines: Engines) -> None:
    await asyncio.sleep(0.5)  # a phone line carries silence before anyone speaks
    for name in TURNS:
        clip = utterance(name)
        _, speech_end = await caller.say(clip.audio())
        await caller.wait_quiet(since=speech_end, quiet=1.0, within=60)
        heard = caller.heard_audio(since=speech_end)
        assert len(heard) / 16_000 >= 1.0
        # The echo agent says "You said: <transcript>"; what the caller heard over 8 kHz μ-law says it too.
        text = (await engines.asr.transcribe(heard)).text
        # 0.385 once in a full-suite run on the loaded machine ("dog, sooth, and greasy washed" over 8 kHz mu-law)
        assert word_error_rate("you said " + clip.transcript, text) <= 0.4, (clip.transcript, text)
        await asyncio.sleep(0.3)
    await until(lambda: len(gateway.recorder.played) >= len(TURNS), within=10)
    # Each reply was reported once heard to its end: as long as what the caller played of it.
    assert not caller.clears and caller.foreign == 0 and caller.marks_echoed > 0
    for played_s, _ in gateway.recorder.played:
        assert played_s >= 1.0


async def test_barge_in_clears_the_phone_at_once_and_truncates_to_what_was_heard(
        caller: TwilioCaller, gateway: PhoneGateway) -> None:
    paused_at = frames_at_pause(gateway)
    long_clip = utterance("whisper_jfk.flac")
    _, speech_end = await caller.say(long_clip.audio())
    await caller.wait_heard(1.5, since=speech_end, within=60)
    interruption = utterance("ps_goforward.wav")
    onset, _ = await caller.say(trimmed(interruption.audio()))
    await until(lambda: caller.clears and paused_at and gateway.recorder.played, within=10)
    decided, cleared = gateway.recorder.barge_ins[0], caller.clears[0]
    paused = next(at for at, outcome in gateway.recorder.over_reply if outcome == "paused")
    # `clear` within a frame of the onset's pause (false interruptions are on: Whisper's words decide later
    # whether it was a real interruption): on the wire it follows the frames sent before the pause and at
    # most the one then being handed over (counted in frames, not in wall-clock time).
    assert onset < paused <= cleared < decided and len(caller.clears) == 1
    assert len(caller.media_received(until=cleared)) <= paused_at[0] + 1
    # Truncated to what the caller heard (marks), to within a frame and the network's delay.
    played_s, _ = gateway.recorder.played[0]
    heard_s = caller.heard_seconds(since=speech_end, until=cleared)
    assert played_s >= 1.5 and abs(played_s - heard_s) <= 0.08, (played_s, heard_s)
    # Nothing of the cut reply is played after the clear; the interruption then gets its own reply.
    assert caller.heard_seconds(since=cleared + 0.001, until=cleared + 0.5) == 0.0
    await until(lambda: len(gateway.recorder.played) >= 2, within=60)


async def test_a_phone_call_through_a_worker_front(tmp_path: Path) -> None:
    """``--workers 2``: the front checks Twilio's signature and proxies the stream to a worker."""
    front = GatewayProcess.serve(tmp_path, "--workers", "2", "--events-file", "",
                                 env={"VOICE_GATEWAY_TELEPHONY_TWILIO_AUTH_TOKEN": TOKEN})
    try:
        await front.wait_ready(within=180)
        unsigned = TwilioCaller(front.url)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await unsigned.connect()
        await unsigned.close()
        assert refused.value.status == 403
        phone = TwilioCaller(front.url, token=TOKEN)
        await phone.connect()
        await asyncio.sleep(0.5)
        clip = utterance("timit_LDC93S1.wav")
        _, end = await phone.say(clip.audio())
        await phone.wait_quiet(since=end, quiet=1.0, within=60)
        assert phone.heard_seconds(since=end) >= 1.0 and phone.marks_echoed > 0
        await phone.hang_up()
        front.signal()
        assert await front.wait_exit(within=60) == 0
    finally:
        front.kill()
