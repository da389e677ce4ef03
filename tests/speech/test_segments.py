"""Decode windows from VAD probabilities: pauses bridged, windows bounded, cut only where needed."""

from __future__ import annotations

from gateway.speech.segments import Window, decode_windows, speech_regions

W = 512  # samples per VAD window (32 ms)
RATE = 16_000


def _probabilities(pattern: list[tuple[float, float]]) -> list[float]:
    """(seconds, probability) runs as one probability per 32 ms window."""
    out: list[float] = []
    for seconds, probability in pattern:
        out += [probability] * round(seconds * RATE / W)
    return out


def test_short_pauses_join_and_regions_are_padded_within_the_audio() -> None:
    p = _probabilities([(1.0, 0.0), (1.0, 0.9), (0.2, 0.1), (1.0, 0.9), (2.0, 0.0), (1.0, 0.9)])
    regions = speech_regions(p, W, len(p) * W)
    assert len(regions) == 2  # the 0.2 s pause is bridged, the 2 s one is not
    first, second = regions
    assert abs(first.start / RATE - 0.8) < 0.05 and abs(first.end / RATE - 3.4) < 0.05
    assert second.end == len(p) * W  # padding stops at the end of the audio


def test_windows_group_regions_up_to_the_bound_and_cut_long_speech_hard() -> None:
    s = RATE
    regions = [Window(0, 5 * s), Window(6 * s, 12 * s), Window(13 * s, 25 * s), Window(26 * s, 76 * s)]
    windows = decode_windows(regions, max_seconds=20)
    assert windows[0] == Window(0, 12 * s)  # two regions in one window
    assert windows[1] == Window(13 * s, 25 * s)
    assert [w.end - w.start for w in windows[2:]] == [20 * s, 20 * s, 10 * s]  # 50 s of speech without a pause
    assert all(w.end - w.start <= 20 * s for w in windows)


def test_no_speech_no_windows() -> None:
    assert decode_windows(speech_regions([0.0] * 100, W, 100 * W)) == []
