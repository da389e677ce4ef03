"""A gateway instance as its own process, killed with SIGKILL: what it wrote to Redis outlives it, and what it
held is forgotten one lease later."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from qa.caller import Caller
from signaling.paths import CALLS_PATH, CLIENT_SECRETS_PATH
from tests.cluster.conftest import API_KEY, INTERNAL_TOKEN, MakeInstances, bearer
from tests.support.ops import GatewayProcess, real_offer

pytestmark = pytest.mark.slow

STREAM = "voice-gateway:events"


@pytest.fixture
def process(tmp_path: Path, redis_url: str) -> Iterator[GatewayProcess]:
    env = {"VOICE_GATEWAY_AUTH_API_KEYS": API_KEY, "VOICE_GATEWAY_CLUSTER_REDIS_URL": redis_url,
           "VOICE_GATEWAY_CLUSTER_INTERNAL_TOKEN": INTERNAL_TOKEN, "VOICE_GATEWAY_CLUSTER_INSTANCE_ID": "p",
           "VOICE_GATEWAY_CLUSTER_HEARTBEAT_SECONDS": "0.2", "VOICE_GATEWAY_CLUSTER_LEASE_SECONDS": "1",
           "VOICE_GATEWAY_EVENTS_REDIS_STREAM": STREAM, "VOICE_GATEWAY_EVENTS_FILE": "",
           "VOICE_GATEWAY_LIMITS_MAX_LOOP_LAG_MS": "0", "VOICE_GATEWAY_LIMITS_MAX_ASR_WAIT_MS": "0",
           "VOICE_GATEWAY_LIMITS_MAX_CALLS_PER_CLIENT": "1"}
    gateway = GatewayProcess.serve(tmp_path, env=env)
    try:
        yield gateway
    finally:
        gateway.kill()


async def test_a_killed_instance_leaves_its_events_and_its_calls_are_forgotten(
        process: GatewayProcess, make_instances: MakeInstances, redis_url: str) -> None:
    (a,) = await make_instances("a", max_calls_per_client=1)
    await process.wait_ready()
    async with aiohttp.ClientSession() as http:
        async with http.post(a.url + CLIENT_SECRETS_PATH, headers=bearer(API_KEY)) as response:
            token = (await response.json())["value"]
        caller = Caller(process.url, token=token)  # minted on a, used on the process
        await caller.connect()
        assert caller.location is not None
        call_id = caller.location.rsplit("/", 1)[1]
        try:
            async with http.post(a.url + CALLS_PATH, data=await real_offer(),
                                 headers={**bearer(API_KEY), "Content-Type": "application/sdp"}) as response:
                assert response.status == 429  # the process's call counts for this address on a too
            client = aioredis.Redis.from_url(redis_url)
            try:
                await until(lambda: stream_has(client, call_id, "call.started"))
                process.signal(signal.SIGKILL)
                assert await process.wait_exit(10) == -signal.SIGKILL
                await until(lambda: gone(client, "vg:call:" + call_id))  # one lease (1 s) after the last heartbeat
                assert await stream_has(client, call_id, "call.started")  # appended before the kill: kept
                assert not await stream_has(client, call_id, "call.ended")  # the process never got to tell it
            finally:
                await client.aclose()
            async with http.delete(a.url + caller.location, headers=bearer(API_KEY)) as response:
                assert response.status == 404
            async with http.post(a.url + CALLS_PATH, data=await real_offer(),
                                 headers={**bearer(API_KEY), "Content-Type": "application/sdp"}) as response:
                assert response.status == 201  # the dead instance's call no longer counts
        finally:
            await caller.close()


async def stream_has(client: aioredis.Redis, call_id: str, type_: str) -> bool:
    for _, fields in await client.xrange(STREAM):
        event = json.loads(fields[b"event"])
        if event["call_id"] == call_id and event["type"] == type_:
            return True
    return False


async def gone(client: aioredis.Redis, key: str) -> bool:
    return not await client.exists(key)


async def until(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
