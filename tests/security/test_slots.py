"""Call slots: an address whose calls never connect cannot fill the gateway, and every call frees its slot.

Finding 7 of the security review: a call whose ICE never completes held a slot for 30 s, and one
address could hold 8 of the 16, so two addresses posting offers they never connect filled the
gateway. Now such calls are *pending* — at most ``limits.max_pending_calls_per_client`` (2) per
address, ``429 too_many_pending_calls`` beyond — for ``limits.ice_timeout_seconds`` (10 s); and
one address holds at most a quarter of ``limits.max_calls``. Everything here goes through the
real HTTP and WebRTC paths: a second client is a second loopback address (127.0.0.2).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from gateway.config import LimitsConfig
from tests.security.support import Gateway, call_id, running_gateway
from tests.support.fakes import fake_engines
from tests.support.ops import real_offer

CALLS = "/v1/realtime/calls"
OTHER_CLIENT = "127.0.0.2"  # loopback too: all of 127.0.0.0/8 reaches the gateway on 127.0.0.1


@dataclass
class Placed:
    status: int
    code: str
    retry_after: str | None
    location: str
    answer: str


async def place(url: str, offer: str, *, source: str = "127.0.0.1") -> Placed:
    """POST ``offer`` from the local address ``source`` (the client the gateway sees)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as http, http.post(
            url + CALLS, data=offer, headers={"Content-Type": "application/sdp"}) as response:
        text = await response.text()
        code = (await response.json())["error"]["code"] if response.status >= 400 else ""
        return Placed(response.status, code, response.headers.get("Retry-After"),
                      response.headers.get("Location", ""), text)


@contextlib.asynccontextmanager
async def connected_call(gateway: Gateway, *, source: str = "127.0.0.1") -> AsyncIterator[tuple[Placed, float]]:
    """A call whose peer completes ICE and DTLS: (what the POST got, seconds from the answer until the
    gateway's side of the call was connected)."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    pc.createDataChannel("oai-events")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        placed = await place(gateway.url, pc.localDescription.sdp, source=source)
        assert placed.status == 201, (placed.status, placed.code)
        answered = time.monotonic()
        await pc.setRemoteDescription(RTCSessionDescription(placed.answer, "answer"))
        async with asyncio.timeout(5):
            while not gateway.registry.is_connected(call_id(placed.location)):  # noqa: ASYNC110 - no event for it
                await asyncio.sleep(0.005)
        yield placed, time.monotonic() - answered
    finally:
        await pc.close()


async def test_an_address_that_never_connects_holds_two_pending_slots_for_10_s_and_others_still_get_calls() -> None:
    limits = LimitsConfig()
    assert (limits.max_pending_calls_per_client, limits.ice_timeout_seconds) == (2, 10.0)  # the defaults tested
    async with running_gateway(fake_engines()[0]) as gateway:
        dead = await real_offer()  # its peer is gone: its candidates point to closed loopback ports
        first, second = await place(gateway.url, dead), await place(gateway.url, dead)
        placed_at = time.monotonic()
        assert (first.status, second.status) == (201, 201)
        refused = [await place(gateway.url, dead) for _ in range(5)]
        assert {(r.status, r.code, r.retry_after) for r in refused} == {(429, "too_many_pending_calls", "2")}
        assert len(gateway.registry) == 2  # the refused offers made no call

        async with connected_call(gateway, source=OTHER_CLIENT) as (_, connect_s):  # another address gets a call
            assert connect_s < 1.0  # aiortc on loopback: about 30 ms; the ICE window is 10 s

        pending = [call_id(first.location), call_id(second.location)]
        ends = [await gateway.ends.wait(c, timeout=limits.ice_timeout_seconds + 3) for c in pending]
        freed_after = [ended_at - placed_at for _, ended_at in ends]
        assert [reason for reason, _ in ends] == ["ice_timeout", "ice_timeout"]  # the ICE watchdog freed them
        assert all(10.0 - 0.2 <= s <= 10.0 + 0.6 for s in freed_after), freed_after
        assert not any(gateway.registry.has_call(c) for c in pending)
        assert (await place(gateway.url, dead)).status == 201  # the address may place calls again


async def test_connected_calls_are_not_pending_but_one_address_holds_at_most_a_quarter_of_the_gateway() -> None:
    async with running_gateway(fake_engines()[0], max_calls=16) as gateway, contextlib.AsyncExitStack() as calls:
        for _ in range(4):  # more than 2: each connects before the next is placed
            await calls.enter_async_context(connected_call(gateway))
        assert len(gateway.registry) == 4
        refused = await place(gateway.url, await real_offer())
        assert (refused.status, refused.code) == (429, "too_many_calls")  # 4 = 16 // 4
        async with connected_call(gateway, source=OTHER_CLIENT):
            assert len(gateway.registry) == 5


async def test_a_call_whose_close_fails_still_frees_its_slot_in_the_registry(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_gateway(fake_engines()[0], max_calls=1) as gateway:
        placed = await place(gateway.url, await real_offer())
        assert placed.status == 201
        assert (await place(gateway.url, await real_offer())).code == "capacity"
        call = gateway.registry.get(call_id(placed.location))

        async def broken_close() -> None:
            raise RuntimeError("the conversation could not close")

        monkeypatch.setattr(call.conversation, "close", broken_close)
        async with aiohttp.ClientSession() as http, http.delete(gateway.url + placed.location) as response:
            assert response.status == 500  # the hang-up failed ...
        assert len(gateway.registry) == 0 and not gateway.registry.has_call(call.id)  # ... and the slot is free
        assert call.transport.pc.connectionState == "closed"  # type: ignore[attr-defined]  # hung up too
        assert (await gateway.ends.wait(call.id, timeout=1))[0] == "hangup"
        assert (await place(gateway.url, await real_offer())).status == 201
