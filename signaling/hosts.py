"""Which ``Host`` the gateway answers to: the defence against DNS rebinding.

A page on ``http://evil.example:8080`` whose name the attacker then re-points at
127.0.0.1 makes the visitor's browser send ``Host: evil.example:8080`` *and*
``Origin: http://evil.example:8080`` to a gateway on the visitor's machine. An
origin check alone calls that "same origin" (the origin's host is the request's
Host), so the page could place calls and read ``/metrics``. The browser cannot
lie about Host, though, so every request whose Host is not a name of this
gateway is refused first — ``403 host_not_allowed``, before CORS, limits or
auth — and same-origin is judged only for Hosts that passed.

Always allowed, on any port: an IP address (``127.0.0.1``, ``[::1]``,
``192.0.2.7``: a rebinding attack needs a name the attacker controls, and a
page served from an IP address is that address's own), ``localhost`` and
``server.host`` when it is a name; a request without ``Host`` (HTTP/1.0: no
browser sends one). ``server.allowed_hosts`` adds names — ``gateway.example.com``,
``*.example.com`` (its subdomains) — or ``*``: any Host, for a deployment behind a
reverse proxy that itself only forwards its own names.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from signaling.errors import Handler, error_response

logger = logging.getLogger(__name__)

LOCAL_NAMES = ("localhost",)


def host_name(host: str) -> str | None:
    """The name or address of a ``Host`` value without its port, lower case (None when malformed)."""
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        name, rest = host[1:end], host[end + 1:]
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name
    name, sep, port = host.rpartition(":")
    if not sep:
        name = port
    elif not (port.isascii() and port.isdigit()):
        return None
    return name.rstrip(".") if name else None


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    return True


class HostPolicy:
    """Decides whether a request's ``Host`` names this gateway (see the module doc)."""

    def __init__(self, allowed: Iterable[str], *, bind_host: str = "") -> None:
        self.any = False
        self._names = set(LOCAL_NAMES)
        self._suffixes: set[str] = set()
        for pattern in (*allowed, bind_host):
            name = pattern.strip().lower().rstrip(".").strip("[]")
            if name == "*":
                self.any = True
            elif name.startswith("*."):
                self._suffixes.add(name[1:])
            elif name:
                self._names.add(name)

    def allows(self, host: str | None) -> bool:
        if host is None or self.any:
            return True
        name = host_name(host)
        if name is None:
            return False
        return _is_address(name) or name in self._names or any(name.endswith(s) for s in self._suffixes)


def hosts_middleware(allowed: Iterable[str], *, bind_host: str) -> Middleware:
    policy = HostPolicy(allowed, bind_host=bind_host)

    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get(hdrs.HOST)
        if not policy.allows(host):
            logger.info("refused %s %s for Host %r from %s", request.method, request.path, host, request.remote)
            response = error_response(403, "invalid_request_error", "host_not_allowed",
                                      f"this gateway does not answer to the host {host!r}; "
                                      "add it to server.allowed_hosts")
            response.force_close()
            return response
        return await handler(request)

    return check_host
