"""The tool loop through a real session: session tools → the openai agent's Chat Completions request →
a streamed tool call → the GA function-call events → the client's result → the spoken answer.

The agent is the real ``openai`` chat agent against a scripted upstream (real HTTP on loopback).
"""

from __future__ import annotations

import asyncio
import json

from tests.agents.chat_script import WEATHER_CALL, WEATHER_TOOL, ScriptedCall, calls_tools, says
from tests.session.test_memory_transport import audible_ms
from tests.session.tool_line import ToolLine, tool_line

SUNNY = "Sunny and 21 degrees in Paris."


async def with_tools(call: ToolLine, **session: object) -> dict[str, object]:
    since = call.mark()
    call.send({"type": "session.update", "session": {"tools": [WEATHER_TOOL], "tool_choice": "auto", **session}})
    updated = await call.transport.wait_event("session.updated", since=since)
    return dict(updated["session"])


async def test_a_tool_call_is_streamed_the_result_continues_and_the_answer_is_spoken() -> None:
    async with tool_line(calls_tools([WEATHER_CALL])) as call:
        session = await with_tools(call)
        assert session["tools"] == [WEATHER_TOOL] and session["tool_choice"] == "auto"
        assert session["gateway"] == {"agent_can_call_tools": True}
        echo = await with_tools(call, agent="echo")  # echo talks, and says it cannot call tools
        assert echo["gateway"] == {"agent_can_call_tools": False} and echo["tools"] == [WEATHER_TOOL]
        await with_tools(call, agent="openai")

        since = call.mark()
        done = await call.ask("What's the weather in Paris?")
        request = call.upstream.exchanges[0].body
        assert request["tools"] == [{"type": "function", "function": {
            "name": "get_weather", "description": WEATHER_TOOL["description"],
            "parameters": WEATHER_TOOL["parameters"]}}]
        assert request["tool_choice"] == "auto"
        # A response that only calls a function: its one output item is the call, and it has no message.
        assert done["response"]["status"] == "completed"
        [item] = done["response"]["output"]
        assert item["type"] == "function_call" and item["status"] == "completed"
        assert (item["call_id"], item["name"], json.loads(item["arguments"])) == (
            "call_weather_1", "get_weather", {"city": "Paris"})
        types = call.transport.types(since)
        assert [e["item"]["type"] for e in call.events("conversation.item.done", since)] == [
            "message", "function_call"]  # the user's message, then the call: in the conversation
        order = [t for t in types if t in (
            "response.created", "response.output_item.added", "response.function_call_arguments.delta",
            "response.function_call_arguments.done", "response.output_item.done", "response.done")]
        assert order == ["response.created", "response.output_item.added", "response.function_call_arguments.delta",
                         "response.function_call_arguments.delta", "response.function_call_arguments.done",
                         "response.output_item.done", "response.done"]
        deltas = call.events("response.function_call_arguments.delta", since)
        assert "".join(d["delta"] for d in deltas) == '{"city": "Paris"}'
        assert {(d["call_id"], d["item_id"], d["output_index"]) for d in deltas} == {
            ("call_weather_1", item["id"], 0)}
        arguments_done = call.events("response.function_call_arguments.done", since)[0]
        assert arguments_done["arguments"] == item["arguments"] and arguments_done["name"] == "get_weather"
        assert "output_audio_buffer.started" not in types  # nothing was said

        call.upstream.default = says(["Sunny and 21 ", "degrees in Paris."])
        answered = await call.answer("call_weather_1", json.dumps({"forecast": "sunny", "celsius": 21}))
        assert answered["response"]["status"] == "completed"
        assert answered["response"]["output"][0]["content"][0]["transcript"] == SUNNY
        messages = call.upstream.exchanges[1].body["messages"]
        assert messages[-2:] == [
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_weather_1", "type": "function",
                                                                    "function": {"name": "get_weather",
                                                                                 "arguments": item["arguments"]}}]},
            {"role": "tool", "tool_call_id": "call_weather_1", "content": '{"forecast": "sunny", "celsius": 21}'}]
        assert audible_ms(call.transport) >= 400  # the answer was heard (ToneTts: 100 ms a word)
        assert call.errors() == []
        assert call.off_schema() == []  # every event validates against the openai SDK's GA types


async def test_a_preamble_then_parallel_calls_are_one_response_with_every_item_in_order() -> None:
    second = ScriptedCall("call_time_2", "get_time", ['{"city": "Paris"}'])
    async with tool_line(calls_tools([WEATHER_CALL, second], preamble=["Let me ", "check that."])) as call:
        await with_tools(call, tools=[WEATHER_TOOL, {**WEATHER_TOOL, "name": "get_time"}])
        since = call.mark()
        done = await call.ask("Weather and time in Paris?")
        output = done["response"]["output"]
        assert [o["type"] for o in output] == ["message", "function_call", "function_call"]
        assert output[0]["content"][0]["transcript"] == "Let me check that."
        assert [o["call_id"] for o in output[1:]] == ["call_weather_1", "call_time_2"]
        added = call.events("response.output_item.added", since)
        assert [(a["item"]["type"], a["output_index"]) for a in added] == [
            ("message", 0), ("function_call", 1), ("function_call", 2)]
        assert audible_ms(call.transport) >= 200  # the preamble was spoken before the calls completed
        types = call.transport.types(since)
        assert types.index("output_audio_buffer.stopped") < types.index("response.function_call_arguments.done")

        call.upstream.default = says(["Sunny, and it is noon."])
        call.send({"type": "conversation.item.create",
                   "item": {"type": "function_call_output", "call_id": "call_weather_1", "output": "sunny"}})
        done = await call.answer("call_time_2", "12:00")
        assert done["response"]["status"] == "completed"
        messages = call.upstream.exchanges[1].body["messages"]
        assert messages[-3]["content"] == "Let me check that."  # the preamble carries both calls
        assert [c["id"] for c in messages[-3]["tool_calls"]] == ["call_weather_1", "call_time_2"]
        assert [m["tool_call_id"] for m in messages[-2:]] == ["call_weather_1", "call_time_2"]
        assert call.off_schema() == []


async def test_bad_tools_are_refused_naming_the_key_and_nothing_is_stored() -> None:
    async with tool_line(says(["ok"])) as call:
        await with_tools(call)
        cases = [
            ({"tools": [{"type": "function", "parameters": {"type": "object"}}]}, "session.tools[0].name"),
            ({"tools": [{"type": "function", "name": "has space"}]}, "session.tools[0].name"),
            ({"tools": [{**WEATHER_TOOL, "parameters": "an object"}]}, "session.tools[0].parameters"),
            ({"tools": [{**WEATHER_TOOL, "parameters": {"type": "string"}}]}, "session.tools[0].parameters.type"),
            ({"tools": [{"type": "function", "name": f"t{i}"} for i in range(1000)]}, "session.tools"),
            ({"tools": [WEATHER_TOOL, WEATHER_TOOL]}, "session.tools[1].name"),
            ({"tools": "get_weather"}, "session.tools"),
            ({"tool_choice": "sometimes"}, "session.tool_choice"),
            ({"tool_choice": {"type": "function", "name": "nope"}}, "session.tool_choice.name"),
        ]
        for index, (session, _param) in enumerate(cases):
            call.send({"type": "session.update", "event_id": f"bad_{index}", "session": session})
        errors = call.errors()
        assert [(e["code"], e["param"], e["event_id"]) for e in errors] == [
            ("invalid_value", param, f"bad_{index}") for index, (_, param) in enumerate(cases)]
        assert "at most 64 tools (got 1000)" in errors[4]["message"]
        # 1 MB of schema: over the data channel it is too large an event; through any other path the
        # settings refuse it (the offer's session part, a client secret's session).
        huge = {**WEATHER_TOOL, "parameters": {"type": "object", "description": "x" * 1_000_000}}
        call.send({"type": "session.update", "session": {"tools": [huge]}})
        assert call.errors()[-1]["code"] == "event_too_large"
        settings = call.session.conversation.settings
        try:
            settings.updated({"tools": [huge]}, voices=("tone",), agents=("openai",))
        except ValueError as exc:
            assert "session.tools[0].parameters: at most 32768 characters" in str(exc)
        else:
            raise AssertionError("a 1 MB schema was accepted")
        deep: dict[str, object] = {"type": "object"}
        for _ in range(40):
            deep = {"type": "object", "properties": {"x": deep}}
        call.send({"type": "session.update", "event_id": "deep", "session": {"tools": [{**WEATHER_TOOL,
                                                                                         "parameters": deep}]}})
        assert call.errors()[-1]["param"] == "session.tools[0].parameters"
        # Nothing was stored, and the call goes on with the tools it had.
        assert [tool.name for tool in call.session.conversation.settings.tools] == ["get_weather"]
        done = await call.ask("Still there?")
        assert done["response"]["status"] == "completed" and call.session.end_reason is None


async def test_results_for_unknown_answered_or_cancelled_calls_are_errors_and_the_call_goes_on() -> None:
    async with tool_line(calls_tools([WEATHER_CALL], preamble=["One moment while I look that up for you."])) as call:
        await with_tools(call)
        call.send({"type": "conversation.item.create", "event_id": "unknown",
                   "item": {"type": "function_call_output", "call_id": "call_nobody", "output": "x"}})
        call.send({"type": "conversation.item.create", "event_id": "no_call_id",
                   "item": {"type": "function_call_output", "output": "x"}})
        assert [(e["code"], e["event_id"], e["param"]) for e in call.errors()] == [
            ("unknown_call_id", "unknown", "item.call_id"), ("invalid_item", "no_call_id", "item.call_id")]

        # Barge-in (here response.cancel) while the preamble plays: the call never completes.
        since = call.mark()
        call.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]}})
        call.send({"type": "response.create"})
        await call.transport.wait_event("output_audio_buffer.started", since=since)
        call.send({"type": "response.cancel"})
        done = await call.transport.wait_event("response.done", since=since)
        assert done["response"]["status"] == "cancelled"
        # The agent's stream had reached the call (it streams at once) before the cut: incomplete, never run.
        [cancelled] = [o for o in done["response"]["output"] if o["type"] == "function_call"]
        assert cancelled["status"] == "incomplete"
        mark = call.mark()
        call.send({"type": "conversation.item.create", "event_id": "late",
                   "item": {"type": "function_call_output", "call_id": "call_weather_1", "output": "x"}})
        assert [(e["code"], e["event_id"]) for e in call.errors(mark)] == [("function_call_cancelled", "late")]

        # A completed call takes one result; a second is refused.
        call.upstream.default = calls_tools([ScriptedCall("call_2", "get_weather", ['{"city": "Oslo"}'])])
        await call.ask("And in Oslo?")
        call.upstream.default = says(["Cold."])
        done = await call.answer("call_2", "cold")
        assert done["response"]["status"] == "completed"
        mark = call.mark()
        call.send({"type": "conversation.item.create", "event_id": "again",
                   "item": {"type": "function_call_output", "call_id": "call_2", "output": "cold"}})
        assert [(e["code"], e["event_id"]) for e in call.errors(mark)] == [("function_call_already_answered", "again")]
        assert call.session.end_reason is None


async def test_a_late_result_is_kept_in_the_history_but_does_not_speak() -> None:
    async with tool_line(calls_tools([WEATHER_CALL])) as call:
        await with_tools(call)
        await call.ask("Weather in Paris?")
        # The caller speaks again while the tool runs: another reply is active when the result comes.
        call.upstream.default = says(["Hold on, still checking the weather for you in Paris."])
        since = call.mark()
        call.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello?"}]}})
        call.send({"type": "response.create"})
        await call.transport.wait_event("output_audio_buffer.started", since=since)
        mark = call.mark()
        call.send({"type": "conversation.item.create",
                   "item": {"type": "function_call_output", "call_id": "call_weather_1", "output": "sunny"}})
        call.send({"type": "response.create", "event_id": "after_result"})
        added = await call.transport.wait_event("conversation.item.added", since=mark)
        assert added["item"]["type"] == "function_call_output" and added["item"]["call_id"] == "call_weather_1"
        assert [(e["code"], e["event_id"]) for e in call.errors(mark)] == [
            ("conversation_already_has_active_response", "after_result")]
        await call.transport.wait_event("response.done", since=since, within=15)
        # The next reply sees the result.
        call.upstream.default = says(["Sunny."])
        await call.respond()
        messages = call.upstream.exchanges[-1].body["messages"]
        assert {"role": "tool", "tool_call_id": "call_weather_1", "content": "sunny"} in messages


async def test_text_modality_gives_text_events_and_no_audio() -> None:
    async with tool_line(says(["Plain ", "text only."])) as call:
        session = await with_tools(call, output_modalities=["text"])
        assert session["output_modalities"] == ["text"]
        since = call.mark()
        done = await call.ask("Say something.")
        assert done["response"]["output_modalities"] == ["text"]
        assert done["response"]["output"][0]["content"] == [{"type": "output_text", "text": "Plain text only."}]
        deltas = call.events("response.output_text.delta", since)
        assert "".join(d["delta"] for d in deltas) == "Plain text only." and len(deltas) == 2
        assert call.events("response.output_text.done", since)[0]["text"] == "Plain text only."
        types = call.transport.types(since)
        assert not [t for t in types if "audio" in t]
        await asyncio.sleep(0.2)
        assert audible_ms(call.transport) == 0
        # Per response: audio again.
        since = call.mark()
        done = await call.ask("Now aloud.", output_modalities=["audio"])
        assert done["response"]["output"][0]["content"][0]["type"] == "output_audio"
        assert "output_audio_buffer.started" in call.transport.types(since)
        assert call.off_schema() == []


async def test_an_out_of_band_response_with_its_own_input_and_instructions_stays_out_of_the_conversation() -> None:
    async with tool_line(says(["Positive."])) as call:
        first = await call.ask("I love this!")
        since = call.mark()
        call.send({"type": "response.create", "event_id": "bad_ref", "response": {
            "conversation": "none", "input": [{"type": "item_reference", "id": "nope"}]}})
        call.send({"type": "response.create", "event_id": "bad_meta", "response": {"metadata": {"k": 7}}})
        call.send({"type": "response.create", "event_id": "bad_conv", "response": {"conversation": "other"}})
        call.send({"type": "response.create", "event_id": "bad_mod", "response": {"output_modalities": ["video"]}})
        assert [(e["code"], e["param"], e["event_id"]) for e in call.errors(since)] == [
            ("item_not_found", "response.input[0].id", "bad_ref"), ("invalid_value", "response.metadata.k", "bad_meta"),
            ("invalid_value", "response.conversation", "bad_conv"),
            ("invalid_value", "response.output_modalities", "bad_mod")]
        assert call.session.conversation.active_response_id is None
        since = call.mark()
        user_id = call.events("conversation.item.added")[0]["item"]["id"]
        call.send({"type": "response.create", "response": {
            "conversation": "none", "instructions": "Classify the sentiment.", "metadata": {"purpose": "sentiment"},
            "output_modalities": ["text"], "input": [{"type": "item_reference", "id": user_id}]}})
        done = await call.transport.wait_event("response.done", since=since)
        response = done["response"]
        assert response["conversation_id"] is None and response["metadata"] == {"purpose": "sentiment"}
        assert response["output"][0]["content"][0]["text"] == "Positive."
        assert call.events("conversation.item.added", since) == []  # not in the conversation
        assert call.upstream.exchanges[-1].body["messages"] == [
            {"role": "system", "content": "Classify the sentiment."}, {"role": "user", "content": "I love this!"}]
        assert first["response"]["conversation_id"] == "conv_tools"
        await call.respond()
        texts = [m.get("content") for m in call.upstream.exchanges[-1].body["messages"]]
        assert texts.count("Positive.") == 1  # the first reply only: the out-of-band one is not history
        assert call.off_schema() == []


async def test_items_are_deleted_and_truncated_to_what_was_heard() -> None:
    async with tool_line(says(["ok"])) as call:
        call.send({"type": "conversation.item.create", "item": {
            "id": "item_said", "type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": "one two three four five"}]}})
        await call.respond()  # ToneTts: 100 ms a word, 500 ms in all
        mark = call.mark()
        call.send({"type": "conversation.item.truncate", "item_id": "item_said", "content_index": 0,
                   "audio_end_ms": 250})
        truncated = await call.transport.wait_event("conversation.item.truncated", since=mark)
        assert truncated["item_id"] == "item_said" and truncated["audio_end_ms"] == 250
        call.send({"type": "conversation.item.retrieve", "item_id": "item_said"})
        retrieved = await call.transport.wait_event("conversation.item.retrieved", since=mark)
        assert retrieved["item"]["content"][0]["transcript"] == "one two"  # what the SDK re-reads after truncated
        for bad, code in [({"item_id": "item_said", "audio_end_ms": 60_000}, "invalid_value"),
                          ({"item_id": "item_nope", "audio_end_ms": 10}, "item_not_found"),
                          ({"item_id": "item_said", "audio_end_ms": -1}, "invalid_value"),
                          ({"item_id": "item_said", "audio_end_ms": 10, "content_index": 3}, "invalid_value")]:
            call.send({"type": "conversation.item.truncate", "content_index": 0, **bad})
            assert call.errors()[-1]["code"] == code, bad
        assert "past the end" in call.errors(mark)[0]["message"]
        await call.ask("What did you say?")
        messages = call.upstream.exchanges[-1].body["messages"]
        assert {"role": "assistant", "content": "one two"} in messages

        mark = call.mark()
        call.send({"type": "conversation.item.delete", "item_id": "item_said"})
        deleted = await call.transport.wait_event("conversation.item.deleted", since=mark)
        assert deleted["item_id"] == "item_said"
        call.send({"type": "conversation.item.delete", "item_id": "item_said", "event_id": "twice"})
        assert call.errors()[-1]["code"] == "item_not_found" and call.errors()[-1]["event_id"] == "twice"
        await call.respond()
        assert "one two" not in [m.get("content") for m in call.upstream.exchanges[-1].body["messages"]]
        assert call.off_schema() == []
