"""Client secrets across instances: minted on one, used once on any (tests/cluster/conftest.py has the set-up)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from gateway.app.keys import REGISTRY
from signaling.paths import CALLS_PATH, CLIENT_SECRETS_PATH
from tests.cluster.conftest import API_KEY, MakeInstances, bearer
from tests.support.ops import real_offer


async def mint(http: aiohttp.ClientSession, url: str) -> str:
    async with http.post(url + CLIENT_SECRETS_PATH, json={"session": {"instructions": "Be brief."}},
                         headers=bearer(API_KEY)) as response:
        assert response.status == 200, await response.text()
        value: str = (await response.json())["value"]
        return value


async def place(http: aiohttp.ClientSession, url: str, token: str, offer: str) -> tuple[int, dict[str, Any], str]:
    headers = {**bearer(token), "Content-Type": "application/sdp"}
    async with http.post(url + CALLS_PATH, data=offer, headers=headers) as response:
        body: dict[str, Any] = {} if response.status == 201 else await response.json()
        return response.status, body, response.headers.get("Location", "")


async def test_a_secret_minted_on_one_instance_places_one_call_on_another_and_no_more(
        make_instances: MakeInstances) -> None:
    a, b, c = await make_instances("a", "b", "c")
    offer = await real_offer()
    async with aiohttp.ClientSession() as http:
        token = await mint(http, a.url)
        status, _, location = await place(http, b.url, token, offer)
        assert status == 201 and location
        call = b.server.app[REGISTRY].get(location.rsplit("/", 1)[1])
        assert call.conversation.settings.instructions == "Be brief."  # the session bound on a, applied on b
        for again in (a, c, b):
            status, body, _ = await place(http, again.url, token, offer)
            assert status == 401 and body["error"]["code"] == "client_secret_used", (again.name, body)
        # The token may hang up the call it created, from any instance (forwarded to b).
        async with http.delete(c.url + location, headers=bearer(token)) as response:
            assert response.status == 204
        async with http.delete(a.url + location, headers=bearer(await mint(http, a.url))) as response:
            assert response.status == 401  # another token owns no call


async def test_instances_racing_with_one_secret_place_exactly_one_call(make_instances: MakeInstances) -> None:
    # The per-client limits would answer first: 27 attempts from one address.
    instances = await make_instances("a", "b", "c", max_calls_per_client=0, calls_per_client_per_minute=0)
    offer = await real_offer()
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            token = await mint(http, instances[0].url)
            results = await asyncio.gather(*(place(http, instance.url, token, offer)
                                              for instance in instances for _ in range(3)))
            statuses = sorted(status for status, _, _ in results)
            assert statuses == [201] + [401] * 8, results
            codes = {body["error"]["code"] for status, body, _ in results if status == 401}
            assert codes == {"client_secret_used"}


async def test_an_unknown_or_expired_secret_is_refused_on_every_instance(make_instances: MakeInstances) -> None:
    a, b = await make_instances("a", "b")
    offer = await real_offer()
    async with aiohttp.ClientSession() as http:
        status, body, _ = await place(http, b.url, "ek_never-minted", offer)
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        async with http.post(a.url + CLIENT_SECRETS_PATH, json={"expires_after": {"seconds": 1}},
                             headers=bearer(API_KEY)) as response:
            token = (await response.json())["value"]
        await asyncio.sleep(1.1)
        status, body, _ = await place(http, b.url, token, offer)
        assert status == 401 and body["error"]["code"] == "client_secret_expired"


async def test_unused_secrets_per_client_are_bounded_in_the_whole_cluster(make_instances: MakeInstances) -> None:
    a, b = await make_instances("a", "b", max_client_secrets_per_client=3)
    async with aiohttp.ClientSession() as http:
        for instance in (a, b, a):
            await mint(http, instance.url)
        async with http.post(b.url + CLIENT_SECRETS_PATH, headers=bearer(API_KEY)) as response:
            assert response.status == 429
            assert (await response.json())["error"]["code"] == "too_many_client_secrets"
            assert int(response.headers["Retry-After"]) >= 1


async def test_the_mint_rate_per_client_is_one_bucket_for_the_cluster(make_instances: MakeInstances) -> None:
    a, b, c = await make_instances("a", "b", "c", client_secrets_per_client_per_minute=6,
                                   client_secret_burst_per_client=2)
    async with aiohttp.ClientSession() as http:
        await mint(http, a.url)
        await mint(http, b.url)
        async with http.post(c.url + CLIENT_SECRETS_PATH, headers=bearer(API_KEY)) as response:
            assert response.status == 429 and (await response.json())["error"]["code"] == "rate_limited"
            assert 1 <= int(response.headers["Retry-After"]) <= 10
        async with http.post(a.url + CLIENT_SECRETS_PATH, headers=bearer("sk-wrong-key-0123456789")) as response:
            assert response.status == 429  # refused requests count too, before the key is checked
