"""One call's conversation: turn-taking, replies, barge-in and truncation.

Everything that decides *when* the gateway listens, answers or stops talking
lives here. The caller's audio comes in through :meth:`Conversation.feed`; VAD
probabilities drive a :class:`TurnDetector`; the turn's final transcript is
decoded speculatively as soon as the caller falls silent, and with a
speculative agent the reply is synthesised (held back) inside the silence
window, so that it starts the moment the turn is confirmed.

* Barge-in: speech over a reply pauses it within a frame (:mod:`.interruptions`); words beyond a
  backchannel interrupt it (:meth:`Reply.interrupt`: agent and synthesis cancelled, the item
  truncated to what the output reports was played), a cough or an "mm-hmm" resumes it.
* A pause is not a turn: speech that resumes before the reply is committed cancels the pending
  reply and the same utterance goes on. ``semantic_vad``: the end-of-turn model judges each
  pause and sets the silence that ends it (:mod:`.endpointing`).

The tool loop (function calls and their results) is gateway/voice/tools.py's.

Every task the conversation starts (speculation, a turn's end, partial decodes,
replies) belongs to one :class:`~gateway.aio.TaskSet`, cancelled and awaited by
:meth:`Conversation.close`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from engines import EngineError, Transcript
from engines.base import SAMPLE_RATE
from gateway.agents import Agent, AgentRequest, ConversationItem, HistoryItem, TextAgent
from gateway.aio import TaskSet
from gateway.ops.observers import NULL_OBSERVER, CallObserver
from gateway.protocol import server_events as events
from gateway.protocol.client_events import ClientItem
from gateway.protocol.responses import DEFAULT_PARAMS, ClientFunctionCall, ClientFunctionOutput, ResponseParams
from gateway.protocol.server_events import Event
from gateway.protocol.session_settings import SessionSettings
from gateway.voice.audio_buffer import RollingAudio
from gateway.voice.echo import EchoSuppression
from gateway.voice.endpointing import Endpointer
from gateway.voice.engines import Engines
from gateway.voice.history import History
from gateway.voice.interruptions import InterruptionJudge
from gateway.voice.listening import Listening
from gateway.voice.options import VoiceOptions
from gateway.voice.output import AudioOutput
from gateway.voice.playback import ResponsePlayer, ResponseSpec, TurnTiming
from gateway.voice.reply import Reply, ReplyContext, ReplyOptions
from gateway.voice.tools import ToolError, ToolState
from gateway.voice.turns import TurnDetector
from gateway.voice.utterance import Prepared, Utterance, committed_events

logger = logging.getLogger(__name__)


class Conversation(Listening):
    def __init__(
        self,
        *,
        call_id: str,
        engines: Engines,
        track: AudioOutput,
        send: Callable[[Event], None],
        settings: SessionSettings,
        options: VoiceOptions,
        observer: CallObserver = NULL_OBSERVER,
        tasks: TaskSet | None = None,
    ) -> None:
        """``track`` is where replies are heard (any :class:`AudioOutput`); ``tasks``, the session's task set
        (one of its own if None), which :meth:`close` cancels and awaits."""
        self.call_id = call_id
        self._engines = engines
        self._tasks = tasks if tasks is not None else TaskSet(f"call {call_id}")
        self._send = send
        self._observer = observer
        self.settings = settings
        self._vad = engines.vad.stream()
        self._track = track
        self._detector = TurnDetector()
        self._endpointer = Endpointer(engines.end_of_turn, tasks=self._tasks, call_id=call_id, observer=observer,
                                      on_verdict=self._verdict)
        self._judge = InterruptionJudge(asr=engines.asr, output=track, send=send, tasks=self._tasks, call_id=call_id,
                                        observer=observer, on_real=self._interruption_confirmed,
                                        on_false=self._false_interruption)
        self._max_utterance = int(options.max_utterance_seconds * SAMPLE_RATE)
        self._audio = RollingAudio(self._max_utterance + 4 * SAMPLE_RATE)
        self._window = np.zeros(0, np.float32)
        self._options = options
        self._partial_interval = options.partial_interval_ms * SAMPLE_RATE // 1000
        self._utterance: Utterance | None = None
        self._history = History(max_items=options.max_history_items, max_chars=options.max_history_chars,
                                call_id=call_id, on_drop=lambda count: observer.history_items_dropped(call_id, count))
        self._tools = ToolState(self._history, send)
        self._responses = ResponsePlayer(call_id=call_id, output=track, send=send, observer=observer,
                                         history=self._history, ledger=self._tools.ledger)
        self._reply_context = ReplyContext(synthesizer=engines.tts, output=track, listener=self._responses,
                                           tasks=self._tasks)
        self._pending_client_text: ConversationItem | None = None
        self._feed_at = self._stop_s = 0.0  # speech onset over a reply → its audio paused or cleared
        self._closed = False
        self.turns = 0
        self.barge_ins = 0
        self.speech_at = time.monotonic()  # when the caller last started speaking (idle limit)
        self._echo: EchoSuppression | None = None  # made when a session first asks for echo cancellation
        self.update_settings(settings)

    # ------------------------------------------------------------------ turns

    async def _prepare(self, utterance: Utterance, end_sample: int, *, speculative: bool) -> Prepared:
        samples = self._audio.slice(utterance.start_sample, end_sample)
        transcript = await self._engines.asr.transcribe(samples)
        done_at = time.monotonic()
        self._observer.asr_finished(transcript.audio_seconds, transcript.compute_seconds)
        reply = None
        text = transcript.text.strip()
        if text and self._responds_to_turns:
            agent = self._engines.agents.create(self.settings.agent, call_id=self.call_id)
            if agent.speculative:
                pending = ConversationItem(utterance.item_id, "user", text)
                reply = self._new_reply(agent, self._request(self._history.snapshot(pending)))
                reply.start()
        return Prepared(transcript, done_at, reply)

    async def _finish_turn(self, utterance: Utterance, confirmed_at: float) -> None:
        speculation = utterance.take_speculation()
        speculative = speculation is not None
        try:
            prepared = await (speculation or self._prepare(utterance, self._audio.end, speculative=False))
        except EngineError as exc:
            self._utterance = None
            self._send(events.transcription_failed(utterance.item_id, str(exc)))
            self._send(events.error("asr_failed", str(exc), error_type="server_error"))
            logger.warning("call %s: transcription failed: %s", self.call_id, exc)
            return
        reply = prepared.reply
        # A prepared reply is committed with its first audio: until then, speech that resumes
        # continues the same utterance (a pause is not a turn). Speech over a paused reply is a
        # turn only once the interruption judge says it was a real interruption.
        try:
            if reply is not None:
                await reply.first_audio.wait()
            real = await self._judge.decision()
        except asyncio.CancelledError:
            if reply is not None:
                await reply.aclose()
            raise
        if not real:  # a cough or a backchannel: the reply it paused has resumed
            if reply is not None:
                await reply.aclose()
            return
        # Commit point: from here on the turn is final and nothing awaits.
        self._utterance = None
        text = prepared.transcript.text.strip()
        if not text:
            logger.info("call %s: utterance %s had no words; discarded", self.call_id, utterance.item_id)
            return
        self._commit(utterance.item_id, text, prepared.transcript)
        timing = TurnTiming(
            speech_end=utterance.speech_end_at,
            turn_confirmed=confirmed_at,
            asr_final=prepared.asr_done_at,
            speculative=speculative,
            asr_compute_s=prepared.transcript.compute_seconds,
            audio_s=prepared.transcript.audio_seconds,
            item_id=utterance.item_id,
            transcript=text,
            asr_degradation_level=prepared.transcript.degradation_level,
        )
        if reply is None and self._responds_to_turns:
            # An agent that may not run speculatively (an external service) starts now; the
            # turn is already committed, so its transcript events do not wait for its answer.
            agent = self._engines.agents.create(self.settings.agent, call_id=self.call_id)
            reply = self._new_reply(agent, self._request(self._history.snapshot()))
            reply.start()
        if reply is None:
            self._responses.report_turn(timing, None, None)
            return
        self._responses.activate(reply, timing)

    @property
    def _responds_to_turns(self) -> bool:
        """Whether a committed turn starts a reply: server VAD with create_response, in a realtime session."""
        turn = self.settings.turn
        return self.settings.responds and turn.enabled and turn.create_response

    def _commit(self, item_id: str, text: str, transcript: Transcript) -> None:
        self.turns += 1
        for event in committed_events(item_id, text, self._history.last_id):
            self._send(event)
        self._history.append(ConversationItem(item_id, "user", text))
        logger.info("call %s: turn %s committed (%.1f s of audio, asr %.0f ms)", self.call_id, item_id,
                    transcript.audio_seconds, transcript.compute_seconds * 1000)

    # ---------------------------------------------------------------- replies

    def _request(self, history: list[HistoryItem], params: ResponseParams = DEFAULT_PARAMS) -> AgentRequest:
        return self._tools.request(self.settings, params, history)

    def _new_reply(self, agent: Agent, request: AgentRequest, item_id: str | None = None,
                   modalities: tuple[str, ...] | None = None) -> Reply:
        options = ReplyOptions(voice=self.settings.voice, ahead_seconds=self._options.tts_ahead_seconds,
                               incremental=self._options.incremental_tts,
                               audio="audio" in (modalities or self.settings.output_modalities),
                               may_call_tools=agent.can_call_tools and request.offers_tools,
                               tools=frozenset(tool.name for tool in request.tools))
        return Reply(response_id=events.new_id("resp"), item_id=item_id or events.new_id("item"),
                     pieces=agent.respond(request), options=options, context=self._reply_context)

    # ---------------------------------------------------------- client events

    def update_settings(self, settings: SessionSettings) -> None:
        self.settings = settings
        turn = settings.turn
        semantic = turn.type == "semantic_vad" and self._endpointer.configure(turn.eagerness)
        silence_ms = self._endpointer.eagerness.cap_ms if semantic else turn.silence_duration_ms  # cap until judged
        self._detector.configure(threshold=turn.threshold, silence_duration_ms=silence_ms)
        self._judge.timeout_ms = turn.false_interruption_timeout_ms
        if turn.echo_cancellation and self._echo is None:
            self._echo = EchoSuppression(self._engines.echo.stream())
            self._track.add_tap(self._echo.reference.heard)

    def clear_input(self) -> None:
        utterance, self._utterance = self._utterance, None
        if utterance is not None:
            utterance.discard()
        self._detector.reset()
        self._endpointer.reset()
        self._judge.discard()

    def commit_input(self) -> bool:
        """Force the end of the current utterance; False when there is none."""
        if self._utterance is None or self._utterance.finishing:
            return False
        if self._audio.end <= self._utterance.start_sample:
            return False
        self._detector.reset()
        self._end_turn(self._audio.end * 1000 // SAMPLE_RATE)
        return True

    def cancel_response(self, reason: str) -> bool:
        self._judge.discard()
        return self._responses.interrupt(reason)

    @property
    def active_response_id(self) -> str | None:
        return self._responses.active_response_id

    def add_item(self, client_item: ClientItem | ConversationItem | ClientFunctionCall | ClientFunctionOutput) -> None:
        """``conversation.item.create``; a function result for an unknown or cancelled call raises ToolError."""
        if isinstance(client_item, ClientFunctionOutput):
            return self._tools.add_output(client_item)
        if isinstance(client_item, ClientFunctionCall):
            return self._tools.add_call(client_item)
        item = ConversationItem(client_item.id, client_item.role, client_item.text)
        previous = self._history.last_id
        self._history.append(item)
        if item.role == "assistant":
            self._pending_client_text = item
        payload = events.message_item(item.id, item.role, item.text, status="completed", audio=False)
        self._send(events.item_added(payload, previous))
        self._send(events.item_done(payload, previous))

    def delete_item(self, item_id: str) -> None:
        """``conversation.item.delete``: raises ToolError for an unknown item or the reply being spoken."""
        if self._responses.active_item_id == item_id:
            raise ToolError("invalid_value", "the item is being spoken; cancel the response first", "item_id")
        if not self._history.delete(item_id):
            raise ToolError("item_not_found", f"no item with id {item_id!r}", "item_id")
        if self._pending_client_text is not None and self._pending_client_text.id == item_id:
            self._pending_client_text = None
        self._responses.forget(item_id)
        self._send(events.item_deleted(item_id))

    def truncate_item(self, item_id: str, audio_end_ms: int) -> str | None:
        """``conversation.item.truncate``: the client played the item's audio only to ``audio_end_ms``.

        The reply being spoken is stopped there (None); a finished spoken reply's text becomes what was
        heard (returned). Raises ToolError for an unknown item or one past its end."""
        return self._responses.truncate(item_id, audio_end_ms)

    def create_response(self, agent: Agent | None = None, params: ResponseParams = DEFAULT_PARAMS) -> bool:
        """Start a reply now (from ``agent`` if given, e.g. client-streamed text); False if one is already active.

        Raises ToolError for ``input`` that names an unknown item."""
        if self._responses.active_response_id is not None:
            return False
        request = self._request(self._history.snapshot(), params)
        item_id = None
        if agent is not None:
            agent.call_id = self.call_id
        elif self._pending_client_text is not None and params.input is None:
            pending, self._pending_client_text = self._pending_client_text, None
            agent, item_id = TextAgent(pending.text), pending.id
        else:
            agent = self._engines.agents.create(self.settings.agent, call_id=self.call_id)
        reply = self._new_reply(agent, request, item_id, params.output_modalities)
        reply.start()
        self._responses.activate(reply, None, ResponseSpec(params.out_of_band, params.metadata))
        return True

    # ------------------------------------------------------------------ close

    async def close(self) -> None:
        """Hang-up: drop the utterance and the reply, then cancel and await every task (safe twice).

        The task set is closed even when the session passed it in: once this returns, nothing
        the conversation started is still running."""
        if self._closed:
            return
        self._closed = True
        self.clear_input()
        await self._responses.close()
        await self._tasks.close()
