"""The agent interface: given the conversation so far, yield text pieces.

A reply is an async iterator of text pieces; the gateway synthesises them as
clauses complete and cancels the iteration (``aclose()``) the moment the caller
barges in. Assistant items in the history hold only what the caller heard.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass
class ConversationItem:
    id: str
    role: Literal["user", "assistant", "system"]
    text: str
    truncated: bool = False


class AgentError(Exception):
    """The agent could not produce a reply (upstream failure, timeout, bad data).

    ``code`` goes to the caller in an ``error`` event; ``apology``, when not
    empty, is spoken in place of the rest of the reply.
    """

    def __init__(self, code: str, message: str, *, apology: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.apology = apology


class Agent(abc.ABC):
    name: str = "agent"
    #: Safe to start before the end of the turn is confirmed and to throw the
    #: result away (no side effects, no cost): lets the reply be ready when the
    #: caller's silence ends. External agents say False.
    speculative: bool = False
    #: The call this agent answers (set by the registry; used in logs and upstream requests).
    call_id: str = ""

    @abc.abstractmethod
    def reply(self, history: Sequence[ConversationItem], instructions: str) -> AsyncIterator[str]:
        """Stream the reply to the last user item of ``history``."""


class TextAgent(Agent):
    """Speaks a fixed text: used for client-created assistant items."""

    name = "text"
    speculative = True

    def __init__(self, text: str) -> None:
        self._text = text

    async def reply(self, history: Sequence[ConversationItem], instructions: str) -> AsyncIterator[str]:
        yield self._text


@dataclass(frozen=True)
class HistoryWindow:
    """How much of the conversation an external agent is sent per reply: the most recent items within both bounds.

    ``limits.max_agent_history_items`` (50) and ``limits.max_agent_history_chars`` (32,000, about
    8,000 tokens). Whatever the call's history holds, a request body is then about 80 kB at most
    (the window, the webhook's copy of the transcript, 16,000 characters of instructions), and
    serialising it on the event loop is cheap: ``json.dumps`` of that worst case takes 0.14 ms, where
    200 items of 63,000 characters took 39 ms per reply, and the unbounded history of a minute of
    flooding (3,000 items) 840 ms (measured on one core; tests/security/test_history_bounds.py checks it).
    """

    max_items: int = 50
    max_chars: int = 32_000

    def __post_init__(self) -> None:
        if self.max_items < 1 or self.max_chars < 1:
            raise ValueError("a history window holds at least one item and one character")

    def recent(self, history: Sequence[ConversationItem]) -> list[ConversationItem]:
        """The newest items that fit, in order. The newest one is always sent: cut to ``max_chars`` if it must be."""
        chosen: list[ConversationItem] = []
        chars = 0
        for item in reversed(history[-self.max_items:]):
            if chars + len(item.text) > self.max_chars:
                if not chosen:
                    chosen.append(ConversationItem(item.id, item.role, item.text[: self.max_chars], truncated=True))
                break
            chosen.append(item)
            chars += len(item.text)
        chosen.reverse()
        return chosen


def last_user_text(history: Sequence[ConversationItem]) -> str:
    for item in reversed(history):
        if item.role == "user":
            return item.text
    return ""
