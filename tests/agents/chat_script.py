"""Scripted Chat Completions answers that call tools: the SSE a model server streams, chunk by chunk.

Used with tests/gateway/agents/upstream_server.py's :func:`stream` (``raw=`` lines): the scripted
upstream then answers like an OpenAI-compatible server that decided to call a function.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tests.gateway.agents.upstream_server import Behaviour, stream


@dataclass(frozen=True)
class ScriptedCall:
    call_id: str
    name: str
    arguments: Sequence[str]  # the arguments JSON, in the pieces it streams in


def _chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    body = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n"


def tool_call_lines(calls: Sequence[ScriptedCall], preamble: Sequence[str] = ()) -> list[str]:
    """SSE lines: the preamble's tokens, then every call (parallel calls by index), then ``[DONE]``."""
    lines = [_chunk({"role": "assistant", "content": ""})]
    lines += [_chunk({"content": token}) for token in preamble]
    for index, call in enumerate(calls):
        lines.append(_chunk({"tool_calls": [{"index": index, "id": call.call_id, "type": "function",
                                             "function": {"name": call.name, "arguments": ""}}]}))
        lines += [_chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                  for piece in call.arguments]
    return [*lines, _chunk({}, "tool_calls"), "data: [DONE]\n\n"]


def text_lines(tokens: Sequence[str]) -> list[str]:
    """SSE lines: a role chunk (as servers send first), the tokens, then ``[DONE]``."""
    return [_chunk({"role": "assistant", "content": ""}), *(_chunk({"content": token}) for token in tokens),
            _chunk({}, "stop"), "data: [DONE]\n\n"]


def calls_tools(calls: Sequence[ScriptedCall], preamble: Sequence[str] = ()) -> Behaviour:
    """An upstream answer that (after ``preamble``) calls ``calls``."""
    return stream([], raw=tool_call_lines(calls, preamble), content_type="text/event-stream")


def says(tokens: Sequence[str]) -> Behaviour:
    return stream([], raw=text_lines(tokens), content_type="text/event-stream")


WEATHER_TOOL = {
    "type": "function", "name": "get_weather", "description": "The weather in a city now.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER_CALL = ScriptedCall("call_weather_1", "get_weather", ['{"city": ', '"Paris"}'])


def weather_model(*, prefix: str = "Here is what I found: ") -> Behaviour:
    """A model that decides to call ``get_weather`` when asked, and reads the tool's result out once it has it.

    The answer after the result is ``prefix`` and the ``tool`` message's content, word for word: a test
    that hears it knows the result went from the client through the gateway to the model.
    """

    async def behave(request: Any, exchange: Any) -> Any:
        messages = exchange.body["messages"]
        if messages and messages[-1]["role"] == "tool":
            return await says([prefix, messages[-1]["content"]])(request, exchange)
        assert [tool["function"]["name"] for tool in exchange.body.get("tools", [])] == ["get_weather"]
        return await calls_tools([WEATHER_CALL])(request, exchange)

    return behave
