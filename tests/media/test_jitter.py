"""The audio jitter buffer extension: prefetch depth and lost packets."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiortc import rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from media.jitter import (
    AIORTC_DEFAULT_PREFETCH,
    AudioPrefetchJitterBuffer,
    audio_prefetch,
    missing_internals,
    set_audio_prefetch,
)


def packet(seq: int) -> RtpPacket:
    p = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960)
    p._data = bytes([seq % 256])  # type: ignore[attr-defined]  # what the receiver sets after depayloading
    return p


def feed(buffer: AudioPrefetchJitterBuffer, seqs: list[int]) -> list[int | None]:
    out = []
    for seq in seqs:
        _, frame = buffer.add(packet(seq))
        out.append(None if frame is None else frame.timestamp // 960)
    return out


def test_set_audio_prefetch_installs_the_subclass_in_aiortc() -> None:
    previous = audio_prefetch()
    set_audio_prefetch(1)
    try:
        assert rtcrtpreceiver.JitterBuffer is AudioPrefetchJitterBuffer
        buffer = rtcrtpreceiver.JitterBuffer(capacity=16, prefetch=4)
        assert feed(buffer, [0, 1, 2, 3]) == [None, 0, 1, 2]  # one frame of delay, not four
    finally:
        set_audio_prefetch(previous)


def test_a_lost_packet_costs_one_gap_and_no_lasting_delay() -> None:
    previous = audio_prefetch()
    set_audio_prefetch(1)
    try:
        buffer = AudioPrefetchJitterBuffer(capacity=16, prefetch=4)
        out = feed(buffer, [0, 1, 2, 4, 5, 6, 7])  # packet 3 never arrives
        assert out == [None, 0, 1, 2, 4, 5, 6]  # no stall, no lasting delay
    finally:
        set_audio_prefetch(previous)


def test_a_reordered_packet_within_the_prefetch_is_not_lost() -> None:
    previous = audio_prefetch()
    set_audio_prefetch(2)
    try:
        buffer = AudioPrefetchJitterBuffer(capacity=16, prefetch=4)
        out = feed(buffer, [0, 1, 2, 4, 3, 5, 6])
        assert [f for f in out if f is not None] == [0, 1, 2, 3, 4]
    finally:
        set_audio_prefetch(previous)


def test_a_burst_of_losses_is_skipped_in_one_step() -> None:
    previous = audio_prefetch()
    set_audio_prefetch(1)
    try:
        buffer = AudioPrefetchJitterBuffer(capacity=16, prefetch=4)
        assert feed(buffer, [0, 1, 2, 6, 7, 8]) == [None, 0, 1, 2, 6, 7]
    finally:
        set_audio_prefetch(previous)


def test_the_installed_aiortc_has_what_the_subclass_relies_on() -> None:
    assert missing_internals() == []


def _without_prefetch_field(monkeypatch: pytest.MonkeyPatch) -> None:
    original = JitterBuffer.__init__

    def init(self: JitterBuffer, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        del self._prefetch  # an aiortc that renamed it

    monkeypatch.setattr(JitterBuffer, "__init__", init)


def _without_remove(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(JitterBuffer, "remove")


@pytest.mark.parametrize(("change", "missing"), [(_without_prefetch_field, "_prefetch"), (_without_remove, "remove")])
def test_an_aiortc_without_those_internals_keeps_its_own_buffer_with_a_warning(
        change: Any, missing: str, caplog: pytest.LogCaptureFixture) -> None:
    previous = audio_prefetch()
    try:
        with pytest.MonkeyPatch.context() as patch:
            change(patch)
            with caplog.at_level(logging.WARNING, logger="media.jitter"):
                assert set_audio_prefetch(1) is False  # no crash
            assert rtcrtpreceiver.JitterBuffer is JitterBuffer  # aiortc's own
            assert audio_prefetch() == AIORTC_DEFAULT_PREFETCH
            assert missing_internals() == [missing]
        assert any(missing in r.getMessage() and "keeping aiortc's own buffer" in r.getMessage()
                   for r in caplog.records)
        assert set_audio_prefetch(1) is True  # aiortc as installed again: the subclass is back
        assert rtcrtpreceiver.JitterBuffer is AudioPrefetchJitterBuffer
    finally:
        set_audio_prefetch(previous)
