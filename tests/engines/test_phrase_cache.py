"""The TTS phrase cache with the real Piper voice: identical audio, bounded, nothing kept from interrupted phrases."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from engines.phrase_cache import PhraseCache
from engines.piper_tts import PiperSynthesizer


@pytest.fixture(scope="module")
def piper() -> Iterator[PiperSynthesizer]:
    engine = PiperSynthesizer(threads=1)
    yield engine
    engine.close()


async def _audio(synthesizer: PhraseCache | PiperSynthesizer, text: str, speed: float = 1.0) -> np.ndarray:
    return np.concatenate([piece.samples async for piece in synthesizer.synthesize(text, speed=speed)])


async def test_a_repeated_phrase_is_the_same_audio_synthesised_once(piper: PiperSynthesizer) -> None:
    cache = PhraseCache(piper, max_bytes=4 << 20)
    direct = await _audio(piper, "You said:")
    first = await _audio(cache, "You said:")
    again = await _audio(cache, "You said:")
    assert cache.misses == 1 and cache.hits == 1
    # Piper samples its noise afresh per synthesis (no two are equal); a hit is exactly the first one.
    assert np.array_equal(again, first)
    assert abs(len(first) - len(direct)) < piper.sample_rate // 10 and len(direct) > piper.sample_rate // 4
    faster = await _audio(cache, "You said:", speed=1.5)  # another setting is another phrase
    assert cache.misses == 2 and len(faster) < len(direct)
    assert cache.bytes == (len(first) + len(faster)) * 4


async def test_the_cache_stays_within_its_bound_and_evicts_the_least_recently_used(piper: PiperSynthesizer) -> None:
    one = (await _audio(piper, "Sorry.")).nbytes
    cache = PhraseCache(piper, max_bytes=int(2.5 * one))
    for text in ("Sorry.", "Okay.", "Sorry.", "Right.", "Sure."):
        await _audio(cache, text)
        assert cache.bytes <= 2.5 * one
    assert cache.evictions >= 1
    assert not cache.holds("Okay.")  # the least recently used went first ("Sorry." was said again since)
    hits = cache.hits
    await _audio(cache, "Sure.")  # the most recent stays
    assert cache.hits == hits + 1


async def test_long_and_interrupted_phrases_are_not_kept(piper: PiperSynthesizer) -> None:
    cache = PhraseCache(piper, max_bytes=4 << 20, max_chars=20)
    await _audio(cache, "This clause is much longer than twenty characters.")
    assert len(cache) == 0
    stream = cache.synthesize("Hello there.")
    async for _ in stream:
        break  # the caller interrupted the reply
    await stream.aclose()
    assert len(cache) == 0 and cache.bytes == 0
    with pytest.raises(ValueError):
        PhraseCache(piper, max_bytes=0)
    assert cache.device == piper.device == "cpu"  # /readyz still says where the voice runs
