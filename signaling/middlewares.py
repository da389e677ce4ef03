"""The aiohttp app every signaling surface is built on (a single-process gateway and a front alike)."""

from __future__ import annotations

from aiohttp import web

from gateway.config import GatewayConfig
from signaling.auth import auth_middleware
from signaling.cors import cors_middleware
from signaling.errors import json_errors
from signaling.limits import limits_middleware

#: Room for a multipart form's boundaries and headers around the largest SDP offer accepted.
FORM_OVERHEAD_BYTES = 4096


def signaling_app(config: GatewayConfig) -> web.Application:
    """An app with the signaling middlewares, outermost first: CORS (its headers go on errors too), JSON
    errors, the per-client limits (before auth, so that refused credentials count too), auth.

    Requests a front process forwarded (:mod:`signaling.internal`) pass the limits and auth, which the
    front already applied. Add the routes with :func:`signaling.routes.setup_routes`.
    """
    return web.Application(
        middlewares=[cors_middleware(config.server.allow_origins), json_errors, limits_middleware(config.limits),
                     auth_middleware(config)],
        client_max_size=config.limits.max_sdp_bytes + FORM_OVERHEAD_BYTES,
    )
