"""Soak test: calls created and torn down continuously, some abruptly; nothing may leak.

A gateway (real engines) runs in this process; callers run in child processes,
``--processes`` at a time, each placing ``--calls`` concurrent calls that say a
short clip, wait for the reply and then end in one of four ways:

* ``hangup``: ``DELETE`` the call, then close the peer connection (the polite way);
* ``close``: close the peer connection without ``DELETE`` (a closed browser tab);
* ``vanish``: nothing — the caller process exits with the call still up, so its packets just
  stop (a killed process, a dead network); the gateway must notice (``limits.media_timeout_seconds``);
* ``no_ice``: the offer is posted by a peer that is closed at once, so ICE never completes
  (``limits.ice_timeout_seconds``).

Before the run (after a warm-up) and after it (once every call has ended) it measures, in the
gateway's process: asyncio tasks, live ``RTCPeerConnection`` objects, threads, open file
descriptors and RSS (after a full garbage collection and a heap trim: live memory; the raw figure
too); raw RSS is also sampled throughout. It fails (exit status 1) when tasks, peer connections,
threads or file descriptors are above the baseline, when RSS grew more than 5 %, or — in runs of
5 minutes or more — when raw RSS still grows over the second half of the run (least-squares slope,
projected over the run, above 2 % of the baseline). ``tests/security/test_soak.py`` runs a short
version; docs/security.md reports a 10-minute run.

Usage::

    python benchmarks/soak.py --minutes 10 [--processes 2 --calls 2] [--out benchmarks/results/soak.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from aiohttp.test_utils import TestServer  # noqa: E402
from aiortc import RTCPeerConnection  # noqa: E402

from gateway.app.application import REGISTRY, create_app  # noqa: E402
from gateway.app.engines import load_engines, warm_up  # noqa: E402
from gateway.config import AdmissionConfig, EventsConfig, GatewayConfig, LimitsConfig  # noqa: E402
from gateway.ops import heap  # noqa: E402
from gateway.ops.observers import CallObserver  # noqa: E402
from gateway.voice.engines import Engines  # noqa: E402

MODES = ("hangup", "close", "vanish", "no_ice")
CLIPS = ("ps_cards_001.wav", "ps_cards_003.wav", "ps_cards_004.wav", "lhotse_ljspeech_LJ002-0020.wav")
TRIM = heap.libc_malloc_trim()
RSS_GROWTH_LIMIT = 0.05
RSS_TREND_LIMIT = 0.02
TREND_MIN_SECONDS = 300  # shorter runs are too short to tell a trend from noise


@dataclass
class Snapshot:
    at: float
    tasks: int
    peer_connections: int
    threads: int
    fds: int
    rss_mb: float  # after a full garbage collection and a heap trim: the memory of live objects
    raw_rss_mb: float  # as the operating system saw it just before
    calls: int


@dataclass
class SoakReport:
    seconds: float = 0.0
    calls_placed: int = 0
    calls_by_mode: dict[str, int] = field(default_factory=dict)
    ended_by_reason: dict[str, int] = field(default_factory=dict)
    vanish_freed_s: dict[str, float] = field(default_factory=dict)  # kill → call.ended: max, median
    baseline: Snapshot | None = None
    final: Snapshot | None = None
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    rss_slope_mb_per_min: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class Ends(CallObserver):
    def __init__(self) -> None:
        self.ended: dict[str, tuple[str, float]] = {}

    def call_ended(self, call_id: str, reason: str, duration_s: float, turns: int) -> None:
        self.ended[call_id] = (reason, time.time())


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def snapshot(calls: int) -> Snapshot:
    raw = rss_mb()
    gc.collect()
    # type(), not isinstance(): some lazily imported modules' objects warn when their __class__ is read
    pcs = sum(1 for o in gc.get_objects() if type(o) is RTCPeerConnection)
    if TRIM is not None:
        TRIM(0)
    return Snapshot(at=time.monotonic(), tasks=len(asyncio.all_tasks()), peer_connections=pcs,
                    threads=threading.active_count(), fds=len(os.listdir("/proc/self/fd")), rss_mb=round(rss_mb(), 1),
                    raw_rss_mb=round(raw, 1), calls=calls)


def soak_config(media_timeout: float, ice_timeout: float) -> GatewayConfig:
    return GatewayConfig(events=EventsConfig(file=""), limits=LimitsConfig(
        max_calls=32, max_calls_per_client=0, calls_per_client_per_minute=0, media_timeout_seconds=media_timeout,
        ice_timeout_seconds=ice_timeout, max_loop_lag_ms=0, max_asr_wait_ms=0),
        admission=AdmissionConfig(enabled=False))  # a soak of leaks: calls come at a fixed rate, none refused


class Wave:
    """One caller process and the report it writes."""

    def __init__(self, url: str, calls: int, seed: int, workdir: Path) -> None:
        self.report = workdir / f"wave-{seed}.json"
        argv = [sys.executable, str(Path(__file__).resolve()), "caller", "--url", url, "--calls", str(calls),
                "--seed", str(seed), "--report", str(self.report)]
        self.process = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)

    def done(self) -> bool:
        return self.process.poll() is not None

    def results(self) -> list[dict[str, Any]]:
        try:
            data: list[dict[str, Any]] = json.loads(self.report.read_text())
        except (OSError, ValueError):
            return []
        return data


async def run_soak(seconds: float, *, engines: Engines, processes: int = 2, calls: int = 2,
                   media_timeout: float = 10.0, ice_timeout: float = 30.0, warmup: float = 60.0,
                   trim_interval: float = heap.MIN_INTERVAL_SECONDS, sample_every: float = 5.0,
                   progress: bool = True) -> SoakReport:
    """Run the soak against an in-process gateway; returns the report (``report.ok``).

    The warm-up (``warmup`` seconds of the same traffic) lets every lazy allocation happen once before
    the baseline (codec tables, caches); the default executor is grown to its size. The final snapshot
    waits for the gateway's trailing heap trim (``trim_interval``, gateway/heap.py).
    """
    saved_interval, heap.MIN_INTERVAL_SECONDS = heap.MIN_INTERVAL_SECONDS, trim_interval
    try:
        return await _run_soak(seconds, engines, processes, calls, media_timeout, ice_timeout, warmup,
                               sample_every, progress)
    finally:
        heap.MIN_INTERVAL_SECONDS = saved_interval


async def _run_soak(seconds: float, engines: Engines, processes: int, calls: int, media_timeout: float,
                    ice_timeout: float, warmup: float, sample_every: float, progress: bool) -> SoakReport:
    report = SoakReport()
    ends = Ends()
    server = TestServer(create_app(soak_config(media_timeout, ice_timeout), engines=engines, observers=[ends]),
                        host="127.0.0.1")
    await server.start_server()
    registry = server.app[REGISTRY]
    url = str(server.make_url("")).rstrip("/")
    placed: dict[str, dict[str, Any]] = {}
    seed = 0
    try:
        with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
            workdir = Path(tmp)

            async def wave_round(duration: float, sample: bool) -> None:
                nonlocal seed
                waves: list[Wave] = []
                deadline = time.monotonic() + duration
                next_sample = time.monotonic()
                while time.monotonic() < deadline or waves:
                    for wave in [w for w in waves if w.done()]:
                        waves.remove(wave)
                        for call in wave.results():
                            placed[call["call_id"]] = call
                    while time.monotonic() < deadline and len(waves) < processes:
                        seed += 1
                        waves.append(Wave(url, calls, seed, workdir))
                    if sample and time.monotonic() >= next_sample:
                        next_sample += sample_every
                        report.rss_samples.append((round(time.monotonic() - started, 1), round(rss_mb(), 1)))
                        if progress:
                            print(f"  {time.monotonic() - started:6.0f} s  calls {len(registry):2d}  placed "
                                  f"{len(placed):4d}  rss {rss_mb():7.1f} MB  tasks {len(asyncio.all_tasks())}",
                                  flush=True)
                    await asyncio.sleep(0.2)

            async def settle() -> None:
                deadline = time.monotonic() + max(media_timeout, ice_timeout) + 15
                while len(registry) and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
                await asyncio.sleep(2.0)

            started = time.monotonic()
            await wave_round(warmup, sample=False)
            await settle()
            loop = asyncio.get_running_loop()  # the default executor at its full size: threads it may start later
            await asyncio.gather(*(loop.run_in_executor(None, time.sleep, 0.05) for _ in range(64)))
            await asyncio.sleep(heap.MIN_INTERVAL_SECONDS + 1)
            report.baseline = snapshot(len(registry))
            if progress:
                print(f"baseline: {report.baseline}", flush=True)
            placed.clear()
            started = time.monotonic()
            await wave_round(seconds, sample=True)
            report.seconds = round(time.monotonic() - started, 1)
            await settle()
            await asyncio.sleep(heap.MIN_INTERVAL_SECONDS + 1)
            report.final = snapshot(len(registry))
    finally:
        await server.close()
    _judge(report, placed, ends)
    return report


def _judge(report: SoakReport, placed: dict[str, dict[str, Any]], ends: Ends) -> None:
    report.calls_placed = len(placed)
    report.calls_by_mode = dict(Counter(call["mode"] for call in placed.values()))
    report.ended_by_reason = dict(Counter(ends.ended[c][0] for c in placed if c in ends.ended))
    freed = [ends.ended[c][1] - call["exited_at"] for c, call in placed.items()
             if call["mode"] == "vanish" and c in ends.ended]
    if freed:
        report.vanish_freed_s = {"max": round(max(freed), 1), "median": round(statistics.median(freed), 1)}
    base, final = report.baseline, report.final
    assert base is not None and final is not None
    for name in ("tasks", "peer_connections", "threads", "fds"):
        if getattr(final, name) > getattr(base, name):
            report.problems.append(f"{name}: {getattr(base, name)} before, {getattr(final, name)} after")
    if final.calls:
        report.problems.append(f"{final.calls} call(s) still live after the run")
    if final.rss_mb > base.rss_mb * (1 + RSS_GROWTH_LIMIT):
        report.problems.append(f"RSS grew from {base.rss_mb} to {final.rss_mb} MB")
    half = report.rss_samples[len(report.rss_samples) // 2 :]
    if len(half) >= 3:
        xs, ys = [x for x, _ in half], [y for _, y in half]
        slope = statistics.linear_regression(xs, ys).slope  # MB per second
        report.rss_slope_mb_per_min = round(slope * 60, 2)
        if report.seconds >= TREND_MIN_SECONDS and slope * report.seconds > base.raw_rss_mb * RSS_TREND_LIMIT:
            report.problems.append(f"RSS still grows: {slope * 60:.2f} MB/min over the second half")
    unended = [c for c in placed if c not in ends.ended]
    if unended:
        report.problems.append(f"{len(unended)} placed call(s) never ended")


# ------------------------------------------------------------------ caller process


async def caller_process(url: str, calls: int, seed: int, report: Path) -> None:
    """Place ``calls`` calls, each ending in a mode chosen by ``seed``; write what was done to ``report``."""
    import numpy as np

    from qa.caller import Caller
    from tests.support.speech import utterance

    rng = random.Random(seed)
    modes = [rng.choice(MODES) for _ in range(calls)]
    clips = [CLIPS[(seed * calls + i) % len(CLIPS)] for i in range(calls)]  # every clip early, in turn
    results: list[dict[str, Any]] = []
    keep: list[Caller] = []

    async def one(mode: str, clip_name: str) -> None:
        if mode == "no_ice":
            pc = RTCPeerConnection()
            pc.addTransceiver("audio")
            pc.createDataChannel("oai-events")
            await pc.setLocalDescription(await pc.createOffer())
            offer = pc.localDescription.sdp
            await pc.close()  # nobody will answer the gateway's ICE checks
            async with aiohttp.ClientSession() as http, http.post(
                    url + "/v1/realtime/calls", data=offer,
                    headers={"Content-Type": "application/sdp"}) as response:
                if response.status == 201:
                    results.append({"call_id": response.headers["Location"].rsplit("/", 1)[1], "mode": mode})
            return
        caller = Caller(url)
        await caller.connect()
        assert caller.location is not None
        results.append({"call_id": caller.location.rsplit("/", 1)[1], "mode": mode})
        with contextlib.suppress(asyncio.TimeoutError):
            await caller.wait_event("session.created", timeout=10)
            clip = utterance(clip_name)
            _, end = await caller.say(np.concatenate([clip.audio(), np.zeros(8000, np.float32)]), 16_000)
            await caller.wait_event("response.done", since=end - 1, timeout=15)
        if mode == "hangup":
            await caller.hangup()
        elif mode == "close":
            await caller.close()
        else:  # vanish: leave it up; the process exits under it
            keep.append(caller)

    await asyncio.gather(*(one(mode, clip) for mode, clip in zip(modes, clips, strict=True)),
                         return_exceptions=True)
    exited_at = time.time()
    for result in results:
        result["exited_at"] = exited_at
    await asyncio.to_thread(report.write_text, json.dumps(results))
    if keep:
        os._exit(0)  # no clean-up at all: the vanishing callers' packets just stop


# ------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="soak", choices=("soak", "caller"))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=2, help="caller processes at a time")
    parser.add_argument("--calls", type=int, default=2, help="concurrent calls per caller process")
    parser.add_argument("--media-timeout", type=float, default=10.0)
    parser.add_argument("--ice-timeout", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds of traffic before the baseline")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--url")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path)
    args = parser.parse_args()
    if args.command == "caller":
        asyncio.run(caller_process(args.url, args.calls, args.seed, args.report))
        return 0

    async def soak() -> SoakReport:
        engines = await asyncio.get_running_loop().run_in_executor(None, load_engines, GatewayConfig())
        await warm_up(engines)
        heap.freeze_long_lived()  # as the gateway does once its models are loaded
        try:
            return await run_soak(args.minutes * 60, engines=engines, processes=args.processes, calls=args.calls,
                                  media_timeout=args.media_timeout, ice_timeout=args.ice_timeout,
                                  warmup=args.warmup)
        finally:
            engines.close()

    report = asyncio.run(soak())
    summary = {k: v for k, v in asdict(report).items() if k != "rss_samples"}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**asdict(report), "ok": report.ok}, indent=2) + "\n")
    print("OK: no leaks" if report.ok else "LEAKS: " + "; ".join(report.problems))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
