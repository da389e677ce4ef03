"""Errors the gateway raises to its callers (signaling maps them to HTTP)."""

from __future__ import annotations


class GatewayError(Exception):
    """A request the gateway refuses. ``code`` is stable and documented."""

    status = 400
    error_type = "invalid_request_error"

    def __init__(self, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


class InvalidOffer(GatewayError):
    status = 400


class InvalidSessionConfig(GatewayError):
    status = 400


class CallExists(GatewayError):
    """A call id given by the transport (a Twilio CallSid's) is already a live call's."""

    status = 409


class CallNotFound(GatewayError):
    status = 404

    def __init__(self, call_id: str) -> None:
        super().__init__("call_not_found", f"no call with id {call_id!r}")


class Unavailable(GatewayError):
    """Temporarily unable to take calls: at capacity, draining, engines not loaded."""

    status = 503
    error_type = "server_error"
