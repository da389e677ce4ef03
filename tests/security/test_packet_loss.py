"""Packet loss and jitter on the caller's side: the call survives, transcripts degrade gracefully."""

from __future__ import annotations

import pytest

from benchmarks.loss import call_with_loss
from qa.netem import NetworkImpairment
from tests.support.speech import utterance

pytestmark = pytest.mark.slow

CLIPS = ["ps_goforward.wav", "timit_LDC93S1.wav", "ps_cards_005.wav"]


async def test_ten_percent_loss_and_jitter_keep_the_call_up_and_the_words_mostly_right(gateway_url: str) -> None:
    impairment = NetworkImpairment(loss=0.10, jitter_ms=20, delay_ms=20, direction="send", seed=7)
    result = await call_with_loss(gateway_url, impairment, [utterance(name) for name in CLIPS])
    assert result.survived
    assert 0.05 <= result.media_dropped / result.media_packets <= 0.15
    assert result.answered == len(CLIPS)  # every utterance got a reply
    assert result.wer <= 0.35, [(t.reference, t.transcript) for t in result.turns]
