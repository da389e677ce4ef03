"""pause() holds the reply at its exact sample; resume() goes on from there."""

from __future__ import annotations

import numpy as np

from media import OutboundAudioTrack
from media.outbound import FRAME_SAMPLES, PlayoutResult


class Results:
    def __init__(self) -> None:
        self.finished: list[PlayoutResult] = []

    def playback_started(self, tag: str, at: float) -> None:
        pass

    def playback_finished(self, result: PlayoutResult) -> None:
        self.finished.append(result)


def test_pause_sends_silence_from_the_next_frame_and_resume_continues_at_the_same_sample() -> None:
    results = Results()
    track = OutboundAudioTrack(results)
    ramp = np.arange(10 * FRAME_SAMPLES, dtype=np.int16)
    heard: list[np.ndarray] = []
    track.add_tap(heard.append)
    track.push("r", ramp)
    track.finish("r")
    sent = [track.next_frame()[1] for _ in range(3)]
    track.pause()
    assert all(track.next_frame()[1] is None for _ in range(5))  # five frames of silence, none of it counted
    assert track.played_samples("r") == 3 * FRAME_SAMPLES and track.paused
    track.resume()
    sent += [track.next_frame()[1] for _ in range(7)]
    audio = np.concatenate([frame for frame in sent if frame is not None])
    assert np.array_equal(audio, ramp)  # not a sample lost or repeated
    assert results.finished == [PlayoutResult("r", 10 * FRAME_SAMPLES, 0, interrupted=False)]
    assert len(heard) == 15 and not heard[3].any()  # the tap heard every frame, the pause as silence


def test_clear_while_paused_reports_what_was_played_and_unpauses() -> None:
    results = Results()
    track = OutboundAudioTrack(results)
    track.push("r", np.ones(4 * FRAME_SAMPLES, np.int16))
    track.next_frame()
    track.pause()
    track.next_frame()
    assert track.clear() == [PlayoutResult("r", FRAME_SAMPLES, 0, interrupted=True)]
    assert not track.paused
