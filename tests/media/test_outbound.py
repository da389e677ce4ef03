"""OutboundAudioTrack: pacing, playback position, clear() within one frame."""

from __future__ import annotations

import numpy as np

from media.outbound import FRAME_SAMPLES, OutboundAudioTrack


class Recorder:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[tuple[str, int]] = []

    def playback_started(self, tag: str, at: float) -> None:
        self.started.append(tag)

    def playback_finished(self, tag: str, played_samples: int) -> None:
        self.finished.append((tag, played_samples))


def tone(samples: int) -> np.ndarray:
    return np.full(samples, 1000, np.int16)


async def test_plays_queued_audio_then_silence_and_reports_position() -> None:
    listener = Recorder()
    track = OutboundAudioTrack(listener)
    track.push("r1", tone(FRAME_SAMPLES * 2 + 100))
    track.finish("r1")
    frames = [(await track.recv()).to_ndarray().reshape(-1) for _ in range(4)]
    assert all(np.all(f == 1000) for f in frames[:2])
    assert np.all(frames[2][:100] == 1000) and np.all(frames[2][100:] == 0)
    assert np.all(frames[3] == 0)
    assert listener.started == ["r1"]
    assert listener.finished == [("r1", FRAME_SAMPLES * 2 + 100)]
    assert frames[1].dtype == np.int16 and len(frames[1]) == FRAME_SAMPLES


async def test_clear_silences_the_next_frame_and_keeps_the_played_count() -> None:
    track = OutboundAudioTrack()
    track.push("r1", tone(FRAME_SAMPLES * 50))
    await track.recv()
    await track.recv()
    dropped = track.clear()
    assert dropped == {"r1": 2 * FRAME_SAMPLES}
    assert track.played_samples("r1") == 2 * FRAME_SAMPLES
    assert np.all((await track.recv()).to_ndarray() == 0)
    assert track.buffered_seconds == 0


async def test_frames_are_paced_at_20_ms() -> None:
    import time

    track = OutboundAudioTrack()
    await track.recv()
    started = time.perf_counter()
    for _ in range(10):
        frame = await track.recv()
    elapsed = time.perf_counter() - started
    assert frame.pts == 10 * FRAME_SAMPLES
    assert elapsed >= 0.19  # ten frames cannot come faster than real time
