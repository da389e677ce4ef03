"""The Realtime WebSocket in a cluster: a secret minted on one instance opens a socket call on another, once."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import redis.asyncio as aioredis

from gateway.app.keys import REGISTRY
from signaling.paths import CLIENT_SECRETS_PATH, call_location
from tests.cluster.conftest import API_KEY, MakeInstances, bearer


async def test_a_secret_minted_on_one_instance_opens_one_socket_call_on_another(make_instances: MakeInstances,
                                                                                redis_url: str) -> None:
    a, b, c = await make_instances("a", "b", "c")
    async with aiohttp.ClientSession() as http:
        async with http.post(a.url + CLIENT_SECRETS_PATH, headers=bearer(API_KEY)) as response:
            token = (await response.json())["value"]
        ws_url = b.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
        async with http.ws_connect(ws_url, headers=bearer(token)) as socket:
            created = json.loads((await socket.receive(timeout=10)).data)
            assert created["type"] == "session.created"
            call_id = next(iter(b.server.app[REGISTRY].calls())).id
            upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                       "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
            async with http.get(c.url + "/v1/realtime", headers={**bearer(token), **upgrade}) as refused:  # reused
                assert refused.status == 401
                assert (await refused.json())["error"]["code"] == "client_secret_used"
            client = aioredis.Redis.from_url(redis_url)
            try:
                deadline = time.monotonic() + 5
                while await client.hget("vg:call:" + call_id, "instance") != b"b":
                    assert time.monotonic() < deadline, "the socket call is not in the directory"
                    await asyncio.sleep(0.05)
            finally:
                await client.aclose()
            async with http.delete(a.url + call_location(call_id), headers=bearer(token)) as response:
                assert response.status == 204  # the token hangs up its own socket call, from another instance
            message = await socket.receive(timeout=10)
            while message.type == aiohttp.WSMsgType.TEXT:
                message = await socket.receive(timeout=10)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert not b.server.app[REGISTRY].has_call(call_id)
