"""Per-call session settings, changed by ``session.update`` or the offer's session part.

Accepts the GA shape (``audio.input.turn_detection``) and the older beta shape
(``turn_detection`` at session level). Unknown keys are ignored, as OpenAI
does; known keys with bad values raise :class:`InvalidSession` naming the key.
Fields listed in ``gateway.pinned`` (a client secret pins them: signaling/bound_session.py)
cannot be changed afterwards: :class:`PinnedField`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gateway.config import GatewayConfig
from gateway.protocol.tools import AUTO, FunctionTool, InvalidTool, ToolChoice, parse_tool_choice, parse_tools

MODALITIES = (("audio",), ("text",), ("audio", "text"), ("text", "audio"))


class InvalidSession(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


class PinnedField(InvalidSession):
    """A ``session.update`` would change a field the call's client secret pinned (``session_field_pinned``)."""


#: The fields ``gateway.pinned`` may name: the attribute each is, and the ``param`` an error names.
PINNABLE = {
    "instructions": ("instructions", "session.instructions"),
    "agent": ("agent", "session.agent"),
    "voice": ("voice", "session.audio.output.voice"),
    "turn_detection": ("turn", "session.audio.input.turn_detection"),
    "tools": ("tools", "session.tools"),
    "tool_choice": ("tool_choice", "session.tool_choice"),
}


@dataclass(frozen=True)
class AudioFormat:
    """An audio format of the GA ``audio.input.format`` / ``audio.output.format`` shape.

    ``audio/pcm`` is 16-bit little-endian mono PCM at ``rate`` (24 kHz on the Realtime
    WebSocket, as OpenAI's); ``audio/pcmu`` / ``audio/pcma`` are G.711 μ-law / A-law at
    8 kHz. Only transports that carry audio in events use it (a WebSocket); WebRTC
    negotiates its codec in the SDP.
    """

    type: str
    rate: int

    def __post_init__(self) -> None:
        if (self.type, self.rate) not in AUDIO_FORMATS:
            raise ValueError(f"unsupported audio format {self.type!r} at {self.rate} Hz")

    @property
    def sample_bytes(self) -> int:
        """Bytes per sample on the wire."""
        return 2 if self.type == "audio/pcm" else 1

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "rate": self.rate}


AUDIO_FORMATS = frozenset({("audio/pcm", 24_000), ("audio/pcmu", 8_000), ("audio/pcma", 8_000)})
PCM_24K = AudioFormat("audio/pcm", 24_000)


@dataclass(frozen=True)
class TurnSettings:
    threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int
    create_response: bool
    interrupt_response: bool
    enabled: bool = True  # False: turn_detection null, the client commits the input buffer itself


@dataclass(frozen=True)
class SessionSettings:
    instructions: str
    voice: str
    agent: str
    turn: TurnSettings
    pinned: frozenset[str] = frozenset()  # fields no session.update may change (a client secret pinned them)
    tools: tuple[FunctionTool, ...] = ()
    tool_choice: ToolChoice = AUTO
    output_modalities: tuple[str, ...] = ("audio",)  # ("text",): replies are text events, not speech
    input_format: AudioFormat = PCM_24K  # audio in events (a WebSocket); WebRTC's is the SDP's
    output_format: AudioFormat = PCM_24K
    type: str = "realtime"  # "transcription": transcripts only, never a response

    @property
    def responds(self) -> bool:
        """Whether the session may respond at all (a transcription session never does)."""
        return self.type == "realtime"

    @classmethod
    def from_config(cls, config: GatewayConfig, voices: tuple[str, ...]) -> SessionSettings:
        td = config.turn_detection
        return cls(
            instructions=config.session.instructions,
            voice=config.session.voice or voices[0],
            agent=config.session.agent,
            turn=TurnSettings(td.threshold, td.prefix_padding_ms, td.silence_duration_ms, td.create_response,
                              td.interrupt_response),
        )

    def updated(self, session: Any, *, voices: tuple[str, ...], agents: tuple[str, ...]) -> SessionSettings:
        """A copy with ``session`` (a ``session.update`` payload) applied; raises InvalidSession."""
        if not isinstance(session, dict):
            raise InvalidSession("session", "must be an object")
        result = self
        if "instructions" in session:
            instructions = session["instructions"]
            if not isinstance(instructions, str) or len(instructions) > 16_000:
                raise InvalidSession("session.instructions", "must be a string of at most 16000 characters")
            result = replace(result, instructions=instructions)
        audio = _object(session.get("audio"))
        output = _object(audio.get("output"))
        voice = session.get("voice", output.get("voice"))
        if voice is not None:
            if voice not in voices:
                raise InvalidSession("session.audio.output.voice",
                                     f"unknown voice {voice!r}; available: {', '.join(voices)}")
            result = replace(result, voice=voice)
        if "agent" in session:
            if session["agent"] not in agents:
                raise InvalidSession("session.agent",
                                     f"agent {session['agent']!r} is not allowed; allowed: {', '.join(agents)}")
            result = replace(result, agent=session["agent"])
        result = _apply_input(result, session, _object(audio.get("input")))
        if "format" in output:
            result = replace(result, output_format=_format(output["format"], "session.audio.output.format"))
        if "type" in session:
            if session["type"] not in ("realtime", "transcription"):
                raise InvalidSession("session.type", "must be 'realtime' or 'transcription'")
            result = replace(result, type=session["type"])
        result = _tools_applied(result, session)
        for name in self.pinned:
            attribute, param = PINNABLE[name]
            if getattr(result, attribute) != getattr(self, attribute):
                raise PinnedField(param, f"{name} was pinned by the client secret this call was placed with")
        return replace(result, pinned=self.pinned | _pins(_object(session.get("gateway"))))

    def to_dict(self, session_id: str, voices: tuple[str, ...], *, event_audio: bool = False) -> dict[str, Any]:
        """The GA session object. ``event_audio``: the call's audio travels in events (a WebSocket), in the
        session's formats; else WebRTC's (16 kHz in, 48 kHz out: what the gateway decodes and encodes)."""
        input_format = self.input_format.to_dict() if event_audio else {"type": "audio/pcm", "rate": 16000}
        output_format = self.output_format.to_dict() if event_audio else {"type": "audio/pcm", "rate": 48000}
        if self.type == "transcription":
            return self._transcription_dict(session_id, input_format)
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": "voice-gateway",
            "output_modalities": list(self.output_modalities),
            "instructions": self.instructions,
            "tools": [tool.to_dict() for tool in self.tools],
            "tool_choice": self.tool_choice.to_wire(),
            "agent": self.agent,
            **({"gateway": {"pinned": sorted(self.pinned)}} if self.pinned else {}),
            "audio": {
                "input": {"format": input_format, "transcription": {"model": "whisper"},
                          "turn_detection": self._turn_dict()},
                "output": {"format": output_format, "voice": self.voice, "voices": list(voices)},
            },
        }

    def _transcription_dict(self, session_id: str, input_format: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": session_id,
            **({"gateway": {"pinned": sorted(self.pinned)}} if self.pinned else {}),
            "audio": {"input": {"format": input_format, "transcription": {"model": "whisper"},
                                "turn_detection": self._turn_dict()}},
        }

    def _turn_dict(self) -> dict[str, Any] | None:
        if not self.turn.enabled:
            return None
        return {
            "type": "server_vad",
            "threshold": self.turn.threshold,
            "prefix_padding_ms": self.turn.prefix_padding_ms,
            "silence_duration_ms": self.turn.silence_duration_ms,
            "create_response": self.turn.create_response,
            "interrupt_response": self.turn.interrupt_response,
        }


def _tools_applied(settings: SessionSettings, session: dict[str, Any]) -> SessionSettings:
    """``tools``, ``tool_choice`` and ``output_modalities`` of a ``session.update`` applied to ``settings``."""
    try:
        tools = parse_tools(session["tools"], "session.tools") if "tools" in session else settings.tools
        if "tool_choice" in session:
            choice = parse_tool_choice(session["tool_choice"], "session.tool_choice", tools)
        elif settings.tool_choice.function and settings.tool_choice.function not in {t.name for t in tools}:
            choice = AUTO  # the forced function was removed with the tools
        else:
            choice = settings.tool_choice
    except InvalidTool as exc:
        raise InvalidSession(exc.param, str(exc).partition(": ")[2]) from exc
    modalities = settings.output_modalities
    if "output_modalities" in session:
        modalities = parse_modalities(session["output_modalities"], "session.output_modalities")
    return replace(settings, tools=tools, tool_choice=choice, output_modalities=modalities)


def parse_modalities(value: Any, param: str) -> tuple[str, ...]:
    """``output_modalities``: ``["audio"]`` or ``["text"]`` (audio always carries its transcript, as GA says)."""
    if not isinstance(value, list) or tuple(value) not in MODALITIES:
        raise InvalidSession(param, "must be [\"audio\"] or [\"text\"]")
    return ("text",) if tuple(value) == ("text",) else ("audio",)


def _object(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (unknown shapes are ignored)."""
    return value if isinstance(value, dict) else {}


def _pins(gateway: dict[str, Any]) -> frozenset[str]:
    """``gateway.pinned``: fields to pin from now on (pins are only ever added)."""
    pinned = gateway.get("pinned", [])
    if not isinstance(pinned, list) or not all(isinstance(name, str) and name in PINNABLE for name in pinned):
        raise InvalidSession("session.gateway.pinned", f"must be a list of {', '.join(PINNABLE)}")
    return frozenset(pinned)


def _apply_input(result: SessionSettings, session: dict[str, Any], input_: dict[str, Any]) -> SessionSettings:
    """``audio.input``'s format and turn detection (or the beta shape's session-level ``turn_detection``)."""
    if "format" in input_:
        result = replace(result, input_format=_format(input_["format"], "session.audio.input.format"))
    if "turn_detection" in input_:
        return replace(result, turn=_turn(result.turn, input_["turn_detection"], "session.audio.input.turn_detection"))
    if "turn_detection" in session:
        return replace(result, turn=_turn(result.turn, session["turn_detection"], "session.turn_detection"))
    return result


def _format(value: Any, param: str) -> AudioFormat:
    """A GA audio format object: ``{"type": "audio/pcm", "rate": 24000}``, ``{"type": "audio/pcmu"}`` …"""
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise InvalidSession(param, "must be an object with a 'type'")
    kind = value["type"]
    rate = value.get("rate", 24_000 if kind == "audio/pcm" else 8_000)
    if isinstance(rate, bool) or not isinstance(rate, int) or (kind, rate) not in AUDIO_FORMATS:
        raise InvalidSession(param, "supported: audio/pcm at 24000 Hz, audio/pcmu, audio/pcma")
    return AudioFormat(kind, rate)


def _turn(current: TurnSettings, value: Any, param: str) -> TurnSettings:
    if value is None:  # GA: no turn detection; the client commits (input_audio_buffer.commit)
        return replace(current, enabled=False)
    if not isinstance(value, dict):
        raise InvalidSession(param, "must be an object")
    kind = value.get("type", "server_vad")
    # semantic_vad (the default of OpenAI's Agents SDK) is served by server_vad; session.updated says so.
    if kind not in ("server_vad", "semantic_vad"):
        raise InvalidSession(f"{param}.type", f"unsupported turn detection {kind!r}; only 'server_vad'")
    turn = replace(current, enabled=True)
    checks: list[tuple[str, type, float, float]] = [
        ("threshold", float, 0.01, 0.99),
        ("prefix_padding_ms", int, 0, 2000),
        ("silence_duration_ms", int, 100, 5000),
    ]
    for key, kind_, low, high in checks:
        if key in value:
            raw = value[key]
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not low <= raw <= high:
                raise InvalidSession(f"{param}.{key}", f"must be a number between {low} and {high}")
            if kind_ is int and raw != int(raw):
                raise InvalidSession(f"{param}.{key}", "must be a whole number")
            turn = replace(turn, **{key: kind_(raw)})
    for key in ("create_response", "interrupt_response"):
        if key in value:
            if not isinstance(value[key], bool):
                raise InvalidSession(f"{param}.{key}", "must be true or false")
            turn = replace(turn, **{key: value[key]})
    return turn
