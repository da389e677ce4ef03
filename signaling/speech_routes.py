"""OpenAI's speech endpoints: ``POST /v1/audio/transcriptions``, ``POST /v1/audio/speech``, ``GET /v1/models``.

The official ``openai`` SDKs work against them with only ``base_url`` changed (docs/protocol.md,
"Speech services", lists every field). Requests need a server API key when any is configured
(``auth.api_keys``; an ``ek_`` client secret places one call, it is not a key for these), and each
client may run ``speech.max_jobs_per_client`` of them at once (429 ``too_many_jobs``); the
gateway-wide bound and the engines' admission are the service's (503 ``capacity``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from typing import Any

from aiohttp import hdrs, web

from gateway.config import GatewayConfig
from signaling.auth import Authenticator, bearer
from signaling.body import read_body
from signaling.errors import ApiError, error_response
from signaling.limits import ClientAddress, client_key
from signaling.speech_body import read_upload, srt, vtt
from signaling.speech_service import SPEECH, SpeechRequest, SpeechService, TranscriptionRequest, TranscriptSegment

logger = logging.getLogger(__name__)

TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"
SPEECH_PATH = "/v1/audio/speech"
MODELS_PATH = "/v1/models"

TRANSCRIPT_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


class SpeechGuard:
    """Auth and the per-client bound on jobs at once, for the speech routes."""

    def __init__(self, config: GatewayConfig) -> None:
        self._auth = Authenticator(config.auth)
        self._addresses = ClientAddress(config.limits.trusted_proxies)
        self._per_client = config.speech.max_jobs_per_client
        self._running: dict[str, int] = {}

    def refusal(self, request: web.Request) -> web.Response | None:
        """The 401 answer (with ``WWW-Authenticate``, as the call routes') when a server key is required and
        the request has none or a wrong one; None when it may go on."""
        try:
            self._auth.require_server_key(bearer(request))
        except ApiError as exc:
            logger.info("refused %s %s from %s: %s", request.method, request.path, request.remote, exc.code)
            response = error_response(401, exc.error_type, exc.code, exc.message)
            response.headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="voice-gateway"'
            return response
        return None

    @contextmanager
    def job(self, request: web.Request) -> Iterator[None]:
        client = client_key(self._addresses.of(request))
        running = self._running.get(client, 0)
        if self._per_client and running >= self._per_client:
            raise ApiError(429, "too_many_jobs", f"at most {self._per_client} speech requests at once from one address",
                           retry_after=1)
        self._running[client] = running + 1
        try:
            yield
        finally:
            left = self._running[client] - 1
            if left:
                self._running[client] = left
            else:
                del self._running[client]


GUARD = web.AppKey("speech_guard", SpeechGuard)
CONFIG = web.AppKey("speech_config", GatewayConfig)


def _form_float(value: str | None, name: str, default: float, low: float, high: float) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ApiError(400, "invalid_value", f"{name} must be a number") from None
    if not low <= number <= high:
        raise ApiError(400, "invalid_value", f"{name} must be {low:g}..{high:g}")
    return number


async def create_transcription(request: web.Request) -> web.StreamResponse:
    guard, limits = request.app[GUARD], request.app[CONFIG].speech
    if (refusal := guard.refusal(request)) is not None:
        return refusal
    with guard.job(request):
        upload = await read_upload(request, max_file_bytes=limits.max_upload_bytes,
                                   within=limits.upload_timeout_seconds)
        if not upload.file:
            raise ApiError(400, "missing_file", "the request has no 'file' part (or it is empty)")
        response_format = upload.value("response_format") or "json"
        if response_format not in TRANSCRIPT_FORMATS:
            raise ApiError(400, "invalid_response_format", f"response_format must be one of {TRANSCRIPT_FORMATS}")
        granularities = upload.fields.get("timestamp_granularities[]", []) + upload.fields.get(
            "timestamp_granularities", [])
        if "word" in granularities:
            raise ApiError(400, "unsupported_timestamp_granularity", "word timestamps are not supported; use 'segment'")
        stream = (upload.value("stream") or "false").lower() == "true"
        transcription = TranscriptionRequest(
            audio=upload.file, model=upload.value("model") or "", language=upload.value("language") or None,
            prompt=upload.value("prompt"), temperature=_form_float(upload.value("temperature"), "temperature",
                                                                   0.0, 0.0, 1.0))
        start, segments = await request.app[SPEECH].transcribe(transcription)
        async with aclosing(segments):
            if stream:
                return await _stream_transcript(request, segments, start.duration)
            done = [segment async for segment in segments]
        return _transcript_response(response_format, done, start.duration, start.language)


def _text_of(segments: list[TranscriptSegment]) -> str:
    return " ".join(segment.text for segment in segments if segment.text).strip()


def _transcript_response(fmt: str, segments: list[TranscriptSegment], duration: float,
                         language: str) -> web.Response:
    text = _text_of(segments)
    usage = {"type": "duration", "seconds": round(duration, 3)}
    if fmt == "text":
        return web.Response(text=text + "\n", content_type="text/plain")
    if fmt == "srt":
        return web.Response(text=srt(segments), content_type="application/x-subrip")
    if fmt == "vtt":
        return web.Response(text=vtt(segments), content_type="text/vtt")
    if fmt == "verbose_json":
        return web.json_response({
            "task": "transcribe", "language": language, "duration": round(duration, 3), "text": text,
            "segments": [_segment_json(i, s) for i, s in enumerate(segments)], "usage": usage})
    return web.json_response({"text": text, "usage": usage})


def _segment_json(index: int, segment: TranscriptSegment) -> dict[str, Any]:
    # avg_logprob, compression_ratio and no_speech_prob are not measured (greedy decoding): 0.0, documented.
    return {"id": index, "seek": int(segment.start * 100), "start": round(segment.start, 3),
            "end": round(segment.end, 3), "text": segment.text, "tokens": [], "temperature": 0.0,
            "avg_logprob": 0.0, "compression_ratio": 0.0, "no_speech_prob": 0.0}


async def _stream_transcript(request: web.Request, segments: AsyncIterator[TranscriptSegment],
                             duration: float) -> web.StreamResponse:
    """Server-sent events: one ``transcript.text.delta`` per decoded segment, then ``transcript.text.done``."""
    response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: "text/event-stream", hdrs.CACHE_CONTROL: "no-cache"})
    await response.prepare(request)
    texts: list[str] = []
    try:
        async for segment in segments:
            if segment.text:
                delta = segment.text if not texts else " " + segment.text
                texts.append(segment.text)
                await _sse(response, {"type": "transcript.text.delta", "delta": delta})
        await _sse(response, {"type": "transcript.text.done", "text": " ".join(texts)})
    except ApiError as exc:
        await _sse(response, {"error": {"type": exc.error_type, "code": exc.code, "message": exc.message}})
    except Exception as exc:  # an engine failure after the headers went: said in the stream (the SDK raises it)
        code, message = getattr(exc, "code", "transcription_failed"), getattr(exc, "message", str(exc))
        logger.warning("transcription stream failed: %s", message)
        await _sse(response, {"error": {"type": "server_error", "code": code, "message": message}})
    await response.write_eof()
    return response


async def _sse(response: web.StreamResponse, data: dict[str, Any]) -> None:
    await response.write(f"data: {json.dumps(data)}\n\n".encode())


async def create_speech(request: web.Request) -> web.StreamResponse:
    guard, limits = request.app[GUARD], request.app[CONFIG].speech
    if (refusal := guard.refusal(request)) is not None:
        return refusal
    with guard.job(request):
        body = _json_object(await read_body(request, limits.max_input_chars * 4 + 4096, code="body_too_large"))
        speech = _speech_request(body, limits.max_input_chars)
        result = await request.app[SPEECH].synthesize(speech)
        async with aclosing(result.chunks) as chunks:
            first = await anext(chunks, b"")  # errors before the first audio are still a JSON answer
            response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: result.mime_type})
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(first)
            try:
                async for chunk in chunks:
                    await response.write(chunk)
            except ConnectionResetError:  # the client went away: the synthesis stops with the stream
                logger.info("speech stream: the client disconnected")
                return response
            except Exception:  # the headers are sent: the body is cut short, which the client sees
                logger.exception("speech stream failed after its first audio")
                raise
        await response.write_eof()
        return response


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return body


def _speech_request(body: dict[str, Any], max_chars: int) -> SpeechRequest:
    text, voice = body.get("input"), body.get("voice")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "empty_input", "'input' must be a non-empty string")
    if len(text) > max_chars:
        raise ApiError(400, "input_too_long", f"'input' is {len(text)} characters; at most {max_chars}")
    if isinstance(voice, dict):
        voice = voice.get("id")
    if not isinstance(voice, str) or not voice:
        raise ApiError(400, "invalid_voice", "'voice' must be a voice name (or an object with an 'id')")
    fmt = body.get("response_format", "mp3")
    if fmt not in SPEECH_FORMATS:
        raise ApiError(400, "invalid_response_format", f"response_format must be one of {SPEECH_FORMATS}")
    if body.get("stream_format", "audio") != "audio":
        raise ApiError(400, "unsupported_stream_format", "only stream_format 'audio' is supported")
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        raise ApiError(400, "invalid_value", "speed must be a number 0.25..4.0")
    model = body.get("model", "")
    return SpeechRequest(input=text, voice=voice, model=model if isinstance(model, str) else "",
                         response_format=fmt, speed=float(speed))


async def list_models(request: web.Request) -> web.Response:
    if (refusal := request.app[GUARD].refusal(request)) is not None:
        return refusal
    models = request.app[SPEECH].models()
    return web.json_response({"object": "list", "data": [
        {"id": model.id, "object": "model", "created": 0, "owned_by": "voice-gateway", "gateway": {"kind": model.kind}}
        for model in models]})


def setup_speech_routes(app: web.Application, service: SpeechService, config: GatewayConfig) -> None:
    app[SPEECH] = service
    app[GUARD] = SpeechGuard(config)
    app[CONFIG] = config
    app.router.add_post(TRANSCRIPTIONS_PATH, create_transcription)
    app.router.add_post(SPEECH_PATH, create_speech)
    app.router.add_get(MODELS_PATH, list_models)
