"""Authentication of the bridge toward its consumers, sent in the WebSocket opening handshake.

RFC 6455 §4.1 lets the client add HTTP header fields to its opening handshake; this module
decides which. One :class:`ConsumerAuth` per target (configuration), bound per recording
session with :meth:`ConsumerAuth.bind`; the sender asks the bound object for headers before
*every* connection attempt, so a reconnect presents a fresh token:

* static headers (any name/value, e.g. an API key header);
* a bearer token (RFC 6750 §2.1: ``Authorization: Bearer <token>``);
* a JWT (RFC 7519) signed per session with HS256 (HMAC SHA-256, RFC 7518 §3.2) or RS256
  (RSASSA-PKCS1-v1_5 SHA-256, RFC 7518 §3.3), sent as a bearer token (or in another header).
  Claims: ``call_id``, ``session_id``, ``iat``, ``exp`` (``iat + ttl_s``, RFC 7519 §4.1.4), a
  random ``jti`` (§4.1.7), plus ``iss``/``aud`` when configured and any extra claims.

Signing uses PyJWT (RS256 through ``cryptography``). Keys are checked at construction: an
HS256 secret must be at least 32 bytes (RFC 7518 §3.2), an RS256 key a PEM RSA private key of
at least 2048 bits (§3.3); anything else raises :exc:`ws_out.errors.ConfigurationError`.
TLS (``wss://``, custom CA, client certificates) is :mod:`ws_out.tls`.

Calling protocol::

    auth = ConsumerAuth(jwt=JwtOptions("HS256", secret, issuer="bridge-1"))   # per target
    session_auth = auth.bind(call_id=call_id, session_id=session_id)          # per session
    WsSender(url, auth=session_auth, ...)   # calls session_auth.headers() per attempt
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from ws_out.errors import ConfigurationError

__all__ = ["ConsumerAuth", "JwtAlgorithm", "JwtOptions", "SessionAuth"]

JwtAlgorithm = Literal["HS256", "RS256"]

_MIN_HMAC_BYTES: Final = 32  # RFC 7518 §3.2: a key at least as long as the hash output
_MIN_RSA_BITS: Final = 2048  # RFC 7518 §3.3
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 §5.6.2 field name
_BAD_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # RFC 9110 §5.5: no CTLs but HTAB
_RESERVED_CLAIMS: Final = frozenset(("call_id", "session_id", "iat", "exp", "jti", "iss", "aud"))


def _check_header(name: str, value: str) -> None:
    if not _TOKEN.fullmatch(name):
        raise ConfigurationError(f"invalid HTTP header name {name!r}")
    if _BAD_VALUE.search(value) or value != value.strip(" \t"):
        raise ConfigurationError(f"invalid value for HTTP header {name!r}")


@dataclass(frozen=True, slots=True)
class JwtOptions:
    """How to sign the per-session JWT.

    ``key``: the HS256 shared secret (``str`` is UTF-8 encoded), or the RS256 private key as
    PEM (``str``/``bytes``), or a :class:`~pathlib.Path` to read either from.
    ``header``/``scheme``: where the token goes (default ``Authorization: Bearer <jwt>``; an
    empty scheme sends the bare token).
    """

    algorithm: JwtAlgorithm
    key: str | bytes | Path
    ttl_s: float = 300.0
    issuer: str | None = None
    audience: str | None = None
    key_id: str | None = None
    key_password: bytes | None = None
    header: str = "Authorization"
    scheme: str = "Bearer"
    extra_claims: Mapping[str, Any] = field(default_factory=dict)


class _Signer:
    __slots__ = ("_audience", "_extra", "_headers", "_issuer", "_key", "_ttl", "algorithm")

    def __init__(self, options: JwtOptions) -> None:
        if options.ttl_s <= 0:
            raise ConfigurationError(f"JWT ttl_s must be positive, got {options.ttl_s}")
        clash = _RESERVED_CLAIMS.intersection(options.extra_claims)
        if clash:
            raise ConfigurationError(f"JWT extra_claims repeat {sorted(clash)}")
        key_source = options.key
        if isinstance(key_source, Path):
            try:
                data = key_source.read_bytes()
            except OSError as exc:
                raise ConfigurationError(f"cannot read JWT key {key_source}: {exc}") from None
        else:
            data = key_source.encode() if isinstance(key_source, str) else key_source
        self.algorithm = options.algorithm
        self._key: bytes | RSAPrivateKey
        if options.algorithm == "HS256":
            if len(data) < _MIN_HMAC_BYTES:
                raise ConfigurationError(
                    f"HS256 secret is {len(data)} bytes; RFC 7518 §3.2 needs {_MIN_HMAC_BYTES}"
                )
            self._key = data
        elif options.algorithm == "RS256":
            try:
                key = serialization.load_pem_private_key(data, options.key_password)
            except (ValueError, TypeError) as exc:
                raise ConfigurationError(f"RS256 key is not a usable PEM key: {exc}") from None
            if not isinstance(key, RSAPrivateKey):
                raise ConfigurationError("RS256 needs an RSA private key")
            if key.key_size < _MIN_RSA_BITS:
                raise ConfigurationError(
                    f"RS256 key has {key.key_size} bits; RFC 7518 §3.3 needs {_MIN_RSA_BITS}"
                )
            self._key = key
        else:
            raise ConfigurationError(f"unsupported JWT algorithm {options.algorithm!r}")
        self._ttl = options.ttl_s
        self._issuer = options.issuer
        self._audience = options.audience
        self._extra = dict(options.extra_claims)
        self._headers = {"kid": options.key_id} if options.key_id is not None else None

    def sign(self, call_id: str, session_id: str, now: float) -> str:
        claims: dict[str, Any] = dict(self._extra)
        issued = int(now)
        claims.update(
            call_id=call_id,
            session_id=session_id,
            iat=issued,
            exp=int(now + self._ttl),
            jti=uuid.uuid4().hex,
        )
        if self._issuer is not None:
            claims["iss"] = self._issuer
        if self._audience is not None:
            claims["aud"] = self._audience
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers=self._headers)


class ConsumerAuth:
    """Handshake authentication toward one target: static headers, bearer token and/or JWT.

    ``clock`` is the wall clock used for ``iat``/``exp``. A bearer token and a JWT cannot both
    go into the same header.
    """

    __slots__ = ("_clock", "_jwt_header", "_jwt_prefix", "_signer", "_static")

    def __init__(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        bearer_token: str | None = None,
        jwt: JwtOptions | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        static = dict(headers) if headers is not None else {}
        if bearer_token is not None:
            static["Authorization"] = f"Bearer {bearer_token}"
        for name, value in static.items():
            _check_header(name, value)
        self._signer: _Signer | None = None
        self._jwt_header = ""
        self._jwt_prefix = ""
        if jwt is not None:
            if any(name.lower() == jwt.header.lower() for name in static):
                raise ConfigurationError(f"header {jwt.header!r} set both statically and by JWT")
            _check_header(jwt.header, jwt.scheme)
            self._signer = _Signer(jwt)
            self._jwt_header = jwt.header
            self._jwt_prefix = f"{jwt.scheme} " if jwt.scheme else ""
        self._static = static
        self._clock = clock

    def bind(self, *, call_id: str, session_id: str) -> SessionAuth:
        """The headers source for one recording session (what ``WsSender(auth=...)`` takes)."""
        return SessionAuth(self, call_id, session_id)

    def _headers(self, call_id: str, session_id: str) -> dict[str, str]:
        headers = dict(self._static)
        if self._signer is not None:
            token = self._signer.sign(call_id, session_id, self._clock())
            headers[self._jwt_header] = self._jwt_prefix + token
        return headers


class SessionAuth:
    """:class:`ConsumerAuth` bound to one session: :meth:`headers` per connection attempt."""

    __slots__ = ("_auth", "call_id", "session_id")

    def __init__(self, auth: ConsumerAuth, call_id: str, session_id: str) -> None:
        self._auth = auth
        self.call_id = call_id
        self.session_id = session_id

    def headers(self) -> dict[str, str]:
        """Header fields for the next opening handshake (a freshly signed JWT, if any)."""
        return self._auth._headers(self.call_id, self.session_id)
