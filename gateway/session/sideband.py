"""Sideband control: the app's own server attached to a live call (``GET /v1/realtime?call_id=…``).

OpenAI's documented way to keep tools and secrets on the server: the browser places the call
(WebRTC), the app's server attaches to it with its API key, hears every server event of the
call and can send client events (``session.update``, ``response.create``, …). Several may
attach (:data:`MAX_SIDEBANDS` at once); detaching never ends the call, and the call's end
detaches them all.

A sideband's client events are parsed and dispatched as the caller's are, with a rate limit of
its own (``limits.max_events_per_second``), so a busy sideband does not eat the caller's. An
error in a sideband's event is told to that sideband only; what its events cause
(``session.updated``, a response's events) goes to everyone, as on OpenAI. Audio is the
caller's: ``input_audio_buffer.append`` from a sideband is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.protocol import server_events as events
from gateway.protocol.client_events import BadClientEvent, ClientEvent, InputAudioBufferAppend, parse_client_event
from gateway.protocol.server_events import Event
from gateway.session.rate_limit import EventRateLimit

logger = logging.getLogger(__name__)

MAX_SIDEBANDS = 4

EventSink = Callable[[Event], None]


class TooManySidebands(Exception):
    """The call already has :data:`MAX_SIDEBANDS` sidebands attached."""


class Sideband:
    """One attached sideband: what it sends goes to :meth:`receive`; the call's events to its ``sink``."""

    def __init__(self, owner: Sidebands, sink: EventSink, on_detached: Callable[[], None]) -> None:
        self._owner = owner
        self.sink = sink
        self.on_detached = on_detached
        self._rate = EventRateLimit(owner.rate)

    def receive(self, message: str | bytes) -> None:
        """One message from the sideband: parsed, dispatched; an error goes back to this sideband only."""
        if not self._rate.allow():
            if self._rate.notice_due():
                self.sink(events.error("rate_limited", "too many client events; events are being dropped"))
            return
        try:
            event = parse_client_event(message, max_bytes=self._owner.max_event_bytes)
            if isinstance(event, InputAudioBufferAppend):
                raise BadClientEvent("unsupported_event", "a sideband cannot send the caller's audio", event.event_id)
            self._owner.dispatch(event)
        except BadClientEvent as exc:
            self.sink(events.error(exc.code, str(exc), event_id=exc.event_id, param=exc.param))

    def detach(self) -> None:
        """Stop hearing the call (the call goes on). Safe twice."""
        self._owner.remove(self)


class Sidebands:
    """The sidebands of one call."""

    def __init__(self, dispatch: Callable[[ClientEvent], None], *, max_event_bytes: int, rate: int,
                 call_id: str = "") -> None:
        self.dispatch = dispatch
        self.max_event_bytes = max_event_bytes
        self.rate = rate
        self._call_id = call_id
        self._attached: list[Sideband] = []

    def __len__(self) -> int:
        return len(self._attached)

    def attach(self, sink: EventSink, on_detached: Callable[[], None]) -> Sideband:
        """Attach one; ``on_detached`` is told when the call ends (or it detaches). Raises TooManySidebands."""
        if len(self._attached) >= MAX_SIDEBANDS:
            raise TooManySidebands(f"at most {MAX_SIDEBANDS} sidebands may attach to one call")
        sideband = Sideband(self, sink, on_detached)
        self._attached.append(sideband)
        logger.info("call %s: sideband attached (%d)", self._call_id, len(self._attached))
        return sideband

    def remove(self, sideband: Sideband) -> None:
        if sideband in self._attached:
            self._attached.remove(sideband)
            logger.info("call %s: sideband detached (%d left)", self._call_id, len(self._attached))
            sideband.on_detached()

    def send(self, event: Event) -> None:
        for sideband in list(self._attached):
            sideband.sink(event)

    def detach_all(self) -> None:
        for sideband in list(self._attached):
            self.remove(sideband)
