"""semantic_vad and false interruptions, on the audio clock (fake VAD, ASR and end-of-turn model)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import numpy as np

from engines.base import EndOfTurn, EndOfTurnModel, FloatArray, Transcript
from gateway.agents import ConversationItem
from gateway.config import GatewayConfig
from gateway.ops.metrics import GatewayMetrics
from gateway.ops.observers import NULL_OBSERVER, CallObserver
from gateway.protocol.session_settings import SessionSettings
from gateway.voice.conversation import Conversation
from gateway.voice.options import VoiceOptions
from media import OutboundAudioTrack
from media.outbound import FRAME_SAMPLES
from tests.support.fakes import ScriptedAsr, fake_engines, loud, quiet


class FixedTurnModel(EndOfTurnModel):
    def __init__(self, probability: float) -> None:
        self.probability = probability
        self.calls = 0

    async def predict(self, audio: FloatArray) -> EndOfTurn:
        self.calls += 1
        return EndOfTurn(self.probability, 0.001)


class SaysAsr(ScriptedAsr):
    """Says ``text`` for any audio with something loud in it (else nothing)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    async def transcribe(self, audio: FloatArray, *, partial: bool = False) -> Transcript:
        loud_audio = bool(np.any(np.abs(audio) > 0.1))
        return Transcript(self.text if loud_audio else "", len(audio) / 16000, 0.0)


class Harness:
    def __init__(self, *, probability: float = 0.9, asr: ScriptedAsr | None = None,
                 observer: CallObserver = NULL_OBSERVER, **turn: Any) -> None:
        engines, scripted = fake_engines()
        self.model = FixedTurnModel(probability)
        self.engines = replace(engines, end_of_turn=self.model, asr=asr or scripted)
        self.track = OutboundAudioTrack()
        self.events: list[dict[str, Any]] = []
        settings = SessionSettings.from_config(GatewayConfig(), self.engines.tts.voices)
        settings = replace(settings, turn=replace(settings.turn, **turn))
        self.conversation = Conversation(
            call_id="rtc_test", engines=self.engines, track=self.track, send=self.events.append, settings=settings,
            observer=observer,
            options=VoiceOptions(max_utterance_seconds=30, tts_ahead_seconds=60, partial_interval_ms=0))

    async def feed(self, audio: FloatArray) -> None:
        for i in range(0, len(audio), 320):
            await self.conversation.feed(audio[i : i + 320])
            for _ in range(3):
                await asyncio.sleep(0)

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]


async def settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


async def test_semantic_vad_ends_a_complete_turn_after_200_ms_not_500() -> None:
    h = Harness(probability=0.97, type="semantic_vad", asr=SaysAsr("I'd like a ticket to Paris."))
    await h.feed(loud(0.5))
    await h.feed(quiet(0.26))
    assert len(h.of("input_audio_buffer.speech_stopped")) == 1
    judged = h.of("gateway.turn.judged")
    assert judged and judged[0]["complete"] and judged[0]["silence_ms"] == 200
    assert h.model.calls == 1  # once per pause
    await h.conversation.close()


async def test_semantic_vad_waits_up_to_the_eagerness_cap_when_the_turn_is_unfinished() -> None:
    h = Harness(probability=0.1, type="semantic_vad", eagerness="high")
    await h.feed(loud(0.5))
    await h.feed(quiet(1.0))  # a mid-sentence pause of a second: server_vad would have ended the turn
    assert not h.of("input_audio_buffer.speech_stopped")
    await h.feed(loud(0.3))  # the caller goes on: one turn
    await h.feed(quiet(2.1))  # high eagerness: 2 s at most
    assert len(h.of("input_audio_buffer.speech_stopped")) == 1
    assert len(h.of("input_audio_buffer.speech_started")) == 1
    await h.conversation.close()


async def test_words_that_cannot_end_a_sentence_overrule_a_model_that_calls_it_complete() -> None:
    h = Harness(probability=0.95, type="semantic_vad", asr=SaysAsr("I'd like to fly to"))
    await h.feed(loud(0.5))
    await h.feed(quiet(0.6))
    await settle()
    judged = h.of("gateway.turn.judged")
    assert judged and not judged[0]["complete"] and judged[0]["silence_ms"] == 4000
    assert not h.of("input_audio_buffer.speech_stopped")
    await h.conversation.close()


async def start_reply(h: Harness) -> str:
    assert h.conversation.create_response()
    await settle()
    response_id = h.of("response.created")[0]["response"]["id"]
    for _ in range(10):
        h.track.next_frame()
    return str(response_id)


async def test_a_cough_over_the_reply_pauses_it_and_it_resumes_from_the_exact_sample() -> None:
    h = Harness(asr=SaysAsr(""))  # a cough: no words
    h.conversation.add_item(ConversationItem("item_a", "assistant", "one two three four five six seven eight"))
    response_id = await start_reply(h)
    await h.feed(loud(0.15))
    assert h.track.paused and h.track.next_frame()[1] is None  # silent from the next frame
    assert h.of("gateway.response.paused")[0]["played_ms"] == 10 * FRAME_SAMPLES * 1000 // 48000
    await h.feed(quiet(0.2))
    await settle()
    assert not h.track.paused
    resumed = h.of("gateway.response.resumed")
    assert resumed and resumed[0]["response_id"] == response_id and resumed[0]["played_ms"] == 200
    assert not h.of("conversation.item.truncated")
    while h.track.next_frame()[1] is not None:
        pass
    await settle()
    done = h.of("response.done")
    assert done and done[0]["response"]["status"] == "completed"
    assert not h.of("input_audio_buffer.committed")  # a cough is not a turn
    await h.conversation.close()


async def test_a_backchannel_resumes_and_a_sentence_cancels() -> None:
    for said, cancelled in [("Mm-hmm.", False), ("Yeah, okay.", False), ("Wait, stop, that is wrong.", True)]:
        h = Harness(asr=SaysAsr(said))
        h.conversation.add_item(ConversationItem("item_a", "assistant", "a long reply " * 20))
        await start_reply(h)
        await h.feed(loud(0.4))
        await h.feed(quiet(0.6))
        await settle()
        assert bool(h.of("conversation.item.truncated")) is cancelled, said
        assert bool(h.of("gateway.response.resumed")) is not cancelled, said
        assert bool(h.of("input_audio_buffer.committed")) is cancelled, said
        await h.conversation.close()


async def test_with_false_interruptions_off_any_onset_cancels_at_once() -> None:
    h = Harness(asr=SaysAsr(""), false_interruption=False)
    h.conversation.add_item(ConversationItem("item_a", "assistant", "a long reply " * 20))
    await start_reply(h)
    await h.feed(loud(0.1))
    assert h.of("conversation.item.truncated") and not h.track.paused
    await h.conversation.close()


def test_what_counts_as_an_interruption() -> None:
    from gateway.voice.interruptions import interrupts

    assert not interrupts("", 400) and not interrupts(" . ", 300) and not interrupts("You", 300)  # noise
    assert not interrupts("Mm-hmm.", 500) and not interrupts("Yeah, right.", 900) and not interrupts("Uh-huh", 700)
    assert not interrupts("in a moment.", 500)  # Whisper's "mm-hmm": short, few words
    assert interrupts("Stop.", 300) and interrupts("No.", 250) and interrupts("Wait", 400)  # short, but stop words
    assert interrupts("ten of clubs", 900) and interrupts("Yeah but what about Paris", 1200)
    assert not interrupts("Right... Right... Right... Right... Right...", 360)  # Whisper looping on one "right"


def test_a_short_word_interrupts_when_whisper_is_sure_of_it() -> None:
    """Whisper tiny.en's mean log-probabilities, measured on ../shared/speech, Piper and espeak-ng sounds."""
    from gateway.voice.interruptions import classify

    assert classify("1.", 400, -0.75) == "real"  # the sonnet's spoken "One."
    assert classify("NMR", 500, -1.96) == "unsure"  # Piper's "mm-hmm"
    assert classify("And then them.", 560, -1.05) == "unsure"  # espeak-ng's "mm hmm"
    assert classify("in a month.", 540, -0.64) == "unsure"  # Piper's "mm-hmm" alone: a phrase, however sure
    assert classify("him", 320, -3.46) == "unsure" and classify("Em...", 288, -2.09) == "unsure"  # espeak's "hmm"
    assert classify("Paris", 416, -0.88) == "real" and classify("One", 384, -2.28) == "unsure"  # espeak's words
    assert classify("that.", 448, -1.27) == "unsure"  # Piper's "okay" after its "yeah,": misheard, and doubted
    assert classify("through.", 128, -0.61) == "unsure"  # echo residue: too short to be a spoken word
    assert classify("1.", 400) == "unsure"  # a recogniser that gives no confidence: as before
    assert classify("Yeah? Yeah?", 300, -0.92) == "none" and classify(".", 300, -3.2) == "none"
    assert classify("Uh-uh.", 384, -0.77) == "none"  # espeak-ng's "uh huh", hyphenated
    assert classify("Mm-m-hmm.", 544, -0.46) == "none" and classify("Mm-m-", 660, -0.77) == "none"  # Piper's hums
    assert classify("Ham.", 400, -0.5) == "real"  # a word, though only a letter away from a hum
    assert classify("and then them", 608, -1.69) == "unsure"  # espeak-ng's "mm hmm" is 610-670 ms long
    assert classify("Call Dip.", 640, -1.04) == "unsure" and classify("Not that one.", 700, -1.5) == "real"


def test_a_second_decode_told_backchannels_are_likely_only_ever_finds_a_single_sure_word() -> None:
    from gateway.voice.interruptions import hinted_verdict

    assert hinted_verdict("Tomorrow.", 480, -0.45) == "real" and hinted_verdict("Paris", 320, -0.36) == "real"
    assert hinted_verdict("Council.", 400, -1.14) == "unsure"  # doubted still
    assert hinted_verdict("Hey, Mm-h", 620, -1.1) == "unsure" and hinted_verdict("In a month.", 540, -0.5) == "unsure"
    assert hinted_verdict("Mm-hmm.", 500, -0.3) == "unsure" and hinted_verdict("Tuesday.", 200, -0.3) == "unsure"
    # Heard by both decodes: the sonnet's "One." as "1" (-1.12), then "One." (-1.02); not so a doubted hum.
    assert hinted_verdict("One.", 480, -1.02, "1") == "real" and hinted_verdict("One.", 480, -1.02) == "unsure"
    assert hinted_verdict("Five.", 400, -1.21, "five") == "real" and hinted_verdict("One.", 480, -1.6, "1") == "unsure"
    assert hinted_verdict("Mm.", 480, -1.1, "mm") == "unsure" and hinted_verdict("Two.", 200, -1.1, "2") == "unsure"
    # Echo residue of "waiting" (echo set, 23:32): a stop word Whisper doubts is no interruption, nor one too short.
    assert hinted_verdict("Wait.", 160, -1.49, "weight.") == "unsure" and hinted_verdict("Wait.", 96, -0.9) == "unsure"
    assert hinted_verdict("Wait, no.", 400, -0.6, "wait no") == "real" and hinted_verdict("No.", 352, -0.7) == "real"
    assert hinted_verdict("Mm-hmm. Hey.", 500, -0.8, "Hey, my mom.") == "unsure"  # a hum the hint heard "hey" in


def test_a_stop_word_in_a_doubted_short_phrase_gets_a_second_opinion() -> None:
    from gateway.voice.interruptions import doubted_stop

    assert doubted_stop("Hey, my mom.", 480, -1.06)  # Piper's "mm-hmm"
    assert not doubted_stop("No.", 320, -0.6) and not doubted_stop("Stop.", 300, None)  # sure, or no confidence
    assert not doubted_stop("Wait, stop, that is wrong.", 700, -1.3) and not doubted_stop("Hey there", 900, -1.5)


def test_unfinished_words() -> None:
    from gateway.voice.endpointing import sounds_unfinished

    assert sounds_unfinished("I'd like to fly to.") and sounds_unfinished("Ten of") and sounds_unfinished("and so,")
    assert not sounds_unfinished("I'd like to fly to Paris.") and not sounds_unfinished("")


async def test_a_long_pause_judged_unfinished_is_judged_again_and_may_end() -> None:
    h = Harness(probability=0.1, type="semantic_vad", asr=SaysAsr("I'd like a ticket to Paris."))
    await h.feed(loud(0.5))
    await h.feed(quiet(0.5))
    assert h.model.calls == 1 and not h.of("input_audio_buffer.speech_stopped")
    h.model.probability = 0.97  # more silence: the model is surer
    await h.feed(quiet(0.6))
    assert h.model.calls == 2
    assert len(h.of("input_audio_buffer.speech_stopped")) == 1  # ended at 1 s, not at the 4 s cap
    await h.conversation.close()


async def test_a_short_unsure_word_waits_and_the_caller_going_on_makes_it_an_interruption() -> None:
    class Digits(ScriptedAsr):
        async def transcribe(self, audio: FloatArray, *, partial: bool = False) -> Transcript:
            edges = np.diff(np.concatenate([[0], (np.abs(audio) > 0.1).astype(int), [0]]))
            bursts = int(np.sum(edges == 1))
            return Transcript(" ".join(["five"] * bursts), len(audio) / 16000, 0.0)

    h = Harness(asr=Digits())
    h.conversation.add_item(ConversationItem("item_a", "assistant", "a long reply " * 20))
    await start_reply(h)
    await h.feed(loud(0.3))  # "five": short, and no backchannel: unsure
    await h.feed(quiet(0.25))
    await settle()
    assert h.track.paused and not h.of("gateway.response.resumed")  # held, not resumed yet
    await h.feed(loud(0.3))  # "… five": the caller goes on
    await h.feed(quiet(0.2))
    await settle()
    assert h.of("conversation.item.truncated") and not h.of("gateway.response.resumed")
    await h.conversation.close()


async def test_a_short_unsure_word_alone_resumes_after_the_hold() -> None:
    h = Harness(asr=SaysAsr("in a moment."))  # what Whisper hears in a hummed "mm-hmm"
    h.conversation.add_item(ConversationItem("item_a", "assistant", "a long reply " * 20))
    await start_reply(h)
    await h.feed(loud(0.4))
    await h.feed(quiet(0.2))
    await settle()
    assert h.track.paused
    await h.feed(quiet(0.3))
    await settle()
    assert h.track.paused and not h.of("gateway.response.resumed")  # 0.5 s of silence: under UNSURE_HOLD_MS
    await h.feed(quiet(0.4))
    await settle()
    assert h.of("gateway.response.resumed") and not h.track.paused and not h.of("conversation.item.truncated")
    await h.conversation.close()


async def test_a_second_unsure_sound_soon_after_is_an_interruption() -> None:
    h = Harness(asr=SaysAsr("one"))  # "one … two …": each word alone is short and no backchannel
    h.conversation.add_item(ConversationItem("item_a", "assistant", "a long reply " * 20))
    await start_reply(h)
    await h.feed(loud(0.3))
    await h.feed(quiet(0.9))
    await settle()
    assert len(h.of("gateway.response.resumed")) == 1
    await h.feed(loud(0.3))
    await h.feed(quiet(0.2))
    await settle()
    assert h.of("conversation.item.truncated") and len(h.of("gateway.response.resumed")) == 1
    await h.conversation.close()


async def test_pauses_resumes_cancels_and_verdicts_are_counted_in_the_metrics() -> None:
    from prometheus_client import generate_latest

    metrics = GatewayMetrics()
    h = Harness(asr=SaysAsr(""), observer=metrics, type="semantic_vad")
    await h.feed(loud(0.5))  # a turn of no words (discarded), judged by the end-of-turn model
    await h.feed(quiet(1.1))
    h.conversation.add_item(ConversationItem("item_a", "assistant", "a long reply " * 20))
    await start_reply(h)
    await h.feed(loud(0.2))
    await h.feed(quiet(0.3))
    await settle()
    text = generate_latest(metrics.registry).decode()
    assert 'voice_gateway_speech_over_reply_total{outcome="paused"} 1.0' in text
    assert 'voice_gateway_speech_over_reply_total{outcome="resumed"} 1.0' in text
    assert "voice_gateway_end_of_turn_seconds_count" in text
    await h.conversation.close()


def test_how_a_pause_is_judged() -> None:
    from gateway.voice.endpointing import EAGERNESS, decide

    medium = EAGERNESS["medium"]
    assert decide(0.97, "I'd like a ticket to Paris.", medium) == ("complete", 200)
    assert decide(0.97, "I'd like to fly to", medium) == ("unfinished", 4000)  # the words overrule the model
    assert decide(0.97, "Ten.", medium) == ("unsure", 1000)  # one word that may begin "ten of clubs"
    assert decide(0.97, "Yes.", medium) == ("complete", 200)
    assert decide(0.97, "Thank you.", medium) == ("complete", 200)  # "you", "it" end sentences as objects
    assert decide(0.99, "From fairest creatures we desire increase,", medium)[0] == "unfinished"  # a comma
    assert decide(0.84, "Eight of spades for a...", medium)[0] == "unfinished"  # Whisper's ellipsis: it trails off
    assert decide(0.7, "I'd like a ticket to Paris.", medium) == ("unsure", 1000)
    assert decide(0.2, "I'd like a ticket to Paris.", medium) == ("unfinished", 4000)
    assert decide(0.97, None, medium) == ("complete", 200)  # no transcript (no speculation): the model alone
    assert decide(0.75, "Ten.", EAGERNESS["high"]) == ("unsure", 500)
    assert decide(0.85, "I'd like a ticket to Paris.", medium) == ("unsure", 1000)
