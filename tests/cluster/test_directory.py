"""The call directory: a hang-up on any instance reaches the call's instance; a dead instance's entries expire."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from gateway.app.application import create_app
from gateway.app.keys import REGISTRY
from gateway.config import EventsConfig
from gateway.voice.engines import Engines
from qa.caller import Caller
from signaling.internal import internal_headers
from signaling.paths import CALLS_PATH, call_location
from tests.cluster.conftest import API_KEY, INTERNAL_TOKEN, MakeInstances, bearer, cluster_config, joined
from tests.support.ops import free_port, real_offer, scrape
from tests.support.speech import utterance, word_error_rate

STREAM = "voice-gateway:events"


async def stream_events(redis_url: str, call_id: str) -> list[dict[str, Any]]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        entries = await client.xrange(STREAM)
    finally:
        await client.aclose()
    found = [json.loads(fields[b"event"]) for _, fields in entries]
    return [event for event in found if event["call_id"] == call_id]


async def test_a_hang_up_on_one_instance_ends_a_real_call_held_on_another(make_instances: MakeInstances,
                                                                          redis_url: str) -> None:
    a, b, c = await make_instances("a", "b", "c", events=EventsConfig(file="", redis_stream=STREAM))
    caller = Caller(a.url, token=API_KEY)
    await caller.connect()
    assert caller.location is not None
    call_id = caller.location.rsplit("/", 1)[1]
    try:
        clip = utterance("timit_LDC93S1.wav")
        _, end = await caller.say(clip.audio(), 16_000)
        heard = await caller.wait_event("conversation.item.input_audio_transcription.completed", since=end - 1)
        assert word_error_rate(clip.transcript, heard["transcript"]) <= 0.25
        await caller.wait_event("response.done", since=end, timeout=30)
        async with aiohttp.ClientSession() as http:
            async with http.delete(b.url + caller.location, headers=bearer(API_KEY)) as response:
                assert response.status == 204
            deadline = time.monotonic() + 10
            while a.server.app[REGISTRY].has_call(call_id) or caller.pc.connectionState == "connected":
                assert time.monotonic() < deadline, "the call held on a did not end"
                await asyncio.sleep(0.05)
            async with http.delete(c.url + caller.location, headers=bearer(API_KEY)) as response:
                assert response.status == 404  # gone from the directory too
                assert (await response.json())["error"]["code"] == "call_not_found"
            async with http.delete(c.url + call_location("rtc_000000000000000000000"),
                                   headers=bearer(API_KEY)) as response:
                assert response.status == 404
        assert (await scrape(b.url)).value("voice_gateway_cluster_hangups_forwarded_total") == 1
        assert (await scrape(a.url)).value("voice_gateway_cluster_hangups_forwarded_total") == 0
        deadline = time.monotonic() + 10
        while len(types := [e["type"] for e in await stream_events(redis_url, call_id)]) < 3:
            assert time.monotonic() < deadline, types
            await asyncio.sleep(0.05)
        assert types == ["call.started", "turn.completed", "call.ended"]
        assert (await stream_events(redis_url, call_id))[-1]["reason"] == "hangup"
    finally:
        await caller.close()


async def test_the_entries_of_an_instance_that_died_expire(make_instances: MakeInstances, redis_url: str) -> None:
    a, b = await make_instances("a", "b", max_calls_per_client=1)
    offer = await real_offer()
    async with aiohttp.ClientSession() as http:
        async with http.post(a.url + CALLS_PATH, data=offer,
                             headers={**bearer(API_KEY), "Content-Type": "application/sdp"}) as response:
            assert response.status == 201
            location = response.headers["Location"]
        # a "dies": its heartbeat stops and nothing is withdrawn, as after a SIGKILL (tests/cluster/test_processes.py
        # kills a real process); its call goes on in its process, but the cluster forgets it.
        heartbeat = next(t for t in asyncio.all_tasks() if t.get_name() == "cluster-heartbeat-a")
        heartbeat.cancel()
        await asyncio.sleep(0)
        async with http.post(b.url + CALLS_PATH, data=offer,
                             headers={**bearer(API_KEY), "Content-Type": "application/sdp"}) as response:
            assert response.status == 429  # a's call still counts for this address
        client = aioredis.Redis.from_url(redis_url)
        try:
            call_key = "vg:call:" + location.rsplit("/", 1)[1]
            assert await client.hget(call_key, "instance") == b"a"
            deadline = time.monotonic() + 5
            while await client.exists(call_key) or await client.exists("vg:instance:a"):
                assert time.monotonic() < deadline, "a's entries did not expire"
                await asyncio.sleep(0.1)
        finally:
            await client.aclose()
        async with http.delete(b.url + location, headers=bearer(API_KEY)) as response:
            assert response.status == 404  # no live instance holds it
        async with http.post(b.url + CALLS_PATH, data=offer,
                             headers={**bearer(API_KEY), "Content-Type": "application/sdp"}) as response:
            assert response.status == 201  # the dead instance's call no longer counts
        deadline = time.monotonic() + 5
        while True:  # b's next heartbeat publishes its call
            async with http.get(b.url + "/internal/cluster", headers=internal_headers(INTERNAL_TOKEN)) as response:
                listed = (await response.json())["instances"]
            assert [i["instance"] for i in listed] == ["b"]
            if listed[0]["active_calls"] == 1:
                break
            assert time.monotonic() < deadline, listed
            await asyncio.sleep(0.1)
        assert listed[0]["accepting"] is True and listed[0]["url"] == b.url and listed[0]["max_calls"] == 16
        async with http.get(b.url + "/internal/cluster") as response:
            assert response.status == 404  # only with the internal token


async def test_an_instance_that_stops_withdraws_its_entries_at_once(engines: Engines, redis_url: str) -> None:
    port = free_port()
    server = TestServer(create_app(cluster_config(redis_url, "leaving", port), engines=engines), host="127.0.0.1",
                        port=port)
    await server.start_server()
    client = aioredis.Redis.from_url(redis_url)
    try:
        await joined(redis_url, 1)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{port}" + CALLS_PATH, data=await real_offer(),
                                 headers={**bearer(API_KEY), "Content-Type": "application/sdp"}) as response:
                call_key = "vg:call:" + response.headers["Location"].rsplit("/", 1)[1]
        assert await client.exists(call_key, "vg:instance:leaving") == 2
        await server.close()  # the calls are closed, then the instance withdraws (no lease to wait for)
        assert await client.exists(call_key, "vg:instance:leaving") == 0
        assert await client.zcard("vg:instances") == 0
    finally:
        await client.aclose()
