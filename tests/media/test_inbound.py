"""InboundAudioReader: the caller's audio, no faster than real time."""

from __future__ import annotations

import fractions

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.audio.frame import AudioFrame

from media.inbound import AudioTooFast, InboundAudioReader, RealTimeBudget


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Track(MediaStreamTrack):
    """20 ms frames at ``speed`` times real time on ``clock``, ``count`` of them."""

    kind = "audio"

    def __init__(self, clock: Clock, speed: float, count: int) -> None:
        super().__init__()
        self.clock, self.speed, self.count, self.sent = clock, speed, count, 0

    async def recv(self) -> AudioFrame:
        if self.sent == self.count:
            raise MediaStreamError
        self.clock.now += 0.02 / self.speed
        frame = AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48_000, self.sent * 960, fractions.Fraction(1, 48_000)
        self.sent += 1
        return frame


async def read(speed: float, count: int, budget: RealTimeBudget) -> tuple[InboundAudioReader, int]:
    clock = Clock()
    reader = InboundAudioReader(Track(clock, speed, count), budget=budget, label="call test", clock=clock)
    return reader, len([pcm async for pcm in reader])


async def test_real_time_audio_passes_whole() -> None:
    reader, frames = await read(1.0, 3000, RealTimeBudget())  # a minute
    assert frames == 3000 and reader.frames_dropped == 0


async def test_a_burst_within_the_lead_and_a_fast_clock_pass() -> None:
    reader, frames = await read(40.0, 49, RealTimeBudget(lead_seconds=1.0))  # ~1 s of backlog at once
    assert frames == 49 and reader.frames_dropped == 0
    reader, frames = await read(1.04, 15_000, RealTimeBudget())  # a sound card 4 % fast, for 5 minutes
    assert reader.frames_dropped == 0


async def test_audio_beyond_the_budget_is_dropped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    reader, frames = await read(10.0, 1000, RealTimeBudget(lead_seconds=1.0, max_dropped_seconds=0))  # 20 s in 2 s
    assert frames == reader.frames_received - reader.frames_dropped
    # one second of lead, then real time (+5 % drift) for the 2 s it took: about 3.1 s of the 20 s get through
    assert 150 <= frames <= 160
    assert reader.seconds_dropped == pytest.approx(reader.frames_dropped * 0.02)
    assert [r.getMessage() for r in caplog.records].count(
        "call test: audio arrives faster than real time (more than 1.0 s ahead); dropping the excess") == 1


async def test_a_caller_that_keeps_it_up_is_ended() -> None:
    with pytest.raises(AudioTooFast):
        await read(100.0, 10_000, RealTimeBudget(lead_seconds=1.0, max_dropped_seconds=5.0))


@pytest.mark.parametrize("kwargs", [{"lead_seconds": 0}, {"max_dropped_seconds": -1}, {"drift": 2}])
def test_the_budget_is_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RealTimeBudget(**kwargs)
