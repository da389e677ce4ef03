"""A real call moves the metrics, publishes its lifecycle events and logs no transcript."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from gateway.config import EventsConfig, GatewayConfig
from gateway.ops.metrics import GatewayMetrics, bounded_label
from gateway.ops.observers import TURN_STAGES
from qa.caller import Caller
from tests.support.ops import Scrape, scrape
from tests.support.speech import utterance

pytestmark = pytest.mark.slow


@pytest.fixture
def events_path(tmp_path: Path) -> Path:
    return tmp_path / "events.jsonl"


@pytest.fixture
def gateway_config(events_path: Path) -> GatewayConfig:
    return GatewayConfig(events=EventsConfig(file=str(events_path)))


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def read_events(path: Path, count: int) -> list[dict[str, object]]:
    for _ in range(200):  # the sink writes in the background: up to 10 s
        lines = await asyncio.to_thread(read_lines, path)
        if len(lines) >= count:
            return [json.loads(line) for line in lines]
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} events in {path}")


async def test_a_real_call_moves_the_metrics_and_publishes_its_lifecycle(
        caller: Caller, gateway_url: str, events_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    before = await scrape(gateway_url)
    assert before.value("voice_gateway_active_calls") == 1
    assert before.value("voice_gateway_calls_started_total") == 1
    assert before.value("voice_gateway_turns_total") == 0

    clip = utterance("ps_goforward.wav")
    _, speech_end = await caller.say(clip.audio(), 16_000)
    done = await caller.wait_event("response.done", since=speech_end, timeout=60)
    assert done["response"]["status"] == "completed"
    user = await caller.wait_event("conversation.item.input_audio_transcription.completed")

    after = await scrape(gateway_url)
    assert after.value("voice_gateway_turns_total") == 1
    for stage in TURN_STAGES:
        assert after.value("voice_gateway_turn_latency_seconds_count", stage=stage) == 1, stage
    assert after.value("voice_gateway_turn_overhead_seconds_count") == 1
    assert 0 < after.value("voice_gateway_turn_latency_seconds_sum", stage="first_packet_sent") < 10
    assert after.value("voice_gateway_asr_real_time_factor_count") >= 1
    assert after.value("voice_gateway_tts_real_time_factor_count") >= 1
    assert after.value("voice_gateway_event_loop_lag_seconds_count") > before.value(
        "voice_gateway_event_loop_lag_seconds_count")
    assert after.has("voice_gateway_engine_queue_depth", engine="asr")
    assert after.has("voice_gateway_engine_queue_depth", engine="tts")
    assert "rtc_" not in after.text  # no call ids in labels

    await caller.hangup()
    ended = await scrape(gateway_url)
    assert ended.value("voice_gateway_active_calls") == 0
    assert ended.value("voice_gateway_calls_ended_total", reason="hangup") == 1
    assert ended.value("voice_gateway_call_duration_seconds_count") == 1

    started, turn, finished = await read_events(events_path, 3)
    call_id = started["call_id"]
    assert isinstance(call_id, str) and call_id.startswith("rtc_")
    assert [started["type"], turn["type"], finished["type"]] == ["call.started", "turn.completed", "call.ended"]
    assert turn["call_id"] == finished["call_id"] == call_id
    assert turn["item_id"] == user["item_id"] and turn["response_id"] == done["response"]["id"]
    latency = turn["latency_ms"]
    assert isinstance(latency, dict) and set(latency) == set(TURN_STAGES)
    assert all(isinstance(latency[stage], float) for stage in TURN_STAGES)
    assert "transcript" not in turn
    assert finished["reason"] == "hangup" and finished["turns"] == 1
    assert isinstance(finished["duration_s"], float) and finished["duration_s"] > clip.duration

    # Transcripts are user data: neither what the caller said nor the reply is logged by default.
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert call_id in logged
    assert "go forward" not in logged.lower()
    assert user["transcript"].strip() not in logged


def test_labels_are_bounded_and_each_app_has_its_own_registry() -> None:
    assert bounded_label("drain_timeout") == "drain_timeout"
    assert bounded_label("rtc_" + "0" * 60) == "other"
    assert bounded_label("Weird Value!") == "other"
    one, two = GatewayMetrics(), GatewayMetrics()
    one.call_started("rtc_1")
    one.call_ended("rtc_1", "something the caller chose\n", 1.0, 0)
    assert Scrape(one.render().decode()).value("voice_gateway_calls_ended_total", reason="other") == 1
    assert Scrape(two.render().decode()).value("voice_gateway_calls_started_total") == 0
