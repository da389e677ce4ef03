"""A bound on what a caller's data channels make the gateway reassemble.

aiortc's SCTP transport reassembles a fragmented message by rescanning every
fragment received so far each time one more arrives, with no limit on the size: a
message costs time quadratic in its size, on the event loop every call shares.
Measured (caller in another process, 2 cores): an 8 MB message took 5.2 s of the
loop, 16 MB 23 s of 28 s; 50 MB would take about four minutes. The
64 KiB event limit (``limits.max_event_bytes``) was applied only to the finished
message, and aiortc's answer told the caller it could send 256 KiB.

aiortc has no setting for it, so this module is the one, contained extension:
:func:`install` replaces the class ``aiortc.rtcpeerconnection`` instantiates with
:class:`BoundedSctpTransport`, which behaves as aiortc's until
:meth:`~BoundedSctpTransport.limit_inbound` is called on it (the WebRTC transport
does, for the gateway's own peer connections; clients in the same process are
unaffected). From then on the association is given up — the call's ``on_violation``
is told and nothing more is reassembled — as soon as

* a message, finished or still arriving, is larger than ``max_message_bytes`` (the
  size the answer advertises, ``limits.max_event_bytes`` + 16 KiB);
* a stream holds more than four times that, or more than ``max_pending_chunks``
  fragments, waiting for reassembly (tiny fragments make each rescan long). Four, not
  one: behind one lost packet an ordered stream holds every later message until the
  retransmission arrives, and a client that sends a few large events at once (a
  ``session.update`` with its tools is up to 64 KiB) must not lose its call to one lost
  packet — at twice, a burst of events over a loaded loopback did (tests/security/test_event_fuzz.py);
* data (or a FORWARD-TSN) names more than ``max_streams`` streams, or more is
  buffered than the receive window aiortc advertised (1 MiB) — protocol violations
  no browser commits;
* aiortc fails on a message (e.g. a string message that is not UTF-8, a second
  open of a channel): otherwise the exception ends aiortc's DTLS receive loop.

Reassembly then costs at most ``max_pending_chunks`` steps per fragment: a 50 MB
message ends its call 0.3 s after it started, once 80 KiB arrived, having cost the
loop 0.1 s. The subclass relies on aiortc's private names in :data:`RELIED_ON`, the
same in aiortc 1.14, 1.15 and 1.16, which pyproject's aiortc pin covers;
:func:`install` checks them at start-up and, should another
aiortc lack them, logs a warning and leaves aiortc's transport in place (the answer
still advertises the bounded size, which browsers respect, and the session still
refuses events over ``limits.max_event_bytes``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import rtcpeerconnection, rtcsctptransport
from aiortc.rtcsctptransport import DataChunk, ForwardTsnChunk, InboundStream, RTCSctpTransport

logger = logging.getLogger(__name__)

#: What :class:`BoundedSctpTransport` uses of aiortc besides its public interface.
RELIED_ON = ("RTCSctpTransport._receive_data_chunk", "RTCSctpTransport._receive_forward_tsn_chunk",
             "RTCSctpTransport._receive",
             "RTCSctpTransport._inbound_streams", "RTCSctpTransport._advertised_rwnd",
             "InboundStream.reassembly", "SCTP_DATA_FIRST_FRAG", "aiortc.rtcpeerconnection.RTCSctpTransport")
_AIORTC_SCTP_TRANSPORT = RTCSctpTransport


@dataclass(frozen=True)
class InboundLimit:
    """What one association may make the gateway hold for reassembly."""

    max_message_bytes: int
    max_streams: int = 64

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1024 or self.max_streams < 1:
            raise ValueError("max_message_bytes must be >= 1024 and max_streams >= 1")

    @property
    def max_waiting_bytes(self) -> int:
        """Bytes one stream may hold waiting for reassembly: four of the largest messages (see the module doc)."""
        return 4 * self.max_message_bytes

    @property
    def max_pending_chunks(self) -> int:
        """Fragments one stream may hold: the waiting bytes in 512-byte fragments (browsers send ~1.2 KB)."""
        return self.max_waiting_bytes // 512


class BoundedSctpTransport(RTCSctpTransport):
    """aiortc's SCTP transport with inbound reassembly bounded once :meth:`limit_inbound` is called."""

    _limit: InboundLimit | None = None
    _on_violation: Callable[[str, str], None] | None = None
    violation: str | None = None  # why the association was given up ("message_too_large" …), if it was

    def limit_inbound(self, limit: InboundLimit, on_violation: Callable[[str, str], None]) -> None:
        """Bound what the peer may make this transport reassemble; ``on_violation(reason, detail)`` is called
        once, when it tries more."""
        self._limit, self._on_violation = limit, on_violation

    async def _receive_data_chunk(self, chunk: DataChunk) -> None:
        limit = self._limit
        if limit is None:
            await super()._receive_data_chunk(chunk)
            return
        if self.violation is not None:
            return  # the call is ending: nothing more is reassembled
        await super()._receive_data_chunk(chunk)
        overrun = self._overrun(limit, chunk.stream_id)
        if overrun is not None:
            self._violate(*overrun)

    async def _receive_forward_tsn_chunk(self, chunk: ForwardTsnChunk) -> None:
        limit = self._limit
        if limit is not None and self.violation is not None:
            return
        await super()._receive_forward_tsn_chunk(chunk)  # it may name any streams: aiortc creates them
        if limit is not None and len(self._inbound_streams) > limit.max_streams:
            self._violate("data_channel_error", f"more than {limit.max_streams} streams")

    async def _receive(self, stream_id: int, pp_id: int, data: bytes) -> None:
        limit = self._limit
        if limit is None:
            await super()._receive(stream_id, pp_id, data)
            return
        if self.violation is not None:
            return
        if len(data) > limit.max_message_bytes:
            self._violate("message_too_large", f"a {len(data)}-byte message")
            return
        try:
            await super()._receive(stream_id, pp_id, data)
        except ConnectionError:
            raise  # the DTLS transport is gone: aiortc's own handling of it ends the call
        except Exception as exc:  # aiortc's data-channel handling raises on hostile messages
            self._violate("data_channel_error", f"aiortc failed on a message: {exc!r}")

    def _overrun(self, limit: InboundLimit, stream_id: int) -> tuple[str, str] | None:
        """(reason, detail) if this association holds more than ``limit`` once a chunk on ``stream_id`` arrived."""
        if len(self._inbound_streams) > limit.max_streams:
            return "data_channel_error", f"data on more than {limit.max_streams} streams"
        if self._advertised_rwnd < 0:
            return "message_too_large", f"{-self._advertised_rwnd} bytes more than the receive window"
        stream: InboundStream | None = self._inbound_streams.get(stream_id)
        if stream is None or not stream.reassembly:
            return None
        detail = None
        if len(stream.reassembly) > limit.max_pending_chunks:
            detail = f"more than {limit.max_pending_chunks} fragments waiting"
        elif (message := _last_message_bytes(stream.reassembly)) > limit.max_message_bytes:
            detail = f"a message of at least {message} bytes"
        elif (waiting := sum(len(fragment.user_data) for fragment in stream.reassembly)) > limit.max_waiting_bytes:
            detail = f"{waiting} bytes waiting for reassembly"
        return None if detail is None else ("message_too_large", detail)

    def _violate(self, reason: str, detail: str) -> None:
        if self.violation is not None:
            return
        self.violation = reason
        if self._on_violation is not None:
            self._on_violation(reason, detail)


def _last_message_bytes(reassembly: list[DataChunk]) -> int:
    """Bytes of the last message being reassembled: consecutive fragments back to its first one."""
    total = 0
    expected = None
    for fragment in reversed(reassembly):
        if expected is not None and fragment.tsn != expected:
            break
        total += len(fragment.user_data)
        if fragment.flags & rtcsctptransport.SCTP_DATA_FIRST_FRAG:
            break
        expected = (fragment.tsn - 1) % 2**32
    return total


def missing_internals() -> list[str]:
    """What of :data:`RELIED_ON` the installed aiortc lacks (an empty list: nothing)."""
    missing = [f"RTCSctpTransport.{name}" for name in ("_receive_data_chunk", "_receive_forward_tsn_chunk", "_receive")
               if not inspect.iscoroutinefunction(getattr(_AIORTC_SCTP_TRANSPORT, name, None))]
    assigned = _AIORTC_SCTP_TRANSPORT.__init__.__code__.co_names
    missing += [f"RTCSctpTransport.{name}" for name in ("_inbound_streams", "_advertised_rwnd")
                if name not in assigned]
    if "reassembly" not in InboundStream.__init__.__code__.co_names:
        missing.append("InboundStream.reassembly")
    if not isinstance(getattr(rtcsctptransport, "SCTP_DATA_FIRST_FRAG", None), int):
        missing.append("SCTP_DATA_FIRST_FRAG")
    if getattr(rtcpeerconnection, "RTCSctpTransport", None) not in (_AIORTC_SCTP_TRANSPORT, BoundedSctpTransport):
        missing.append("aiortc.rtcpeerconnection.RTCSctpTransport")
    return missing


def install() -> bool:
    """Make peer connections created from now on use :class:`BoundedSctpTransport`; False (and a warning) if
    the installed aiortc lacks what it relies on, and aiortc's own transport stays in place."""
    missing = missing_internals()
    if missing:
        logger.warning("aiortc lacks %s, which gateway.transports.sctp relies on: data-channel messages are "
                       "reassembled without a bound (see the aiortc pin in pyproject.toml)", ", ".join(missing))
        rtcpeerconnection.RTCSctpTransport = _AIORTC_SCTP_TRANSPORT  # type: ignore[attr-defined]
        return False
    rtcpeerconnection.RTCSctpTransport = BoundedSctpTransport  # type: ignore[attr-defined]
    return True
