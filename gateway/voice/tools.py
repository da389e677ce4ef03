"""The tool loop of one call: function calls a response makes, the results the client sends back, and
the request the agent is asked next.

A response's function calls are announced as they stream (:class:`ResponseCalls`: ``output_item.added``,
``function_call_arguments.delta``) and completed when the response ends (``.done``, ``output_item.done``
with ``status: "completed"``, which is when the Agents SDK runs the tool): a reply that speaks a
preamble first ends when the preamble has been heard, so the client's ``response.create`` that follows
the result never meets an active response. A call whose response was cancelled (barge-in) is
``incomplete`` and never runs.

The :class:`CallLedger` remembers, per ``call_id``, whether a call waits for its result, has one, or was
cancelled, so that a ``function_call_output`` for an unknown or cancelled call is an ``error`` instead of
a silent item the agent would choke on. A result that arrives late (the caller spoke while the tool ran
and another reply is active) is kept in the history and does not speak: the client's ``response.create``
is refused while the other reply is active, and the next reply sees the result.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.agents import AgentRequest, ConversationItem, FunctionCallDelta, FunctionCallItem, FunctionOutputItem
from gateway.agents.base import HistoryItem
from gateway.protocol import server_events as events
from gateway.protocol.client_events import ClientItem
from gateway.protocol.responses import ClientFunctionCall, ClientFunctionOutput, ItemReference, ResponseParams
from gateway.protocol.server_events import Event
from gateway.protocol.session_settings import SessionSettings
from gateway.protocol.tools import AUTO
from gateway.voice.history import History

MAX_REMEMBERED_CALLS = 256

CallState = Literal["waiting", "answered", "cancelled"]


class ToolError(ValueError):
    """A tool result or response input the session refuses: ``code`` and ``param`` go to the ``error`` event."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


class CallLedger:
    """``call_id`` → the call's state, for the last :data:`MAX_REMEMBERED_CALLS` calls (the oldest forgotten)."""

    def __init__(self, limit: int = MAX_REMEMBERED_CALLS) -> None:
        self._calls: OrderedDict[str, CallState] = OrderedDict()
        self._limit = limit
        self.forgotten = 0

    def state(self, call_id: str) -> CallState | None:
        return self._calls.get(call_id)

    def mark(self, call_id: str, state: CallState) -> None:
        self._calls[call_id] = state
        self._calls.move_to_end(call_id)
        while len(self._calls) > self._limit:
            self._calls.popitem(last=False)
            self.forgotten += 1

    def answer(self, call_id: str) -> None:
        """Accept a result for ``call_id``; raises :class:`ToolError` for an unknown, cancelled or answered call."""
        state = self._calls.get(call_id)
        if state is None:
            raise ToolError("unknown_call_id", f"no function call with call_id {call_id!r}", "item.call_id")
        if state == "cancelled":
            raise ToolError("function_call_cancelled", f"the response that made call {call_id!r} was cancelled "
                            "before the call was complete; its result is not used", "item.call_id")
        if state == "answered":
            raise ToolError("function_call_already_answered", f"call {call_id!r} already has a result",
                            "item.call_id")
        self.mark(call_id, "answered")


@dataclass
class _Call:
    item_id: str
    call_id: str
    name: str
    output_index: int
    arguments: list[str] = field(default_factory=list)


class ResponseCalls:
    """The function calls of one response, as the agent streams them (see the module doc)."""

    def __init__(self, response_id: str, *, send: Callable[[Event], None], next_index: Callable[[], int],
                 in_conversation: bool, previous_id: Callable[[], str | None]) -> None:
        self._response_id = response_id
        self._send = send
        self._next_index = next_index
        self._in_conversation = in_conversation
        self._previous_id = previous_id
        self._calls: dict[int, _Call] = {}

    def __bool__(self) -> bool:
        return bool(self._calls)

    def feed(self, delta: FunctionCallDelta) -> None:
        call = self._calls.get(delta.index)
        if call is None:
            call = self._calls[delta.index] = _Call(events.new_id("item"), delta.call_id, delta.name,
                                                    self._next_index())
            item = events.function_call_item(call.item_id, call.call_id, call.name, "", status="in_progress")
            self._send(events.output_item_added(self._response_id, item, call.output_index))
            if self._in_conversation:
                self._send(events.item_added(item, self._previous_id()))
        if delta.arguments:
            call.arguments.append(delta.arguments)
            self._send(events.arguments_delta(self._response_id, call.item_id, call.output_index, call.call_id,
                                              delta.arguments))

    def finish(self, completed: bool, history: History | None,
               ledger: CallLedger) -> list[tuple[int, dict[str, Any]]]:
        """End every call (``completed`` or incomplete); completed ones join ``history`` (None: out of band)."""
        outputs = []
        for call in self._calls.values():
            arguments = "".join(call.arguments)
            status = "completed" if completed else "incomplete"
            item = events.function_call_item(call.item_id, call.call_id, call.name, arguments, status=status)
            self._send(events.arguments_done(self._response_id, call.item_id, call.output_index, call.call_id,
                                             call.name, arguments))
            self._send(events.output_item_done(self._response_id, item, call.output_index))
            previous = self._previous_id()
            if completed and history is not None:
                history.append(FunctionCallItem(call.item_id, call.call_id, call.name, arguments))
            if self._in_conversation:
                self._send(events.item_done(item, previous))
            ledger.mark(call.call_id, "waiting" if completed else "cancelled")
            outputs.append((call.output_index, item))
        return outputs


class ToolState:
    """The call's side of the tool loop: results and function-call items the client adds, and agent requests."""

    def __init__(self, history: History, send: Callable[[Event], None]) -> None:
        self.ledger = CallLedger()
        self._history = history
        self._send = send

    def add_output(self, item: ClientFunctionOutput) -> None:
        """A ``function_call_output`` the client created: checked against the ledger, kept in the history."""
        self.ledger.answer(item.call_id)
        self._add(FunctionOutputItem(item.id, item.call_id, item.output),
                  events.function_output_item(item.id, item.call_id, item.output))

    def add_call(self, item: ClientFunctionCall) -> None:
        """A ``function_call`` the client created (restoring a conversation): its result is awaited."""
        self.ledger.mark(item.call_id, "waiting")
        self._add(FunctionCallItem(item.id, item.call_id, item.name, item.arguments),
                  events.function_call_item(item.id, item.call_id, item.name, item.arguments, status="completed"))

    def _add(self, item: HistoryItem, payload: dict[str, Any]) -> None:
        previous = self._history.last_id
        self._history.append(item)
        self._send(events.item_added(payload, previous))
        self._send(events.item_done(payload, previous))

    def request(self, settings: SessionSettings, params: ResponseParams,
                history: list[HistoryItem]) -> AgentRequest:
        """What the agent is asked: the session's settings, overridden by ``response.create``'s."""
        tools = settings.tools if params.tools is None else params.tools
        choice = params.tool_choice or settings.tool_choice
        if choice.function and choice.function not in {tool.name for tool in tools}:
            choice = AUTO
        if params.input is not None:
            history = [self._input_item(item, index) for index, item in enumerate(params.input)]
        instructions = settings.instructions if params.instructions is None else params.instructions
        return AgentRequest(history, instructions, tools, choice)

    def _input_item(self, item: Any, index: int) -> HistoryItem:
        match item:
            case ClientItem():
                return ConversationItem(item.id, item.role, item.text)
            case ClientFunctionCall():
                return FunctionCallItem(item.id, item.call_id, item.name, item.arguments)
            case ClientFunctionOutput():
                return FunctionOutputItem(item.id, item.call_id, item.output)
            case ItemReference():
                found = self._history.find(item.id)
                if found is None:
                    raise ToolError("item_not_found", f"no item with id {item.id!r}", f"response.input[{index}].id")
                return found
        raise ToolError("invalid_value", "unsupported input item", f"response.input[{index}]")
