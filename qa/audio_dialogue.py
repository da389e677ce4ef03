"""The conversation of :class:`~qa.dialogue.Dialogue`, judged by the audio alone.

For a peer that sends no ``oai-events`` (a Pipecat bot over SmallWebRTC): a turn's reply is the
first audible block after the caller's speech end that follows a quarter second of silence
(:func:`qa.measure.reply_onset`, which skips the tail of a reply still playing), it is over once
:data:`REPLY_END_S` passed without audio, and its stalls are the silences of at least
:data:`~qa.dialogue.STALL_S` inside it. Overhead and barge-in stop are computed as for the gateway
(:mod:`qa.measure`), so the figures compare across peers. No transcripts: no WER. Without
events one thing cannot be told apart: a talked-over reply that goes on playing past the end of
the new utterance, resumed after one of its own pauses, passes for the next reply (an overhead
too low, so only ever in the peer's favour).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from qa import measure
from qa.caller import Caller
from qa.clips import Clip  # its transcript is unused: nothing says what the peer heard
from qa.dialogue import STALL_S, TurnResult, abandon_turns, reply_stall_ms

#: Silence after which a reply is over. Longer than a stall (:data:`STALL_S`): a reply that stalls
#: is still one reply.
REPLY_END_S = 1.5


class AudioDialogue:
    """``start``/``speak``/``finish`` as :class:`~qa.dialogue.Dialogue`, from what the caller hears."""

    def __init__(self, caller: Caller, *, silence_ms: int = 500, timeout: float = 30.0,
                 on_turn: Callable[[TurnResult], None] | None = None) -> None:
        assert REPLY_END_S > STALL_S
        self.caller = caller
        self.silence_ms = silence_ms
        self.timeout = timeout
        self.turns: list[TurnResult] = []
        self._on_turn = on_turn
        self._playing: TurnResult | None = None
        self._reported: set[int] = set()

    def abandon(self) -> None:
        """Report every turn not reported yet (see :meth:`qa.dialogue.Dialogue.abandon`)."""
        abandon_turns(self.turns, self._reported, self._report)

    async def start(self, silence_ms: int | None = None) -> None:
        """Nothing to wait for: the bot's end-of-turn silence is its own (``silence_ms`` says which)."""
        if silence_ms is not None:
            self.silence_ms = silence_ms

    async def speak(self, clip: Clip, *, barge_in_after_ms: float | None = None) -> TurnResult:
        """Say ``clip`` and wait until its reply is heard; talk over the current reply if asked."""
        previous, self._playing = self._playing, None
        barge_in = barge_in_after_ms is not None and previous is not None and previous.first_audible is not None
        if barge_in:
            assert previous is not None and previous.first_audible is not None and barge_in_after_ms is not None
            await asyncio.sleep(max(0.0, previous.first_audible + barge_in_after_ms / 1000 - time.monotonic()))
        elif previous is not None:
            await self._finish(previous)
        onset, end = await self.caller.say(clip.samples, clip.rate)
        turn = TurnResult(len(self.turns) + 1, clip.name, onset, end, self.silence_ms, barge_in=barge_in)
        self.turns.append(turn)
        if barge_in and previous is not None:
            self._report(previous, until=onset)
        await self._await_reply(turn)
        if barge_in:
            until = end + self.silence_ms / 1000
            if turn.first_audible is not None:
                until = min(until, turn.first_audible)
            await asyncio.sleep(max(0.0, until + 0.05 - time.monotonic()))
            audible = self.caller.received.audible_times(since=onset - measure.REPLY_GAP_S, until=until)
            turn.barge_in_stop_ms = measure.barge_in_stop_ms(audible, onset, until)
            turn.interrupted = turn.barge_in_stop_ms is not None
        if turn.first_audible is not None:
            self._playing = turn
        else:
            self._report(turn)
        return turn

    async def finish(self) -> None:
        """Wait for the reply being played (if any) to end."""
        turn, self._playing = self._playing, None
        if turn is not None:
            await self._finish(turn)

    async def _finish(self, turn: TurnResult) -> None:
        deadline = time.monotonic() + 4 * self.timeout
        while time.monotonic() < deadline:
            if self.caller.received.last_audible(since=time.monotonic() - REPLY_END_S) is None:
                break
            await asyncio.sleep(0.05)
        self._report(turn, until=time.monotonic() - REPLY_END_S)

    async def _await_reply(self, turn: TurnResult) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            audible = self.caller.received.audible_times(since=turn.speech_end - measure.REPLY_GAP_S)
            turn.first_audible = measure.reply_onset(audible, turn.speech_end)
            if turn.first_audible is not None:
                turn.overhead_ms = measure.overhead_ms(turn.first_audible, turn.speech_end, self.silence_ms)
                return
            await asyncio.sleep(0.02)
        turn.error = "no_audio"

    def _report(self, turn: TurnResult, *, until: float | None = None) -> None:
        self._reported.add(turn.index)
        if turn.first_audible is not None and until is not None:
            turn.stall_ms = reply_stall_ms(self.caller.received.audible_times(since=turn.first_audible, until=until),
                                           turn.first_audible, until)
        if self._on_turn is not None:
            self._on_turn(turn)
