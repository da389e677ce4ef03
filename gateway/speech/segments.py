"""Where the speech is in a long recording: silero-vad over the whole upload, cut into decodable windows.

Whisper decodes at most 30 s at a time, and a batch job must stay short so a live call's decode never
waits long behind it (a job is not pre-empted). The speech regions silero finds are grouped into windows
of at most :data:`MAX_WINDOW_SECONDS`, cut only at pauses; a region longer than that (speech without a
pause) is cut hard. Each window is one decode and one segment of ``verbose_json``/SRT/VTT, whose start
and end are those of the speech it holds. The VAD runs :data:`VAD_WINDOWS_PER_JOB` windows (2 s of audio,
a few ms) per job, in the batch lane, so a call's VAD never waits behind an hour of upload.
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


@dataclass(frozen=True)
class Window:
    start: int  # samples
    end: int

    @property
    def seconds(self) -> tuple[float, float]:
        return self.start / SAMPLE_RATE, self.end / SAMPLE_RATE


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


async def plan_windows(vad: VoiceActivityDetector, audio: FloatArray) -> list[Window]:
    probabilities = await speech_probabilities(vad, audio)
    return decode_windows(speech_regions(probabilities, vad.stream().window_samples, len(audio)))
