"""Latency benchmark: overhead and barge-in stop measured from the caller's side.

Runs the gateway in a subprocess twice — the default streaming pipeline and a
naive baseline (whole-utterance ASR after the turn, whole-reply TTS, aiortc's
default jitter buffer) — places one real WebRTC call to each with the aiortc
caller, plays the utterances of ``../shared/speech/manifest.tsv`` and measures:

* overhead = first audible reply sample − last speech sample sent − silence_duration_ms
* barge-in stop = onset of interrupting speech → last audible reply sample
* gateway-side turn confirmed → first reply packet (from ``gateway.turn.metrics``)
* WER of the streaming final transcripts vs offline faster-whisper on whole files

Usage: python benchmarks/latency.py [--rounds 3] [--barge-ins 10] [--out benchmarks/results]

``--against REF`` instead compares this tree's streaming pipeline with the same
pipeline at git revision REF (e.g. the commit before a refactor), in the same
run: the two gateways take turns (ABBA order, so drift on a shared machine
falls on both), and the ratios of their p50/p95 are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qa.caller import Caller, speech_end_sample, speech_start_sample  # noqa: E402
from tests.support.speech import manifest, normalize, word_error_rate  # noqa: E402

SILENCE_MS = 500
MODES: dict[str, list[str]] = {
    "streaming": [],
    "naive": ["--set", "pipeline.speculative_turns=false", "--set", "pipeline.incremental_tts=false",
              "--set", "media.jitter_prefetch_frames=4", "--set", "engines.asr_partial_interval_ms=0",
              "--set", "engines.asr_fitted_window=false"],
}
LONG_REPLY = ("This is a long answer that keeps going so that the caller has plenty of time to interrupt it, "
              "and it goes on, and on, about nothing in particular, until somebody talks over it.")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_gateway_process(extra: list[str], *, wait_workers: int = 1,
                                cwd: Path = REPO) -> tuple[subprocess.Popen[bytes], str]:
    """``voice-gateway serve`` with ``extra`` flags on a free port, once it (and its workers) are ready."""
    port = free_port()
    command = [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--log-level", "WARNING",
               "--events-file", "", *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(cwd)}
    process = subprocess.Popen(command, cwd=cwd, env=env)  # noqa: ASYNC220
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url + "/readyz") as response:
                    body = await response.json()
                    workers = body.get("workers") or [{"accepting": True}]
                    if response.status == 200 and sum(bool(w.get("accepting")) for w in workers) >= wait_workers:
                        return process, url
            except aiohttp.ClientError:
                pass
            if process.poll() is not None:
                raise RuntimeError(f"gateway {extra} exited with {process.returncode}")
            await asyncio.sleep(0.5)
    process.kill()
    raise RuntimeError("gateway did not become ready")


async def start_gateway(mode: str) -> tuple[subprocess.Popen[bytes], str]:
    return await start_gateway_process(MODES[mode])


def trimmed(samples: np.ndarray) -> np.ndarray:
    return samples[speech_start_sample(samples, 16000) : speech_end_sample(samples, 16000)]


async def measure_turns(url: str, rounds: int) -> dict[str, Any]:
    """Short single-turn utterances, played ``rounds`` times: overhead per turn."""
    clips = [u for u in manifest() if u.duration <= 4.0]
    caller = Caller(url)
    await caller.connect()
    await caller.wait_event("session.created")
    await asyncio.sleep(0.5)
    overheads: list[float] = []
    internal: list[float] = []
    try:
        for _ in range(rounds):
            for clip in clips:
                _, end_at = await caller.say(clip.audio(), 16000)
                try:
                    await caller.wait_event("response.done", since=end_at, timeout=20)
                except TimeoutError:
                    print(f"  no reply to {clip.file}", file=sys.stderr)
                    continue
                first = caller.received.first_audible(since=end_at)
                if first is not None:
                    overheads.append((first - end_at) * 1000 - SILENCE_MS)
                metrics = caller.events_of("gateway.turn.metrics", since=end_at)
                if metrics:
                    internal.append(float(metrics[-1]["confirmed_to_first_packet_ms"]))
                await asyncio.sleep(0.4)
    finally:
        await caller.hangup()
    return {"overhead_ms": overheads, "confirmed_to_first_packet_ms": internal}


async def measure_barge_ins(url: str, count: int) -> list[tuple[str, float]]:
    """A long reply is interrupted by real speech: onset → last audible reply sample."""
    clips = [u for u in manifest() if 1.0 <= u.duration <= 3.0]
    return await barge_in_stops(url, [clips[i % len(clips)] for i in range(count)])


async def barge_in_stops(url: str, clips: list[Any]) -> list[tuple[str, float]]:
    """Each of ``clips`` interrupts a long reply over WebRTC: (clip, onset → last audible reply sample in ms)."""
    caller = Caller(url)
    await caller.connect()
    await caller.wait_event("session.created")
    caller.send({"type": "session.update", "session": {"turn_detection": {"create_response": False}}})
    await caller.wait_event("session.updated")
    stops: list[tuple[str, float]] = []
    try:
        for i, clip in enumerate(clips):
            since = time.monotonic()
            caller.send({"type": "conversation.item.create", "item": {
                "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": LONG_REPLY}]}})
            caller.send({"type": "response.create"})
            await caller.wait_event("output_audio_buffer.started", since=since, timeout=20)
            await asyncio.sleep(1.0 + 0.13 * i)
            onset_at, end_at = await caller.say(trimmed(clip.audio()), 16000)
            await caller.wait_event("response.done", since=since, timeout=20)
            await asyncio.sleep(0.5)
            last = caller.received.last_audible(since=since, until=end_at + 0.3)
            if last is not None:
                stops.append((clip.file, (last - onset_at) * 1000))
            await caller.wait_event("conversation.item.input_audio_transcription.completed", since=onset_at,
                                    timeout=20)
            await asyncio.sleep(0.5)
    finally:
        await caller.hangup()
    return stops


async def measure_wer(url: str) -> dict[str, Any]:
    """Every manifest file through the call: final transcripts vs the reference."""
    caller = Caller(url)
    await caller.connect()
    await caller.wait_event("session.created")
    caller.send({"type": "session.update", "session": {"turn_detection": {"create_response": False}}})
    await caller.wait_event("session.updated")
    hypotheses: dict[str, str] = {}
    try:
        for clip in manifest():
            since = time.monotonic()
            _, end_at = await caller.say(clip.audio(), 16000)
            await asyncio.sleep(SILENCE_MS / 1000 + 0.2)
            await caller.wait_event("conversation.item.input_audio_transcription.completed", since=end_at - 2,
                                    timeout=20)
            await asyncio.sleep(0.5)
            texts = [e["transcript"] for e in
                     caller.events_of("conversation.item.input_audio_transcription.completed", since=since)]
            hypotheses[clip.file] = " ".join(texts)
    finally:
        await caller.hangup()
    return hypotheses


def offline_transcripts() -> dict[str, str]:
    from engines.whisper import WhisperRecognizer

    recognizer = WhisperRecognizer()
    out = {}
    for clip in manifest():
        out[clip.file] = recognizer._transcribe_blocking(clip.audio()).text
    recognizer.close()
    return out


def corpus_wer(hypotheses: dict[str, str]) -> float:
    errors = words = 0
    for clip in manifest():
        n = len(normalize(clip.transcript))
        errors += round(word_error_rate(clip.transcript, hypotheses.get(clip.file, "")) * n)
        words += n
    return errors / words


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(values),
        "p50": round(statistics.median(ordered), 1),
        "p95": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 1),
        "max": round(ordered[-1], 1),
        "min": round(ordered[0], 1),
    }


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for mode, colour in (("streaming", "tab:green"), ("naive", "tab:red")):
        values = sorted(results[mode]["raw"]["overhead_ms"])
        if values:
            ax.plot(values, np.linspace(0, 1, len(values)), label=f"{mode} (p50 {statistics.median(values):.0f} ms)",
                    color=colour, drawstyle="steps-post")
    ax.set_xlabel("overhead (ms): first audible reply − end of speech − 500 ms silence")
    ax.set_ylabel("fraction of turns")
    ax.set_title("Reply overhead measured at the caller (one call, default models, echo agent)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


async def compare_revisions(ref: str, rounds: int, barge_ins: int) -> dict[str, Any]:
    """This tree's streaming pipeline against the same pipeline at ``ref``, taking turns (ABBA)."""
    from benchmarks.machine import machine_speed

    worktree = Path(tempfile.mkdtemp(prefix="latency-ref-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(worktree), ref], cwd=REPO, check=True,  # noqa: ASYNC221
                   capture_output=True)
    trees = {"this tree": REPO, ref: worktree}
    raw: dict[str, dict[str, list[float]]] = {name: {"overhead_ms": [], "barge_in_stop_ms": [],
                                                     "confirmed_to_first_packet_ms": []} for name in trees}
    speed_before = machine_speed()
    try:
        for r in range(rounds):
            order = list(trees) if r % 2 == 0 else list(reversed(trees))
            for name in order:
                process, url = await start_gateway_process([], cwd=trees[name])
                try:
                    print(f"[{name}] round {r + 1}/{rounds}…", file=sys.stderr)
                    turns = await measure_turns(url, 1)
                    stops = await measure_barge_ins(url, max(1, barge_ins // rounds))
                finally:
                    process.terminate()
                    process.wait(timeout=30)
                raw[name]["overhead_ms"] += turns["overhead_ms"]
                raw[name]["confirmed_to_first_packet_ms"] += turns["confirmed_to_first_packet_ms"]
                raw[name]["barge_in_stop_ms"] += [ms for _, ms in stops]
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO, check=False)  # noqa: ASYNC221
    results: dict[str, Any] = {name: {k: summary(v) for k, v in values.items()} for name, values in raw.items()}
    results["ratio_this_over_ref"] = {
        f"{metric}_{q}": round(results["this tree"][metric][q] / max(1.0, results[ref][metric][q]), 3)
        for metric in raw["this tree"] for q in ("p50", "p95")
        if results["this tree"][metric].get(q) is not None and results[ref][metric].get(q) is not None}
    results["machine"] = {"before": speed_before, "after": machine_speed(), "uname": " ".join(os.uname())}
    results["raw"] = raw
    return results


def print_comparison(results: dict[str, Any], ref: str) -> None:
    print(f"\n{'revision':<12} overhead p50 / p95 (ms)   confirmed→first packet p50 / p95   barge-in stop p50 / p95")
    for name in ("this tree", ref):
        o, c, b = (results[name][k] for k in ("overhead_ms", "confirmed_to_first_packet_ms", "barge_in_stop_ms"))
        print(f"{name[:12]:<12} {o.get('p50')} / {o.get('p95')} (n={o.get('n')})      {c.get('p50')} / {c.get('p95')}"
              f"                   {b.get('p50')} / {b.get('p95')} (n={b.get('n')})")
    print("this tree / ref:", results["ratio_this_over_ref"])
    print("machine:", results["machine"]["before"], "→", results["machine"]["after"])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="times each short utterance is played per mode")
    parser.add_argument("--barge-ins", type=int, default=10)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "latency_overhead.png")
    parser.add_argument("--against", metavar="REF", help="compare with the streaming pipeline at git revision REF")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.against:
        compared = await compare_revisions(args.against, args.rounds, args.barge_ins)
        (args.out / "latency_against.json").write_text(json.dumps(compared, indent=2))
        print_comparison(compared, args.against)
        return

    results: dict[str, Any] = {}
    for mode in ("streaming", "naive"):
        process, url = await start_gateway(mode)
        try:
            print(f"[{mode}] turns…", file=sys.stderr)
            turns = await measure_turns(url, args.rounds)
            print(f"[{mode}] barge-ins…", file=sys.stderr)
            stops = await measure_barge_ins(url, args.barge_ins)
            hypotheses = await measure_wer(url) if mode == "streaming" else {}
        finally:
            process.terminate()
            process.wait(timeout=30)
        results[mode] = {
            "overhead_ms": summary(turns["overhead_ms"]),
            "confirmed_to_first_packet_ms": summary(turns["confirmed_to_first_packet_ms"]),
            "barge_in_stop_ms": summary([ms for _, ms in stops]),
            "raw": {"overhead_ms": turns["overhead_ms"], "barge_in_stop_ms": stops,
                    "confirmed_to_first_packet_ms": turns["confirmed_to_first_packet_ms"]},
        }
        if hypotheses:
            results[mode]["transcripts"] = hypotheses

    offline = offline_transcripts()
    streaming_wer = corpus_wer(results["streaming"]["transcripts"])
    offline_wer = corpus_wer(offline)
    results["wer"] = {"streaming": round(streaming_wer, 4), "offline": round(offline_wer, 4),
                      "ratio": round(streaming_wer / offline_wer, 3) if offline_wer else None,
                      "offline_transcripts": offline}
    ratio = results["naive"]["overhead_ms"].get("p50", 0) / max(1.0, results["streaming"]["overhead_ms"].get("p50", 1))
    results["naive_over_streaming_p50"] = round(ratio, 2)
    from benchmarks.machine import machine_speed

    results["machine"] = {**machine_speed(), "uname": " ".join(os.uname())}
    (args.out / "latency.json").write_text(json.dumps(results, indent=2))
    plot(results, args.plot)

    print("\nmode        overhead p50 / p95 / max (ms)   confirmed→first packet p50   barge-in stop p50 / max (ms)")
    for mode in ("streaming", "naive"):
        o, c, b = (results[mode][k] for k in ("overhead_ms", "confirmed_to_first_packet_ms", "barge_in_stop_ms"))
        print(f"{mode:<10}  {o.get('p50')} / {o.get('p95')} / {o.get('max')}  (n={o.get('n')})"
              f"          {c.get('p50')}                      {b.get('p50')} / {b.get('max')}  (n={b.get('n')})")
    print(f"naive / streaming overhead p50 ratio: {results['naive_over_streaming_p50']}")
    print(f"WER streaming {streaming_wer:.3f} vs offline {offline_wer:.3f}: ratio {results['wer']['ratio']}")


if __name__ == "__main__":
    asyncio.run(main())
