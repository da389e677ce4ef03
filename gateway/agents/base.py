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


def last_user_text(history: Sequence[ConversationItem]) -> str:
    for item in reversed(history):
        if item.role == "user":
            return item.text
    return ""
