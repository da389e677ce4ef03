"""Tools, tool choice and response.create params: parsed once, bounded, every bad value naming its key."""

from __future__ import annotations

import json

import pytest

from gateway.protocol.client_events import BadClientEvent, ResponseCreate, parse_client_event
from gateway.protocol.responses import ClientFunctionOutput, ItemReference
from gateway.protocol.tools import (
    MAX_SCHEMA_CHARS,
    MAX_TOOLS,
    FunctionTool,
    InvalidTool,
    ToolChoice,
    parse_tool_choice,
    parse_tools,
)

TOOL = {"type": "function", "name": "get_weather", "description": "d",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def test_a_tool_round_trips_and_defaults_are_filled() -> None:
    [tool] = parse_tools([TOOL], "session.tools")
    assert tool.to_dict() == TOOL
    [bare] = parse_tools([{"type": "function", "name": "ping"}], "session.tools")
    assert bare == FunctionTool("ping") and bare.parameters == {"type": "object", "properties": {}}
    assert parse_tools([], "session.tools") == ()


@pytest.mark.parametrize(("tools", "param"), [
    ([{"type": "function"}], "t[0].name"),
    ([{"type": "function", "name": ""}], "t[0].name"),
    ([{"type": "function", "name": "x" * 65}], "t[0].name"),
    ([{"type": "function", "name": "dots.not.allowed"}], "t[0].name"),
    ([{"type": "mcp", "name": "x"}], "t[0].type"),
    (["get_weather"], "t[0]"),
    ([{**TOOL, "parameters": []}], "t[0].parameters"),
    ([{**TOOL, "parameters": {"type": "array"}}], "t[0].parameters.type"),
    ([{**TOOL, "description": 7}], "t[0].description"),
    ([{**TOOL, "parameters": {"type": "object", "description": "x" * MAX_SCHEMA_CHARS}}], "t[0].parameters"),
    ([{**TOOL, "name": f"t{i}"} for i in range(MAX_TOOLS + 1)], "t"),
    ({"get_weather": TOOL}, "t"),
])
def test_bad_tools_name_the_key(tools: object, param: str) -> None:
    with pytest.raises(InvalidTool) as raised:
        parse_tools(tools, "t")
    assert raised.value.param == param


def test_a_deep_schema_is_refused_without_recursion() -> None:
    schema: dict[str, object] = {"type": "object"}
    for _ in range(10_000):  # deeper than Python's recursion limit
        schema = {"type": "object", "properties": {"x": schema}}
    with pytest.raises(InvalidTool, match="nested more than"):
        parse_tools([{**TOOL, "parameters": schema}], "t")


def test_tool_choice() -> None:
    tools = parse_tools([TOOL], "t")
    assert parse_tool_choice("required", "c", tools) == ToolChoice("required")
    assert parse_tool_choice({"type": "function", "name": "get_weather"}, "c", tools).to_wire() == {
        "type": "function", "name": "get_weather"}
    for bad, param in [("maybe", "c"), ({"type": "function", "name": "other"}, "c.name"), (3, "c")]:
        with pytest.raises(InvalidTool) as raised:
            parse_tool_choice(bad, "c", tools)
        assert raised.value.param == param


def test_response_create_params_are_parsed_and_bad_ones_refused() -> None:
    event = parse_client_event('{"type": "response.create", "response": {"conversation": "none", '
                               '"instructions": "Classify.", "metadata": {"k": "v"}, "output_modalities": ["text"], '
                               '"tools": [], "tool_choice": "none", "input": [{"type": "item_reference", "id": "i1"}, '
                               '{"type": "function_call_output", "call_id": "c1", "output": "x"}]}}', max_bytes=65536)
    assert isinstance(event, ResponseCreate)
    params = event.params
    assert params.out_of_band and params.instructions == "Classify." and params.metadata == {"k": "v"}
    assert params.output_modalities == ("text",) and params.tools == () and params.tool_choice == ToolChoice("none")
    assert params.input is not None and params.input[0] == ItemReference("i1")
    assert isinstance(params.input[1], ClientFunctionOutput) and params.input[1].call_id == "c1"
    for response, param in [({"metadata": {"k": "v" * 513}}, "response.metadata.k"),
                            ({"metadata": {f"k{i}": "v" for i in range(17)}}, "response.metadata"),
                            ({"input": "all"}, "response.input"),
                            ({"input": [{"type": "function_call_output", "call_id": "c"}]}, "response.input[0].output"),
                            ({"tools": [{"name": "a b"}]}, "response.tools[0].name"),
                            ({"instructions": 5}, "response.instructions")]:
        with pytest.raises(BadClientEvent) as raised:
            parse_client_event(json.dumps({"type": "response.create", "response": response}), max_bytes=65536)
        assert (raised.value.code, raised.value.param) == ("invalid_value", param)
