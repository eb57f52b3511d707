"""SIP digest authentication of SRCs (RFC 3261 §22, RFC 8760, RFC 7616), sans-I/O.

The SRS is a UAS, so it challenges with ``401 Unauthorized`` and ``WWW-Authenticate`` and reads
``Authorization`` (RFC 3261 §22.2).  :class:`DigestAuthenticator` is used by
:class:`~siprec_bridge.admission.Admission` on initial INVITEs::

    refusal = authenticator.check(request, now)   # None: authenticated

* Algorithms MD5, SHA-256 and SHA-512-256, each also as ``-sess`` (RFC 8760 §2.1, §2.2); one
  challenge per configured algorithm, most preferred first (RFC 8760 §2.4); ``qop=auth``
  (``auth-int`` is not offered), and the RFC 2069 form without qop is still accepted.
* Nonces are stateless: ``<issued ms>.<random>.<HMAC-SHA-256 of both>`` with a per-process key,
  so a challenge costs no memory.  A nonce older than ``nonce_ttl`` gets a new challenge with
  ``stale=true`` (RFC 7616 §3.3); its nonce-count must grow with each use (RFC 7616 §3.4,
  replay protection), tracked for the ``max_nonces`` most recently used nonces.
* The ``uri`` parameter is not compared with the Request-URI (SBCs differ in how they write
  it); the response hash covers whatever they wrote, and nonce-counts prevent replays.

Outcomes: ``None`` (authenticated), or a :class:`~siprec_bridge.sip.screen.Refusal` — 401
``auth-challenge`` (no or unusable credentials), 401 ``auth-stale``, 403 ``auth-failed``
(unknown user or wrong password), 400 ``auth-malformed`` (unparseable Authorization).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Final, Literal, get_args

from .sip.message import SipRequest
from .sip.screen import Refusal

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "AuthHeaderError",
    "DigestAuthenticator",
    "digest_response",
    "parse_authorization",
]

Algorithm = Literal["SHA-256", "SHA-256-sess", "SHA-512-256", "SHA-512-256-sess", "MD5", "MD5-sess"]
ALGORITHMS: Final[tuple[Algorithm, ...]] = get_args(Algorithm)
_HASHES: Final[dict[str, str]] = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
_BY_NAME: Final[dict[str, Algorithm]] = {a.lower(): a for a in ALGORITHMS}

MAX_AUTHORIZATION: Final = 4096
"""Longest Authorization value read, in characters."""

_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]*)\s*(?:,|$)')
_UNESCAPE_RE = re.compile(r"\\(.)")


class AuthHeaderError(ValueError):
    """An Authorization value is not a well-formed Digest credential (RFC 7616 §3.4)."""


def parse_authorization(value: str) -> dict[str, str] | None:
    """Parse ``Digest k=v, k="v", ...``; None for another scheme.

    Parameter names are lower-cased and quoted values unquoted.  Raises
    :class:`AuthHeaderError` for a value longer than :data:`MAX_AUTHORIZATION`, bad syntax
    or a repeated parameter.
    """
    if len(value) > MAX_AUTHORIZATION:
        raise AuthHeaderError(f"Authorization longer than {MAX_AUTHORIZATION} characters")
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if m is None or m.end() == pos:
            raise AuthHeaderError(f"bad Digest parameter at {rest[pos : pos + 30]!r}")
        name, raw = m.group(1).lower(), m.group(2)
        if name in params:
            raise AuthHeaderError(f"Digest parameter {name!r} repeated")
        if raw.startswith('"'):
            raw = _UNESCAPE_RE.sub(r"\1", raw[1:-1])
        params[name] = raw
        pos = m.end()
    return params


def _h(algorithm: str, text: str) -> str:
    return hashlib.new(_HASHES[algorithm], text.encode("utf-8")).hexdigest()


def digest_response(
    algorithm: Algorithm,
    *,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The ``response`` value (RFC 7616 §3.4.1-3.4.3, RFC 2617 §3.2.2 for no qop).

    ``-sess`` algorithms and ``qop`` need ``cnonce`` (and ``qop`` needs ``nc``); raises
    :class:`AuthHeaderError` when they are missing.
    """
    base = algorithm.removesuffix("-sess")
    ha1 = _h(base, f"{username}:{realm}:{password}")
    if algorithm.endswith("-sess"):
        if cnonce is None:
            raise AuthHeaderError(f"{algorithm} needs a cnonce")
        ha1 = _h(base, f"{ha1}:{nonce}:{cnonce}")
    ha2 = _h(base, f"{method}:{uri}")
    if qop is None:
        return _h(base, f"{ha1}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise AuthHeaderError("qop needs nc and cnonce")
    return _h(base, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


class DigestAuthenticator:
    """Challenges and verifies SRCs with digest authentication (see the module docstring).

    ``users`` maps user names to passwords.  ``algorithms`` are offered in order of
    preference.  ``secret`` keys the nonce MAC (random per process when None).
    """

    def __init__(
        self,
        realm: str,
        users: Mapping[str, str],
        *,
        algorithms: Sequence[Algorithm] = ("SHA-256", "MD5"),
        nonce_ttl: float = 300.0,
        secret: bytes | None = None,
        max_nonces: int = 10000,
    ) -> None:
        if not algorithms or any(a not in ALGORITHMS for a in algorithms):
            raise ValueError(f"algorithms must be a non-empty subset of {ALGORITHMS}")
        if '"' in realm or "\\" in realm:
            raise ValueError("realm must not contain quotes or backslashes")
        self.realm = realm
        self.users = dict(users)
        self.algorithms: tuple[Algorithm, ...] = tuple(algorithms)
        self.nonce_ttl = nonce_ttl
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._max_nonces = max_nonces
        self._counts: OrderedDict[str, int] = OrderedDict()

    # -- nonces

    def _mac(self, issued: str, salt: str) -> str:
        return hmac.new(self._secret, f"{issued}.{salt}".encode(), "sha256").hexdigest()[:32]

    def new_nonce(self, now: float) -> str:
        issued = str(int(now * 1000))
        salt = secrets.token_hex(6)
        return f"{issued}.{salt}.{self._mac(issued, salt)}"

    def _nonce_age(self, nonce: str, now: float) -> float | None:
        """Seconds since the nonce was issued; None if we did not issue it."""
        parts = nonce.split(".")
        if len(parts) != 3 or not parts[0].lstrip("-").isdigit():
            return None
        issued, salt, mac = parts
        if not hmac.compare_digest(mac.encode(), self._mac(issued, salt).encode()):
            return None
        return now - int(issued) / 1000

    # -- challenge and check

    def challenge(self, now: float, *, stale: bool = False) -> tuple[tuple[str, str], ...]:
        """``WWW-Authenticate`` headers, one per algorithm (RFC 8760 §2.4)."""
        nonce = self.new_nonce(now)
        suffix = ", stale=true" if stale else ""
        return tuple(
            (
                "WWW-Authenticate",
                f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={algorithm}, '
                f'qop="auth"{suffix}',
            )
            for algorithm in self.algorithms
        )

    def _unauthorized(self, now: float, *, stale: bool = False) -> Refusal:
        cause = "auth-stale" if stale else "auth-challenge"
        return Refusal(401, cause, headers=self.challenge(now, stale=stale))

    def check(self, request: SipRequest, now: float) -> Refusal | None:
        """Verify the request's credentials for our realm; None when authenticated."""
        credentials: dict[str, str] | None = None
        for value in request.headers.get_all("Authorization"):
            try:
                params = parse_authorization(value)
            except AuthHeaderError:
                return Refusal(400, "auth-malformed", reason="Bad Authorization Header")
            if params is not None and params.get("realm") == self.realm:
                credentials = params
                break
        if credentials is None:
            return self._unauthorized(now)
        return self._verify(credentials, request.method, now)

    def _verify(self, params: dict[str, str], method: str, now: float) -> Refusal | None:
        try:
            username, nonce = params["username"], params["nonce"]
            uri, response = params["uri"], params["response"]
        except KeyError as exc:
            return Refusal(400, "auth-malformed", reason=f"Authorization Lacks {exc.args[0]}")
        algorithm = _BY_NAME.get(params.get("algorithm", "MD5").lower())
        qop = params.get("qop")
        if algorithm not in self.algorithms or qop not in (None, "auth"):
            return self._unauthorized(now)
        age = self._nonce_age(nonce, now)
        if age is None:
            return self._unauthorized(now)
        if not -1.0 <= age <= self.nonce_ttl:
            return self._unauthorized(now, stale=True)
        try:
            count = int(params.get("nc", "1"), 16)
        except ValueError:
            return Refusal(400, "auth-malformed", reason="Bad Nonce Count")
        if count <= self._counts.get(nonce, 0):
            return self._unauthorized(now, stale=True)  # replayed: fresh nonce, same password
        password = self.users.get(username)
        if password is None:
            return Refusal(403, "auth-failed")
        try:
            expected = digest_response(
                algorithm,
                username=username,
                realm=self.realm,
                password=password,
                method=method,
                uri=uri,
                nonce=nonce,
                qop=qop,
                nc=params.get("nc"),
                cnonce=params.get("cnonce"),
            )
        except AuthHeaderError:
            return Refusal(400, "auth-malformed", reason="Authorization Lacks cnonce")
        if not hmac.compare_digest(expected.encode(), response.lower().encode()):
            return Refusal(403, "auth-failed")
        self._counts[nonce] = count
        self._counts.move_to_end(nonce)
        if len(self._counts) > self._max_nonces:
            self._counts.popitem(last=False)
        return None
