"""Per-client limits on placing calls: concurrency and rate, 429 with Retry-After."""

from __future__ import annotations

import pytest

from gateway.app.application import REGISTRY
from gateway.config import ConfigError, LimitsConfig
from gateway.config.loader import build_config
from signaling.errors import ApiError
from signaling.limits import ClientLimiter, client_key
from tests.security.support import Client, MakeClient
from tests.support.ops import real_offer

CALLS = "/v1/realtime/calls"


async def post(client: Client, body: str, **headers: str) -> tuple[int, str, str | None, str]:
    """(status, error code or "", Retry-After, Location)"""
    response = await client.post(CALLS, data=body, headers={"Content-Type": "application/sdp", **headers})
    code = (await response.json())["error"]["code"] if response.status >= 400 else ""
    return response.status, code, response.headers.get("Retry-After"), response.headers.get("Location", "")


async def test_concurrent_calls_per_client_are_limited(make_client: MakeClient) -> None:
    client = await make_client(max_calls_per_client=2)
    offer = await real_offer()
    first = await post(client, offer)
    second = await post(client, offer)
    assert first[0] == second[0] == 201
    status, code, retry_after, _ = await post(client, offer)
    assert (status, code) == (429, "too_many_calls")
    assert retry_after is not None and int(retry_after) >= 1
    assert len(client.app[REGISTRY]) == 2
    assert (await client.delete(first[3])).status == 204
    assert (await post(client, offer))[0] == 201  # a slot came free


async def test_call_attempts_per_client_are_rate_limited_whatever_their_outcome(make_client: MakeClient) -> None:
    client = await make_client(calls_per_client_per_minute=6, call_burst_per_client=3)
    for _ in range(3):
        assert (await post(client, "not sdp"))[:2] == (400, "invalid_sdp")
    status, code, retry_after, _ = await post(client, "not sdp")
    assert (status, code) == (429, "rate_limited")
    assert retry_after is not None and 1 <= int(retry_after) <= 10
    assert (await client.get("/healthz")).status == 200  # other routes are not limited


async def test_forwarded_addresses_count_only_from_trusted_proxies(make_client: MakeClient) -> None:
    client = await make_client(calls_per_client_per_minute=60, call_burst_per_client=1)
    assert (await post(client, "x", **{"X-Forwarded-For": "203.0.113.1"}))[0] == 400
    assert (await post(client, "x", **{"X-Forwarded-For": "203.0.113.2"}))[1] == "rate_limited"  # ignored

    client = await make_client(calls_per_client_per_minute=60, call_burst_per_client=1,
                               trusted_proxies=("127.0.0.0/8", "10.0.0.0/8"))
    assert (await post(client, "x", **{"X-Forwarded-For": "203.0.113.1"}))[0] == 400
    assert (await post(client, "x", **{"X-Forwarded-For": "203.0.113.2, 10.1.2.3"}))[0] == 400  # another client
    assert (await post(client, "x", **{"X-Forwarded-For": "198.51.100.9, 203.0.113.1"}))[1] == "rate_limited"


def test_clients_are_addresses_and_ipv6_slash_64_networks() -> None:
    assert client_key("203.0.113.7") == "203.0.113.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_key("not an address") == "not an address"


def test_the_bucket_refills_at_the_configured_rate() -> None:
    now = [0.0]
    limiter = ClientLimiter(LimitsConfig(calls_per_client_per_minute=60, call_burst_per_client=2,
                                         max_calls_per_client=0), clock=lambda: now[0])

    def admit() -> None:
        limiter.settle(limiter.admit("a", call_alive=lambda _c: True, call_connected=lambda _c: True), None)

    admit()
    admit()
    with pytest.raises(ApiError) as limited:
        admit()
    assert limited.value.retry_after == 1
    now[0] += 1.0
    admit()  # one per second
    with pytest.raises(ApiError):
        admit()
    limiter.settle(limiter.admit("b", call_alive=lambda _c: True, call_connected=lambda _c: True),
                   None)  # another client has its own bucket


def test_limits_are_validated_and_one_client_gets_at_most_a_quarter_of_the_gateway_by_default() -> None:
    with pytest.raises(ConfigError, match=r"limits\.trusted_proxies"):
        LimitsConfig(trusted_proxies=("proxy.example.org",))
    with pytest.raises(ConfigError, match=r"limits\.max_calls_per_client"):
        LimitsConfig(max_calls_per_client=-2)
    with pytest.raises(ConfigError, match=r"limits\.max_calls_per_client"):
        LimitsConfig(max_calls=8, max_calls_per_client=9)  # more than the whole gateway: a mistake
    with pytest.raises(ConfigError, match=r"limits\.max_pending_calls_per_client"):
        LimitsConfig(max_pending_calls_per_client=-1)
    with pytest.raises(ConfigError, match=r"limits\.ice_timeout_seconds"):
        LimitsConfig(ice_timeout_seconds=0)
    assert [LimitsConfig(max_calls=n).max_calls_per_client for n in (1, 3, 4, 16, 64)] == [1, 1, 1, 4, 16]
    assert build_config({"limits": {"max_calls": "40"}}).limits.max_calls_per_client == 10  # also from a file


async def test_limits_at_zero_are_off(make_client: MakeClient) -> None:
    client = await make_client(max_calls_per_client=0, calls_per_client_per_minute=0)
    for _ in range(25):  # more than the burst of 20: not rate-limited
        assert (await post(client, "not sdp"))[:2] == (400, "invalid_sdp")
    offer = await real_offer()  # its peer is gone: these calls never connect, they stay pending
    statuses = [(await post(client, offer))[0] for _ in range(6)]
    assert statuses == [201] * 6  # more than the default 4 calls and 2 pending calls of one address
    assert len(client.app[REGISTRY]) == 6
