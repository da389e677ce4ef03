"""``voice-gateway loadtest``: N concurrent callers in conversation with a gateway.

Each caller connects (ramped over ``ramp_s``, or ``ramp_step`` callers every
``ramp_interval_s``), then until ``duration_s`` is up
says a random clip, waits for the reply to be heard and, with probability
``barge_in_rate``, talks over it with its next clip instead of letting it end.
A caller refused with a ``Retry-After`` (503 at capacity) tries again after it,
until the end of the test (``retry_refused``); every refusal is counted.
``target="pipecat"`` calls a Pipecat SmallWebRTC bot (``benchmarks/pipecat_bot.py``)
and judges its turns by the audio alone (:class:`~qa.audio_dialogue.AudioDialogue`).
Callers run in one process or spread over ``processes`` worker processes
(``spawn``), so the load generator's own CPU does not skew what it measures.
Their turns are collected by :class:`~qa.loadreport.LoadStats`; the
report is written as JSON and plotted to PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import queue
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from qa.audio_dialogue import AudioDialogue
from qa.call_cmd import add_connection_arguments, base_url, check_url, network_from_args, setup_logging
from qa.caller import Caller, CallFailed
from qa.clips import Clip, load_speech
from qa.dialogue import Dialogue, TurnResult
from qa.loadreport import LoadStats, Progress, format_report
from qa.netem import NetworkImpairment

logger = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class LoadOptions:
    url: str
    callers: int
    duration_s: float
    speech: str
    ramp_s: float = 0.0
    processes: int = 1
    out: str | None = "loadtest-results"
    token: str | None = None
    silence_ms: int | None = None
    network: NetworkImpairment | None = None
    barge_in_rate: float = 0.25
    seed: int = 0
    timeout_s: float = 30.0
    max_clip_s: float = 12.0
    jitter_buffer_frames: int = 1
    target: str = "gateway"  # "gateway" (OpenAI signaling and events) or "pipecat" (SmallWebRTC, audio only)
    ramp_step: int = 0  # when > 0: this many callers join every ramp_interval_s (instead of ramp_s)
    ramp_interval_s: float = 10.0
    retry_refused: bool = True  # a caller refused with Retry-After tries again after it
    grace_s: float = 15.0  # after the duration, how long a caller may finish its turn before it hangs up

    def __post_init__(self) -> None:
        check_url(self.url)
        if not 1 <= self.callers <= 10_000:
            raise ValueError("--callers must be 1..10000")
        if not 0 < self.duration_s <= 24 * 3600:
            raise ValueError("--duration must be positive")
        if not 0 <= self.ramp_s <= self.duration_s:
            raise ValueError("--ramp must be between 0 and the duration")
        if not 1 <= self.processes <= self.callers:
            raise ValueError("--processes must be between 1 and the number of callers")
        if not 0 <= self.barge_in_rate <= 1:
            raise ValueError("--barge-in-rate must be 0..1")
        if self.target not in TARGETS:
            raise ValueError(f"--target must be one of {', '.join(TARGETS)}")
        if self.ramp_step < 0 or self.ramp_interval_s <= 0:
            raise ValueError("--ramp-step must be ≥ 0 and --ramp-interval positive")

    def join_s(self, index: int) -> float:
        """Seconds after the start at which caller ``index`` calls."""
        if self.ramp_step:
            return index // self.ramp_step * self.ramp_interval_s
        return index * self.ramp_s / self.callers


TARGETS = {"gateway": "openai", "pipecat": "pipecat"}  # target → the caller's signaling


# ------------------------------------------------------------------ callers


async def run_callers(options: LoadOptions, indices: list[int], started_at: float, emit: Emit,
                      clips: list[Clip] | None = None) -> None:
    """Run the callers ``indices`` to the end of the test, emitting what happens."""
    clips = clips or load_speech(options.speech, max_seconds=options.max_clip_s)
    try:
        await asyncio.gather(*(_caller(options, i, clips, started_at, emit) for i in indices))
    finally:
        emit({"kind": "worker_done"})


async def _caller(options: LoadOptions, index: int, clips: list[Clip], started_at: float, emit: Emit) -> None:
    rng = random.Random(f"{options.seed}:{index}")
    deadline = started_at + options.duration_s
    await asyncio.sleep(max(0.0, started_at + options.join_s(index) - time.time()))
    caller = await _admitted(options, index, deadline, emit)
    if caller is None:
        return
    wall = time.time() - time.monotonic()  # monotonic → wall clock

    def on_turn(turn: TurnResult) -> None:
        emit({"kind": "turn", "caller": index, "at": turn.speech_end + wall, "turn": turn.to_dict(started_at - wall)})

    dialogue: Dialogue | AudioDialogue
    if options.target == "pipecat":
        dialogue = AudioDialogue(caller, silence_ms=options.silence_ms or 500, timeout=options.timeout_s,
                                 on_turn=on_turn)
    else:
        dialogue = Dialogue(caller, timeout=options.timeout_s, on_turn=on_turn)
    try:
        await asyncio.wait_for(_converse(options, dialogue, clips, rng, deadline),
                               max(0.1, deadline + options.grace_s - time.time()))
    except Exception as exc:  # one caller's failure is a finding, not the end of the test
        if isinstance(exc, TimeoutError) and time.time() >= deadline + options.grace_s - 1:
            dialogue.abandon()  # the end of the test: what is still awaited is reported as it stands
        else:
            logger.warning("caller %d failed: %r", index, exc)
            emit({"kind": "exception", "caller": index, "type": type(exc).__name__, "message": str(exc)})
    finally:
        for event in caller.events_of("error"):
            emit({"kind": "error", "caller": index, "type": (event.get("error") or {}).get("code") or "unknown"})
        await caller.hangup()
        emit({"kind": "down", "caller": index})


async def _converse(options: LoadOptions, dialogue: Dialogue | AudioDialogue, clips: list[Clip],
                    rng: random.Random, deadline: float) -> None:
    await dialogue.start(options.silence_ms)
    barge_in = False
    while time.time() < deadline:
        await dialogue.speak(rng.choice(clips), barge_in_after_ms=rng.uniform(400, 1200) if barge_in else None)
        barge_in = rng.random() < options.barge_in_rate
        if not barge_in:
            await dialogue.finish()
            await asyncio.sleep(rng.uniform(0.3, 1.0))
    await dialogue.finish()


async def _admitted(options: LoadOptions, index: int, deadline: float, emit: Emit) -> Caller | None:
    """A connected caller, after as many refusals with ``Retry-After`` as the test's time allows; None if none."""
    network = replace(options.network, seed=options.network.seed + index) if options.network else None
    refused = False  # a caller whose time to join comes after the end never calls: it is not "never admitted"
    while time.time() < deadline:
        caller = Caller(base_url(options.url), token=options.token, network=network,
                        signaling=TARGETS[options.target])
        connecting = time.monotonic()
        try:
            await asyncio.wait_for(caller.connect(), options.timeout_s)
        except (TimeoutError, CallFailed, aiohttp.ClientError, OSError, ValueError) as exc:
            await caller.close()
            retry = exc.retry_after if isinstance(exc, CallFailed) else None
            if isinstance(exc, CallFailed) and retry is not None and options.retry_refused:
                emit({"kind": "refused", "caller": index, "status": exc.status, "retry_after": retry})
                refused = True
                await asyncio.sleep(max(0.1, min(retry, deadline - time.time())))
                continue
            kind = f"{exc.status} {exc.code}" if isinstance(exc, CallFailed) else type(exc).__name__
            emit({"kind": "connect_failed", "caller": index, "type": kind, "message": str(exc)})
            return None
        emit({"kind": "up", "caller": index, "connect_ms": round((time.monotonic() - connecting) * 1000, 1)})
        return caller
    if refused:
        emit({"kind": "never_admitted", "caller": index})
    return None


def _worker(options: LoadOptions, indices: list[int], messages: Any, go: Any, start: Any) -> None:
    """A worker process: load the clips, say ready, wait for the common start, run its callers."""
    logging.basicConfig(level=logging.WARNING)
    from media.jitter import set_audio_prefetch

    set_audio_prefetch(options.jitter_buffer_frames)
    clips = load_speech(options.speech, max_seconds=options.max_clip_s)
    messages.put({"kind": "ready"})
    go.wait()

    def emit(message: dict[str, Any]) -> None:
        messages.put({"at": time.time(), **message})

    asyncio.run(run_callers(options, indices, start.value, emit, clips))


# ---------------------------------------------------------------------- run


async def run_loadtest(options: LoadOptions, *, progress: TextIO | None = None) -> dict[str, Any]:
    """Run the load test; returns the report (also written to ``options.out`` when set)."""
    clips = load_speech(options.speech, max_seconds=options.max_clip_s)
    settings = {"url": base_url(options.url), "callers": options.callers, "processes": options.processes,
                "duration_s": options.duration_s, "ramp_s": options.ramp_s, "speech": options.speech,
                "clips": len(clips), "barge_in_rate": options.barge_in_rate, "seed": options.seed,
                "target": options.target, "ramp_step": options.ramp_step, "ramp_interval_s": options.ramp_interval_s,
                "network": asdict(options.network) if options.network else None}
    if options.processes == 1:
        stats = LoadStats(callers=options.callers, started_at=time.time())
        display = Progress(progress, stats)

        def emit(message: dict[str, Any]) -> None:
            stats.handle({"at": time.time(), **message})

        callers = asyncio.ensure_future(run_callers(options, list(range(options.callers)), stats.started_at,
                                                    emit, clips))
        while not callers.done():
            display.tick()
            await asyncio.wait([callers], timeout=0.5)
        callers.result()
    else:
        stats = await _run_processes(options, progress)
        display = Progress(progress, stats)
    display.done()
    report = stats.report(settings)
    if options.out is not None:
        write_outputs(report, Path(options.out))
    return report


async def _run_processes(options: LoadOptions, progress: TextIO | None) -> LoadStats:
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    go = context.Event()
    start = context.Value("d", 0.0)
    shares = [list(range(p, options.callers, options.processes)) for p in range(options.processes)]
    workers = [context.Process(target=_worker, args=(options, share, messages, go, start), daemon=True)
               for share in shares]
    for worker in workers:
        worker.start()
    try:
        ready = 0
        while ready < len(workers):
            message = await _next_message(messages, workers, lambda: None)
            if message is None:
                raise RuntimeError("a load test worker process exited before it was ready")
            ready += message.get("kind") == "ready"
        stats = LoadStats(callers=options.callers, started_at=time.time())
        start.value = stats.started_at
        go.set()
        display = Progress(progress, stats)
        while stats.workers_done < len(workers):
            message = await _next_message(messages, workers, display.tick)
            if message is None:
                stats.errors["exception:WorkerDied"] += len(workers) - stats.workers_done
                break
            stats.handle(message)
            display.tick()
        return stats
    finally:
        for worker in workers:
            await asyncio.get_running_loop().run_in_executor(None, worker.join, 10)
            if worker.is_alive():
                worker.terminate()
                worker.join(5)
        messages.close()


async def _next_message(messages: Any, workers: list[Any], idle: Callable[[], None]) -> dict[str, Any] | None:
    """The next message from the workers; None when none can come any more."""
    while True:
        idle()
        with contextlib.suppress(queue.Empty):
            message: dict[str, Any] = messages.get_nowait()
            return message
        if not any(worker.is_alive() for worker in workers):
            with contextlib.suppress(queue.Empty):
                return dict(messages.get(timeout=0.5))
            return None
        await asyncio.sleep(0.05)


def write_outputs(report: dict[str, Any], out: Path) -> None:
    """``loadtest.json`` and, when matplotlib is installed, ``loadtest.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "loadtest.json").write_text(json.dumps(report, indent=2) + "\n")
    report["files"] = [str(out / "loadtest.json")]
    try:
        from qa.plot import plot_loadtest
    except ImportError:
        logger.warning("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    plot_loadtest(report, out / "loadtest.png")
    report["files"].append(str(out / "loadtest.png"))


# ---------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    parser.add_argument("--callers", type=int, required=True, help="concurrent callers")
    parser.add_argument("--duration", type=float, required=True, help="seconds of conversation")
    parser.add_argument("--speech", required=True, metavar="DIR|MANIFEST",
                        help="clips to say: a directory of audio files or a manifest.tsv (file, transcript)")
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds over which callers join (default 0)")
    parser.add_argument("--processes", type=int, default=1, help="worker processes for the callers (default 1)")
    parser.add_argument("--out", default="loadtest-results", help="directory for loadtest.json and loadtest.png")
    parser.add_argument("--barge-in-rate", type=float, default=0.25, help="share of replies talked over")
    parser.add_argument("--seed", type=int, default=0, help="seed of the callers' choices")
    parser.add_argument("--max-clip-seconds", type=float, default=12.0, help="leave out longer clips")
    parser.add_argument("--target", choices=sorted(TARGETS), default="gateway",
                        help="gateway (OpenAI signaling) or pipecat (a Pipecat SmallWebRTC bot: POST /api/offer)")
    parser.add_argument("--ramp-step", type=int, default=0,
                        help="callers joining every --ramp-interval seconds (instead of --ramp)")
    parser.add_argument("--ramp-interval", type=float, default=10.0, help="seconds between ramp steps (default 10)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON, not a summary")


def main(args: argparse.Namespace) -> int:
    try:
        setup_logging(args)
        options = LoadOptions(
            url=args.url, callers=args.callers, duration_s=args.duration, speech=args.speech, ramp_s=args.ramp,
            processes=args.processes, out=args.out, token=args.token, silence_ms=args.silence_ms,
            network=network_from_args(args), barge_in_rate=args.barge_in_rate, seed=args.seed,
            timeout_s=args.timeout, max_clip_s=args.max_clip_seconds, jitter_buffer_frames=args.jitter_buffer_frames,
            target=args.target, ramp_step=args.ramp_step, ramp_interval_s=args.ramp_interval)
        report = asyncio.run(run_loadtest(options, progress=sys.stderr))
    except ValueError as exc:
        print(f"voice-gateway loadtest: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"voice-gateway loadtest: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "turn_records"}, indent=2))
    else:
        print(format_report(report))
        for path in report.get("files", []):
            print(f"wrote {path}")
    return 0 if report["ok"] else 1
