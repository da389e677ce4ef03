"""The real call path: aiortc caller ↔ HTTP signaling ↔ real VAD/ASR/TTS engines."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from qa.caller import Caller
from tests.support.calls import event_types, hear, index_of, only, silence, trimmed
from tests.support.speech import normalize, utterance, word_error_rate

pytestmark = pytest.mark.slow

TURN_FILES = ["timit_LDC93S1.wav", "ps_goforward.wav", "ps_cards_005.wav", "lhotse_ljspeech_LJ002-0035.wav"]


async def test_each_turn_is_transcribed_and_answered_in_order(caller: Caller) -> None:
    session_created = await caller.wait_event("session.created")
    assert session_created["session"]["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 500
    for name in TURN_FILES:
        clip = utterance(name)
        _, speech_end = await caller.say(clip.audio(), 16_000)
        completed = await caller.wait_event(
            "conversation.item.input_audio_transcription.completed", since=speech_end - 1
        )
        assert word_error_rate(clip.transcript, completed["transcript"]) <= 0.25, completed["transcript"]
        done = await caller.wait_event("response.done", since=speech_end, timeout=60)
        assert done["response"]["status"] == "completed"
        spoken = done["response"]["output"][0]["content"][0]["transcript"]
        assert spoken.startswith("You said:")
        assert word_error_rate(clip.transcript, spoken.removeprefix("You said:")) <= 0.25
        # The reply was heard: seconds of audible audio arrived after the caller stopped.
        assert caller.received.audible_seconds(since=speech_end) >= 1.0
        playback = caller.events_of("gateway.response.playback", since=speech_end)[-1]
        assert playback["response_id"] == done["response"]["id"]
        assert playback["played_ms"] >= 1000
        # A gap inside the reply (its synthesis fell behind: on a busy machine it may) is reported as such:
        # what the caller heard spans what was played plus the underrun.
        first, last = caller.received.first_audible(since=speech_end), caller.received.last_audible(since=speech_end)
        assert first is not None and last is not None
        assert abs((last - first) * 1000 - playback["played_ms"] - playback["underrun_ms"]) < 400, playback

        types = event_types(caller, since=speech_end - clip.duration - 1)
        order = [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.input_audio_transcription.completed",
            "response.created",
            "response.output_audio_transcript.delta",
            "output_audio_buffer.started",
            "output_audio_buffer.stopped",
            "response.output_audio_transcript.done",
            "response.done",
        ]
        position = 0
        for name_ in order:
            position = index_of(types, name_, position)
        deltas = "".join(e["delta"] for e in caller.events_of("response.output_audio_transcript.delta",
                                                                  since=speech_end))
        assert deltas == spoken
        await asyncio.sleep(0.3)
    assert len(caller.events_of("response.done")) == len(TURN_FILES)


async def test_partial_transcripts_arrive_while_the_caller_speaks(caller: Caller) -> None:
    caller.send({"type": "session.update", "session": {"turn_detection": {"silence_duration_ms": 1200}}})
    await caller.wait_event("session.updated")
    clip = utterance("whisper_jfk.flac")
    onset, speech_end = await caller.say(clip.audio(), 16_000)
    completed = await caller.wait_event("conversation.item.input_audio_transcription.completed", since=onset)
    assert word_error_rate(clip.transcript, completed["transcript"]) <= 0.25
    deltas = caller.events_of("conversation.item.input_audio_transcription.delta", since=onset)
    first_delta_at = min(at for at, e in caller.events if e is deltas[0])
    assert first_delta_at < speech_end - 3  # partials arrive while the caller is still talking
    assert len(deltas) >= 4
    partial = "".join(d["delta"] for d in deltas)
    # Deltas are only ever appended: together they are a prefix-like rendering of the final transcript.
    assert word_error_rate(" ".join(completed["transcript"].split()[: len(partial.split())]), partial) <= 0.3
    assert {d["item_id"] for d in deltas} == {completed["item_id"]}


async def test_barge_in_stops_the_reply_and_truncates_it(caller: Caller) -> None:
    # JFK pauses for breath: a longer end-of-turn silence keeps the sentence one turn.
    caller.send({"type": "session.update", "session": {"turn_detection": {"silence_duration_ms": 1200}}})
    await caller.wait_event("session.updated")
    long_clip = utterance("whisper_jfk.flac")
    _, speech_end = await caller.say(long_clip.audio(), 16_000)
    started = await caller.wait_event("output_audio_buffer.started", since=speech_end, timeout=30)
    response_id = started["response_id"]
    await hear(caller, 1.2, since=speech_end)  # let the caller hear part of the reply
    interruption = utterance("ps_goforward.wav")
    onset, interruption_end = await caller.say(trimmed(interruption.audio()), 16_000)

    cleared = await caller.wait_event("output_audio_buffer.cleared", since=onset)
    assert cleared["response_id"] == response_id
    done = await caller.wait_event("response.done", since=onset, where=lambda e: e["response"]["id"] == response_id)
    assert done["response"]["status"] == "cancelled"
    truncated = await caller.wait_event("conversation.item.truncated", since=onset)
    assert 1000 <= truncated["audio_end_ms"] <= 6000
    heard = done["response"]["output"][0]["content"][0]["transcript"]
    full = "You said: " + (await caller.wait_event(
        "conversation.item.input_audio_transcription.completed", since=speech_end - 12))["transcript"]
    assert heard and len(heard) < len(full) and full.startswith(heard)

    # The caller hears the reply stop: silence from shortly after the interruption until it ends.
    assert caller.received.audible_seconds(since=onset + 0.8, until=interruption_end) == 0.0
    # ... and the interruption itself becomes the next turn.
    completed = await caller.wait_event("conversation.item.input_audio_transcription.completed", since=onset)
    assert word_error_rate(interruption.transcript, completed["transcript"]) <= 0.25
    await caller.wait_event("response.done", since=interruption_end,
                            where=lambda e: e["response"]["status"] == "completed")


async def test_a_pause_within_a_sentence_is_not_a_turn(caller: Caller) -> None:
    first, second = utterance("ps_cards_001.wav"), utterance("ps_cards_003.wav")
    audio = np.concatenate([trimmed(first.audio()), silence(0.25), trimmed(second.audio())])
    onset, speech_end = await caller.say(audio, 16_000)
    done = await caller.wait_event("response.done", since=speech_end, timeout=30)
    await asyncio.sleep(1.0)
    completed = only(caller.events_of("conversation.item.input_audio_transcription.completed", since=onset))
    words = normalize(completed["transcript"])
    assert "ten" in words and "seven" in words, completed["transcript"]  # both halves, one transcript
    assert len(caller.events_of("response.created", since=onset)) == 1
    assert done["response"]["status"] == "completed"


async def test_client_driven_reply_speaks_the_given_text(caller: Caller) -> None:
    await caller.wait_event("session.created")
    caller.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "server_vad", "create_response": False, "silence_duration_ms": 400}}}}})
    updated = await caller.wait_event("session.updated")
    assert updated["session"]["audio"]["input"]["turn_detection"]["create_response"] is False
    assert updated["session"]["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 400

    clip = utterance("ps_cards_002.wav")
    _, speech_end = await caller.say(clip.audio(), 16_000)
    await caller.wait_event("conversation.item.input_audio_transcription.completed", since=speech_end - 2)
    await asyncio.sleep(1.0)
    assert caller.events_of("response.created", since=speech_end - 2) == []  # no automatic reply

    text = "The queen of clubs is a fine card."
    caller.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}})
    caller.send({"type": "response.create"})
    done = await caller.wait_event("response.done", since=speech_end, timeout=30)
    assert done["response"]["status"] == "completed"
    assert done["response"]["output"][0]["content"][0]["transcript"] == text
    assert caller.received.audible_seconds(since=speech_end + 1.0) >= 1.0
