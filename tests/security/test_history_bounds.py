"""Finding 4 of the security review: a call's conversation history no longer grows without bound.

``conversation.item.create`` at the allowed rate (50 events/s, items up to the 64 KiB event limit)
added ~3 MB/s to a call's history, kept for the life of the call, and the ``openai`` and
``webhook`` agents sent all of it upstream on every reply, serialised on the event loop. Now:

* the history keeps at most ``limits.max_history_items`` (200) items and
  ``limits.max_history_chars`` (200,000) characters, the oldest dropped first and counted
  (``voice_gateway_history_items_dropped_total``, and one log line per call);
* each reply sends only the most recent ``limits.max_agent_history_items`` (50) items within
  ``limits.max_agent_history_chars`` (32,000) characters, so its body is small and cheap to
  serialise, checked on the body a real local upstream received;
* items are not activity: a call that only sends items ends at ``limits.idle_timeout_seconds``
  (through the real HTTP, WebRTC and data-channel paths).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from gateway.agents.base import ConversationItem, HistoryWindow
from gateway.config import LimitsConfig
from gateway.ops.metrics import GatewayMetrics
from gateway.voice.history import History
from qa.caller import Caller
from tests.gateway.agents.upstream_server import chat_sse, scripted_upstream, stream
from tests.security.agent_sessions import agent_config, memory_session
from tests.security.support import running_gateway
from tests.support.fakes import fake_engines

FLOOD = LimitsConfig(max_events_per_second=100_000)  # the flood is not rate-limited: the bounds alone hold it
BIG_ITEM = 20_000  # characters: 400 of them are 8 million, 40 times the history's bound
DROPPED = "voice_gateway_history_items_dropped_total"


def history_of(line: Any) -> History:
    history: History = line.session.conversation._history
    return history


def upstream_items(agent: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversation items a request carried, as {"id"?, "text"}."""
    if agent == "webhook":
        return [{"id": item["id"], "text": item["text"]} for item in body["history"]]
    return [{"text": message["content"]} for message in body["messages"] if message["role"] != "system"]


def dumps_ms(body: Any) -> float:
    """The best of five ``json.dumps`` of ``body`` (what aiohttp does on the event loop), in ms."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        json.dumps(body)
        best = min(best, time.perf_counter() - started)
    return best * 1000


async def test_a_flood_of_items_stays_within_the_history_bounds_and_the_drops_are_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    limits = LimitsConfig()
    assert (limits.max_history_items, limits.max_history_chars) == (200, 200_000)  # the defaults tested
    metrics = GatewayMetrics()
    caplog.set_level(logging.INFO, logger="gateway.voice.history")
    async with scripted_upstream(stream(["ok"])) as upstream, \
            memory_session(agent_config("webhook", upstream.url, limits=FLOOD), observer=metrics) as line:
        history = history_of(line)
        for n in range(400):  # big items: the character bound holds
            line.add_item(f"item_big_{n}", f"{n:05d}" + "x" * (BIG_ITEM - 5))
            assert sum(len(item.text) for item in history.items) <= 200_000 and len(history.items) <= 200
        assert len(history.items) == 10
        assert [item.id for item in history.items] == [f"item_big_{n}" for n in range(390, 400)]  # the newest
        for n in range(1000):  # small items: the item bound holds
            line.add_item(f"item_small_{n}", f"small item {n}")
        assert len(history.items) == 200
        assert [item.id for item in history.items] == [f"item_small_{n}" for n in range(800, 1000)]
        assert history.chars == sum(len(item.text) for item in history.items)
        assert history.dropped == 1400 - 200
        assert metrics.registry.get_sample_value(DROPPED) == 1200  # the metric counts every dropped item
        assert [e for e in line.transport.sent if e["type"] == "error"] == []  # items are not refused, only bounded
    warnings = [r for r in caplog.records if r.name == "gateway.voice.history"]
    assert len(warnings) == 1 and "rtc_review" in warnings[0].getMessage()  # logged once per call, with its id


@pytest.mark.parametrize("agent", ["webhook", "openai"])
async def test_what_a_reply_sends_upstream_is_the_most_recent_items_within_the_agent_bounds(agent: str) -> None:
    window = HistoryWindow()
    assert (window.max_items, window.max_chars) == (50, 32_000)  # the defaults tested
    reply = stream(["Fine."], encode=chat_sse, content_type="text/event-stream", trailer="data: [DONE]\n\n") \
        if agent == "openai" else stream(["Fine."])
    async with scripted_upstream(reply) as upstream:
        url = upstream.url + ("/v1" if agent == "openai" else "/turn")
        async with memory_session(agent_config(agent, url, limits=FLOOD)) as line:
            for n in range(300):
                line.add_item(f"item_big_{n}", "x" * BIG_ITEM)
            line.add_item("item_question", "what is the weather")
            assert (await line.respond())["response"]["status"] == "completed"
            body = (await upstream.wait_for(1)).body
            items = upstream_items(agent, body)
            assert [item["text"] for item in items] == ["x" * BIG_ITEM, "what is the weather"]  # 32,000 chars
            size = len(json.dumps(body))
            assert size < 70_000, size  # the whole request; before: 200,000 characters, and unbounded before that
            assert dumps_ms(body) < 5.0  # ~0.1 ms; the unbounded history of a minute of flooding took ~840 ms

            for n in range(300):
                line.add_item(f"item_small_{n}", f"small item {n}")
            assert (await line.respond())["response"]["status"] == "completed"
            items = upstream_items(agent, (await upstream.wait_for(2)).body)
            # the 50 most recent: the first reply's spoken answer is older than the 300 small items
            assert [item["text"] for item in items] == [f"small item {n}" for n in range(250, 300)]
            if agent == "webhook":
                assert items[-1]["id"] == "item_small_299"
                assert (await upstream.wait_for(2)).body["transcript"] == "small item 299"


def test_the_newest_item_is_always_sent_cut_to_the_character_bound() -> None:
    window = HistoryWindow(max_items=3, max_chars=1000)
    history = [ConversationItem(f"i{n}", "user", "y" * 400) for n in range(5)]
    assert [item.id for item in window.recent(history)] == ["i3", "i4"]  # 3 would be 1200 characters
    huge = ConversationItem("i_huge", "user", "z" * 5000)
    [only] = window.recent([*history, huge])
    assert (only.id, only.text, only.truncated) == ("i_huge", "z" * 1000, True)
    assert huge.text == "z" * 5000  # the call's own item is not changed


async def test_a_call_that_only_sends_items_ends_at_the_idle_timeout() -> None:
    """Items keep arriving (20 a second, under the rate limit) and the call still ends as idle."""
    async with running_gateway(fake_engines()[0], idle_timeout_seconds=1.0, end_notice_seconds=0.5) as gateway:
        caller = Caller(gateway.url)
        await caller.connect()
        try:
            connected = time.monotonic()
            sent = 0
            while not caller.events_of("gateway.session.ended") and time.monotonic() - connected < 5:
                caller.send({"type": "conversation.item.create", "item": {
                    "type": "message", "role": "user", "content": [{"type": "input_text", "text": f"item {sent}"}]}})
                sent += 1
                await caller.silence(0.05)
            ended = await caller.wait_event("gateway.session.ended", timeout=1)
            ended_after = time.monotonic() - connected
            assert ended["reason"] == "idle_timeout"
            assert ended_after < 2.5, ended_after  # idle from the start: items did not move the end
            assert sent >= 10
            assert len(caller.events_of("conversation.item.added")) >= 10  # the items were accepted
            assert caller.events_of("gateway.session.expiring")  # the caller was told before the end
        finally:
            await caller.hangup()
        call_id = caller.events_of("session.created")[0]["session"]["id"]
        reason, _ = await gateway.ends.wait(call_id, timeout=2)
        assert reason == "idle_timeout"
