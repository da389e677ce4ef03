"""Function tools and the choice among them, as ``session.update`` and ``response.create`` carry them (GA shapes).

A tool is ``{"type": "function", "name", "description", "parameters"}``; ``tool_choice`` is ``"auto"``,
``"none"``, ``"required"`` or ``{"type": "function", "name": ...}``. Everything is checked here, once, and
bounded: a session holds at most :data:`MAX_TOOLS` tools (OpenAI's own limit is 128), a tool's JSON schema
at most :data:`MAX_SCHEMA_CHARS` characters serialised and :data:`MAX_SCHEMA_DEPTH` levels deep. With the
bounds a session's tools cost at most about 2 MB of memory in the worst case, and the agent's request body
(which repeats them per reply) stays well below an upstream's limits; a client sending 1,000 tools or a
1 MB schema gets an ``invalid_value`` error naming the key, and nothing is stored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

MAX_TOOLS = 64
MAX_SCHEMA_CHARS = 32_768
MAX_SCHEMA_DEPTH = 16
MAX_DESCRIPTION_CHARS = 4_096
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
TOOL_CHOICE_MODES = ("auto", "none", "required")

ToolChoiceMode = Literal["auto", "none", "required"]


class InvalidTool(ValueError):
    """A tool or tool choice is malformed; ``param`` names the key (``session.tools[2].name``)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


@dataclass(frozen=True)
class FunctionTool:
    """One function the agent may call; ``parameters`` is a JSON schema object (checked, bounded)."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ValueError(f"invalid tool name {self.name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"type": "function", "name": self.name, "description": self.description,
                "parameters": self.parameters}


@dataclass(frozen=True)
class ToolChoice:
    """``mode``, or a forced function (``function`` set, ``mode`` "required")."""

    mode: ToolChoiceMode = "auto"
    function: str | None = None

    def to_wire(self) -> str | dict[str, str]:
        return {"type": "function", "name": self.function} if self.function else self.mode


AUTO = ToolChoice()


def parse_tools(value: Any, param: str) -> tuple[FunctionTool, ...]:
    """``tools`` as typed tools; raises :class:`InvalidTool` naming the first bad key."""
    if not isinstance(value, list):
        raise InvalidTool(param, "must be a list of tools")
    if len(value) > MAX_TOOLS:
        raise InvalidTool(param, f"at most {MAX_TOOLS} tools (got {len(value)})")
    tools = [_tool(raw, f"{param}[{index}]") for index, raw in enumerate(value)]
    names = [tool.name for tool in tools]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise InvalidTool(f"{param}[{index}].name", f"duplicate tool name {name!r}")
    return tuple(tools)


def _tool(raw: Any, param: str) -> FunctionTool:
    if not isinstance(raw, dict):
        raise InvalidTool(param, "must be an object")
    if raw.get("type", "function") != "function":
        raise InvalidTool(f"{param}.type", f"unsupported tool type {raw.get('type')!r}; only 'function'")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidTool(f"{param}.name", "must be 1 to 64 letters, digits, '_' or '-'")
    description = raw.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidTool(f"{param}.description", f"must be a string of at most {MAX_DESCRIPTION_CHARS} characters")
    parameters = raw.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, dict):
        raise InvalidTool(f"{param}.parameters", "must be a JSON schema object")
    if parameters.get("type", "object") != "object":
        raise InvalidTool(f"{param}.parameters.type", "a function's parameters must be of type 'object'")
    if _depth(parameters) > MAX_SCHEMA_DEPTH:
        raise InvalidTool(f"{param}.parameters", f"nested more than {MAX_SCHEMA_DEPTH} levels deep")
    size = len(json.dumps(parameters, separators=(",", ":")))
    if size > MAX_SCHEMA_CHARS:
        raise InvalidTool(f"{param}.parameters", f"at most {MAX_SCHEMA_CHARS} characters of JSON (got {size})")
    return FunctionTool(name, description, parameters)


def _depth(value: Any) -> int:
    """How deeply ``value`` nests (iterative: a hostile schema cannot exhaust the stack)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_SCHEMA_DEPTH:
            return deepest
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def parse_tool_choice(value: Any, param: str, tools: tuple[FunctionTool, ...]) -> ToolChoice:
    """``tool_choice``; a forced function must be one of ``tools``."""
    if isinstance(value, str):
        if value not in TOOL_CHOICE_MODES:
            raise InvalidTool(param, f"must be one of {', '.join(TOOL_CHOICE_MODES)} or a function")
        return ToolChoice(value)  # type: ignore[arg-type]  # checked against TOOL_CHOICE_MODES
    if isinstance(value, dict) and value.get("type") == "function":
        name = value.get("name")
        if not isinstance(name, str) or name not in {tool.name for tool in tools}:
            raise InvalidTool(f"{param}.name", f"no tool named {name!r}")
        return ToolChoice("required", name)
    raise InvalidTool(param, "must be 'auto', 'none', 'required' or {\"type\": \"function\", \"name\": ...}")
