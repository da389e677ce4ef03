"""A final transcript never loops: tiny.en's "5 5 5 5 5 …" is decoded again with fallback, or cut."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from engines.loops import loops, unlooped
from engines.whisper import WhisperRecognizer
from qa.caller import speech_end_sample
from qa.measure import normalize
from tests.support.speech import manifest


@pytest.fixture(scope="module")
def whisper() -> Iterator[WhisperRecognizer]:
    engine = WhisperRecognizer(partial_min_window_ms=10_000, batching=True)  # partials: the final's raw decode
    yield engine
    engine.close()


def _five_five() -> np.ndarray:
    """ "five five" to the end of its speech and 96 ms of silence: what semantic_vad judges a pause from.
    Over the fitted window tiny.en decodes it as "5 5 5 5 5 5 5 5 5 5 5 5 5 5 5" (measured)."""
    clip = next(u for u in manifest() if u.file == "ps_cards_004.wav")
    audio = clip.audio()
    return np.concatenate([audio[: speech_end_sample(audio, 16_000)], np.zeros(1536, np.float32)])


async def test_a_final_that_loops_is_decoded_again_and_comes_out_as_said(whisper: WhisperRecognizer) -> None:
    audio = _five_five()
    raw = await whisper.transcribe(audio, partial=True)
    final = await whisper.transcribe(audio)
    assert not loops(final.text), final.text
    assert 1 <= len(normalize(final.text)) <= 3 and "5" in final.text, (raw.text, final.text)
    # Batched finals (the worker's batch function) take the same path.
    batched = await asyncio.gather(*(whisper.transcribe(audio) for _ in range(4)))
    assert [t.text for t in batched] == [final.text] * 4


def test_loops_and_unlooped() -> None:
    assert loops("is that for food? Is that for food? Is that for food?")
    assert unlooped("is that for food? Is that for food? Is that for food?") == "is that for food?"
    assert not loops("we will we will rock you")
    assert unlooped("Go forward ten meters.") == "Go forward ten meters."
