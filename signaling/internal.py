"""Requests from this gateway's own front process (``server.workers > 1``): one token, one header.

The front starts each worker with a random token in :data:`INTERNAL_TOKEN_ENV`
and sends it in :data:`INTERNAL_HEADER` with every request it forwards. The
front has already applied CORS, the per-client limits and auth with the
caller's own address and credentials, so a worker lets such a request past
them; ``GET /internal/load`` answers only such requests.
"""

from __future__ import annotations

import hmac
import os

from aiohttp import web

INTERNAL_TOKEN_ENV = "VOICE_GATEWAY_INTERNAL_TOKEN"
INTERNAL_HEADER = "X-Voice-Gateway-Internal"


def internal_headers(token: str) -> dict[str, str]:
    """The headers the front sends with each request it forwards to a worker started with ``token``."""
    return {INTERNAL_HEADER: token}


def is_internal(request: web.Request) -> bool:
    """Whether ``request`` carries the internal token this process was started with (compared in constant time)."""
    token = os.environ.get(INTERNAL_TOKEN_ENV)
    offered = request.headers.get(INTERNAL_HEADER)
    if not token or offered is None:
        return False
    return hmac.compare_digest(offered.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass"))
