"""The speech services' settings (``[speech]``), and the checks of the remote-engine and gRPC keys.

In a module of its own so that schema.py stays one screenful per section; :class:`SpeechConfig` is a
section of :class:`gateway.config.GatewayConfig` like the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gateway.config.errors import require as _require

_GRPC_URL = re.compile(r"grpcs?://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}")


@dataclass(frozen=True)
class SpeechConfig:
    """``/v1/audio/*`` and the gRPC services (docs/protocol.md "Speech services", docs/security.md)."""

    max_upload_bytes: int = 25 * 1024 * 1024  # an upload's bytes (OpenAI's limit) → 413 file_too_large
    max_audio_seconds: float = 600.0  # an upload's (or a stream's) audio → audio_too_long
    max_input_chars: int = 4096  # a text to speak (OpenAI's limit) → input_too_long
    max_jobs: int = 4  # speech jobs at once in the gateway → 503 capacity
    max_jobs_per_client: int = 2  # HTTP speech requests at once from one address → 429 too_many_jobs (0: off)
    upload_timeout_seconds: float = 60.0  # the whole upload must arrive within this → 408
    # OpenAI voice names (alloy, ash, ...) → configured voices; the names it leaves out get the first voice.
    voice_map: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _require(1024 <= self.max_upload_bytes <= 1 << 30, "speech.max_upload_bytes", "must be 1 KiB..1 GiB")
        _require(1 <= self.max_audio_seconds <= 36_000, "speech.max_audio_seconds", "must be 1..36000")
        _require(1 <= self.max_input_chars <= 1_000_000, "speech.max_input_chars", "must be 1..1000000")
        _require(1 <= self.max_jobs <= 1024, "speech.max_jobs", "must be 1..1024")
        _require(0 <= self.max_jobs_per_client <= self.max_jobs, "speech.max_jobs_per_client",
                 "must be 0 (off)..speech.max_jobs")
        _require(1 <= self.upload_timeout_seconds <= 3600, "speech.upload_timeout_seconds", "must be 1..3600")
        for name, voice in self.voice_map:
            _require(bool(name) and bool(voice), "speech.voice_map", "names and voices must not be empty")


def check_remote_engines(remote_asr: str, remote_tts: str, ca_file: str, timeout: float) -> None:
    """``engines.remote_*``: grpc://host:port or grpcs://host:port (or empty), a CA file that exists."""
    for key, url in (("remote_asr", remote_asr), ("remote_tts", remote_tts)):
        _require(url == "" or bool(_GRPC_URL.fullmatch(url)), f"engines.{key}",
                 "must be grpc://host:port or grpcs://host:port")
    _require(0.5 <= timeout <= 120, "engines.remote_timeout_seconds", "must be 0.5..120")
    _require(ca_file == "" or Path(ca_file).is_file(), "engines.remote_ca_file", f"file {ca_file!r} does not exist")


def check_grpc(port: int, cert_file: str, key_file: str) -> None:
    """``server.grpc_port`` and its TLS files (both or neither, and they exist)."""
    _require(0 <= port <= 65535, "server.grpc_port", "must be 0 (off)..65535")
    _require(bool(cert_file) == bool(key_file), "server.grpc_tls_cert_file",
             "set both server.grpc_tls_cert_file and server.grpc_tls_key_file, or neither")
    for key, path in (("grpc_tls_cert_file", cert_file), ("grpc_tls_key_file", key_file)):
        _require(path == "" or Path(path).is_file(), f"server.{key}", f"file {path!r} does not exist")
