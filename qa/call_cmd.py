"""``voice-gateway call``: one real WebRTC call that plays files and reports what the caller heard.

:func:`run_call` is the whole command as an async function (tests run it in
process); :func:`main` adds argument parsing and printing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from qa import measure
from qa.caller import RATE, Caller, CallFailed
from qa.clips import Clip, known_transcript, load_clip, write_wav
from qa.dialogue import Dialogue, TurnResult
from qa.netem import DIRECTIONS, NetworkImpairment

CALLS_PATH = "/v1/realtime/calls"


@dataclass(frozen=True)
class CallOptions:
    url: str
    files: tuple[str, ...]
    barge_in_after_ms: float | None = None
    record: str | None = None
    token: str | None = None
    silence_ms: int | None = None
    network: NetworkImpairment | None = None
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        check_url(self.url)
        if not self.files:
            raise ValueError("give at least one file to play")
        if self.barge_in_after_ms is not None and not 0 <= self.barge_in_after_ms <= 60_000:
            raise ValueError("--barge-in-after must be 0..60000 ms")
        if self.silence_ms is not None and not 100 <= self.silence_ms <= 5000:
            raise ValueError("--silence-ms must be 100..5000")
        if self.timeout_s <= 0:
            raise ValueError("--timeout must be positive")


@dataclass
class CallReport:
    url: str
    ok: bool = False
    call_id: str | None = None
    error: dict[str, Any] | None = None  # why the call failed as a whole: refused, unreachable, ...
    silence_ms: int | None = None
    turns: list[dict[str, Any]] = field(default_factory=list)
    gateway_errors: list[dict[str, Any]] = field(default_factory=list)  # ``error`` events
    network: dict[str, Any] | None = None
    recording: str | None = None
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        overheads = [t["overhead_ms"] for t in self.turns if t["overhead_ms"] is not None]
        stops = [t["barge_in_stop_ms"] for t in self.turns if t["barge_in_stop_ms"] is not None]
        return {**self.__dict__, "summary": {"overhead_ms": measure.summary(overheads),
                                             "barge_in_stop_ms": measure.summary(stops)}}


def check_url(url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"the URL must start with http:// or https://, not {url!r}")


def base_url(url: str) -> str:
    """The gateway's base URL, whether given as ``http://host:port`` or the full calls URL."""
    url = url.rstrip("/")
    return url[: -len(CALLS_PATH)] if url.endswith(CALLS_PATH) else url


async def run_call(options: CallOptions) -> CallReport:
    """Place the call, play every file (barging in if asked), hang up; never raises for a failed call."""
    report = CallReport(url=base_url(options.url))
    try:
        clips = [load_clip(path, known_transcript(path)) for path in options.files]
    except ValueError as exc:
        report.error = {"status": None, "code": "bad_input", "message": str(exc)}
        return report
    plan: list[Clip] = clips * 2 if options.barge_in_after_ms is not None and len(clips) == 1 else clips
    caller = Caller(report.url, token=options.token, network=options.network)
    started = time.monotonic()
    turns: list[TurnResult] = []
    try:
        await asyncio.wait_for(caller.connect(), options.timeout_s)
        dialogue = Dialogue(caller, timeout=options.timeout_s)
        await dialogue.start(options.silence_ms)
        created = caller.events_of("session.created")
        report.call_id = (created[0].get("session") or {}).get("id") if created else None
        for i, clip in enumerate(plan):
            await dialogue.speak(clip, barge_in_after_ms=options.barge_in_after_ms if i else None)
        await dialogue.finish()
        turns = dialogue.turns
    except CallFailed as exc:
        report.error = {"status": exc.status, "code": exc.code, "message": exc.message}
    except TimeoutError:
        report.error = {"status": None, "code": "timeout",
                        "message": f"no connection or no session.created within {options.timeout_s:g} s"}
    except (aiohttp.ClientError, OSError, ValueError, RuntimeError) as exc:
        report.error = {"status": None, "code": type(exc).__name__, "message": str(exc) or repr(exc)}
    finally:
        report.call_id = report.call_id or (caller.location or "").rsplit("/", 1)[-1] or None
        await caller.hangup()
    report.duration_s = round(time.monotonic() - started, 2)
    report.turns = [turn.to_dict(started) for turn in turns]
    report.silence_ms = measure.silence_duration_ms(event for _, event in caller.events)
    report.gateway_errors = [event.get("error") or {} for event in caller.events_of("error")]
    report.network = caller.relay.stats() if caller.relay is not None else None
    if options.record is not None and report.error is None:
        write_wav(options.record, caller.received.pcm(), RATE)
        report.recording = options.record
    report.ok = report.error is None and bool(turns) and all(t.ok for t in turns) and not report.gateway_errors
    return report


# ----------------------------------------------------------------------------- output


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms"


def format_report(report: CallReport) -> str:
    """The human-readable report: a table of the figures, then what was said."""
    if report.error is not None and not report.turns:
        status = report.error.get("status")
        return f"call to {report.url} failed: {status or ''} {report.error.get('code') or ''}: " \
               f"{report.error['message']}".replace("  ", " ")
    lines = [f"call {report.call_id or '?'} to {report.url} · end-of-turn silence {_ms(report.silence_ms)}"
             f" · {len(report.turns)} turn{'' if len(report.turns) == 1 else 's'} in {report.duration_s:.1f} s", ""]
    lines.append(f"{'turn':>4}  {'file':<28} {'overhead':>9} {'barge-in stop':>14} {'gateway first packet':>21}"
                 f"  reply")
    for turn in report.turns:
        stages = (turn["gateway"] or {}).get("stages_ms") or {}
        status = turn["error"] or turn["reply_status"] or "?"
        if turn["gateway_turns"] > 1:
            status += f" (the gateway made {turn['gateway_turns']} turns of it)"
        if turn["barge_in"]:
            status += " (talked over the previous reply" + ("" if turn["interrupted"] else "; it had ended") + ")"
        lines.append(f"{turn['index']:>4}  {turn['clip'][:28]:<28} {_ms(turn['overhead_ms']):>9} "
                     f"{_ms(turn['barge_in_stop_ms']):>14} {_ms(stages.get('first_packet_sent')):>21}  {status}")
    lines.append("")
    for turn in report.turns:
        wer = "" if turn["wer"] is None else f"   (WER {turn['wer']:.2f})"
        lines.append(f"{turn['index']:>4}  heard: {json.dumps(turn['transcript'])}{wer}")
        lines.append(f"      reply: {json.dumps(turn['reply'])}")
        if turn["cleared_event_ms"] is not None:
            lines.append(f"      talked over the previous reply: its audio stopped {_ms(turn['barge_in_stop_ms'])}"
                         f" after the onset; output_audio_buffer.cleared arrived after {_ms(turn['cleared_event_ms'])}")
        stages = (turn["gateway"] or {}).get("stages_ms")
        if stages:
            shown = " · ".join(f"{k} {v:.0f}" for k, v in stages.items() if v is not None and k != "speech_end")
            lines.append(f"      gateway, ms after the end of speech: {shown}")
    summary = report.to_dict()["summary"]
    overhead, stop = summary["overhead_ms"], summary["barge_in_stop_ms"]
    lines.append("")
    figures = f"overhead p50 {_ms(overhead['p50'])}, max {_ms(overhead['max'])}"
    if stop["count"]:
        figures += f" · barge-in stop p50 {_ms(stop['p50'])}, max {_ms(stop['max'])}"
    lines.append(figures)
    if report.network is not None:
        lines.append("network: " + describe_network(report.network))
    for error in report.gateway_errors:
        lines.append(f"gateway error: {error.get('code')}: {error.get('message')}")
    if report.error is not None:
        lines.append(f"call failed: {report.error.get('code')}: {report.error['message']}")
    if report.recording:
        lines.append(f"recorded the gateway's voice to {report.recording}")
    lines.append("result: " + ("OK" if report.ok else "FAILED"))
    return "\n".join(lines)


def describe_network(stats: dict[str, Any]) -> str:
    imp = stats["impairment"]
    parts = [f"delay {imp['delay_ms']:g} ms ± {imp['jitter_ms']:g} ms, media loss {imp['loss']:.1%} "
             f"({imp['direction']}, seed {imp['seed']})"]
    for direction in ("send", "receive"):
        link = stats[direction]
        parts.append(f"{direction}: {link['media_packets']} media packets, {link['media_dropped']} dropped")
    return "; ".join(parts)


# -------------------------------------------------------------------------------- CLI


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``call`` and ``loadtest``: auth, end-of-turn silence, network impairment."""
    parser.add_argument("url", help="the gateway's base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--token", default=os.environ.get("VOICE_GATEWAY_TOKEN"),
                        help="bearer token for the POST and DELETE (default: $VOICE_GATEWAY_TOKEN)")
    parser.add_argument("--silence-ms", type=int, help="ask for this end-of-turn silence (session.update)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each step (default 30)")
    parser.add_argument("--jitter-buffer-frames", type=int, default=1,
                        help="the caller's receive jitter buffer, 20 ms frames (default 1; aiortc's is 4)")
    net = parser.add_argument_group("network impairment (on the caller's side; see gateway/qa/netem.py)")
    net.add_argument("--net-delay-ms", type=float, default=0.0, help="added one-way delay of every packet")
    net.add_argument("--net-jitter-ms", type=float, default=0.0, help="± uniform jitter of each media packet")
    net.add_argument("--net-loss", type=float, default=0.0, help="fraction of media packets dropped, 0..1")
    net.add_argument("--net-direction", choices=DIRECTIONS, default="both",
                     help="send (caller → gateway), receive or both (default)")
    net.add_argument("--net-seed", type=int, default=0, help="seed of the loss and jitter draws")
    parser.add_argument("--log-level", default="WARNING")


def network_from_args(args: argparse.Namespace) -> NetworkImpairment | None:
    impairment = NetworkImpairment(args.net_delay_ms, args.net_jitter_ms, args.net_loss, args.net_direction,
                                   args.net_seed)
    return impairment if impairment.active else None


def setup_logging(args: argparse.Namespace) -> None:
    """Logging and the receive jitter buffer of this process's callers."""
    from media.jitter import set_audio_prefetch

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_audio_prefetch(args.jitter_buffer_frames)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    parser.add_argument("--play", action="append", required=True, metavar="FILE",
                        help="audio to say, any format and rate; repeat for more turns")
    parser.add_argument("--barge-in-after", type=float, metavar="MS",
                        help="say each following file MS ms after the previous reply became audible "
                             "(or once it is heard again, if it paused then), talking over it "
                             "(with one --play, the file is said twice)")
    parser.add_argument("--record", metavar="OUT.wav", help="write what the gateway said (48 kHz mono)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def main(args: argparse.Namespace) -> int:
    try:
        setup_logging(args)
        options = CallOptions(url=args.url, files=tuple(args.play), barge_in_after_ms=args.barge_in_after,
                              record=args.record, token=args.token, silence_ms=args.silence_ms,
                              network=network_from_args(args), timeout_s=args.timeout)
    except ValueError as exc:
        print(f"voice-gateway call: {exc}", file=sys.stderr)
        return 2
    if options.record is not None and not Path(options.record).parent.is_dir():
        print(f"voice-gateway call: no such directory for {options.record}", file=sys.stderr)
        return 2
    for path in options.files:
        if not Path(path).is_file():
            print(f"voice-gateway call: no such file: {path}", file=sys.stderr)
            return 2
    report = asyncio.run(run_call(options))
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    if report.error is not None:
        status = report.error.get("status")
        print(f"voice-gateway call: call failed{f' ({status})' if status else ''}: {report.error['message']}",
              file=sys.stderr)
    return 0 if report.ok else 1
