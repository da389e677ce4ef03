"""Configuration: file < environment < CLI, errors that name the key, and ``config show``."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from gateway.app.cli import build_parser, main
from gateway.config import ConfigError, GatewayConfig
from gateway.config.loader import ConfigSource, load_config


def config_from(argv: list[str]) -> GatewayConfig:
    return load_config(ConfigSource.from_args(build_parser().parse_args(argv)))


def test_the_file_is_overridden_by_the_environment_which_is_overridden_by_the_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[server]\nhost = "0.0.0.0"\nport = 9001\ndrain_timeout_seconds = 5\n'
                    '[logging]\nformat = "json"\n[events]\nqueue_size = 10\nwebhook_retries = 1\n')
    monkeypatch.setenv("VOICE_GATEWAY_SERVER_PORT", "9002")
    monkeypatch.setenv("VOICE_GATEWAY_SERVER_DRAIN_TIMEOUT_SECONDS", "7.5")
    monkeypatch.setenv("VOICE_GATEWAY_LOGGING_LOG_TRANSCRIPTS", "true")
    monkeypatch.setenv("VOICE_GATEWAY_EVENTS_WEBHOOK_RETRIES", "2")
    config = config_from(["serve", "--config", str(path), "--port", "9003", "--log-format", "text",
                          "--set", "events.webhook_retries=4"])
    assert config.server.host == "0.0.0.0"  # file
    assert config.events.queue_size == 10  # file
    assert config.server.drain_timeout_seconds == 7.5  # environment over file
    assert config.logging.log_transcripts is True  # environment over default
    assert config.server.port == 9003  # command line over environment over file
    assert config.logging.format == "text"  # command line over file
    assert config.events.webhook_retries == 4  # --set over environment over file


@pytest.mark.parametrize(("toml", "env", "argv", "key"), [
    ('[server]\nport = "many"\n', {}, [], "server.port"),
    ('[events]\nwebhok_url = "http://x"\n', {}, [], "events.webhok_url"),
    ("", {"VOICE_GATEWAY_LOGGING_FORMAT": "xml"}, [], "logging.format"),
    ("", {"VOICE_GATEWAY_EVENTS_QUEUE_SIZE": "0"}, [], "events.queue_size"),
    ("", {}, ["--set", "events.webhook_url=ftp://example.org/"], "events.webhook_url"),
    ("", {}, ["--drain-timeout", "-1"], "server.drain_timeout_seconds"),
    ("", {}, ["--log-level", "loud"], "logging.level"),
])
def test_an_invalid_value_fails_naming_its_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str,
                                               env: dict[str, str], argv: list[str], key: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(toml)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        config_from(["serve", "--config", str(path), *argv])
    assert caught.value.key == key


def test_serve_with_an_invalid_value_stops_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--set", "server.drain_timeout_seconds=forever"]) == 2
    assert "server.drain_timeout_seconds" in capsys.readouterr().err


def test_config_show_prints_a_loadable_toml_file_with_secrets_masked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VOICE_GATEWAY_EVENTS_WEBHOOK_TOKEN", "hunter2")
    argv = ["--port", "9100", "--events-webhook", "https://hooks.example.org/voice", "--log-format", "json"]
    assert main(["config", "show", *argv]) == 0
    shown = capsys.readouterr().out
    assert "hunter2" not in shown
    data = tomllib.loads(shown)
    assert data["events"]["webhook_token"] == "***"
    assert data["server"]["port"] == 9100 and data["logging"]["format"] == "json"
    path = tmp_path / "shown.toml"
    path.write_text(shown.replace('"***"', '"hunter2"'))
    monkeypatch.delenv("VOICE_GATEWAY_EVENTS_WEBHOOK_TOKEN")
    assert load_config(ConfigSource(file=path)) == config_from(["serve", *argv, "--set",
                                                                 "events.webhook_token=hunter2"])


def test_config_show_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "--format", "json", "--set", "logging.log_transcripts=yes"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["logging"]["log_transcripts"] is True
    assert {"server", "engines", "limits", "logging", "events"} <= set(data)


@pytest.mark.parametrize(("argv", "key"), [
    (["--set", "engines.device=gpu"], "engines.device"),
    (["--set", "engines.whisper_compute_type=int4"], "engines.whisper_compute_type"),
    (["--set", "engines.device=cpu", "--set", "engines.whisper_compute_type=float16"],
     "engines.whisper_compute_type"),  # CTranslate2 has no float16 kernels on the CPU
    (["--set", "engines.asr_batching=sometimes"], "engines.asr_batching"),
])
def test_invalid_engine_device_settings_fail_naming_their_key(argv: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from(["serve", *argv])
    assert caught.value.key == key


def test_engine_device_settings_load_from_every_source_and_show(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    default = config_from(["serve"]).engines
    assert (default.device, default.whisper_compute_type, default.asr_batching) == ("auto", "int8", True)
    monkeypatch.setenv("VOICE_GATEWAY_ENGINES_DEVICE", "cuda")
    config = config_from(["serve", "--set", "engines.whisper_compute_type=int8_float16",
                          "--set", "engines.asr_batching=false"]).engines
    assert (config.device, config.whisper_compute_type, config.asr_batching) == ("cuda", "int8_float16", False)
    assert main(["config", "show", "--format", "json", "--set", "engines.device=cpu"]) == 0
    shown = json.loads(capsys.readouterr().out)["engines"]
    assert shown["device"] == "cpu" and shown["whisper_compute_type"] == "int8" and shown["asr_batching"] is True
