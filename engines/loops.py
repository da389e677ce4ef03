"""Whisper's repetition loops: "10 of clubs 10 of clubs 10 of …" is the model looping, not speech.

Tiny models loop on short or cut windows. A partial is cut where the loop starts (the final decodes
the whole utterance anyway); a final that loops is decoded again with temperature fallback
(:class:`engines.whisper.WhisperRecognizer`), and cut if it still loops.
"""

from __future__ import annotations


def normal(word: str) -> str:
    """A word compared without case or punctuation ("Greece," is "greece")."""
    return "".join(ch for ch in word.lower() if ch.isalnum())


def without_loop(words: list[str], *, shortest: int = 3, longest: int = 12) -> list[str]:
    """``words`` cut where a run of ``shortest`` or more words repeats at once: Whisper looping, not speech.

    Short windows make tiny.en loop ("And so my fellow Americans. And so my fellow Americans. ..."); a
    closed segment publishes all its words, so a loop would be heard. Speech seldom repeats three words
    in a row. Shorter runs count as a loop once they come three times (one word: four): "1, 2, 1, 2, 1, 2"
    is how tiny.en loops on "one, two, three" over a short window. The last repeat may be cut short by the
    window ("She had your dark suit in greasy wash water all year. She had your dark suit in greasy").
    """
    keys = [normal(word) for word in words]
    for start in range(len(keys)):
        for size in range(1, min(longest, (len(keys) - start) // 2) + 1):
            times = 2 if size >= shortest else 3 if size == 2 else 4
            run = keys[start: start + size]
            if len(keys) - start >= times * size and all(
                    keys[start + k * size: start + (k + 1) * size] == run for k in range(1, times)):
                return words[: start + size]
        for size in range(shortest, len(keys) - start):  # a loop cut short by the window: the run again, unfinished
            rest = keys[start + size:]
            if 4 <= len(rest) < size and rest == keys[start: start + len(rest)]:
                return words[: start + size]
    return words


def loops(text: str) -> bool:
    """Whether ``text`` contains a repetition loop (:func:`without_loop` would cut it)."""
    words = text.split()
    return len(without_loop(words)) < len(words)


def unlooped(text: str) -> str:
    """``text`` cut where it starts to loop."""
    return " ".join(without_loop(text.split()))


def without_repeats(text: str) -> str:
    """``text`` with a word said again at once dropped ("Tomorrow. Tomorrow" → "Tomorrow."): how tiny.en echoes a
    short sound's word when prompted with short sentences ("Yeah. Yeah. Yeah. Yeah.", "Paris. Paris. Paris.")."""
    kept: list[str] = []
    for word in text.split():
        if not kept or normal(word) != normal(kept[-1]):
            kept.append(word)
    return " ".join(kept)
