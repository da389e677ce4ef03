"""The signaling URLs, and the call id a ``Location`` header carries.

A call placed with ``POST /v1/realtime/calls`` is answered with ``201`` and
``Location: /v1/realtime/calls/{call_id}``; per-client limits, client secrets
and a front process read the new call's id back from it with
:func:`call_id_from_location`, never by slicing the header themselves.
"""

from __future__ import annotations

CALLS_PATH = "/v1/realtime/calls"
CALL_PATH = CALLS_PATH + "/{call_id}"  # the route of one call (hang-up)
CLIENT_SECRETS_PATH = "/v1/realtime/client_secrets"
REALTIME_PATH = "/v1/realtime"  # the Realtime WebSocket (and sideband control with ?call_id=)


def call_location(call_id: str) -> str:
    """The ``Location`` of the call ``call_id``."""
    return f"{CALLS_PATH}/{call_id}"


def call_id_from_location(location: str) -> str | None:
    """The call id in a ``Location`` made by :func:`call_location`; None for any other value."""
    prefix = CALLS_PATH + "/"
    call_id = location[len(prefix):] if location.startswith(prefix) else ""
    return call_id if call_id and "/" not in call_id else None
