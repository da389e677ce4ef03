"""``[telephony]``: phone calls over Twilio Media Streams (signaling/twilio.py, gateway/transports/twilio.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.config.errors import ConfigError, require

#: A public host as Twilio reaches it: a DNS name or [IPv6] address, an optional port, nothing else.
_PUBLIC_HOST = re.compile(r"([a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])"
                          r"(:\d{1,5})?", re.IGNORECASE)
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def is_public_host(value: str) -> bool:
    """Whether ``value`` is ``host[:port]`` (a name or [IPv6] address; no scheme, path or userinfo)."""
    return bool(_PUBLIC_HOST.fullmatch(value))


#: Twilio's limit on one ``<Parameter>``: its name and value together (docs: Stream noun).
MAX_PARAMETER_CHARS = 500


@dataclass(frozen=True)
class TelephonyConfig:
    """Who may send phone calls, how the gateway is reached, what a call may choose, and its limits.

    ``customParameters`` (TwiML ``<Parameter>``s, or the query of the ``/twilio/voice`` webhook URL that the
    gateway turns into them) choose among these only: ``agent`` one of :attr:`agents`, ``instructions`` the
    *name* of one of :attr:`instructions` — never free text or a URL, since without a signature anyone can
    open a media stream.
    """

    # Twilio's account Auth Token: set, every request (the webhook and the WebSocket upgrade) must carry a valid
    # X-Twilio-Signature, else 403. A secret: masked by config show.
    twilio_auth_token: str = field(default="", repr=False)
    public_host: str = ""  # host[:port] Twilio reaches the gateway at (the Stream URL, the signed URL); "": Host
    agent: str = ""  # the agent of a phone call that chooses none; "": session.agent
    agents: tuple[str, ...] = ()  # agents customParameters.agent may choose (besides telephony.agent)
    # name = text: customParameters.instructions names one; the one named "default" is used when none is named
    instructions: tuple[tuple[str, str], ...] = ()
    max_message_bytes: int = 16 * 1024  # one WebSocket message (a 20 ms media message is about 250 bytes)
    start_timeout_seconds: float = 5.0  # from the upgrade to Twilio's `start` message
    max_pending_marks: int = 256  # marks sent and not yet echoed (about 50 s of 20 ms clauses); beyond: dropped
    max_webhook_bytes: int = 64 * 1024  # the form Twilio POSTs to /twilio/voice (about 1.5 KB in practice)

    def __post_init__(self) -> None:
        token = self.twilio_auth_token
        require(token == "" or (token.isascii() and token.isprintable() and len(token) >= 16),
                "telephony.twilio_auth_token", "must be printable ASCII of at least 16 characters (Twilio's are 32)")
        require(self.public_host == "" or is_public_host(self.public_host), "telephony.public_host",
                f"{self.public_host!r} is not host[:port] (no scheme, no path)")
        for name, text in self.instructions:
            require(bool(_NAME.fullmatch(name)), "telephony.instructions",
                    f"{name!r}: names are 1..64 letters, digits, '_', '.' or '-'")
            require(len(text) <= 16_000, "telephony.instructions", f"{name!r}: at most 16000 characters")
        require(len({name for name, _ in self.instructions}) == len(self.instructions), "telephony.instructions",
                "names must be unique")
        require(1024 <= self.max_message_bytes <= 1024 * 1024, "telephony.max_message_bytes", "must be 1 KiB..1 MiB")
        require(0.5 <= self.start_timeout_seconds <= 60, "telephony.start_timeout_seconds", "must be 0.5..60")
        require(1 <= self.max_pending_marks <= 10_000, "telephony.max_pending_marks", "must be 1..10000")
        require(1024 <= self.max_webhook_bytes <= 1024 * 1024, "telephony.max_webhook_bytes", "must be 1 KiB..1 MiB")

    def check_agents(self, enabled: set[str]) -> None:
        """Raise :class:`ConfigError` unless every agent named here is one calls may select (``enabled``)."""
        if self.agent:
            require(self.agent in enabled, "telephony.agent", f"agent {self.agent!r} is not enabled "
                    "(list it in agents.allowed, or configure it)")
        for name in self.agents:
            require(name in enabled, "telephony.agents", f"agent {name!r} is not enabled "
                    "(list it in agents.allowed, or configure it)")

    def session_for(self, parameters: Mapping[str, object]) -> dict[str, Any]:
        """The session a phone call starts with, from its ``customParameters`` (other names are ignored).

        ``agent`` must be :attr:`agent` or one of :attr:`agents`; ``instructions`` the name of one of
        :attr:`instructions` (without one, the preset named ``default`` if there is one, else
        ``session.instructions``). Raises :class:`ParameterNotAllowed` otherwise."""
        session: dict[str, Any] = {}
        agent = parameters.get("agent")
        if agent is not None and agent != "":
            if not isinstance(agent, str) or agent not in (self.agent, *self.agents):
                raise ParameterNotAllowed("agent", f"the agent {str(agent)[:64]!r} is not one phone calls may choose"
                                          f" (telephony.agents: {', '.join(self.agents) or 'none'})")
            session["agent"] = agent
        elif self.agent:
            session["agent"] = self.agent
        presets = dict(self.instructions)
        name = parameters.get("instructions")
        if name is not None and name != "":
            if not isinstance(name, str) or name not in presets:
                raise ParameterNotAllowed("instructions", f"{str(name)[:64]!r} names no telephony.instructions preset"
                                          f" ({', '.join(presets) or 'none'})")
            session["instructions"] = presets[name]
        elif "default" in presets:
            session["instructions"] = presets["default"]
        return session


class ParameterNotAllowed(ValueError):
    """A call's ``customParameters`` chose what the configuration does not allow; ``name`` is the parameter."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


__all__ = ["MAX_PARAMETER_CHARS", "ConfigError", "ParameterNotAllowed", "TelephonyConfig", "is_public_host"]
