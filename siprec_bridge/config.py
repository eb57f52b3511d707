"""Service configuration: defaults, TOML file (``--config``) and command-line overrides.

Precedence, lowest first: built-in defaults, the TOML file, command-line flags.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

Mode = Literal["stereo", "per-leg"]
MODES: tuple[Mode, ...] = ("stereo", "per-leg")


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the key."""


def parse_host_port(value: str, *, key: str) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (``[v6]:PORT`` for IPv6)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}")
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"{key}: port {port!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"{key}: port {number} out of range")
    return host, number


def parse_port_range(value: str, *, key: str = "rtp_ports") -> tuple[int, int]:
    """Parse ``LOW-HIGH``; both even-aligned bounds are not required, the allocator aligns."""
    low, sep, high = value.partition("-")
    try:
        lo, hi = int(low), int(high)
    except ValueError:
        raise ConfigError(f"{key}: expected LOW-HIGH, got {value!r}") from None
    if not sep or not 1024 <= lo < hi <= 65535:
        raise ConfigError(f"{key}: expected 1024 <= LOW < HIGH <= 65535, got {value!r}")
    if hi - lo < 3:
        raise ConfigError(f"{key}: range {value!r} holds fewer than two RTP/RTCP port pairs")
    return lo, hi


@dataclass(frozen=True)
class BridgeConfig:
    """Everything the service needs; see ``docs/config.example.toml``."""

    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    sip_udp: bool = True
    sip_tcp: bool = True
    advertise_host: str | None = None
    rtp_low: int = 40000
    rtp_high: int = 40999
    ws_url: str = "ws://127.0.0.1:8765/"
    ws_headers: dict[str, str] = field(default_factory=dict)
    mode: Mode = "stereo"
    frame_ms: int = 20
    target_delay_ms: int = 60
    ws_queue_frames: int = 500
    user_agent: str = "siprec-bridge"
    max_calls: int = 2000

    @property
    def media_host(self) -> str:
        """The address put into SDP answers (c= and o=)."""
        if self.advertise_host:
            return self.advertise_host
        return "127.0.0.1" if self.sip_host in ("0.0.0.0", "::", "") else self.sip_host

    def validate(self) -> BridgeConfig:
        if self.mode not in MODES:
            raise ConfigError(f"mode: expected one of {', '.join(MODES)}, got {self.mode!r}")
        if not 10 <= self.frame_ms <= 200 or self.frame_ms % 10:
            raise ConfigError(
                f"frame_ms: expected a multiple of 10 from 10 to 200, got {self.frame_ms}"
            )
        if not 0 <= self.target_delay_ms <= 1000:
            raise ConfigError(f"target_delay_ms: expected 0..1000, got {self.target_delay_ms}")
        if not self.ws_url.startswith(("ws://", "wss://")):
            raise ConfigError(f"ws_url: expected ws:// or wss:// URL, got {self.ws_url!r}")
        if not (self.sip_udp or self.sip_tcp):
            raise ConfigError("sip_udp/sip_tcp: at least one SIP transport must be enabled")
        if self.max_calls < 1:
            raise ConfigError(f"max_calls: expected >= 1, got {self.max_calls}")
        return self


_TYPES: dict[str, type] = {
    f.name: type(f.default) for f in fields(BridgeConfig) if f.name != "ws_headers"
}


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML config file into flat keys of :class:`BridgeConfig`.

    ``sip_listen = "HOST:PORT"`` and ``rtp_ports = "LOW-HIGH"`` are accepted as in the CLI.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "sip_listen":
            out["sip_host"], out["sip_port"] = parse_host_port(str(value), key=key)
        elif key == "rtp_ports":
            out["rtp_low"], out["rtp_high"] = parse_port_range(str(value), key=key)
        elif key == "ws_headers":
            if not isinstance(value, dict):
                raise ConfigError("ws_headers: expected a table of strings")
            out[key] = {str(k): str(v) for k, v in value.items()}
        elif key in _TYPES:
            expected = _TYPES[key]
            if expected is type(None):
                expected = str
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ConfigError(f"{key}: expected {expected.__name__}, got {value!r}")
            out[key] = value
        else:
            raise ConfigError(f"{key}: unknown configuration key")
    return out


def build_config(file: Path | None = None, **overrides: Any) -> BridgeConfig:
    """Defaults, then ``file``, then the non-None ``overrides``; validated."""
    values: dict[str, Any] = load_toml(file) if file else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return replace(BridgeConfig(), **values).validate()
