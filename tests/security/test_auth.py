"""API keys and ephemeral client secrets on the signaling endpoints."""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.app.application import REGISTRY, create_app
from gateway.config import AuthConfig, ConfigError, EventsConfig, GatewayConfig, LimitsConfig
from gateway.config.loader import ConfigSource, load_config, to_dict
from gateway.voice.engines import Engines
from signaling import client_secrets
from signaling.auth import Authenticator
from signaling.bound_session import MAX_BOUND_BYTES
from signaling.client_secrets import MINTER, ClientSecretStore
from signaling.errors import ApiError
from tests.support.fakes import fake_engines
from tests.support.ops import real_offer

CALLS = "/v1/realtime/calls"
SECRETS = "/v1/realtime/client_secrets"
KEY_A = "sk-test-aaaaaaaaaaaaaaaaaaaa"
KEY_B = "sk-test-bbbbbbbbbbbbbbbbbbbb"
Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def make_client(aiohttp_client: Any) -> MakeClient:
    async def make(*keys: str, ttl: float = 60.0, limits: LimitsConfig | None = None,
                   engines: Engines | None = None) -> Client:
        config = GatewayConfig(events=EventsConfig(file=""), limits=limits or LimitsConfig(),
                               auth=AuthConfig(api_keys=keys, client_secret_ttl_seconds=ttl))
        client: Client = await aiohttp_client(create_app(config, engines=engines or fake_engines()[0]))
        return client

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def place(client: Client, token: str | None, sdp: str | None = None) -> tuple[int, dict[str, Any], str]:
    """POST an offer; returns (status, error or {}, Location)."""
    headers = {"Content-Type": "application/sdp", **(bearer(token) if token else {})}
    response = await client.post(CALLS, data=sdp or await real_offer(), headers=headers)
    error = (await response.json())["error"] if response.status >= 400 else {}
    return response.status, error, response.headers.get("Location", "")


async def mint(client: Client, key: str | None = KEY_A, body: Any = None,
               **headers: str) -> tuple[int, dict[str, Any]]:
    headers = {name.replace("_", "-"): value for name, value in headers.items()}
    response = await client.post(SECRETS, json=body, headers={**(bearer(key) if key else {}), **headers})
    return response.status, await response.json()


async def test_api_keys_are_required_and_any_configured_key_works(make_client: MakeClient) -> None:
    client = await make_client(KEY_A, KEY_B)
    response = await client.post(CALLS, data=await real_offer(), headers={"Content-Type": "application/sdp"})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await response.json())["error"]["code"] == "missing_api_key"
    for wrong in ("sk-test-aaaaaaaaaaaaaaaaaaab", KEY_A[:-1], KEY_A + "a", "ünïcode-kéy", ""):
        status, error, _ = await place(client, wrong or None)
        assert status == 401 and error["code"] in ("invalid_api_key", "missing_api_key"), wrong
    assert len(client.app[REGISTRY]) == 0
    status, _, location = await place(client, KEY_B)
    assert status == 201
    assert (await client.delete(location)).status == 401  # hanging up needs a key too
    assert (await client.delete(location, headers=bearer(KEY_A))).status == 204
    assert (await client.post(SECRETS)).status == 401


async def test_without_keys_calls_are_open_even_with_a_placeholder_client_secret(make_client: MakeClient) -> None:
    # Browser SDKs always send a token; without API keys it grants nothing beyond anonymous access.
    client = await make_client()
    status, _, location = await place(client, None)
    assert status == 201
    assert (await client.delete(location)).status == 204
    status, _, location = await place(client, "ek_placeholder_from_an_sdk")
    assert status == 201
    assert (await client.delete(location)).status == 204


async def test_without_keys_a_minted_client_secret_still_binds_its_session_once(make_client: MakeClient) -> None:
    client = await make_client()
    status, body = await mint(client, None, body={"session": {"instructions": "Bound."}})
    assert status == 200
    status, _, location = await place(client, body["value"])
    assert status == 201
    assert client.app[REGISTRY].get(location.rsplit("/", 1)[1]).conversation.settings.instructions == "Bound."
    status, error, _ = await place(client, body["value"])
    assert (status, error["code"]) == (401, "client_secret_used")


async def test_a_client_secret_places_exactly_one_call_with_its_session(make_client: MakeClient) -> None:
    client = await make_client(KEY_A)
    status, body = await mint(client, None)
    assert status == 401
    status, body = await mint(client, body={"session": {"type": "realtime", "instructions": "Be terse."}})
    assert status == 200, body
    token = body["value"]
    assert token.startswith("ek_") and len(token) > 40
    assert abs(body["expires_at"] - (time.time() + 60)) <= 2
    assert body["session"]["instructions"] == "Be terse." and body["session"]["type"] == "realtime"

    status, error, _ = await place(client, token, "v=0\r\nnot an offer\r\n")
    assert (status, error["code"]) == (400, "invalid_sdp")  # a failed attempt does not use the token up
    status, _, location = await place(client, token)
    assert status == 201
    call = client.app[REGISTRY].get(location.rsplit("/", 1)[1])
    assert call.conversation.settings.instructions == "Be terse."
    status, error, _ = await place(client, token)
    assert (status, error["code"]) == (401, "client_secret_used")
    status, error, _ = await place(client, "ek_" + token[3:][::-1])
    assert (status, error["code"]) == (401, "invalid_api_key")
    assert (await client.post(SECRETS, headers=bearer(token))).status == 401  # a token mints nothing
    assert (await client.delete(location, headers=bearer(token))).status == 204  # but hangs up its own call
    assert len(client.app[REGISTRY]) == 0


async def test_an_expired_client_secret_is_refused(make_client: MakeClient) -> None:
    client = await make_client(KEY_A)
    _, body = await mint(client, body={"expires_after": {"anchor": "created_at", "seconds": 1}})
    await asyncio.sleep(1.1)
    status, error, _ = await place(client, body["value"])
    assert (status, error["code"]) == (401, "client_secret_expired")


async def test_two_concurrent_calls_with_one_client_secret_give_one_call(make_client: MakeClient) -> None:
    client = await make_client(KEY_A)
    _, body = await mint(client)
    offers = [await real_offer(), await real_offer()]
    results = await asyncio.gather(*(place(client, body["value"], offer) for offer in offers))
    assert sorted(status for status, _, _ in results) == [201, 401]


@pytest.mark.parametrize(("body", "code"), [
    ({"expires_after": {"anchor": "created_at", "seconds": 100_000}}, "invalid_value"),
    ({"expires_after": {"anchor": "last_used", "seconds": 30}}, "invalid_value"),
    ({"expires_after": {"seconds": "60"}}, "invalid_value"),
    ({"session": {"audio": {"output": {"voice": "nobody"}}}}, "invalid_session"),
    ({"session": ["not", "an", "object"]}, "invalid_session"),
    ([1, 2], "invalid_json"),
])
async def test_bad_client_secret_requests_are_400(make_client: MakeClient, body: Any, code: str) -> None:
    client = await make_client(KEY_A)
    status, answer = await mint(client, body=body)
    assert (status, answer["error"]["code"]) == (400, code)
    response = await client.post(SECRETS, data=b"\xff{", headers=bearer(KEY_A))
    assert (await response.json())["error"]["code"] == "invalid_json"


def test_keys_are_compared_in_constant_time_against_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    authenticator = Authenticator(AuthConfig(api_keys=(KEY_A, KEY_B, "sk-test-cccccccccccccccccccc")))
    assert authenticator.is_server_key(KEY_A)
    assert len(calls) == 3  # no early exit on the first match
    assert not authenticator.is_server_key("sk-test-nope")
    with pytest.raises(ApiError) as refused:
        authenticator.require_server_key(None)
    assert refused.value.code == "missing_api_key"


def test_the_store_forgets_old_tokens_and_is_bounded() -> None:
    now = [1000.0]
    store = ClientSecretStore(clock=lambda: now[0], capacity=3)
    value, _ = store.mint(60)
    for _ in range(2):
        store.mint(60)
    with pytest.raises(ApiError) as full:
        store.mint(60)
    assert (full.value.status, full.value.code) == (429, "too_many_client_secrets")
    now[0] += 60 + client_secrets.RETAIN_SECONDS + 1
    store.mint(60)  # the expired ones were forgotten
    assert len(store) == 1
    with pytest.raises(ApiError):
        store.claim(value)


def test_api_keys_come_from_the_environment_and_are_masked() -> None:
    config = load_config(ConfigSource(env={"VOICE_GATEWAY_AUTH_API_KEYS": f"{KEY_A}, {KEY_B}",
                                           "VOICE_GATEWAY_AUTH_CLIENT_SECRET_TTL_SECONDS": "30"}))
    assert config.auth.api_keys == (KEY_A, KEY_B)
    assert config.auth.client_secret_ttl_seconds == 30
    assert to_dict(config)["auth"]["api_keys"] == "***"
    assert KEY_A not in repr(config)
    with pytest.raises(ConfigError, match=r"auth\.api_keys"):
        AuthConfig(api_keys=("short",))


# ------------------------------------------------------------- what one client can make the gateway hold

BEHIND_PROXY = ("127.0.0.1",)  # the test client is the "proxy": X-Forwarded-For says which client it is


async def test_minting_is_rate_limited_per_client_and_wrong_keys_count(make_client: MakeClient) -> None:
    limits = LimitsConfig(trusted_proxies=BEHIND_PROXY, client_secret_burst_per_client=3)
    client = await make_client(KEY_A, limits=limits)
    for _ in range(3):
        status, _ = await mint(client, X_Forwarded_For="203.0.113.5")
        assert status == 200
    response = await client.post(SECRETS, headers={**bearer(KEY_A), "X-Forwarded-For": "203.0.113.5"})
    assert (response.status, (await response.json())["error"]["code"]) == (429, "rate_limited")
    assert int(response.headers["Retry-After"]) == 1  # 60 a minute: one more each second
    status, _ = await mint(client, X_Forwarded_For="203.0.113.6")  # another client is not affected
    assert status == 200
    codes = [(await mint(client, "sk-test-wrong-wrong-wrong", X_Forwarded_For="198.51.100.9"))[1]["error"]["code"]
             for _ in range(4)]
    assert codes == ["invalid_api_key"] * 3 + ["rate_limited"]  # guessing keys is throttled too


async def test_one_client_cannot_fill_the_store_for_others(make_client: MakeClient) -> None:
    limits = LimitsConfig(trusted_proxies=BEHIND_PROXY, client_secrets_per_client_per_minute=0,
                          max_client_secrets_per_client=5)
    client = await make_client(KEY_A, limits=limits, ttl=30)
    tokens = [(await mint(client, X_Forwarded_For="2001:db8:1:2::7"))[1]["value"] for _ in range(5)]
    response = await client.post(SECRETS, headers={**bearer(KEY_A), "X-Forwarded-For": "2001:db8:1:2::8"})
    assert (response.status, (await response.json())["error"]["code"]) == (429, "too_many_client_secrets")
    assert 1 <= int(response.headers["Retry-After"]) <= 30  # when its first token expires
    assert (await mint(client, X_Forwarded_For="2001:db8:1:3::7"))[0] == 200  # another /64
    status, _, _ = await place(client, tokens[0])  # a used token no longer counts
    assert status == 201
    assert (await mint(client, X_Forwarded_For="2001:db8:1:2::7"))[0] == 200
    assert len(client.app[MINTER].store) == 7


def test_a_full_store_forgets_used_and_expired_tokens_before_refusing_anyone() -> None:
    now = [1000.0]
    store = ClientSecretStore(clock=lambda: now[0], capacity=3)
    value, _ = store.mint(60, client="a")
    store.consume(store.claim(value), "rtc_ended")
    store.mint(1, client="a")
    store.mint(60, client="a")
    now[0] += 2  # one has expired (its digest would be kept 300 s to tell expiry from forgery)
    store.mint(60, client="b")  # room: the used and the expired ones were forgotten first
    store.mint(60, client="b")
    assert len(store) == 3
    with pytest.raises(ApiError) as full:
        store.mint(60, client="c")  # three live tokens: full
    assert full.value.code == "too_many_client_secrets"
    store = ClientSecretStore(clock=lambda: now[0], capacity=1)
    value, _ = store.mint(60)
    store.consume(store.claim(value), "rtc_live")
    with pytest.raises(ApiError):  # a used token whose call is live may still hang it up: kept
        store.mint(60, call_alive=lambda call_id: call_id == "rtc_live")
    assert store.owns(value, "rtc_live")


def test_bound_sessions_are_stored_once_each_within_a_budget() -> None:
    store = ClientSecretStore(session_bytes=100)
    _, first = store.mint(60, b"x" * 60)
    _, same = store.mint(60, b"x" * 60)
    assert same.session is first.session and store.session_bytes == 60  # one copy
    with pytest.raises(ApiError) as full:
        store.mint(60, b"y" * 60)
    assert (full.value.status, full.value.code) == (429, "too_many_client_secrets")
    store.mint(60)  # a token without a session still fits


def junk_session(index: int, body_bytes: int = 60 * 1024) -> dict[str, Any]:
    """A session whose request body is ``body_bytes`` of small JSON objects the gateway does not use."""
    junk = [{"n": n} for n in range(body_bytes // 14)]  # '{"n": 1234}, ': 13 bytes each
    return {"instructions": f"Token {index}: be brief.", "unused": junk}  # ("tools" is a session key now)


async def retained_per_token(client: Client, sessions: list[dict[str, Any]]) -> float:
    """Bytes the gateway holds after minting one token per session, per token (tracemalloc). A plain client
    session, closed before the count: the test client keeps every response it made."""
    bodies = [json.dumps({"session": session}, ensure_ascii=False).encode() for session in sessions]
    async with aiohttp.ClientSession(headers=bearer(KEY_A)) as http:
        for index in range(5):  # warm-up: caches and pools that grow once
            async with http.post(client.make_url(SECRETS), json={"session": junk_session(-index)}) as response:
                await response.read()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for body in bodies:
                async with http.post(client.make_url(SECRETS), data=body) as response:
                    assert response.status == 200
                    await response.read()
            async with http.post(client.make_url(SECRETS)) as response:  # the last body's buffers are let go
                await response.read()
            gc.collect()
            return (tracemalloc.get_traced_memory()[0] - before) / len(sessions)
        finally:
            tracemalloc.stop()


async def test_a_client_secret_retains_its_session_fields_not_the_request(make_client: MakeClient) -> None:
    client = await make_client(KEY_A, limits=LimitsConfig(client_secrets_per_client_per_minute=0,
                                                          max_client_secrets_per_client=0))
    # Before: each token kept the parsed 60 KiB request, ~1.6 MB of Python objects (measured on 8187d53).
    per_token = await retained_per_token(client, [junk_session(i) for i in range(40)])
    print(f"retained per token: {per_token:.0f} B")
    assert per_token < 2048, per_token
    store = client.app[MINTER].store
    held = [secret.session for secret in store._secrets.values() if secret.session is not None]
    assert all(json.loads(data).keys() <= {"instructions", "gateway"} for data in held)
    # The largest session a token may bind: 16,000 characters of instructions, 3 bytes each in UTF-8.
    longest = [{"instructions": chr(0x20AC) * 15_990 + f"{i:>10}"} for i in range(20)]
    per_token = await retained_per_token(client, longest)
    print(f"retained per token: {per_token:.0f} B")  # the figure docs/security.md quotes
    assert per_token < MAX_BOUND_BYTES, per_token
    assert store.session_bytes <= client_secrets.MAX_SESSION_BYTES
