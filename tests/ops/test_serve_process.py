"""SIGTERM on a gateway process with a live call: drain, refuse new calls, finish the turn, exit 0."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp
import pytest

from qa.caller import Caller
from tests.support.ops import GatewayProcess, get_json, real_offer
from tests.support.speech import utterance

pytestmark = pytest.mark.slow


async def test_sigterm_lets_the_live_call_finish_its_turn_refuses_new_calls_and_exits_zero(tmp_path: Path) -> None:
    events_path = tmp_path / "events.jsonl"
    gateway = GatewayProcess.serve(tmp_path, "--drain-timeout", "60", "--events-file", str(events_path),
                                   "--log-format", "json")
    caller = Caller(gateway.url)
    try:
        await gateway.wait_ready()
        await caller.connect()
        await caller.wait_event("session.created")
        clip = utterance("ps_goforward.wav")
        speaking = asyncio.create_task(caller.say(clip.audio(), 16_000))
        await asyncio.sleep(0.5)  # the caller is mid-sentence

        gateway.signal(signal.SIGTERM)
        for _ in range(40):
            status, body = await get_json(gateway.url, "/readyz")
            if status == 503:
                break
            await asyncio.sleep(0.05)
        assert (status, body["reason"]) == (503, "draining")
        async with aiohttp.ClientSession() as http, http.post(
                gateway.url + "/v1/realtime/calls", data=await real_offer(),
                headers={"Content-Type": "application/sdp"}) as response:
            assert response.status == 503
            assert "Retry-After" in response.headers
            assert (await response.json())["error"]["code"] == "draining"

        _, speech_end = await speaking
        done = await caller.wait_event("response.done", since=speech_end, timeout=60)
        assert done["response"]["status"] == "completed"
        assert caller.received.audible_seconds(since=speech_end) >= 1.0
        assert gateway.process.poll() is None  # still there for the live call
        assert not caller.events_of("gateway.session.ended")

        await caller.hangup()
        assert await gateway.wait_exit(20) == 0
    finally:
        gateway.kill()
        await caller.close()
    lifecycle = [json.loads(line) for line in events_path.read_text().splitlines()]
    assert [event["type"] for event in lifecycle] == ["call.started", "turn.completed", "call.ended"]
    call_id = lifecycle[0]["call_id"]
    logs = [json.loads(line) for line in gateway.log.splitlines() if line.startswith("{")]
    messages = [entry["message"] for entry in logs]
    assert any(message.startswith("SIGTERM: draining") for message in messages)
    about_the_call = [entry["message"] for entry in logs if entry.get("call_id") == call_id]
    assert any("started" in message for message in about_the_call)
    assert any(f"turn {lifecycle[1]['item_id']} done" in message for message in about_the_call)
    assert any("ended (hangup)" in message for message in about_the_call)
