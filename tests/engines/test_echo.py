"""The echo canceller on real speech: a caller's microphone that hears the gateway's reply."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from engines.echo import EchoCanceller
from tests.support.speech import utterance

RATE = 16_000


def speakerphone(reply: npt.NDArray[np.float32], delay_ms: int, gain_db: float,
                 seed: int = 0) -> npt.NDArray[np.float64]:
    """The reply as the microphone picks it up: delayed, band-limited, attenuated, with line noise."""
    delayed = np.concatenate([np.zeros(delay_ms * RATE // 1000), reply])[: len(reply)]
    filtered = np.convolve(delayed, [0.25, 0.5, 0.25, -0.35, -0.15])[: len(reply)]
    filtered *= 10 ** (gain_db / 20) / (np.sqrt(np.mean(filtered**2)) / np.sqrt(np.mean(reply**2)))
    return filtered + np.random.default_rng(seed).normal(0, 0.002, len(reply))


def db(x: npt.NDArray[np.floating]) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2) + 1e-12))


@pytest.mark.parametrize(("delay_ms", "gain_db"), [(60, -6.0), (120, -6.0), (90, -12.0)])
def test_the_echo_is_removed_and_the_caller_talking_over_it_is_kept(delay_ms: int, gain_db: float) -> None:
    reply = utterance("realpython_harvard.wav").audio()[: 8 * RATE]
    talk = utterance("timit_LDC93S1.wav").audio()
    mic = speakerphone(reply, delay_ms, gain_db)
    mic[5 * RATE : 5 * RATE + len(talk)] += talk
    canceller = EchoCanceller()
    out = np.concatenate([canceller.process(mic[i : i + 320].astype(np.float32), reply[i : i + 320])
                          for i in range(0, len(reply) - 319, 320)])
    assert canceller.delay is not None and abs(canceller.delay - delay_ms * 16) <= 16
    echo_only = slice(2 * RATE, 4 * RATE)
    assert db(mic[echo_only]) - db(out[echo_only]) > 15  # echo return loss enhancement, dB
    spoken = slice(5 * RATE, 5 * RATE + len(talk))
    assert abs(db(out[spoken]) - db(talk)) < 2  # the caller's own voice passes


def test_a_caller_that_cancels_echo_itself_passes_untouched() -> None:
    reply = utterance("realpython_harvard.wav").audio()[: 4 * RATE]
    talk = np.zeros(len(reply), np.float32)
    talk[3 * RATE : 3 * RATE + 16000] = utterance("ps_cards_001.wav").audio()[:16000]  # after 0.8 s of reply speech
    canceller = EchoCanceller()
    out = np.concatenate([canceller.process(talk[i : i + 320], reply[i : i + 320])
                          for i in range(0, len(reply) - 319, 320)])
    assert canceller.estimated and not canceller.echo_present
    assert np.array_equal(out[3 * RATE : 4 * RATE - 320], talk[3 * RATE : 4 * RATE - 320])
