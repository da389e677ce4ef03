"""What a caller measures, as pure functions over times and events.

Every time here is a ``time.monotonic()`` reading taken on the caller's side:
when a speech sample left the caller's microphone track, when an audible
10 ms block of the gateway's voice arrived (see
:meth:`qa.caller.ReceivedAudio.audible_times`), when an event arrived.

* **overhead** = first audible reply sample − last caller speech sample −
  the configured end-of-turn silence: what the gateway (and the network) add
  on top of the silence the caller must leave anyway.
* **barge-in stop** = onset of the interrupting speech → last audible sample
  of the interrupted reply, as heard by the caller.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

BLOCK_S = 0.010  # audible_times() reports 10 ms blocks by their start
REPLY_GAP_S = 0.25  # a reply starts after at least this much silence


def reply_onset(audible: Sequence[float], since: float, *, gap: float = REPLY_GAP_S) -> float | None:
    """The first audible block at or after ``since`` that follows ``gap`` seconds of silence.

    The tail of an interrupted reply that is still audible after ``since`` is
    skipped: a new reply is heard only after the old one fell silent.
    """
    previous: float | None = None
    for at in sorted(audible):
        if at >= since and (previous is None or at - previous >= gap):
            return at
        previous = at
    return None


def overhead_ms(first_audible: float, speech_end: float, silence_ms: float) -> float:
    """First audible reply sample − last speech sample − the end-of-turn silence, in ms."""
    return round((first_audible - speech_end) * 1000 - silence_ms, 1)


def barge_in_stop_ms(audible: Sequence[float], onset: float, until: float) -> float | None:
    """Interrupting speech onset → last audible reply sample before ``until``, in ms.

    ``until`` bounds the interrupted reply from the next one (the caller's
    speech end plus the end-of-turn silence: no reply to the interruption can
    be heard sooner). ``None`` when nothing was audible from the onset on: the
    reply was already over, or in a pause, so there is no stop to measure.
    """
    after = [at for at in audible if onset <= at < until]
    return round((max(after) + BLOCK_S - onset) * 1000, 1) if after else None


def silence_duration_ms(events: Iterable[dict[str, Any]]) -> int | None:
    """The end-of-turn silence of the latest ``session.created``/``session.updated``."""
    value: int | None = None
    for event in events:
        if event.get("type") not in ("session.created", "session.updated"):
            continue
        session = event.get("session") or {}
        turn = ((session.get("audio") or {}).get("input") or {}).get("turn_detection")
        if turn is None:
            turn = session.get("turn_detection")  # the older, beta shape
        if isinstance(turn, dict) and isinstance(turn.get("silence_duration_ms"), (int, float)):
            value = int(turn["silence_duration_ms"])
    return value


def response_transcript(done: dict[str, Any]) -> str:
    """The spoken text of a ``response.done`` event (what was played, when truncated)."""
    texts = []
    for item in (done.get("response") or {}).get("output") or []:
        for part in item.get("content") or []:
            text = part.get("transcript") or part.get("text")
            if isinstance(text, str):
                texts.append(text)
    return " ".join(texts)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100), linear between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (rank - low), 1)


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, p50, p95, max and mean of ``values`` (None where there are none)."""
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": round(max(values), 1) if values else None,
        "mean": round(sum(values) / len(values), 1) if values else None,
    }


_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def spell_number(n: int) -> list[str]:
    """Words for 0–99, and for years 1100–1999 as they are said ("eighteen thirteen")."""
    if n < 20:
        return [_UNITS[n]]
    if n < 100:
        return [_TENS[n // 10 - 2], *([_UNITS[n % 10]] if n % 10 else [])]
    if 1100 <= n <= 1999:
        high, low = divmod(n, 100)
        return [*spell_number(high), *(["hundred"] if low == 0 else
                                       ["oh", _UNITS[low]] if low < 10 else spell_number(low))]
    return [str(n)]


def normalize(text: str) -> list[str]:
    """Lower-case words without punctuation; numbers spelt out as they are said."""
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()
    out: list[str] = []
    for word in words:
        out.extend(spell_number(int(word)) if word.isdigit() and len(word) <= 4 else [word])
    return out


def word_errors(reference: str, hypothesis: str) -> int:
    """Word-level edit distance after :func:`normalize`."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word errors / reference words, after :func:`normalize`."""
    words = len(normalize(reference))
    if not words:
        return 0.0 if not normalize(hypothesis) else 1.0
    return round(word_errors(reference, hypothesis) / words, 3)


def corpus_word_error_rate(pairs: Iterable[tuple[str, str]]) -> float | None:
    """All word errors / all reference words of (reference, hypothesis) pairs; None without words."""
    errors = words = 0
    for reference, hypothesis in pairs:
        errors += word_errors(reference, hypothesis)
        words += len(normalize(reference))
    return round(errors / words, 3) if words else None
