"""Fuzzing the gateway's hostile-input surface, outside CI (docs/security.md reports a run).

Two engines:

* ``hypothesis`` (default): the property tests' strategies (tests/security/strategies.py) at high example
  counts, against five targets —
  ``sdp``: ``signaling.sdp.decode_sdp`` returns SDP text or raises a documented ApiError;
  ``offer``: an offer that ``decode_sdp`` accepts is answered by a real WebRTC session (aiortc) or refused with
  ``InvalidOffer`` — nothing else escapes, and closing the call leaves no task;
  ``events``: ``parse_client_event`` returns an event or raises a documented BadClientEvent;
  ``session``: ``SessionSettings.updated`` returns valid settings or raises InvalidSession;
  ``call``: any sequence of data-channel messages to a ``RealtimeSession`` yields only documented errors, never an
  exception.
* ``atheris``: coverage-guided libFuzzer (``pip install atheris``) on raw bytes, for ``sdp``, ``events``
  (parsing, then ``session.update`` payloads through the settings) and ``offer``.

Usage::

    python benchmarks/fuzz.py hypothesis --examples 20000 [--targets sdp,offer,events,session,call]
    python benchmarks/fuzz.py atheris --target sdp -- -max_total_time=300
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gateway.errors import InvalidOffer  # noqa: E402
from gateway.protocol.client_events import BadClientEvent, ClientEvent, SessionUpdate  # noqa: E402
from gateway.protocol.session_settings import InvalidSession, SessionSettings  # noqa: E402
from gateway.session.session import RealtimeSession  # noqa: E402
from gateway.transports.webrtc import WebRTCOptions, WebRTCTransport  # noqa: E402
from signaling.errors import ApiError  # noqa: E402
from signaling.sdp import decode_sdp  # noqa: E402
from tests.security.properties import CONFIG, check_call_messages, checked_event, checked_session  # noqa: E402
from tests.security.strategies import (  # noqa: E402
    OFFER,
    SDP_ERRORS,
    call_messages,
    client_messages,
    sdp_bodies,
    sessions,
)
from tests.support.fakes import fake_engines  # noqa: E402

MAX_SDP = CONFIG.limits.max_sdp_bytes


class Stats:
    def __init__(self) -> None:
        self.runs = 0
        self.outcomes: dict[str, int] = {}
        self.findings: Counter[str] = Counter()  # not failures: things worth a look (e.g. aiortc's task errors)
        self.samples: dict[str, str] = {}  # finding -> the first input that showed it
        self.current = ""

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Exceptions of fire-and-forget tasks (aiortc's own), which no one awaits."""
        exc = context.get("exception")
        where = ""
        if exc is not None and exc.__traceback__ is not None:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f" at {Path(frame.filename).name}:{frame.lineno}"
        self.found(f"unretrieved:{type(exc).__name__}: {exc}{where}" if exc else context["message"])

    def found(self, finding: str) -> None:
        self.findings[finding] += 1
        self.samples.setdefault(finding, self.current)

    def count(self, outcome: str) -> None:
        self.runs += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


# ------------------------------------------------------------------ checks (one input each)


def check_sdp(body: bytes, stats: Stats) -> str | None:
    """The SDP text ``decode_sdp`` accepted, or None when it refused ``body`` (as documented)."""
    try:
        text = decode_sdp(body, max_bytes=MAX_SDP)
    except ApiError as exc:
        assert exc.code in SDP_ERRORS.get(exc.status, set()), (exc.status, exc.code)
        stats.count(exc.code)
        return None
    assert text.startswith("v=0\r\n") and "\x00" not in text
    stats.count("accepted")
    return text


async def check_offer(text: str, stats: Stats) -> None:
    """A real WebRTC session answers ``text`` or refuses it with InvalidOffer; closing it leaves no task behind.

    Tasks still pending a second after the close are counted (``tasks_left:<coroutine>``), not failed:
    some are aiortc's own fire-and-forget tasks.
    """
    engines, _ = fake_engines()
    stats.current = text
    before = asyncio.all_tasks()
    transport = WebRTCTransport("rtc_fuzz", WebRTCOptions.from_config(CONFIG))
    call = RealtimeSession("rtc_fuzz", CONFIG, engines, SessionSettings.from_config(CONFIG, engines.tts.voices),
                           transport, on_closed=lambda _call: None)
    try:
        answer = await transport.answer(text)
        assert answer.startswith("v=0")
        stats.count("answered")
    except InvalidOffer as exc:
        assert exc.code in ("invalid_sdp", "no_audio"), exc.code
        stats.count("refused:" + exc.code)
    finally:
        await call.close("rejected")
    for _ in range(20):
        left = asyncio.all_tasks() - before - {asyncio.current_task()}
        if not left:
            return
        await asyncio.sleep(0.05)
    for task in left:
        stats.found("tasks_left:" + task.get_coro().__qualname__)  # type: ignore[union-attr]


def check_event(message: str | bytes, stats: Stats) -> ClientEvent | None:
    result = checked_event(message)
    if isinstance(result, BadClientEvent):
        stats.count(result.code)
        return None
    stats.count("event")
    return result


def check_session(session: Any, stats: Stats) -> None:
    stats.count("invalid" if isinstance(checked_session(session), InvalidSession) else "valid")


async def check_call(messages: list[str | bytes], stats: Stats) -> None:
    await check_call_messages(messages)
    stats.count("ok")


def run_hypothesis(target: str, examples: int, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    stats = Stats()
    strategies: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], None]]] = {
        "sdp": (sdp_bodies(), lambda body: _ignore(check_sdp(body, stats))),
        "offer": (sdp_bodies(), lambda body: _offer(body, stats, loop)),
        "events": (client_messages(), lambda message: _ignore(check_event(message, stats))),
        "session": (sessions(), lambda session: check_session(session, stats)),
        "call": (st.lists(call_messages(), min_size=1, max_size=30),
                 lambda messages: loop.run_until_complete(check_call(messages, stats))),
    }
    strategy, check = strategies[target]
    loop.set_exception_handler(stats.loop_exception)
    test = settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))(given(strategy)(check))
    started = time.perf_counter()
    failure = None
    try:
        test()
    except BaseException as exc:
        failure = _describe(exc)
    return {"target": target, "engine": "hypothesis", "examples": stats.runs, "seconds": round(
        time.perf_counter() - started, 1), "outcomes": stats.outcomes,
            "findings": dict(stats.findings), "samples": stats.samples, "failure": failure}


def _ignore(_value: object) -> None:
    pass


def _describe(exc: BaseException) -> str:
    """Each failure with where it was raised and its falsifying example (hypothesis adds it as a note)."""
    failures = list(exc.exceptions) if isinstance(exc, BaseExceptionGroup) else [exc]
    described = []
    for failure in failures:
        where = ""
        if failure.__traceback__ is not None:
            frame = traceback.extract_tb(failure.__traceback__)[-1]
            where = f" (at {Path(frame.filename).name}:{frame.lineno})"
        described.append("".join(traceback.format_exception_only(failure)).strip() + where)
    return "\n\n".join(described)


def _offer(body: bytes, stats: Stats, loop: asyncio.AbstractEventLoop) -> None:
    text = check_sdp(body, Stats())
    if text is None:
        stats.count("refused_before_aiortc")
        return
    loop.run_until_complete(check_offer(text, stats))


# ------------------------------------------------------------------ atheris


def run_atheris(target: str, libfuzzer_args: list[str]) -> None:
    import atheris

    loop = asyncio.new_event_loop()
    stats = Stats()

    def one_input(data: bytes) -> None:
        if target == "sdp":
            check_sdp(data, stats)
        elif target == "offer":
            text = check_sdp(data, stats)
            if text is not None:
                loop.run_until_complete(check_offer(text, stats))
        else:
            provider = atheris.FuzzedDataProvider(data)
            message: str | bytes = provider.ConsumeBytes(8) if provider.ConsumeBool() else \
                provider.ConsumeUnicode(provider.remaining_bytes())
            event = check_event(message, stats)
            if isinstance(event, SessionUpdate):
                check_session(event.session, stats)

    import gateway.protocol.client_events
    import gateway.protocol.session_settings
    import signaling.sdp

    # coverage feedback from these
    for module in (signaling.sdp, gateway.protocol.client_events, gateway.protocol.session_settings):
        for value in list(vars(module).values()):
            functions = [value] if inspect.isfunction(value) else list(vars(value).values()) \
                if inspect.isclass(value) and value.__module__ == module.__name__ else []
            for function in functions:
                if inspect.isfunction(function) and function.__module__ == module.__name__:
                    atheris.instrument_func(function)
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{target}-"))
    seeds = [OFFER.encode()] if target in ("sdp", "offer") else [
        json.dumps({"type": "session.update", "session": {"turn_detection": {"threshold": 0.4}}}).encode(),
        b'{"type": "response.create"}']
    for i, seed in enumerate(seeds):
        (corpus / f"seed{i}").write_bytes(seed)
    atheris.Setup([sys.argv[0], *libfuzzer_args, str(corpus)], one_input)
    try:
        atheris.Fuzz()
    finally:  # libFuzzer exits the process at the end of the run; this prints when it returns normally
        print(json.dumps({"target": target, "engine": "atheris", "runs": stats.runs, "outcomes": stats.outcomes}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="engine", required=True)
    hypo = commands.add_parser("hypothesis")
    hypo.add_argument("--examples", type=int, default=20_000)
    hypo.add_argument("--targets", default="sdp,offer,events,session,call")
    hypo.add_argument("--out", type=Path, help="write the results as JSON here")
    ath = commands.add_parser("atheris")
    ath.add_argument("--target", choices=("sdp", "offer", "events"), default="sdp")
    ath.add_argument("libfuzzer", nargs="*", help="libFuzzer options after --, e.g. -max_total_time=300")
    args = parser.parse_args()
    if args.engine == "atheris":
        run_atheris(args.target, args.libfuzzer)
        return 0
    loop = asyncio.new_event_loop()
    results = []
    for target in args.targets.split(","):
        examples = args.examples if target not in ("offer", "call") else max(1, args.examples // 4)
        result = run_hypothesis(target, examples, loop)
        print(json.dumps(result), flush=True)
        results.append(result)
    loop.close()
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any(r["failure"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
