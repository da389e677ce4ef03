"""The live calls of this process: admission, lookup, hang-up, shutdown.

Each call is a :class:`~gateway.session.session.RealtimeSession` on a transport. A call placed
with an SDP offer gets one from the factory the app passes in (WebRTC:
:func:`gateway.transports.webrtc.webrtc_transports`); a call that arrives another way (a
WebSocket accepted by :mod:`gateway.app.sockets`) is admitted with :meth:`SessionRegistry.open_call`
and the factory of its own transport. Both go the same way: admission, settings, session,
the transport's set-up, start, observer — so every transport gets the same limits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gateway.config import GatewayConfig
from gateway.errors import CallExists, CallNotFound, GatewayError, InvalidSessionConfig, Unavailable
from gateway.ops.observers import NULL_OBSERVER, CallObserver, CompositeObserver
from gateway.protocol import server_events as events
from gateway.protocol.session_settings import InvalidSession, SessionSettings
from gateway.session.admission import Admission, calibrate
from gateway.session.load import LoadMonitor
from gateway.session.session import RealtimeSession
from gateway.session.transport import OfferTransport, OfferTransportFactory, Transport, TransportFactory
from gateway.voice.engines import Engines

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=Transport)


class SessionRegistry:
    def __init__(self, config: GatewayConfig, *, transports: OfferTransportFactory,
                 observer: CallObserver = NULL_OBSERVER) -> None:
        self._config = config
        self._transports = transports
        self._calls: dict[str, RealtimeSession] = {}
        self._started: set[str] = set()
        self._engines: Engines | None = None
        self.draining = False
        self.load = LoadMonitor(config.limits)
        self.admission = Admission(config, self.load)
        self.load.on_cpu_sample = self._sample_admission
        self._calibrating = False
        # The admission's service level hears every call's turns, replies and barge-ins, like /metrics.
        self._observer = CompositeObserver([observer, self.admission.service])

    def set_engines(self, engines: Engines | None) -> None:
        self._engines = engines
        self.admission.set_engines(engines)

    @property
    def engines(self) -> Engines | None:
        return self._engines

    def __len__(self) -> int:
        return len(self._calls)

    def has_call(self, call_id: str) -> bool:
        return call_id in self._calls

    def is_connected(self, call_id: str) -> bool:
        call = self._calls.get(call_id)
        return call is not None and call.connected_at is not None

    def get(self, call_id: str) -> RealtimeSession:
        call = self._calls.get(call_id)
        if call is None:
            raise CallNotFound(call_id)
        return call

    def calls(self) -> list[RealtimeSession]:
        return list(self._calls.values())

    def refusal(self) -> Unavailable | None:
        """Why a new call would be refused now (None: it would be admitted); ``/readyz`` answers with the same."""
        if self._engines is None:
            return Unavailable("engine_unavailable", "the speech engines are not loaded", retry_after=5)
        if self.draining:
            return Unavailable("draining", "the gateway is shutting down; try another instance", retry_after=5)
        decision = self.admission.decide(len(self._calls))
        if len(self._calls) >= self._config.limits.max_calls:
            return Unavailable("capacity", "the gateway is at capacity; try again later",
                               retry_after=decision.retry_after)
        overload = self.load.overload_reason(self._engines) or decision.reason
        if overload is not None:
            return Unavailable("capacity", f"the gateway is at capacity ({overload}); try again later",
                               retry_after=decision.retry_after)
        return None

    def check_admission(self) -> Engines:
        refusal = self.refusal()
        if refusal is not None:
            if refusal.code == "capacity":
                logger.warning("refusing a call: %s (Retry-After %s s)", refusal.message, refusal.retry_after)
            raise refusal
        assert self._engines is not None
        return self._engines

    def _sample_admission(self, now: float) -> None:
        """Each CPU sample of the load monitor: the admission learns what the calls cost in their current state."""
        active = sum(1 for call in self._calls.values()
                     if call.conversation.in_turn or call.conversation.active_response_id is not None)
        self.admission.sample(now, len(self._calls), active)
        if self._engines is not None and self.admission.enabled and not self._calibrating:
            self._calibrating = True
            self.load.tasks.create_task(self._calibrate(self._engines), name="admission-calibration")

    async def _calibrate(self, engines: Engines) -> None:
        interval = self._config.engines.asr_partial_interval_ms / 1000
        self.admission.calibrated(await calibrate(engines, interval))

    def load_report(self) -> dict[str, Any]:
        """What ``GET /internal/load`` returns to a front process."""
        refusal = self.refusal()
        reason = refusal.code if refusal is not None else None
        return {
            "active_calls": len(self._calls),
            "accepting": reason is None,
            "reason": reason,
            "loop_lag_ms": round(self.load.loop_lag_ms, 1),
            "asr_wait_ms": round(self.load.asr_wait_ms(self._engines), 1),
            "cpu_percent": round(self.load.cpu_percent, 1),
            **self.admission.report(len(self._calls)),
            "call_ids": list(self._calls),
            "connected_call_ids": [call_id for call_id, call in self._calls.items() if call.connected_at is not None],
        }

    async def create_call(self, offer_sdp: str, session: dict[str, Any] | None) -> tuple[str, str]:
        """Admit a call, answer its offer; returns (call id, answer SDP)."""
        try:
            return await self._admit(offer_sdp, session)
        except GatewayError as exc:
            self._observer.call_rejected(exc.code)
            raise

    def validate_session(self, session: dict[str, Any] | None) -> dict[str, Any] | None:
        """The session a call placed with ``session`` would start with, without its id (a client secret is
        minted with it); None before the engines are loaded. Raises InvalidSessionConfig."""
        if self._engines is None:
            return None
        effective = self._settings(self._engines, session).to_dict("", self._engines.tts.voices)
        del effective["id"]
        return effective

    def _settings(self, engines: Engines, session: dict[str, Any] | None) -> SessionSettings:
        settings = SessionSettings.from_config(self._config, engines.tts.voices)
        if session is not None:
            try:
                settings = settings.updated(session, voices=engines.tts.voices, agents=engines.agents.names)
            except InvalidSession as exc:
                raise InvalidSessionConfig("invalid_session", str(exc)) from exc
        return settings

    async def open_call(self, make_transport: TransportFactory[T], session: dict[str, Any] | None, *,
                        setup: Callable[[T], Awaitable[None]] | None = None,
                        call_id: str | None = None) -> RealtimeSession:
        """Admit a call on the transport ``make_transport(call_id)`` makes, with the session ``session`` asks for.

        ``setup`` (awaited before the call starts) finishes setting the transport up: an SDP answer, a
        WebSocket's upgrade. ``call_id``: the id the transport gives the call (a Twilio call's comes from its
        CallSid); by default a new one. Raises :class:`~gateway.errors.GatewayError` when the call is refused
        (each refusal is told to the observer; :class:`~gateway.errors.CallExists` for a ``call_id`` that is
        live); a failing ``setup`` closes the call (``rejected``) and re-raises.
        """
        try:
            return await self._open(make_transport, session, setup, call_id)
        except GatewayError as exc:
            self._observer.call_rejected(exc.code)
            raise

    async def _admit(self, offer_sdp: str, session: dict[str, Any] | None) -> tuple[str, str]:
        answers: list[str] = []

        async def answer(transport: OfferTransport) -> None:
            answers.append(await transport.answer(offer_sdp))

        call = await self._open(self._transports, session, answer)
        return call.id, answers[0]

    async def _open(self, make_transport: TransportFactory[T], session: dict[str, Any] | None,
                    setup: Callable[[T], Awaitable[None]] | None, call_id: str | None = None) -> RealtimeSession:
        engines = self.check_admission()
        settings = self._settings(engines, session)
        if call_id in self._calls:
            raise CallExists("call_exists", f"call {call_id} is already live on this gateway")
        call_id = call_id or events.new_call_id()
        transport = make_transport(call_id)
        try:
            call = RealtimeSession(call_id, self._config, engines, settings, transport, on_closed=self._forget,
                                   observer=self._observer)
        except BaseException:
            await transport.close()
            raise
        self._calls[call_id] = call
        self.admission.admitted()
        if setup is not None:
            try:
                await setup(transport)
            except BaseException:
                await call.close("rejected")
                raise
        call.start()
        logger.info("call %s: started (%d active)", call_id, len(self._calls))
        if call.end_reason is None:  # not already closing: its end will be told
            self._started.add(call_id)
            self._observer.call_started(call_id)
        return call

    async def hangup(self, call_id: str) -> None:
        await self.get(call_id).close("hangup")

    def _forget(self, call: RealtimeSession) -> None:
        if self._calls.pop(call.id, None) is not None:
            logger.info("call %s: ended (%s), %d active", call.id, call.end_reason, len(self._calls))
        if call.id in self._started:
            self._started.discard(call.id)
            self._observer.call_ended(call.id, call.end_reason or "unknown", time.monotonic() - call.created_at,
                                      call.conversation.turns)

    async def close_all(self, reason: str = "shutdown") -> None:
        calls = self.calls()
        if calls:
            await asyncio.gather(*(call.close(reason) for call in calls), return_exceptions=True)
