"""False interruptions: a cough, a click or an "mm-hmm" over a reply pauses it, and it goes on.

Any speech onset while a reply plays used to cancel it. Now, with ``false_interruption`` on (the
default), the onset *pauses* the output at once (silence from the next 20 ms frame, so the reply
stops as fast as a barge-in did), and what the caller said decides:

* words that are not only a backchannel ("yeah", "mm-hmm", "okay", "right" …) → a real
  interruption: the reply is cancelled and truncated to what was heard, as before;
* no words (a cough, a click, a door) or only a backchannel, once the sound has ended → the reply
  resumes from the exact sample it paused at, and the sound is not a turn.

Whisper mishears hums: tiny.en hears Piper's "mm-hmm" as "in a moment." or "In a month.", espeak-ng's
as "and then them". So a sound shorter than :data:`SHORT_SPEECH_MS` with at most
:data:`MAX_BACKCHANNEL_WORDS` other words is *unsure*: the reply resumes only if the caller stays
silent :data:`UNSURE_HOLD_MS` more; if they go on ("five … five"), the words so far are checked
again at the next pause; and a second unsure sound over the same reply within :data:`REPEAT_MS`
("one … two … three") is an interruption. A word that asks the gateway to stop ("stop", "wait",
"no" …: :data:`STOP_WORDS`) interrupts however short the sound, and so does a single word of a
spoken word's length that Whisper is sure of (mean log-probability ≥ :data:`SURE_LOGPROB`: the
sonnet's spoken "One."); hums come out as phrases or as words Whisper doubts ("Em…" −2.1).

A second opinion settles the doubtful ones: an unsure sound, or a short one that interrupts only by a
stop word in a phrase Whisper doubts (Piper's "mm-hmm" as "Hey, my mom."), is decoded again with Whisper
told that backchannels are likely (:data:`BACKCHANNEL_HINT`, its prompt). Hums and coughs then come out
as "Mm-hmm." and a spoken word as itself, surer: a stop word or a single word it is then sure of, or the
word both decodes heard, interrupts; anything else is unsure (:func:`hinted_verdict`). This costs no
stop time: the reply is already silent while the judge decides.

The words come from one final-priority decode of the onset's audio when the sound pauses, or
after ``timeout_ms`` while it goes on (speech that long with words is an interruption; a long
noise without words is held until it ends). Decisions run on the audio clock, so they are exact
in tests.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from engines import EngineError, SpeechRecognizer
from engines.base import FloatArray
from gateway.aio import TaskSet
from gateway.ops.observers import NULL_OBSERVER, CallObserver
from gateway.protocol import server_events as events
from gateway.protocol.server_events import Event
from gateway.voice.output import OUTPUT_RATE, AudioOutput

logger = logging.getLogger(__name__)

#: Words that acknowledge without taking the turn (all of a backchannel's words must be here).
BACKCHANNEL_WORDS = frozenset("""
yeah yes yep yup ya yah mm mmm mhm mmhmm hmm hm uh huh uhhuh um umm ah aha oh ooh okay ok right sure alright
i see got it cool nice great good wow true exactly indeed totally gotcha uh-huh mm-hmm m-hm
""".split())
#: What Whisper says over noise it cannot read (its well-known hallucinations): no words.
NOISE_TRANSCRIPTS = frozenset({"you", "thank you", "thanks", "thank you for watching", "thanks for watching", "bye"})
MAX_BACKCHANNEL_WORDS = 3
#: Words that interrupt however short the sound: the caller wants the gateway to stop or listen.
STOP_WORDS = frozenset("stop wait no nope not hold pause sorry excuse hey hello but what actually listen".split())
#: A backchannel's length (the VAD's speech, measured): "yeah" 300-380 ms, "mm-hmm" 500 ms (Piper), 610-670 ms
#: (espeak-ng).
SHORT_SPEECH_MS = 800
# Silence after an unsure sound before the reply resumes. A caller counting ("one … two … three": 500-640 ms
# between words) is not talked over again between words: 400 let the reply play ~250 ms between them.
UNSURE_HOLD_MS = 700
REPEAT_MS = 3000  # an unsure sound this soon after another one resumed the same reply is an interruption
#: From this mean log-probability per token a short sound's one word is a word: Whisper's own threshold for a
#: decode that did not fail (``logprob_threshold``). Measured with tiny.en, live (benchmarks/turn_taking.py):
#: the sonnet's spoken "One." -0.6 to -0.75; misheard, Piper's "okay" as "that." -1.27, hums as "Em…", "So"
#: -2.1 to -2.5 (espeak-ng's robotic "One", "Paris" -0.9 to -2.3: often held as unsure).
SURE_LOGPROB = -1.0
#: ... and from this length: a spoken word (the sonnet's "One." 416-480 ms, "yeah" 300-380 ms). Echo residue that
#: Whisper read as a sure word ("through." at -0.61) was 128 ms; residue over 250 ms came out doubted ("Thank" -1.4).
WORD_MS = 250
#: Whisper's prompt for the second decode of an unsure sound: told that backchannels are likely, tiny.en hears
#: hums, coughs and clicks as "Mm-hmm." or "Okay.", and a spoken word as itself, surer than without (measured,
#: Piper and espeak-ng: "One" -0.4 to -0.8, "Paris" -0.2 to -0.5, "Later", "London" -0.3 to -0.6; hums
#: stay backchannels or phrases: Piper's "mm-hmm" "In a month.").
BACKCHANNEL_HINT = "Mm-hmm. Yeah. Uh-huh. Okay. Right. Hmm."
#: ... and the confidence from which that second decode's one word, heard by the first decode too, is a word: two
#: decodes agreeing. Measured (benchmarks/turn_taking.py, 23:10): spoken words -0.17 to -1.21 told backchannels
#: are likely; hums then come out as backchannels, and echo residue without echo cancellation as -1.01 to -1.99.
AGREED_LOGPROB = -1.3

Verdict = Literal["real", "none", "unsure"]

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_HUM = re.compile(r"[mh]*")


def words_of(transcript: str) -> list[str]:
    return _WORD.findall(transcript.lower())


def is_backchannel(word: str) -> bool:
    """A backchannel word, or one Whisper hyphenated from backchannel words or hums ("uh-uh", "mm-mm", "Mm-m-hmm",
    "Mm-h": no English word is only m's and h's)."""
    return word in BACKCHANNEL_WORDS or all(part in BACKCHANNEL_WORDS or _HUM.fullmatch(part)
                                            for part in word.split("-"))


def classify(transcript: str, speech_ms: int, avg_logprob: float | None = None) -> Verdict:
    """``transcript`` of ``speech_ms`` of sound: a real interruption, none (noise, a backchannel), or unsure.

    A short sound heard as one word that is no backchannel is real when it is a spoken word's length
    (:data:`WORD_MS`) and Whisper was sure of it (``avg_logprob`` ≥ :data:`SURE_LOGPROB`); two or three such
    words, or a word Whisper doubts, are unsure: hums come out as phrases ("in a month.", sometimes at -0.64)
    or as doubtful words (see the module docstring)."""
    words = words_of(transcript)
    if not words or " ".join(words) in NOISE_TRANSCRIPTS:
        return "none"
    if any(word in STOP_WORDS for word in words):
        return "real"
    if all(is_backchannel(word) for word in words):  # however many: Whisper loops ("Right... Right... Right...")
        return "none"
    if len(words) > MAX_BACKCHANNEL_WORDS or speech_ms >= SHORT_SPEECH_MS:
        return "real"
    sure = len(words) == 1 and speech_ms >= WORD_MS and avg_logprob is not None and avg_logprob >= SURE_LOGPROB
    return "real" if sure else "unsure"


def doubted_stop(transcript: str, speech_ms: int, avg_logprob: float | None) -> bool:
    """A short sound that is an interruption only by a stop word in a phrase Whisper doubts: Piper's "mm-hmm"
    heard as "Hey, my mom." (-1.06). It gets a second opinion (a stop word Whisper is sure of needs none)."""
    words = words_of(transcript)
    return (speech_ms < SHORT_SPEECH_MS and 0 < len(words) <= MAX_BACKCHANNEL_WORDS and avg_logprob is not None
            and avg_logprob < SURE_LOGPROB and any(word in STOP_WORDS for word in words))


def hinted_verdict(transcript: str, speech_ms: int, avg_logprob: float | None, first: str = "") -> Verdict:
    """The verdict on a doubtful sound from its second decode, told that backchannels are likely
    (:data:`BACKCHANNEL_HINT`), of a spoken word's length at least (:data:`WORD_MS`): real when Whisper is then
    sure (:data:`SURE_LOGPROB`) of a stop word, or of one word that is no backchannel; or when that one word is
    what the first decode (``first``) heard too and it is above :data:`AGREED_LOGPROB` (the sonnet's spoken
    "One." as "1" at -1.12, then "One." at -1.02). Else still unsure: a phrase, a backchannel, a doubted word (the
    hint makes Whisper hear echo residue of "waiting" as "Wait." at -1.43 to -1.49)."""
    words = words_of(transcript)
    if not words or avg_logprob is None or speech_ms < WORD_MS:
        return "unsure"
    sure = avg_logprob >= SURE_LOGPROB
    if sure and any(word in STOP_WORDS for word in words) and not any(is_backchannel(word) for word in words):
        return "real"  # not "Mm-hmm. Hey.": told to expect backchannels, Whisper adds "hey" to hums (-1.1)
    if len(words) != 1 or is_backchannel(words[0]):
        return "unsure"
    agreed = [_spoken(w) for w in words_of(first)] == [_spoken(words[0])] and avg_logprob >= AGREED_LOGPROB
    return "real" if sure or agreed else "unsure"


_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()


def _spoken(word: str) -> str:
    """A word as said: Whisper writes "one" as "1" in one decode and "One." in the next."""
    return _ONES[int(word)] if word.isdigit() and int(word) < len(_ONES) else word


def interrupts(transcript: str, speech_ms: int, avg_logprob: float | None = None) -> bool:
    """Whether ``transcript`` of ``speech_ms`` of sound is, by itself, a real interruption."""
    return classify(transcript, speech_ms, avg_logprob) == "real"


@dataclass
class _Pending:
    response_id: str
    onset_ms: int
    paused_at_samples: int
    decided: asyncio.Future[bool]
    paused_at: float
    checked_at_timeout: bool = False
    checking: asyncio.Task[None] | None = None
    stale: bool = False  # the sound went on after the check began: a "no" from it does not resume
    resume_at_ms: int | None = None  # unsure: resume at this audio time unless the sound goes on
    heard: str = ""


class InterruptionJudge:
    """One call's onsets over its replies: pause, then resume or cancel (see the module docstring)."""

    def __init__(self, *, asr: SpeechRecognizer, output: AudioOutput, send: Callable[[Event], None], tasks: TaskSet,
                 call_id: str, on_real: Callable[[], None], on_false: Callable[[], None],
                 observer: CallObserver = NULL_OBSERVER) -> None:
        self._asr = asr
        self._observer = observer
        self._output = output
        self._send = send
        self._tasks = tasks
        self._call_id = call_id
        self._on_real = on_real
        self._on_false = on_false
        self._pending: _Pending | None = None
        self._last_unsure: tuple[str, int] | None = None  # (response, audio ms) of the last unsure sound resumed
        self.timeout_ms = 1500
        self.paused = 0
        self.resumed = 0
        self.cancelled = 0

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def onset(self, response_id: str, onset_ms: int) -> None:
        """Speech started over ``response_id``: its output pauses now (silence from the next frame)."""
        self.discard()
        self._output.pause()
        self.paused += 1
        self._observer.speech_over_reply(self._call_id, "paused")
        played = self._output.played_samples(response_id)
        decided = asyncio.get_running_loop().create_future()
        self._pending = _Pending(response_id, onset_ms, played, decided, time.monotonic())
        self._send(events.response_paused(response_id, played * 1000 // OUTPUT_RATE))

    async def decision(self) -> bool:
        """True once the onset pending (if any) proved a real interruption; False when it was not one."""
        pending = self._pending
        if pending is None:
            return True
        return await asyncio.shield(pending.decided)

    def tick(self, now_ms: int, audio: Callable[[], FloatArray]) -> None:
        """The audio clock: after ``timeout_ms`` of sound, its words so far are checked (once)."""
        pending = self._pending
        if pending is not None and pending.resume_at_ms is not None and now_ms >= pending.resume_at_ms:
            self._resume(pending)
            return
        if pending is None or pending.checked_at_timeout or now_ms - pending.onset_ms < self.timeout_ms:
            return
        pending.checked_at_timeout = True
        self._check(pending, audio(), now_ms, sound_ended=False)

    def sound_paused(self, audio: FloatArray, end_ms: int) -> None:
        """The onset's sound paused at ``end_ms``: decide from its words."""
        if self._pending is not None:
            self._check(self._pending, audio, end_ms, sound_ended=True)

    def sound_resumed(self) -> None:
        if self._pending is not None:
            self._pending.resume_at_ms = None
            if self._pending.checking is not None:
                self._pending.stale = True

    def discard(self) -> None:
        """Forget the pending onset (hang-up, the reply was cancelled, input cleared); the output plays on."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        self._output.resume()
        if pending.checking is not None:
            pending.checking.cancel()
        if not pending.decided.done():
            pending.decided.set_result(True)

    def _check(self, pending: _Pending, audio: FloatArray, end_ms: int, *, sound_ended: bool) -> None:
        if pending.checking is not None and not pending.checking.done():
            if sound_ended:
                pending.stale = False  # the check under way now covers the end of the sound
            return
        pending.stale = False
        pending.checking = self._tasks.create_task(self._decode(pending, audio, end_ms, sound_ended),
                                                   name=f"interruption-{self._call_id}")

    async def _decode(self, pending: _Pending, audio: FloatArray, end_ms: int, sound_ended: bool) -> None:
        verdict: Verdict
        try:
            transcript = await self._asr.transcribe(audio)
        except EngineError as exc:  # unsure: stop talking, as a barge-in always did
            logger.warning("call %s: interruption check failed (%s); treating it as real", self._call_id, exc)
            text, verdict = "", "real"
        else:
            text, logprob, speech_ms = transcript.text.strip(), transcript.avg_logprob, end_ms - pending.onset_ms
            verdict = classify(text, speech_ms, logprob)
            logger.debug("call %s: sound over the reply of %d ms heard as %r (log-probability %s): %s", self._call_id,
                         speech_ms, text, logprob and round(logprob, 2), verdict)
            if verdict == "unsure" or doubted_stop(text, speech_ms, logprob):
                text, verdict = await self._second_opinion(audio, text, speech_ms, verdict)
            last = self._last_unsure
            if verdict == "unsure" and last is not None and last[0] == pending.response_id and \
                    pending.onset_ms - last[1] <= REPEAT_MS:
                verdict = "real"
        if self._pending is not pending:
            return
        if verdict == "real":
            self._decide(pending, True)
            self.cancelled += 1
            self._observer.speech_over_reply(self._call_id, "cancelled")
            logger.info("call %s: interruption %r stops reply %s", self._call_id, text, pending.response_id)
            self._on_real()
        elif sound_ended and not pending.stale:
            pending.heard = text
            if verdict == "none":
                self._resume(pending)
            else:
                pending.resume_at_ms = end_ms + UNSURE_HOLD_MS
                self._last_unsure = (pending.response_id, end_ms)

    async def _second_opinion(self, audio: FloatArray, text: str, speech_ms: int,
                              verdict: Verdict) -> tuple[str, Verdict]:
        """A sound decoded again, Whisper told that backchannels are likely (:data:`BACKCHANNEL_HINT`): real or
        unsure by :func:`hinted_verdict`. Without a second decode the first ``verdict`` stands."""
        try:
            hinted = await self._asr.transcribe_hinted(audio, BACKCHANNEL_HINT)
        except EngineError as exc:
            logger.debug("call %s: second opinion failed: %s", self._call_id, exc)
            return text, verdict
        if hinted is None:
            return text, verdict
        verdict = hinted_verdict(hinted.text, speech_ms, hinted.avg_logprob, text)
        logger.debug("call %s: told backchannels are likely, heard %r (log-probability %s): %s", self._call_id,
                     hinted.text, hinted.avg_logprob and round(hinted.avg_logprob, 2), verdict)
        return (hinted.text, verdict) if verdict == "real" else (text, verdict)

    def _resume(self, pending: _Pending) -> None:
        self._decide(pending, False)
        self.resumed += 1
        self._observer.speech_over_reply(self._call_id, "resumed")
        logger.info("call %s: false interruption (%r); reply %s resumes", self._call_id, pending.heard,
                    pending.response_id)
        self._output.resume()
        played_ms = self._output.played_samples(pending.response_id) * 1000 // OUTPUT_RATE
        paused_ms = round((time.monotonic() - pending.paused_at) * 1000)
        self._send(events.response_resumed(pending.response_id, played_ms, paused_ms, pending.heard))
        self._on_false()

    def _decide(self, pending: _Pending, real: bool) -> None:
        self._pending = None
        if not pending.decided.done():
            pending.decided.set_result(real)
