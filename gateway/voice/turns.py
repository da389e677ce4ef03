"""End-of-turn detection from VAD probabilities, on the audio clock.

The detector is fed one speech probability per VAD window with the window's
end time in milliseconds of caller audio. It is pure logic (no I/O, no wall
clock), so the timing rules can be tested exactly:

* speech starts at the first window whose probability reaches ``threshold``;
* speech continues while the probability stays at or above ``threshold - 0.15``;
* silence is measured from the end of the last speech window, not from the
  moment the probability dropped, so the VAD's own lag is not added on top;
* the first silent window announces a *pause* (the gateway starts its final
  transcription speculatively); speech before the silence lasts
  ``silence_duration_ms`` *resumes* the turn; otherwise the turn *ends*.

With ``semantic_vad`` the silence a pause needs is decided per pause: every pause starts
needing ``silence_duration_ms`` (there, the eagerness cap), and :meth:`TurnDetector.end_after`
shortens it once the end-of-turn model has judged the turn complete — ending it at once when the
silence is already that long.
"""

from __future__ import annotations

from dataclasses import dataclass

HYSTERESIS = 0.15


@dataclass(frozen=True)
class SpeechStarted:
    audio_start_ms: int


@dataclass(frozen=True)
class SpeechPaused:
    audio_end_ms: int


@dataclass(frozen=True)
class SpeechResumed:
    at_ms: int


@dataclass(frozen=True)
class TurnEnded:
    audio_start_ms: int
    audio_end_ms: int
    speech_ms: int


TurnEvent = SpeechStarted | SpeechPaused | SpeechResumed | TurnEnded


class TurnDetector:
    def __init__(self, *, threshold: float = 0.5, silence_duration_ms: int = 500) -> None:
        self.configure(threshold=threshold, silence_duration_ms=silence_duration_ms)
        self._speaking = False
        self._paused = False
        self._start_ms = 0
        self._last_speech_end_ms = 0
        self._speech_ms = 0

    def configure(self, *, threshold: float, silence_duration_ms: int) -> None:
        self.threshold = threshold
        self.silence_duration_ms = silence_duration_ms
        self._pause_silence_ms = silence_duration_ms

    @property
    def last_speech_end_ms(self) -> int:
        """Where the current pause began (the end of the last speech window)."""
        return self._last_speech_end_ms

    @property
    def paused(self) -> bool:
        """Inside a turn, in a pause that has not ended it yet."""
        return self._speaking and self._paused

    def end_after(self, silence_ms: int, now_ms: int) -> list[TurnEvent]:
        """The current pause ends the turn after ``silence_ms`` of silence (not the default); the turn's end, now,
        if the silence is already that long. Nothing when there is no pause."""
        if not self.paused:
            return []
        self._pause_silence_ms = silence_ms
        if now_ms - self._last_speech_end_ms >= silence_ms:
            return [self._end()]
        return []

    def _end(self) -> TurnEnded:
        self._speaking = self._paused = False
        return TurnEnded(self._start_ms, self._last_speech_end_ms, self._speech_ms)

    @property
    def speaking(self) -> bool:
        """Inside a turn (including a pause that may still resume)."""
        return self._speaking

    def reset(self) -> None:
        self._speaking = False
        self._paused = False

    def update(self, probability: float, window_start_ms: int, window_end_ms: int) -> list[TurnEvent]:
        events: list[TurnEvent] = []
        if not self._speaking:
            if probability >= self.threshold:
                self._speaking, self._paused = True, False
                self._start_ms = window_start_ms
                self._last_speech_end_ms = window_end_ms
                self._speech_ms = window_end_ms - window_start_ms
                events.append(SpeechStarted(window_start_ms))
            return events

        if self._paused:
            voiced = probability >= self.threshold
        else:
            voiced = probability >= self.threshold - HYSTERESIS
        if voiced:
            if self._paused:
                self._paused = False
                events.append(SpeechResumed(window_start_ms))
            self._last_speech_end_ms = window_end_ms
            self._speech_ms += window_end_ms - window_start_ms
            return events

        if not self._paused:
            self._paused = True
            self._pause_silence_ms = self.silence_duration_ms
            events.append(SpeechPaused(self._last_speech_end_ms))
        if window_end_ms - self._last_speech_end_ms >= self._pause_silence_ms:
            events.append(self._end())
        return events
