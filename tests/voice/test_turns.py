"""TurnDetector timing rules, exact on the audio clock."""

from __future__ import annotations

from gateway.voice.turns import SpeechPaused, SpeechResumed, SpeechStarted, TurnDetector, TurnEnded, TurnEvent

WINDOW = 32


def run(detector: TurnDetector, probabilities: list[float], first: int = 0) -> list[tuple[int, TurnEvent]]:
    out = []
    for i, p in enumerate(probabilities, first):
        for event in detector.update(p, i * WINDOW, (i + 1) * WINDOW):
            out.append((i, event))
    return out


def test_turn_ends_after_silence_measured_from_the_last_speech_window() -> None:
    detector = TurnDetector(threshold=0.5, silence_duration_ms=500)
    probs = [0.0] * 3 + [0.9] * 10 + [0.0] * 20
    events = run(detector, probs)
    assert events[0] == (3, SpeechStarted(96))
    assert events[1] == (13, SpeechPaused(416))
    index, ended = events[2]
    assert ended == TurnEnded(audio_start_ms=96, audio_end_ms=416, speech_ms=320)
    # 16 silent windows = 512 ms >= 500 ms after the end of speech (416 ms).
    assert index == 13 + 15
    assert len(events) == 3


def test_hysteresis_keeps_speech_going_above_threshold_minus_015() -> None:
    detector = TurnDetector(threshold=0.5, silence_duration_ms=200)
    events = run(detector, [0.9, 0.4, 0.4, 0.4, 0.36, 0.9] + [0.0] * 10)
    kinds = [type(e) for _, e in events]
    assert kinds == [SpeechStarted, SpeechPaused, TurnEnded]
    assert events[-1][1].audio_end_ms == 6 * WINDOW


def test_speech_that_resumes_within_the_silence_continues_the_turn() -> None:
    detector = TurnDetector(threshold=0.5, silence_duration_ms=500)
    probs = [0.9] * 5 + [0.0] * 8 + [0.9] * 5 + [0.0] * 20
    events = run(detector, probs)
    kinds = [type(e) for _, e in events]
    assert kinds == [SpeechStarted, SpeechPaused, SpeechResumed, SpeechPaused, TurnEnded]
    ended = events[-1][1]
    assert isinstance(ended, TurnEnded)
    assert ended.audio_start_ms == 0 and ended.audio_end_ms == 18 * WINDOW
    assert ended.speech_ms == 10 * WINDOW


def test_resuming_after_a_pause_needs_the_full_threshold() -> None:
    detector = TurnDetector(threshold=0.5, silence_duration_ms=500)
    events = run(detector, [0.9] * 3 + [0.1] * 3 + [0.4] * 3 + [0.0] * 20)
    assert [type(e) for _, e in events] == [SpeechStarted, SpeechPaused, TurnEnded]


def test_configure_changes_the_silence_for_the_next_decision() -> None:
    detector = TurnDetector(threshold=0.5, silence_duration_ms=500)
    run(detector, [0.9] * 3)
    detector.configure(threshold=0.5, silence_duration_ms=100)
    events = [e for _, e in run(detector, [0.0] * 4, first=3)]
    assert any(isinstance(e, TurnEnded) for e in events)
