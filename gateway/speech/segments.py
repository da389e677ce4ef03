"""Where the speech is in a long recording: silero-vad over the whole upload, cut into decodable windows.

Whisper decodes at most 30 s at a time, and a batch job must stay short so a live call's decode never
waits long behind it (a job is not pre-empted). The speech regions silero finds are grouped into windows
of at most :data:`MAX_WINDOW_SECONDS`, cut only at pauses; a region longer than that (speech without a
pause) is cut hard. Each window is one decode and one segment of ``verbose_json``/SRT/VTT, whose start
and end are those of the speech it holds. Each window is decoded with up to :data:`EDGE_SECONDS` of
the audio around its speech (cut in the middle of the pause to the next window), because tiny.en
decodes speech cut tight at its edges badly: ps_cards_004 ("five five") decoded from its padded speech
region gave "5, 5, 5, 5, 5, 5, 5, 5" and from the whole file "5"; over the 13 shared clips, tight
windows gave a corpus WER of 0.114 and widened ones 0.077 (the call path's: 0.073). The VAD runs
:data:`VAD_WINDOWS_PER_JOB` windows (2 s of audio, a few ms) per job, in the batch lane, so a call's VAD
never waits behind an hour of upload.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.base import SAMPLE_RATE, FloatArray, VoiceActivityDetector

MAX_WINDOW_SECONDS = 20.0
SPEECH_THRESHOLD = 0.5
MIN_PAUSE_SECONDS = 0.3  # shorter gaps join the regions around them
PAD_SECONDS = 0.2  # kept around each region: silero marks speech a little late and ends it a little early
VAD_WINDOWS_PER_JOB = 64
EDGE_SECONDS = 1.0  # of the audio around a window's speech, decoded with it


@dataclass(frozen=True)
class Window:
    start: int  # samples
    end: int
    speech_start: int = -1  # the speech inside [start, end) (-1: all of it)
    speech_end: int = -1

    @property
    def seconds(self) -> tuple[float, float]:
        """Where the window's speech starts and ends (seconds)."""
        start = self.start if self.speech_start < 0 else self.speech_start
        end = self.end if self.speech_end < 0 else self.speech_end
        return start / SAMPLE_RATE, end / SAMPLE_RATE


async def speech_probabilities(vad: VoiceActivityDetector, audio: FloatArray) -> list[float]:
    stream = vad.stream()
    size = stream.window_samples
    count = len(audio) // size
    windows = audio[: count * size].reshape(count, size) if count else np.zeros((0, size), np.float32)
    probabilities: list[float] = []
    for first in range(0, count, VAD_WINDOWS_PER_JOB):
        probabilities += await stream.probabilities(windows[first : first + VAD_WINDOWS_PER_JOB])
    return probabilities


def speech_regions(probabilities: list[float], window_samples: int, total: int) -> list[Window]:
    """Runs of speech, pauses shorter than :data:`MIN_PAUSE_SECONDS` bridged, padded, within ``total``."""
    regions: list[Window] = []
    start: int | None = None
    for index, probability in enumerate([*probabilities, 0.0]):
        if probability >= SPEECH_THRESHOLD and start is None:
            start = index
        elif probability < SPEECH_THRESHOLD and start is not None:
            regions.append(Window(start * window_samples, index * window_samples))
            start = None
    pad, pause = int(PAD_SECONDS * SAMPLE_RATE), int(MIN_PAUSE_SECONDS * SAMPLE_RATE)
    merged: list[Window] = []
    for region in regions:
        if merged and region.start - merged[-1].end < pause:
            merged[-1] = Window(merged[-1].start, region.end)
        else:
            merged.append(region)
    return [Window(max(0, r.start - pad), min(total, r.end + pad)) for r in merged]


def decode_windows(regions: list[Window], max_seconds: float = MAX_WINDOW_SECONDS) -> list[Window]:
    """``regions`` grouped into windows of at most ``max_seconds``, cut at pauses (or hard, within a region)."""
    limit = int(max_seconds * SAMPLE_RATE)
    windows: list[Window] = []
    for region in regions:
        if windows and region.end - windows[-1].start <= limit:
            windows[-1] = Window(windows[-1].start, region.end)
            continue
        for start in range(region.start, region.end, limit):
            windows.append(Window(start, min(region.end, start + limit)))
    return windows


def widened(windows: list[Window], total: int, edge_seconds: float = EDGE_SECONDS) -> list[Window]:
    """``windows`` with up to ``edge_seconds`` of audio on each side, never past the middle of the gap to a
    neighbour nor outside ``[0, total)``; the speech each held is kept as its ``speech_start``/``speech_end``."""
    edge = int(edge_seconds * SAMPLE_RATE)
    out: list[Window] = []
    for index, window in enumerate(windows):
        low = 0 if index == 0 else (windows[index - 1].end + window.start) // 2
        high = total if index == len(windows) - 1 else (window.end + windows[index + 1].start) // 2
        out.append(Window(max(low, window.start - edge), min(high, window.end + edge), window.start, window.end))
    return out


async def plan_windows(vad: VoiceActivityDetector, audio: FloatArray) -> list[Window]:
    probabilities = await speech_probabilities(vad, audio)
    regions = speech_regions(probabilities, vad.stream().window_samples, len(audio))
    return widened(decode_windows(regions), len(audio))
