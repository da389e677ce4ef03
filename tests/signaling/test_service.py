"""Signaling runs on any CallService: a fake one here, no engines, no calls; and the helpers defined once."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from gateway.config import AuthConfig, EventsConfig, GatewayConfig, LimitsConfig
from gateway.protocol.server_events import new_call_id
from signaling.internal import INTERNAL_HEADER, INTERNAL_TOKEN_ENV, internal_headers, is_internal
from signaling.middlewares import signaling_app
from signaling.paths import CALLS_PATH, CLIENT_SECRETS_PATH, call_id_from_location, call_location
from signaling.routes import setup_routes
from tests.signaling.fakes import FakeCalls
from tests.support.ops import real_offer

KEY = "sk-test-aaaaaaaaaaaaaaaaaaaaaaaa"


async def client_of(service: FakeCalls, *, keys: tuple[str, ...] = (KEY,)) -> TestClient[Any, Any]:
    config = GatewayConfig(auth=AuthConfig(api_keys=keys), events=EventsConfig(file=""),
                           limits=LimitsConfig(max_calls_per_client=1))
    app = signaling_app(config)
    setup_routes(app, service, max_sdp_bytes=config.limits.max_sdp_bytes)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


def test_a_call_id_is_read_back_from_its_location_only() -> None:
    call_id = new_call_id()
    assert call_id.startswith("rtc_") and len(call_id) == 24
    assert call_id_from_location(call_location(call_id)) == call_id
    for other in ("", CALLS_PATH, CALLS_PATH + "/", CALLS_PATH + "/a/b", "/v1/realtime/callsX/rtc_1",
                  "https://elsewhere/v1/realtime/calls/rtc_1"):
        assert call_id_from_location(other) is None, other


def test_only_the_token_this_process_was_started_with_is_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    def request(headers: dict[str, str]) -> Any:
        return make_mocked_request("POST", CALLS_PATH, headers=headers)

    monkeypatch.delenv(INTERNAL_TOKEN_ENV, raising=False)
    assert not is_internal(request(internal_headers("")))
    assert not is_internal(request(internal_headers("anything")))
    monkeypatch.setenv(INTERNAL_TOKEN_ENV, "the-token")
    assert is_internal(request(internal_headers("the-token")))
    assert not is_internal(request({INTERNAL_HEADER: "the-token "}))
    assert not is_internal(request({INTERNAL_HEADER: "tökén"}))
    assert not is_internal(request({}))


async def test_signaling_places_and_hangs_up_calls_on_any_call_service() -> None:
    service = FakeCalls()
    client = await client_of(service)
    try:
        offer = await real_offer()
        refused = await client.post(CALLS_PATH, data=offer, headers={"Content-Type": "application/sdp"})
        assert refused.status == 401
        placed = await client.post(CALLS_PATH, data=offer, headers={"Content-Type": "application/sdp",
                                                                    "Authorization": f"Bearer {KEY}"})
        assert placed.status == 201, await placed.text()
        call_id = call_id_from_location(placed.headers["Location"])
        assert call_id is not None and service.has_call(call_id)
        again = await client.post(CALLS_PATH, data=offer, headers={"Content-Type": "application/sdp",
                                                                   "Authorization": f"Bearer {KEY}"})
        assert again.status == 429  # the per-client limit counted the call by its Location
        hung_up = await client.delete(call_location(call_id), headers={"Authorization": f"Bearer {KEY}"})
        assert hung_up.status == 204 and not service.calls
    finally:
        await client.close()


async def test_a_forwarded_request_skips_the_limits_and_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERNAL_TOKEN_ENV, "the-token")
    service = FakeCalls()
    client = await client_of(service)
    try:
        offer = await real_offer()
        for _ in range(2):  # no key, and more than one call from this address
            placed = await client.post(CALLS_PATH, data=offer, headers={"Content-Type": "application/sdp",
                                                                        **internal_headers("the-token")})
            assert placed.status == 201
        wrong = await client.post(CALLS_PATH, data=offer, headers={"Content-Type": "application/sdp",
                                                                   **internal_headers("not-the-token")})
        assert wrong.status == 401
    finally:
        await client.close()


@pytest.mark.parametrize(("service", "status", "expected"), [
    (FakeCalls(checked={"type": "realtime", "voice": "checked"}), 200, {"type": "realtime", "voice": "checked"}),
    (FakeCalls(checked=None), 200, {"type": "realtime", "object": "realtime.session", "instructions": "Hi.",
                                    "gateway": {"pinned": ["instructions"]}}),  # pinned by default
    (FakeCalls(invalid="unknown voice 'x'"), 400,
     {"error": {"type": "invalid_request_error", "code": "invalid_session", "message": "unknown voice 'x'"}}),
])
async def test_a_client_secret_session_is_checked_by_the_service(service: FakeCalls, status: int,
                                                                 expected: dict[str, Any]) -> None:
    client = await client_of(service)
    try:
        response = await client.post(CLIENT_SECRETS_PATH, json={"session": {"instructions": "Hi."}},
                                     headers={"Authorization": f"Bearer {KEY}"})
        body = await response.json()
        assert response.status == status
        assert body.get("session", body) == expected  # None: not checkable here, returned as given
    finally:
        await client.close()
