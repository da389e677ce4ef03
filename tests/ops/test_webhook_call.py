"""A dead webhook endpoint costs events (counted), never the call."""

from __future__ import annotations

import asyncio

import pytest

from gateway.config import EventsConfig, GatewayConfig
from qa.caller import Caller
from tests.support.ops import free_port, scrape
from tests.support.speech import utterance

pytestmark = pytest.mark.slow


@pytest.fixture
def gateway_config() -> GatewayConfig:
    dead = f"http://127.0.0.1:{free_port()}/hook"
    return GatewayConfig(events=EventsConfig(file="", webhook_url=dead, webhook_retries=1))


async def test_a_dead_webhook_loses_events_but_not_the_call(caller: Caller, gateway_url: str) -> None:
    clip = utterance("ps_cards_001.wav")
    _, speech_end = await caller.say(clip.audio(), 16_000)
    done = await caller.wait_event("response.done", since=speech_end, timeout=60)
    assert done["response"]["status"] == "completed"
    assert caller.events_of("gateway.turn.metrics")
    assert caller.received.audible_seconds(since=speech_end) >= 0.5
    await caller.hangup()

    for _ in range(200):  # call.started, turn.completed and call.ended: each tried twice, then dropped
        metrics = await scrape(gateway_url)
        if metrics.value("voice_gateway_lifecycle_events_dropped_total", sink="webhook") >= 3:
            break
        await asyncio.sleep(0.05)
    assert metrics.value("voice_gateway_lifecycle_events_dropped_total", sink="webhook") == 3
    assert metrics.value("voice_gateway_lifecycle_event_retries_total", sink="webhook") == 3
    assert metrics.value("voice_gateway_calls_ended_total", reason="hangup") == 1
