"""Server configuration: TOML with embedded defaults that need no cloud account.

Every key, its type and default is in :data:`KEYS` (the README's table is generated from the same
names). A bad file is a :class:`~pbx.errors.ConfigError` whose message names the key. ICE servers
can be overridden from the environment (see :func:`ice_servers_from_env`).
"""

from __future__ import annotations

import ipaddress
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbx.errors import ConfigError
from pbx.sip.config import SipConfig, WebhookConfig, sip_config, webhook_config
from pbx.webrtc.config import WebRtcConfig, webrtc_config


@dataclass(frozen=True, slots=True)
class IceServer:
    urls: list[str]
    username: str | None = None
    credential: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"urls": self.urls, "username": self.username, "credential": self.credential}


@dataclass(frozen=True, slots=True)
class Config:
    http_addr: str = "0.0.0.0:8080"
    data_dir: Path = Path("pypbx-data")
    recordings_dir: Path | None = None          # default: data_dir/recordings
    dumps_dir: Path | None = None               # default: data_dir/dumps
    media_dir: Path | None = None               # default: data_dir/media
    tts_cache_dir: Path | None = None           # default: data_dir/tts-cache
    max_calls: int = 4096
    max_connections: int = 4096                 # WebSocket connections at once; beyond them HTTP 503
    max_message_bytes: int = 1 << 20            # largest WebSocket message a client may send
    download_max_bytes: int = 20_000_000
    download_timeout_secs: float = 10.0
    play_max_seconds: float = 600.0
    media_cache_bytes: int = 200_000_000
    tts_cache_bytes: int = 200_000_000          # synthesised speech kept on disk (0: no cache)
    playout_max_bytes: int = 512_000_000        # audio all calls together may hold queued to play
    asr_provider: str = "pocketsphinx"
    tts_provider: str = "espeak"
    log_level: str = "info"
    ice_servers: list[IceServer] = field(default_factory=list)
    liveness_interval_secs: float = 20.0        # WebSocket pings of a call that asked for no ping events
    invite_timeout_secs: float = 30.0           # a connection with no invite/accept/ringing by then ends
    dump_max_bytes: int = 10_000_000            # a call's dump stops at this size
    auth: str = "auto"                          # API token: "auto" (off loopback), "token" (always), "none"
    api_token: str = field(default="", repr=False)   # else PYPBX_API_TOKEN, else generated (pbx.server.auth)
    allowed_origins: list[str] = field(default_factory=list)   # browser Origins allowed; "*": any
    play_allow_networks: list[str] = field(default_factory=list)   # non-public networks play may fetch from
    dump_retention_days: float = 7.0            # dumps older than this are removed (0: kept)
    endpoint_allow_networks: list[str] = field(default_factory=list)   # non-public networks providers may reach
    provider_timeout_secs: float = 10.0         # a provider's connect, and how long it may stall
    workers: int = 0                            # server processes (0: one per core; 1: no supervisor)
    capacity_load: float = 0.8                  # fraction of the event loop calls may take (0: unchecked)
    drain_secs: float = 30.0                    # on SIGTERM, how long active calls may go on
    silero_model: str = "float"                 # "float" or "int8" (core/models; bench/RESULTS.md)
    silero_skip: bool = True                    # no silero inference for windows below the -55 dBFS floor
    silero_rate: str = "16000"                  # "16000", or "auto": 8 kHz legs on the model's 8 kHz graph
    metrics_public: bool = False                # GET /metrics without the token from loopback peers
    log_format: str = "text"                    # "text" or "json" (one object a line), with the call id
    cdr: bool = True                            # a <call id>.cdr.json record per call (pbx.server.cdr)
    sip: SipConfig = field(default_factory=SipConfig)              # [sip] (pbx.sip.config)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)  # [webhook]
    webrtc: WebRtcConfig = field(default_factory=WebRtcConfig)     # [webrtc] (pbx.webrtc.config)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.http_addr.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    def directory(self, name: str) -> Path:
        """recordings, dumps, media or tts_cache: the configured folder, else one under data_dir."""
        value = getattr(self, f"{name}_dir")
        return Path(value) if value is not None else self.data_dir / name.replace("_", "-")


# key -> (type check, description); the README documents the same keys with their defaults.
KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "http_addr": (str, "address:port of the HTTP/WebSocket listener"),
    "data_dir": (str, "folder for recordings, dumps and the media cache"),
    "recordings_dir": (str, "where recorderFile paths are confined (default data_dir/recordings)"),
    "dumps_dir": (str, "where dump=true writes JSON lines (default data_dir/dumps)"),
    "media_dir": (str, "where play may read local files (default data_dir/media)"),
    "tts_cache_dir": (str, "where synthesised speech is cached (default data_dir/tts-cache)"),
    "max_calls": (int, "concurrent calls (media engine legs)"),
    "max_connections": (int, "WebSocket connections at once; beyond them a handshake gets HTTP 503"),
    "max_message_bytes": (int, "largest WebSocket message accepted from a client"),
    "download_max_bytes": (int, "size limit of a play/ringtone download"),
    "download_timeout_secs": ((int, float), "total time limit of a download"),
    "play_max_seconds": ((int, float), "longest audio a play command may load"),
    "media_cache_bytes": (int, "decoded audio kept in the play cache"),
    "tts_cache_bytes": (int, "synthesised speech of non-streaming tts commands kept on disk, least recently used "
                             "removed first (0: no cache)"),
    "playout_max_bytes": (int, "audio all calls together may hold queued to play (16 kHz, 2 bytes a sample)"),
    "asr_provider": (str, "ASR provider when a call names none"),
    "tts_provider": (str, "TTS provider when a call names none"),
    "log_level": (str, "debug, info, warning or error"),
    "ice_servers": (list, "[[ice_servers]] tables: urls, username, credential"),
    "liveness_interval_secs": ((int, float), "WebSocket pings of a call that asked for no ping events"),
    "invite_timeout_secs": ((int, float), "a connection with no invite/accept/ringing by then ends (0: never)"),
    "dump_max_bytes": (int, "a call's dump stops at this size"),
    "dump_retention_days": ((int, float), "dumps older than this are removed, at start-up and hourly (0: kept)"),
    "auth": (str, "API token: auto (required off loopback), token (always) or none (trusted networks)"),
    "api_token": (str, "the API token (else PYPBX_API_TOKEN, else generated into data_dir/api-token)"),
    "allowed_origins": (list, "Origins a browser may connect from; \"*\" allows any"),
    "play_allow_networks": (list, "networks (CIDR) play may fetch from besides public addresses, e.g. 10.0.0.0/8"),
    "endpoint_allow_networks": (list, "networks (CIDR) an ASR/TTS endpoint or mediaPass url may reach besides "
                                      "public addresses, e.g. 127.0.0.0/8 for a speech server on this host"),
    "provider_timeout_secs": ((int, float), "ASR/TTS/mediaPass connect timeout, and how long a provider may stall"),
    "workers": (int, "call-server processes behind one supervisor (0: one per core; 1: a single process)"),
    "capacity_load": ((int, float), "fraction of a process's event loop (measured) calls may take; past it new "
                                    "calls get HTTP/SIP 503 (0: only max_calls limits)"),
    "drain_secs": ((int, float), "on SIGTERM, how long active calls may go on before they end with shutdown"),
    "silero_model": (str, "silero VAD model of every call: float, or int8 (about 1.9x cheaper batched, onsets "
                          "and offsets within 64 ms of float's for ~99 %: bench/RESULTS.md)"),
    "silero_rate": ((str, int), "silero graph: 16000 (every leg's 16 kHz audio), or auto (legs with an 8 kHz codec run "
                         "the model's 8 kHz graph on their own audio, ~0.56x the cost)"),
    "silero_skip": (bool, "true: windows below the -55 dBFS VAD floor skip silero inference (the decision is "
                          "'not speech' either way; events within 64 ms of inferring every window)"),
    "metrics_public": (bool, "true: GET /metrics needs no API token from a loopback peer (a local Prometheus "
                             "agent); others still need it"),
    "log_format": (str, "text, or json: one object a line (ts, level, logger, message, call_id, pid, exception)"),
    "cdr": (bool, "write a call record <call id>.cdr.json next to each call's recording (else in the "
                  "recordings folder)"),
    "sip": (dict, "[sip] table: addr, external_ip, rtp_ports, user_agent, trunks, accounts, and the defences "
                   "(rates, ACL, users, dial_allow, rtp_source: docs/sip-security.md) (pbx.sip.config)"),
    "webhook": (dict, "[webhook] table: url, decision_timeout_secs, timeout_secs"),
    "webrtc": (dict, "[webrtc] table: addr, addr6, external_ip, rtp_ports (pbx.webrtc.config)"),
}
PATH_KEYS = {"data_dir", "recordings_dir", "dumps_dir", "media_dir", "tts_cache_dir"}
FLOAT_KEYS = {"download_timeout_secs", "provider_timeout_secs", "play_max_seconds", "liveness_interval_secs",
              "invite_timeout_secs", "dump_retention_days", "capacity_load", "drain_secs"}


def _check(key: str, raw: Any) -> Any:
    expected, _ = KEYS[key]
    if (isinstance(raw, bool) and expected is not bool) or not isinstance(raw, expected):
        names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
        raise ConfigError(f"config key {key!r}: expected {names}, got {type(raw).__name__}")
    value: Any = raw  # isinstance against a runtime tuple narrows to object; the table guarantees the type
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key {key!r}: must be a finite number, got {value}")
    if key == "http_addr":
        _, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:   # 0: any free port
            raise ConfigError(f"config key 'http_addr': expected host:port, got {value!r}")
    if key in ("max_calls", "max_connections", "max_message_bytes", "download_max_bytes",
               "media_cache_bytes", "dump_max_bytes", "playout_max_bytes") and value <= 0:
        raise ConfigError(f"config key {key!r}: must be positive, got {value}")
    if key in ("download_timeout_secs", "play_max_seconds", "liveness_interval_secs",
               "provider_timeout_secs") and value <= 0:
        raise ConfigError(f"config key {key!r}: must be positive, got {value}")
    if key == "capacity_load" and not 0 <= value <= 1:
        raise ConfigError(f"config key 'capacity_load': must be between 0 and 1, got {value}")
    if key in ("invite_timeout_secs", "dump_retention_days", "tts_cache_bytes", "workers", "drain_secs") and value < 0:
        raise ConfigError(f"config key {key!r}: must not be negative, got {value}")
    if key == "auth" and value not in ("auto", "token", "none"):
        raise ConfigError(f"config key 'auth': expected auto, token or none, got {value!r}")
    if key == "allowed_origins" and not all(isinstance(o, str) for o in value):
        raise ConfigError("config key 'allowed_origins': expected a list of strings")
    if key in ("play_allow_networks", "endpoint_allow_networks"):
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except (TypeError, ValueError):
                raise ConfigError(f"config key {key!r}: {network!r} is not a network such as "
                                  "10.0.0.0/8") from None
    if key == "silero_model" and value not in ("float", "int8"):
        raise ConfigError(f"config key 'silero_model': expected float or int8, got {value!r}")
    if key == "silero_rate":
        value = str(value)                      # 16000 and "16000" alike
    if key == "silero_rate" and value not in ("16000", "auto"):
        raise ConfigError(f"config key 'silero_rate': expected \"16000\" or \"auto\", got {value!r}")
    if key == "log_format" and value not in ("text", "json"):
        raise ConfigError(f"config key 'log_format': expected text or json, got {value!r}")
    if key == "log_level" and value not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"config key 'log_level': expected debug, info, warning or error, got {value!r}")
    if key in PATH_KEYS:
        return Path(value)
    if key == "ice_servers":
        return [_ice_server(i, entry) for i, entry in enumerate(value)]
    if key == "sip":
        return sip_config(value)
    if key == "webhook":
        return webhook_config(value)
    if key == "webrtc":
        return webrtc_config(value)
    return float(value) if key in FLOAT_KEYS else value


def _ice_server(i: int, entry: Any) -> IceServer:
    where = f"config key 'ice_servers[{i}]'"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a table")
    urls = entry.get("urls")
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise ConfigError(f"{where}.urls: expected a string or a list of strings")
    for name in ("username", "credential"):
        if name in entry and not isinstance(entry[name], str):
            raise ConfigError(f"{where}.{name}: expected str")
    return IceServer(urls, entry.get("username"), entry.get("credential"))


def from_mapping(values: dict[str, Any]) -> Config:
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r}")
    return Config(**{key: _check(key, value) for key, value in values.items()})


def load(path: str | os.PathLike[str] | None) -> Config:
    """The embedded defaults, overlaid with the TOML file at ``path`` and the ICE environment."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                values = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    config = from_mapping(values)
    env_ice = ice_servers_from_env(os.environ)
    if env_ice is not None:
        config = from_mapping({**values, "ice_servers": [s.to_json() for s in env_ice]})
    return config


def ice_servers_from_env(env: os._Environ[str] | dict[str, str]) -> list[IceServer] | None:
    """``PYPBX_STUN_URLS`` (comma separated), ``PYPBX_TURN_URLS``, ``PYPBX_TURN_USERNAME``,
    ``PYPBX_TURN_CREDENTIAL``: when any is set, they replace the configured ICE servers."""
    stun = [u for u in env.get("PYPBX_STUN_URLS", "").split(",") if u.strip()]
    turn = [u for u in env.get("PYPBX_TURN_URLS", "").split(",") if u.strip()]
    if not stun and not turn:
        return None
    servers = []
    if stun:
        servers.append(IceServer([u.strip() for u in stun]))
    if turn:
        servers.append(IceServer([u.strip() for u in turn], env.get("PYPBX_TURN_USERNAME"),
                                 env.get("PYPBX_TURN_CREDENTIAL")))
    return servers
