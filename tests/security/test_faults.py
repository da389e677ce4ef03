"""Faults: vanished callers, ICE that never completes, idle and over-long calls, models that fail to load."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiortc import RTCPeerConnection, RTCSessionDescription

from gateway.app.application import ENGINE_LOADING, create_app
from gateway.config import EventsConfig, GatewayConfig, LimitsConfig
from gateway.session import watchdog
from gateway.session.watchdog import CallWatchdog
from gateway.voice.engines import Engines
from qa.caller import Caller
from qa.netem import NetworkImpairment
from tests.security.support import call_id, running_gateway
from tests.support.fakes import fake_engines
from tests.support.ops import get_json, real_offer

CALLS = "/v1/realtime/calls"


async def listen_only_call(url: str) -> tuple[RTCPeerConnection, str]:
    """A caller with no microphone (``recvonly``): it sends no audio at all, only RTCP and events."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="recvonly")
    pc.createDataChannel("oai-events")
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http, http.post(
            url + CALLS, data=pc.localDescription.sdp, headers={"Content-Type": "application/sdp"}) as response:
        assert response.status == 201
        answer, location = await response.text(), response.headers["Location"]
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return pc, location


async def vanish(caller: Caller) -> float:
    """Cut ``caller`` off (its relay stops forwarding: a killed process, a dead link); returns when."""
    assert caller.relay is not None
    caller.relay.close()
    return time.monotonic()


async def test_with_the_default_limits_a_vanished_caller_is_freed_within_11_s_and_stalled_ice_within_10_s() -> None:
    """What docs/security.md says, measured with the default limits: each by its own watchdog."""
    limits = LimitsConfig()
    async with running_gateway(fake_engines()[0]) as gateway:
        gone = Caller(gateway.url, network=NetworkImpairment(delay_ms=1))  # its packets go through a relay
        await gone.connect()
        await gone.wait_event("session.created")
        await asyncio.sleep(1.0)
        async with aiohttp.ClientSession() as http, http.post(
                gateway.url + CALLS, data=await real_offer(), headers={"Content-Type": "application/sdp"}) as response:
            assert response.status == 201  # a peer that is gone: its ICE never completes
            stalled = call_id(response.headers["Location"])
        placed_at = time.monotonic()
        vanished_at = await vanish(gone)
        (stall_reason, stall_end), (gone_reason, gone_end) = await asyncio.gather(
            gateway.ends.wait(stalled, timeout=15), gateway.ends.wait(call_id(gone.location), timeout=15))
        assert stall_reason == "ice_timeout"  # the transport's ICE watchdog, not a failed connection
        assert limits.ice_timeout_seconds - 0.2 <= stall_end - placed_at <= limits.ice_timeout_seconds + 0.6
        assert gone_reason == "timeout"  # the call watchdog: no packet for limits.media_timeout_seconds
        assert limits.media_timeout_seconds - 0.2 <= gone_end - vanished_at <= 11.0, gone_end - vanished_at
        assert len(gateway.registry) == 0
        await gone.close()


async def test_a_vanished_caller_is_freed_with_reason_timeout_but_a_listening_one_is_not(engines: Engines) -> None:
    async with running_gateway(engines, media_timeout_seconds=2.5) as gateway:
        listener, listener_location = await listen_only_call(gateway.url)
        gone = Caller(gateway.url, network=NetworkImpairment(delay_ms=1))  # its packets go through a relay
        await gone.connect()
        await gone.wait_event("session.created")
        await asyncio.sleep(1.0)
        vanished_at = await vanish(gone)  # from now on nothing of the call reaches the gateway
        reason, ended_at = await gateway.ends.wait(call_id(gone.location), timeout=10)
        assert reason == "timeout"
        assert ended_at - vanished_at <= 2.5 + watchdog.TICK_SECONDS + 1.0
        await asyncio.sleep(1.0)
        # The caller without a microphone has been connected for over the media timeout: RTCP keeps it alive.
        assert gateway.registry.has_call(call_id(listener_location))
        assert len(gateway.registry) == 1
        await gone.close()
        await listener.close()
        reason, _ = await gateway.ends.wait(call_id(listener_location), timeout=5)
        assert reason == "connection_closed"


async def test_a_call_whose_ice_never_completes_is_freed(engines: Engines) -> None:
    async with running_gateway(engines, ice_timeout_seconds=2) as gateway:
        offer = await real_offer()  # the offering peer is gone: no ICE check will ever be answered
        async with aiohttp.ClientSession() as http, http.post(
                gateway.url + CALLS, data=offer, headers={"Content-Type": "application/sdp"}) as response:
            assert response.status == 201
            location = response.headers["Location"]
        placed_at = time.monotonic()
        reason, ended_at = await gateway.ends.wait(call_id(location), timeout=8)
        assert reason == "ice_timeout"  # the ICE watchdog's: aioice itself keeps trying for longer
        assert 2 - 0.1 <= ended_at - placed_at <= 2 + 0.6  # when the watchdog fires, not before
        assert len(gateway.registry) == 0


@pytest.mark.parametrize(("reason", "limits"), [
    ("idle_timeout", {"idle_timeout_seconds": 3, "max_call_seconds": 0}),
    ("max_duration", {"idle_timeout_seconds": 0, "max_call_seconds": 3}),
])
async def test_idle_and_over_long_calls_get_a_notice_then_end(engines: Engines, reason: str,
                                                              limits: dict[str, Any]) -> None:
    async with running_gateway(engines, end_notice_seconds=1.5, **limits) as gateway:
        caller = Caller(gateway.url)
        await caller.connect()
        try:
            expiring = await caller.wait_event("gateway.session.expiring", timeout=6)
            assert expiring["reason"] == reason and 0 < expiring["seconds_left"] <= 1.5
            ended = await caller.wait_event("gateway.session.ended", timeout=4)
            assert ended["reason"] == reason
            assert (await gateway.ends.wait(call_id(caller.location), timeout=5))[0] == reason
        finally:
            await caller.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_watchdog_counts_packets_only_once_connected_and_speech_resets_the_idle_limit() -> None:
    clock, packets = FakeClock(), [0]
    sent: list[dict[str, Any]] = []
    activity = [clock.now]

    async def packets_received() -> int:
        return packets[0]

    dog = CallWatchdog(LimitsConfig(media_timeout_seconds=10, idle_timeout_seconds=0, max_call_seconds=0),
                       call_id="rtc_x", packets_received=packets_received, last_activity=lambda: activity[0],
                       send=sent.append, close=lambda _reason: None, clock=clock)
    clock.now += 20
    assert await dog.check() is None  # not connected yet: that is the ICE watchdog's business
    dog.connected()
    for _ in range(3):  # packets keep coming: alive
        clock.now += 9
        packets[0] += 50
        assert await dog.check() is None
    clock.now += 9.9
    assert await dog.check() is None
    clock.now += 0.2
    assert await dog.check() == "timeout"

    sent.clear()
    dog = CallWatchdog(LimitsConfig(idle_timeout_seconds=60, end_notice_seconds=10, max_call_seconds=0),
                       call_id="rtc_y", packets_received=packets_received, last_activity=lambda: activity[0],
                       send=sent.append, close=lambda _reason: None, clock=clock)
    activity[0] = clock.now
    clock.now += 51
    assert await dog.check() is None
    assert [e["type"] for e in sent] == ["gateway.session.expiring"] and sent[0]["reason"] == "idle_timeout"
    activity[0] = clock.now  # the caller spoke
    clock.now += 51
    assert await dog.check() is None
    assert len(sent) == 2  # warned again for the new idle period
    clock.now += 9
    assert await dog.check() == "idle_timeout"


async def test_models_that_fail_to_load_leave_the_gateway_up_and_refusing_calls() -> None:
    def broken_loader(config: GatewayConfig) -> Engines:
        raise RuntimeError("the model file is corrupt")

    app = create_app(GatewayConfig(events=EventsConfig(file="")), engine_loader=broken_loader)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        await asyncio.wait_for(app[ENGINE_LOADING].done.wait(), 10)
        assert app[ENGINE_LOADING].error is not None
        assert await get_json(url, "/readyz") == (503, {"status": "unavailable", "reason": "engines_not_loaded"})
        for _ in range(3):  # still serving, every time
            async with aiohttp.ClientSession() as http, http.post(
                    url + CALLS, data=await real_offer(), headers={"Content-Type": "application/sdp"}) as response:
                assert response.status == 503
                assert response.headers["Retry-After"] == "5"
                assert json.loads(await response.text())["error"]["code"] == "engine_unavailable"
        assert (await get_json(url, "/healthz"))[0] == 200
    finally:
        await server.close()
