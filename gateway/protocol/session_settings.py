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


EAGERNESS = ("low", "medium", "high", "auto")


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
    type: str = "server_vad"  # "semantic_vad": an end-of-turn model judges each pause
    eagerness: str = "auto"  # semantic_vad only
    false_interruption: bool = True  # gateway extension: speech over a reply pauses it, a cough resumes it
    false_interruption_timeout_ms: int = 1500
    echo_cancellation: bool = False  # gateway extension: remove the gateway's own voice before VAD
    enabled: bool = True  # False: turn_detection null, the client commits the input buffer itself

    def wire(self) -> dict[str, Any]:
        """``turn_detection`` as session.updated reports it: the fields of its type, and the gateway's extension."""
        common = {"create_response": self.create_response, "interrupt_response": self.interrupt_response}
        extension = {"gateway": {
            "false_interruption": {"enabled": self.false_interruption,
                                   "timeout_ms": self.false_interruption_timeout_ms},
            "echo_cancellation": self.echo_cancellation,
        }}
        if self.type == "semantic_vad":
            return {"type": "semantic_vad", "eagerness": self.eagerness, **common, **extension}
        return {"type": "server_vad", "threshold": self.threshold, "prefix_padding_ms": self.prefix_padding_ms,
                "silence_duration_ms": self.silence_duration_ms, **common, **extension}


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
                              td.interrupt_response, td.type, td.eagerness, td.false_interruption,
                              td.false_interruption_timeout_ms, td.echo_cancellation),
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
        return self.turn.wire() if self.turn.enabled else None


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
    kind = value.get("type", current.type)
    if kind not in ("server_vad", "semantic_vad"):
        raise InvalidSession(f"{param}.type", f"unsupported turn detection {kind!r}; use server_vad or semantic_vad")
    turn = replace(current, type=kind, enabled=True)
    if "eagerness" in value:
        if value["eagerness"] not in EAGERNESS:
            raise InvalidSession(f"{param}.eagerness", f"must be one of {', '.join(EAGERNESS)}")
        turn = replace(turn, eagerness=value["eagerness"])
    checks: list[tuple[str, type, float, float]] = [
        ("threshold", float, 0.01, 0.99),
        ("prefix_padding_ms", int, 0, 2000),
        ("silence_duration_ms", int, 100, 5000),
    ]
    for key, kind_, low, high in checks:
        if key in value:
            number: dict[str, Any] = {key: _number(value[key], f"{param}.{key}", kind_, low, high)}
            turn = replace(turn, **number)
    for key in ("create_response", "interrupt_response"):
        if key in value:
            flag: dict[str, Any] = {key: _flag(value[key], f"{param}.{key}")}
            turn = replace(turn, **flag)
    if "gateway" in value:
        turn = _turn_extension(turn, value["gateway"], f"{param}.gateway")
    return turn


def _turn_extension(turn: TurnSettings, value: Any, param: str) -> TurnSettings:
    """``turn_detection.gateway``: ``false_interruption: {enabled, timeout_ms}`` and ``echo_cancellation``."""
    if not isinstance(value, dict):
        raise InvalidSession(param, "must be an object")
    if "false_interruption" in value:
        false = value["false_interruption"]
        if not isinstance(false, dict):
            raise InvalidSession(f"{param}.false_interruption", "must be an object {enabled, timeout_ms}")
        if "enabled" in false:
            turn = replace(turn, false_interruption=_flag(false["enabled"], f"{param}.false_interruption.enabled"))
        if "timeout_ms" in false:
            timeout = _number(false["timeout_ms"], f"{param}.false_interruption.timeout_ms", int, 200, 5000)
            turn = replace(turn, false_interruption_timeout_ms=int(timeout))
    if "echo_cancellation" in value:
        turn = replace(turn, echo_cancellation=_flag(value["echo_cancellation"], f"{param}.echo_cancellation"))
    return turn


def _number(raw: Any, param: str, kind: type, low: float, high: float) -> float | int:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not low <= raw <= high:
        raise InvalidSession(param, f"must be a number between {low} and {high}")
    if kind is int and raw != int(raw):
        raise InvalidSession(param, "must be a whole number")
    return int(raw) if kind is int else float(raw)


def _flag(raw: Any, param: str) -> bool:
    if not isinstance(raw, bool):
        raise InvalidSession(param, "must be true or false")
    return raw
