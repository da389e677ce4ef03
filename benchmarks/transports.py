"""Voice-to-voice latency and barge-in stop per transport: WebRTC vs the Realtime WebSocket, same run.

One gateway process (the default pipeline); the same short utterances of
``../shared/speech/manifest.tsv`` are played over a WebRTC call (the aiortc caller) and over a
Realtime WebSocket (the official ``openai`` SDK, 20 ms appends in real time), the transports
taking turns round by round (ABBA, so drift on a shared machine falls on both):

* overhead = first audible reply audio received − last speech sample sent − silence_duration_ms
  (500): what the gateway and the transport add to the turn detector's wait. WebRTC: the first
  audible RTP sample; WebSocket: the first ``response.output_audio.delta`` holding audible audio.
* barge-in stop = onset of interrupting speech → the last audible reply audio received. On the
  WebSocket, audio is sent up to 0.1 s ahead of real time (the pacer's lead): a client that keeps
  playing its buffer after ``input_audio_buffer.speech_started`` hears at most that much more.

A Twilio Media Stream (the simulated Twilio, ``tests/transports/twilio_caller.py``, through
``benchmarks/phone.py``) takes its turn too; its barge-in cuts the echo of one sentence, since a
phone call has no client events to start a long reply with.

Reports p50/p95, the WebSocket/WebRTC ratios and the difference of the p50s, with the machine's
speed (benchmarks/machine.py) measured in the same run. The gateway runs with admission by measured
load off (:data:`NO_SHEDDING`): on a shared machine a refused call would end the run.

Usage: python benchmarks/transports.py [--rounds 2] [--barge-ins 4] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.latency import (  # noqa: E402
    LONG_REPLY,
    MODES,
    SILENCE_MS,
    barge_in_stops,
    start_gateway_process,
    summary,
    trimmed,
)
from benchmarks.machine import machine_speed  # noqa: E402
from benchmarks.phone import twilio_barge_ins, twilio_turns  # noqa: E402
from qa.caller import Caller  # noqa: E402
from tests.support.speech import manifest, normalize, word_error_rate  # noqa: E402
from tests.transports.sdk_caller import SdkCaller, sdk_call, to_pcm24  # noqa: E402

AUDIBLE = 300  # |sample| of int16 above which a delta counts as audible (about -40 dBFS)
#: Admission by measured load off: on the shared machine, one transport's leftover recognition work made the
#: next transport's handshake a 503 ("speech recognition queue wait 449 ms", twice on 2026-12-01).
NO_SHEDDING = ["--set", "limits.max_asr_wait_ms=0", "--set", "limits.max_loop_lag_ms=0",
               "--set", "limits.max_cpu_percent=0"]


def audible(delta: dict[str, Any]) -> bool:
    samples = np.frombuffer(base64.b64decode(delta["delta"]), dtype="<i2")
    return bool(len(samples)) and int(np.abs(samples).max()) > AUDIBLE


def delta_times(caller: SdkCaller, since: float, response_id: str | None = None) -> list[float]:
    return [at for at, e in caller.events if at >= since and e["type"] == "response.output_audio.delta"
            and (response_id is None or e["response_id"] == response_id) and audible(e)]


async def webrtc_turns(url: str, clips: list[Any]) -> list[float]:
    caller = Caller(url)
    await caller.connect()
    await caller.wait_event("session.created")
    out: list[float] = []
    try:
        for clip in clips:
            _, end_at = await caller.say(clip.audio(), 16_000)
            await caller.wait_event("response.done", since=end_at, timeout=30)
            first = caller.received.first_audible(since=end_at)
            if first is not None:
                out.append((first - end_at) * 1000 - SILENCE_MS)
            await asyncio.sleep(0.4)
    finally:
        await caller.hangup()
    return out


async def socket_turns(url: str, clips: list[Any]) -> list[float]:
    out: list[float] = []
    async with sdk_call(url) as caller:
        await caller.wait_event("session.created")
        for clip in clips:
            speech = trimmed(clip.audio())
            await caller.send_pcm(to_pcm24(speech))
            end_at = time.monotonic()
            await caller.send_pcm(bytes(48_000))  # 1 s of silence after the speech, as a microphone sends
            done = await caller.wait_event("response.done", since=end_at, timeout=30)
            times = delta_times(caller, end_at, done["response"]["id"])
            if times:
                out.append((times[0] - end_at) * 1000 - SILENCE_MS)
            await asyncio.sleep(0.4)
    return out


async def webrtc_barge_ins(url: str, clips: list[Any]) -> list[float]:
    return [stop for _, stop in await barge_in_stops(url, clips)]


async def socket_barge_ins(url: str, clips: list[Any]) -> list[float]:
    stops: list[float] = []
    async with sdk_call(url) as caller:
        await caller.wait_event("session.created")
        await caller.connection.session.update(session={"type": "realtime", "audio": {"input": {
            "turn_detection": {"type": "server_vad", "create_response": False}}}})
        await caller.wait_event("session.updated")
        silence = asyncio.create_task(caller.send_pcm(bytes(48_000 * 600)))  # the microphone stays open
        try:
            for i, clip in enumerate(clips):
                since = time.monotonic()
                await caller.connection.conversation.item.create(item={
                    "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": LONG_REPLY}]})
                await caller.connection.response.create()
                first = await caller.wait_event("response.output_audio.delta", since=since, timeout=20)
                await asyncio.sleep(1.0 + 0.13 * i)
                silence.cancel()
                onset_at = time.monotonic()
                await caller.send_pcm(to_pcm24(trimmed(clip.audio())))
                silence = asyncio.create_task(caller.send_pcm(bytes(48_000 * 600)))
                await caller.wait_event("response.done", since=since, timeout=20)
                times = [at for at in delta_times(caller, since, first["response_id"]) if at >= onset_at]
                stops.append((max(times) - onset_at) * 1000 if times else 0.0)
                await caller.wait_event("conversation.item.input_audio_transcription.completed", since=onset_at,
                                        timeout=20)
                await asyncio.sleep(0.5)
        finally:
            silence.cancel()
    return stops


async def webrtc_transcripts(url: str, clips: list[Any]) -> dict[str, str]:
    """Each clip once over WebRTC (no replies): its final transcript."""
    caller = Caller(url)
    await caller.connect()
    await caller.wait_event("session.created")
    caller.send({"type": "session.update", "session": {"turn_detection": {"create_response": False}}})
    await caller.wait_event("session.updated")
    out: dict[str, str] = {}
    try:
        for clip in clips:
            since = time.monotonic()
            _, end_at = await caller.say(clip.audio(), 16_000)
            await asyncio.sleep(SILENCE_MS / 1000 + 0.2)
            await caller.wait_event("conversation.item.input_audio_transcription.completed", since=end_at - 2,
                                    timeout=30)
            await asyncio.sleep(0.5)
            out[clip.file] = " ".join(e["transcript"] for e in caller.events_of(
                "conversation.item.input_audio_transcription.completed", since=since))
    finally:
        await caller.hangup()
    return out


async def socket_transcripts(url: str, clips: list[Any]) -> dict[str, str]:
    """Each clip once over the WebSocket (no replies): its final transcript."""
    out: dict[str, str] = {}
    async with sdk_call(url, intent="transcription") as caller:
        await caller.wait_event("session.created")
        for clip in clips:
            since = time.monotonic()
            await caller.say(clip.audio(), trailing_silence=SILENCE_MS / 1000 + 0.2)
            await caller.wait_event("conversation.item.input_audio_transcription.completed", since=since, timeout=30)
            await caller.send_pcm(bytes(int(48_000 * 0.5)))
            out[clip.file] = " ".join(e["transcript"] for e in caller.of(
                "conversation.item.input_audio_transcription.completed", since=since))
    return out


def corpus_wer(clips: list[Any], hypotheses: dict[str, str]) -> float:
    errors = words = 0
    for clip in clips:
        n = len(normalize(clip.transcript))
        errors += round(word_error_rate(clip.transcript, hypotheses.get(clip.file, "")) * n)
        words += n
    return round(errors / words, 4)


def compared(webrtc: list[float], socket: list[float], name: str = "websocket") -> dict[str, Any]:
    a, b = summary(webrtc), summary(socket)
    out: dict[str, Any] = {"webrtc": a, name: b}
    if a.get("n") and b.get("n"):
        out["p50_difference_ms"] = round(b["p50"] - a["p50"], 1)
        out["ratio_p50"] = round(b["p50"] / a["p50"], 2) if a["p50"] else None
        out["ratio_p95"] = round(b["p95"] / a["p95"], 2) if a["p95"] else None
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--barge-ins", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--wer", action="store_true", help="also: corpus WER of each transport (clips ≤ 12 s)")
    parser.add_argument("--wer-only", action="store_true", help="only the WER comparison")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.wer_only:
        await wer_only(args.out)
        return
    machine_before = machine_speed()
    clips = [u for u in manifest() if u.duration <= 4.0]
    interrupters = [u for u in manifest() if 1.0 <= u.duration <= 3.0][: args.barge_ins]
    process, url = await start_gateway_process([*MODES["streaming"], *NO_SHEDDING])
    turns: dict[str, list[float]] = {"webrtc": [], "websocket": [], "twilio": []}
    stops: dict[str, list[float]] = {"webrtc": [], "websocket": [], "twilio": []}
    wer: dict[str, Any] = {}
    try:
        if args.wer:
            wer = await measure_wer(url)
        for round_ in range(args.rounds):
            order = ["webrtc", "websocket", "twilio"] if round_ % 2 == 0 else ["twilio", "websocket", "webrtc"]
            for transport in order:
                print(f"round {round_ + 1}: {transport} turns…", file=sys.stderr)
                run = {"webrtc": webrtc_turns, "websocket": socket_turns, "twilio": twilio_turns}[transport]
                turns[transport] += await run(url, clips)
        sequence = ("webrtc", "websocket", "twilio", "twilio", "websocket", "webrtc")
        for transport in sequence[: 3 if args.barge_ins < 2 else 6]:
            print(f"{transport} barge-ins…", file=sys.stderr)
            half = interrupters[: max(1, len(interrupters) // 2)]
            if transport == "twilio":  # a phone call has no client events: the echo of one sentence is cut
                stops[transport] += (await twilio_barge_ins(url, half))[0]
                continue
            run_b = webrtc_barge_ins if transport == "webrtc" else socket_barge_ins
            stops[transport] += await run_b(url, half)
    finally:
        process.terminate()
        process.wait(timeout=30)
    results = {
        "overhead_ms": compared(turns["webrtc"], turns["websocket"]),
        "barge_in_stop_ms": compared(stops["webrtc"], stops["websocket"]),
        "twilio": {"overhead_ms": compared(turns["webrtc"], turns["twilio"], "twilio"),
                   "barge_in_stop_ms": compared(stops["webrtc"], stops["twilio"], "twilio")},
        "wer": wer,
        "raw": {"overhead_ms": turns, "barge_in_stop_ms": stops},
        "machine": {"before": machine_before, "after": machine_speed(), "uname": " ".join(os.uname())},
    }
    (args.out / "transports.json").write_text(json.dumps(results, indent=2))
    for name in ("overhead_ms", "barge_in_stop_ms"):
        r = results[name]
        print(f"{name}: webrtc {r['webrtc']}  websocket {r['websocket']}  "
              f"Δp50 {r.get('p50_difference_ms')} ms, ratio p50 {r.get('ratio_p50')} p95 {r.get('ratio_p95')}")
    for name in ("overhead_ms", "barge_in_stop_ms"):
        r = results["twilio"][name]
        print(f"{name}: webrtc {r['webrtc']}  twilio {r['twilio']}  "
              f"Δp50 {r.get('p50_difference_ms')} ms, ratio p50 {r.get('ratio_p50')} p95 {r.get('ratio_p95')}")
    print("machine", results["machine"])


async def measure_wer(url: str) -> dict[str, Any]:
    clips = [u for u in manifest() if u.duration <= 12.0]
    webrtc = await webrtc_transcripts(url, clips)
    socket = await socket_transcripts(url, clips)
    return {"webrtc": corpus_wer(clips, webrtc), "websocket": corpus_wer(clips, socket), "clips": len(clips),
            "transcripts": {"webrtc": webrtc, "websocket": socket}}


async def wer_only(out: Path) -> None:
    machine_before = machine_speed()
    process, url = await start_gateway_process([*MODES["streaming"], *NO_SHEDDING])
    try:
        wer = await measure_wer(url)
    finally:
        process.terminate()
        process.wait(timeout=30)
    wer["machine"] = {"before": machine_before, "after": machine_speed()}
    (out / "transports_wer.json").write_text(json.dumps(wer, indent=2))
    print(f"corpus WER over {wer['clips']} clips: webrtc {wer['webrtc']}  websocket {wer['websocket']}")
    print("machine", wer["machine"])


if __name__ == "__main__":
    asyncio.run(main())
