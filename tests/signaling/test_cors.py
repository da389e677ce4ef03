"""CORS: pages on allowed origins may call the API (with a correct preflight); others get 403."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app.application import create_app
from gateway.config import LOCAL_ORIGINS, ConfigError, EventsConfig, GatewayConfig, ServerConfig
from gateway.config.loader import ConfigSource, add_config_arguments, load_config
from gateway.voice.engines import Engines
from signaling.cors import OriginPolicy
from tests.support.ops import real_offer

CALLS = "/v1/realtime/calls"
Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def make_client(aiohttp_client: Any, engines: Engines) -> Callable[..., Awaitable[Client]]:
    async def make(*allow_origins: str) -> Client:
        config = GatewayConfig(events=EventsConfig(file=""))  # no lifecycle events on stdout
        if allow_origins:
            config = replace(config, server=ServerConfig(allow_origins=allow_origins))
        client: Client = await aiohttp_client(create_app(config, engines=engines))
        return client

    return make


def preflight_headers(origin: str, method: str = "POST", headers: str = "authorization,content-type") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}


async def test_preflight_for_the_sdp_post_allows_the_page(make_client: MakeClient) -> None:
    client = await make_client("https://app.example.com")
    response = await client.options(CALLS, headers=preflight_headers("https://app.example.com"))
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "Location" in response.headers["Access-Control-Expose-Headers"]
    assert "Origin" in response.headers["Vary"]
    assert int(response.headers["Access-Control-Max-Age"]) > 0


async def test_preflight_for_the_hangup_delete(make_client: MakeClient) -> None:
    client = await make_client("https://app.example.com")
    response = await client.options(f"{CALLS}/rtc_123", headers=preflight_headers("https://app.example.com", "DELETE"))
    assert response.status == 204
    assert "DELETE" in response.headers["Access-Control-Allow-Methods"]


async def test_preflight_for_a_method_the_path_lacks_is_refused(make_client: MakeClient) -> None:
    client = await make_client("https://app.example.com")
    response = await client.options(CALLS, headers=preflight_headers("https://app.example.com", "PUT"))
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]
    missing = await client.options("/nowhere", headers=preflight_headers("https://app.example.com"))
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"


async def test_a_call_from_an_allowed_origin_exposes_its_location(make_client: MakeClient) -> None:
    client = await make_client("https://app.example.com")
    origin = {"Origin": "https://app.example.com"}
    response = await client.post(CALLS, data=await real_offer(), headers={**origin, "Content-Type": "application/sdp"})
    assert response.status == 201, await response.text()
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Location" in response.headers["Access-Control-Expose-Headers"]
    hangup = await client.delete(response.headers["Location"], headers=origin)
    assert hangup.status == 204
    assert hangup.headers["Access-Control-Allow-Origin"] == "https://app.example.com"


async def test_errors_are_readable_by_an_allowed_page(make_client: MakeClient) -> None:
    client = await make_client("https://app.example.com")
    response = await client.post(CALLS, data="not sdp", headers={"Origin": "https://app.example.com",
                                                                 "Content-Type": "application/sdp"})
    assert response.status == 400
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert (await response.json())["error"]["code"] == "invalid_sdp"


@pytest.mark.parametrize("method", ["OPTIONS", "POST", "GET"])
async def test_other_origins_get_403(make_client: MakeClient, method: str) -> None:
    client = await make_client("https://app.example.com")
    headers = preflight_headers("https://evil.example") if method == "OPTIONS" else {"Origin": "https://evil.example"}
    response = await client.request(method, CALLS if method != "GET" else "/", data=b"v=0", headers=headers)
    assert response.status == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    error = (await response.json())["error"]
    assert error["code"] == "origin_not_allowed"
    assert error["type"] == "invalid_request_error"
    assert "https://evil.example" in error["message"]


async def test_default_allows_localhost_on_any_port_and_the_same_origin(make_client: MakeClient) -> None:
    client = await make_client()
    for origin in ("http://localhost:5173", "http://127.0.0.1:3000", "https://localhost", "http://[::1]:8000"):
        response = await client.options(CALLS, headers=preflight_headers(origin))
        assert response.status == 204, origin
        assert response.headers["Access-Control-Allow-Origin"] == origin
    own = f"http://{client.server.host}:{client.server.port}"
    page = await client.get("/", headers={"Origin": own})
    assert page.status == 200
    refused = await client.options(CALLS, headers=preflight_headers("https://app.example.com"))
    assert refused.status == 403


async def test_requests_without_an_origin_are_untouched(make_client: MakeClient) -> None:
    client = await make_client("https://app.example.com")
    response = await client.get("/healthz")
    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_origin_policy_matching() -> None:
    policy = OriginPolicy(("https://app.example.com", "http://dev.example.com:*", "https://x.example:8443"))
    host = "gateway.example.com:8080"
    assert policy.allows("https://app.example.com", host)
    assert policy.allows("https://APP.example.com:443", host)  # default port, any case
    assert not policy.allows("http://app.example.com", host)  # scheme matters
    assert not policy.allows("https://app.example.com:8443", host)
    assert policy.allows("http://dev.example.com", host)
    assert policy.allows("http://dev.example.com:9999", host)
    assert not policy.allows("https://dev.example.com:9999", host)
    assert policy.allows("https://x.example:8443", host)
    assert not policy.allows("https://x.example", host)
    assert policy.allows("http://gateway.example.com:8080", host)  # the gateway's own origin
    for hostile in ("null", "", "https://app.example.com.evil.example", "https://app.example.com/path", "file://"):
        assert not policy.allows(hostile, host), hostile
    assert OriginPolicy(("*",)).allows("https://anything.example", host)
    assert OriginPolicy(LOCAL_ORIGINS).allows("http://[::1]:3000", host)
    assert not policy.allows("http://gateway.example.com:8080", None)  # no Host: nothing is "same origin"


def test_allow_origin_flag_is_repeatable_and_comma_separated() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--allow-origin", "https://a.example", "--allow-origin", "http://b.example:*,*"])
    config = load_config(ConfigSource.from_args(args))
    assert config.server.allow_origins == ("https://a.example", "http://b.example:*", "*")
    assert load_config(ConfigSource()).server.allow_origins == LOCAL_ORIGINS
    with pytest.raises(ConfigError, match=r"server\.allow_origins"):
        load_config(ConfigSource(overrides={"server.allow_origins": "https://a.example/path"}))
