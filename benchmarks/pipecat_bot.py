"""The Pipecat peer of the capacity benchmark: an echo bot on Pipecat 1.14 with the SmallWebRTC transport.

It does per turn the work the gateway's default agent does (``gateway/agents/echo.py``): the same
Whisper tiny.en (CTranslate2, int8), the same Piper voice (en_US-joe-medium), Silero VAD, 500 ms of
silence to end a turn, and a reply of "You said: <what was heard>". Barge-in is Pipecat's own: the
user aggregator broadcasts an interruption when the VAD hears the caller start.

The 500 ms are Pipecat's two stages: the VAD's ``stop_secs`` (0.2 s, its default) and the speech
timeout strategy's ``user_speech_timeout`` (0.3 s). Whisper runs as soon as the VAD stops (Pipecat's
segmented STT), so the decode overlaps the last 0.3 s: this is how Pipecat is meant to be run.

The engines run as the gateway runs them (the default), so the work per turn is the same and what
is compared is the framework: the models are loaded once and shared by every call's services,
Whisper decodes greedily (beam 1) on one CTranslate2 thread, Piper synthesises on one onnxruntime
thread. Pipecat's ``WhisperSTTService`` still pads every utterance to Whisper's 30 s window (the
gateway fits the window to the audio; 4-5x the CPU per decode): that is Pipecat's integration, and
part of what is compared.
``--stock`` runs Pipecat as its examples do instead: each call's services load their own models
(on the event loop), faster-whisper's defaults (beam 5, one thread per core), onnxruntime's
default pool.

Each call gets its own pipeline and its own services, as Pipecat's runner does. Signaling is
SmallWebRTC's: ``POST /api/offer`` with ``{"sdp", "type"}`` JSON, answered with
``{"sdp", "type", "pc_id"}``; hanging up is closing the peer connection. It runs in its own
virtualenv (``make bench-deps`` makes ``.venv-pipecat``), so it imports nothing from this repository.

Usage: .venv-pipecat/bin/python benchmarks/pipecat_bot.py --port 7860 --whisper-model DIR --piper-voice FILE.onnx
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from aiohttp import web
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.piper import tts as piper_tts
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.turns.user_stop.speech_timeout_user_turn_stop_strategy import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

VAD_STOP_S = 0.2  # Pipecat's default
SPEECH_TIMEOUT_S = 0.3  # ... and together 500 ms of silence end the turn, as the gateway's server_vad default
#: Pipecat's bound on waiting for a transcript after the VAD stopped; its segmented Whisper finalises
#: each transcript, which ends that wait at once, so this only silences the "not set" warning.
TTFS_P99_S = 1.0


class SharedEngines:
    """The models, loaded once for every call (the gateway's way): greedy Whisper, single-threaded engines."""

    def __init__(self, whisper_model: str, piper_voice: Path) -> None:
        import onnxruntime
        from faster_whisper import WhisperModel
        from piper import PiperVoice

        self.whisper = WhisperModel(whisper_model, device="cpu", compute_type="int8", cpu_threads=1)
        self.voice = PiperVoice.load(piper_voice)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.voice.session = onnxruntime.InferenceSession(str(piper_voice), sess_options=options,
                                                          providers=["CPUExecutionProvider"])


class GreedyWhisper:
    """The shared model, decoding with beam 1 (Pipecat's service passes no beam size: faster-whisper's 5)."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def transcribe(self, audio: Any, **options: Any) -> Any:
        return self._model.transcribe(audio, beam_size=1, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def services(args: argparse.Namespace, shared: SharedEngines | None) -> tuple[FrameProcessor, FrameProcessor]:
    """This call's Whisper and Piper services: on the shared models, or (``--stock``) loading their own."""
    voice = Path(args.piper_voice)
    settings = WhisperSTTService.Settings(model=str(args.whisper_model))
    if shared is None:
        stt = WhisperSTTService(settings=settings, device="cpu", compute_type="int8", ttfs_p99_latency=TTFS_P99_S)
        return stt, PiperTTSService(settings=PiperTTSService.Settings(voice=voice.stem), download_dir=voice.parent)

    class SharedWhisperSTT(WhisperSTTService):
        def _load(self) -> None:
            self._model = GreedyWhisper(shared.whisper)

    class SharedPiperVoice:
        @staticmethod
        def load(*_: Any, **__: Any) -> Any:
            return shared.voice

    stt = SharedWhisperSTT(settings=settings, device="cpu", compute_type="int8", ttfs_p99_latency=TTFS_P99_S)
    real = piper_tts.PiperVoice
    piper_tts.PiperVoice = SharedPiperVoice  # PiperTTSService loads its voice in __init__: hand it the shared one
    try:
        tts = PiperTTSService(settings=PiperTTSService.Settings(voice=voice.stem), download_dir=voice.parent)
    finally:
        piper_tts.PiperVoice = real
    return stt, tts


class EchoLLM(FrameProcessor):
    """Stands where the LLM would: answers each user turn with "You said: …", as the gateway's echo agent."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, LLMContextFrame):
            await self.push_frame(frame, direction)
            return
        heard = ""
        for message in reversed(frame.context.get_messages()):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                heard = content if isinstance(content, str) else " ".join(
                    part.get("text", "") for part in content or [] if isinstance(part, dict))
                break
        await self.push_frame(LLMFullResponseStartFrame())
        await self.push_frame(LLMTextFrame("You said: "))
        await self.push_frame(LLMTextFrame(heard.strip() or "nothing I could understand."))
        await self.push_frame(LLMFullResponseEndFrame())


async def run_bot(connection: SmallWebRTCConnection, args: argparse.Namespace, shared: SharedEngines | None) -> None:
    """One call: transport in → Whisper → user turn → echo → Piper → transport out, until it hangs up."""
    transport = SmallWebRTCTransport(webrtc_connection=connection,
                                     params=TransportParams(audio_in_enabled=True, audio_out_enabled=True))
    stt, tts = services(args, shared)
    context = LLMContext()
    user, assistant = LLMContextAggregatorPair(context, user_params=LLMUserAggregatorParams(
        vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=VAD_STOP_S)),
        user_turn_strategies=UserTurnStrategies(
            stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=SPEECH_TIMEOUT_S)])))
    pipeline = Pipeline([transport.input(), stt, user, EchoLLM(), tts, transport.output(), assistant])
    worker = PipelineWorker(pipeline, params=PipelineParams(enable_metrics=False), idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport: Any, client: Any) -> None:
        await runner.cancel()

    await runner.run()


def create_app(args: argparse.Namespace) -> web.Application:
    app = web.Application()
    shared = None if args.stock else SharedEngines(str(args.whisper_model), Path(args.piper_voice))
    calls: set[asyncio.Task[None]] = set()

    async def offer(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            offer = isinstance(body, dict) and body.get("type", "offer") == "offer"
            if not offer or "m=audio" not in str(body.get("sdp")):
                raise ValueError("expected {\"sdp\": an SDP offer with an audio section, \"type\": \"offer\"}")
            connection = SmallWebRTCConnection(ice_servers=[])
            await connection.initialize(sdp=body["sdp"], type=body.get("type", "offer"))
        except Exception as exc:  # a bad offer is the caller's error, whatever aiortc raised
            return web.json_response({"error": {"type": "invalid_request_error", "code": "invalid_offer",
                                                "message": str(exc)[:200]}}, status=400)
        task = asyncio.create_task(run_bot(connection, args, shared))
        calls.add(task)
        task.add_done_callback(calls.discard)
        answer = connection.get_answer()
        if answer is None:
            raise web.HTTPInternalServerError(text="no SDP answer")
        return web.json_response(answer)

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready", "calls": len(calls)})

    async def close_calls(app: web.Application) -> None:
        for task in list(calls):
            task.cancel()
        await asyncio.gather(*calls, return_exceptions=True)

    app.router.add_post("/api/offer", offer)
    app.router.add_get("/readyz", ready)
    app.on_shutdown.append(close_calls)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--whisper-model", required=True, help="a CTranslate2 Whisper model directory")
    parser.add_argument("--piper-voice", required=True, help="a Piper voice .onnx (its .onnx.json beside it)")
    parser.add_argument("--stock", action="store_true",
                        help="Pipecat as its examples run: per-call models, faster-whisper's, onnxruntime's defaults")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level=args.log_level)
    logging.basicConfig(level=args.log_level)
    web.run_app(create_app(args), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
