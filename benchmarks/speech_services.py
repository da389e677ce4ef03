"""The speech services' latency and throughput against calling the engines directly, in the same run.

One process: the real engines loaded once, a gateway serving them (HTTP ``/v1/audio/*`` and the Riva gRPC
services on free ports, no auth), and four ways to the same work, interleaved round by round so that a
busy machine slows all of them alike:

- **direct**: the engines called in-process (the upload decoded by av, then one ``transcribe``; one
  ``synthesize`` per clause) — the baseline of http and grpc, which decode the upload too;
- **engine** (ASR only): ``transcribe`` of the already decoded audio — the baseline of remote, which
  sends decoded PCM;
- **http**: the official ``openai`` SDK (``audio.transcriptions.create``;
  ``audio.speech.with_streaming_response.create``, mp3);
- **grpc**: the official ``nvidia-riva-client`` (``offline_recognize``; ``synthesize_online``), blocking,
  in a thread;
- **remote**: :mod:`engines.remote` (what a gateway with ``engines.remote_asr``/``remote_tts`` pays per
  decode and per clause: one ``Recognize`` / ``SynthesizeOnline`` on the live lane).

ASR: every manifest clip of at most 4 s (the calls' utterances) and whisper_jfk (11 s): ms per request.
TTS: two sentences: ms to the first audio byte, and to the last. Throughput: 8 transcriptions of the 4 s
clips, 4 at a time, per path (requests/s). Prints p50/p95 and each path's ratio to direct, plus the
machine's speed (benchmarks/machine.py).

With ``--voice-to-voice``, instead: two gateway processes, the first with its local engines and the
second with ``engines.remote_asr``/``remote_tts`` on the first's gRPC port; one call to each, the same
clips said to one then the other in turn; per gateway, the reply's first audible audio after the end of
speech minus the 500 ms end-of-turn silence (as benchmarks/latency.py), p50/p95 and the difference.

Usage: python benchmarks/speech_services.py [--rounds 3] [--voice-to-voice] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import riva.client  # noqa: E402
from aiohttp.test_utils import TestServer  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402

from benchmarks.machine import machine_speed  # noqa: E402
from engines.remote import RemoteRecognizer, RemoteSynthesizer  # noqa: E402
from gateway.app.application import create_app  # noqa: E402
from gateway.app.engines import load_engines, warm_up  # noqa: E402
from gateway.config import EventsConfig, GatewayConfig, ServerConfig, SpeechConfig  # noqa: E402
from gateway.speech.audio import decode_audio  # noqa: E402
from gateway.voice.clauses import ClauseSplitter  # noqa: E402
from gateway.voice.engines import Engines  # noqa: E402
from tests.support.calls import without_load_shedding  # noqa: E402
from tests.support.speech import Utterance, manifest  # noqa: E402

TEXT = ("Thanks for calling, I can help you with that. Your table for two is booked at seven tonight, "
        "and a reminder will reach you an hour before.")
PATHS = ("direct", "engine", "http", "grpc", "remote")
TTS_PATHS = ("direct", "http", "grpc", "remote")
BASELINE = {"http": "direct", "grpc": "direct", "remote": "engine"}  # ASR; TTS: all against direct


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Paths:
    """The same ASR and TTS work by each path (see the module doc)."""

    def __init__(self, engines: Engines, http_url: str, grpc_port: int) -> None:
        self.engines = engines
        self.openai = AsyncOpenAI(base_url=http_url + "/v1", api_key="unused", max_retries=0)
        auth = riva.client.Auth(uri=f"127.0.0.1:{grpc_port}")
        self.riva_asr = riva.client.ASRService(auth)
        self.riva_tts = riva.client.SpeechSynthesisService(auth)
        self.remote_asr = RemoteRecognizer(f"grpc://127.0.0.1:{grpc_port}")
        self.remote_tts = RemoteSynthesizer(f"grpc://127.0.0.1:{grpc_port}")

    async def transcribe(self, path: str, clip: Utterance) -> str:
        data = clip.path.read_bytes()
        if path == "direct":
            audio = await asyncio.to_thread(decode_audio, data, max_seconds=600)
            return (await self.engines.asr.transcribe(audio)).text
        if path == "engine":
            return (await self.engines.asr.transcribe(clip.audio())).text
        if path == "http":
            return (await self.openai.audio.transcriptions.create(model="whisper-1", file=(clip.file, data))).text
        if path == "grpc":
            config = riva.client.RecognitionConfig(encoding=riva.client.AudioEncoding.LINEAR_PCM,
                                                   language_code="en-US")
            if clip.file.endswith(".flac"):
                config.encoding = riva.client.AudioEncoding.FLAC
            response = await asyncio.to_thread(self.riva_asr.offline_recognize, data, config)
            return " ".join(r.alternatives[0].transcript for r in response.results)
        return (await self.remote_asr.transcribe(clip.audio())).text

    async def speak(self, path: str) -> tuple[float, float]:
        """(ms to the first audio, ms to the last) for :data:`TEXT`."""
        started = time.perf_counter()
        first: float | None = None

        def mark() -> None:
            nonlocal first
            if first is None:
                first = (time.perf_counter() - started) * 1000

        if path == "http":
            async with self.openai.audio.speech.with_streaming_response.create(
                    model="tts-1", voice="alloy", input=TEXT, response_format="mp3") as response:
                async for _ in response.iter_bytes():
                    mark()
        elif path == "grpc":
            marks: list[float] = []

            def online() -> None:
                for _ in self.riva_tts.synthesize_online(TEXT, sample_rate_hz=22050):
                    marks.append(time.perf_counter())

            await asyncio.to_thread(online)
            first = (marks[0] - started) * 1000
        else:
            splitter = ClauseSplitter()
            tts = self.engines.tts if path == "direct" else self.remote_tts
            for index, clause in enumerate([*splitter.push(TEXT), *splitter.flush()]):
                async for _ in tts.synthesize(clause, first=index == 0):
                    mark()
        return first or 0.0, (time.perf_counter() - started) * 1000

    async def close(self) -> None:
        await self.openai.close()
        self.riva_asr.auth.channel.close()
        self.remote_asr.close()
        self.remote_tts.close()


async def timed(job: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await job()
    return (time.perf_counter() - started) * 1000


def summary(values: list[float], baseline: list[float] | None) -> dict[str, float]:
    values = sorted(values)
    p50 = statistics.median(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    out = {"p50": round(p50, 1), "p95": round(p95, 1), "n": len(values)}
    if baseline:
        out["ratio_p50"] = round(p50 / statistics.median(baseline), 2)
    return out


async def throughput(paths: Paths, path: str, clips: list[Utterance], *, requests: int = 8,
                     concurrency: int = 4) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await paths.transcribe(path, clips[i % len(clips)])

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
    return requests / (time.perf_counter() - started)


async def run(rounds: int) -> dict[str, Any]:
    engines = load_engines(GatewayConfig())
    await warm_up(engines)
    config = without_load_shedding(GatewayConfig(events=EventsConfig(file=""), server=ServerConfig(
        grpc_port=free_port()), speech=SpeechConfig(max_jobs=8, max_jobs_per_client=0)))  # one client, 4 at once
    server = TestServer(create_app(config, engines=engines), host="127.0.0.1")
    await server.start_server()
    paths = Paths(engines, str(server.make_url("")).rstrip("/"), config.server.grpc_port)
    short = [u for u in manifest() if u.duration <= 4.0]
    long = [u for u in manifest() if u.file == "whisper_jfk.flac"]
    results: dict[str, Any] = {"machine": machine_speed()}
    try:
        for path in PATHS:  # a first pass of each, not measured: connections, caches
            await paths.transcribe(path, short[0])
        for path in TTS_PATHS:
            await paths.speak(path)
        asr: dict[str, list[float]] = {p: [] for p in PATHS}
        asr_long: dict[str, list[float]] = {p: [] for p in PATHS}
        first: dict[str, list[float]] = {p: [] for p in TTS_PATHS}
        total: dict[str, list[float]] = {p: [] for p in TTS_PATHS}
        for round_ in range(rounds):
            for clip in short:  # each clip by every path in turn, the order rotated every round
                for path in PATHS[round_ % len(PATHS):] + PATHS[: round_ % len(PATHS)]:
                    asr[path].append(await timed(lambda p=path, c=clip: paths.transcribe(p, c)))  # type: ignore[misc]
            for path in PATHS:
                asr_long[path].append(await timed(lambda p=path: paths.transcribe(p, long[0])))  # type: ignore[misc]
            for path in TTS_PATHS[round_ % 4:] + TTS_PATHS[: round_ % 4]:
                ttfb, whole = await paths.speak(path)
                first[path].append(ttfb)
                total[path].append(whole)
        for name, data in (("asr_short_ms", asr), ("asr_11s_ms", asr_long)):
            results[name] = {p: summary(data[p], data[BASELINE[p]] if p in BASELINE else None) for p in PATHS}
        for name, data in (("tts_first_audio_ms", first), ("tts_total_ms", total)):
            results[name] = {p: summary(data[p], None if p == "direct" else data["direct"]) for p in TTS_PATHS}
        results["asr_requests_per_s_4_at_a_time"] = {p: round(await throughput(paths, p, short), 2) for p in PATHS}
    finally:
        await paths.close()
        await server.close()
        engines.close()
    return results


async def _reply_overhead(caller: Any, clip: Utterance) -> float | None:
    from benchmarks.latency import SILENCE_MS

    _, end_at = await caller.say(clip.audio(), 16_000)
    try:
        await caller.wait_event("response.done", since=end_at, timeout=20)
    except TimeoutError:
        return None
    first = caller.received.first_audible(since=end_at)
    await asyncio.sleep(0.4)
    return None if first is None else (first - end_at) * 1000 - SILENCE_MS


async def voice_to_voice(rounds: int) -> dict[str, Any]:
    """Local engines vs remote engines (the first gateway's, over gRPC on loopback), calls in turn."""
    from benchmarks.latency import start_gateway_process
    from qa.caller import Caller

    grpc_port = free_port()
    local, local_url = await start_gateway_process(["--set", f"server.grpc_port={grpc_port}"])
    target = f"grpc://127.0.0.1:{grpc_port}"
    remote, remote_url = await start_gateway_process(["--set", "server.grpc_port=0", "--set",
                                                      f"engines.remote_asr={target}", "--set",
                                                      f"engines.remote_tts={target}"])
    results: dict[str, Any] = {"machine": machine_speed()}
    callers = {"local": Caller(local_url), "remote": Caller(remote_url)}
    overheads: dict[str, list[float]] = {"local": [], "remote": []}
    try:
        for caller in callers.values():
            await caller.connect()
            await caller.wait_event("session.created")
        for round_ in range(rounds):
            for clip in [u for u in manifest() if u.duration <= 4.0]:
                order = ("local", "remote") if round_ % 2 == 0 else ("remote", "local")
                for name in order:
                    overhead = await _reply_overhead(callers[name], clip)
                    if overhead is not None:
                        overheads[name].append(overhead)
    finally:
        for caller in callers.values():
            await caller.hangup()
        for process in (remote, local):
            process.terminate()
            process.wait(30)
    results["reply_overhead_ms"] = {name: summary(values, None if name == "local" else overheads["local"])
                                    for name, values in overheads.items()}
    results["remote_minus_local_p50_ms"] = round(statistics.median(overheads["remote"])
                                                 - statistics.median(overheads["local"]), 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--voice-to-voice", dest="voice_to_voice", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = asyncio.run(voice_to_voice(args.rounds) if args.voice_to_voice else run(args.rounds))
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
