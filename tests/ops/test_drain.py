"""Draining in-process: readiness, refusals, and calls closed with a notice when the drain times out."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.app.application import REGISTRY
from gateway.app.serve import drain
from gateway.config import EventsConfig, GatewayConfig, LimitsConfig
from qa.caller import Caller
from tests.support.ops import get_json, real_offer, scrape

pytestmark = pytest.mark.slow


@pytest.fixture
def gateway_config() -> GatewayConfig:
    return GatewayConfig(events=EventsConfig(file=""), limits=LimitsConfig(max_calls=1))


async def test_draining_refuses_new_calls_and_closes_the_live_ones_with_a_notice(
        gateway_server: TestServer, gateway_url: str, caller: Caller) -> None:
    await caller.wait_event("session.created")
    status, body = await get_json(gateway_url, "/readyz")
    assert (status, body["reason"], body["headroom_calls"]) == (503, "at_capacity", 0)
    registry = gateway_server.app[REGISTRY]
    registry.draining = True

    status, body = await get_json(gateway_url, "/readyz")
    assert (status, body["reason"]) == (503, "draining")
    assert (await get_json(gateway_url, "/healthz"))[0] == 200
    async with aiohttp.ClientSession() as http, http.post(
            gateway_url + "/v1/realtime/calls", data=await real_offer(),
            headers={"Content-Type": "application/sdp"}) as response:
        assert response.status == 503
        assert int(response.headers["Retry-After"]) > 0
        assert (await response.json())["error"]["code"] == "draining"

    await drain(registry, 0.2)  # the live call outlasts the drain period
    notice = await caller.wait_event("gateway.session.ended", timeout=5)
    assert notice["reason"] == "drain_timeout"
    assert len(registry) == 0
    metrics = await scrape(gateway_url)
    assert metrics.value("voice_gateway_calls_rejected_total", code="draining") == 1
    assert metrics.value("voice_gateway_calls_ended_total", reason="drain_timeout") == 1
