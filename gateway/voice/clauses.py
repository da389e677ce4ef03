"""Splits streamed reply text into clauses for incremental synthesis.

The first clause is released as early as possible (a short one is fine: it
only has to cover the time the next one takes to synthesise); later clauses are
longer, so the voice keeps a natural prosody.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?;:]+[\"')\]]*\s")
_CLAUSE_END = re.compile(r"[,\u2014\u2013]\s")


class ClauseSplitter:
    def __init__(self, *, first_min_chars: int = 6, min_chars: int = 40, max_chars: int = 240) -> None:
        self._buffer = ""
        self._first_min = first_min_chars
        self._min = min_chars
        self._max = max_chars
        self._emitted = 0

    @classmethod
    def whole_text(cls) -> ClauseSplitter:
        """A splitter that never splits: the whole text comes out of ``flush()`` (the naive baseline)."""
        unlimited = 1 << 62
        return cls(first_min_chars=unlimited, min_chars=unlimited, max_chars=unlimited)

    def push(self, text: str) -> list[str]:
        """Add streamed text; return the clauses that are now complete."""
        self._buffer += text
        clauses: list[str] = []
        while True:
            clause = self._next_clause()
            if clause is None:
                return clauses
            clauses.append(clause)

    def flush(self) -> list[str]:
        """The end of the stream: whatever is left is the last clause."""
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []

    def _next_clause(self) -> str | None:
        minimum = self._first_min if self._emitted == 0 else self._min
        cut = None
        for pattern in (_SENTENCE_END, _CLAUSE_END):
            for match in pattern.finditer(self._buffer):
                if match.end() >= minimum:
                    cut = match.end() if cut is None else min(cut, match.end())
                    break
        if cut is None and len(self._buffer) > self._max:
            space = self._buffer.rfind(" ", 0, self._max)
            cut = space + 1 if space > 0 else self._max
        if cut is None:
            return None
        clause, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:]
        if not clause:
            return None
        self._emitted += 1
        return clause
