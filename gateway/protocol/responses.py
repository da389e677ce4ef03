"""What a ``response.create`` may ask for (GA ``RealtimeResponseCreateParams``), and the items it may carry.

Supported: ``instructions``, ``tools``, ``tool_choice``, ``output_modalities``, ``metadata``,
``conversation`` (``"auto"`` or ``"none"``: an out-of-band response that does not enter the
conversation) and ``input`` (the items the agent answers instead of the conversation: messages,
function calls and their outputs, and ``item_reference`` to an item already in it). Unknown keys are
ignored, as OpenAI does (``audio``, ``max_output_tokens``, ``prompt``). A bad value is an
:class:`InvalidTool`/``invalid_value`` naming the key (``response.tools[0].name``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gateway.protocol.server_events import new_id
from gateway.protocol.tools import FunctionTool, InvalidTool, ToolChoice, parse_tool_choice, parse_tools

MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
MAX_INPUT_ITEMS = 64
MAX_OUTPUT_CHARS = 32_768  # a function's result (it is spoken from, and repeated to the agent every turn)
TEXT_PARTS = ("input_text", "output_text", "text")
ROLES = ("user", "assistant", "system")


@dataclass(frozen=True)
class ClientFunctionCall:
    """A ``function_call`` item the client adds (e.g. restoring a conversation)."""

    id: str
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ClientFunctionOutput:
    """A ``function_call_output`` item: the result of a call the agent made."""

    id: str
    call_id: str
    output: str


@dataclass(frozen=True)
class ItemReference:
    """``{"type": "item_reference", "id": ...}`` in a response's ``input``: an item already in the conversation."""

    id: str


@dataclass(frozen=True)
class ResponseParams:
    """The ``response`` object of ``response.create``; None: the session's setting applies."""

    instructions: str | None = None
    tools: tuple[FunctionTool, ...] | None = None
    tool_choice: ToolChoice | None = None
    output_modalities: tuple[str, ...] | None = None
    metadata: dict[str, str] | None = None
    out_of_band: bool = False  # conversation: "none"
    input: tuple[Any, ...] | None = None  # ClientItem | ClientFunctionCall | ClientFunctionOutput | ItemReference


#: A ``response.create`` without a ``response`` object: the session's settings apply.
DEFAULT_PARAMS = ResponseParams()


def parse_response_params(response: dict[str, Any], parse_message: Any) -> ResponseParams:
    """``response``'s supported keys; ``parse_message`` reads a message item (client_events.parse_item)."""
    instructions = response.get("instructions")
    if instructions is not None and (not isinstance(instructions, str) or len(instructions) > 16_000):
        raise InvalidTool("response.instructions", "must be a string of at most 16000 characters")
    tools = parse_tools(response["tools"], "response.tools") if response.get("tools") is not None else None
    choice = None
    if response.get("tool_choice") is not None:
        choice = parse_tool_choice(response["tool_choice"], "response.tool_choice", tools or ())
    return ResponseParams(
        instructions=instructions,
        tools=tools,
        tool_choice=choice,
        output_modalities=_modalities(response.get("output_modalities")),
        metadata=_metadata(response.get("metadata")),
        out_of_band=_conversation(response.get("conversation", "auto")) == "none",
        input=_input(response["input"], parse_message) if response.get("input") is not None else None,
    )


def _modalities(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not set(value) <= {"audio", "text"}:
        raise InvalidTool("response.output_modalities", "must be [\"audio\"] or [\"text\"]")
    return ("text",) if value == ["text"] else ("audio",)


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_METADATA_KEYS:
        raise InvalidTool("response.metadata", f"must be an object of at most {MAX_METADATA_KEYS} keys")
    for key, text in value.items():
        if len(key) > MAX_METADATA_KEY_CHARS or not isinstance(text, str) or len(text) > MAX_METADATA_VALUE_CHARS:
            raise InvalidTool(f"response.metadata.{key[:64]}", f"keys of at most {MAX_METADATA_KEY_CHARS} characters, "
                              f"string values of at most {MAX_METADATA_VALUE_CHARS}")
    return dict(value)


def _conversation(value: Any) -> Literal["auto", "none"]:
    if value not in ("auto", "none"):
        raise InvalidTool("response.conversation", "must be \"auto\" or \"none\"")
    return "none" if value == "none" else "auto"


def _input(value: Any, parse_message: Any) -> tuple[Any, ...]:
    if not isinstance(value, list) or len(value) > MAX_INPUT_ITEMS:
        raise InvalidTool("response.input", f"must be a list of at most {MAX_INPUT_ITEMS} items")
    items: list[Any] = []
    for index, raw in enumerate(value):
        param = f"response.input[{index}]"
        if isinstance(raw, dict) and raw.get("type") == "item_reference":
            if not isinstance(raw.get("id"), str):
                raise InvalidTool(f"{param}.id", "must be the id of an item")
            items.append(ItemReference(raw["id"]))
        else:
            items.append(parse_item_payload(raw, param, parse_message))
    return tuple(items)


def parse_item_payload(raw: Any, param: str, parse_message: Any) -> Any:
    """A message, ``function_call`` or ``function_call_output`` item (raises :class:`InvalidTool`)."""
    kind = raw.get("type", "message") if isinstance(raw, dict) else None
    if kind == "message":
        return parse_message(raw)
    if kind not in ("function_call", "function_call_output"):
        raise InvalidTool(f"{param}.type", "must be 'message', 'function_call' or 'function_call_output'")
    assert isinstance(raw, dict)
    call_id = raw.get("call_id")
    if not isinstance(call_id, str) or not call_id or len(call_id) > 128:
        raise InvalidTool(f"{param}.call_id", "must be the call_id of a function call")
    item_id = raw["id"] if isinstance(raw.get("id"), str) and raw["id"] else new_id("item")
    if kind == "function_call_output":
        output = raw.get("output")
        if not isinstance(output, str) or len(output) > MAX_OUTPUT_CHARS:
            raise InvalidTool(f"{param}.output", f"must be a string of at most {MAX_OUTPUT_CHARS} characters")
        return ClientFunctionOutput(item_id, call_id, output)
    name, arguments = raw.get("name"), raw.get("arguments", "{}")
    if not isinstance(name, str) or not name or not isinstance(arguments, str):
        raise InvalidTool(f"{param}.name", "a function_call needs a name and string arguments")
    return ClientFunctionCall(item_id, call_id, name, arguments)
