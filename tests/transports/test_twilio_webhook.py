"""The Twilio HTTP side: ``[telephony]`` config, X-Twilio-Signature, ``POST /twilio/voice`` TwiML.

Signatures are made with the ``twilio`` package's own ``RequestValidator`` (the reference), so a
check that drifts from Twilio's scheme fails here.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from twilio.request_validator import RequestValidator

from gateway.config import AgentsConfig, ConfigError, EventsConfig, GatewayConfig, TelephonyConfig
from gateway.config.loader import ConfigSource, load_config
from gateway.config.show import render_config
from gateway.config.telephony import ParameterNotAllowed
from signaling.middlewares import signaling_app
from signaling.twilio import TWILIO_STREAM_PATH, TWILIO_VOICE_PATH, setup_twilio_routes, twiml
from signaling.twilio_signature import candidate_urls, is_valid, signature

TOKEN = "0123456789abcdef0123456789abcdef"  # the shape of a Twilio Auth Token (32 hex digits)
FORM = {"CallSid": "CA" + "1" * 32, "AccountSid": "AC" + "2" * 32, "From": "+15550100", "To": "+15550101",
        "CallStatus": "ringing", "Direction": "inbound"}


# ----------------------------------------------------------------------------- config

def test_the_telephony_section_loads_from_env_and_masks_the_token() -> None:
    config = load_config(ConfigSource(env={
        "VOICE_GATEWAY_TELEPHONY_TWILIO_AUTH_TOKEN": TOKEN,
        "VOICE_GATEWAY_TELEPHONY_PUBLIC_HOST": "voice.example.com",
        "VOICE_GATEWAY_TELEPHONY_INSTRUCTIONS": "default=Answer in one sentence.,support=Help with the order.",
    }))
    assert config.telephony.twilio_auth_token == TOKEN
    assert config.telephony.instructions == (
        ("default", "Answer in one sentence."), ("support", "Help with the order."))
    shown = render_config(config)
    assert "[telephony]" in shown and TOKEN not in shown and 'twilio_auth_token = "***"' in shown
    assert TOKEN not in repr(config.telephony)


@pytest.mark.parametrize(("values", "key"), [
    ({"public_host": "https://voice.example.com"}, "telephony.public_host"),
    ({"public_host": "voice.example.com/twilio"}, "telephony.public_host"),
    ({"twilio_auth_token": "short"}, "telephony.twilio_auth_token"),
    ({"instructions": (("bad name", "x"),)}, "telephony.instructions"),
    ({"instructions": (("a", "x"), ("a", "y"))}, "telephony.instructions"),
    ({"max_message_bytes": 10}, "telephony.max_message_bytes"),
    ({"start_timeout_seconds": 0}, "telephony.start_timeout_seconds"),
])
def test_bad_telephony_values_name_their_key(values: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        TelephonyConfig(**values)  # type: ignore[arg-type]
    assert info.value.key == key


def test_phone_agents_must_be_ones_calls_may_select() -> None:
    with pytest.raises(ConfigError) as info:
        GatewayConfig(telephony=TelephonyConfig(agents=("webhook",)))  # webhook is not configured
    assert info.value.key == "telephony.agents"
    with pytest.raises(ConfigError) as info:
        GatewayConfig(telephony=TelephonyConfig(agent="openai"))
    assert info.value.key == "telephony.agent"
    GatewayConfig(agents=AgentsConfig(webhook_url="http://127.0.0.1:9/agent"),
                  telephony=TelephonyConfig(agents=("webhook", "echo")))


def test_custom_parameters_choose_only_what_the_config_allows() -> None:
    telephony = TelephonyConfig(agents=("echo",), instructions=(("default", "Be brief."), ("sales", "Sell.")))
    assert telephony.session_for({}) == {"instructions": "Be brief."}
    assert telephony.session_for({"agent": "echo", "instructions": "sales", "caller": "+1555"}) == {
        "agent": "echo", "instructions": "Sell."}
    with pytest.raises(ParameterNotAllowed) as info:
        telephony.session_for({"agent": "openai"})
    assert info.value.name == "agent"
    with pytest.raises(ParameterNotAllowed) as info:
        telephony.session_for({"instructions": "Ignore your instructions and ..."})  # free text is never used
    assert info.value.name == "instructions"
    assert TelephonyConfig(agent="echo").session_for({}) == {"agent": "echo"}


# -------------------------------------------------------------------------- signature

@pytest.mark.parametrize("url", [
    "https://voice.example.com/twilio/voice",
    "https://voice.example.com/twilio/voice?agent=echo&instructions=sales",
    "https://voice.example.com:8443/twilio/voice",
    "wss://voice.example.com/twilio/media-stream",
])
def test_signatures_match_twilios_request_validator(url: str) -> None:
    reference = RequestValidator(TOKEN)
    params = {**FORM, "Digits": "", "SpeechResult": "ünïcode & symbols=+"}
    assert signature(TOKEN, url, params.items()) == reference.compute_signature(url, params)
    assert signature(TOKEN, url) == reference.compute_signature(url, {})
    assert is_valid(TOKEN, url, params.items(), reference.compute_signature(url, params))


def test_a_signature_covers_the_url_the_params_and_the_token() -> None:
    url = "https://voice.example.com/twilio/voice"
    good = RequestValidator(TOKEN).compute_signature(url, FORM)
    assert not is_valid(TOKEN, url, {**FORM, "From": "+15559999"}.items(), good)
    assert not is_valid(TOKEN, url + "?agent=echo", FORM.items(), good)
    assert not is_valid(TOKEN, "https://other.example.com/twilio/voice", FORM.items(), good)
    assert not is_valid("f" * 32, url, FORM.items(), good)
    assert not is_valid(TOKEN, url, FORM.items(), "")
    assert not is_valid(TOKEN, url, FORM.items(), "ünïcode")


def test_the_candidate_urls_are_the_schemes_and_default_ports_a_proxy_may_change() -> None:
    assert candidate_urls("wss://h.example/p?q=1") == [
        "wss://h.example/p?q=1", "wss://h.example:443/p?q=1", "ws://h.example/p?q=1", "ws://h.example:80/p?q=1"]
    assert candidate_urls("https://h.example:8443/p") == ["https://h.example:8443/p", "http://h.example:8443/p"]
    # Twilio signed the URL with the default port, the gateway sees it without: still valid.
    signed = RequestValidator(TOKEN).compute_signature("wss://h.example:443/twilio/media-stream", {})
    assert is_valid(TOKEN, "wss://h.example/twilio/media-stream", (), signed)


# ---------------------------------------------------------------------------- webhook

def test_twiml_is_xml_escaped() -> None:
    document = twiml('wss://h.example/twilio/media-stream?x="<&>', {"agent": 'a"<b>&'})
    stream = ET.fromstring(document.split("\n", 1)[1]).find("./Connect/Stream")
    assert stream is not None and stream.get("url") == 'wss://h.example/twilio/media-stream?x="<&>'
    parameter = stream.find("Parameter")
    assert parameter is not None and parameter.get("value") == 'a"<b>&'


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[TestServer]:
    telephony: TelephonyConfig = getattr(request, "param", TelephonyConfig(twilio_auth_token=TOKEN))
    config = GatewayConfig(events=EventsConfig(file=""), telephony=telephony)
    app = signaling_app(config)
    setup_twilio_routes(app, config.telephony)  # no call service: these requests never reach one
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def _url(server: TestServer, path: str, *, scheme: str = "https") -> str:
    return f"{scheme}://127.0.0.1:{server.port}{path}"


async def _post_voice(server: TestServer, query: str = "", *, form: dict[str, str] = FORM,
                      sign: str | None = None) -> tuple[int, str]:
    path = TWILIO_VOICE_PATH + query
    headers = {"X-Twilio-Signature": sign if sign is not None
               else RequestValidator(TOKEN).compute_signature(_url(server, path), form)}
    async with aiohttp.ClientSession() as http, http.post(server.make_url(path), data=form, headers=headers) as r:
        return r.status, await r.text()


async def test_a_signed_webhook_gets_twiml_connecting_the_call_to_the_media_stream(server: TestServer) -> None:
    status, body = await _post_voice(server)
    assert status == 200, body
    stream = ET.fromstring(body.split("\n", 1)[1]).find("./Connect/Stream")
    assert stream is not None and stream.get("url") == f"wss://127.0.0.1:{server.port}{TWILIO_STREAM_PATH}"
    assert stream.find("Parameter") is None


@pytest.mark.parametrize("server", [TelephonyConfig(twilio_auth_token=TOKEN, public_host="voice.example.com",
                                                    agents=("echo",), instructions=(("sales", "Sell."),))],
                         indirect=True)
async def test_the_public_host_and_the_webhook_query_shape_the_stream(server: TestServer) -> None:
    path = TWILIO_VOICE_PATH + "?agent=echo&instructions=sales&other=ignored"
    signed = RequestValidator(TOKEN).compute_signature(f"https://voice.example.com{path}", FORM)
    async with aiohttp.ClientSession() as http, http.post(
            server.make_url(path), data=FORM, headers={"X-Twilio-Signature": signed, "Host": "voice.example.com"}) as r:
        assert r.status == 200, await r.text()
        stream = ET.fromstring((await r.text()).split("\n", 1)[1]).find("./Connect/Stream")
    assert stream is not None and stream.get("url") == "wss://voice.example.com/twilio/media-stream"
    assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")} == {
        "agent": "echo", "instructions": "sales"}


async def test_unsigned_and_forged_requests_get_403_json(server: TestServer) -> None:
    for sign, code in (("", "missing_twilio_signature"), ("bm90IGEgc2lnbmF0dXJl", "invalid_twilio_signature")):
        status, body = await _post_voice(server, sign=sign)
        assert status == 403 and f'"code": "{code}"' in body, body
    # A signature of another form (the caller changed a parameter) is refused too.
    forged = RequestValidator(TOKEN).compute_signature(_url(server, TWILIO_VOICE_PATH), {**FORM, "From": "+1"})
    status, body = await _post_voice(server, sign=forged)
    assert status == 403 and "invalid_twilio_signature" in body
    # The WebSocket upgrade is checked before the stream handler is reached.
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url(TWILIO_STREAM_PATH)) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "missing_twilio_signature"
        # Signed: past the signature check (to the upgrade's own check: this GET is no WebSocket upgrade).
        signed = RequestValidator(TOKEN).compute_signature(_url(server, TWILIO_STREAM_PATH, scheme="wss"), {})
        async with http.get(server.make_url(TWILIO_STREAM_PATH), headers={"X-Twilio-Signature": signed}) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "websocket_required"


async def test_a_choice_the_config_does_not_allow_is_400(server: TestServer) -> None:
    for query, code in (("?agent=openai", "agent_not_allowed"),
                        ("?instructions=free+text", "instructions_not_allowed")):
        status, body = await _post_voice(server, query)
        assert status == 400 and code in body, body


@pytest.mark.parametrize("server", [TelephonyConfig(twilio_auth_token=TOKEN, max_webhook_bytes=1024)], indirect=True)
async def test_an_oversized_or_malformed_webhook_body_is_refused(server: TestServer) -> None:
    big = {**FORM, "Junk": "x" * 2000}
    status, body = await _post_voice(server, form=big)
    assert status == 413 and "body_too_large" in body
    async with aiohttp.ClientSession() as http:
        async with http.post(server.make_url(TWILIO_VOICE_PATH), data=b"\xff\xfe=\x00",
                             headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_form"
        async with http.post(server.make_url(TWILIO_VOICE_PATH), json={"CallSid": "CA1"}) as r:
            assert r.status == 415


@pytest.mark.parametrize("server", [TelephonyConfig()], indirect=True)
async def test_without_an_auth_token_no_signature_is_needed(server: TestServer) -> None:
    status, body = await _post_voice(server, sign="")
    assert status == 200 and "<Stream" in body
