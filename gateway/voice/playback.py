"""The reply being spoken: its events, playback, barge-in truncation and end.

One reply is active at a time. The audio output tells this module when a
reply's first packet left and, with a :class:`PlayoutResult`, how its playout
ended: played to its end, or cut by ``clear()``. An interruption (barge-in,
``response.cancel``) goes through :meth:`Reply.interrupt`, which clears the
output first, so audio stops within one frame; the cut reply's result then
truncates the assistant item to the samples that were actually sent.

A response's output is its assistant message and its function calls, each
with its ``output_index`` in the order they started (voice/tools.py sends the
calls' events). A reply whose agent may call tools announces its message only
when its first words arrive, so a response that only calls a function has no
empty message. An out-of-band response (``conversation: "none"``) sends no
``conversation.item.*`` events and leaves the history alone.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.agents import FunctionCallDelta
from gateway.ops.observers import CallObserver, TurnReport
from gateway.protocol import server_events as events
from gateway.protocol.server_events import Event
from gateway.voice.history import History
from gateway.voice.output import OUTPUT_RATE, AudioOutput, PlayoutResult
from gateway.voice.reply import Reply
from gateway.voice.tools import CallLedger, ResponseCalls, ToolError

#: Spoken replies whose items ``conversation.item.truncate`` can still cut to what was heard.
TRUNCATABLE_REPLIES = 16

logger = logging.getLogger(__name__)


@dataclass
class TurnTiming:
    """Monotonic times of one turn's stages, for the latency breakdown."""

    speech_end: float
    turn_confirmed: float
    asr_final: float
    speculative: bool
    asr_compute_s: float
    audio_s: float
    item_id: str
    transcript: str
    asr_degradation_level: int = 0  # the recogniser's, when it decoded the final (gateway.session.admission)


@dataclass(frozen=True)
class ResponseSpec:
    """What ``response.create`` asked of a response beyond its words."""

    out_of_band: bool = False  # conversation: "none"
    metadata: dict[str, str] | None = None


@dataclass
class _Active:
    reply: Reply
    timing: TurnTiming | None
    spec: ResponseSpec
    calls: ResponseCalls
    started: bool = False
    reported: bool = False  # the turn was told to the observer
    spoken: bool = False  # a transcript delta was sent
    interrupt_reason: str | None = None  # why it is being interrupted, once it is
    heard_ms: int | None = None  # what the client says it played (conversation.item.truncate)
    message_index: int | None = None  # the message's output_index, once it is announced
    outputs: list[int] = field(default_factory=list)  # output indices handed out

    def next_index(self) -> int:
        self.outputs.append(len(self.outputs))
        return self.outputs[-1]


def stages_ms(timing: TurnTiming, reply: Reply | None, first_packet_at: float | None) -> dict[str, float | None]:
    """Each stage in milliseconds after the end of speech."""

    def ms(at: float | None) -> float | None:
        return None if at is None else round((at - timing.speech_end) * 1000, 1)

    return {
        "speech_end": 0.0,
        "turn_confirmed": ms(timing.turn_confirmed),
        "asr_final": ms(timing.asr_final),
        "agent_first_text": ms(reply.agent_first_text_at if reply is not None else None),
        "tts_first_audio": ms(reply.tts_first_audio_at if reply is not None else None),
        "first_packet_sent": ms(first_packet_at),
    }


class ResponsePlayer:
    """Speaks the active reply: the output's listener, and each reply's :class:`ReplyListener`."""

    def __init__(self, *, call_id: str, output: AudioOutput, send: Callable[[Event], None],
                 observer: CallObserver, history: History, ledger: CallLedger | None = None) -> None:
        self.call_id = call_id
        self._output = output
        self._send = send
        self._observer = observer
        self._history = history
        self._ledger = ledger or CallLedger()
        self._active: _Active | None = None
        self._spoken: OrderedDict[str, tuple[Reply, int]] = OrderedDict()  # item id → (a spoken reply, samples sent)
        output.set_listener(self)

    @property
    def active_response_id(self) -> str | None:
        """The response being spoken (or about to be), if any."""
        return self._active.reply.response_id if self._active is not None else None

    @property
    def active_item_id(self) -> str | None:
        return self._active.reply.item_id if self._active is not None else None

    def activate(self, reply: Reply, timing: TurnTiming | None, spec: ResponseSpec = ResponseSpec()) -> None:
        """Announce ``reply`` and let its audio flow to the output."""
        calls = ResponseCalls(reply.response_id, send=self._send, next_index=lambda: active.next_index(),
                              in_conversation=not spec.out_of_band, previous_id=lambda: self._history.last_id)
        active = self._active = _Active(reply, timing, spec, calls)
        self._send(events.response_created(reply.response_id, **self._response_fields(active)))
        if not reply.options.may_call_tools:
            self._announce_message(active)
        reply.release()
        reply.add_done_callback(self._reply_done)

    def _response_fields(self, active: _Active) -> dict[str, Any]:
        return {"conversation": None if active.spec.out_of_band else events.conversation_id(self.call_id),
                "modalities": ("audio",) if active.reply.options.audio else ("text",),
                "metadata": active.spec.metadata}

    def _announce_message(self, active: _Active) -> None:
        reply, audio = active.reply, active.reply.options.audio
        active.message_index = index = active.next_index()
        item = events.message_item(reply.item_id, "assistant", None, status="in_progress", audio=audio)
        self._send(events.output_item_added(reply.response_id, item, index))
        if not active.spec.out_of_band:
            self._send(events.item_added(item, self._history.last_id))
        self._send(events.content_part_added(reply.response_id, reply.item_id, index, audio=audio))

    def _reply_done(self, reply: Reply) -> None:
        if not reply.interrupted:  # an interrupted reply's playout was reported when the output was cleared
            self._output.finish(reply.response_id)

    # Each reply's listener -----------------------------------------------------------------

    def _of(self, reply: Reply) -> _Active | None:
        active = self._active
        return active if active is not None and active.reply is reply else None

    def reply_message_started(self, reply: Reply) -> None:
        active = self._of(reply)
        if active is not None and active.message_index is None:
            self._announce_message(active)

    def reply_clause(self, reply: Reply, text: str) -> None:
        active = self._of(reply)
        if active is not None:
            prefix = " " if active.spoken else ""
            active.spoken = True
            self._send(events.audio_transcript_delta(reply.response_id, reply.item_id, prefix + text,
                                                     active.message_index or 0))

    def reply_text(self, reply: Reply, text: str) -> None:
        active = self._of(reply)
        if active is not None:
            self.reply_message_started(reply)
            self._send(events.text_delta(reply.response_id, reply.item_id, text, active.message_index or 0))

    def reply_function_call(self, reply: Reply, delta: FunctionCallDelta) -> None:
        active = self._of(reply)
        if active is not None:
            active.calls.feed(delta)

    def reply_failed(self, reply: Reply, code: str, message: str) -> None:
        logger.warning("call %s: reply %s failed: %s", self.call_id, reply.response_id, message)
        self._send(events.error(code, message, error_type="server_error"))

    def clause_synthesized(self, audio_seconds: float, wall_seconds: float) -> None:
        self._observer.tts_finished(audio_seconds, wall_seconds)

    # The output's listener -----------------------------------------------------------------

    def playback_started(self, tag: str, at: float) -> None:
        active = self._active
        if active is None or active.reply.response_id != tag or active.started:
            return
        active.started = True
        self._send(events.output_audio_started(tag))
        if active.timing is not None:
            self._send_metrics(active, at)

    def playback_finished(self, result: PlayoutResult) -> None:
        active = self._active
        if active is None or active.reply.response_id != result.tag:
            return  # a reply already ended (or replaced): its result only released the output's bookkeeping
        self._active = None
        if result.interrupted:
            self._truncate(active, result)
            return
        if active.started:
            self._send(events.output_audio_stopped(result.tag))
        status = "failed" if active.reply.failed else "completed"
        self._played(result)
        self._finish(active, active.reply.text, truncated=False, status=status, played=result.played_samples)

    # Ending early ---------------------------------------------------------------------------

    def interrupt(self, reason: str) -> bool:
        """Stop the active reply now and truncate it to what was played; False if none is active.

        The reply's :meth:`~Reply.interrupt` clears the output, whose interrupted result ends the
        reply in :meth:`playback_finished`; a reply none of whose audio reached the output yet has
        no result, and ends here with nothing played."""
        active = self._active
        if active is None:
            return False
        active.interrupt_reason = reason
        active.reply.interrupt()
        if self._active is active:
            self._active = None
            self._truncate(active, PlayoutResult(active.reply.response_id, 0, 0, interrupted=True))
        return True

    def _truncate(self, active: _Active, result: PlayoutResult) -> None:
        reply = active.reply
        reason = active.interrupt_reason or "output_cleared"  # cleared by someone else: stop the reply too
        reply.interrupt()
        self._played(result)
        if active.started:
            self._send(events.output_audio_cleared(reply.response_id))
        played = result.played_samples
        if active.heard_ms is not None:  # a socket client played less than was sent (conversation.item.truncate)
            played = min(played, active.heard_ms * OUTPUT_RATE // 1000)
        if active.message_index is not None and reply.options.audio and not active.spec.out_of_band:
            self._send(events.item_truncated(reply.item_id, played * 1000 // OUTPUT_RATE))
        logger.info("call %s: reply %s interrupted (%s) after %d ms", self.call_id, reply.response_id, reason,
                    played * 1000 // OUTPUT_RATE)
        self._finish(active, reply.heard_text(played), truncated=True, status="cancelled", reason=reason,
                     played=played)

    async def close(self) -> None:
        """Hang-up: stop the active reply without a word on the wire, and wait until its agent is closed."""
        active, self._active = self._active, None
        if active is not None:
            self._report(active, None)  # hung up before the reply's first packet, if it had not started
            await active.reply.aclose()
        self._output.clear()

    def report_turn(self, timing: TurnTiming, reply: Reply | None, first_packet_at: float | None) -> None:
        """Tell the observer about a committed turn, with what is known of its reply."""
        overhead = None if first_packet_at is None else round((first_packet_at - timing.turn_confirmed) * 1000, 1)
        latency = stages_ms(timing, reply, first_packet_at)
        latency.pop("speech_end")
        self._observer.turn_completed(self.call_id, TurnReport(
            item_id=timing.item_id,
            response_id=reply.response_id if reply is not None else None,
            speculative=timing.speculative,
            latency_ms=latency,
            overhead_ms=overhead,
            asr_compute_ms=round(timing.asr_compute_s * 1000, 1),
            audio_ms=round(timing.audio_s * 1000),
            transcript=timing.transcript,
        ))

    def _report(self, active: _Active, first_packet_at: float | None) -> None:
        if active.timing is not None and not active.reported:
            active.reported = True
            self.report_turn(active.timing, active.reply, first_packet_at)

    def _finish(self, active: _Active, text: str, *, truncated: bool, status: str, reason: str | None = None,
                played: int = 0) -> None:
        reply = active.reply
        self._report(active, None)  # ended before its first packet
        outputs: list[tuple[int, dict[str, Any]]] = []
        if active.message_index is None and not active.calls:
            self._announce_message(active)  # a reply that said nothing still has its (empty) message
        if active.message_index is not None:
            outputs.append((active.message_index, self._finish_message(active, text, truncated, status, played)))
        history = None if active.spec.out_of_band else self._history
        outputs += active.calls.finish(status == "completed", history, self._ledger)
        self._send(events.response_done(reply.response_id, status, [item for _, item in sorted(outputs,
                                        key=lambda pair: pair[0])], reason, **self._response_fields(active)))

    def _finish_message(self, active: _Active, text: str, truncated: bool, status: str,
                        played: int) -> dict[str, Any]:
        reply, audio, index = active.reply, active.reply.options.audio, active.message_index or 0
        if not active.spec.out_of_band:
            self._history.record_assistant(reply.item_id, text, truncated)
            if audio:
                self._spoken[reply.item_id] = (reply, played)
                while len(self._spoken) > TRUNCATABLE_REPLIES:
                    self._spoken.popitem(last=False)
        item = events.message_item(reply.item_id, "assistant", text,
                                   status="completed" if status == "completed" else "incomplete", audio=audio)
        if audio:
            self._send(events.audio_transcript_done(reply.response_id, reply.item_id, text, index))
        else:
            self._send(events.text_done(reply.response_id, reply.item_id, text, index))
        self._send(events.content_part_done(reply.response_id, reply.item_id, text, index, audio=audio))
        self._send(events.output_item_done(reply.response_id, item, index))
        if not active.spec.out_of_band:
            self._send(events.item_done(item, self._history.previous_of(reply.item_id)))
        return item

    # Items of finished replies -----------------------------------------------------------------

    def truncate(self, item_id: str, audio_end_ms: int) -> str | None:
        """``conversation.item.truncate``: the client played ``item_id``'s audio only up to ``audio_end_ms``.

        On a socket the gateway cannot know what the client played; the client says so. The active reply
        is stopped and truncated there (None: its ``item.done`` carries the text); one of the last spoken
        replies has its history text cut to what ``audio_end_ms`` carried (returned). Raises ToolError
        when the item is neither, or past the end of what was sent."""
        active = self._active
        if active is not None and active.reply.item_id == item_id:
            active.heard_ms = audio_end_ms
            self.interrupt("client_truncated")
            return None
        spoken = self._spoken.get(item_id)
        if spoken is None:
            if self._history.find(item_id) is None:
                raise ToolError("item_not_found", f"no item with id {item_id!r}", "item_id")
            raise ToolError("invalid_value", "only a spoken assistant item of one of the last replies can be "
                            "truncated", "item_id")
        reply, played = spoken
        length_ms = played * 1000 // OUTPUT_RATE  # what was sent: a cut reply was not heard beyond it
        if audio_end_ms > length_ms:
            raise ToolError("invalid_value", f"audio_end_ms {audio_end_ms} is past the end of the item's audio "
                            f"({length_ms} ms)", "audio_end_ms")
        text = reply.heard_text(audio_end_ms * OUTPUT_RATE // 1000)
        self._history.record_assistant(item_id, text, True)
        self._send(events.item_truncated(item_id, audio_end_ms))
        return text

    def forget(self, item_id: str) -> None:
        """A deleted item cannot be truncated any more."""
        self._spoken.pop(item_id, None)

    def _played(self, result: PlayoutResult) -> None:
        """How much of a reply was played, and how much silence its audio running out left in it."""
        if not result.played_samples:
            return
        self._observer.reply_played(self.call_id, result.played_samples / OUTPUT_RATE,
                                    result.underrun_samples / OUTPUT_RATE)
        self._send(events.response_playback(result.tag, result.played_ms, result.underrun_ms))

    def _send_metrics(self, active: _Active, first_packet_at: float) -> None:
        timing, reply = active.timing, active.reply
        assert timing is not None
        self._send(events.turn_metrics(
            timing.item_id, reply.response_id, stages_ms(timing, reply, first_packet_at),
            speculative=timing.speculative,
            confirmed_to_first_packet_ms=round((first_packet_at - timing.turn_confirmed) * 1000, 1),
            asr_compute_ms=round(timing.asr_compute_s * 1000, 1),
            audio_ms=round(timing.audio_s * 1000),
            asr_degradation_level=timing.asr_degradation_level,
        ))
        self._report(active, first_packet_at)
