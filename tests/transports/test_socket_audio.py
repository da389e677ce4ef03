"""SocketAudio: the paced output of socket transports — lead, order of reports, clear, the wire rate."""

from __future__ import annotations

import asyncio
import itertools
import time

import numpy as np

from gateway.transports.socket_audio import SocketAudio, SocketAudioOptions
from media.outbound import PlayoutResult


class Listener:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[PlayoutResult] = []

    def playback_started(self, tag: str, at: float) -> None:
        self.started.append(tag)

    def playback_finished(self, result: PlayoutResult) -> None:
        self.finished.append(result)


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(48_000 * seconds)) / 48_000
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)


async def test_audio_leaves_a_little_ahead_of_real_time_and_the_end_follows_the_last_frame() -> None:
    order: list[str] = []
    audio = SocketAudio(24_000, SocketAudioOptions(lead_seconds=0.1),
                        before_finished=lambda result: order.append(f"done {result.tag}"))
    listener = Listener()
    audio.set_listener(listener)
    sent: list[tuple[float, int]] = []

    def send(tag: str, samples: np.ndarray) -> None:
        assert tag == "resp_1" and samples.dtype == np.int16
        sent.append((time.monotonic(), len(samples)))
        order.append("frame")

    audio.push("resp_1", tone(0.6))
    audio.finish("resp_1")
    start = time.monotonic()
    runner = asyncio.create_task(audio.run(send))
    while not listener.finished:  # noqa: ASYNC110 - the track reports on the media clock
        await asyncio.sleep(0.01)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    total = sum(n for _, n in sent)
    assert abs(total - 0.6 * 24_000) <= 24_000 * 0.002  # converted to 24 kHz (the resampler holds ~1 ms back)
    # At the start the lead goes out at once (5 frames + the first), then 20 ms a frame.
    first = sent[0][0]
    early = sum(n for at, n in sent if at - first < 0.01)
    assert 0.1 * 24_000 <= early <= 0.14 * 24_000, early
    assert sent[-1][0] - first >= 0.6 - 0.1 - 0.05
    assert first - start < 0.5
    assert order[-1] == "done resp_1" and order[:-1] == ["frame"] * len(sent)
    assert listener.started == ["resp_1"] and not listener.finished[0].interrupted


async def test_clear_stops_the_audio_at_once_and_reports_the_interruption() -> None:
    audio = SocketAudio(8_000, SocketAudioOptions(lead_seconds=0.0))
    listener = Listener()
    audio.set_listener(listener)
    frames: list[int] = []
    audio.push("resp_2", tone(2.0))
    runner = asyncio.create_task(audio.run(lambda tag, samples: frames.append(len(samples))))
    await asyncio.sleep(0.3)
    results = audio.clear()
    count = len(frames)
    await asyncio.sleep(0.2)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert len(frames) == count  # nothing after clear()
    assert results[0].interrupted and listener.finished == results
    assert 0.2 <= results[0].played_samples / 48_000 <= 0.45
    assert all(n <= 161 for n in frames)  # 20 ms at 8 kHz a frame


async def test_replayed_frames_go_first_once_resumed_and_the_taps_hear_them_again() -> None:
    audio = SocketAudio(8_000, SocketAudioOptions(lead_seconds=0.0, max_replay_frames=3))
    sent: list[tuple[str, int, float]] = []
    tapped: list[int] = []
    audio.add_tap(lambda samples: tapped.append(int(samples[0])))
    audio.push("resp_3", tone(1.0))
    audio.pause()
    marker = np.full(960, 7, np.int16)
    audio.replay([("resp_3", np.full(160, i, np.int16), marker) for i in range(5)])  # 2 over the bound
    assert audio.replay_dropped == 2 and audio.replay_pending("resp_3") == 480
    runner = asyncio.create_task(audio.run(lambda tag, wire: sent.append((tag, int(wire[0]), audio.scheduled_end))))
    await asyncio.sleep(0.1)
    assert not sent  # paused: nothing, replayed frames included
    audio.resume()
    await asyncio.sleep(0.15)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert [value for _, value, _ in sent[:3]] == [0, 1, 2] and len(sent) > 3  # the replay, then the track
    assert tapped.count(7) == 3 and audio.replay_pending("resp_3") == 0
    ends = [end for _, _, end in sent]
    assert all(later > earlier for earlier, later in itertools.pairwise(ends))  # on the pacer's schedule
