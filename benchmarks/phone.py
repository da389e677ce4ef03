"""Phone calls against WebRTC calls: voice-to-voice overhead and barge-in stop, same gateway, same run.

Starts one gateway (streaming defaults, a Twilio auth token) and places, in turn, a WebRTC call with
the aiortc caller (``qa/caller.py``) and a Twilio Media Stream with the simulated Twilio
(``tests/transports/twilio_caller.py``, playing what arrives at once: no buffer of its own, so both
callers measure what the gateway sends). Each plays the same real speech from ../shared/speech:

* overhead = first audible reply sample − last speech sample sent − ``silence_duration_ms`` (500 ms);
* barge-in stop = onset of interrupting speech → last audible reply sample (WebRTC) / the moment the
  Twilio caller stops hearing the reply (Twilio: the ``clear`` — or the last audible frame, if later);
* clear latency (Twilio only) = the gateway's barge-in decision is not visible to a caller, so the
  order is checked instead by the tests; here: onset → ``clear`` arrival.

The transports take turns in ABBA order (WebRTC, Twilio, Twilio, WebRTC), so drift on a shared machine
falls on both, and the machine's speed is measured before and after (benchmarks/machine.py).

``--coughs-only``: coughs, clicks and a door (benchmarks/turn_taking.py's) over a Twilio reply, with false
interruptions on (the default): onset → the pause's ``clear``, and where the resumed reply went on, in
frames against what the clear stopped (:func:`twilio_coughs`).

Usage: python benchmarks/phone.py [--rounds 2] [--barge-ins 4] [--out benchmarks/results] [--coughs-only]
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

from benchmarks.latency import SILENCE_MS, start_gateway_process, summary, trimmed  # noqa: E402
from benchmarks.machine import machine_speed  # noqa: E402
from benchmarks.turn_taking import noises  # noqa: E402
from media.g711 import G711Decoder  # noqa: E402
from qa.caller import Caller  # noqa: E402
from tests.support.speech import Utterance, manifest  # noqa: E402
from tests.transports.twilio_caller import Cut, TwilioCaller  # noqa: E402

TOKEN = "0123456789abcdef0123456789abcdef"
AUDIBLE_RMS = 32768 * 10 ** (-40 / 20)  # −40 dBFS, as qa/caller.py judges audible
#: One sentence without a pause (one turn): "You said: she had your dark suit in …", about 3.5 s of reply.
REPLY_TO_INTERRUPT = "timit_LDC93S1.wav"
#: Admission by measured load off: on the shared machine a call's leftover recognition work can make the next
#: call's handshake a 503 (benchmarks/transports.py, twice on 2026-12-01).
NO_SHEDDING = ["--set", "limits.max_asr_wait_ms=0", "--set", "limits.max_loop_lag_ms=0",
               "--set", "limits.max_cpu_percent=0"]


def audible_times(caller: TwilioCaller, since: float, until: float = float("inf")) -> list[float]:
    """Arrival (= play) time of each audible 10 ms block of the gateway's audio in [since, until]."""
    times: list[float] = []
    for piece in caller.heard:
        if not since <= piece.at <= until:
            continue
        pcm = G711Decoder("pcmu", rate=8000).decode_8k(piece.payload)
        for i in range(0, len(pcm) - 80 + 1, 80):
            block = pcm[i : i + 80].astype(np.float32)
            if np.sqrt(np.mean(block * block)) >= AUDIBLE_RMS:
                times.append(piece.at + i / 8000)
    return times


async def quiet_for(seconds: float, last: Any) -> None:
    """Wait until ``last()`` (the time audio was last heard) is ``seconds`` old."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        heard = last()
        if heard is not None and time.monotonic() - heard > seconds:
            return
        await asyncio.sleep(0.05)


async def heard_after(caller: TwilioCaller, at: float, *, within: float) -> None:
    """Wait (at most ``within`` s) until the Twilio caller plays something that started after ``at``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if any(piece.at > at for piece in caller.heard):
            return
        await asyncio.sleep(0.05)


async def webrtc_round(url: str, clips: list[Utterance], barge_ins: list[Utterance]) -> dict[str, list[float]]:
    caller = Caller(url)
    await caller.connect()
    await caller.wait_event("session.created")
    await asyncio.sleep(0.5)
    overheads, stops = [], []
    try:
        for clip in clips:
            _, end_at = await caller.say(clip.audio(), 16000)
            await caller.wait_event("response.done", since=end_at, timeout=20)
            first = caller.received.first_audible(since=end_at)
            if first is not None:
                overheads.append((first - end_at) * 1000 - SILENCE_MS)
            await asyncio.sleep(0.4)
        long_clip = next(u for u in manifest() if u.file == REPLY_TO_INTERRUPT)
        for clip in barge_ins:
            _, end_at = await caller.say(long_clip.audio(), 16000)
            await caller.wait_event("output_audio_buffer.started", since=end_at, timeout=20)
            await asyncio.sleep(1.0)
            onset_at, said_at = await caller.say(trimmed(clip.audio()), 16000)
            await asyncio.sleep(0.5)
            last = caller.received.last_audible(since=end_at, until=said_at + 0.3)
            cancelled = caller.events_of("response.done", since=onset_at)
            if last is not None and cancelled and cancelled[0]["response"]["status"] == "cancelled":
                stops.append((last - onset_at) * 1000)  # (a reply that ended before the interruption is no barge-in)
            await caller.wait_event("response.done", since=said_at, timeout=30,
                                    where=lambda e: e["response"]["status"] == "completed")
            await asyncio.sleep(0.5)
    finally:
        await caller.hangup()
    return {"overhead_ms": overheads, "barge_in_stop_ms": stops}


async def twilio_turns(url: str, clips: list[Utterance]) -> list[float]:
    """Overhead of each turn over a Twilio media stream (for benchmarks/transports.py too)."""
    caller = TwilioCaller(url, token=TOKEN, playout_delay=0.0)
    await caller.connect()
    await asyncio.sleep(0.5)
    overheads: list[float] = []
    try:
        for clip in clips:
            _, end_at = await caller.say(clip.audio())
            await caller.wait_heard(0.3, since=end_at, within=20)
            times = audible_times(caller, end_at)
            if times:
                overheads.append((times[0] - end_at) * 1000 - SILENCE_MS)
            await quiet_for(0.6, lambda: _last_heard(caller))
            await asyncio.sleep(0.4)
    finally:
        await caller.hang_up()
    return overheads


async def twilio_barge_ins(url: str, clips: list[Utterance]) -> tuple[list[float], list[float]]:
    """(barge-in stop, onset → clear) of each interruption of a ~3.5 s reply over a Twilio media stream."""
    caller = TwilioCaller(url, token=TOKEN, playout_delay=0.0)
    await caller.connect()
    await asyncio.sleep(0.5)
    stops: list[float] = []
    clears: list[float] = []
    long_clip = next(u for u in manifest() if u.file == REPLY_TO_INTERRUPT)
    try:
        for clip in clips:
            _, end_at = await caller.say(long_clip.audio())
            await caller.wait_heard(1.0, since=end_at, within=20)
            cleared_before = len(caller.clears)
            onset_at, said_at = await caller.say(trimmed(clip.audio()))
            await asyncio.sleep(0.5)
            times = audible_times(caller, end_at, said_at + 0.3)
            cleared = caller.clears[cleared_before] if len(caller.clears) > cleared_before else None
            if times and cleared is not None:  # no clear: the reply ended before the interruption
                stops.append((max(times[-1], cleared) - onset_at) * 1000)
                clears.append((cleared - onset_at) * 1000)
            await quiet_for(0.8, lambda: _last_heard(caller))
            await asyncio.sleep(0.5)
    finally:
        await caller.hang_up()
    return stops, clears


async def twilio_coughs(url: str, sounds: dict[str, Any]) -> dict[str, Any]:
    """Coughs, clicks and a door over a ~3.5 s reply on a Twilio stream (false interruptions: the default).

    Per sound: onset → ``clear`` (the pause's), and where the resumed reply went on — the first frames
    received after the clear, found among what the clear stopped (the simulated Twilio plays 0.2 s behind
    what arrives, as a buffer would): 0 = the first frame Twilio dropped unplayed (seamless), −1 = the frame
    that was playing, sent again (under 20 ms heard twice), > 0 frames skipped, < −1 frames heard twice."""
    caller = TwilioCaller(url, token=TOKEN, playout_delay=0.2)
    await caller.connect()
    await asyncio.sleep(0.5)
    long_clip = next(u for u in manifest() if u.file == REPLY_TO_INTERRUPT)
    out: dict[str, Any] = {"onset_to_clear_ms": [], "resume_offset_frames": [], "not_paused": [], "not_resumed": []}
    try:
        for name, sound in sounds.items():
            _, end_at = await caller.say(long_clip.audio())
            await caller.wait_heard(1.0, since=end_at, within=20)
            cuts = len(caller.cuts)
            onset_at, _ = await caller.say(sound)
            await asyncio.sleep(0.3)
            if len(caller.cuts) == cuts:
                out["not_paused"].append(name)
                await quiet_for(1.0, lambda: _last_heard(caller))
                continue
            cut = caller.cuts[cuts]
            # The words decide after a Whisper decode (seconds on a loaded machine): wait for audio after the cut.
            await heard_after(caller, cut.at, within=8.0)
            await quiet_for(1.0, lambda: _last_heard(caller))
            out["onset_to_clear_ms"].append(round((cut.at - onset_at) * 1000, 1))
            offset = _resume_offset(caller, cut)
            if offset is None:
                out["not_resumed"].append(name)
            else:
                out["resume_offset_frames"].append(offset)
            await asyncio.sleep(0.5)
    finally:
        await caller.hang_up()
    return out


def _resume_offset(caller: TwilioCaller, cut: Cut) -> int | None:
    after = [base64.b64decode(m["media"]["payload"]) for _, m in caller.media_received(since=cut.at)][:3]
    before = [p.payload for p in caller.heard if p.at < cut.at][-12:]
    if cut.playing is not None:
        before = before[:-1]  # the playing piece, as heard, was cut short: its whole frame is cut.playing
    sequence = [*before, *([cut.playing] if cut.playing is not None else []), *cut.dropped]
    base = len(sequence) - len(cut.dropped)
    for i in range(len(sequence) - len(after) + 1):
        if len(after) == 3 and sequence[i : i + 3] == after:
            return i - base
    return None  # the reply did not go on (the sound was taken for words: cancelled)


def _last_heard(caller: TwilioCaller) -> float | None:
    return caller.heard[-1].at + caller.heard[-1].seconds if caller.heard else None


async def twilio_round(url: str, clips: list[Utterance], barge_ins: list[Utterance]) -> dict[str, list[float]]:
    overheads = await twilio_turns(url, clips)
    stops, clears = await twilio_barge_ins(url, barge_ins)
    return {"overhead_ms": overheads, "barge_in_stop_ms": stops, "onset_to_clear_ms": clears}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds (each transport twice per round)")
    parser.add_argument("--barge-ins", type=int, default=4, help="barge-ins per transport per round")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--coughs-only", action="store_true",
                        help="only coughs, clicks and a door over a Twilio reply: the pause's clear and the resume")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.coughs_only:
        await coughs_only(args.out)
        return
    clips = [u for u in manifest() if u.duration <= 4.0]
    interruptions = [u for u in manifest() if 1.0 <= u.duration <= 3.0 and u.file != REPLY_TO_INTERRUPT]
    raw: dict[str, dict[str, list[float]]] = {"webrtc": {}, "twilio": {}}
    speed_before = machine_speed()
    process, url = await start_gateway_process(["--set", f"telephony.twilio_auth_token={TOKEN}", *NO_SHEDDING])
    try:
        for r in range(args.rounds):
            for half, order in enumerate((("webrtc", "twilio"), ("twilio", "webrtc"))):
                part = clips[half::2]
                stops = interruptions[(r * 2 + half) % len(interruptions):][: max(1, args.barge_ins // 2)]
                for name in order:
                    print(f"[{name}] round {r + 1}/{args.rounds}, half {half + 1}…", file=sys.stderr)
                    measured = await (webrtc_round if name == "webrtc" else twilio_round)(url, part, stops)
                    for key, values in measured.items():
                        raw[name].setdefault(key, []).extend(values)
    finally:
        process.terminate()
        process.wait(timeout=30)
    results: dict[str, Any] = {name: {k: summary(v) for k, v in values.items()} for name, values in raw.items()}
    results["ratio_twilio_over_webrtc"] = {
        f"{metric}_{q}": round(results["twilio"][metric][q] / max(1.0, results["webrtc"][metric][q]), 3)
        for metric in ("overhead_ms", "barge_in_stop_ms") for q in ("p50", "p95")
        if q in results["twilio"].get(metric, {}) and q in results["webrtc"].get(metric, {})}
    results["machine"] = {"before": speed_before, "after": machine_speed(), "uname": " ".join(os.uname())}
    results["raw"] = raw
    (args.out / "phone.json").write_text(json.dumps(results, indent=2))
    print(f"\n{'transport':<9} overhead p50 / p95 (ms)    barge-in stop p50 / p95 (ms)   onset → clear p50 / p95")
    for name in ("webrtc", "twilio"):
        o, b = results[name].get("overhead_ms", {}), results[name].get("barge_in_stop_ms", {})
        c = results[name].get("onset_to_clear_ms", {})
        print(f"{name:<9} {o.get('p50')} / {o.get('p95')} (n={o.get('n')})          {b.get('p50')} / {b.get('p95')}"
              f" (n={b.get('n')})          {c.get('p50', '—')} / {c.get('p95', '—')}")
    print("twilio / webrtc:", results["ratio_twilio_over_webrtc"])
    print("machine:", results["machine"]["before"], "→", results["machine"]["after"])


async def coughs_only(out: Path) -> None:
    speed_before = machine_speed()
    process, url = await start_gateway_process(["--set", f"telephony.twilio_auth_token={TOKEN}", *NO_SHEDDING])
    try:
        results = await twilio_coughs(url, noises())
    finally:
        process.terminate()
        process.wait(timeout=30)
    results["onset_to_clear"] = summary(results["onset_to_clear_ms"])
    results["machine"] = {"before": speed_before, "after": machine_speed(), "uname": " ".join(os.uname())}
    (out / "phone_coughs.json").write_text(json.dumps(results, indent=2))
    print("onset → clear (ms):", results["onset_to_clear"], results["onset_to_clear_ms"])
    print("resume offset (frames; 0 seamless, −1 the frame playing again):", results["resume_offset_frames"])
    print("not paused:", results["not_paused"], " not resumed:", results["not_resumed"])
    print("machine:", results["machine"]["before"], "→", results["machine"]["after"])


if __name__ == "__main__":
    asyncio.run(main())
