"""The configuration of the service: one TOML file, environment variables and flags, validated.

Precedence, lowest first: built-in defaults, the TOML file (``--config`` or
``SIPREC_BRIDGE_CONFIG``), environment variables, command-line flags.  Every key ``a.b.c`` of
the file can be set by the variable ``SIPREC_BRIDGE_A_B_C`` (upper case, dots → ``_``):
``sip.listen`` → ``SIPREC_BRIDGE_SIP_LISTEN``, ``sip.tls.cert`` → ``SIPREC_BRIDGE_SIP_TLS_CERT``,
``limits.max_calls`` → ``SIPREC_BRIDGE_LIMITS_MAX_CALLS``.  Scalars are written as-is (``true``,
``5060``); lists as JSON or comma-separated (``10.0.0.0/8,192.0.2.7``); tables and ``routes``
as JSON.  An empty value clears an optional key.  Unknown ``SIPREC_BRIDGE_*`` variables are
errors, like unknown keys in the file.

:func:`load_settings` validates everything at once and raises :class:`SettingsError` whose
``problems`` each name the key (``routes[1].targets[0].url: ...``), where the value came from
when it was not the file, and the problem; :func:`check_config` returns the same list for
``siprec-bridge check-config FILE``.  ``docs/config.example.toml`` documents every key.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import ssl
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from .auth import Algorithm
from .sip.message import MAX_MESSAGE_SIZE
from .sip.transport import server_tls_context

__all__ = [
    "ENV_PREFIX",
    "ResolvedTarget",
    "Route",
    "Settings",
    "SettingsError",
    "Target",
    "check_config",
    "env_variables",
    "load_settings",
    "split_host_port",
    "split_port_range",
]

ENV_PREFIX: Final = "SIPREC_BRIDGE_"
CONFIG_ENV: Final = "SIPREC_BRIDGE_CONFIG"
MAX_CONFIG_SIZE: Final = 1 << 20
_WILDCARDS: Final = frozenset({"0.0.0.0", "::", ""})


class SettingsError(ValueError):
    """The configuration is invalid; ``problems`` lists every problem, each naming its key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# -- value types ---------------------------------------------------------------------------

_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})?")


def _check_host(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_RE.fullmatch(host):
            raise ValueError(f"expected an IP address or host name, got {host!r}") from None
    return host


def split_host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) → (host, port); raises ``ValueError``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"expected [IPv6]:PORT, got {value!r}")
        host = host[1:-1]
    number = int(port)
    if number > 65535:
        raise ValueError(f"port {number} out of range 0-65535")
    return _check_host(host), number


def _check_listen(value: str) -> str:
    split_host_port(value)
    return value


def split_port_range(value: str) -> tuple[int, int]:
    """``LOW-HIGH`` → (low, high); raises ``ValueError``."""
    low, sep, high = value.partition("-")
    if not (sep and low.strip().isdigit() and high.strip().isdigit()):
        raise ValueError(f"expected LOW-HIGH, got {value!r}")
    lo, hi = int(low), int(high)
    if not 1024 <= lo < hi <= 65535:
        raise ValueError(f"expected 1024 <= LOW < HIGH <= 65535, got {value!r}")
    if hi - lo < 3:
        raise ValueError(f"{value!r} holds fewer than two RTP/RTCP port pairs")
    return lo, hi


def _check_port_range(value: str) -> str:
    split_port_range(value)
    return value


def _check_network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP network (CIDR): {exc}") from None
    return value


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


def _check_ws_url(value: str) -> str:
    if not re.fullmatch(r"wss?://[^\s/?#]+[^\s]*", value):
        raise ValueError(f"expected a ws:// or wss:// URL, got {value!r}")
    return value


def _check_rate(value: int) -> int:
    if value not in (0, 8000, 16000, 24000, 48000):
        raise ValueError(f"expected 0 (as received), 8000, 16000, 24000 or 48000, got {value}")
    return value


def _check_frame_ms(value: int) -> int:
    if not 10 <= value <= 200 or value % 10:
        raise ValueError(f"expected a multiple of 10 from 10 to 200, got {value}")
    return value


def _check_reject_status(value: int) -> int:
    if value not in (404, 480):
        raise ValueError(f"expected 404 or 480, got {value}")
    return value


Host = Annotated[str, AfterValidator(_check_host)]
Listen = Annotated[str, AfterValidator(_check_listen)]
PortRange = Annotated[str, AfterValidator(_check_port_range)]
Network = Annotated[str, AfterValidator(_check_network)]
Regex = Annotated[str, AfterValidator(_check_regex)]
WsUrl = Annotated[str, AfterValidator(_check_ws_url)]
SampleRate = Annotated[int, AfterValidator(_check_rate)]
FrameMs = Annotated[int, AfterValidator(_check_frame_ms)]
Seconds = Annotated[float, Field(ge=0)]

Dialect = Literal["native", "twilio", "wavix", "voxology", "voipbin", "audiosocket", "rcms"]
Mode = Literal["stereo", "per-leg", "mixed", "mux"]
Encoding = Literal["L16", "PCMU", "PCMA"]
SrtpPolicy = Literal["off", "allow", "require"]
LogLevel = Literal["debug", "info", "warning", "error"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- SIP -----------------------------------------------------------------------------------


class TlsSettings(_Section):
    """``[sip.tls]``: SIP over TLS (RFC 3261 §26.3.1), optional mutual TLS."""

    enabled: bool = False
    listen: Listen = "127.0.0.1:5061"
    cert: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None
    require_client_cert: bool = True
    min_version: Literal["1.2", "1.3"] = "1.2"
    ciphers: str = ""
    handshake_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0


class AuthSettings(_Section):
    """``[sip.auth]``: digest authentication of SRCs (RFC 3261 §22, RFC 8760)."""

    enabled: bool = False
    realm: Annotated[str, Field(min_length=1, pattern=r'^[^"\\]+$')] = "siprec-bridge"
    algorithms: Annotated[list[Algorithm], Field(min_length=1)] = ["SHA-256", "MD5"]
    nonce_ttl_s: Annotated[float, Field(gt=0)] = 300.0
    users: dict[str, str] = {}


class SipSettings(_Section):
    """``[sip]``: listeners and identity."""

    listen: Listen = "127.0.0.1:5060"
    udp: bool = True
    tcp: bool = True
    advertise: Host | None = None
    user_agent: Annotated[str, Field(min_length=1)] = "siprec-bridge"
    max_message_size: Annotated[int, Field(ge=1024, le=MAX_MESSAGE_SIZE)] = MAX_MESSAGE_SIZE
    tls: TlsSettings = TlsSettings()
    auth: AuthSettings = AuthSettings()


class LimitsSettings(_Section):
    """``[limits]``: admission control (see :mod:`siprec_bridge.admission`)."""

    max_calls: Annotated[int, Field(ge=1)] = 2000
    allow_sources: list[Network] = []
    deny_action: Literal["reject", "drop"] = "reject"
    invite_rate: Annotated[float, Field(ge=0)] = 50.0
    invite_burst: Annotated[int, Field(ge=1)] = 100
    retry_after_s: Annotated[int, Field(ge=1, le=86400)] = 5
    max_sources: Annotated[int, Field(ge=1)] = 10000


# -- media ---------------------------------------------------------------------------------


class RtpSettings(_Section):
    """``[rtp]``: ports, addresses, jitter buffer, latching, RTCP and SRTP."""

    ports: PortRange = "40000-40999"
    bind: Host | None = None
    advertise: Host | None = None
    target_delay_ms: Annotated[int, Field(ge=0, le=1000)] = 60
    latching: Literal["sdp", "first"] = "sdp"
    ssrc_switch_packets: Annotated[int, Field(ge=1, le=1000)] = 3
    port_cooldown_s: Seconds = 5.0
    rtcp: bool = True
    srtp: SrtpPolicy = "allow"


class MediaSettings(_Section):
    """``[media]``: output clock and media timeouts."""

    frame_ms: FrameMs = 20
    timeout_s: Seconds = 30.0
    hold_timeout_s: Seconds = 3600.0
    stall_s: Annotated[float, Field(gt=0)] = 5.0


class DrainSettings(_Section):
    """``[drain]``: what SIGTERM and SIGINT do."""

    time_s: Seconds = 300.0
    sigint_time_s: Seconds = 5.0
    retry_after_s: Annotated[int, Field(ge=1, le=86400)] = 30


class LogSettings(_Section):
    """``[log]``: see :mod:`siprec_bridge.logs`."""

    format: Literal["text", "json"] = "text"
    level: LogLevel = "info"


class MetricsSettings(_Section):
    """``[metrics]``: the HTTP endpoint of :mod:`siprec_bridge.metrics`."""

    enabled: bool = True
    listen: Listen = "127.0.0.1:9464"


# -- output and routes ---------------------------------------------------------------------


class TargetAuth(_Section):
    """Credentials toward a consumer: static headers go in ``headers``; this is the rest."""

    type: Literal["none", "bearer", "jwt"] = "none"
    token: str = ""
    algorithm: Literal["HS256", "RS256"] = "HS256"
    secret: str = ""
    key_file: Path | None = None
    ttl_s: Annotated[int, Field(ge=1)] = 300
    issuer: str = ""
    audience: str = ""


class TargetTls(_Section):
    """``wss://`` options toward a consumer."""

    verify: bool = True
    ca_file: Path | None = None
    cert: Path | None = None
    key: Path | None = None


class OutputSettings(_Section):
    """``[output]``: the default target (used when no route is configured), the defaults
    every route target inherits, and delivery settings shared by all targets."""

    url: WsUrl = "ws://127.0.0.1:8765/"
    dialect: Dialect = "native"
    mode: Mode = "stereo"
    encoding: Encoding = "L16"
    rate: SampleRate = 0
    frame_ms: FrameMs = 20
    headers: dict[str, str] = {}
    dialect_options: dict[str, Any] = {}
    custom_parameters: dict[str, str] = {}
    caller: str = ""
    auth: TargetAuth = TargetAuth()
    tls: TargetTls = TargetTls()
    queue_frames: Annotated[int, Field(ge=1)] = 500
    buffer_s: Seconds = 20.0
    spool_dir: Path = Path("spool")
    connect_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    ping_interval_s: Seconds = 10.0
    reconnect_min_s: Annotated[float, Field(gt=0)] = 0.1
    reconnect_max_s: Annotated[float, Field(gt=0)] = 10.0


class Target(_Section):
    """A route target; every key left out is inherited from ``[output]`` (``headers``,
    ``auth`` and ``tls`` as a whole)."""

    url: WsUrl | None = None
    dialect: Dialect | None = None
    mode: Mode | None = None
    encoding: Encoding | None = None
    rate: SampleRate | None = None
    frame_ms: FrameMs | None = None
    headers: dict[str, str] | None = None
    dialect_options: dict[str, Any] | None = None
    custom_parameters: dict[str, str] | None = None
    caller: str | None = None
    auth: TargetAuth | None = None
    tls: TargetTls | None = None


class RouteMatch(_Section):
    """Conditions of a route (regular expressions, ``re.search``); all given must match."""

    request_user: Regex | None = None
    from_uri: Regex | None = None
    to_uri: Regex | None = None
    headers: dict[str, Regex] = {}
    metadata: dict[str, Regex] = {}


class Route(_Section):
    """``[[routes]]``: calls matching ``match`` go to every target (first matching route)."""

    name: Annotated[str, Field(min_length=1)]
    match: RouteMatch = RouteMatch()
    targets: Annotated[list[Target], Field(min_length=1)]
    srtp: SrtpPolicy | None = None


class RoutingSettings(_Section):
    """``[routing]``: what happens to a call no route matches."""

    unmatched: Literal["output", "reject"] = "output"
    reject_status: Annotated[int, AfterValidator(_check_reject_status)] = 480


@dataclass(frozen=True)
class ResolvedTarget:
    """A target with ``[output]`` defaults applied."""

    url: str
    dialect: Dialect
    mode: Mode
    encoding: Encoding
    rate: int
    frame_ms: int
    headers: dict[str, str]
    auth: TargetAuth
    tls: TargetTls
    dialect_options: dict[str, Any] = field(default_factory=dict)
    custom_parameters: dict[str, str] = field(default_factory=dict)
    caller: str = ""


class Settings(_Section):
    """The whole configuration (``docs/config.example.toml``)."""

    sip: SipSettings = SipSettings()
    limits: LimitsSettings = LimitsSettings()
    rtp: RtpSettings = RtpSettings()
    media: MediaSettings = MediaSettings()
    drain: DrainSettings = DrainSettings()
    log: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    output: OutputSettings = OutputSettings()
    routing: RoutingSettings = RoutingSettings()
    routes: list[Route] = []

    # -- derived values

    @property
    def sip_host(self) -> str:
        return split_host_port(self.sip.listen)[0]

    @property
    def sip_port(self) -> int:
        return split_host_port(self.sip.listen)[1]

    @property
    def advertise_host(self) -> str:
        """Address in Contact/Via and, unless ``rtp.advertise``, in SDP (c= and o=)."""
        if self.sip.advertise:
            return self.sip.advertise
        host = self.sip_host
        return "127.0.0.1" if host in _WILDCARDS else host

    @property
    def rtp_bind_host(self) -> str:
        """Address the RTP sockets bind to."""
        return self.rtp.bind or self.sip_host

    @property
    def media_host(self) -> str:
        """Address put into SDP answers."""
        return self.rtp.advertise or self.advertise_host

    @property
    def rtp_range(self) -> tuple[int, int]:
        return split_port_range(self.rtp.ports)

    def resolve(self, target: Target) -> ResolvedTarget:
        """``target`` with every unset key taken from ``[output]``."""
        out = self.output
        return ResolvedTarget(
            url=target.url if target.url is not None else out.url,
            dialect=target.dialect or out.dialect,
            mode=target.mode or out.mode,
            encoding=target.encoding or out.encoding,
            rate=target.rate if target.rate is not None else out.rate,
            frame_ms=target.frame_ms or out.frame_ms,
            headers=dict(target.headers if target.headers is not None else out.headers),
            auth=target.auth or out.auth,
            tls=target.tls or out.tls,
            dialect_options=dict(
                target.dialect_options
                if target.dialect_options is not None
                else out.dialect_options
            ),
            custom_parameters=dict(
                target.custom_parameters
                if target.custom_parameters is not None
                else out.custom_parameters
            ),
            caller=target.caller if target.caller is not None else out.caller,
        )

    def default_target(self) -> ResolvedTarget:
        """The ``[output]`` target (no routes, or ``routing.unmatched = "output"``)."""
        return self.resolve(Target())

    def tls_context(self) -> ssl.SSLContext | None:
        """The SIP TLS listener's context (None when ``sip.tls.enabled`` is false); raises
        ``OSError`` / ``ssl.SSLError`` when the files do not load."""
        tls = self.sip.tls
        if not tls.enabled or tls.cert is None or tls.key is None:
            return None
        return server_tls_context(
            tls.cert,
            tls.key,
            client_ca=tls.client_ca,
            require_client_cert=tls.require_client_cert,
            min_version=tls.min_version,
            ciphers=tls.ciphers or None,
        )

    def srtp_policy(self, route: Route | None) -> SrtpPolicy:
        return route.srtp if route is not None and route.srtp is not None else self.rtp.srtp


# -- schema walking (environment names, error messages, example coverage) ------------------


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` down to X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _is_section(annotation: Any) -> bool:
    inner = _unwrap(annotation)
    return isinstance(inner, type) and issubclass(inner, BaseModel)


def _optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def _leaves(
    model: type[BaseModel], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, annotation) of every environment-settable key: sections of the settings are
    walked, lists and tables (``routes``, ``users``, ...) are leaves."""
    for name, info in model.model_fields.items():
        annotation = info.annotation
        path = (*prefix, name)
        if _is_section(annotation) and not _optional(annotation):
            yield from _leaves(_unwrap(annotation), path)
        else:
            yield path, annotation


def env_variables() -> dict[str, tuple[str, ...]]:
    """Every environment variable the settings read → the key path it sets."""
    return {ENV_PREFIX + "_".join(path).upper(): path for path, _ in _leaves(Settings)}


def _model_at(path: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class of the table at ``path`` (list indices skipped), None if not a table."""
    model: type[BaseModel] = Settings
    for part in path:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        inner = _unwrap(info.annotation)
        if typing.get_origin(inner) is list:
            inner = _unwrap(typing.get_args(inner)[0])
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return None
        model = inner
    return model


def _complex(annotation: Any) -> bool:
    inner = _unwrap(annotation)
    return typing.get_origin(inner) in (list, dict) or _is_section(annotation)


def _env_value(name: str, raw: str, annotation: Any) -> Any:
    if raw == "" and _optional(annotation):
        return None
    if not _complex(annotation):
        return raw
    stripped = raw.strip()
    if typing.get_origin(_unwrap(annotation)) is list and not stripped.startswith("["):
        return [item.strip() for item in stripped.split(",") if item.strip()]
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise SettingsError([f"{name}: expected JSON ({exc})"]) from None


def _set(raw: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        nested = raw.get(part)
        if not isinstance(nested, dict):
            nested = raw[part] = {}
        raw = nested
    raw[path[-1]] = value


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _describe(error: Any, origins: Mapping[tuple[str, ...], str]) -> str:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
        model = _model_at(loc[:-1])
        if model is not None and isinstance(loc[-1], str):
            close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
    elif kind == "missing":
        message = "required key is missing"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        if isinstance(value, str | int | float | bool) and repr(value) not in message:
            message += f", got {value!r}"
    names = tuple(p for p in loc if isinstance(p, str))
    for length in range(len(names), 0, -1):
        origin = origins.get(names[:length])
        if origin is not None:
            message += f" [from {origin}]"
            break
    return f"{_dotted(loc) or '(top level)'}: {message}"


# -- loading -------------------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_SIZE:
            raise SettingsError([f"{path}: file of {size} bytes exceeds {MAX_CONFIG_SIZE}"])
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError([f"{path}: not valid TOML: {exc}"]) from None


def _semantic_problems(s: Settings) -> list[str]:
    """Checks across keys, each reported on the key to change."""
    problems: list[str] = []
    tls, auth = s.sip.tls, s.sip.auth
    if not (s.sip.udp or s.sip.tcp or tls.enabled):
        problems.append("sip.udp: enable at least one of sip.udp, sip.tcp and sip.tls.enabled")
    if tls.enabled:
        for key in ("cert", "key"):
            if getattr(tls, key) is None:
                problems.append(f"sip.tls.{key}: required when sip.tls.enabled is true")
        tls_host, tls_port = split_host_port(tls.listen)
        if s.sip.tcp and tls_port == s.sip_port and tls_port != 0 and tls_host == s.sip_host:
            problems.append(f"sip.tls.listen: port {tls_port} is already the SIP TCP port")
    if auth.enabled and not auth.users:
        problems.append("sip.auth.users: at least one user is required when auth is enabled")
    if s.output.reconnect_min_s > s.output.reconnect_max_s:
        problems.append("output.reconnect_min_s: larger than output.reconnect_max_s")
    inherited = _target_problems("", s.default_target())
    problems += [f"output{p}" for p in inherited]
    names: set[str] = set()
    for i, route in enumerate(s.routes):
        if route.name in names:
            problems.append(f"routes[{i}].name: duplicate route name {route.name!r}")
        names.add(route.name)
        for j, target in enumerate(route.targets):
            own = _target_problems("", s.resolve(target))
            problems += [f"routes[{i}].targets[{j}]{p}" for p in own if p not in inherited]
    return problems


def _target_problems(where: str, target: ResolvedTarget) -> list[str]:
    """Problems of one resolved target, keys relative to ``where``."""
    problems = []
    if target.encoding in ("PCMU", "PCMA") and target.rate not in (0, 8000):
        problems.append(f"{where}.rate: {target.encoding} is 8000 Hz only, got {target.rate}")
    auth = target.auth
    if auth.type == "bearer" and not auth.token:
        problems.append(f"{where}.auth.token: required for auth type 'bearer'")
    if auth.type == "jwt" and auth.algorithm == "HS256" and not auth.secret:
        problems.append(f"{where}.auth.secret: required for a HS256 JWT")
    if auth.type == "jwt" and auth.algorithm == "RS256" and auth.key_file is None:
        problems.append(f"{where}.auth.key_file: required for a RS256 JWT")
    if (target.tls.cert is None) != (target.tls.key is None):
        problems.append(f"{where}.tls.cert: cert and key go together")
    return problems


def _file_problems(s: Settings) -> list[str]:
    """Files named by the settings exist and load (certificates, keys)."""
    problems: list[str] = []

    def readable(key: str, path: Path | None) -> bool:
        if path is None:
            return False
        if not path.is_file() or not os.access(path, os.R_OK):
            problems.append(f"{key}: {path} is not a readable file")
            return False
        return True

    tls = s.sip.tls
    if tls.enabled:
        files = [readable(f"sip.tls.{k}", getattr(tls, k)) for k in ("cert", "key")]
        ca_ok = tls.client_ca is None or readable("sip.tls.client_ca", tls.client_ca)
        if all(files) and ca_ok:
            try:
                s.tls_context()
            except (ssl.SSLError, OSError) as exc:
                problems.append(f"sip.tls.cert: cannot load the certificate/key: {exc}")
    owned = [("output", s.output.tls, s.output.auth)] + [
        (f"routes[{i}].targets[{j}]", t.tls, t.auth)
        for i, route in enumerate(s.routes)
        for j, t in enumerate(route.targets)
    ]
    for where, target_tls, target_auth in owned:  # inherited ones are checked on [output]
        if target_tls is not None:
            for key in ("ca_file", "cert", "key"):
                readable(f"{where}.tls.{key}", getattr(target_tls, key))
        if target_auth is not None:
            readable(f"{where}.auth.key_file", target_auth.key_file)
    spool = s.output.spool_dir
    if spool.exists() and not spool.is_dir():
        problems.append(f"output.spool_dir: {spool} exists and is not a directory")
    return problems


def load_settings(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    check_files: bool = True,
) -> Settings:
    """Defaults ← TOML file ← ``SIPREC_BRIDGE_*`` variables ← ``overrides``; validated.

    ``path`` defaults to ``$SIPREC_BRIDGE_CONFIG`` (no file when unset).  ``env`` defaults to
    ``os.environ``.  ``overrides`` maps dotted keys to values (what command-line flags set,
    e.g. ``{"sip.listen": "0.0.0.0:5060"}``); ``None`` values are ignored.  With
    ``check_files`` the certificates and keys named are loaded too.  Raises
    :class:`SettingsError` listing every problem.
    """
    environ = os.environ if env is None else env
    if path is None and environ.get(CONFIG_ENV):
        path = Path(environ[CONFIG_ENV])
    raw: dict[str, Any] = _read_toml(path) if path is not None else {}
    origins: dict[tuple[str, ...], str] = {}
    problems: list[str] = []
    known = env_variables()
    annotations = dict(_leaves(Settings))
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        key_path = known.get(name)
        if key_path is None:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{name}: unknown environment variable{hint}")
            continue
        try:
            _set(raw, key_path, _env_value(name, value, annotations[key_path]))
        except SettingsError as exc:
            problems += exc.problems
            continue
        origins[key_path] = f"environment {name}"
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        key_path = tuple(dotted.split("."))
        if key_path not in annotations:
            raise KeyError(f"override of unknown key {dotted!r}")
        _set(raw, key_path, value)
        origins[key_path] = "the command line"
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        problems += [_describe(error, origins) for error in exc.errors()]
        raise SettingsError(problems) from None
    problems += _semantic_problems(settings)
    if check_files and not problems:
        problems += _file_problems(settings)
    if problems:
        raise SettingsError(problems)
    return settings


def check_config(path: Path, env: Mapping[str, str] | None = None) -> list[str]:
    """Every problem of the configuration in ``path`` (plus the environment); [] if valid."""
    try:
        load_settings(path, env=env)
    except SettingsError as exc:
        return exc.problems
    return []
