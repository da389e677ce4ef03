"""turn_detection in session.update: server_vad, semantic_vad with eagerness, and the gateway extension."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import GatewayConfig
from gateway.protocol.session_settings import InvalidSession, SessionSettings

VOICES = ("joe",)


def updated(turn_detection: Any, settings: SessionSettings | None = None) -> SessionSettings:
    base = settings or SessionSettings.from_config(GatewayConfig(), VOICES)
    return base.updated({"audio": {"input": {"turn_detection": turn_detection}}}, voices=VOICES, agents=("echo",))


def reported(settings: SessionSettings) -> dict[str, Any]:
    turn_detection: dict[str, Any] = settings.to_dict("sess_1", VOICES)["audio"]["input"]["turn_detection"]
    return turn_detection


def test_semantic_vad_is_kept_and_reported_with_its_eagerness() -> None:
    settings = updated({"type": "semantic_vad", "eagerness": "high"})
    assert settings.turn.type == "semantic_vad" and settings.turn.eagerness == "high"
    wire = reported(settings)
    assert wire["type"] == "semantic_vad" and wire["eagerness"] == "high"
    assert "silence_duration_ms" not in wire and "threshold" not in wire
    back = updated({"type": "server_vad", "silence_duration_ms": 700}, settings)
    assert reported(back)["type"] == "server_vad" and reported(back)["silence_duration_ms"] == 700
    assert updated({"create_response": False}, settings).turn.type == "semantic_vad"  # type kept when absent


def test_the_gateway_extension_sets_false_interruptions_and_echo_cancellation() -> None:
    settings = updated({"type": "server_vad", "gateway": {
        "false_interruption": {"enabled": False, "timeout_ms": 800}, "echo_cancellation": True}})
    assert not settings.turn.false_interruption and settings.turn.false_interruption_timeout_ms == 800
    assert settings.turn.echo_cancellation
    assert reported(settings)["gateway"] == {"false_interruption": {"enabled": False, "timeout_ms": 800},
                                             "echo_cancellation": True}
    default = SessionSettings.from_config(GatewayConfig(), VOICES)
    assert default.turn.false_interruption and not default.turn.echo_cancellation  # on, and off, by default


@pytest.mark.parametrize(("turn_detection", "param"), [
    ({"type": "semantic_vad", "eagerness": "eager"}, "session.audio.input.turn_detection.eagerness"),
    ({"type": "push_to_talk"}, "session.audio.input.turn_detection.type"),
    ({"gateway": {"false_interruption": {"timeout_ms": 50}}},
     "session.audio.input.turn_detection.gateway.false_interruption.timeout_ms"),
    ({"gateway": {"false_interruption": True}}, "session.audio.input.turn_detection.gateway.false_interruption"),
    ({"gateway": {"echo_cancellation": "yes"}}, "session.audio.input.turn_detection.gateway.echo_cancellation"),
    ({"gateway": []}, "session.audio.input.turn_detection.gateway"),
])
def test_bad_values_name_their_key(turn_detection: Any, param: str) -> None:
    with pytest.raises(InvalidSession) as raised:
        updated(turn_detection)
    assert raised.value.param == param
