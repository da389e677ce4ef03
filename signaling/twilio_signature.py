"""Twilio's request signature (``X-Twilio-Signature``): proof that a request came from Twilio.

Twilio signs every webhook and every Media Streams WebSocket upgrade with the account's Auth
Token: the signature is base64(HMAC-SHA1(token, URL + the POST parameters)), the URL exactly as
Twilio requested it (scheme, host, port, path, query), the parameters sorted by name, each name
followed by its value (a name with several values: its sorted distinct values in turn). A
WebSocket upgrade has no parameters: the signature covers its ``wss://`` URL alone.

What the gateway sees of that URL can differ from what Twilio requested: a TLS proxy in front
turns ``https``/``wss`` into plain HTTP, and Twilio has signed URLs both with and without the
default port. So a signature is checked against the few URLs the request could have been made
to — both schemes of its kind, with and without the port — as Twilio's own ``RequestValidator``
does for the port. That widens nothing an attacker can use: each candidate still needs the token.
Signatures are compared in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

SIGNATURE_HEADER = "X-Twilio-Signature"
_DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}
_SCHEMES = {"https": ("https", "http"), "http": ("https", "http"), "wss": ("wss", "ws"), "ws": ("wss", "ws")}


def signature(token: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """The ``X-Twilio-Signature`` Twilio sends for a request to ``url`` with POST ``params``."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    signed = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    digest = hmac.new(token.encode(), signed.encode("utf-8", "surrogatepass"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def candidate_urls(url: str) -> list[str]:
    """The URLs a request seen as ``url`` may have been signed for (see the module doc)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    urls: list[str] = []
    for scheme in _SCHEMES.get(parts.scheme, (parts.scheme,)):
        ports = {parts.port or _DEFAULT_PORTS.get(scheme)}
        if parts.port in (None, _DEFAULT_PORTS.get(scheme)):
            ports.add(None)
        for port in sorted(ports, key=lambda p: p or 0):
            netloc = host if port is None else f"{host}:{port}"
            candidate = urlunsplit((scheme, netloc, parts.path, parts.query, ""))
            if candidate not in urls:
                urls.append(candidate)
    return urls


def is_valid(token: str, url: str, params: Iterable[tuple[str, str]], given: str) -> bool:
    """Whether ``given`` is Twilio's signature of a request seen as ``url`` with ``params``."""
    pairs = list(params)
    expected = given.strip().encode("ascii", "replace")
    valid = False
    for candidate in candidate_urls(url):  # every candidate, so the time taken does not say which matched
        valid |= hmac.compare_digest(signature(token, candidate, pairs).encode("ascii"), expected)
    return valid
