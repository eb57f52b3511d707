"""SDP answer of a receive-only Session Recording Server (RFC 3264 §6, RFC 7866 §8.1.1).

Calling protocol::

    usable = acceptable(offer, srtp=policy, srtp_suites=rtp.srtp.SUPPORTED_SUITES)
    ports = [allocate() if ok else 0 for ok in usable]   # none usable: answer 488
    answer, streams = build_answer(offer, local_address=..., ports=ports,
                                   session_id=..., session_version=...,
                                   srtp=policy, srtp_suites=rtp.srtp.SUPPORTED_SUITES)
    serialize(answer)                                # body of the 200 OK

Answer rules: one m-line per offered m-line, same order, media type and proto (RFC 3264 §6);
rejected lines get port 0 and the first offered format; accepted audio lines carry every offered
codec we decode, in the offer's order (the offerer's preference; SRCs may send any of them),
plus ``telephone-event`` with
the offered payload type and fmtp (RFC 4733 §7.1.1); comfort noise is not answered; the
direction is reversed for a recorder that only receives (RFC 3264 §6.1: sendonly/sendrecv →
recvonly, recvonly/inactive → inactive); ``a=label`` is always echoed so SRCs can match answer
lines by label (RFC 7866 §8.1.1, RFC 4574); ``a=ptime`` is echoed when offered; ``a=rtcp-mux``
is echoed when offered (RFC 5761 §5.1.1: the SRC then sends RTCP to the RTP port).

SRTP with SDES (RFC 4568, RFC 3711). ``srtp`` is the route's policy:

* ``"off"``: only RTP/AVP and RTP/AVPF lines are acceptable (RTP/SAVP lines are rejected);
* ``"allow"``: plain lines, and RTP/SAVP(F) lines with a usable ``a=crypto``;
* ``"require"``: only RTP/SAVP(F) lines with a usable ``a=crypto`` (a plain offer has nothing
  acceptable: the caller answers 488, RFC 3261 §21.4.26).

A crypto line is usable when its suite is in ``srtp_suites`` (what the caller's SRTP library
implements) and in :data:`sdp.crypto.SUITES`, and it has no session parameter we cannot honour
(only ``KDR=0`` and ``WSH=`` are understood, RFC 4568 §6.3). The first usable line of an
m-line wins (the offerer's preference, §7.1.2); the answer carries exactly that one
``a=crypto`` with the same tag and suite and a fresh key of ours from ``key_source`` (§7.1.2;
``KDR`` echoed when offered). Malformed crypto lines are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from .crypto import SUITES, Crypto, new_crypto
from .errors import SdpError
from .model import (
    Attribute,
    Direction,
    Media,
    RtpMap,
    SessionDescription,
    local_session,
    parse_ptime,
)

DEFAULT_SUPPORTED: Final = ("PCMU", "PCMA", "G722")
RTP_PROTOS: Final = frozenset({"RTP/AVP", "RTP/AVPF"})
SRTP_PROTOS: Final = frozenset({"RTP/SAVP", "RTP/SAVPF"})
"""SDES-keyed SRTP (RFC 3711 §12, RFC 5124); DTLS-SRTP (``UDP/TLS/RTP/SAVP``) is not supported."""

SrtpPolicy = Literal["off", "allow", "require"]
SRTP_POLICIES: Final[frozenset[str]] = frozenset({"off", "allow", "require"})

KeySource = Callable[[int], bytes]
"""Returns n random octets (``os.urandom``); injectable for tests."""

# RTP clock rates the decoders handle (RFC 3551 §4.5; G.722 uses 8000 for 16 kHz audio).
_KNOWN_CLOCK: Final = {"PCMU": 8000, "PCMA": 8000, "G722": 8000}

# RFC 3264 §6.1: the answer's direction for an offer, seen from a receive-only recorder.
_ANSWER_DIRECTION: Final[dict[Direction, Direction]] = {
    "sendonly": "recvonly",
    "sendrecv": "recvonly",
    "recvonly": "inactive",
    "inactive": "inactive",
}


@dataclass(frozen=True, slots=True)
class Codec:
    """The audio codec chosen for one stream; ``encoding`` is upper case ("PCMU", "G722")."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int


@dataclass(slots=True)
class NegotiatedStream:
    """Outcome of the offer/answer for one m-line (index = position in the offer)."""

    index: int
    label: str | None
    accepted: bool
    local_port: int
    codec: Codec | None
    """The preferred codec (the first of :attr:`codecs`)."""
    codecs: tuple[Codec, ...]
    """Every codec of the answer, in the offer's order: the SRC may send any of them."""
    dtmf_payload_type: int | None
    cn_payload_types: frozenset[int]
    remote_address: str | None
    remote_port: int
    direction: Direction
    ptime: int | None
    remote_crypto: Crypto | None = None
    """The offered ``a=crypto`` we accepted (SRTP line): the SRC's suite and master key, which
    decrypt what we receive (``remote_crypto.suite``, ``remote_crypto.key.key_b64``)."""
    local_crypto: Crypto | None = None
    """Our ``a=crypto`` in the answer (same tag and suite, our own key)."""
    rtcp_mux: bool = False
    """``a=rtcp-mux`` offered and echoed: RTCP arrives on the RTP port (RFC 5761 §5.1.1)."""


def _choose_codecs(m: Media, supported: Sequence[str]) -> tuple[Codec, ...]:
    """Every offered format we decode, in the offer's order (the offerer's preference).

    All of them go into the answer (RFC 3264 §6.1): an SRC may switch between the formats of
    the answer at any time, and some send whatever they like best regardless of our order.
    They share the first one's RTP clock rate (a ``Leg`` decodes one clock)."""
    wanted = {name.upper() for name in supported}
    rtpmaps = m.rtpmaps()
    codecs: list[Codec] = []
    for fmt in m.formats:
        rtpmap = rtpmaps.get(int(fmt)) if fmt.isdigit() else None
        if rtpmap is None:
            continue
        name = rtpmap.encoding.upper()
        if name not in wanted or (rtpmap.channels or 1) != 1:
            continue
        if _KNOWN_CLOCK.get(name, rtpmap.clock_rate) != rtpmap.clock_rate:
            continue
        if codecs and rtpmap.clock_rate != codecs[0].clock_rate:
            continue
        codecs.append(Codec(rtpmap.payload_type, name, rtpmap.clock_rate, 1))
    return tuple(codecs)


def _session_params_ok(params: Sequence[str]) -> bool:
    """RFC 4568 §6.3: we honour ``KDR=0`` (no re-keying, §6.3.1) and the declarative ``WSH``
    (§6.3.6); UNENCRYPTED_*/UNAUTHENTICATED_SRTP, FEC_* and unknown parameters are not."""
    for param in params:
        name, _, value = param.partition("=")
        if name == "KDR" and value == "0":
            continue
        if name == "WSH" and value.isascii() and value.isdigit():
            continue
        return False
    return True


def _choose_crypto(m: Media, srtp_suites: Collection[str]) -> Crypto | None:
    """The first offered crypto line we can use (RFC 4568 §7.1.2), ``None`` if there is none."""
    for crypto in m.cryptos():
        if (
            crypto.suite in srtp_suites
            and crypto.suite in SUITES
            and _session_params_ok(crypto.session_params)
        ):
            return crypto
    return None


def _usable(
    m: Media, supported: Sequence[str], srtp: SrtpPolicy, srtp_suites: Collection[str]
) -> tuple[tuple[Codec, ...], Crypto | None] | None:
    """Codecs (and the offered crypto line, for SRTP) to receive ``m`` with; ``None`` when the
    line is not acceptable under the policy."""
    if m.media.lower() != "audio" or m.port == 0:
        return None
    proto = m.proto.upper()
    crypto: Crypto | None = None
    if proto in RTP_PROTOS:
        if srtp == "require":
            return None
    elif proto in SRTP_PROTOS and srtp != "off":
        crypto = _choose_crypto(m, srtp_suites)
        if crypto is None:
            return None
    else:
        return None
    codecs = _choose_codecs(m, supported)
    return (codecs, crypto) if codecs else None


def _check_policy(srtp: str) -> None:
    if srtp not in SRTP_POLICIES:
        raise SdpError(f"SRTP policy must be off, allow or require, not {srtp!r}")


def acceptable(
    offer: SessionDescription,
    *,
    supported: Sequence[str] = DEFAULT_SUPPORTED,
    srtp: SrtpPolicy = "off",
    srtp_suites: Collection[str] = (),
) -> list[bool]:
    """Per offered m-line: can the SRS receive it?

    True for ``audio`` with a non-zero port and at least one ``supported`` codec, over
    RTP/AVP or RTP/AVPF unless ``srtp`` is ``"require"``, or over RTP/SAVP or RTP/SAVPF with a
    usable ``a=crypto`` (suite in ``srtp_suites``) unless ``srtp`` is ``"off"``. Any other proto
    is not acceptable. Raises :class:`SdpError` for an unknown policy.
    """
    _check_policy(srtp)
    return [_usable(m, supported, srtp, srtp_suites) is not None for m in offer.media]


def _by_encoding(rtpmaps: dict[int, RtpMap], encoding: str) -> list[RtpMap]:
    return [r for r in rtpmaps.values() if r.encoding.lower() == encoding]


def build_answer(
    offer: SessionDescription,
    *,
    local_address: str,
    ports: Sequence[int],
    session_id: int,
    session_version: int,
    fallback_address: str | None = None,
    supported: Sequence[str] = DEFAULT_SUPPORTED,
    username: str = "siprec-bridge",
    srtp: SrtpPolicy = "off",
    srtp_suites: Collection[str] = (),
    key_source: KeySource = os.urandom,
) -> tuple[SessionDescription, list[NegotiatedStream]]:
    """Build the answer to ``offer`` (RFC 3264 §6) and describe each negotiated stream.

    ``ports[i]`` is the local RTP port for m-line ``i``; 0 rejects it. A line that is not
    :func:`acceptable` (with the same ``supported``, ``srtp`` and ``srtp_suites``) is rejected
    whatever its port. ``fallback_address`` (usually the signalling source) is the remote
    address when the offer has no ``c=`` for a line (QUIRKS #24). ``key_source(n)`` gives the
    octets of our SRTP master key and salt. Raises :class:`SdpError` when ``ports`` does not
    have one entry per m-line, a port is outside 0..65535, the policy is unknown, or
    ``key_source`` returns the wrong number of octets.
    """
    _check_policy(srtp)
    if len(ports) != len(offer.media):
        raise SdpError(f"{len(ports)} ports given for {len(offer.media)} m-lines")
    if any(not 0 <= p <= 65535 for p in ports):
        raise SdpError("local port outside 0..65535")
    answer = local_session(local_address, session_id, session_version, username)
    streams: list[NegotiatedStream] = []
    for index, (m, port) in enumerate(zip(offer.media, ports, strict=True)):
        connection = offer.connection_of(m)
        remote = connection.address if connection is not None else fallback_address
        direction = offer.direction_of(m)
        ptime = m.ptime if m.ptime is not None else parse_ptime(offer.attribute("ptime"))
        usable = _usable(m, supported, srtp, srtp_suites) if port else None
        codecs, crypto = usable if usable is not None else ((), None)
        codec = codecs[0] if codecs else None
        stream = NegotiatedStream(
            index=index,
            label=m.label,
            accepted=codec is not None,
            local_port=port if codec is not None else 0,
            codec=codec,
            codecs=codecs,
            dtmf_payload_type=None,
            cn_payload_types=frozenset(),
            remote_address=remote,
            remote_port=m.port,
            direction=direction,
            ptime=ptime,
        )
        if crypto is not None:
            stream.remote_crypto = crypto
            kdr = tuple(p for p in crypto.session_params if p.startswith("KDR="))
            stream.local_crypto = new_crypto(crypto.tag, crypto.suite, key_source, kdr)
        if codec is None:
            answer.media.append(_rejected(m))
        else:
            answer.media.append(_accepted(m, stream, codec))
        streams.append(stream)
    return answer, streams


def _rejected(m: Media) -> Media:
    """RFC 3264 §6: port 0, same media and proto, at least one format; label kept."""
    attributes: list[Attribute] = []
    if m.label is not None:
        attributes.append(("label", m.label))
    return Media(m.media, 0, None, m.proto, m.formats[:1] or ["0"], attributes=attributes)


def _accepted(m: Media, stream: NegotiatedStream, codec: Codec) -> Media:
    rtpmaps = m.rtpmaps()
    formats: list[str] = []
    attributes: list[Attribute] = []
    for c in stream.codecs:
        formats.append(str(c.payload_type))
        attributes.append(
            ("rtpmap", f"{c.payload_type} {rtpmaps[c.payload_type].encoding}/{c.clock_rate}")
        )
        codec_fmtp = m.fmtp(c.payload_type)
        if codec_fmtp:
            attributes.append(("fmtp", f"{c.payload_type} {codec_fmtp}"))
    # RFC 4733 §7.1.1: telephone-event at the codec's RTP clock rate, same PT as offered.
    dtmf = next(
        (r for r in _by_encoding(rtpmaps, "telephone-event") if r.clock_rate == codec.clock_rate),
        None,
    )
    if dtmf is not None:
        stream.dtmf_payload_type = dtmf.payload_type
        formats.append(str(dtmf.payload_type))
        attributes.append(("rtpmap", f"{dtmf.payload_type} {dtmf.encoding}/{dtmf.clock_rate}"))
        dtmf_fmtp = m.fmtp(dtmf.payload_type)
        if dtmf_fmtp:
            attributes.append(("fmtp", f"{dtmf.payload_type} {dtmf_fmtp}"))
    # Comfort noise (RFC 3389) is not answered, but SRCs send it anyway (QUIRKS #26).
    stream.cn_payload_types = frozenset(r.payload_type for r in _by_encoding(rtpmaps, "cn"))
    if stream.ptime is not None:
        attributes.append(("ptime", str(stream.ptime)))
    if stream.local_crypto is not None:
        attributes.append(("crypto", str(stream.local_crypto)))
    if m.attribute("rtcp-mux") is not None:
        stream.rtcp_mux = True
        attributes.append(("rtcp-mux", None))
    attributes.append((_ANSWER_DIRECTION[stream.direction], None))
    if stream.label is not None:
        attributes.append(("label", stream.label))
    return Media(m.media, stream.local_port, None, m.proto, formats, attributes=attributes)
