"""Chat Completions' shapes for tools: the request's ``tools``/``tool_choice`` and messages, the streamed calls.

The conversation's function calls become an assistant message's ``tool_calls`` (joined to the
assistant text just before them: a spoken preamble), their results ``tool`` messages. Chat Completions
refuses a ``tool_calls`` message without a ``tool`` message for each of its ids (and the reverse), so
calls still waiting for their result (the caller spoke while the tool ran) and results whose call
left the window are left out.

Streamed calls arrive as ``delta.tool_calls`` fragments told apart by ``index`` (parallel calls):
the first fragment of an index carries its ``id`` and ``function.name``, the rest pieces of
``function.arguments``. :class:`ToolCallAssembler` turns them into :class:`FunctionCallDelta` pieces.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.agents.base import (
    AgentError,
    AgentPiece,
    ConversationItem,
    FunctionCallDelta,
    FunctionCallItem,
    FunctionOutputItem,
    HistoryItem,
)
from gateway.protocol.server_events import new_id
from gateway.protocol.tools import FunctionTool, ToolChoice


def chat_tools(tools: Sequence[FunctionTool]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": tool.name, "description": tool.description,
                                              "parameters": tool.parameters}} for tool in tools]


def chat_tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.function:
        return {"type": "function", "function": {"name": choice.function}}
    return choice.mode


def chat_messages(history: Sequence[HistoryItem], instructions: str, max_items: int = 0) -> list[dict[str, Any]]:
    """The Chat Completions ``messages``: instructions as the system prompt, then the non-empty items."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions.strip() else []
    items = list(history[-max_items:] if max_items else history)
    called = {item.call_id for item in items if isinstance(item, FunctionCallItem)}
    answered = {item.call_id for item in items if isinstance(item, FunctionOutputItem)} & called
    for item in items:
        if isinstance(item, ConversationItem):
            if item.text.strip():
                messages.append({"role": item.role, "content": item.text})
        elif isinstance(item, FunctionCallItem):
            if item.call_id in answered:
                _add_call(messages, item)
        elif item.call_id in answered:
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output})
    return messages


def _add_call(messages: list[dict[str, Any]], item: FunctionCallItem) -> None:
    call = {"id": item.call_id, "type": "function", "function": {"name": item.name, "arguments": item.arguments}}
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":  # a spoken preamble, or the calls before this one
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


class ToolCallAssembler:
    """``delta.tool_calls`` fragments of one streamed answer → :class:`FunctionCallDelta` pieces."""

    def __init__(self) -> None:
        self._calls: dict[int, tuple[str, str]] = {}  # index → (call_id, name)

    def pieces(self, fragments: Any) -> list[AgentPiece]:
        if not isinstance(fragments, list):
            raise AgentError("agent_bad_response", "a delta's tool_calls is not a list")
        pieces: list[AgentPiece] = []
        for fragment in fragments:
            if not isinstance(fragment, dict):
                raise AgentError("agent_bad_response", "a tool call fragment is not an object")
            function = fragment.get("function") or {}
            index = fragment.get("index", self._index_of(fragment, function))
            if not isinstance(function, dict) or not isinstance(index, int):
                raise AgentError("agent_bad_response", "a tool call fragment has no index or function")
            arguments = function.get("arguments") or ""
            if not isinstance(arguments, str):
                raise AgentError("agent_bad_response", "a tool call's arguments are not a string")
            if index not in self._calls:
                name = function.get("name")
                if not isinstance(name, str) or not name:
                    raise AgentError("agent_bad_response", "a tool call starts without a function name")
                call_id = fragment.get("id")
                self._calls[index] = (call_id if isinstance(call_id, str) and call_id else new_id("call"), name)
            call_id, name = self._calls[index]
            pieces.append(FunctionCallDelta(index, call_id, name, arguments))
        return pieces


    def _index_of(self, fragment: dict[str, Any], function: Any) -> int:
        """A fragment without ``index`` (servers that stream one call at a time): a new call if it names one,
        else the continuation of the last."""
        starts = fragment.get("id") or (isinstance(function, dict) and function.get("name"))
        return len(self._calls) if starts or not self._calls else max(self._calls)


def message_pieces(message: Any) -> list[AgentPiece]:
    """The text and calls of a whole (non-streamed) answer's ``choices[0].message``."""
    if not isinstance(message, dict):
        raise AgentError("agent_bad_response", "the answer has no choices[0].message")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise AgentError("agent_bad_response", "the answer's content is not a string")
    pieces: list[AgentPiece] = [content] if content else []
    calls = message.get("tool_calls")
    if calls:
        fragments = [{**call, "index": index} for index, call in enumerate(calls) if isinstance(call, dict)]
        pieces.extend(ToolCallAssembler().pieces(fragments))
    if not pieces and content is None:
        raise AgentError("agent_bad_response", "the answer has neither content nor tool_calls")
    return pieces
