"""Which inference lane a gRPC request runs in.

A plain Riva client's request is batch work (the batch lane, counted against ``speech.max_jobs``).
A gateway using this one as its remote engine (:mod:`engines.remote`) marks its calls' requests with
metadata ``x-gateway-lane``: ``final`` / ``partial`` (a call's end-of-turn or interim decode), ``first`` /
``live`` (a reply's first or later clause). Those run at the live priorities, next to this gateway's own
calls, and are not counted as speech jobs. Only an authenticated client (when keys are configured) can
send them; without keys the gateway is open anyway (docs/security.md).
"""

from __future__ import annotations

from typing import Any

from engines.remote import LANE_KEY

LIVE_LANES = ("final", "partial", "first", "live")


def lane_of(context: Any) -> str | None:
    """The live lane the request asks for, or None (batch)."""
    for key, value in context.invocation_metadata() or ():
        if key == LANE_KEY and value in LIVE_LANES:
            return str(value)
    return None
