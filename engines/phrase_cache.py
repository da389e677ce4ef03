"""Synthesised audio of repeated phrases, kept so a phrase is synthesised once per process.

Replies repeat themselves: the echo agent opens every reply with the clause "You said:",
an upstream agent's failure is always the same apology, and assistants open with the same
few words. Piper costs ~0.1 s of CPU per second of audio (benchmarks/engine_cpu.py); a hit
here costs a dictionary lookup and a copy of the list of chunks (benchmarks/phrase_cache.py).

:class:`PhraseCache` wraps any :class:`SpeechSynthesizer`. Keys are the voice, the speed and the
exact text (settings that change the audio); only texts of at most ``max_chars`` are kept (long
clauses rarely repeat), only once their synthesis completed (an interrupted one leaves nothing),
and least recently used phrases are evicted once the audio held exceeds ``max_bytes``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator

from engines.base import SpeechSynthesizer, SynthesizedAudio

logger = logging.getLogger(__name__)

Key = tuple[str, float, str]


class PhraseCache(SpeechSynthesizer):
    """``inner`` with the audio of its short phrases kept, ``max_bytes`` of it at most."""

    def __init__(self, inner: SpeechSynthesizer, *, max_bytes: int = 8 << 20, max_chars: int = 80) -> None:
        if max_bytes <= 0 or max_chars <= 0:
            raise ValueError("a phrase cache needs max_bytes > 0 and max_chars > 0")
        self.inner = inner
        self.sample_rate = inner.sample_rate
        self._max_bytes = max_bytes
        self._max_chars = max_chars
        self._phrases: OrderedDict[Key, tuple[SynthesizedAudio, ...]] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = self.evictions = 0

    @property
    def queue_depth(self) -> int:
        return self.inner.queue_depth

    @property  # read-only here: the wrapped synthesiser owns its voices
    def voices(self) -> tuple[str, ...]:  # type: ignore[override]
        """The wrapped synthesiser's voices, read each time: a remote one learns them after start (engines/remote)."""
        return self.inner.voices

    def __getattr__(self, name: str) -> object:
        """What else the wrapped synthesiser says of itself (its ``device``, for ``/readyz``)."""
        if name == "inner":  # not set yet: during __init__ or unpickling
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def warm_up(self) -> None:
        """The wrapped synthesiser's own warm-up (a remote one reads its voices there), not the base class's."""
        await self.inner.warm_up()

    def __len__(self) -> int:
        return len(self._phrases)

    def holds(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> bool:
        """Whether the audio of ``text`` in ``voice`` at ``speed`` is kept."""
        return (voice or self.voices[0], speed, text) in self._phrases

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    async def synthesize(
        self, text: str, *, voice: str | None = None, first: bool = False, speed: float = 1.0
    ) -> AsyncIterator[SynthesizedAudio]:
        key = (voice or self.voices[0], speed, text)
        cached = self._phrases.get(key) if len(text) <= self._max_chars else None
        if cached is not None:
            self.hits += 1
            self._phrases.move_to_end(key)
            for piece in cached:
                yield piece
            return
        pieces: list[SynthesizedAudio] = []
        async for piece in self.inner.synthesize(text, voice=voice, first=first, speed=speed):
            pieces.append(piece)
            yield piece
        if len(text) <= self._max_chars:
            self.misses += 1
            self._keep(key, tuple(pieces))

    def _keep(self, key: Key, pieces: tuple[SynthesizedAudio, ...]) -> None:
        size = sum(piece.samples.nbytes for piece in pieces)
        if size > self._max_bytes or key in self._phrases:
            return
        for piece in pieces:
            piece.samples.setflags(write=False)  # shared by every call that says the phrase
        self._phrases[key] = pieces
        self.bytes += size
        while self.bytes > self._max_bytes:
            _, evicted = self._phrases.popitem(last=False)
            self.bytes -= sum(piece.samples.nbytes for piece in evicted)
            self.evictions += 1
