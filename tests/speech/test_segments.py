"""Decode windows from VAD probabilities: pauses bridged, windows bounded, cut only where needed."""

from __future__ import annotations

from gateway.speech.segments import Window, decode_windows, speech_regions, widened

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


def test_windows_are_decoded_with_the_audio_around_their_speech() -> None:
    """Up to a second each side, never past the middle of a pause or the recording; the speech is kept."""
    s = RATE
    windows = widened([Window(s // 2, 3 * s), Window(4 * s, 10 * s), Window(20 * s, 25 * s)], 26 * s)
    assert windows[0] == Window(0, 3 * s + s // 2, s // 2, 3 * s)  # from 0; to the middle of the 1 s pause
    assert windows[1] == Window(3 * s + s // 2, 11 * s, 4 * s, 10 * s)  # one second after: the pause is long
    assert windows[2] == Window(19 * s, 26 * s, 20 * s, 25 * s)
    assert [w.seconds for w in windows] == [(0.5, 3.0), (4.0, 10.0), (20.0, 25.0)]
