"""Finding 10 of the security review: agent failures no longer tell the caller about the upstream.

The ``error`` event used to carry the ``openai`` agent's base URL, the host and port of a failed
connection, and up to 300 bytes of the upstream's error body. Now the caller gets the stable code
and a generic message ("the webhook agent answered with an HTTP error"), hears the apology, and the
details (URL, host, port, body, the upstream's own error message) go to the log with the call id.

Each case is a real request, from the real agent through aiohttp, to a closed port, a local
upstream that fails, or a host name that does not resolve; the caller is a RealtimeSession on the
memory transport, and once more a real WebRTC caller through the whole HTTP and data-channel path.
"""

from __future__ import annotations

import json
import logging
import socket

import pytest
from aiohttp.test_utils import TestServer

from gateway.app.application import create_app
from gateway.protocol.server_events import Event
from qa.caller import Caller
from tests.gateway.agents.upstream_server import Behaviour, scripted_upstream, status, stream
from tests.security.agent_sessions import agent_config, engines_for, memory_session

AGENTS = ["openai", "webhook"]
SECRET_BODY = ("Traceback (most recent call last): psycopg.OperationalError: password=hunter2-s3cr3t "
               "for postgres.internal.corp:5432")
SECRET_PATH = "/private/tenant-4711"
UNRESOLVABLE = "http://upstream-7f3a9c.invalid:8719/hidden-path-5d2e"
STREAMED_ERROR = "internal: key sk-live-0123456789 expired on billing-7.internal"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _agent_url(agent: str, base: str) -> str:
    return base + ("/v1" if agent == "openai" else "/turn")


def _error_stream(agent: str) -> Behaviour:
    if agent == "openai":
        chunk = json.dumps({"error": {"message": STREAMED_ERROR}})
        return stream([f"data: {chunk}\n\n"], content_type="text/event-stream")
    return stream([json.dumps({"error": STREAMED_ERROR}) + "\n"], content_type="application/x-ndjson")


def _errors(sent: list[Event]) -> list[dict[str, object]]:
    return [event["error"] for event in sent if event["type"] == "error"]


def _assert_nothing_leaks(sent: list[Event], secrets: list[str]) -> None:
    everything = json.dumps(sent)
    for secret in secrets:
        assert secret not in everything, f"{secret!r} reached the caller"


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("gateway.agents"))


async def _ask(agent: str, url: str) -> tuple[dict[str, object], Event, list[Event]]:
    """One text turn and ``response.create``: (the error event's ``error``, ``response.done``, all sent)."""
    async with memory_session(agent_config(agent, url), call_id="rtc_leaky") as line:
        line.add_item("item_q", "what is my balance")
        done = await line.respond()
        sent = list(line.transport.sent)
    [error] = _errors(sent)
    return error, done, sent


@pytest.mark.parametrize("agent", AGENTS)
async def test_a_closed_port_gives_agent_unreachable_without_host_or_port(
        agent: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    port = _closed_port()
    error, done, sent = await _ask(agent, _agent_url(agent, f"http://127.0.0.1:{port}"))
    assert (error["code"], error["message"], error["type"]) == (
        "agent_unreachable", f"the {agent} agent is unreachable", "server_error")
    assert done["response"]["status"] == "failed"
    assert done["response"]["output"][0]["content"][0]["transcript"] == "Sorry, I can't answer that right now."
    _assert_nothing_leaks(sent, ["127.0.0.1", f":{port}", "/v1", "/turn", "Cannot connect", "Connect call"])
    logged = _logged(caplog)
    assert "call rtc_leaky" in logged and "agent_unreachable" in logged
    assert f"127.0.0.1:{port}" in logged  # the operator sees where, and why
    assert _agent_url(agent, f"http://127.0.0.1:{port}") in logged


@pytest.mark.parametrize("agent", AGENTS)
async def test_an_http_500_with_a_secret_body_gives_agent_http_error_without_the_body_or_the_url(
        agent: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with scripted_upstream(status(500, SECRET_BODY)) as upstream:
        port = upstream.url.rsplit(":", 1)[1]
        url = _agent_url(agent, upstream.url + SECRET_PATH)
        error, done, sent = await _ask(agent, url + "?api_key=in-the-query-string")
        assert upstream.exchanges and upstream.exchanges[0].path.startswith(SECRET_PATH)  # it did reach the upstream
    assert (error["code"], error["message"]) == ("agent_http_error", f"the {agent} agent answered with an HTTP error")
    assert done["response"]["status"] == "failed"
    _assert_nothing_leaks(sent, ["hunter2", "postgres.internal", "Traceback", "psycopg", "tenant-4711",
                                 "127.0.0.1", f":{port}", "HTTP 500", "api_key", "in-the-query-string"])
    logged = _logged(caplog)
    assert "call rtc_leaky" in logged and "HTTP 500" in logged and "hunter2-s3cr3t" in logged
    assert url in logged  # the URL, without its query string ...
    assert "in-the-query-string" not in logged  # ... which may hold a secret


@pytest.mark.parametrize("agent", AGENTS)
async def test_a_distinctive_host_name_and_path_never_reach_the_caller(
        agent: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    error, done, sent = await _ask(agent, UNRESOLVABLE)
    assert error["code"] in ("agent_unreachable", "agent_timeout")  # no DNS here: it fails to resolve at once
    assert str(error["message"]).startswith(f"the {agent} agent ")
    assert done["response"]["status"] == "failed"
    _assert_nothing_leaks(sent, ["upstream-7f3a9c", ".invalid", "8719", "hidden-path-5d2e"])
    logged = _logged(caplog)
    assert "call rtc_leaky" in logged and "upstream-7f3a9c.invalid:8719/hidden-path-5d2e" in logged


@pytest.mark.parametrize("agent", AGENTS)
async def test_an_error_the_upstream_streams_is_logged_not_relayed(
        agent: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with scripted_upstream(_error_stream(agent)) as upstream:
        error, _, sent = await _ask(agent, _agent_url(agent, upstream.url))
    assert (error["code"], error["message"]) == ("agent_upstream_error", f"the {agent} agent reported an error")
    _assert_nothing_leaks(sent, ["sk-live", "billing-7", "expired"])
    assert STREAMED_ERROR in _logged(caplog)


@pytest.mark.parametrize("agent", AGENTS)
async def test_through_a_real_webrtc_call_the_error_event_has_the_code_and_no_details(
        agent: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with scripted_upstream(status(500, SECRET_BODY)) as upstream:
        config = agent_config(agent, _agent_url(agent, upstream.url + SECRET_PATH))
        engines = engines_for(config)
        server = TestServer(create_app(config, engines=engines), host="127.0.0.1")
        await server.start_server()
        caller = Caller(str(server.make_url("")).rstrip("/"))
        try:
            await caller.connect()
            call_id = (await caller.wait_event("session.created"))["session"]["id"]
            caller.send({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "what is my balance"}]}})
            caller.send({"type": "response.create"})
            error = (await caller.wait_event("error", timeout=15))["error"]
            done = await caller.wait_event("response.done", timeout=15)
            received = [event for _, event in caller.events]
        finally:
            await caller.hangup()
            await server.close()
            engines.agents.close()
    assert (error["code"], error["message"]) == ("agent_http_error", f"the {agent} agent answered with an HTTP error")
    assert done["response"]["status"] == "failed"
    _assert_nothing_leaks(received, ["hunter2", "postgres.internal", "Traceback", "tenant-4711", "127.0.0.1"])
    logged = _logged(caplog)
    assert f"call {call_id}" in logged and "hunter2-s3cr3t" in logged and "tenant-4711" in logged
