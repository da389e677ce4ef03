"""Network impairment on the caller's side: a UDP relay that delays and drops real packets.

The caller's ICE candidates in the offer, and the gateway's in the answer, are
rewritten so that every packet of the call goes through a relay on the
caller's machine::

    caller ──► [caller-side socket, one per gateway candidate] ──► [gateway-side socket] ──► gateway
    caller ◄── [caller-side socket]                            ◄── [gateway-side socket] ◄── gateway

Both peers really talk through it: ICE checks, DTLS, SCTP (the event channel)
and SRTP. Packets are classified by their first byte (RFC 7983): RTP/RTCP
(128–191) is *media*. ``delay_ms`` delays every packet; ``jitter_ms`` adds a
uniform ±jitter to each media packet (so media can be reordered, as with
netem); ``loss`` drops that fraction of media packets. Signaling packets
(STUN, DTLS, SCTP) are only delayed, never dropped or jittered, so the call
sets up and the event channel stays reliable: what is impaired is the audio.
Random draws are made for media packets only, from generators seeded per
direction and per draw kind: with the same seed the n-th media packet of a
direction has the same fate, whatever the jitter or the signaling traffic.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

Address = tuple[str, int]

DIRECTIONS = ("both", "send", "receive")
_MAX_PENDING_CHECKS = 512


@dataclass(frozen=True)
class NetworkImpairment:
    """Added one-way delay, ±jitter and media loss, applied to ``direction`` (send = caller → gateway)."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    direction: str = "both"
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.delay_ms <= 10_000:
            raise ValueError("delay must be 0..10000 ms")
        if not 0 <= self.jitter_ms <= 5_000:
            raise ValueError("jitter must be 0..5000 ms")
        if not 0 <= self.loss < 1:
            raise ValueError("loss must be at least 0 and below 1")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")

    @property
    def active(self) -> bool:
        return bool(self.delay_ms or self.jitter_ms or self.loss)

    def applies_to(self, direction: str) -> bool:
        return self.direction in ("both", direction)


@dataclass
class LinkStats:
    """Packets seen on one direction of the relay."""

    packets: int = 0
    media_packets: int = 0
    media_dropped: int = 0


class _Link:
    """One direction: decides each packet's fate and sends it (now or later)."""

    def __init__(self, impairment: NetworkImpairment, name: str) -> None:
        self._impairment = impairment
        self._on = impairment.applies_to(name)
        self._loss_rng = random.Random(f"{impairment.seed}:{name}:loss")
        self._jitter_rng = random.Random(f"{impairment.seed}:{name}:jitter")
        self._timers: set[asyncio.TimerHandle] = set()
        self.stats = LinkStats()

    def send(self, transport: asyncio.DatagramTransport, data: bytes, address: Address) -> None:
        self.stats.packets += 1
        media = 128 <= data[0] <= 191
        delay = 0.0
        if media:
            self.stats.media_packets += 1
        if self._on:
            impairment = self._impairment
            if media:
                lost = self._loss_rng.random() < impairment.loss
                jitter = self._jitter_rng.uniform(-impairment.jitter_ms, impairment.jitter_ms)
                if lost:
                    self.stats.media_dropped += 1
                    return
                delay = max(0.0, impairment.delay_ms + jitter)
            else:
                delay = impairment.delay_ms
        if delay <= 0:
            _send(transport, data, address)
            return
        timer: list[asyncio.TimerHandle] = []

        def fire() -> None:
            self._timers.discard(timer[0])
            _send(transport, data, address)

        timer.append(asyncio.get_running_loop().call_later(delay / 1000, fire))
        self._timers.add(timer[0])

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()


def _send(transport: asyncio.DatagramTransport, data: bytes, address: Address) -> None:
    if not transport.is_closing():
        transport.sendto(data, address)


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_packet: Callable[[bytes, Address], None]) -> None:
        self._on_packet = on_packet

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if data:
            self._on_packet(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable and the like: UDP carries on
        pass


@dataclass
class _Target:
    """One gateway candidate, reached through the gateway-side socket of its leg."""

    gateway: Address
    transport: asyncio.DatagramTransport  # caller-side socket advertised in place of ``gateway``
    caller: Address | None = None  # where the caller's media comes from, once known


@dataclass
class _Leg:
    """One ICE transport (an m-section of the offer): the caller's candidate and its relay sockets."""

    caller: Address
    transport: asyncio.DatagramTransport | None = None  # gateway-side socket, advertised to the gateway
    targets: dict[Address, _Target] = field(default_factory=dict)
    checks: OrderedDict[bytes, tuple[_Target, Address]] = field(default_factory=OrderedDict)
    last: _Target | None = None


def _is_stun(data: bytes) -> bool:
    return len(data) >= 20 and data[0] < 4


def _stun_class(data: bytes) -> int:
    """0 request, 1 indication, 2 success response, 3 error response."""
    kind = int.from_bytes(data[:2], "big")
    return ((kind >> 7) & 0b10) | ((kind >> 4) & 0b1)


class _Candidate(NamedTuple):
    foundation: str
    priority: str
    host: str
    port: int
    type: str

    def line(self, host: str, port: int) -> str:
        """This candidate moved to ``host:port``, as a host candidate."""
        return f"a=candidate:{self.foundation} 1 udp {self.priority} {host} {port} typ host"


def _candidate(line: str) -> _Candidate | None:
    """An ``a=candidate`` line the relay can carry: UDP, IPv4, component 1."""
    parts = line.split()
    if len(parts) < 8 or parts[6] != "typ" or parts[2].lower() != "udp" or parts[1] != "1":
        return None
    try:
        if not isinstance(ipaddress.ip_address(parts[4]), ipaddress.IPv4Address):
            return None
    except ValueError:  # a hostname (mDNS): not relayed
        return None
    return _Candidate(parts[0].split(":", 1)[1], parts[3], parts[4], int(parts[5]), parts[7])


class ImpairmentRelay:
    """Relays one call through local UDP sockets, impairing it on the way (see the module doc)."""

    def __init__(self, impairment: NetworkImpairment) -> None:
        self.impairment = impairment
        self._up = _Link(impairment, "send")
        self._down = _Link(impairment, "receive")
        self._legs: list[_Leg] = []
        self._transports: list[asyncio.DatagramTransport] = []

    def stats(self) -> dict[str, Any]:
        return {"impairment": asdict(self.impairment), "send": asdict(self._up.stats),
                "receive": asdict(self._down.stats)}

    async def rewrite_offer(self, sdp: str) -> str:
        """The caller's offer with one relayed host candidate per m-section in place of its own."""
        lines, out = sdp.splitlines(), []
        replaced = False
        for line in lines:
            if line.startswith("m="):
                replaced = False
            if not line.startswith("a=candidate:"):
                out.append(line)
                continue
            candidate = _candidate(line)
            if replaced or candidate is None or candidate.type != "host":
                continue
            leg = _Leg(caller=(candidate.host, candidate.port))
            leg.transport = await self._bind(candidate.host, functools.partial(self._from_gateway, leg))
            self._legs.append(leg)
            out.append(candidate.line(candidate.host, _port(leg.transport)))
            replaced = True
        if not self._legs:
            raise ValueError("network impairment needs an IPv4 host candidate on the caller's side")
        return "\r\n".join(out) + "\r\n"

    async def rewrite_answer(self, sdp: str) -> str:
        """The gateway's answer with each IPv4 UDP candidate replaced by a caller-side relay socket."""
        out: list[str] = []
        section = -1
        relayed = 0
        for line in sdp.splitlines():
            if line.startswith("m="):
                section += 1
            if not line.startswith("a=candidate:"):
                out.append(line)
                continue
            candidate = _candidate(line)
            if candidate is None or section < 0:
                continue
            leg = self._legs[min(section, len(self._legs) - 1)]
            key = (candidate.host, candidate.port)
            target = leg.targets.get(key)
            if target is None:
                transport = await self._bind(leg.caller[0], functools.partial(self._from_caller, leg, key))
                target = leg.targets[key] = _Target(key, transport)
            out.append(candidate.line(leg.caller[0], _port(target.transport)))
            relayed += 1
        if not relayed:
            raise ValueError("network impairment needs an IPv4 UDP candidate in the gateway's answer")
        return "\r\n".join(out) + "\r\n"

    def close(self) -> None:
        """Stop relaying; packets still delayed are dropped. Safe to call twice."""
        self._up.close()
        self._down.close()
        for transport in self._transports:
            transport.close()
        self._transports.clear()

    async def _bind(self, host: str, on_packet: Callable[[bytes, Address], None]) -> asyncio.DatagramTransport:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Socket(on_packet), local_addr=(host, 0))
        self._transports.append(transport)
        return transport

    def _from_caller(self, leg: _Leg, key: Address, data: bytes, source: Address) -> None:
        target = leg.targets[key]
        if _is_stun(data):
            if _stun_class(data) == 0:  # remember who asked, to route the answer back
                leg.checks[data[8:20]] = (target, source)
                while len(leg.checks) > _MAX_PENDING_CHECKS:
                    leg.checks.popitem(last=False)
        else:
            target.caller = source
        leg.last = target
        if leg.transport is not None:
            self._up.send(leg.transport, data, target.gateway)

    def _from_gateway(self, leg: _Leg, data: bytes, source: Address) -> None:
        target = leg.targets.get(source) or leg.last
        if target is None:
            return
        destination = target.caller or leg.caller
        if _is_stun(data) and _stun_class(data) >= 2:
            check = leg.checks.pop(data[8:20], None)
            if check is not None:
                target, destination = check
                if target.caller is None:  # aggressive nomination: the first success is the route
                    target.caller = destination
        self._down.send(target.transport, data, destination)


def _port(transport: asyncio.DatagramTransport) -> int:
    return int(transport.get_extra_info("sockname")[1])
