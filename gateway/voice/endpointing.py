"""``semantic_vad``: at each pause, has the caller finished? (semantic end of turn)

A fixed 500 ms of silence is both too short (it cuts callers off when they pause mid-sentence:
"I'd like to fly to … Paris") and too long (half a second of waiting after every finished
sentence). With ``semantic_vad`` an end-of-turn model (:class:`engines.smart_turn.SmartTurn`)
judges each pause after :data:`PROBE_MS` of silence (so the short dips between words cost
nothing), and the pause then needs:

* ``complete_ms`` (medium: 200 ms) when the model is sure (P ≥ 0.9) and the words agree;
* ``unsure_ms`` (medium: 1 s) when it is less sure, or the turn is a single word that may begin more
  ("ten" … "of clubs");
* up to the eagerness cap (OpenAI documents about 8/4/2 s for low/medium/high) when it sounds
  unfinished: P < 0.5, or the speculative transcript ends on a word that cannot end an English
  sentence ("to", "the", "and" …) whatever the prosody says. Smart Turn judges *prosody*, and on
  read speech it calls a third of the pauses inside clauses complete (:func:`decide`).

A pause judged unfinished is judged again at 1 s and 2 s of silence (:data:`JUDGE_AT_MS`): the
model grows surer with the silence it hears (a finished 18 s passage read aloud: P = 0.06 at 0.2 s,
0.38 at 0.8 s, 0.74 at 1.5 s), so a long finished turn need not wait for the cap; pauses inside a
sentence are shorter than that. At most three runs per pause, each about 25 ms of one core.

The speculative pipeline stays: the transcript and the reply are prepared from the pause's first
window, so the reply is released the moment the model and the silence agree.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from engines.base import EndOfTurn, EndOfTurnModel, FloatArray
from engines.errors import EngineError
from gateway.aio import TaskSet
from gateway.ops.observers import NULL_OBSERVER, CallObserver
from gateway.protocol import server_events as events
from gateway.protocol.server_events import Event
from gateway.voice.turns import TurnDetector
from gateway.voice.utterance import Prepared, Utterance

logger = logging.getLogger(__name__)

#: Silence before a pause is judged: dips between words shorter than this never run the model.
PROBE_MS = 96
#: The silences at which a pause is judged (again, while it was judged unfinished).
JUDGE_AT_MS = (PROBE_MS, 1000, 2000)


@dataclass(frozen=True)
class Eagerness:
    """How readily a pause ends the turn."""

    sure: float  # P(complete) from which a turn is surely complete: it ends after complete_ms
    complete_ms: int
    threshold: float  # P(complete) from which it is probably complete: it ends after unsure_ms
    unsure_ms: int
    cap_ms: int  # below threshold it sounds unfinished: judged again, and ended at the cap at the latest


EAGERNESS = {
    "low": Eagerness(sure=0.95, complete_ms=400, threshold=0.7, unsure_ms=1500, cap_ms=8000),
    "medium": Eagerness(sure=0.9, complete_ms=200, threshold=0.5, unsure_ms=1000, cap_ms=4000),
    "high": Eagerness(sure=0.7, complete_ms=150, threshold=0.3, unsure_ms=500, cap_ms=2000),
}
EAGERNESS["auto"] = EAGERNESS["medium"]

#: Words after which an English sentence cannot end: articles, prepositions, conjunctions, auxiliaries, subject
#: pronouns (not "you", "it", "her": objects end sentences, "thank you", "I'll take it").
UNFINISHED_WORDS = frozenset("""
a an the and or but nor so because if when while although though unless since until than that which who whom
whose where to of in on at by for from with without into onto about over under between through during before
after like as my your his its our their this these those some any no every each either neither very
is are was were am be been being do does did have has had will would shall should can could may might must
i we they he she i'm you're we're they're he's she's it's let's what's um uh er erm
""".split())

_WORD = re.compile(r"[a-z0-9']+")


#: One-word turns that are complete as they are (any other single word may be the start of more).
ONE_WORD_TURNS = frozenset("yes yeah yep no nope okay ok sure thanks hello hi bye goodbye right correct".split())


def decide(probability: float, transcript: str | None, eagerness: Eagerness) -> tuple[str, int]:
    """How a pause is judged — ``complete``, ``unsure`` or ``unfinished`` — and the silence that then ends it.

    Measured over 118 pauses inside clauses of ../shared/speech (benchmarks/turn_taking.py): Smart Turn
    alone calls 36 % of them complete at P ≥ 0.5; with the words, sure at P ≥ 0.9 and a single word never
    sure, 13 % — while 12 of the 20 finished sentences are still sure (offline, 96 ms of silence after
    each). Live, with the VAD's pauses (17 paused sentences): 29 % at 0.9 and at 0.95 alike, while
    0.95 made the finished ones wait (voice-to-voice p50 0.86 of server_vad's instead of 0.70)."""
    if probability < eagerness.threshold:
        return "unfinished", eagerness.cap_ms
    text = (transcript or "").strip()
    if transcript is not None and sounds_unfinished(text):
        return "unfinished", eagerness.cap_ms
    words = _WORD.findall(text.lower())
    one_unknown_word = len(words) == 1 and words[0] not in ONE_WORD_TURNS
    unpunctuated = len(words) >= 4 and not text.endswith((".", "?", "!"))  # Whisper ends a sentence with a stop
    if probability >= eagerness.sure and not one_unknown_word and not unpunctuated:
        return "complete", eagerness.complete_ms
    return "unsure", eagerness.unsure_ms


def sounds_unfinished(transcript: str) -> bool:
    """Whether the words so far cannot end a sentence (a trailing function word, comma, dash or ellipsis)."""
    text = transcript.strip().lower()
    if not text:
        return False
    if text.endswith((",", "-", "…", "...", ":", ";")):
        return True
    words = _WORD.findall(text)
    return bool(words) and words[-1] in UNFINISHED_WORDS  # Whisper ends "I'd like to fly to" with a period too


@dataclass(frozen=True)
class Verdict:
    """One pause judged: the model's output, whether the words agree, and the silence the pause now needs."""

    judgement: EndOfTurn
    kind: str  # complete | unsure | unfinished (see :func:`decide`)
    silence_ms: int

    @property
    def complete(self) -> bool:
        return self.kind == "complete"

    def event(self, item_id: str) -> Event:
        """``gateway.turn.judged``."""
        return events.turn_judged(item_id, self.judgement.probability, self.kind,
                                  self.judgement.compute_seconds * 1000, self.silence_ms)


class Endpointer:
    """Judges one call's pauses: one model run per pause, in the end-of-turn worker, never on the loop."""

    def __init__(self, model: EndOfTurnModel | None, *, tasks: TaskSet, call_id: str,
                 on_verdict: Callable[[Verdict], None], observer: CallObserver = NULL_OBSERVER) -> None:
        self._model = model
        self._observer = observer
        self._tasks = tasks
        self._call_id = call_id
        self._on_verdict = on_verdict
        self._judging: asyncio.Task[None] | None = None
        self._judged_pause: int | None = None  # the pause (its start, ms) being judged
        self._judgements = 0  # runs for that pause
        self.eagerness = EAGERNESS["auto"]
        self.last_complete = False
        self.judged = 0
        self.failed = 0

    @property
    def available(self) -> bool:
        """Whether there is a model (without one, semantic_vad's pauses all wait for the cap)."""
        return self._model is not None

    def configure(self, eagerness: str) -> bool:
        """Judge with ``eagerness`` from now on; False when there is no model to judge with."""
        self.eagerness = EAGERNESS[eagerness]
        return self.available

    def due(self, pause_start_ms: int, now_ms: int) -> bool:
        """Whether this pause should be judged now: at each of :data:`JUDGE_AT_MS`, while not judged complete."""
        if self._model is None:
            return False
        if self._judged_pause != pause_start_ms:
            return now_ms - pause_start_ms >= JUDGE_AT_MS[0]
        if self._judgements >= len(JUDGE_AT_MS) or (self._judging is not None and not self._judging.done()):
            return False
        return not self.last_complete and now_ms - pause_start_ms >= JUDGE_AT_MS[self._judgements]

    def after_window(self, detector: TurnDetector, utterance: Utterance, audio: Callable[[], FloatArray],
                     now_ms: int) -> None:
        """Each VAD window of a turn: judge its pause once it is :data:`PROBE_MS` long."""
        if utterance.finishing or not detector.paused or not self.due(detector.last_speech_end_ms, now_ms):
            return
        self.judge(detector.last_speech_end_ms, audio(), utterance.speculation)

    def judge(self, pause_start_ms: int, audio: FloatArray, transcript: asyncio.Task[Prepared] | None) -> None:
        """Judge the pause that started at ``pause_start_ms`` from the turn's ``audio`` up to now.

        ``transcript``, the speculative final transcript if one is being decoded, lets the words
        overrule a model that calls an unfinished sentence complete."""
        self.cancel()
        if self._judged_pause != pause_start_ms:
            self._judged_pause, self._judgements, self.last_complete = pause_start_ms, 0, False
        self._judgements += 1
        self._judging = self._tasks.create_task(self._judge(audio, transcript), name=f"end-of-turn-{self._call_id}")

    def cancel(self) -> None:
        """Speech resumed (or the turn ended otherwise): a verdict still being computed is dropped."""
        task, self._judging = self._judging, None
        if task is not None and not task.done():
            task.cancel()

    def reset(self) -> None:
        self.cancel()
        self._judged_pause = None

    async def _judge(self, audio: FloatArray, transcript: asyncio.Task[Prepared] | None) -> None:
        assert self._model is not None
        try:
            judgement = await self._model.predict(audio)
        except EngineError as exc:  # the turn then ends at the cap, as an unfinished one would
            self.failed += 1
            logger.warning("call %s: end-of-turn model failed: %s", self._call_id, exc)
            return
        text = None
        if judgement.probability >= self.eagerness.threshold and transcript is not None:
            await asyncio.wait({transcript})  # not shielded: cancelling it (speech resumed) is not cancelling this
            if not transcript.cancelled() and transcript.exception() is None:
                text = transcript.result().transcript.text
        kind, silence_ms = decide(judgement.probability, text, self.eagerness)
        logger.debug("call %s: pause judged %s (P %.2f, %r)", self._call_id, kind, judgement.probability, text)
        self.judged += 1
        self.last_complete = kind != "unfinished"  # an unsure pause is not judged again: it ends at unsure_ms
        self._observer.end_of_turn_judged(judgement.compute_seconds, kind == "complete")
        self._on_verdict(Verdict(judgement, kind, silence_ms))
