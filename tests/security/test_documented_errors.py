"""What docs/security.md says is tested, tested: multipart errors, the client-secret body limit, the
queue before the event channel opens, the retrieve cache, and the peer connections refused offers cost.

The queue before the event channel opens is bounded and counted in tests/session/test_memory_transport.py
(``test_events_wait_for_the_transport_and_session_created_comes_first``); here: that its drops are
reported. Retrieval itself is tested there too (``test_an_added_item_is_spoken_on_response_create_and_can_be_
retrieved``); here: the bound.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any, ClassVar

import pytest
from aiohttp import FormData
from aiortc import RTCPeerConnection

import gateway.transports.webrtc
from gateway.app.application import REGISTRY
from gateway.config import EventsConfig, GatewayConfig, LimitsConfig
from gateway.ops.metrics import GatewayMetrics
from gateway.protocol.session_settings import SessionSettings
from gateway.session.items import MAX_RETRIEVABLE_ITEMS
from gateway.session.outbox import MAX_EVENTS_BEFORE_OPEN
from gateway.session.session import RealtimeSession
from gateway.transports.memory import MemoryTransport
from tests.security.strategies import OFFER
from tests.security.support import Client, MakeClient
from tests.support.fakes import fake_engines
from tests.support.ops import real_offer

CALLS = "/v1/realtime/calls"
CLIENT_SECRETS = "/v1/realtime/client_secrets"


@pytest.fixture
def make_unrated_client(make_client: MakeClient) -> MakeClient:
    """:func:`make_client` without the per-client call rate (these tests place many offers)."""
    async def make(**limits: Any) -> Client:
        limits.setdefault("calls_per_client_per_minute", 0)
        return await make_client(**limits)

    return make


async def error_of(response: Any) -> tuple[int, str]:
    body = await response.json()
    return response.status, body["error"]["code"]


async def test_malformed_multipart_and_a_form_without_sdp_get_their_codes(make_unrated_client: MakeClient) -> None:
    client = await make_unrated_client()
    garbage = await client.post(CALLS, data=b"--nope\r\nthis is no multipart body",
                                headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert await error_of(garbage) == (400, "invalid_multipart")
    no_boundary = await client.post(CALLS, data=b"sdp=v%3D0", headers={"Content-Type": "multipart/form-data"})
    assert await error_of(no_boundary) == (400, "invalid_multipart")
    nested = ("--outer\r\nContent-Type: multipart/mixed; boundary=inner\r\n\r\n--inner\r\n\r\nx\r\n--inner--\r\n"
              "--outer--\r\n")
    response = await client.post(CALLS, data=nested.encode(),
                                 headers={"Content-Type": "multipart/form-data; boundary=outer"})
    assert await error_of(response) == (400, "invalid_multipart")

    form = FormData()
    form.add_field("session", json.dumps({"instructions": "Hi."}), content_type="application/json")
    form.add_field("offer", await real_offer(), content_type="application/sdp")  # misnamed: not "sdp"
    assert await error_of(await client.post(CALLS, data=form)) == (400, "missing_sdp")
    assert len(client.app[REGISTRY]) == 0
    assert (await client.get("/healthz")).status == 200


async def test_a_client_secret_request_over_64_kib_gets_body_too_large(make_unrated_client: MakeClient) -> None:
    client = await make_unrated_client()
    just_over = json.dumps({"session": {"instructions": "x" * (64 * 1024)}}).encode()
    assert 64 * 1024 < len(just_over) < 70 * 1024  # under the app's own body limit: the endpoint's check answers
    response = await client.post(CLIENT_SECRETS, data=just_over, headers={"Content-Type": "application/json"})
    assert await error_of(response) == (413, "body_too_large")
    response = await client.post(CLIENT_SECRETS, data=io.BytesIO(b"{" + b" " * (1024 * 1024) + b"}"),
                                 headers={"Content-Type": "application/json"})
    assert await error_of(response) == (413, "body_too_large")
    fine = await client.post(CLIENT_SECRETS, json={"session": {"instructions": "Hi."}})
    assert fine.status == 200


def memory_session(metrics: GatewayMetrics | None = None,
                   config: GatewayConfig | None = None) -> tuple[RealtimeSession, MemoryTransport]:
    config = config or GatewayConfig(events=EventsConfig(file=""))
    engines, _ = fake_engines()
    transport = MemoryTransport("rtc_doc")
    session = RealtimeSession("rtc_doc", config, engines, SessionSettings.from_config(config, engines.tts.voices),
                              transport, on_closed=lambda _s: None, observer=metrics or GatewayMetrics())
    return session, transport


async def test_events_dropped_before_the_event_channel_opens_are_counted_in_metrics_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    metrics = GatewayMetrics()
    session, transport = memory_session(metrics)
    try:
        for _ in range(MAX_EVENTS_BEFORE_OPEN + 10):
            session.send({"type": "test.filler"})
        transport.open()
        assert len(transport.sent) == 1 + MAX_EVENTS_BEFORE_OPEN
        assert metrics.registry.get_sample_value("voice_gateway_server_events_dropped_total") == 10
        warnings = [r.getMessage() for r in caplog.records if r.name == "gateway.session.outbox"]
        assert any("10 event(s) had been dropped" in w and "rtc_doc" in w for w in warnings), warnings
    finally:
        await session.close()


async def test_the_retrieve_cache_keeps_the_512_latest_items() -> None:
    config = GatewayConfig(events=EventsConfig(file=""), limits=LimitsConfig(max_events_per_second=100_000))
    session, transport = memory_session(config=config)
    transport.open()
    try:
        for n in range(MAX_RETRIEVABLE_ITEMS + 1):
            transport.receive(json.dumps({"type": "conversation.item.create", "item": {
                "id": f"item_{n}", "type": "message", "role": "assistant",
                "content": [{"type": "output_text", "text": f"number {n}"}]}}))
        for n in (0, 1, MAX_RETRIEVABLE_ITEMS):
            transport.receive(json.dumps({"type": "conversation.item.retrieve", "item_id": f"item_{n}",
                                          "event_id": f"get_{n}"}))
        retrieved = [e["item"]["id"] for e in transport.sent if e["type"] == "conversation.item.retrieved"]
        errors = [(e["error"]["code"], e["error"]["event_id"]) for e in transport.sent if e["type"] == "error"]
        assert retrieved == ["item_1", f"item_{MAX_RETRIEVABLE_ITEMS}"]  # the oldest was forgotten ...
        assert errors == [("item_not_found", "get_0")]  # ... and asking for it is an error, not a crash
    finally:
        await session.close()


class CountedPeerConnection(RTCPeerConnection):
    created: ClassVar[list[RTCPeerConnection]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        CountedPeerConnection.created.append(self)


@pytest.fixture
def peer_connections(monkeypatch: pytest.MonkeyPatch) -> list[RTCPeerConnection]:
    """Every RTCPeerConnection the gateway's WebRTC transport creates from now on."""
    created: list[RTCPeerConnection] = []
    monkeypatch.setattr(CountedPeerConnection, "created", created)
    monkeypatch.setattr(gateway.transports.webrtc, "RTCPeerConnection", CountedPeerConnection)
    return created


async def test_offers_refused_by_validation_or_admission_create_no_peer_connection(
        make_unrated_client: MakeClient, peer_connections: list[RTCPeerConnection]) -> None:
    client = await make_unrated_client(max_calls=1, calls_per_client_per_minute=60, call_burst_per_client=20)
    sdp = {"Content-Type": "application/sdp"}
    no_fingerprint = "\r\n".join(line for line in OFFER.split("\r\n") if not line.startswith("a=fingerprint"))
    refused = [
        (b"", sdp), (b"not sdp", sdp), (OFFER.replace("m=audio", "m=video").encode(), sdp),
        (no_fingerprint.encode(), sdp), (OFFER.replace("actpass", "active").encode(), sdp),
        ((OFFER + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" * 9).encode(), sdp),
        (io.BytesIO(b"v=0\r\n" + b"a=x\r\n" * 20_000), sdp), (OFFER.encode(), {"Content-Type": "text/plain"}),
    ]
    for body, headers in refused:
        response = await client.post(CALLS, data=body, headers=headers)
        assert 400 <= response.status < 500, (response.status, repr(body)[:60])
    form = FormData()
    form.add_field("sdp", OFFER, content_type="application/sdp")
    form.add_field("session", json.dumps({"voice": "nobody"}), content_type="application/json")
    assert await error_of(await client.post(CALLS, data=form)) == (400, "invalid_session")
    assert peer_connections == []

    assert (await client.post(CALLS, data=await real_offer(), headers=sdp)).status == 201
    assert len(peer_connections) == 1
    assert await error_of(await client.post(CALLS, data=await real_offer(), headers=sdp)) == (503, "capacity")
    for _ in range(20):  # the burst is used up: 429 rate_limited
        await client.post(CALLS, data=OFFER, headers=sdp)
    assert await error_of(await client.post(CALLS, data=OFFER, headers=sdp)) == (429, "rate_limited")
    assert len(peer_connections) == 1  # only the admitted call's


@pytest.mark.parametrize(("line", "broken"), [
    ("a=rtpmap:96 opus/48000/2", "a=rtpmap:96 opus/abc/2"),
    ("a=ssrc:3433854936 cname:", "a=ssrc:x cname:"),
])
async def test_an_offer_only_aiortc_refuses_costs_one_peer_connection_closed_at_once(
        make_unrated_client: MakeClient, peer_connections: list[RTCPeerConnection], line: str, broken: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """docs/security.md ("Bad input"): such an offer passes the gateway's own checks, so a peer connection
    is made to apply it; when aiortc refuses it, that connection is closed before the 400 is sent."""
    caplog.set_level(logging.INFO, "gateway.transports.webrtc")
    client = await make_unrated_client()
    response = await client.post(CALLS, data=OFFER.replace(line, broken), headers={"Content-Type": "application/sdp"})
    assert await error_of(response) == (400, "invalid_sdp")
    assert len(peer_connections) <= 1
    assert all(pc.connectionState == "closed" for pc in peer_connections)
    assert len(client.app[REGISTRY]) == 0
