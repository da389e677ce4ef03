"""PCM helpers."""

from __future__ import annotations

import numpy as np

from media.pcm import trim_leading_silence


def test_leading_near_silence_is_trimmed_to_a_5_ms_margin() -> None:
    quiet = np.full(4800, 3, np.int16)  # 100 ms at -80 dBFS
    speech = np.full(960, 2000, np.int16)
    trimmed = trim_leading_silence(np.concatenate([quiet, speech]), 48000)
    assert len(trimmed) == 240 + 960 and np.all(trimmed[240:] == 2000)


def test_silence_only_and_loud_starts_are_left_alone() -> None:
    silence = np.zeros(960, np.int16)
    assert trim_leading_silence(silence, 48000) is silence
    loud = np.full(960, 5000, np.int16)
    assert len(trim_leading_silence(loud, 48000)) == 960
