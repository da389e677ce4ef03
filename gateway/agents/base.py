"""The agent interface: given the conversation so far, yield text pieces (and function calls).

A reply is an async iterator of pieces; the gateway synthesises text as
clauses complete and cancels the iteration (``aclose()``) the moment the caller
barges in. Assistant items in the history hold only what the caller heard.

Two levels: :meth:`Agent.reply` (messages and instructions in, text out) is all
a talking agent writes; :meth:`Agent.respond` takes the whole
:class:`AgentRequest` (function calls and their outputs in the history, the
session's tools and tool choice) and may yield :class:`FunctionCallDelta`
pieces as well as text. Its default answers with :meth:`reply` over the messages
alone; agents that call tools (``openai``, ``webhook``) override it and say so
with ``can_call_tools``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from gateway.protocol.tools import AUTO, FunctionTool, ToolChoice


@dataclass
class ConversationItem:
    """A message: what the caller said (final transcript), what was heard of a reply, or a client's text."""

    id: str
    role: Literal["user", "assistant", "system"]
    text: str
    truncated: bool = False


@dataclass(frozen=True)
class FunctionCallItem:
    """A function the agent called (``arguments``: a JSON text), in the conversation."""

    id: str
    call_id: str
    name: str
    arguments: str
    role: ClassVar[str] = "assistant"

    @property
    def text(self) -> str:  # what the history's bounds count
        return self.arguments


@dataclass(frozen=True)
class FunctionOutputItem:
    """The result of a function call, sent by the client (``conversation.item.create`` ``function_call_output``)."""

    id: str
    call_id: str
    output: str
    role: ClassVar[str] = "tool"

    @property
    def text(self) -> str:
        return self.output


HistoryItem = ConversationItem | FunctionCallItem | FunctionOutputItem


@dataclass(frozen=True)
class AgentRequest:
    """What an agent answers: the conversation, the instructions, and the tools it may call."""

    history: Sequence[HistoryItem]
    instructions: str
    tools: tuple[FunctionTool, ...] = ()
    tool_choice: ToolChoice = AUTO

    @property
    def messages(self) -> list[ConversationItem]:
        """The history's messages only (for agents that do not call tools)."""
        return [item for item in self.history if isinstance(item, ConversationItem)]

    @property
    def offers_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice.mode != "none"


@dataclass(frozen=True)
class FunctionCallDelta:
    """A piece of a function call the agent is making. Calls are told apart by ``index`` (parallel calls).

    The first delta of an index carries its ``call_id`` and ``name``; every delta carries the next
    piece of the ``arguments`` JSON text (perhaps empty). The call is complete when the stream ends.
    """

    index: int
    call_id: str
    name: str
    arguments: str = ""


AgentPiece = str | FunctionCallDelta


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
    #: Whether :meth:`respond` may call the request's tools (``session.updated`` says so per agent).
    can_call_tools: bool = False

    @abc.abstractmethod
    def reply(self, history: Sequence[ConversationItem], instructions: str) -> AsyncIterator[str]:
        """Stream the reply to the last user item of ``history``."""

    def respond(self, request: AgentRequest) -> AsyncIterator[AgentPiece]:
        """Stream the reply to ``request``: text pieces and, for agents that can, function calls."""
        return self.reply(request.messages, request.instructions)


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

    def recent(self, history: Sequence[HistoryItem]) -> list[HistoryItem]:
        """The newest items that fit, in order. The newest one is always sent: cut to ``max_chars`` if it must be."""
        chosen: list[HistoryItem] = []
        chars = 0
        for item in reversed(history[-self.max_items:]):
            if chars + len(item.text) > self.max_chars:
                if not chosen:
                    chosen.append(_cut(item, self.max_chars))
                break
            chosen.append(item)
            chars += len(item.text)
        chosen.reverse()
        return chosen


def _cut(item: HistoryItem, chars: int) -> HistoryItem:
    """``item`` with its text cut to ``chars`` characters."""
    if isinstance(item, ConversationItem):
        return dataclasses.replace(item, text=item.text[:chars], truncated=True)
    if isinstance(item, FunctionCallItem):
        return dataclasses.replace(item, arguments=item.arguments[:chars])
    return dataclasses.replace(item, output=item.output[:chars])


def last_user_text(history: Sequence[HistoryItem]) -> str:
    for item in reversed(history):
        if isinstance(item, ConversationItem) and item.role == "user":
            return item.text
    return ""
