"""OutboundAudioTrack: pacing, playback position, clear() within one frame, one result per tag."""

from __future__ import annotations

import numpy as np
import pytest

from media.outbound import FRAME_SAMPLES, OutboundAudioTrack, PlayoutResult


class Recorder:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.results: list[PlayoutResult] = []

    @property
    def finished(self) -> list[tuple[str, int]]:
        return [(r.tag, r.played_samples) for r in self.results]

    def playback_started(self, tag: str, at: float) -> None:
        self.started.append(tag)

    def playback_finished(self, result: PlayoutResult) -> None:
        self.results.append(result)


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
    listener = Recorder()
    track = OutboundAudioTrack(listener)
    track.push("r1", tone(FRAME_SAMPLES * 50))
    await track.recv()
    await track.recv()
    dropped = track.clear()
    assert dropped == [PlayoutResult("r1", 2 * FRAME_SAMPLES, 0, interrupted=True)]
    assert listener.results == dropped  # reported to the listener too
    assert np.all((await track.recv()).to_ndarray() == 0)
    assert track.buffered_seconds == 0
    assert track.playing_tags == 0


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


async def test_opus_mode_sends_decodable_packets_and_reuses_the_settled_silence_packet() -> None:
    import av

    from media.opus import SETTLE_FRAMES

    listener = Recorder()
    track = OutboundAudioTrack(listener)
    track.send_opus_packets()
    samples = (np.sin(np.arange(FRAME_SAMPLES * 10) * 2 * np.pi * 440 / 48000) * 8000).astype(np.int16)
    track.push("r1", samples)
    track.finish("r1")
    packets = [await track.recv() for _ in range(10 + SETTLE_FRAMES + 3)]
    assert [p.pts for p in packets] == [i * FRAME_SAMPLES for i in range(len(packets))]
    assert listener.finished == [("r1", len(samples))]
    silent = [bytes(p) for p in packets[10:]]
    assert silent[SETTLE_FRAMES - 1] == silent[SETTLE_FRAMES] == silent[-1]  # settled: one packet reused

    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate, decoder.layout, decoder.format = 48000, "mono", "s16"
    decoded = np.concatenate([f.to_ndarray().reshape(-1) for p in packets for f in decoder.decode(p)])
    tone_rms = np.sqrt(np.mean(decoded[FRAME_SAMPLES : 9 * FRAME_SAMPLES].astype(np.float64) ** 2))
    assert 4000 < tone_rms < 7000  # the sine's RMS is 8000 / sqrt(2) ≈ 5657
    assert np.abs(decoded[-3 * FRAME_SAMPLES :]).max() < 50


def test_the_negotiated_audio_codec_is_read_from_the_answer() -> None:
    from media.opus import negotiated_audio_codec

    sdp = ("v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=rtpmap:96 x/1\r\n"
           "m=audio 9 UDP/TLS/RTP/SAVPF 0 111\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n")
    assert negotiated_audio_codec(sdp) == "pcmu"
    assert negotiated_audio_codec(sdp.replace("SAVPF 0 111", "SAVPF 111 0")) == "opus"
    assert negotiated_audio_codec("v=0\r\n") is None


async def test_silence_in_the_middle_of_an_unfinished_tag_is_counted_as_underrun() -> None:
    listener = Recorder()
    track = OutboundAudioTrack(listener)
    track.push("r1", tone(FRAME_SAMPLES))
    await track.recv()
    await track.recv()  # r1 ran out before it was finished: the caller hears a gap
    await track.recv()
    track.push("r1", tone(FRAME_SAMPLES))
    track.finish("r1")
    await track.recv()
    await track.recv()  # finished: silence after the end is not an underrun
    assert listener.results == [PlayoutResult("r1", 2 * FRAME_SAMPLES, 2 * FRAME_SAMPLES, interrupted=False)]
    assert listener.results[0].played_ms == 40 and listener.results[0].underrun_ms == 40
    track.push("r2", tone(FRAME_SAMPLES * 3))
    await track.recv()
    track.clear()  # cut: nothing more is expected
    await track.recv()
    assert listener.results[1:] == [PlayoutResult("r2", FRAME_SAMPLES, 0, interrupted=True)]
    assert track.playing_tags == 0


async def test_a_tag_cut_while_its_audio_had_run_out_is_reported_with_its_underrun() -> None:
    listener = Recorder()
    track = OutboundAudioTrack(listener)
    track.push("r1", tone(FRAME_SAMPLES))
    for _ in range(3):  # one frame of audio, then two of silence: still synthesising
        await track.recv()
    assert track.clear() == [PlayoutResult("r1", FRAME_SAMPLES, 2 * FRAME_SAMPLES, interrupted=True)]
    track.finish("r1")  # a late finish() after the cut reports nothing was left to play
    assert listener.results[-1] == PlayoutResult("r1", 0, 0, interrupted=False)
    assert track.clear() == []  # each tag is reported once


async def test_finishing_a_tag_without_audio_reports_it_at_once() -> None:
    listener = Recorder()
    track = OutboundAudioTrack(listener)
    track.finish("r1")
    assert listener.results == [PlayoutResult("r1", 0, 0, interrupted=False)]
    assert listener.started == [] and track.playing_tags == 0


async def test_bookkeeping_is_released_when_each_result_is_reported() -> None:
    listener = Recorder()
    track = OutboundAudioTrack(listener)
    for i in range(50):  # many replies, each played to its end: nothing per tag is kept
        track.push(f"r{i}", tone(FRAME_SAMPLES // 2))
        track.finish(f"r{i}")
        await track.recv()
    assert track.playing_tags == 0
    assert [r.tag for r in listener.results] == [f"r{i}" for i in range(50)]
    assert all(r.played_samples == FRAME_SAMPLES // 2 and not r.interrupted for r in listener.results)


def test_a_playout_result_cannot_be_negative() -> None:
    with pytest.raises(ValueError):
        PlayoutResult("r1", -1, 0, interrupted=False)
