"""Server events on the ``oai-events`` data channel (OpenAI Realtime GA names).

Each function returns one event as a dict. Extensions to OpenAI's protocol are
named ``gateway.*`` and documented in docs/protocol.md.
"""

from __future__ import annotations

import secrets
from typing import Any

Event = dict[str, Any]


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


#: A call's id (also its session's), as in OpenAI's API; signaling puts it in the call's ``Location``.
CALL_ID_PREFIX = "rtc"


def new_call_id() -> str:
    """A new call's id: ``rtc_`` and 20 hex digits."""
    return new_id(CALL_ID_PREFIX)


def _event(type_: str, **fields: Any) -> Event:
    return {"type": type_, "event_id": new_id("event"), **fields}


def error(code: str, message: str, *, error_type: str = "invalid_request_error", event_id: str | None = None,
          param: str | None = None) -> Event:
    return _event(
        "error",
        error={"type": error_type, "code": code, "message": message, "param": param, "event_id": event_id},
    )


def session_created(session: dict[str, Any]) -> Event:
    return _event("session.created", session=session)


def session_updated(session: dict[str, Any]) -> Event:
    return _event("session.updated", session=session)


def speech_started(item_id: str, audio_start_ms: int) -> Event:
    return _event("input_audio_buffer.speech_started", audio_start_ms=audio_start_ms, item_id=item_id)


def speech_stopped(item_id: str, audio_end_ms: int) -> Event:
    return _event("input_audio_buffer.speech_stopped", audio_end_ms=audio_end_ms, item_id=item_id)


def input_committed(item_id: str, previous_item_id: str | None) -> Event:
    return _event("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous_item_id)


def input_cleared() -> Event:
    return _event("input_audio_buffer.cleared")


def dtmf_event_received(digit: str, received_at: int) -> Event:
    """A keypad press on a phone call (GA: ``event`` is the key, ``received_at`` Unix seconds)."""
    return _event("input_audio_buffer.dtmf_event_received", event=digit, received_at=received_at)


def message_item(item_id: str, role: str, text: str | None, *, status: str, audio: bool) -> dict[str, Any]:
    if role == "user":
        content = [{"type": "input_audio", "transcript": text}] if audio else [{"type": "input_text", "text": text}]
    else:
        content = [{"type": "output_audio", "transcript": text}] if audio else [{"type": "output_text", "text": text}]
    return {"id": item_id, "type": "message", "object": "realtime.item", "status": status, "role": role,
            "content": content}


def item_added(item: dict[str, Any], previous_item_id: str | None) -> Event:
    return _event("conversation.item.added", previous_item_id=previous_item_id, item=item)


def item_done(item: dict[str, Any], previous_item_id: str | None) -> Event:
    return _event("conversation.item.done", previous_item_id=previous_item_id, item=item)


def item_retrieved(item: dict[str, Any]) -> Event:
    return _event("conversation.item.retrieved", item=item)


def item_truncated(item_id: str, audio_end_ms: int) -> Event:
    return _event("conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=audio_end_ms)


def transcription_delta(item_id: str, delta: str) -> Event:
    return _event("conversation.item.input_audio_transcription.delta", item_id=item_id, content_index=0, delta=delta)


def transcription_completed(item_id: str, transcript: str) -> Event:
    return _event("conversation.item.input_audio_transcription.completed", item_id=item_id, content_index=0,
                  transcript=transcript)


def transcription_failed(item_id: str, message: str) -> Event:
    return _event("conversation.item.input_audio_transcription.failed", item_id=item_id, content_index=0,
                  error={"type": "server_error", "code": "asr_failed", "message": message})


def conversation_id(call_id: str) -> str:
    """The id of a call's one conversation (``conv_`` and the call id's hex digits)."""
    return "conv_" + call_id.rpartition("_")[2]


def response_object(response_id: str, status: str, output: list[dict[str, Any]],
                    status_details: dict[str, Any] | None = None, *, conversation: str | None = None,
                    modalities: tuple[str, ...] = ("audio",), metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """``conversation``: the conversation's id, None for an out-of-band response (``conversation: "none"``)."""
    return {"id": response_id, "object": "realtime.response", "status": status, "status_details": status_details,
            "output": output, "output_modalities": list(modalities), "conversation_id": conversation,
            "metadata": metadata}


def response_created(response_id: str, **response: Any) -> Event:
    return _event("response.created", response=response_object(response_id, "in_progress", [], **response))


def response_done(response_id: str, status: str, output: list[dict[str, Any]], reason: str | None = None,
                  **response: Any) -> Event:
    details = {"type": status, "reason": reason} if reason else None
    return _event("response.done", response=response_object(response_id, status, output, details, **response))


def output_item_added(response_id: str, item: dict[str, Any], output_index: int = 0) -> Event:
    return _event("response.output_item.added", response_id=response_id, output_index=output_index, item=item)


def output_item_done(response_id: str, item: dict[str, Any], output_index: int = 0) -> Event:
    return _event("response.output_item.done", response_id=response_id, output_index=output_index, item=item)


def content_part_added(response_id: str, item_id: str, output_index: int = 0, *, audio: bool = True) -> Event:
    part = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
    return _event("response.content_part.added", response_id=response_id, item_id=item_id, output_index=output_index,
                  content_index=0, part=part)


def content_part_done(response_id: str, item_id: str, transcript: str, output_index: int = 0, *,
                      audio: bool = True) -> Event:
    part = {"type": "audio", "transcript": transcript} if audio else {"type": "text", "text": transcript}
    return _event("response.content_part.done", response_id=response_id, item_id=item_id, output_index=output_index,
                  content_index=0, part=part)


def text_delta(response_id: str, item_id: str, delta: str, output_index: int = 0) -> Event:
    """``response.output_text.delta``: text of a reply whose output modality is text."""
    return _event("response.output_text.delta", response_id=response_id, item_id=item_id, output_index=output_index,
                  content_index=0, delta=delta)


def text_done(response_id: str, item_id: str, text: str, output_index: int = 0) -> Event:
    return _event("response.output_text.done", response_id=response_id, item_id=item_id, output_index=output_index,
                  content_index=0, text=text)


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, *, status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "object": "realtime.item", "status": status, "call_id": call_id,
            "name": name, "arguments": arguments}


def function_output_item(item_id: str, call_id: str, output: str) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call_output", "object": "realtime.item", "status": "completed",
            "call_id": call_id, "output": output}


def arguments_delta(response_id: str, item_id: str, output_index: int, call_id: str, delta: str) -> Event:
    return _event("response.function_call_arguments.delta", response_id=response_id, item_id=item_id,
                  output_index=output_index, call_id=call_id, delta=delta)


def arguments_done(response_id: str, item_id: str, output_index: int, call_id: str, name: str,
                   arguments: str) -> Event:
    return _event("response.function_call_arguments.done", response_id=response_id, item_id=item_id,
                  output_index=output_index, call_id=call_id, name=name, arguments=arguments)


def item_deleted(item_id: str) -> Event:
    return _event("conversation.item.deleted", item_id=item_id)


def audio_transcript_delta(response_id: str, item_id: str, delta: str, output_index: int = 0) -> Event:
    return _event("response.output_audio_transcript.delta", response_id=response_id, item_id=item_id,
                  output_index=output_index, content_index=0, delta=delta)


def audio_transcript_done(response_id: str, item_id: str, transcript: str, output_index: int = 0) -> Event:
    return _event("response.output_audio_transcript.done", response_id=response_id, item_id=item_id,
                  output_index=output_index, content_index=0, transcript=transcript)


def output_audio_started(response_id: str) -> Event:
    return _event("output_audio_buffer.started", response_id=response_id)


def output_audio_stopped(response_id: str) -> Event:
    return _event("output_audio_buffer.stopped", response_id=response_id)


def output_audio_cleared(response_id: str) -> Event:
    return _event("output_audio_buffer.cleared", response_id=response_id)


def turn_metrics(item_id: str, response_id: str | None, stages: dict[str, float | None], **extra: Any) -> Event:
    """Extension: the per-turn latency breakdown, milliseconds after the end of speech."""
    return _event("gateway.turn.metrics", item_id=item_id, response_id=response_id, stages_ms=stages, **extra)


def response_playback(response_id: str, played_ms: int, underrun_ms: int) -> Event:
    """Extension: a reply's audio is over (played to the end or cut); ``underrun_ms`` of silence were
    sent in its middle because its audio ran out before it was finished (TTS or the agent fell behind)."""
    return _event("gateway.response.playback", response_id=response_id, played_ms=played_ms,
                  underrun_ms=underrun_ms)


_ENDED_MESSAGES = {
    "shutdown": "the gateway is shutting down",
    "drain_timeout": "the gateway is shutting down and the call outlasted its drain period",
    "error": "the call failed on the gateway",
    "idle_timeout": "nothing was said for too long",
    "max_duration": "the call reached its maximum duration",
    "audio_too_fast": "the caller's audio kept arriving faster than real time",
    "too_many_data_channels": "the caller opened too many data channels",
}


def session_ended(reason: str) -> Event:
    """Extension: the gateway is about to hang up (``reason``: shutdown, drain_timeout, error)."""
    return _event("gateway.session.ended", reason=reason, message=_ENDED_MESSAGES.get(reason, "the session ended"))


def session_expiring(reason: str, seconds_left: float) -> Event:
    """Extension: the gateway will end the session in ``seconds_left`` (``reason``: idle_timeout, max_duration)."""
    return _event("gateway.session.expiring", reason=reason, seconds_left=round(max(0.0, seconds_left), 1),
                  message=_ENDED_MESSAGES.get(reason, "the session is about to end"))


def turn_judged(item_id: str, probability: float, verdict: str, compute_ms: float, silence_ms: int) -> Event:
    """``gateway.turn.judged`` (semantic_vad): the verdict on a pause (complete | unsure | unfinished) and the
    silence that now ends it."""
    return _event("gateway.turn.judged", item_id=item_id, probability=round(probability, 3), verdict=verdict,
                  complete=verdict == "complete", compute_ms=round(compute_ms, 1), silence_ms=silence_ms)


def response_paused(response_id: str, played_ms: int) -> Event:
    """``gateway.response.paused``: speech over the reply paused it (it may resume: a false interruption)."""
    return _event("gateway.response.paused", response_id=response_id, played_ms=played_ms)


def response_resumed(response_id: str, played_ms: int, paused_ms: int, transcript: str) -> Event:
    """``gateway.response.resumed``: the speech was no interruption (a cough, a backchannel); the reply goes on."""
    return _event("gateway.response.resumed", response_id=response_id, played_ms=played_ms, paused_ms=paused_ms,
                  transcript=transcript)
