"""Requests from this gateway's own front process (``server.workers > 1``): one token, one header.

The front starts each worker with a random token in :data:`INTERNAL_TOKEN_ENV`
and sends it in :data:`INTERNAL_HEADER` with every request it forwards. The
front has already applied CORS, the per-client limits and auth with the
caller's own address and credentials, so a worker lets such a request past
them; ``GET /internal/load`` answers only such requests.

The instances of a cluster (``cluster.redis_url``) share one more token, ``cluster.internal_token``, set on
the app under :data:`INTERNAL_TOKEN`: an instance forwards a hang-up to the instance holding the call with it
(gateway/cluster/calls.py), after checking the caller's credentials itself.
"""

from __future__ import annotations

import hmac
import os

from aiohttp import web

INTERNAL_TOKEN_ENV = "VOICE_GATEWAY_INTERNAL_TOKEN"
INTERNAL_HEADER = "X-Voice-Gateway-Internal"
#: The token a cluster's instances share (``cluster.internal_token``), when the app is one of them.
INTERNAL_TOKEN = web.AppKey("internal_token", str)


def internal_headers(token: str) -> dict[str, str]:
    """The headers the front sends with each request it forwards to a worker started with ``token``."""
    return {INTERNAL_HEADER: token}


def is_internal(request: web.Request) -> bool:
    """Whether ``request`` carries the internal token this process was started with, or its cluster's
    (compared in constant time)."""
    offered = request.headers.get(INTERNAL_HEADER)
    if offered is None:
        return False
    shared = request.app.get(INTERNAL_TOKEN)
    tokens = [token for token in (os.environ.get(INTERNAL_TOKEN_ENV), shared) if isinstance(token, str) and token]
    given = offered.encode("utf-8", "surrogatepass")
    matched = False
    for token in tokens:  # both, so the time taken does not say which one matched
        matched |= hmac.compare_digest(given, token.encode("utf-8", "surrogatepass"))
    return matched
