"""SRTP/SRTCP receive side (RFC 3711) for SDES-keyed streams (RFC 4568), over pylibsrtp.

Calling protocol::

    receiver = SrtpReceiver("AES_CM_128_HMAC_SHA1_80", key_b64)   # from the offer's a=crypto
    rtp = receiver.unprotect(datagram)          # authenticated, decrypted RTP; or SrtpError
    rtcp = receiver.unprotect_rtcp(datagram)    # the same for SRTCP (RFC 3711 §3.4)

One receiver serves one direction of one RTP session: any number of SSRCs keyed with the same
master key (a new SSRC gets its own context after its first authenticated packet; a forged
packet allocates nothing). libsrtp checks the authentication tag (or the AEAD tag,
RFC 7714 §9.1) and the replay window (RFC 3711 §3.3.2, 128 packets) before anything is
decrypted; failures raise :class:`SrtpError` with ``replay`` telling the two apart.

Master Key Identifier (RFC 3711 §3.1, RFC 4568 §9.2 ``|value:length``). libsrtp as bound by
pylibsrtp has no MKI support, so the MKI field is checked and cut out before unprotecting:
with HMAC-SHA1 suites it sits just before the authentication tag (SRTP and SRTCP alike; the
tag is not computed over the MKI), with AEAD suites it is the last field of the packet
(RFC 7714 §8.1, §9.1; libsrtp's layout). ``AES_192_CM``/``AES_256_CM`` (RFC 6188) are not
available in pylibsrtp and so are not in :data:`SUPPORTED_SUITES`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final, NamedTuple

import pylibsrtp

from .errors import RtpError

__all__ = ["SUPPORTED_SUITES", "SrtpError", "SrtpReceiver"]

_MAX_DATAGRAM: Final = 1500
"""pylibsrtp works in a 1500-octet buffer: longer datagrams cannot be unprotected."""
_REPLAY_ERRORS: Final = frozenset(
    {
        "replay check failed (bad index)",
        "replay check failed (index too old)",
        "packet index is too old to consider",
    }
)


class _Suite(NamedTuple):
    profile: int
    key_salt_length: int
    """Master key + master salt octets (RFC 4568 §6.2, RFC 7714 §12)."""
    rtp_tail: int
    """Octets after the MKI in an SRTP packet (the HMAC tag; 0 for AEAD)."""
    rtcp_tail: int
    """Octets after the MKI in an SRTCP packet."""


_SUITES: Final[dict[str, _Suite]] = {
    # RFC 4568 §6.2.1, §6.2.2 (SRTCP keeps the 80-bit tag with the _32 suite).
    "AES_CM_128_HMAC_SHA1_80": _Suite(pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30, 10, 10),
    "AES_CM_128_HMAC_SHA1_32": _Suite(pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 30, 4, 10),
    # RFC 7714 §14.1.
    "AEAD_AES_128_GCM": _Suite(pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 28, 0, 0),
    "AEAD_AES_256_GCM": _Suite(pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44, 0, 0),
}

SUPPORTED_SUITES: Final[tuple[str, ...]] = tuple(_SUITES)
"""SDES crypto suite names (RFC 4568 §6.2, RFC 7714 §14.1) that :class:`SrtpReceiver` handles,
in our order of preference; pass them to :func:`sdp.answer.build_answer`."""


class SrtpError(RtpError):
    """An SRTP/SRTCP packet that cannot be authenticated or decrypted (RFC 3711 §3.3, §3.4),
    or an unusable key or suite. ``replay`` is true for a packet rejected by the replay check
    (RFC 3711 §3.3.2: a duplicate, or older than the replay window)."""

    def __init__(self, message: str, *, replay: bool = False) -> None:
        super().__init__(message)
        self.replay = replay


class SrtpReceiver:
    """Unprotects the SRTP and SRTCP packets of one sender (one master key, any SSRC)."""

    __slots__ = ("_mki", "_rtcp_tail", "_rtp_tail", "_session", "suite")

    def __init__(
        self, suite: str, key_b64: str, *, mki: int | None = None, mki_length: int = 0
    ) -> None:
        """``suite`` and ``key_b64`` (master key || salt, base64) come from the offered
        ``a=crypto`` (``crypto.suite``, ``crypto.key.key_b64``); ``mki``/``mki_length`` from its
        ``|value:length`` field when packets carry an MKI. Raises :class:`SrtpError` for a suite
        not in :data:`SUPPORTED_SUITES`, a key that is not base64 or has the wrong length, or an
        MKI that does not fit ``mki_length`` (1..128 octets)."""
        spec = _SUITES.get(suite)
        if spec is None:
            raise SrtpError(f"unsupported SRTP suite {suite!r}")
        try:
            key = base64.b64decode(key_b64 + "=" * (-len(key_b64) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise SrtpError("SRTP key is not base64") from None
        if (mki is None) != (mki_length == 0):
            raise SrtpError("an MKI needs a length and a length needs an MKI")
        self._mki: bytes | None = None
        if mki is not None:
            if not 1 <= mki_length <= 128 or not 0 <= mki < 1 << (8 * mki_length):
                raise SrtpError(f"MKI {mki} does not fit {mki_length} octets")
            self._mki = mki.to_bytes(mki_length, "big")
        if len(key) != spec.key_salt_length:
            raise SrtpError(f"SRTP key of {len(key)} octets, {suite} needs {spec.key_salt_length}")
        policy = pylibsrtp.Policy(
            key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=spec.profile
        )
        self._session = pylibsrtp.Session(policy)
        self._rtp_tail = spec.rtp_tail
        self._rtcp_tail = spec.rtcp_tail
        self.suite = suite

    def unprotect(self, packet: bytes) -> bytes:
        """Return the RTP packet inside the SRTP ``packet`` (RFC 3711 §3.3).

        Raises :class:`SrtpError` when it fails authentication, is a replay, is malformed, has
        the wrong MKI or is longer than 1500 octets."""
        if self._mki is not None:
            packet = self._strip_mki(packet, self._rtp_tail)
        return self._process(packet, rtcp=False)

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        """Return the compound RTCP packet inside the SRTCP ``packet`` (RFC 3711 §3.4); raises
        :class:`SrtpError` like :meth:`unprotect`."""
        if self._mki is not None:
            packet = self._strip_mki(packet, self._rtcp_tail)
        return self._process(packet, rtcp=True)

    def _process(self, packet: bytes, *, rtcp: bool) -> bytes:
        if len(packet) > _MAX_DATAGRAM:
            raise SrtpError(f"SRTP packet of {len(packet)} octets (limit {_MAX_DATAGRAM})")
        try:
            if rtcp:
                return self._session.unprotect_rtcp(packet)
            return self._session.unprotect(packet)
        except pylibsrtp.Error as exc:
            reason = str(exc)
            raise SrtpError(reason, replay=reason in _REPLAY_ERRORS) from None
        except (TypeError, ValueError) as exc:
            raise SrtpError(str(exc)) from None

    def _strip_mki(self, packet: bytes, tail: int) -> bytes:
        mki = self._mki
        assert mki is not None
        end = len(packet) - tail
        start = end - len(mki)
        if start < 12:  # the fixed RTP header / SR-RR header with SSRC
            raise SrtpError("SRTP packet too short for its MKI")
        if packet[start:end] != mki:
            raise SrtpError("unknown MKI")
        return packet[:start] + packet[end:]
