"""Which inference lane a gRPC request runs in.

A plain Riva client's request is batch work (the batch lane, counted against ``speech.max_jobs``).
A gateway using this one as its remote engine (:mod:`engines.remote`) marks its calls' requests with
metadata ``x-gateway-lane``: ``final`` / ``partial`` (a call's end-of-turn or interim decode), ``first`` /
``live`` (a reply's first or later clause). Those run at the live priorities, next to this gateway's own
calls, and are not counted as speech jobs. Only an authenticated client (when keys are configured) can
send them; without keys the gateway is open anyway (docs/security.md). Batch requests count against
``speech.max_jobs_per_client`` by the caller's address (:func:`peer_client`).
"""

from __future__ import annotations

from typing import Any

from engines.remote import LANE_KEY
from signaling.limits import client_key

LIVE_LANES = ("final", "partial", "first", "live")


def lane_of(context: Any) -> str | None:
    """The live lane the request asks for, or None (batch)."""
    for key, value in context.invocation_metadata() or ():
        if key == LANE_KEY and value in LIVE_LANES:
            return str(value)
    return None


def peer_client(context: Any) -> str:
    """The caller's client key (IPv4 address, IPv6 /64), as the HTTP limits count clients."""
    peer = str(context.peer() or "")  # "ipv4:127.0.0.1:5000", "ipv6:[::1]:5000", "unix:..."
    kind, _, rest = peer.partition(":")
    host = rest.rsplit(":", 1)[0].strip("[]") if kind in ("ipv4", "ipv6") else peer
    return client_key(host)
