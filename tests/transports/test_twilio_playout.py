"""Where a pause's ``clear`` cut a Twilio playout: the split of the frames in flight, and TwilioAudio's pause states.

Timing-exact parts on their own (the frames' schedule is given, not measured); the whole call with the
simulated Twilio is in test_twilio_pause.py.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np

from gateway.transports.twilio_audio import StreamWriter, TwilioAudio
from gateway.transports.twilio_playout import MarksInFlight, PlayoutClock, SentFrame
from media.outbound import PlayoutResult


def frame(seq: int, play_end: float) -> SentFrame:
    return SentFrame(seq, "resp", seq * 960, np.zeros(160, np.int16), np.zeros(960, np.int16), play_end)


def test_the_sentinels_echo_less_the_measured_offset_is_when_the_clear_cut_the_playout() -> None:
    clock = PlayoutClock()
    assert clock.cut_at(10.5, cleared_at=10.2) == 10.2  # no echo yet: the pacer's model alone
    clock.echoed(frame(5, play_end=10.0), at=10.3)  # Twilio's buffer and the network: 0.3 s behind the model
    assert abs(clock.cut_at(10.5, cleared_at=10.2) - 10.2) < 1e-9
    assert clock.cut_at(None, cleared_at=10.2) == 10.2  # the sentinel never came back
    frames = [frame(seq, 10.0 + 0.02 * (seq - 5)) for seq in range(6, 12)]
    heard, dropped = MarksInFlight.split(frames, 10.05)
    assert [f.seq for f in heard] == [6, 7] and [f.seq for f in dropped] == [8, 9, 10, 11]


def test_marks_in_flight_are_bounded_and_echoed_in_order() -> None:
    marks = MarksInFlight(3)
    for seq in range(1, 6):
        marks.append(frame(seq, float(seq)))
    assert len(marks) == 3 and marks.dropped == 2
    assert [f.seq for f in marks.echoed_through(4)] == [3, 4] and marks.last_seq("resp") == 5


class Listener:
    def __init__(self) -> None:
        self.finished: list[PlayoutResult] = []

    def playback_started(self, tag: str, at: float) -> None:
        pass

    def playback_finished(self, result: PlayoutResult) -> None:
        self.finished.append(result)


async def _playing(seconds: float) -> tuple[TwilioAudio, list[dict[str, object]], list[asyncio.Task[None]]]:
    written: list[dict[str, object]] = []

    async def send(text: str) -> None:
        written.append(json.loads(text))

    writer = StreamWriter(send)
    audio = TwilioAudio(writer, "MZ1")
    audio.set_listener(Listener())
    audio.push("resp", np.full(48_000, 1000, np.int16))
    tasks = [asyncio.create_task(writer.run()), asyncio.create_task(audio.run())]
    await asyncio.sleep(seconds)
    return audio, written, tasks


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_pause_with_nothing_in_flight_sends_no_clear() -> None:
    written: list[str] = []

    async def send(text: str) -> None:
        written.append(text)

    audio = TwilioAudio(StreamWriter(send), "MZ1")
    audio.pause()
    assert audio.paused and audio.clears_sent == 0
    audio.resume()
    assert not audio.paused


async def test_a_pause_after_a_resume_that_waited_for_the_cut_stays_paused() -> None:
    audio, written, tasks = await _playing(0.15)
    try:
        audio.pause()
        await asyncio.sleep(0.01)
        events = [m["event"] for m in written]
        assert events[-2:] == ["clear", "mark"] and written[-1]["mark"] == {"name": "clear-1"}
        audio.resume()  # before the sentinel came back: it waits for the cut
        assert audio.paused
        audio.pause()  # speech again: that resume is off
        audio.mark_played("clear-1")  # the cut: nothing echoed before it, so the model's schedule decides
        assert audio.paused and audio.frames_resent >= 1
        sent = len(written)
        await asyncio.sleep(0.1)
        assert len(written) == sent  # still paused: nothing sent, not even the frames to send again
        audio.resume()
        await asyncio.sleep(0.1)
        assert not audio.paused and len(written) > sent
        assert audio.played_samples("resp") > 0 and audio.clears_sent == 1
    finally:
        await _stop(tasks)
