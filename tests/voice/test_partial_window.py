"""Partials over a bounded window: bounded work per decode on a long utterance, finals unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from engines.base import SAMPLE_RATE, SpeechRecognizer, Transcript
from engines.loops import without_loop
from engines.whisper import WhisperRecognizer
from gateway.aio import TaskSet
from gateway.voice.transcription import PartialTranscriber, overlap, quietest_cut
from qa.measure import normalize, word_errors
from tests.support.speech import manifest

STEP = SAMPLE_RATE * 8 // 10


class _Recording(SpeechRecognizer):
    """Wraps the real recogniser and keeps the length of every audio it is asked to decode."""

    def __init__(self, inner: SpeechRecognizer) -> None:
        self.inner = inner
        self.lengths: list[int] = []

    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Transcript:
        self.lengths.append(len(audio))
        return await self.inner.transcribe(audio, partial=partial)


@pytest.fixture(scope="module")
def whisper() -> Iterator[WhisperRecognizer]:
    engine = WhisperRecognizer(partial_min_window_ms=6000)
    yield engine
    engine.close()


async def _feed(recognizer: SpeechRecognizer, audio: np.ndarray, window_ms: int) -> tuple[str, PartialTranscriber]:
    tasks = TaskSet("test")
    deltas: list[str] = []
    partials = PartialTranscriber(recognizer, deltas.append, interval_samples=STEP, tasks=tasks,
                                  window_samples=window_ms * SAMPLE_RATE // 1000)
    for end in range(STEP, len(audio) + 1, STEP):
        partials.maybe_decode(lambda end=end: audio[:end], end)
        if partials._task is not None:
            await partials._task
    await tasks.close()
    return "".join(deltas), partials


def _jfk() -> tuple[np.ndarray, str]:
    clip = next(u for u in manifest() if u.file == "whisper_jfk.flac")
    return clip.audio(), clip.transcript


async def test_partials_of_a_long_utterance_decode_at_most_the_window(whisper: WhisperRecognizer) -> None:
    audio, reference = _jfk()  # 11 s
    whole = _Recording(whisper)
    whole_text, _ = await _feed(whole, audio, 0)
    bounded = _Recording(whisper)
    text, partials = await _feed(bounded, audio, 5000)
    assert max(bounded.lengths) <= 5 * SAMPLE_RATE < max(whole.lengths)
    assert sum(bounded.lengths) < 0.7 * sum(whole.lengths)  # linear in the utterance, not quadratic
    assert partials.samples_decoded == sum(bounded.lengths)
    words = len(normalize(reference))
    assert word_errors(reference, text) / words <= word_errors(reference, whole_text) / words + 0.15
    assert text.startswith("And so my fellow Americans")
    assert "can do for you" in text


async def test_the_final_is_a_decode_of_the_whole_utterance_whatever_the_partials(whisper: WhisperRecognizer) -> None:
    audio, reference = _jfk()
    before = (await whisper.transcribe(audio)).text
    await _feed(whisper, audio, 5000)
    assert (await whisper.transcribe(audio)).text == before
    assert word_errors(reference, before) / len(normalize(reference)) < 0.2
    # The shorter least window is the partials' only: a final of a short clip is as a 10 s window gives it.
    short = audio[: 4 * SAMPLE_RATE]
    assert (await whisper.transcribe(short)).text == whisper._decode_fitted(short)


class _Scripted(SpeechRecognizer):
    """Answers each decode with the next scripted text (timing-exact seam logic)."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.lengths: list[int] = []

    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Transcript:
        self.lengths.append(len(audio))
        return Transcript(text=self.texts.pop(0), audio_seconds=len(audio) / SAMPLE_RATE, compute_seconds=0.0)


async def test_a_seam_publishes_its_segment_and_skips_words_heard_before_it() -> None:
    recognizer = _Scripted(["one two", "one two three", "one two three four", "one two three four five",
                            "one two three four", "four five six", "four five six seven"])
    tasks = TaskSet("test")
    deltas: list[str] = []
    partials = PartialTranscriber(recognizer, deltas.append, interval_samples=SAMPLE_RATE // 2, tasks=tasks,
                                  window_samples=4 * SAMPLE_RATE)
    audio = np.random.default_rng(0).normal(0, 0.1, 6 * SAMPLE_RATE).astype(np.float32)
    audio[int(2.5 * SAMPLE_RATE): int(2.52 * SAMPLE_RATE)] = 0  # the pause the seam goes to
    for end in (1.0, 2.0, 3.0, 4.0, 5.0, 5.5, 6.0):
        partials.maybe_decode(lambda end=end: audio[: int(end * SAMPLE_RATE)], int(end * SAMPLE_RATE))
        assert partials._task is not None
        await partials._task
    await tasks.close()
    # Up to 4 s: the whole utterance; at 5 s the closed segment [0, 2.5 s); then the tail from the seam.
    assert [n / SAMPLE_RATE for n in recognizer.lengths] == [1.0, 2.0, 3.0, 4.0, 2.5, 3.0, 3.5]
    assert deltas == ["one two", " three", " four", " five six"]  # "four" after the seam is not heard twice
    assert partials.text == "one two three four five six"


def test_a_looping_hypothesis_is_cut_where_it_repeats() -> None:
    looped = "And so my fellow Americans. And so my fellow Americans. And so my".split()
    assert without_loop(looped) == "And so my fellow Americans.".split()
    speech = "we will we will rock you, I said no no no".split()  # short repeats are speech
    assert without_loop(speech) == speech
    # tiny.en over a 6 s window, measured on ../shared/speech partials: short runs looping, a loop cut short
    assert without_loop("1, 2, 1, 2, 1, 2, 1, 2".split()) == ["1,", "2,"]
    assert without_loop("10 of clubs 10 of clubs 10 of".split()) == "10 of clubs".split()
    cut_short = "She had your dark suit in greasy wash water all year. She had your dark suit in greasy".split()
    assert without_loop(cut_short) == "She had your dark suit in greasy wash water all year.".split()


def test_overlap_and_quietest_cut() -> None:
    assert overlap(["a", "b", "Three,"], ["three", "four"]) == 1
    assert overlap(["a", "b"], ["c"]) == 0
    audio = np.ones(SAMPLE_RATE, np.float32)
    audio[8000:8320] = 0
    assert quietest_cut(audio, 3200, 16000) == 8000
    with pytest.raises(ValueError):
        PartialTranscriber(_Scripted([]), print, interval_samples=1, tasks=TaskSet("t"), window_samples=100)


def test_the_partial_keys_are_validated_and_reach_the_voice_options() -> None:
    from gateway.config import GatewayConfig
    from gateway.config.errors import ConfigError
    from gateway.config.schema import EngineConfig
    from gateway.voice.options import VoiceOptions

    assert VoiceOptions.from_config(GatewayConfig()).partial_window_ms == 5000
    off = GatewayConfig(engines=EngineConfig(asr_partial_window_ms=0, asr_partial_min_window_ms=10_000))
    assert VoiceOptions.from_config(off).partial_window_ms == 0
    for bad in ({"asr_partial_window_ms": 1000}, {"asr_partial_min_window_ms": 5000},
                {"tts_phrase_cache_bytes": -1}):
        with pytest.raises(ConfigError):
            EngineConfig(**bad)  # type: ignore[arg-type]
