"""What happens in calls, told to whoever watches: metrics, lifecycle events, logs.

The registry, each :class:`~gateway.call.Call` and its conversation notify one
:class:`CallObserver` (by default :data:`NULL_OBSERVER`, which does nothing).
The app fans the notifications out with :class:`CompositeObserver`. Observers
are called on the event loop, in the middle of a call: they must return at once
(queue anything slow) and an observer that raises never breaks the call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

#: Turn stages, in ms after the end of the caller's speech (``None``: not reached).
TURN_STAGES = ("turn_confirmed", "asr_final", "agent_first_text", "tts_first_audio", "first_packet_sent")


@dataclass(frozen=True)
class TurnReport:
    """One committed user turn and the latency of its reply."""

    item_id: str
    response_id: str | None
    speculative: bool
    #: ms after the end of speech at which each of :data:`TURN_STAGES` was reached
    latency_ms: Mapping[str, float | None]
    #: turn confirmed (end of the silence window) → first reply packet sent: the gateway's own overhead
    overhead_ms: float | None
    asr_compute_ms: float
    audio_ms: float
    #: what the caller said: user data, only for a log line that is explicitly enabled
    transcript: str = field(default="", repr=False)

    def breakdown(self) -> dict[str, object]:
        """The latency breakdown without user data (for events and logs)."""
        return {
            "item_id": self.item_id,
            "response_id": self.response_id,
            "speculative": self.speculative,
            "latency_ms": dict(self.latency_ms),
            "overhead_ms": self.overhead_ms,
            "asr_compute_ms": self.asr_compute_ms,
            "audio_ms": self.audio_ms,
        }


class CallObserver:
    """Notifications about calls. Every method does nothing here; override what you need."""

    def call_started(self, call_id: str) -> None:
        """A call was admitted and answered."""

    def call_rejected(self, code: str) -> None:
        """A call was refused (``capacity``, ``draining``, ``invalid_sdp``, ...)."""

    def call_ended(self, call_id: str, reason: str, duration_s: float, turns: int) -> None:
        """A started call is over (``hangup``, ``shutdown``, ``drain_timeout``, ``connection_failed``, ...)."""

    def turn_completed(self, call_id: str, report: TurnReport) -> None:
        """A user turn was committed; told once its reply started (or could not)."""

    def barge_in(self, call_id: str, stop_s: float | None) -> None:
        """The caller talked over a reply; ``stop_s``: speech onset → reply audio cleared."""

    def speech_over_reply(self, call_id: str, outcome: str) -> None:
        """Speech over a reply paused it (``paused``); then it ``resumed`` (a false interruption) or ``cancelled``."""

    def end_of_turn_judged(self, compute_s: float, complete: bool) -> None:
        """semantic_vad: the end-of-turn model judged a pause in ``compute_s``."""

    def reply_played(self, call_id: str, played_s: float, underrun_s: float) -> None:
        """A reply's audio is over: ``played_s`` sent, ``underrun_s`` of it silence because its audio ran out."""

    def error(self, call_id: str, code: str) -> None:
        """An ``error`` event was sent to the caller."""

    def server_event_dropped(self, call_id: str) -> None:
        """A server event was dropped: more were waiting for the caller's event channel to open than are kept."""

    def history_items_dropped(self, call_id: str, count: int) -> None:
        """``count`` items left the call's conversation history: it was over ``limits.max_history_*``."""

    def asr_finished(self, audio_s: float, compute_s: float) -> None:
        """A final transcription of ``audio_s`` seconds took ``compute_s``."""

    def tts_finished(self, audio_s: float, compute_s: float) -> None:
        """A clause of ``audio_s`` seconds was synthesised in ``compute_s`` (wall time)."""


NULL_OBSERVER = CallObserver()


class CompositeObserver(CallObserver):
    """Tells every observer, in order; one that raises is logged and skipped."""

    def __init__(self, observers: Iterable[CallObserver]) -> None:
        self.observers = tuple(observers)

    def _each(self, method: str, *args: object) -> None:
        for observer in self.observers:
            try:
                getattr(observer, method)(*args)
            except Exception:
                logger.exception("observer %s failed in %s", type(observer).__name__, method)

    def call_started(self, call_id: str) -> None:
        self._each("call_started", call_id)

    def call_rejected(self, code: str) -> None:
        self._each("call_rejected", code)

    def call_ended(self, call_id: str, reason: str, duration_s: float, turns: int) -> None:
        self._each("call_ended", call_id, reason, duration_s, turns)

    def turn_completed(self, call_id: str, report: TurnReport) -> None:
        self._each("turn_completed", call_id, report)

    def barge_in(self, call_id: str, stop_s: float | None) -> None:
        self._each("barge_in", call_id, stop_s)

    def speech_over_reply(self, call_id: str, outcome: str) -> None:
        self._each("speech_over_reply", call_id, outcome)

    def end_of_turn_judged(self, compute_s: float, complete: bool) -> None:
        self._each("end_of_turn_judged", compute_s, complete)

    def reply_played(self, call_id: str, played_s: float, underrun_s: float) -> None:
        self._each("reply_played", call_id, played_s, underrun_s)

    def error(self, call_id: str, code: str) -> None:
        self._each("error", call_id, code)

    def server_event_dropped(self, call_id: str) -> None:
        self._each("server_event_dropped", call_id)

    def history_items_dropped(self, call_id: str, count: int) -> None:
        self._each("history_items_dropped", call_id, count)

    def asr_finished(self, audio_s: float, compute_s: float) -> None:
        self._each("asr_finished", audio_s, compute_s)

    def tts_finished(self, audio_s: float, compute_s: float) -> None:
        self._each("tts_finished", audio_s, compute_s)


class TurnLog(CallObserver):
    """One log line per turn, with the call id; the transcript only when enabled."""

    def __init__(self, *, log_transcripts: bool = False) -> None:
        self._log_transcripts = log_transcripts

    def turn_completed(self, call_id: str, report: TurnReport) -> None:
        stages = " ".join(f"{name}={value:.0f}" for name, value in report.latency_ms.items() if value is not None)
        overhead = "-" if report.overhead_ms is None else f"{report.overhead_ms:.0f}"
        if self._log_transcripts:
            logger.info("call %s: turn %s done: ms after speech end %s; overhead %s ms; transcript %r", call_id,
                        report.item_id, stages, overhead, report.transcript)
        else:
            logger.info("call %s: turn %s done: ms after speech end %s; overhead %s ms", call_id, report.item_id,
                        stages, overhead)
