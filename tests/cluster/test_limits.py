"""Per-client call limits counted across instances, and what a Redis outage does to them."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from gateway.app.application import create_app
from gateway.app.keys import REGISTRY
from gateway.voice.engines import Engines
from qa.caller import Caller
from signaling.paths import CALLS_PATH
from tests.cluster.conftest import API_KEY, Instance, MakeInstances, RedisServer, bearer, cluster_config
from tests.support.ops import free_port, get_json, real_offer, scrape

SDP = {**bearer(API_KEY), "Content-Type": "application/sdp"}


async def place(http: aiohttp.ClientSession, instance: Instance, offer: str) -> tuple[int, str, str]:
    """(status, error code or "", Location) of one call placed on ``instance``."""
    async with http.post(instance.url + CALLS_PATH, data=offer, headers=SDP) as response:
        code = "" if response.status == 201 else (await response.json())["error"]["code"]
        return response.status, code, response.headers.get("Location", "")


async def test_calls_per_client_are_counted_in_the_whole_cluster(make_instances: MakeInstances) -> None:
    a, b, c = await make_instances("a", "b", "c", max_calls_per_client=2)
    offer = await real_offer()
    async with aiohttp.ClientSession() as http:
        first = await place(http, a, offer)
        second = await place(http, b, offer)
        assert first[0] == second[0] == 201
        assert await place(http, c, offer) == (429, "too_many_calls", "")
        assert (await place(http, a, offer))[1] == "too_many_calls"
        async with http.delete(c.url + first[2], headers=bearer(API_KEY)) as response:  # forwarded to a
            assert response.status == 204
        assert (await place(http, c, offer))[0] == 201  # the slot a's call held is free in the whole cluster


async def test_pending_calls_per_client_are_counted_in_the_whole_cluster(make_instances: MakeInstances) -> None:
    a, b, c = await make_instances("a", "b", "c", max_calls_per_client=4, max_pending_calls_per_client=2)
    offer = await real_offer()  # its peer connection is closed: these calls never connect
    async with aiohttp.ClientSession() as http:
        assert (await place(http, a, offer))[0] == (await place(http, b, offer))[0] == 201
        assert (await place(http, c, offer))[1] == "too_many_pending_calls"


async def test_the_call_rate_per_client_is_one_bucket_for_the_cluster(make_instances: MakeInstances) -> None:
    a, b, c = await make_instances("a", "b", "c", calls_per_client_per_minute=6, call_burst_per_client=3,
                                   max_calls_per_client=0)
    async with aiohttp.ClientSession() as http:
        for instance in (a, b, c):  # bad offers take a token too
            assert (await place(http, instance, "v=0\r\n"))[0] == 400
        async with http.post(a.url + CALLS_PATH, data="v=0\r\n", headers=SDP) as response:
            assert response.status == 429 and (await response.json())["error"]["code"] == "rate_limited"
            assert 1 <= int(response.headers["Retry-After"]) <= 10


async def test_without_redis_new_calls_get_503_fast_live_calls_go_on_and_all_recovers(
        make_instances: MakeInstances, redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    a, b = await make_instances("a", "b", max_calls_per_client=4)
    offer = await real_offer()
    caller = Caller(a.url, token=API_KEY)
    await caller.connect()
    assert caller.location is not None
    call_id = caller.location.rsplit("/", 1)[1]
    try:
        async with aiohttp.ClientSession() as http:
            redis_server.stop()
            started = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="gateway.cluster.redis"):
                for instance in (a, b):
                    async with http.post(instance.url + CALLS_PATH, data=offer, headers=SDP) as response:
                        body = await response.json()
                        assert response.status == 503 and body["error"]["code"] == "cluster_unavailable", body
                        assert response.headers["Retry-After"] == "2"
                    async with http.post(instance.url + "/v1/realtime/client_secrets",
                                         headers=bearer(API_KEY)) as response:
                        assert response.status == 503
                        assert (await response.json())["error"]["code"] == "cluster_unavailable"
            assert time.monotonic() - started < 5  # within the command timeouts (0.5 s), never a hang
            assert any("Redis did not answer" in record.getMessage() for record in caplog.records)
            await until_ready(b, False)
            metrics = await scrape(b.url)
            assert metrics.value("voice_gateway_cluster_redis_failures_total") >= 2
            assert metrics.value("voice_gateway_cluster_reachable") == 0
            await spoken_reply(caller)  # the live call goes on without Redis
            redis_server.start()
            await until_ready(b, True)
            assert (await scrape(b.url)).value("voice_gateway_cluster_reachable") == 1
            assert (await place(http, b, offer))[0] == 201
            async with http.delete(b.url + caller.location, headers=bearer(API_KEY)) as response:
                assert response.status == 204  # the heartbeat wrote a's call again into the empty Redis
            assert not a.server.app[REGISTRY].has_call(call_id)
    finally:
        await caller.close()


async def spoken_reply(caller: Caller) -> None:
    since = time.monotonic()
    caller.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Still here."}]}})
    caller.send({"type": "response.create"})
    done = await caller.wait_event("response.done", since=since, timeout=30)
    assert done["response"]["status"] == "completed"
    assert caller.received.audible_seconds(since=since) > 0.3


async def until_ready(instance: Instance, ready: bool, within: float = 10.0,
                      reason: str = "cluster_unavailable") -> None:
    deadline = time.monotonic() + within
    while True:
        status, body = await get_json(instance.url, "/readyz")
        if (status == 200) == ready and (ready or body["reason"] == reason):
            return
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.1)


async def test_an_instance_whose_measured_load_refuses_calls_is_not_ready(engines: Engines, redis_url: str) -> None:
    port = free_port()
    config = cluster_config(redis_url, "busy", port)
    # Any lateness of the event loop counts as overload: the instance refuses calls from its measured load.
    config = dataclasses.replace(config, limits=dataclasses.replace(config.limits, max_loop_lag_ms=0.001))
    server = TestServer(create_app(config, engines=engines), host="127.0.0.1", port=port)
    await server.start_server()
    try:
        await until_ready(Instance("busy", server), False, reason="at_capacity")
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{port}" + CALLS_PATH, data=await real_offer(),
                                 headers=SDP) as response:
                assert response.status == 503 and (await response.json())["error"]["code"] == "capacity"
    finally:
        await server.close()


async def test_a_full_redis_refuses_new_calls_and_tokens_with_503_not_500(make_instances: MakeInstances,
                                                                           redis_url: str) -> None:
    (a,) = await make_instances("a", max_calls_per_client=4)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.config_set("maxmemory-policy", "noeviction")
        await client.config_set("maxmemory", "1")  # below what it already uses: every write is refused (OOM)
        async with aiohttp.ClientSession() as http:
            async with http.post(a.url + "/v1/realtime/client_secrets", headers=bearer(API_KEY)) as response:
                assert response.status == 503 and (await response.json())["error"]["code"] == "cluster_unavailable"
            status, code, _ = await place(http, a, await real_offer())
            assert (status, code) == (503, "cluster_unavailable")
        await client.config_set("maxmemory", "0")
        async with aiohttp.ClientSession() as http:
            assert (await place(http, a, await real_offer()))[0] == 201
    finally:
        await client.config_set("maxmemory", "0")
        await client.aclose()
