"""A conversation driven on a :class:`Caller`: speak, wait for the reply, or talk over it.

:meth:`Dialogue.speak` plays a clip and returns once the reply to it is heard
(or has failed to come); :meth:`Dialogue.finish` waits for that reply to end.
Speaking again with ``barge_in_after_ms`` instead of finishing talks over the
reply that many milliseconds after it became audible (or, if it is silent just
then, between two clauses, once it is heard again). Every turn ends up as a
:class:`TurnResult` measured on the caller's side (see :mod:`qa.measure`).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from qa import measure
from qa.caller import Caller
from qa.clips import Clip

TRANSCRIBED = "conversation.item.input_audio_transcription.completed"
TRANSCRIPTION_FAILED = "conversation.item.input_audio_transcription.failed"
QUIET_S = 0.3  # a reply is over for the caller once this long is silent
#: A silence inside a reply this long is a stall: Piper leaves at most 390 ms on its own (at a colon
#: or a comma, "You said: …" over the manifest's transcripts), so only audio that ran out lasts 700 ms.
STALL_S = 0.7
AUDIBLE_NOW_S = 0.1  # a reply is being heard when it was audible this recently


def reply_stall_ms(audible: list[float], first: float, until: float) -> float:
    """Total silence in gaps of at least :data:`STALL_S` between audible blocks of a reply in [first, until]."""
    blocks = sorted(at for at in audible if first <= at <= until)
    gaps = [b - a - measure.BLOCK_S for a, b in itertools.pairwise(blocks)]
    return round(sum(g for g in gaps if g >= STALL_S) * 1000, 1)


def abandon_turns(turns: list[TurnResult], reported: set[int], report: Callable[..., None]) -> None:
    """Report the turns of ``turns`` not in ``reported``; those never answered as ``unanswered_at_end``."""
    for turn in turns:
        if turn.index in reported:
            continue
        if turn.first_audible is None and turn.error is None:
            turn.error = "unanswered_at_end"
        report(turn, until=time.monotonic())


@dataclass
class TurnResult:
    """One turn as the caller saw it. Times are ``time.monotonic()`` readings."""

    index: int
    clip: str
    speech_onset: float
    speech_end: float
    silence_ms: int | None
    expected: str | None = None
    transcript: str | None = None
    wer: float | None = None
    response_id: str | None = None
    reply: str | None = None
    reply_status: str | None = None
    first_audible: float | None = None
    overhead_ms: float | None = None
    gateway_turns: int = 0  # turns the gateway made of this utterance (more than 1: it cut it up)
    barge_in: bool = False  # this turn's speech talked over the previous reply
    interrupted: bool | None = None  # ... and the gateway cancelled that reply
    barge_in_stop_ms: float | None = None
    cleared_event_ms: float | None = None  # onset → arrival of the gateway's output_audio_buffer.cleared
    events_late_ms: float | None = None  # how long after the reply's first audio its response.created arrived
    underrun_ms: int | None = None  # silence in the middle of the reply: its audio ran out (gateway.response.playback)
    stall_ms: float | None = None  # silences ≥ STALL_S inside the reply, as the caller heard them (any peer)
    gateway: dict[str, Any] | None = None  # the gateway's gateway.turn.metrics, where sent
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self, origin: float) -> dict[str, Any]:
        """A JSON-ready copy with times in seconds after ``origin``."""
        data = asdict(self)
        for key in ("speech_onset", "speech_end", "first_audible"):
            if data[key] is not None:
                data[key] = round(data[key] - origin, 3)
        return data


class Dialogue:
    def __init__(self, caller: Caller, *, timeout: float = 30.0,
                 on_turn: Callable[[TurnResult], None] | None = None) -> None:
        self.caller = caller
        self.timeout = timeout
        self.turns: list[TurnResult] = []
        self._on_turn = on_turn
        self._playing: TurnResult | None = None
        self._reported: set[int] = set()

    def abandon(self) -> None:
        """Report every turn not reported yet, as it stands: the test ended while waiting on it.

        A turn whose reply was never heard is failed (``unanswered_at_end``): a reply later than the
        test's grace is no success, and leaving it out would hide the calls that were slowest.
        """
        abandon_turns(self.turns, self._reported, self._report)

    async def start(self, silence_ms: int | None = None) -> None:
        """Wait for ``session.created``; ask for another end-of-turn silence if given."""
        await self.caller.wait_event("session.created", timeout=self.timeout)
        if silence_ms is None:
            return
        since = time.monotonic()
        self.caller.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
            "turn_detection": {"type": "server_vad", "silence_duration_ms": silence_ms}}}}})
        answer = await self._next(("session.updated", "error"), since, self.timeout)
        if answer is None or answer["type"] == "error":
            message = (answer or {}).get("error", {}).get("message", "no session.updated")
            raise RuntimeError(f"the gateway refused silence_duration_ms={silence_ms}: {message}")

    @property
    def silence_ms(self) -> int | None:
        return measure.silence_duration_ms(event for _, event in self.caller.events)

    async def speak(self, clip: Clip, *, barge_in_after_ms: float | None = None) -> TurnResult:
        """Say ``clip`` and wait until its reply is heard; talk over the current reply if asked."""
        previous, self._playing = self._playing, None
        barge_in = barge_in_after_ms is not None and previous is not None and previous.first_audible is not None
        if barge_in:
            assert previous is not None and previous.first_audible is not None and barge_in_after_ms is not None
            await asyncio.sleep(max(0.0, previous.first_audible + barge_in_after_ms / 1000 - time.monotonic()))
            await self._until_heard(previous)
        elif previous is not None:
            await self._finish(previous)
        silence = self.silence_ms
        onset, end = await self.caller.say(clip.samples, clip.rate)
        turn = TurnResult(len(self.turns) + 1, clip.name, onset, end, silence, expected=clip.transcript,
                          barge_in=barge_in)
        self.turns.append(turn)
        if barge_in and previous is not None:
            await self._settle(previous)
            turn.interrupted = previous.reply_status == "cancelled"
            cleared = [at for at, e in self.caller.events if at >= onset and e.get("type") ==
                       "output_audio_buffer.cleared" and e.get("response_id") == previous.response_id]
            turn.cleared_event_ms = round((cleared[0] - onset) * 1000, 1) if cleared else None
            self._report(previous, until=onset)
        await self._await_reply(turn)
        if barge_in:
            until = end + (silence or 0) / 1000
            if turn.first_audible is not None:
                until = min(until, turn.first_audible)
            # A clip with a long pause inside gets a reply before it ends: that audio is not the
            # interrupted reply's, so the measurement stops where the next response was created.
            skip = previous.response_id if previous is not None else None
            created = [at for at, e in self.caller.events if at >= onset and e.get("type") == "response.created"
                       and (e.get("response") or {}).get("id") != skip]
            if created:
                until = min(until, created[0])
            await asyncio.sleep(max(0.0, until + 0.05 - time.monotonic()))
            audible = self.caller.received.audible_times(since=onset - measure.REPLY_GAP_S, until=until)
            turn.barge_in_stop_ms = measure.barge_in_stop_ms(audible, onset, until)
        if turn.response_id is not None and turn.first_audible is not None:
            self._playing = turn
        else:
            self._report(turn)
        return turn

    async def _until_heard(self, turn: TurnResult) -> None:
        """Wait until ``turn``'s reply is being heard, or is over: talking over a reply means over its audio.

        A reply falls silent between clauses when the next one was not synthesised in time (on a
        busy machine the gap after a short first clause, "You said:", lasted over a second):
        speech in that gap stops nothing, and there would be no barge-in stop to measure.
        """
        rid = turn.response_id
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.caller.received.last_audible(since=time.monotonic() - AUDIBLE_NOW_S) is not None:
                return
            if any((e.get("response") or {}).get("id") == rid
                   for e in self.caller.events_of("response.done", since=turn.speech_onset)):
                return
            await asyncio.sleep(0.01)

    async def finish(self) -> None:
        """Wait for the reply being played to end (if any) and for the line to fall quiet."""
        turn, self._playing = self._playing, None
        if turn is not None:
            await self._finish(turn)

    async def _finish(self, turn: TurnResult) -> None:
        await self._settle(turn)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.caller.received.last_audible(since=time.monotonic() - QUIET_S) is None:
                break
            await asyncio.sleep(0.05)
        self._report(turn, until=time.monotonic() - QUIET_S)

    async def _settle(self, turn: TurnResult) -> None:
        """Wait for the ``response.done`` of ``turn``'s reply and note what was said."""
        if turn.response_id is None:
            return
        rid = turn.response_id
        done = await self._next(("response.done",), turn.speech_onset, 4 * self.timeout,
                                where=lambda e: (e.get("response") or {}).get("id") == rid)
        if done is None:
            turn.error = turn.error or "reply_not_finished"
            return
        turn.reply = measure.response_transcript(done)
        turn.reply_status = done["response"].get("status")
        playback = [e for e in self.caller.events_of("gateway.response.playback", since=turn.speech_onset)
                    if e.get("response_id") == rid]
        if playback:
            turn.underrun_ms = playback[0].get("underrun_ms")
        # Sent with the reply's first packet, so before its response.done on the same ordered channel.
        metrics = [e for e in self.caller.events_of("gateway.turn.metrics", since=turn.speech_onset)
                   if e.get("response_id") == rid]
        if metrics:
            turn.gateway = {k: v for k, v in metrics[0].items() if k not in ("type", "event_id")}
        if turn.reply_status == "failed":
            turn.error = turn.error or "reply_failed"

    async def _await_reply(self, turn: TurnResult) -> None:
        """Wait for the transcript and the first audible reply; the reply heard is the latest one created.

        An utterance with a long pause inside may become several turns at the
        gateway (each answered, then talked over by the rest of the utterance):
        all their transcripts make the turn's transcript, ``gateway_turns``
        counts them.
        """
        caller, since = self.caller, turn.speech_onset
        heard = await self._next((TRANSCRIBED, TRANSCRIPTION_FAILED), since, self.timeout)
        if heard is None or heard["type"] == TRANSCRIPTION_FAILED:
            turn.error = "no_transcript" if heard is None else "transcription_failed"
            return
        known = {t.response_id for t in self.turns if t is not turn}
        deadline = time.monotonic() + self.timeout
        answerable = turn.speech_end + (turn.silence_ms or 0) / 1000 + 1.0  # the last part's reply may follow
        while time.monotonic() < deadline:
            audible = caller.received.audible_times(since=turn.speech_end - measure.REPLY_GAP_S)
            turn.first_audible = measure.reply_onset(audible, turn.speech_end)
            if turn.first_audible is not None:
                break
            if time.monotonic() > answerable and self._replies_over(since, known):
                break
            await asyncio.sleep(0.02)
        heard_until = turn.first_audible or time.monotonic()
        if turn.first_audible is not None:
            # Events travel on the data channel (SCTP), audio on RTP: on a busy machine a reply's
            # response.created can arrive seconds after its first audio. Heard audio was created.
            announced = await self._next_arrival(("response.created",), since, self.timeout,
                                                 where=lambda e: e["response"]["id"] not in known)
            if announced is not None and announced[0] > heard_until:
                turn.events_late_ms = round((announced[0] - heard_until) * 1000, 1)
                heard_until = announced[0]
        transcripts = [e["transcript"] for at, e in caller.events
                       if at >= since and at <= heard_until and e.get("type") == TRANSCRIBED]
        turn.transcript = " ".join(t.strip() for t in transcripts).strip()
        turn.gateway_turns = len(transcripts)
        if turn.expected is not None:
            turn.wer = measure.word_error_rate(turn.expected, turn.transcript)
        created = [e["response"]["id"] for at, e in caller.events if at >= since and at <= heard_until
                   and e.get("type") == "response.created" and e["response"]["id"] not in known]
        if not created:
            turn.error = "no_reply"
            return
        turn.response_id = created[-1]
        if turn.first_audible is None:
            turn.error = "no_audio"
            return
        if turn.silence_ms is not None:
            turn.overhead_ms = measure.overhead_ms(turn.first_audible, turn.speech_end, turn.silence_ms)

    def _replies_over(self, since: float, known: set[str | None]) -> bool:
        """Whether every reply created since ``since`` is done, the last one over a second ago."""
        created, done = set(), {}
        for at, event in self.caller.events:
            response_id = (event.get("response") or {}).get("id")
            if at < since or response_id in known:
                continue
            if event.get("type") == "response.created":
                created.add(response_id)
            elif event.get("type") == "response.done":
                done[response_id] = at
        return bool(created) and created <= done.keys() and time.monotonic() > max(done.values()) + 1.0

    def _report(self, turn: TurnResult, *, until: float | None = None) -> None:
        self._reported.add(turn.index)
        if turn.first_audible is not None and until is not None:
            turn.stall_ms = reply_stall_ms(self.caller.received.audible_times(since=turn.first_audible, until=until),
                                           turn.first_audible, until)
        if self._on_turn is not None:
            self._on_turn(turn)

    async def _next(self, types: Iterable[str], since: float, timeout: float,  # noqa: ASYNC109
                    where: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any] | None:
        """The first event of one of ``types`` that arrived at or after ``since``; None on timeout."""
        found = await self._next_arrival(types, since, timeout, where)
        return found[1] if found is not None else None

    async def _next_arrival(self, types: Iterable[str], since: float, timeout: float,  # noqa: ASYNC109
                            where: Callable[[dict[str, Any]], bool] | None = None
                            ) -> tuple[float, dict[str, Any]] | None:
        """(arrival time, event) of the first event of one of ``types`` at or after ``since``; None on timeout."""
        wanted = set(types)
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            events = self.caller.events
            for at, event in events[seen:]:
                if at >= since and event.get("type") in wanted and (where is None or where(event)):
                    return at, event
            seen = len(events)
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.02)
