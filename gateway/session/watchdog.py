"""When the gateway ends a call by itself: a vanished caller, an idle call, an over-long call.

* **A caller that vanished** (its process killed, its network gone) sends
  nothing more, yet its peer connection stays "connected" until ICE consent
  expires (about 30 s in aiortc). Every live WebRTC peer keeps sending: audio
  frames every 20 ms (silence included), RTCP reports every few seconds even
  when it only listens, SCTP heartbeats. So once connected, a call from which
  no packet at all arrived for ``limits.media_timeout_seconds`` (default 10 s)
  is closed with reason ``timeout``. Packets are counted by the transport
  (:meth:`~gateway.session.transport.Transport.packets_received`; WebRTC asks the
  public ``RTCPeerConnection.getStats()`` for its ``packetsReceived``).
* **Idle**: no caller speech and no reply playing for
  ``limits.idle_timeout_seconds`` (default 300 s) → reason ``idle_timeout``.
* **Too long**: ``limits.max_call_seconds`` (default 3600 s) after the call was
  answered → reason ``max_duration``.

Before an idle or max-duration end, the caller gets ``gateway.session.expiring``
``limits.end_notice_seconds`` ahead (speech in between cancels an idle end),
and ``gateway.session.ended`` when it happens (the call's close sends that).
ICE that never completes is the job of the WebRTC transport's ICE watchdog
(``limits.ice_timeout_seconds``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from gateway.config import LimitsConfig
from gateway.protocol import server_events as events
from gateway.protocol.server_events import Event

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.5


class CallWatchdog:
    """Decides, twice a second, whether a call should end (see the module doc)."""

    def __init__(
        self,
        limits: LimitsConfig,
        *,
        call_id: str,
        packets_received: Callable[[], Awaitable[int]],
        last_activity: Callable[[], float],
        send: Callable[[Event], None],
        close: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits
        self._call_id = call_id
        self._packets_received = packets_received
        self._last_activity = last_activity
        self._send = send
        self._close = close
        self._clock = clock
        self._started = clock()
        self._connected_at: float | None = None
        self._packets = -1
        self._packets_at = 0.0
        self._warned: dict[str, float] = {}  # reason -> the end it was announced for

    @property
    def connected_at(self) -> float | None:
        """When the media path came up (None: not yet)."""
        return self._connected_at

    def connected(self) -> None:
        """The peer connection is up: the media timeout counts from now."""
        if self._connected_at is None:
            self._connected_at = self._packets_at = self._clock()

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(TICK_SECONDS)
                reason = await self.check()
                if reason is not None:
                    self._close(reason)
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("call %s: the watchdog failed; ending the call", self._call_id)
            self._close("error")

    async def check(self) -> str | None:
        """The reason to end the call now, if any (sends notices on the way)."""
        limits, now = self._limits, self._clock()
        if self._connected_at is not None:
            packets = await self._packets_received()
            now = self._clock()
            if packets != self._packets:
                self._packets, self._packets_at = packets, now
            elif now - self._packets_at >= limits.media_timeout_seconds:
                logger.info("call %s: nothing received for %.1f s; the caller is gone", self._call_id,
                            now - self._packets_at)
                return "timeout"
        if limits.max_call_seconds:
            end = self._started + limits.max_call_seconds
            if now >= end:
                logger.info("call %s: reached the maximum call duration (%.0f s)", self._call_id,
                            limits.max_call_seconds)
                return "max_duration"
            self._notice("max_duration", end, now)
        if limits.idle_timeout_seconds:
            end = max(self._started, self._last_activity()) + limits.idle_timeout_seconds
            if now >= end:
                logger.info("call %s: idle for %.0f s", self._call_id, limits.idle_timeout_seconds)
                return "idle_timeout"
            self._notice("idle_timeout", end, now)  # activity moves the end: a new notice when it nears
        return None

    def _notice(self, reason: str, end: float, now: float) -> None:
        if end - now <= self._limits.end_notice_seconds and self._warned.get(reason) != end:
            self._warned[reason] = end
            self._send(events.session_expiring(reason, end - now))
