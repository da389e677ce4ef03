"""Reply: one idempotent interrupt(), audio held until release, the agent's stream always closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from gateway.agents import AgentPiece, FunctionCallDelta
from gateway.aio import TaskSet
from gateway.voice.output import AudioOutput, PlayoutResult
from gateway.voice.reply import Reply, ReplyContext, ReplyOptions
from media import OutboundAudioTrack
from media.pcm import Int16Array
from tests.support.fakes import ToneTts


class CountingOutput:
    """The real track, counting what the reply asks of it."""

    def __init__(self) -> None:
        self.track = OutboundAudioTrack()
        self.clears = 0
        self.pushed = 0  # samples

    @property
    def buffered_seconds(self) -> float:
        return self.track.buffered_seconds

    def set_listener(self, listener: object) -> None:
        raise AssertionError("a reply never sets the output's listener")

    def push(self, tag: str, samples: Int16Array) -> None:
        self.pushed += len(samples)
        self.track.push(tag, samples)

    def finish(self, tag: str) -> None:
        self.track.finish(tag)

    def clear(self) -> list[PlayoutResult]:
        self.clears += 1
        return self.track.clear()

    async def wait_for_space(self, ahead_seconds: float) -> None:
        await self.track.wait_for_space(ahead_seconds)


class Listener:
    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.failures: list[str] = []
        self.synthesized = 0
        self.pieces: list[str] = []  # messages started, text pieces and function calls, in order

    def reply_clause(self, reply: Reply, text: str) -> None:
        self.clauses.append(text)

    def reply_failed(self, reply: Reply, code: str, message: str) -> None:
        self.failures.append(code)

    def clause_synthesized(self, audio_seconds: float, wall_seconds: float) -> None:
        self.synthesized += 1

    def reply_message_started(self, reply: Reply) -> None:
        self.pieces.append("<message>")

    def reply_text(self, reply: Reply, text: str) -> None:
        self.pieces.append(f"text:{text}")

    def reply_function_call(self, reply: Reply, delta: FunctionCallDelta) -> None:
        self.pieces.append(f"call:{delta.name}:{delta.arguments}")


class Agent:
    """Says one clause, then waits (a slow agent) until closed; remembers being closed."""

    def __init__(self) -> None:
        self.closed = False

    async def pieces(self) -> AsyncIterator[str]:
        try:
            yield "Hello there, "
            await asyncio.Event().wait()
            yield "never"
        finally:
            self.closed = True


class Pieces:
    """An agent stream that is not a generator: only an explicit aclose() closes it."""

    def __init__(self) -> None:
        self.closed = False

    def __aiter__(self) -> Pieces:
        return self

    async def __anext__(self) -> str:
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True


def reply(pieces: AsyncIterator[str], output: CountingOutput, tasks: TaskSet) -> tuple[Reply, Listener]:
    listener = Listener()
    typed: AudioOutput = output  # the fake satisfies the voice layer's protocol
    context = ReplyContext(synthesizer=ToneTts(), output=typed, listener=listener, tasks=tasks)
    return Reply(response_id="resp_1", item_id="item_1", pieces=pieces,
                 options=ReplyOptions(voice="tone", ahead_seconds=60), context=context), listener


async def test_interrupt_is_idempotent_clears_the_output_once_and_closes_the_agent() -> None:
    agent, output, tasks = Agent(), CountingOutput(), TaskSet("test")
    speaking, listener = reply(agent.pieces(), output, tasks)
    speaking.start()
    speaking.release()
    await asyncio.wait_for(speaking.first_audio.wait(), 5)
    assert output.pushed and listener.clauses == ["Hello there,"]
    for _ in range(3):  # barge-in, response.cancel and a hang-up may all reach it
        speaking.interrupt()
    assert output.clears == 1 and speaking.interrupted
    await speaking.aclose()
    assert agent.closed and output.clears == 1
    assert len(tasks) == 0  # the reply's task is over
    await tasks.close()


async def test_a_held_reply_interrupted_leaves_the_output_alone() -> None:
    """A dropped speculation's audio never reached the output; another reply's audio may be playing there."""
    agent, output, tasks = Agent(), CountingOutput(), TaskSet("test")
    output.track.push("resp_0", np.full(4800, 100, np.int16))  # the reply being spoken
    held, listener = reply(agent.pieces(), output, tasks)
    held.start()
    await asyncio.wait_for(held.first_audio.wait(), 5)
    assert output.track.buffered_seconds == 0.1 and listener.clauses == []  # its audio is held back
    held.interrupt()
    await held.aclose()
    assert output.clears == 0 and output.track.buffered_seconds > 0 and agent.closed
    await tasks.close()


async def test_a_reply_interrupted_before_its_task_ran_still_closes_the_agent_stream() -> None:
    pieces, output, tasks = Pieces(), CountingOutput(), TaskSet("test")
    stopped = reply(pieces, output, tasks)[0]
    stopped.start()
    await stopped.aclose()  # in the same tick: the task never ran, so it could not close the stream
    assert pieces.closed and output.pushed == 0 and len(tasks) == 0
    await tasks.close()


def test_reply_options_are_validated() -> None:
    with pytest.raises(ValueError):
        ReplyOptions(voice="tone", ahead_seconds=0)



async def _preamble_then_call() -> AsyncIterator[AgentPiece]:
    yield "One moment. "
    yield FunctionCallDelta(0, "call_1", "get_weather", '{"city":')
    yield FunctionCallDelta(0, "call_1", "get_weather", ' "Paris"}')


async def test_a_held_reply_keeps_its_function_call_for_release_in_order() -> None:
    """Function-call pieces wait for release() like audio does, after the words that came before them."""
    output, tasks = CountingOutput(), TaskSet("test")
    held, listener = reply(_preamble_then_call(), output, tasks)
    held.start()
    over = asyncio.Event()
    held.add_done_callback(lambda _reply: over.set())
    await asyncio.wait_for(over.wait(), 5)  # the agent's stream and the synthesis are over
    assert listener.pieces == [] and listener.clauses == [] and output.pushed == 0
    held.release()
    assert listener.pieces == ["<message>", 'call:get_weather:{"city":', 'call:get_weather: "Paris"}']
    assert listener.clauses == ["One moment."] and output.pushed > 0
    await held.aclose()
    await tasks.close()


async def test_a_text_modality_reply_sends_its_text_and_no_audio() -> None:
    output, tasks = CountingOutput(), TaskSet("test")
    listener = Listener()
    context = ReplyContext(synthesizer=ToneTts(), output=output, listener=listener, tasks=tasks)
    texting = Reply(response_id="resp_t", item_id="item_t", pieces=_preamble_then_call(), context=context,
                    options=ReplyOptions(voice="tone", ahead_seconds=60, audio=False))
    texting.start()
    texting.release()
    await asyncio.wait_for(texting.first_audio.wait(), 5)
    await texting.aclose()
    assert listener.pieces[:2] == ["<message>", "text:One moment. "] and listener.clauses == []
    assert output.pushed == 0 and texting.text == "One moment. " and texting.heard_text(0) == "One moment. "
    await tasks.close()
