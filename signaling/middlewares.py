"""The aiohttp app every signaling surface is built on (a single-process gateway and a front alike)."""

from __future__ import annotations

from aiohttp import web

from gateway.config import GatewayConfig
from signaling.auth import auth_middleware
from signaling.body import BODY_LIMITS, FORM_OVERHEAD_BYTES, BodyLimits
from signaling.client_secrets import MINTER, Minter, MintRateStore, SecretStore
from signaling.cors import cors_middleware
from signaling.errors import json_errors
from signaling.hosts import host_name, hosts_middleware
from signaling.limits import LimitStore, limits_middleware


def signaling_app(config: GatewayConfig, *, secrets: SecretStore | None = None, limits: LimitStore | None = None,
                  mint_rate: MintRateStore | None = None) -> web.Application:
    """An app with the signaling middlewares, outermost first: the Host check (DNS rebinding: before anything
    else), CORS (its headers go on errors too), JSON errors, the per-client limits (before auth, so that refused
    credentials count too), auth.

    Requests a front process forwarded (:mod:`signaling.internal`) pass the limits and auth, which the
    front already applied. Add the routes with :func:`signaling.routes.setup_routes`. ``secrets``, ``limits`` and
    ``mint_rate`` are where client secrets, the per-client call limits and the mint rate are kept (default: in
    this process; a cluster shares them).
    """
    server = config.server
    minter = Minter(config.auth, config.limits, secrets=secrets, rate=mint_rate)
    app = web.Application(
        middlewares=[hosts_middleware(_allowed_hosts(config), bind_host=server.host),
                     cors_middleware(server.allow_origins), json_errors, limits_middleware(config.limits, limits),
                     auth_middleware(config, minter)],
        client_max_size=config.limits.max_sdp_bytes + FORM_OVERHEAD_BYTES,
    )
    app[BODY_LIMITS] = BodyLimits.from_config(config.limits)
    app[MINTER] = minter
    return app


def _allowed_hosts(config: GatewayConfig) -> tuple[str, ...]:
    """``server.allowed_hosts``, and the name Twilio calls (``telephony.public_host``) when one is set."""
    public = host_name(config.telephony.public_host) if config.telephony.public_host else None
    return (*config.server.allowed_hosts, public) if public else config.server.allowed_hosts
