"""SDP security descriptions for SRTP: the ``a=crypto`` attribute (RFC 4568 §9.1, SDES).

Grammar (RFC 4568 §9.1, with the SRTP key-info of §9.2)::

    crypto-attribute = "crypto:" tag 1*WSP crypto-suite 1*WSP key-params *(1*WSP session-param)
    tag              = 1*9DIGIT
    crypto-suite     = 1*(ALPHA / DIGIT / "_")
    key-params       = key-param *(";" key-param)
    key-param        = "inline:" key-salt ["|" lifetime] ["|" mki]
    key-salt         = 1*(base64)               ; master key || master salt, RFC 4648 §4
    lifetime         = ["2^"] 1*(DIGIT)
    mki              = mki-value ":" mki-length  ; mki-length 1..128 octets

:func:`parse_crypto` takes the attribute value (after ``crypto:``) and raises only
:class:`~sdp.errors.SdpError`; :func:`format_crypto` is its inverse. :data:`SUITES` gives the
master key and salt sizes of the registered SRTP suites (RFC 4568 §6.2, RFC 6188 §7.1 for the
AES-192/256 counter-mode suites, RFC 7714 §12 for AEAD_AES_*_GCM), which :func:`new_crypto`
uses to make a fresh key for an answer. Which suites can actually be used is decided by the
caller (``sdp`` has no crypto library): see :func:`sdp.answer.build_answer`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, NamedTuple

from .errors import SdpError

__all__ = [
    "MAX_CRYPTO_SIZE",
    "SUITES",
    "Crypto",
    "KeyParams",
    "SuiteSpec",
    "format_crypto",
    "new_crypto",
    "parse_crypto",
]

MAX_CRYPTO_SIZE: Final = 4096
"""Longest ``a=crypto`` value accepted by :func:`parse_crypto` (characters)."""
_MAX_KEYS: Final = 16
_MAX_SESSION_PARAMS: Final = 16
_MAX_KEY_SALT: Final = 128
_SUITE_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


class SuiteSpec(NamedTuple):
    """Master key and master salt sizes of an SRTP crypto suite, in octets."""

    key_length: int
    salt_length: int

    @property
    def key_salt_length(self) -> int:
        """Length of the decoded ``inline:`` key-salt (key || salt)."""
        return self.key_length + self.salt_length


SUITES: Final[dict[str, SuiteSpec]] = {
    # RFC 4568 §6.2.1-§6.2.3: 128-bit master key, 112-bit master salt.
    "AES_CM_128_HMAC_SHA1_80": SuiteSpec(16, 14),
    "AES_CM_128_HMAC_SHA1_32": SuiteSpec(16, 14),
    "F8_128_HMAC_SHA1_80": SuiteSpec(16, 14),
    # RFC 6188 §7.1.
    "AES_192_CM_HMAC_SHA1_80": SuiteSpec(24, 14),
    "AES_192_CM_HMAC_SHA1_32": SuiteSpec(24, 14),
    "AES_256_CM_HMAC_SHA1_80": SuiteSpec(32, 14),
    "AES_256_CM_HMAC_SHA1_32": SuiteSpec(32, 14),
    # RFC 7714 §12: 96-bit master salt.
    "AEAD_AES_128_GCM": SuiteSpec(16, 12),
    "AEAD_AES_256_GCM": SuiteSpec(32, 12),
}


@dataclass(frozen=True, slots=True)
class KeyParams:
    """One ``inline:`` key-param (RFC 4568 §9.2)."""

    key_salt: bytes
    """The decoded master key followed by the master salt."""
    lifetime: int | None = None
    """Number of packets the master key may protect (``2^31`` → 2147483648), if given."""
    mki: int | None = None
    """Master Key Identifier value (RFC 3711 §3.1), ``None`` when the packets carry no MKI."""
    mki_length: int = 0
    """Length of the MKI field in each SRTP/SRTCP packet, in octets (0 without MKI)."""

    @property
    def key_b64(self) -> str:
        """``key_salt`` in base64, as written after ``inline:``."""
        return base64.b64encode(self.key_salt).decode("ascii")

    def __str__(self) -> str:
        text = f"inline:{self.key_b64}"
        if self.lifetime is not None:
            exponent = self.lifetime.bit_length() - 1
            power = self.lifetime == 1 << exponent and exponent > 0
            text += f"|2^{exponent}" if power else f"|{self.lifetime}"
        if self.mki is not None:
            text += f"|{self.mki}:{self.mki_length}"
        return text


@dataclass(frozen=True, slots=True)
class Crypto:
    """One ``a=crypto`` attribute: tag, suite, key-params and session parameters."""

    tag: int
    suite: str
    keys: tuple[KeyParams, ...]
    session_params: tuple[str, ...] = ()

    @property
    def key(self) -> KeyParams:
        """The first key-param (the one in use at the start of the session)."""
        return self.keys[0]

    def __str__(self) -> str:
        return format_crypto(self)


def parse_crypto(value: str) -> Crypto:
    """Parse the value of an ``a=crypto`` attribute (RFC 4568 §9.1).

    The suite is kept as written (unknown suites parse; their keys are not length-checked).
    Raises :class:`SdpError` for a value longer than :data:`MAX_CRYPTO_SIZE`, a tag that is not
    1-9 digits, a malformed suite, a key method other than ``inline``, key-salt that is not
    base64 (missing ``=`` padding is tolerated) or has the wrong length for a known suite, a bad
    lifetime or MKI, or more than 16 key-params or session parameters.
    """
    if len(value) > MAX_CRYPTO_SIZE:
        raise SdpError(f"a=crypto longer than {MAX_CRYPTO_SIZE} characters")
    fields = value.split()
    if len(fields) < 3:
        raise SdpError("a=crypto needs a tag, a crypto suite and key parameters")
    tag_text, suite, key_text, *params = fields
    if not (tag_text.isascii() and tag_text.isdigit() and len(tag_text) <= 9):
        raise SdpError(f"bad a=crypto tag {tag_text!r}")
    if not set(suite) <= _SUITE_CHARS:
        raise SdpError(f"bad crypto suite {suite!r}")
    if len(params) > _MAX_SESSION_PARAMS:
        raise SdpError("too many a=crypto session parameters")
    key_fields = key_text.split(";")
    if len(key_fields) > _MAX_KEYS:
        raise SdpError("too many a=crypto key parameters")
    spec = SUITES.get(suite)
    keys = tuple(_key_params(text, spec) for text in key_fields)
    return Crypto(int(tag_text), suite, keys, tuple(params))


def format_crypto(crypto: Crypto) -> str:
    """The attribute value of ``crypto`` (without ``crypto:``), inverse of :func:`parse_crypto`."""
    keys = ";".join(str(k) for k in crypto.keys)
    return " ".join((str(crypto.tag), crypto.suite, keys, *crypto.session_params))


def new_crypto(
    tag: int,
    suite: str,
    key_source: Callable[[int], bytes],
    session_params: tuple[str, ...] = (),
) -> Crypto:
    """A crypto attribute with a fresh master key and salt from ``key_source(n)`` (n octets).

    Used for our side of an answer (RFC 4568 §7.1.2: same tag and suite as the accepted offer,
    our own key). Raises :class:`SdpError` for a suite not in :data:`SUITES` or when
    ``key_source`` returns the wrong number of octets.
    """
    spec = SUITES.get(suite)
    if spec is None:
        raise SdpError(f"unknown crypto suite {suite!r}")
    key_salt = key_source(spec.key_salt_length)
    if len(key_salt) != spec.key_salt_length:
        raise SdpError("key source returned the wrong number of octets")
    return Crypto(tag, suite, (KeyParams(bytes(key_salt)),), session_params)


def _key_params(text: str, spec: SuiteSpec | None) -> KeyParams:
    method, colon, info = text.partition(":")
    if not colon or method.lower() != "inline":
        raise SdpError(f"unsupported a=crypto key method {method!r}")
    key_text, *extra = info.split("|")
    if len(extra) > 2:
        raise SdpError("too many '|' fields in an inline key")
    key_salt = _base64(key_text)
    if spec is not None and len(key_salt) != spec.key_salt_length:
        raise SdpError(
            f"inline key of {len(key_salt)} octets, the suite needs {spec.key_salt_length}"
        )
    lifetime: int | None = None
    mki: int | None = None
    mki_length = 0
    for position, field in enumerate(extra):
        if ":" in field:
            mki, mki_length = _mki(field)
        elif position == 0 and mki is None:
            lifetime = _lifetime(field)
        else:
            raise SdpError(f"bad inline key field {field!r}")
    return KeyParams(key_salt, lifetime, mki, mki_length)


def _base64(text: str) -> bytes:
    if not 0 < len(text) <= _MAX_KEY_SALT * 2 or not text.isascii():
        raise SdpError("bad inline key length")
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise SdpError("inline key is not base64") from None


def _lifetime(text: str) -> int:
    digits = text[2:] if text.startswith("2^") else text
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 20):
        raise SdpError(f"bad key lifetime {text!r}")
    if text.startswith("2^"):
        exponent = int(digits)
        if exponent > 64:
            raise SdpError(f"key lifetime out of range {text!r}")
        return 1 << exponent
    return int(digits)


def _mki(text: str) -> tuple[int, int]:
    value_text, _, length_text = text.partition(":")
    if not (
        value_text.isascii()
        and value_text.isdigit()
        and length_text.isascii()
        and length_text.isdigit()
        and len(length_text) <= 3
        and len(value_text) <= 40
    ):
        raise SdpError(f"bad MKI {text!r}")
    value, length = int(value_text), int(length_text)
    if not 1 <= length <= 128 or value.bit_length() > 8 * length:
        raise SdpError(f"MKI {text!r} does not fit its length")
    return value, length
