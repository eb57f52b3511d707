"""SDP answer of a receive-only Session Recording Server (RFC 3264 §6, RFC 7866 §8.1.1).

Calling protocol::

    usable = acceptable(offer)                       # which m-lines we can take
    ports = [allocate() if ok else 0 for ok in usable]
    answer, streams = build_answer(offer, local_address=..., ports=ports,
                                   session_id=..., session_version=...)
    serialize(answer)                                # body of the 200 OK

Answer rules: one m-line per offered m-line, same order, media type and proto (RFC 3264 §6);
rejected lines get port 0 and the first offered format; accepted audio lines carry one codec
(the first offered format we support: the offerer's preference) plus ``telephone-event`` with
the offered payload type and fmtp (RFC 4733 §7.1.1); comfort noise is not answered; the
direction is reversed for a recorder that only receives (RFC 3264 §6.1: sendonly/sendrecv →
recvonly, recvonly/inactive → inactive); ``a=label`` is always echoed so SRCs can match answer
lines by label (RFC 7866 §8.1.1, RFC 4574); ``a=ptime`` is echoed when offered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .errors import SdpError
from .model import (
    Attribute,
    Connection,
    Direction,
    Media,
    Origin,
    RtpMap,
    SessionDescription,
    parse_ptime,
)

DEFAULT_SUPPORTED: Final = ("PCMU", "PCMA", "G722")
RTP_PROTOS: Final = frozenset({"RTP/AVP", "RTP/AVPF"})

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
    dtmf_payload_type: int | None
    cn_payload_types: frozenset[int]
    remote_address: str | None
    remote_port: int
    direction: Direction
    ptime: int | None


def _choose_codec(m: Media, supported: Sequence[str]) -> Codec | None:
    wanted = {name.upper() for name in supported}
    for rtpmap in m.rtpmaps().values():
        name = rtpmap.encoding.upper()
        if name not in wanted or (rtpmap.channels or 1) != 1:
            continue
        if _KNOWN_CLOCK.get(name, rtpmap.clock_rate) != rtpmap.clock_rate:
            continue
        return Codec(rtpmap.payload_type, name, rtpmap.clock_rate, 1)
    return None


def _usable_codec(m: Media, supported: Sequence[str]) -> Codec | None:
    """The codec to receive ``m`` with, or ``None`` when the line is not acceptable."""
    if m.media.lower() != "audio" or m.proto.upper() not in RTP_PROTOS or m.port == 0:
        return None
    return _choose_codec(m, supported)


def acceptable(
    offer: SessionDescription, *, supported: Sequence[str] = DEFAULT_SUPPORTED
) -> list[bool]:
    """Per offered m-line: can the SRS receive it?

    True for ``audio`` over RTP/AVP or RTP/AVPF with a non-zero port and at least one
    ``supported`` codec. RTP/SAVP (SRTP) and any other proto are not acceptable yet.
    """
    return [_usable_codec(m, supported) is not None for m in offer.media]


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
) -> tuple[SessionDescription, list[NegotiatedStream]]:
    """Build the answer to ``offer`` (RFC 3264 §6) and describe each negotiated stream.

    ``ports[i]`` is the local RTP port for m-line ``i``; 0 rejects it. A line that is not
    :func:`acceptable` is rejected whatever its port. ``fallback_address`` (usually the
    signalling source) is the remote address when the offer has no ``c=`` for a line
    (QUIRKS #24). Raises :class:`SdpError` when ``ports`` does not have one entry per m-line
    or a port is outside 0..65535.
    """
    if len(ports) != len(offer.media):
        raise SdpError(f"{len(ports)} ports given for {len(offer.media)} m-lines")
    if any(not 0 <= p <= 65535 for p in ports):
        raise SdpError("local port outside 0..65535")
    addrtype = "IP6" if ":" in local_address else "IP4"
    answer = SessionDescription(
        version=0,
        origin=Origin(
            username, str(session_id), str(session_version), "IN", addrtype, local_address
        ),
        session_name="-",
        connection=Connection("IN", addrtype, local_address),
        times=["0 0"],
    )
    streams: list[NegotiatedStream] = []
    for index, (m, port) in enumerate(zip(offer.media, ports, strict=True)):
        connection = offer.connection_of(m)
        remote = connection.address if connection is not None else fallback_address
        direction = offer.direction_of(m)
        ptime = m.ptime if m.ptime is not None else parse_ptime(offer.attribute("ptime"))
        codec = _usable_codec(m, supported) if port else None
        stream = NegotiatedStream(
            index=index,
            label=m.label,
            accepted=codec is not None,
            local_port=port if codec is not None else 0,
            codec=codec,
            dtmf_payload_type=None,
            cn_payload_types=frozenset(),
            remote_address=remote,
            remote_port=m.port,
            direction=direction,
            ptime=ptime,
        )
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
    formats = [str(codec.payload_type)]
    attributes: list[Attribute] = [
        (
            "rtpmap",
            f"{codec.payload_type} {rtpmaps[codec.payload_type].encoding}/{codec.clock_rate}",
        ),
    ]
    codec_fmtp = m.fmtp(codec.payload_type)
    if codec_fmtp:
        attributes.append(("fmtp", f"{codec.payload_type} {codec_fmtp}"))
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
    attributes.append((_ANSWER_DIRECTION[stream.direction], None))
    if stream.label is not None:
        attributes.append(("label", stream.label))
    return Media(m.media, stream.local_port, None, m.proto, formats, attributes=attributes)
