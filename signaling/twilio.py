"""Twilio phone calls, the HTTP side: the voice webhook's TwiML and the signature on every Twilio request.

A Twilio number's "A call comes in" webhook points at ``POST /twilio/voice``. The gateway answers
TwiML that connects the call to a bidirectional Media Stream on this gateway::

    <Response><Connect><Stream url="wss://HOST/twilio/media-stream"/></Connect></Response>

HOST is ``telephony.public_host``, else the request's ``Host``. Twilio then opens the WebSocket
``/twilio/media-stream`` (:mod:`gateway.transports.twilio` speaks it). Twilio allows no query in a
Stream URL, so what the webhook URL's query chooses (``?agent=…&instructions=…``, checked against
``telephony.agents`` / ``telephony.instructions`` here, 400 when not allowed) travels as
``<Parameter>``s, which Twilio hands back in the stream's ``start.customParameters``.

With ``telephony.twilio_auth_token`` set, both requests must carry a valid ``X-Twilio-Signature``
(:mod:`signaling.twilio_signature`) or are refused ``403`` (``missing_twilio_signature`` /
``invalid_twilio_signature``) before anything else is done: the webhook's form is read (bounded by
``telephony.max_webhook_bytes`` and the body timeout) only to check it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import parse_qsl
from xml.sax.saxutils import quoteattr

from aiohttp import hdrs, web

from gateway.config.telephony import ParameterNotAllowed, TelephonyConfig, is_public_host
from signaling.body import read_body
from signaling.errors import ApiError
from signaling.internal import is_internal
from signaling.service import REGISTRY, SocketRequest
from signaling.twilio_signature import SIGNATURE_HEADER, is_valid

logger = logging.getLogger(__name__)

TWILIO_VOICE_PATH = "/twilio/voice"
TWILIO_STREAM_PATH = "/twilio/media-stream"
#: The customParameters the webhook's query may set (the rest of its query is ignored).
CHOICES = ("agent", "instructions")

TELEPHONY = web.AppKey("telephony", TelephonyConfig)


def request_url(request: web.Request, public_host: str, *, websocket: bool) -> str:
    """The URL Twilio requested, as far as the gateway can tell: ``public_host`` (else ``Host``), the raw path."""
    scheme = "wss" if websocket else "https"
    return f"{scheme}://{public_host or request.host}{request.raw_path}"


def verify_signature(request: web.Request, telephony: TelephonyConfig, *, websocket: bool,
                     params: Iterable[tuple[str, str]] = ()) -> None:
    """Refuse (``403``) a request without Twilio's valid signature, when an auth token is configured.

    A request forwarded by this gateway's own front process (``server.workers > 1``) was checked there."""
    if not telephony.twilio_auth_token or is_internal(request):
        return
    given = request.headers.get(SIGNATURE_HEADER)
    if not given:
        logger.info("refused %s %s from %s: no %s", request.method, request.path, request.remote, SIGNATURE_HEADER)
        raise ApiError(403, "missing_twilio_signature", f"Twilio requests must carry {SIGNATURE_HEADER}")
    url = request_url(request, telephony.public_host, websocket=websocket)
    if not is_valid(telephony.twilio_auth_token, url, params, given):
        logger.info("refused %s %s from %s: bad %s for %s", request.method, request.path, request.remote,
                    SIGNATURE_HEADER, url)
        raise ApiError(403, "invalid_twilio_signature",
                       f"{SIGNATURE_HEADER} is not Twilio's signature of this request (is telephony.public_host "
                       "the host Twilio calls, and telephony.twilio_auth_token the account's Auth Token?)")


def twiml(stream_url: str, parameters: dict[str, str]) -> str:
    """The TwiML connecting a call to the bidirectional Media Stream at ``stream_url`` (XML-escaped)."""
    inner = "".join(f"<Parameter name={quoteattr(name)} value={quoteattr(value)}/>"
                    for name, value in parameters.items())
    url = quoteattr(stream_url)
    stream = f"<Stream url={url}>{inner}</Stream>" if inner else f"<Stream url={url}/>"
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Connect>{stream}</Connect></Response>\n'


async def _form(request: web.Request, max_bytes: int) -> list[tuple[str, str]]:
    if request.method != hdrs.METH_POST:
        return []
    body = await read_body(request, max_bytes, code="body_too_large")
    if body and request.content_type != "application/x-www-form-urlencoded":
        raise ApiError(415, "unsupported_media_type",
                       f"Twilio posts application/x-www-form-urlencoded, not {request.content_type!r}")
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                         max_num_fields=1000)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "invalid_form", f"the webhook's form is not valid UTF-8 form data: {exc}") from exc


async def twilio_voice(request: web.Request) -> web.Response:
    """``POST`` (or ``GET``) ``/twilio/voice``: TwiML connecting the call to this gateway's media stream."""
    telephony = request.app[TELEPHONY]
    params = await _form(request, telephony.max_webhook_bytes)
    verify_signature(request, telephony, websocket=False, params=params)
    chosen = {name: request.query[name] for name in CHOICES if request.query.get(name)}
    try:
        telephony.session_for(chosen)
    except ParameterNotAllowed as exc:
        raise ApiError(400, f"{exc.name}_not_allowed", str(exc)) from None
    host = telephony.public_host or request.host
    if not is_public_host(host):
        raise ApiError(400, "invalid_host", f"cannot build a stream URL for the host {host[:100]!r}: "
                       "set telephony.public_host")
    return web.Response(text=twiml(f"wss://{host}{TWILIO_STREAM_PATH}", chosen), content_type="text/xml")


async def twilio_stream(request: web.Request) -> web.StreamResponse:
    """``GET /twilio/media-stream`` (a WebSocket upgrade): signature checked, then the call service serves it."""
    verify_signature(request, request.app[TELEPHONY], websocket=True)
    if request.headers.get(hdrs.UPGRADE, "").lower() != "websocket":
        raise ApiError(400, "websocket_required", "this is Twilio's Media Streams WebSocket: send an upgrade")
    return await request.app[REGISTRY].serve_socket(request, SocketRequest(kind="twilio"))


def setup_twilio_routes(app: web.Application, telephony: TelephonyConfig) -> None:
    """Add ``/twilio/voice`` and ``/twilio/media-stream`` (served by the app's call service, kind ``twilio``)."""
    if not telephony.twilio_auth_token and telephony.public_host:
        logger.warning("telephony.twilio_auth_token is not set: anyone who reaches %s can place phone calls "
                       "(Twilio's requests are not checked)", telephony.public_host)
    app[TELEPHONY] = telephony
    app.router.add_post(TWILIO_VOICE_PATH, twilio_voice)
    app.router.add_get(TWILIO_VOICE_PATH, twilio_voice, allow_head=False)
    app.router.add_get(TWILIO_STREAM_PATH, twilio_stream, allow_head=False)
