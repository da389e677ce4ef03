"""Which ICE candidates a call uses: the caller's (from its offer) and the gateway's own (in the answer).

**The caller's.** aiortc hands every ``a=candidate`` of an offer to aioice, which
sends STUN connectivity checks to each for as long as ICE runs. Unfiltered, one
55 KB offer of 900 candidates made the gateway send 5,191 STUN requests (457 KB)
to addresses of the caller's choosing within 30 s — scanning the gateway's own
networks, or flooding a third party (docs/security.md) — and a ``.local`` name
makes aioice resolve it by multicast DNS on the gateway's LAN. :func:`remote_verdict`
says whether a candidate line is kept (:class:`CandidatePolicy`): UDP, component 1,
an IP address outside the ranges no caller can be reached at (unspecified,
multicast, reserved, broadcast, link-local, IPv4-mapped), loopback and private
ranges only if allowed, mDNS names only if allowed; :mod:`gateway.transports.offer`
keeps at most ``max_remote`` of them per offer. A caller whose candidates were all
dropped still connects when it can reach the gateway: its checks reveal its address
(a peer-reflexive candidate), as for any caller behind a NAT (the offer module then
removes ``a=end-of-candidates``, so that aioice waits for those checks).

**The gateway's.** aioice gathers a host candidate on every interface of the
machine, and the answer lists them all: every address of the host is disclosed to
anyone who posts an offer. ``server.ice_addresses`` (addresses or networks) limits
them. aioice has no setting for it; its ``Connection.gather_candidates`` calls the
module function ``aioice.ice.get_host_addresses``, which :func:`install_local_filter`
replaces, once at start-up, with one that keeps only the addresses :func:`gathering_on`
set for the answer being made (a context variable: the peer connections of other
calls, and clients in the same process, are unaffected). The start-up check looks
for that function and the call to it; without them it logs a warning and
:func:`filter_local_candidates` removes the other addresses from the answer text
instead (they are then not disclosed, but still gathered and used for checks).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import ipaddress
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from aioice import ice as aioice_ice

from gateway.config import GatewayConfig

logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Ranges no caller is reached at: unspecified, "this network", multicast, reserved (with broadcast),
#: link-local (IPv4's also covers cloud metadata services), IPv4-mapped IPv6 (browsers never offer it).
NEVER = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4", "169.254.0.0/16",
    "::/128", "ff00::/8", "fe80::/10", "::ffff:0:0/96"))
LOOPBACK = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128"))
#: RFC 1918, carrier-grade NAT (RFC 6598) and unique-local IPv6 (RFC 4193).
PRIVATE = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"))
_TYPES = ("host", "srflx", "relay")


@dataclass(frozen=True)
class CandidatePolicy:
    """Which of the caller's candidates are used (see the module doc)."""

    max_remote: int = 16  # per offer; the rest are dropped
    allow_private: bool = True  # 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7
    allow_loopback: bool = False  # no browser offers loopback; a remote caller's would be the gateway itself
    allow_mdns: bool = False  # ".local" names, resolved by multicast DNS on the gateway's LAN
    local_networks: tuple[Network, ...] = ()  # the gateway's own host candidates; empty: every interface

    def __post_init__(self) -> None:
        if self.max_remote < 1:
            raise ValueError("max_remote must be at least 1")

    @classmethod
    def from_config(cls, config: GatewayConfig) -> CandidatePolicy:
        server = config.server
        return cls(max_remote=config.limits.max_remote_candidates, allow_private=server.allow_private_candidates,
                   allow_loopback=server.allow_loopback_candidates, allow_mdns=server.allow_mdns_candidates,
                   local_networks=tuple(ipaddress.ip_network(n, strict=False) for n in server.ice_addresses))


def remote_verdict(line: str, policy: CandidatePolicy) -> str | None:
    """Why the caller's ``a=candidate:`` line is dropped (``not_udp``, ``special_address`` …), or None: kept."""
    fields = line.split()
    if len(fields) < 8 or fields[6] != "typ":
        return "malformed"
    component, transport, host, port, kind = fields[1], fields[2], fields[4], fields[5], fields[7]
    if component != "1":
        return "component"  # RTCP candidates: the gateway multiplexes RTCP on component 1
    if transport.lower() != "udp":
        return "not_udp"  # aioice checks UDP candidates only
    if kind not in _TYPES:
        return "malformed"
    if not (port.isascii() and port.isdigit() and 0 < int(port) <= 65535):
        return "malformed"
    if host.lower().endswith(".local"):
        return None if policy.allow_mdns else "mdns"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "hostname"  # aioice resolves nothing but mDNS names; any other name is refused there anyway
    return address_verdict(address, policy)


def address_verdict(address: Address, policy: CandidatePolicy) -> str | None:
    if any(address in network for network in NEVER if network.version == address.version):
        return "special_address"
    if any(address in network for network in LOOPBACK if network.version == address.version):
        return None if policy.allow_loopback else "loopback"
    if any(address in network for network in PRIVATE if network.version == address.version):
        return None if policy.allow_private else "private"
    return None


# ------------------------------------------------------------ the gateway's own candidates

_gathering_on: contextvars.ContextVar[tuple[Network, ...]] = contextvars.ContextVar("gathering_on", default=())
_aioice_host_addresses: Callable[[bool, bool], list[str]] = aioice_ice.get_host_addresses


def _filtered_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """aioice's host addresses, less those outside the networks :func:`gathering_on` set (none set: all)."""
    addresses = _aioice_host_addresses(use_ipv4, use_ipv6)
    networks = _gathering_on.get()
    return [a for a in addresses if _in(a, networks)] if networks else addresses


def _in(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks if network.version == parsed.version)


def missing_internals() -> list[str]:
    """What :func:`install_local_filter` relies on that the installed aioice lacks (empty: nothing)."""
    function = getattr(aioice_ice, "get_host_addresses", None)
    if function is None or list(inspect.signature(function).parameters) != ["use_ipv4", "use_ipv6"]:
        return ["aioice.ice.get_host_addresses(use_ipv4, use_ipv6)"]
    gather = getattr(getattr(aioice_ice, "Connection", None), "gather_candidates", None)
    if gather is None or "get_host_addresses" not in gather.__code__.co_names:
        return ["aioice.ice.Connection.gather_candidates calling get_host_addresses"]
    return []


def install_local_filter() -> bool:
    """Make ``server.ice_addresses`` apply while candidates are gathered; returns whether it could (once)."""
    if aioice_ice.get_host_addresses is _filtered_host_addresses:
        return True
    missing = missing_internals()
    if missing:
        logger.warning("aioice lacks %s, which gateway.transports.ice relies on: server.ice_addresses only "
                       "filters the answer's candidates, and every interface is still used (see the aiortc pin "
                       "in pyproject.toml)", ", ".join(missing))
        return False
    aioice_ice.get_host_addresses = _filtered_host_addresses
    return True


def local_filter_installed() -> bool:
    return aioice_ice.get_host_addresses is _filtered_host_addresses


@contextlib.contextmanager
def gathering_on(networks: tuple[Network, ...]) -> Iterator[None]:
    """Within this block (and tasks it starts), host candidates are gathered only on ``networks`` (empty: all)."""
    token = _gathering_on.set(networks)
    try:
        yield
    finally:
        _gathering_on.reset(token)


def filter_local_candidates(answer: str, networks: tuple[Network, ...]) -> str:
    """The answer without host candidates outside ``networks`` (the fallback when gathering cannot be limited)."""
    if not networks:
        return answer
    kept = []
    for line in answer.splitlines():
        fields = line.split()
        if line.startswith("a=candidate:") and len(fields) >= 8 and fields[7] == "host" and not _in(fields[4],
                                                                                                     networks):
            continue
        kept.append(line)
    return "\r\n".join(kept) + "\r\n"


def local_addresses_available(networks: tuple[Network, ...]) -> list[str]:
    """This machine's addresses within ``networks`` (to warn at start-up when there are none)."""
    return [a for a in _aioice_host_addresses(True, True) if _in(a, networks)]
