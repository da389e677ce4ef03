"""Bad signaling input gets a documented JSON error and leaves nothing behind."""

from __future__ import annotations

import asyncio
import io
import re

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings

from gateway.app.application import REGISTRY
from gateway.config import EventsConfig, GatewayConfig, LimitsConfig
from signaling.errors import ApiError
from signaling.sdp import decode_sdp
from tests.security.strategies import SDP_ERRORS, sdp_bodies
from tests.support.ops import real_offer

CALLS = "/v1/realtime/calls"


@pytest.fixture
def gateway_config() -> GatewayConfig:
    """Per-client limits off: these tests post many offers from one address."""
    return GatewayConfig(events=EventsConfig(file=""),
                         limits=LimitsConfig(max_calls_per_client=0, calls_per_client_per_minute=0))


async def post(server: TestServer, body: bytes | str, content_type: str | None) -> aiohttp.ClientResponse:
    headers = {"Content-Type": content_type} if content_type else {}
    async with aiohttp.ClientSession() as http:
        response = await http.post(server.make_url(CALLS), data=body, headers=headers)
        await response.read()
        return response


def no_audio(sdp: str) -> str:
    out, skip = [], False
    for line in sdp.splitlines():
        if line.startswith("m="):
            skip = line.startswith("m=audio")
        if not skip:
            out.append(line)
    return "\r\n".join(out) + "\r\n"


async def error_of(response: aiohttp.ClientResponse) -> dict[str, str]:
    body = await response.json()
    assert set(body) == {"error"}
    assert {"type", "code", "message"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("garbage", 400, "invalid_sdp"),
        ("binary", 400, "invalid_sdp"),
        ("empty", 400, "empty_body"),
        ("no_audio", 400, "no_audio"),
        ("no_fingerprint", 400, "missing_fingerprint"),
        ("answer", 400, "not_an_offer"),
        ("too_large", 413, "sdp_too_large"),
        ("many_m_lines", 400, "too_many_media_sections"),
        ("bad_port", 400, "invalid_sdp"),
        ("wrong_type", 415, "unsupported_media_type"),
        ("unparseable", 400, "invalid_sdp"),
    ],
)
async def test_bad_offers_get_json_errors_and_create_nothing(
    gateway_server: TestServer, case: str, status: int, code: str
) -> None:
    offer = await real_offer()
    content_type: str | None = "application/sdp"
    body: bytes | str
    if case == "garbage":
        body = "hello, this is not SDP"
    elif case == "binary":
        body = bytes(range(256)) * 4
    elif case == "empty":
        body = b""
    elif case == "no_audio":
        body = no_audio(offer)
    elif case == "no_fingerprint":
        body = "\r\n".join(line for line in offer.splitlines() if not line.startswith("a=fingerprint")) + "\r\n"
    elif case == "answer":
        body = offer.replace("a=setup:actpass", "a=setup:active")
    elif case == "too_large":
        body = offer + "a=x-padding:" + "x" * 70_000 + "\r\n"
    elif case == "many_m_lines":
        body = offer + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" * 1000
    elif case == "bad_port":
        body = re.sub(r"m=audio \d+ ", "m=audio 99999999 ", offer, count=1)
    elif case == "wrong_type":
        body, content_type = offer, "text/plain"
    else:  # valid-looking lines that aiortc cannot apply
        body = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 00\r\na=setup:actpass\r\n"
    tasks_before = len(asyncio.all_tasks())
    response = await post(gateway_server, body, content_type)
    assert response.status == status
    error = await error_of(response)
    assert error["code"] == code
    assert error["type"] == "invalid_request_error"
    assert len(gateway_server.app[REGISTRY]) == 0
    await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) <= tasks_before


async def test_unknown_call_id_is_404(gateway_server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        response = await http.delete(gateway_server.make_url(f"{CALLS}/rtc_nope"))
        assert response.status == 404
        assert (await error_of(response))["code"] == "call_not_found"


async def test_multipart_offer_with_session_config_is_applied(gateway_server: TestServer) -> None:
    form = aiohttp.FormData()
    form.add_field("sdp", await real_offer(), content_type="application/sdp")
    form.add_field("session", '{"instructions": "Be brief.", "turn_detection": {"silence_duration_ms": 700}}',
                   content_type="application/json")
    async with aiohttp.ClientSession() as http:
        response = await http.post(gateway_server.make_url(CALLS), data=form)
        assert response.status == 201, await response.text()
        assert response.content_type == "application/sdp"
        location = response.headers["Location"]
        assert location.startswith(CALLS + "/rtc_")
        call = gateway_server.app[REGISTRY].get(location.rsplit("/", 1)[1])
        assert call.conversation.settings.instructions == "Be brief."
        assert call.conversation.settings.turn.silence_duration_ms == 700
        assert (await http.delete(gateway_server.make_url(location))).status == 204
        assert len(gateway_server.app[REGISTRY]) == 0


async def test_invalid_session_config_in_offer_is_400(gateway_server: TestServer) -> None:
    form = aiohttp.FormData()
    form.add_field("sdp", await real_offer(), content_type="application/sdp")
    form.add_field("session", '{"turn_detection": {"silence_duration_ms": -5}}', content_type="application/json")
    async with aiohttp.ClientSession() as http:
        response = await http.post(gateway_server.make_url(CALLS), data=form)
        assert response.status == 400
        error = await error_of(response)
        assert error["code"] == "invalid_session" and "silence_duration_ms" in error["message"]
    assert len(gateway_server.app[REGISTRY]) == 0


@pytest.mark.parametrize("session", ["[" * 50_000, '{"n": ' + "1" * 5000 + "}", "\udcff"])
async def test_a_hostile_session_part_is_invalid_session_not_a_server_error(gateway_server: TestServer,
                                                                          session: str) -> None:
    form = aiohttp.FormData()
    form.add_field("sdp", await real_offer(), content_type="application/sdp")
    form.add_field("session", io.BytesIO(session.encode("utf-8", "surrogateescape")), content_type="application/json")
    async with aiohttp.ClientSession() as http:
        response = await http.post(gateway_server.make_url(CALLS), data=form)
        assert response.status == 400
        assert (await error_of(response))["code"] == "invalid_session"
    assert len(gateway_server.app[REGISTRY]) == 0


@pytest.mark.parametrize("line", [
    "m=audio 9 UDP/TLS/RTP/SAVPF 300",  # payload type > 127
    "m=audio 9 UDP/TLS/RTP/SAVPF -1",
    "m=audio \u00b2 UDP/TLS/RTP/SAVPF 111",  # "²" is a digit to str.isdigit, not to int()
    "m=audio 9 UDP/TLS/RTP/SAVPF \u2460",  # "①"
    "m=audio " + "1" * 5000 + " UDP/TLS/RTP/SAVPF 111",  # int() refuses over 4,300 digits (found by fuzzing)
    "m=audio 9",
])
async def test_absurd_numbers_in_media_lines_are_invalid_sdp(gateway_server: TestServer, line: str) -> None:
    offer = await real_offer()
    body = re.sub(r"^m=audio .*$", line, offer, count=1, flags=re.MULTILINE)
    response = await post(gateway_server, body, "application/sdp")
    assert response.status == 400
    assert (await error_of(response))["code"] == "invalid_sdp"


@settings(max_examples=500, deadline=None)
@given(body=sdp_bodies())
def test_any_body_is_accepted_as_sdp_text_or_refused_with_a_documented_error(body: bytes) -> None:
    try:
        text = decode_sdp(body, max_bytes=64 * 1024)
    except ApiError as exc:
        assert exc.code in SDP_ERRORS.get(exc.status, set()), (exc.status, exc.code)
        return
    assert text.startswith("v=0\r\n") and "\x00" not in text


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=sdp_bodies())
async def test_malformed_offers_get_documented_errors_and_leave_nothing_behind(
        gateway_server: TestServer, body: bytes) -> None:
    tasks_before = len(asyncio.all_tasks())
    response = await post(gateway_server, body, "application/sdp")
    if response.status == 201:  # the mutations left a valid offer: a call, which hangs up cleanly
        async with aiohttp.ClientSession() as http:
            assert (await http.delete(gateway_server.make_url(response.headers["Location"]))).status == 204
    else:
        error = await error_of(response)
        assert error["code"] in SDP_ERRORS.get(response.status, set()), (response.status, error)
    assert len(gateway_server.app[REGISTRY]) == 0
    await asyncio.sleep(0.02)
    assert len(asyncio.all_tasks()) <= tasks_before
