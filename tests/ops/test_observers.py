"""What the conversation tells its observer, with fake engines on the audio clock."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest

from engines.base import FloatArray
from gateway.config import GatewayConfig, TurnDetectionConfig
from gateway.ops.observers import TURN_STAGES, CallObserver, CompositeObserver, TurnLog, TurnReport
from gateway.protocol.session_settings import SessionSettings
from gateway.voice.conversation import Conversation
from gateway.voice.options import VoiceOptions
from media import OutboundAudioTrack
from tests.support.fakes import fake_engines, loud, quiet


class Recorder(CallObserver):
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def of(self, method: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.calls if name == method]

    def turn_completed(self, call_id: str, report: TurnReport) -> None:
        self.calls.append(("turn_completed", (call_id, report)))

    def barge_in(self, call_id: str, stop_s: float | None) -> None:
        self.calls.append(("barge_in", (call_id, stop_s)))

    def asr_finished(self, audio_s: float, compute_s: float) -> None:
        self.calls.append(("asr_finished", (audio_s, compute_s)))

    def tts_finished(self, audio_s: float, compute_s: float) -> None:
        self.calls.append(("tts_finished", (audio_s, compute_s)))


def conversation(observer: CallObserver, config: GatewayConfig | None = None) -> tuple[Conversation,
                                                                                         OutboundAudioTrack]:
    engines, _asr = fake_engines()
    track = OutboundAudioTrack()
    settings = SessionSettings.from_config(config or GatewayConfig(), engines.tts.voices)
    events: list[dict[str, Any]] = []
    return Conversation(call_id="rtc_test", engines=engines, track=track, send=events.append, settings=settings,
                        options=VoiceOptions(max_utterance_seconds=30, tts_ahead_seconds=60, partial_interval_ms=0),
                        observer=observer), track


async def feed(conv: Conversation, audio: FloatArray) -> None:
    for i in range(0, len(audio), 320):
        await conv.feed(audio[i : i + 320])
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_turn_is_reported_once_with_its_breakdown_and_a_barge_in_with_its_stop_time() -> None:
    recorder = Recorder()
    conv, track = conversation(recorder)
    await feed(conv, loud(1.0))
    await feed(conv, quiet(0.6))
    for _ in range(10):  # 200 ms of the reply is sent
        await track.recv()
    [(call_id, report)] = recorder.of("turn_completed")
    assert call_id == "rtc_test"
    assert set(report.latency_ms) == set(TURN_STAGES)
    assert all(report.latency_ms[stage] is not None for stage in TURN_STAGES)
    assert report.overhead_ms is not None and report.overhead_ms >= 0
    assert report.transcript.split() == ["word"] * 10
    assert "transcript" not in report.breakdown()  # user data stays out of events and metrics
    assert recorder.of("asr_finished") and recorder.of("tts_finished")

    await feed(conv, loud(0.7))  # the caller talks over the reply (seven words: a real interruption)
    await feed(conv, quiet(0.1))
    [(call_id, stop_s)] = recorder.of("barge_in")
    assert stop_s is not None and 0 <= stop_s < 0.5
    assert len(recorder.of("turn_completed")) == 1  # the interrupted reply's turn is not told twice
    await conv.close()


async def test_a_turn_without_a_reply_is_still_reported() -> None:
    recorder = Recorder()
    config = GatewayConfig(turn_detection=TurnDetectionConfig(create_response=False))
    conv, _track = conversation(recorder, config)
    await feed(conv, loud(0.5))
    await feed(conv, quiet(0.6))
    [(_call_id, report)] = recorder.of("turn_completed")
    assert report.response_id is None and report.overhead_ms is None
    assert report.latency_ms["asr_final"] is not None and report.latency_ms["first_packet_sent"] is None
    await conv.close()


def test_a_failing_observer_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(CallObserver):
        def error(self, call_id: str, code: str) -> None:
            raise RuntimeError("boom")

    class Counting(CallObserver):
        errors = 0

        def error(self, call_id: str, code: str) -> None:
            self.errors += 1

    counting = Counting()
    CompositeObserver([Broken(), counting]).error("rtc_1", "bad")
    assert counting.errors == 1
    assert "Broken failed in error" in caplog.text


REPORT = TurnReport(item_id="item_1", response_id="resp_1", speculative=True,
                    latency_ms=dict.fromkeys(TURN_STAGES, 100.0), overhead_ms=12.0, asr_compute_ms=50.0,
                    audio_ms=1500, transcript="my card number is 4242")


def test_the_turn_log_line_has_the_call_id_and_no_transcript_unless_enabled(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.ops.observers")
    TurnLog().turn_completed("rtc_abc", REPORT)
    TurnLog(log_transcripts=True).turn_completed("rtc_abc", dataclasses.replace(REPORT, item_id="item_2"))
    [hidden, shown] = [r.getMessage() for r in caplog.records]
    assert "rtc_abc" in hidden and "item_1" in hidden and "overhead 12 ms" in hidden
    assert "4242" not in hidden
    assert "4242" in shown
