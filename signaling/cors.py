"""CORS: which web pages, served from other origins, may call the gateway.

Browsers send ``Origin`` with cross-origin requests (and with same-origin
POSTs); requests without it (curl, aiortc callers, page loads) pass untouched.
An origin is allowed when it is the gateway's own (its host and port are the
request's ``Host`` — which :mod:`signaling.hosts` has already checked is a name
of this gateway: otherwise DNS rebinding makes any page "same origin") or when
it matches one of ``server.allow_origins``:

* an exact origin, ``https://app.example.com`` (a default port may be omitted);
* an origin on any port, ``http://localhost:*``;
* ``*``: any origin.

The default allows ``localhost``, ``127.0.0.1`` and ``[::1]`` on any port,
over http and https. A preflight (``OPTIONS`` with
``Access-Control-Request-Method``) is answered here for the methods the path
has; a request from any other origin is refused with 403 before a handler runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, MutableMapping

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware
from yarl import URL

from signaling.errors import Handler, error_response

logger = logging.getLogger(__name__)

#: Request headers a cross-origin caller may send. ``X-OpenAI-Agents-SDK`` is sent by the
#: official OpenAI Agents SDK (``@openai/agents-realtime``); ``OpenAI-Beta`` by older clients.
ALLOW_HEADERS = ("Authorization", "Content-Type", "OpenAI-Beta", "X-OpenAI-Agents-SDK")
#: Response headers a cross-origin page may read: the call's URL, and when to retry.
EXPOSE_HEADERS = ("Location", "Retry-After")
MAX_AGE_SECONDS = 600

_DEFAULT_PORTS = {"http": 80, "https": 443}


class OriginPolicy:
    """Decides whether a request's ``Origin`` may call the gateway."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.any = False
        self._exact: set[tuple[str, str, int | None]] = set()
        self._any_port: set[tuple[str, str]] = set()
        for pattern in patterns:
            if pattern == "*":
                self.any = True
            elif pattern.endswith(":*"):
                scheme, host, _ = _split(pattern[:-2])
                self._any_port.add((scheme, host))
            else:
                self._exact.add(_split(pattern))

    def allows(self, origin: str, host: str | None) -> bool:
        """Whether ``origin`` may call a gateway that the request reached as ``host`` (its Host header, already
        checked against ``server.allowed_hosts``; None when absent)."""
        try:
            scheme, origin_host, port = _split(origin)
        except ValueError:
            return False
        if host is not None and _netloc(scheme, origin_host, port) == host.strip().lower():
            return True  # same origin
        return self.any or (scheme, origin_host, port) in self._exact or (scheme, origin_host) in self._any_port


def cors_middleware(allow_origins: Iterable[str]) -> Middleware:
    policy = OriginPolicy(allow_origins)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None:
            return await handler(request)
        if not policy.allows(origin, request.headers.get(hdrs.HOST)):
            logger.info("refused %s %s from origin %r", request.method, request.path, origin)
            return error_response(403, "invalid_request_error", "origin_not_allowed",
                                  f"requests from the origin {origin} are not allowed; "
                                  f"start the gateway with --allow-origin {origin}")
        if _is_preflight(request):
            return _preflight(request, origin)
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # redirects and the like, which json_errors lets through
            _allow(exc.headers, origin)
            raise
        _allow(response.headers, origin)
        return response

    return cors


def _is_preflight(request: web.Request) -> bool:
    """An OPTIONS preflight that no route handles itself."""
    return (request.method == hdrs.METH_OPTIONS and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
            and request.match_info.http_exception is not None)


def _preflight(request: web.Request, origin: str) -> web.StreamResponse:
    method = request.headers[hdrs.ACCESS_CONTROL_REQUEST_METHOD].strip().upper()
    unmatched = request.match_info.http_exception
    if not isinstance(unmatched, web.HTTPMethodNotAllowed):
        return error_response(404, "invalid_request_error", "not_found", f"no resource at {request.path}")
    methods = set(unmatched.allowed_methods)
    if method not in methods:
        response = error_response(405, "invalid_request_error", "method_not_allowed",
                                  f"{method} is not allowed on {request.path}")
        response.headers[hdrs.ALLOW] = ", ".join(sorted(methods))
        return response
    requested = {h.strip().lower() for h in request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS, "").split(",")}
    refused = requested - {h.lower() for h in ALLOW_HEADERS} - {""}
    if refused:
        logger.info("preflight from %r asks for headers that are not allowed: %s", origin, ", ".join(sorted(refused)))
    response = web.Response(status=204)
    _allow(response.headers, origin)
    response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = ", ".join(sorted(methods))
    response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ", ".join(ALLOW_HEADERS)
    response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = str(MAX_AGE_SECONDS)
    return response


def _allow(headers: MutableMapping[str, str], origin: str) -> None:
    headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
    headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = ", ".join(EXPOSE_HEADERS)
    headers[hdrs.VARY] = "Origin"


def _split(origin: str) -> tuple[str, str, int | None]:
    """``scheme://host[:port]`` as (scheme, host, port or None for the scheme's default)."""
    url = URL(origin.strip())
    if not url.scheme or not url.host or url.path not in ("", "/") or url.query_string or url.user:
        raise ValueError(f"not an origin: {origin!r}")
    scheme, host = url.scheme.lower(), url.host.lower()
    port = url.explicit_port
    if port == _DEFAULT_PORTS.get(scheme):
        port = None
    return scheme, host, port


def _netloc(scheme: str, host: str, port: int | None) -> str:
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"
