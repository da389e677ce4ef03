"""Tool round trip: what the gateway adds between a tool's result and the first packet of the answer.

A real session (``RealtimeSession`` on the in-process memory transport, whose outbound track is paced
for real) with the real engines (Piper speaks), the ``openai`` agent pointed at a scripted Chat
Completions server on loopback. Each **tool** round: the model calls ``get_weather``; then the client's
``function_call_output`` and ``response.create`` are handed to the session (t0) and the model answers
from the result; t1 is when the answer's first audio frame leaves the track. The model's time to first
token (request arrival → first token written, measured at the server; ``--ttft-ms`` of sleep) is not the
gateway's:

    gateway share = (t1 − t0) − upstream time to first token
    gateway own   = gateway share − the first clause's synthesis (Piper, measured around the engine)

The **baseline** round, in the same run and alternating with it, is a plain reply: a user message and
``response.create`` (no tool), the same answer text. Both include the HTTP request, the first clause's
synthesis and the wait for the next 20 ms frame; the difference is what the tool loop itself costs.
Each round is cancelled once its first packet left (the answer need not be heard to the end).

Usage: python benchmarks/tool_roundtrip.py [--rounds 30] [--ttft-ms 50] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dataclasses  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402

from aiohttp import web  # noqa: E402

from benchmarks.machine import machine_speed  # noqa: E402
from engines.base import SpeechSynthesizer, SynthesizedAudio  # noqa: E402
from gateway.app.engines import load_engines, warm_up  # noqa: E402
from gateway.config import GatewayConfig  # noqa: E402
from gateway.protocol.server_events import Event  # noqa: E402
from gateway.transports.memory import MemoryTransport  # noqa: E402
from tests.agents.chat_script import WEATHER_CALL, WEATHER_TOOL, text_lines, tool_call_lines  # noqa: E402
from tests.gateway.agents.upstream_server import Exchange  # noqa: E402
from tests.session.tool_line import CONFIG, ToolLine, tool_line  # noqa: E402

ANSWER = ["It is sunny, ", "and twenty one degrees in Paris."]


class TimedTts(SpeechSynthesizer):
    """The real synthesiser, noting when each clause's synthesis started and when its first audio came."""

    def __init__(self, inner: SpeechSynthesizer) -> None:
        self._inner = inner
        self.sample_rate = inner.sample_rate
        self.voices = inner.voices
        self.calls: list[tuple[float, float]] = []

    async def synthesize(self, text: str, *, voice: str | None = None,
                         first: bool = False) -> AsyncIterator[SynthesizedAudio]:
        started = time.monotonic()
        produced = False
        async for audio in self._inner.synthesize(text, voice=voice, first=first):
            if not produced:
                produced = True
                self.calls.append((started, time.monotonic()))
            yield audio

    @property
    def queue_depth(self) -> int:
        return self._inner.queue_depth


class TimedTransport(MemoryTransport):
    """A memory transport that notes when each server event was sent (monotonic)."""

    def __init__(self, call_id: str) -> None:
        super().__init__(call_id)
        self.sent_at: list[float] = []

    def send_event(self, event: Event) -> None:
        self.sent_at.append(time.monotonic())
        super().send_event(event)


class Model:
    """The scripted model: calls the tool when asked about the weather, answers after ``ttft`` otherwise."""

    def __init__(self, ttft: float) -> None:
        self.ttft = ttft
        self.first_token_at: dict[int, float] = {}  # id(exchange) → when its first token was written

    async def __call__(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        messages = exchange.body["messages"]
        wants_tool = messages[-1]["role"] == "user" and "weather" in messages[-1]["content"]
        lines = tool_call_lines([WEATHER_CALL]) if wants_tool else text_lines(ANSWER)
        await asyncio.sleep(self.ttft)
        for index, line in enumerate(lines):
            await response.write(line.encode())
            if index == 1:
                self.first_token_at[id(exchange)] = time.monotonic()
        await response.write_eof()
        return response


async def _first_packet(call: ToolLine, model: Model, since: int, started: float) -> dict[str, float]:
    tts = call.session._engines.tts
    assert isinstance(tts, TimedTts)
    transport = call.transport
    assert isinstance(transport, TimedTransport)
    await transport.wait_event("output_audio_buffer.started", since=since, within=30)
    index = next(i for i in range(since, len(transport.sent)) if transport.sent[i]["type"] ==
                 "output_audio_buffer.started")
    first_packet_at = transport.sent_at[index]
    exchange = call.upstream.exchanges[-1]
    ttft = model.first_token_at[id(exchange)] - exchange.started_at
    mark = call.mark()
    call.send({"type": "response.cancel"})
    await transport.wait_event("response.done", since=mark, within=10)
    total = (first_packet_at - started) * 1000
    synthesis = next((first - begun for begun, first in tts.calls if begun >= started), 0.0) * 1000
    return {"total_ms": total, "upstream_ttft_ms": ttft * 1000, "gateway_ms": total - ttft * 1000,
            "first_clause_tts_ms": synthesis, "gateway_own_ms": total - ttft * 1000 - synthesis}


async def tool_round(call: ToolLine, model: Model) -> dict[str, float]:
    done = await call.ask("What is the weather in Paris?")
    call_id = done["response"]["output"][0]["call_id"]
    since = call.mark()
    started = time.monotonic()
    call.send({"type": "conversation.item.create",
               "item": {"type": "function_call_output", "call_id": call_id, "output": "sunny, 21 C"}})
    call.send({"type": "response.create"})
    return await _first_packet(call, model, since, started)


async def plain_round(call: ToolLine, model: Model) -> dict[str, float]:
    since = call.mark()
    started = time.monotonic()
    call.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "How are you?"}]}})
    call.send({"type": "response.create"})
    return await _first_packet(call, model, since, started)


def summary(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for key in ("total_ms", "upstream_ttft_ms", "gateway_ms", "first_clause_tts_ms", "gateway_own_ms"):
        values = sorted(row[key] for row in rows)
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        out[key] = {"p50": round(statistics.median(values), 1), "p95": round(p95, 1), "max": round(values[-1], 1)}
    return out


async def main(rounds: int, ttft_ms: float, out: Path) -> dict[str, Any]:
    before = machine_speed()
    loaded = await asyncio.to_thread(load_engines, GatewayConfig())
    await warm_up(loaded)
    engines = dataclasses.replace(loaded, tts=TimedTts(loaded.tts))
    model = Model(ttft_ms / 1000)
    results: dict[str, list[dict[str, float]]] = {"tool": [], "plain": []}
    config: GatewayConfig = CONFIG
    try:
        async with tool_line(model, config, engines=engines, transport=TimedTransport("rtc_bench")) as call:
            call.send({"type": "session.update", "session": {"tools": [WEATHER_TOOL]}})
            await call.transport.wait_event("session.updated")
            for index in range(rounds + 2):  # the first two rounds warm up the HTTP and synthesis paths
                tool, plain = await tool_round(call, model), await plain_round(call, model)
                if index >= 2:
                    results["tool"].append(tool)
                    results["plain"].append(plain)
    finally:
        loaded.close()
    after = machine_speed()
    report = {"rounds": rounds, "ttft_ms": ttft_ms, "machine_before": before, "machine_after": after,
              "tool": summary(results["tool"]), "plain": summary(results["plain"])}
    report["ratio_tool_over_plain_gateway_p50"] = round(
        report["tool"]["gateway_ms"]["p50"] / max(0.1, report["plain"]["gateway_ms"]["p50"]), 2)
    report["ratio_tool_over_plain_gateway_p95"] = round(
        report["tool"]["gateway_ms"]["p95"] / max(0.1, report["plain"]["gateway_ms"]["p95"]), 2)
    report["ratio_tool_over_plain_own_p50"] = round(
        report["tool"]["gateway_own_ms"]["p50"] / max(0.1, report["plain"]["gateway_own_ms"]["p50"]), 2)
    return report


def save(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "tool_roundtrip.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    result = asyncio.run(main(args.rounds, args.ttft_ms, args.out))
    save(result, args.out)
    for kind in ("tool", "plain"):
        row = result[kind]
        print(f"{kind:5}  gateway share p50 {row['gateway_ms']['p50']:6.1f} ms  p95 {row['gateway_ms']['p95']:6.1f} ms"
              f"  | without the first clause's TTS p50 {row['gateway_own_ms']['p50']:5.1f}  p95 "
              f"{row['gateway_own_ms']['p95']:5.1f}  | TTS p50 {row['first_clause_tts_ms']['p50']:.1f}"
              f"  total p50 {row['total_ms']['p50']:.1f}, upstream ttft p50 {row['upstream_ttft_ms']['p50']:.1f}")
    print(f"ratio tool / plain (gateway share): p50 {result['ratio_tool_over_plain_gateway_p50']}  "
          f"p95 {result['ratio_tool_over_plain_gateway_p95']}")
    print("machine:", result["machine_before"], "→", result["machine_after"])
