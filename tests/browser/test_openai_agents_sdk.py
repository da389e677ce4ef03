"""A client we did not write: the official OpenAI Agents SDK's WebRTC transport, in Chromium.

``@openai/agents-realtime`` (its browser bundle, unmodified) runs in a test page served from
another origin than the gateway, so the call also goes through CORS and its preflight. Only the
transport's ``baseUrl`` points at the gateway.
"""

from __future__ import annotations

import json

import pytest
from yarl import URL

from tests.browser.conftest import LaunchBrowser, silence, speech
from tests.support.speech import utterance, word_error_rate

pytestmark = pytest.mark.slow

#: connect() resolves on session.updated, or after 5 s without it.
SDK_CONFIG_ACK_TIMEOUT_MS = 5000


async def test_the_agents_sdk_webrtc_transport_talks_to_the_gateway(
    launch_browser: LaunchBrowser, gateway_url: str, sdk_page_url: str
) -> None:
    assert URL(sdk_page_url).origin() != URL(gateway_url).origin()  # a cross-origin call: CORS and preflight
    clip = utterance("ps_goforward.wav")
    browser = await launch_browser([silence(2.5), speech(clip.file), silence(8)])
    page = await browser.new_page(f"{sdk_page_url}?gateway={gateway_url}")
    await page.wait_for("typeof window.startSdk === 'function'", within=20)  # the bundle is 6 MB
    await page.evaluate("startSdk()")
    state = await page.wait_for("sdkTest.status !== 'connecting' && sdkTest", within=15)
    assert state["status"] == "connected", state["error"]
    # connect() waited for the answer to the SDK's own session.update (semantic_vad and all).
    assert state["connectMs"] < SDK_CONFIG_ACK_TIMEOUT_MS, state

    await page.wait_for("sdkTest.turnsDone.length > 0", within=30)
    state = await page.evaluate("sdkTest")
    # The caller's transcript, as the SDK parsed it.
    assert len(state["userTranscripts"]) == 1
    assert word_error_rate(clip.transcript, state["userTranscripts"][0]) <= 0.25, state["userTranscripts"]
    # The reply: its transcript deltas and response.done, and its audio on the SDK's audio element.
    spoken = state["turnsDone"][0]["transcript"]
    assert spoken.startswith("You said:") and state["replyDeltas"] == spoken, state
    await page.wait_for("sdkTest.replyAudibleMs >= 800", within=10)
    # The SDK keeps a history of items (from conversation.item.* and conversation.item.retrieved).
    items = list(state["items"].values())
    assert [item["role"] for item in items] == ["user", "assistant"], items
    assert items[0]["content"][0]["transcript"] == state["userTranscripts"][0]
    # Every OpenAI event the gateway sent parsed with the SDK's own schemas; only gateway.* extensions
    # are "generic" to it. And nothing the SDK sent was refused.
    generic = set(state["wire"]) - set(state["typed"])
    assert all(kind.startswith("gateway.") for kind in generic), sorted(generic)
    assert state["errors"] == [], json.dumps(state["errors"])
    await page.evaluate("stopSdk()")
