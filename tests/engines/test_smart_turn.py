"""Smart Turn v3.2 from the pipecat-ai wheel, on real speech."""

from __future__ import annotations

import numpy as np
import pytest

from engines.smart_turn import FRAMES, N_MELS, SmartTurn, log_mel_features
from tests.support.speech import utterance


@pytest.fixture(scope="module")
def model() -> SmartTurn:
    return SmartTurn()


def test_features_are_80_mels_by_800_frames_of_the_last_8_seconds() -> None:
    short = log_mel_features(np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32))
    assert short.shape == (N_MELS, FRAMES) and short.dtype == np.float32
    assert np.ptp(short[:, 10:600], axis=1).max() < 1e-4  # seven seconds of padding in front: constant in time
    long = np.random.default_rng(1).normal(0, 0.1, 16000 * 10).astype(np.float32)
    assert np.array_equal(log_mel_features(long), log_mel_features(long[-16000 * 8 :]))


async def test_a_finished_sentence_is_complete_and_a_list_cut_after_one_comma_is_not(model: SmartTurn) -> None:
    silence = np.zeros(3200, np.float32)
    cards = utterance("ps_cards_001.wav").audio()  # "ten of clubs"
    finished = await model.predict(np.concatenate([cards, silence]))
    counting = utterance("uberi_english.wav").audio()  # "One, [pause] two, [pause] three."
    unfinished = await model.predict(np.concatenate([counting[: int(0.84 * 16000)], silence]))
    assert finished.probability > 0.8
    assert unfinished.probability < 0.5
    assert 0 < finished.compute_seconds < 5
