"""Replay a recorded SIPREC call (a pcap) into a running bridge, at real-time pace.

Two halves:

* :func:`load_call` is pure (a capture file in, a :class:`RecordedCall` out). It decodes
  Ethernet / Linux SLL / SLL2 / loopback / raw-IP frames of pcap and pcapng files, IPv4 (with
  fragment reassembly) and IPv6, UDP and TCP (streams reassembled in sequence order, then framed
  by ``Content-Length``, RFC 3261 §18.3). The first initial INVITE (no To tag) fixes the call:
  its sender is the SRC (RFC 7866 §3), its Call-ID the dialog. Kept are the SRC's requests of
  that dialog with their capture times, the SDP answer of the first 2xx, and the RTP packets
  (RFC 3550) the SRC sent for each offered m-line: a packet belongs to m-line *i* when its
  source port is the port offered on m-line *i*, else when its destination port is the port
  answered on m-line *i*, else by order of first appearance of its SSRC. Anything else
  (RTCP, traffic towards the SRC, other protocols, other calls) is counted and ignored.
  :func:`wrap_rtp` is its counterpart for captures with RTP but no signalling: it synthesises
  a SIPREC INVITE (RFC 7866 §6.1, RFC 7865 metadata) with one m-line per RTP flow.
  :meth:`RecordedCall.excerpt` cuts either to a window of media (the bridge paces by wall
  clock, so long captures are shortened rather than sped up); :func:`prepare_call` combines
  the three as :func:`replay` and the command line use them.

* :func:`replay` is the asyncio adapter. Per concurrent copy of the call it opens one SIP socket
  (UDP, or a TCP connection) and one UDP socket per m-line, and drives a :class:`CallDriver`
  (a sans-I/O UAC: RFC 3261 §8.1 request generation, §12.1.2 / §12.2.1 dialog, §17.1 client
  transactions with T1 retransmission on UDP). The rewritten INVITE (new Call-ID, tags and
  branch; Via/Contact on our socket; Request-URI on the target; SDP ``c=``/``m=`` on our RTP
  sockets, multipart bodies rewritten part by part) is sent; on the 2xx the driver ACKs, and
  the RTP packets are sent, unchanged, to the answered ports at the pcap pace divided by
  ``speed``, together with the SRC's later requests (re-INVITE, UPDATE, BYE) at their pcap
  times. A single scheduling loop serves all copies (a heap of due instants): it sleeps until
  the next due packet or SIP timer, or until SIP input arrives, then sends everything due (no
  task per packet). Over TCP, messages may be cut into segments of a given size, written one
  per loop iteration, as captured SRCs do (QUIRKS #7).

Exceptions: :class:`ReplayError` is the only exception raised by this module (unreadable
capture, no INVITE (or, wrapped, no RTP) in it, a bad window, sockets that cannot be opened,
an INVITE rejected or not answered within :data:`ANSWER_TIMEOUT`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import heapq
import ipaddress
import math
import re
import secrets
import socket
import sys
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal, cast

import dpkt

import sdp
from rtp.errors import RtpError
from rtp.packet import RtpHeader, is_rtcp, parse_header

from .settings import split_host_port
from .sip.errors import SipError, SipFramingError, SipParseError
from .sip.message import (
    KEEPALIVE_PING,
    Headers,
    NameAddr,
    SipRequest,
    SipResponse,
    StreamFramer,
    build_response,
    parse_message,
    parse_name_addr,
)
from .siprec.multipart import SDP_TYPE, BodyError, extract_recording_body, split_multipart

__all__ = [
    "ANSWER_TIMEOUT",
    "CallDriver",
    "CallReport",
    "RecordedCall",
    "RecordedPacket",
    "RecordedRequest",
    "RecordedStream",
    "ReplayError",
    "ReplayResult",
    "add_arguments",
    "load_call",
    "main_from_args",
    "prepare_call",
    "replay",
    "wrap_rtp",
]

Transport = Literal["udp", "tcp"]
Address = tuple[str, int]

ANSWER_TIMEOUT: Final = 5.0
"""Seconds to wait for the final response to any request we send."""
T1: Final = 0.5
"""RFC 3261 §17.1.1.1: RTT estimate, initial retransmission interval on UDP."""
T2: Final = 4.0
"""RFC 3261 §17.1.2.2: cap of the non-INVITE retransmission interval."""
START_SPREAD: Final = 0.020
"""Concurrent copies of a call start evenly spread over at least this many seconds..."""
MAX_CALL_RATE: Final = 200.0
"""...and no faster than this many INVITEs per second."""
MAX_CAPTURE_PACKETS: Final = 5_000_000
"""Larger captures are refused by :func:`load_call`."""
MAX_PENDING_FRAGMENTS: Final = 1024
"""IP datagrams being reassembled at once; the oldest is dropped beyond this."""
MIN_WRAPPED_PACKETS: Final = 2
""":func:`wrap_rtp` ignores flows with fewer RTP-looking datagrams (stray UDP that parses)."""
_NOT_AUDIO: Final = frozenset({"telephone-event", "CN"})
"""Encodings that do not carry the stream's audio (RFC 4733, RFC 3389)."""
WRAPPED_TAIL: Final = 0.3
"""Seconds between the last RTP packet of a wrapped capture and the BYE: room for the jitter
buffer and for a final RFC 4733 event whose duration runs past its last packet."""

_NOT_REPLAYED: Final = frozenset({"ACK", "CANCEL", "PRACK"})
"""SRC requests the driver generates itself (ACK) or cannot meaningfully replay."""
_SIP_START: Final = re.compile(rb"(?m)^(?:[A-Z]+ [^ \r\n]+ SIP/2\.0|SIP/2\.0 [1-6][0-9][0-9] )")
# sip:[userinfo@]hostport[;params][?headers] (RFC 3261 §19.1.1); hostport taken loosely so
# that captures with unbracketed IPv6 addresses can still be rewritten.
_URI_PARTS: Final = re.compile(
    r"^(?P<scheme>sips?):(?:(?P<user>[^@]*)@)?[^;?>]*(?P<rest>.*)$", re.IGNORECASE | re.DOTALL
)
_TRANSPORT_PARAM: Final = re.compile(r";transport=[^;?]*", re.IGNORECASE)


class ReplayError(Exception):
    """The replay cannot be done or failed; ``str(exc)`` says why.

    ``result`` holds the :class:`ReplayResult` of the copies that did run when the bridge
    rejected or did not answer some of them, else ``None``.
    """

    def __init__(self, message: str, result: ReplayResult | None = None) -> None:
        super().__init__(message)
        self.result = result


# --------------------------------------------------------------------------------------------
# The recorded call


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request the SRC sent, ``time`` seconds after the initial INVITE."""

    time: float
    request: SipRequest


@dataclass(frozen=True, slots=True)
class RecordedPacket:
    """An RTP datagram the SRC sent for offered m-line ``stream``, ``time`` s after the INVITE."""

    time: float
    stream: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RecordedStream:
    """One offered m-line (RFC 3264 §5) and what the capture holds for it."""

    index: int
    label: str | None
    offered_port: int
    answered_port: int | None
    packets: int
    ssrcs: tuple[int, ...]

    @property
    def name(self) -> str:
        """The ``a=label`` (RFC 4574), or ``m<index>`` for an unlabelled m-line."""
        return self.label if self.label is not None else f"m{self.index}"


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One SIPREC call as captured: the SRC's requests and RTP, times relative to the INVITE."""

    pcap: Path
    transport: Transport
    src: Address
    srs: Address
    call_id: str
    invite: SipRequest
    requests: tuple[RecordedRequest, ...]
    """Every request of the dialog sent by the SRC, the initial INVITE first, in capture order
    (retransmissions removed)."""
    answer_time: float | None
    """Time of the first 2xx to the INVITE, ``None`` if the capture lacks it."""
    answer: sdp.SessionDescription | None
    streams: tuple[RecordedStream, ...]
    packets: tuple[RecordedPacket, ...]
    """The SRC's RTP in capture order."""
    end_time: float
    """Time of the last message of the dialog or the last RTP packet, whichever is later."""
    sip_messages: int
    """SIP messages of any call found in the capture."""
    ignored_datagrams: int
    """UDP datagrams that were neither SIP nor RTP of this call."""

    @property
    def has_bye(self) -> bool:
        return any(r.request.method == "BYE" for r in self.requests)

    def summary(self) -> str:
        """One line per fact, for logs and the command line."""
        lines = [
            f"{self.pcap.name}: Call-ID {self.call_id} over {self.transport.upper()}, "
            f"SRC {_hostport(*self.src)} -> SRS {_hostport(*self.srs)}",
            "  SRC requests: "
            + ", ".join(f"{r.request.method}@{r.time:.3f}s" for r in self.requests),
        ]
        for s in self.streams:
            answered = s.answered_port if s.answered_port is not None else "?"
            lines.append(
                f"  m-line {s.index} label={s.name} offered port {s.offered_port}, answered "
                f"{answered}: {s.packets} RTP packets, SSRC "
                + (", ".join(f"{x:08x}" for x in s.ssrcs) or "-")
            )
        lines.append(
            f"  {self.sip_messages} SIP messages in the capture, {self.ignored_datagrams} "
            f"other datagrams ignored, call lasts {self.end_time:.3f}s"
        )
        return "\n".join(lines)

    def excerpt(self, start: float = 0.0, duration: float | None = None) -> RecordedCall:
        """The call cut to the media window ``[start, start + duration)``.

        Media time counts from the 2xx to the INVITE (from the INVITE when the capture lacks
        the 2xx). RTP packets and in-dialog requests inside the window are kept and moved
        ``start`` seconds earlier, everything else after the INVITE is dropped; the call then
        ends at the window's end (a later recorded BYE is replaced by the driver's own, RFC 3261
        §15.1.1). The bridge paces audio by wall clock, so a long capture is shortened this
        way rather than replayed faster. Requests before ``start`` (e.g. a re-INVITE that put
        the call on hold) are not replayed. Raises :class:`ReplayError` for a negative
        ``start`` or a ``duration`` that is not positive.
        """
        if not (start >= 0 and math.isfinite(start)):
            raise ReplayError(f"start must be a non-negative number, not {start!r}")
        if duration is not None and not (duration > 0 and math.isfinite(duration)):
            raise ReplayError(f"duration must be a positive number, not {duration!r}")
        origin = self.answer_time if self.answer_time is not None else 0.0
        low = origin + start
        high = low + duration if duration is not None else math.inf

        def inside(time: float) -> bool:
            return low <= time < high

        packets = tuple(
            RecordedPacket(p.time - start, p.stream, p.data) for p in self.packets if inside(p.time)
        )
        later = tuple(
            RecordedRequest(r.time - start, r.request) for r in self.requests[1:] if inside(r.time)
        )
        counts = [0] * len(self.streams)
        for packet in packets:
            counts[packet.stream] += 1
        return replace(
            self,
            requests=self.requests[:1] + later,
            streams=tuple(replace(s, packets=n) for s, n in zip(self.streams, counts, strict=True)),
            packets=packets,
            end_time=max(origin, min(self.end_time, high) - start),
        )


# --------------------------------------------------------------------------------------------
# Capture decoding (pure)


@dataclass(slots=True)
class _Segment:
    seq: int
    data: bytes
    time: float


@dataclass(slots=True)
class _Flow:
    """One direction of a TCP connection."""

    src: Address
    dst: Address
    isn: int | None = None
    segments: list[_Segment] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Sip:
    time: float
    transport: Transport
    src: Address
    dst: Address
    message: SipRequest | SipResponse


@dataclass(frozen=True, slots=True)
class _Datagram:
    time: float
    src: Address
    dst: Address
    payload: bytes


@dataclass(slots=True)
class _Capture:
    sip: list[_Sip] = field(default_factory=list)
    datagrams: list[_Datagram] = field(default_factory=list)
    flows: dict[tuple[Address, Address], _Flow] = field(default_factory=dict)
    fragments: dict[tuple[Any, ...], list[tuple[int, bytes, bool]]] = field(default_factory=dict)
    frames: int = 0
    undecoded: int = 0


def _address(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def _open_reader(f: BinaryIO) -> Any:
    magic = f.read(4)
    f.seek(0)
    if magic == b"\x0a\x0d\x0d\x0a":
        return dpkt.pcapng.Reader(f)
    return dpkt.pcap.Reader(f)


def _network(linktype: int, frame: bytes) -> Any:
    """The IPv4/IPv6 packet of a link-layer frame, or ``None``."""
    if linktype == dpkt.pcap.DLT_EN10MB:
        packet = dpkt.ethernet.Ethernet(frame).data
    elif linktype == dpkt.pcap.DLT_LINUX_SLL:
        packet = dpkt.sll.SLL(frame).data
    elif linktype == 276:  # LINKTYPE_LINUX_SLL2
        packet = dpkt.sll2.SLL2(frame).data
    elif linktype in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
        packet = dpkt.loopback.Loopback(frame).data
    elif linktype in (dpkt.pcap.DLT_RAW, 12, 14, 228, 229):  # raw IP, LINKTYPE_IPV4/IPV6
        version = frame[0] >> 4 if frame else 0
        if version not in (4, 6):
            return None
        packet = dpkt.ip.IP(frame) if version == 4 else dpkt.ip6.IP6(frame)
    else:
        return None
    return packet if isinstance(packet, dpkt.ip.IP | dpkt.ip6.IP6) else None


def _reassemble(
    capture: _Capture, key: tuple[Any, ...], offset: int, data: bytes, more: bool
) -> bytes | None:
    """IPv4 (RFC 791 §3.2) / IPv6 (RFC 8200 §4.5) fragment reassembly; the payload when whole."""
    pieces = capture.fragments.setdefault(key, [])
    pieces.append((offset, data, more))
    if len(capture.fragments) > MAX_PENDING_FRAGMENTS:
        del capture.fragments[next(iter(capture.fragments))]
    pieces.sort(key=lambda p: p[0])
    if pieces[-1][2]:
        return None  # the last fragment has not arrived yet
    whole = bytearray()
    for piece_offset, piece, _ in pieces:
        if piece_offset > len(whole):
            return None  # a hole
        if piece_offset + len(piece) > len(whole):
            whole += piece[len(whole) - piece_offset :]
    del capture.fragments[key]
    return bytes(whole)


def _transport_payload(capture: _Capture, ip: Any) -> tuple[int, Any] | None:
    """``(protocol, dpkt UDP/TCP object)`` of an IP packet, reassembling fragments."""
    if isinstance(ip, dpkt.ip.IP):
        if not (ip.mf or ip.offset):
            return int(ip.p), ip.data
        raw = ip.data if isinstance(ip.data, bytes) else bytes(ip.data)
        whole = _reassemble(  # the offset field counts 8-octet units (RFC 791 §3.1)
            capture, (ip.src, ip.dst, ip.id, ip.p), ip.offset * 8, raw, bool(ip.mf)
        )
        protocol = int(ip.p)
    else:
        fragment = ip.extension_hdrs.get(dpkt.ip.IP_PROTO_FRAGMENT)
        if fragment is None:
            return int(ip.p), ip.data
        raw = ip.data if isinstance(ip.data, bytes) else bytes(ip.data)
        whole = _reassemble(
            capture,
            (ip.src, ip.dst, fragment.id, ip.p),
            fragment.frag_off * 8,
            raw,
            bool(fragment.m_flag),
        )
        protocol = int(ip.p)
    if whole is None:
        return None
    try:
        if protocol == dpkt.ip.IP_PROTO_UDP:
            return protocol, dpkt.udp.UDP(whole)
        if protocol == dpkt.ip.IP_PROTO_TCP:
            return protocol, dpkt.tcp.TCP(whole)
    except (dpkt.UnpackError, ValueError):
        capture.undecoded += 1
    return None


def _looks_like_sip(payload: bytes) -> bool:
    return _SIP_START.match(payload.lstrip(b"\r\n")[:64]) is not None


def _add_sip(
    capture: _Capture, time: float, transport: Transport, src: Address, dst: Address, data: bytes
) -> None:
    try:
        message = parse_message(data)
    except SipParseError:
        capture.undecoded += 1
        return
    capture.sip.append(_Sip(time, transport, src, dst, message))


def _scan(path: Path) -> _Capture:
    capture = _Capture()
    try:
        with path.open("rb") as f:
            reader = _open_reader(f)
            linktype = int(reader.datalink())
            for time, frame in reader:
                capture.frames += 1
                if capture.frames > MAX_CAPTURE_PACKETS:
                    raise ReplayError(f"{path}: more than {MAX_CAPTURE_PACKETS} packets")
                _scan_frame(capture, float(time), linktype, bytes(frame))
    except (OSError, ValueError, dpkt.Error) as exc:
        raise ReplayError(f"{path}: cannot read capture: {exc}") from exc
    return capture


def _scan_frame(capture: _Capture, time: float, linktype: int, frame: bytes) -> None:
    try:
        ip = _network(linktype, frame)
    except (dpkt.UnpackError, ValueError, IndexError):
        ip = None
    if ip is None:
        capture.undecoded += 1
        return
    found = _transport_payload(capture, ip)
    if found is None:
        return
    protocol, segment = found
    if not isinstance(segment, dpkt.udp.UDP | dpkt.tcp.TCP):
        capture.undecoded += 1
        return
    src = (_address(ip.src), int(segment.sport))
    dst = (_address(ip.dst), int(segment.dport))
    payload = bytes(segment.data)
    if protocol == dpkt.ip.IP_PROTO_TCP:
        flow = capture.flows.setdefault((src, dst), _Flow(src, dst))
        if segment.flags & dpkt.tcp.TH_SYN:
            flow.isn = int(segment.seq)
        if payload:
            flow.segments.append(_Segment(int(segment.seq), payload, time))
        return
    if _looks_like_sip(payload):
        _add_sip(capture, time, "udp", src, dst, payload)
    else:
        capture.datagrams.append(_Datagram(time, src, dst, payload))


def _frame_flow(capture: _Capture, flow: _Flow) -> None:
    """Reassemble one TCP direction by sequence number (RFC 9293 §3.10.7.4) and frame it."""
    if not flow.segments:
        return
    base = (flow.isn + 1) if flow.isn is not None else flow.segments[0].seq

    def offset(seq: int) -> int:
        delta = (seq - base) & 0xFFFFFFFF
        return delta - (1 << 32) if delta >= 1 << 31 else delta

    ordered = sorted(flow.segments, key=lambda s: (offset(s.seq), s.time))
    framer = StreamFramer()
    position: int | None = None
    resync = False
    latest = 0.0
    for seg in ordered:
        start = offset(seg.seq)
        end = start + len(seg.data)
        if position is not None and end <= position:
            continue  # retransmission of bytes already taken
        if position is None or start > position:
            framer = StreamFramer()  # first segment or a capture gap: resynchronise
            resync = True
            position = start
        data = seg.data[position - start :]
        position = end
        latest = max(latest, seg.time)
        if resync:
            match = _SIP_START.search(data)
            if match is None:
                continue
            data, resync = data[match.start() :], False
        try:
            messages = framer.feed(data)
        except SipFramingError as exc:
            messages = exc.messages
            framer, resync = StreamFramer(), True
        for message in messages:
            if message != KEEPALIVE_PING:
                _add_sip(capture, latest, "tcp", flow.src, flow.dst, message)


# --------------------------------------------------------------------------------------------
# From capture to call


def _sdp_of(message: SipRequest | SipResponse) -> sdp.SessionDescription | None:
    try:
        body = extract_recording_body(message.headers.get("Content-Type"), message.body)
        return sdp.parse(body.sdp) if body.sdp is not None else None
    except (BodyError, sdp.SdpError):
        return None


def _port_map(descriptions: Sequence[sdp.SessionDescription]) -> dict[int, int]:
    ports: dict[int, int] = {}
    for description in descriptions:
        for index, media in enumerate(description.media):
            if media.port:
                ports.setdefault(media.port, index)
    return ports


def _is_initial_invite(message: SipRequest | SipResponse) -> bool:
    if not isinstance(message, SipRequest) or message.method != "INVITE":
        return False
    try:
        return message.to_tag is None
    except SipParseError:
        return False


def _cseq_of(message: SipRequest | SipResponse) -> tuple[int, str] | None:
    try:
        return message.cseq
    except SipParseError:
        return None


def load_call(pcap: Path) -> RecordedCall:
    """Read ``pcap`` and return the first SIPREC call in it (see the module docstring).

    Raises :class:`ReplayError` when the file cannot be read or holds no initial INVITE; the
    message says what the capture holds instead.
    """
    capture = _scan(pcap)
    for flow in capture.flows.values():
        _frame_flow(capture, flow)
    capture.sip.sort(key=lambda s: s.time)
    first = next((s for s in capture.sip if _is_initial_invite(s.message)), None)
    if first is None:
        raise ReplayError(
            f"{pcap}: no initial SIP INVITE in the capture ({capture.frames} frames, "
            f"{len(capture.sip)} SIP messages, {len(capture.datagrams)} other UDP datagrams, "
            f"{len(capture.flows)} TCP flows); RTP without signalling replays with --wrap-rtp"
        )
    first_call_id = _call_id(first.message)
    # An INVITE challenged (401/407) or otherwise refused is retried with a higher CSeq and
    # still no To tag: the call starts with the attempt that was answered 2xx, if any.
    attempts = [
        s
        for s in capture.sip
        if _is_initial_invite(s.message) and _call_id(s.message) == first_call_id
    ]
    answered_cseqs = {
        _cseq_of(s.message)
        for s in capture.sip
        if isinstance(s.message, SipResponse)
        and s.message.status // 100 == 2
        and _call_id(s.message) == first_call_id
    }
    invite = next((s for s in attempts if _cseq_of(s.message) in answered_cseqs), first)
    assert isinstance(invite.message, SipRequest)  # _is_initial_invite() checked it
    t0 = invite.time
    call_id = invite.message.call_id
    src_host = invite.src[0]
    dialog = [s for s in capture.sip if _call_id(s.message) == call_id and s.time >= t0]

    def from_src(s: _Sip) -> bool:
        return s.src == invite.src or (s.src[0] == src_host and src_host != invite.dst[0])

    requests: list[RecordedRequest] = []
    seen: set[tuple[Any, ...]] = set()
    offers: list[sdp.SessionDescription] = []
    answers: list[sdp.SessionDescription] = []
    answer_time: float | None = None
    answer: sdp.SessionDescription | None = None
    for s in dialog:
        cseq = _cseq_of(s.message)
        if isinstance(s.message, SipRequest) and from_src(s):
            key = (cseq, s.message.method, _branch(s.message))
            if key in seen or (
                s.message.method == "INVITE"
                and s.message.to_tag is None
                and s.message is not invite.message
            ):
                continue  # a retransmission (RFC 3261 §17.1.1.2) or another first attempt
            seen.add(key)
            requests.append(RecordedRequest(s.time - t0, s.message))
            description = _sdp_of(s.message)
            if description is not None and s.message.method != "ACK":
                offers.append(description)
        elif (
            isinstance(s.message, SipResponse) and not from_src(s) and s.message.status // 100 == 2
        ):
            description = _sdp_of(s.message)
            if description is not None:
                answers.append(description)
            if cseq == invite.message.cseq and answer_time is None:
                answer_time = s.time - t0
                answer = description
    media_lines = max((len(o.media) for o in offers), default=0)
    packets, ssrcs = _rtp_of(capture, invite, offers, answers, media_lines)
    streams = []
    for index in range(media_lines):
        # The first offer that has this m-line: the INVITE's, or a later re-INVITE/UPDATE's.
        media = next(o.media[index] for o in offers if index < len(o.media))
        answered = answer.media[index].port if answer and index < len(answer.media) else None
        streams.append(
            RecordedStream(
                index=index,
                label=media.label,
                offered_port=media.port,
                answered_port=answered,
                packets=sum(1 for p in packets if p.stream == index),
                ssrcs=tuple(x for x, i in ssrcs.items() if i == index),
            )
        )
    ends = [dialog[-1].time - t0, *(p.time for p in packets)]
    return RecordedCall(
        pcap=pcap,
        transport=invite.transport,
        src=invite.src,
        srs=invite.dst,
        call_id=call_id,
        invite=invite.message,
        requests=tuple(requests),
        answer_time=answer_time,
        answer=answer,
        streams=tuple(streams),
        packets=tuple(packets),
        end_time=max(ends),
        sip_messages=len(capture.sip),
        ignored_datagrams=len(capture.datagrams) - len(packets),
    )


# --------------------------------------------------------------------------------------------
# RTP-only captures: a SIPREC INVITE synthesised around their streams (pure)


@dataclass(slots=True)
class _RtpFlow:
    """The RTP datagrams one source address sent to one destination address."""

    src: Address
    dst: Address
    packets: list[tuple[float, RtpHeader, bytes]] = field(default_factory=list)


def _rtp_flows(capture: _Capture) -> list[_RtpFlow]:
    """UDP flows carrying RTP (RFC 3550 §5.1), in order of their first packet; RTCP, STUN, DNS
    and other datagrams that do not parse as RTP are left out, and so are flows with a
    single RTP-looking datagram."""
    flows: dict[tuple[Address, Address], _RtpFlow] = {}
    for d in capture.datagrams:
        if is_rtcp(d.payload):
            continue
        try:
            header = parse_header(d.payload)
        except RtpError:
            continue
        flow = flows.setdefault((d.src, d.dst), _RtpFlow(d.src, d.dst))
        flow.packets.append((d.time, header, d.payload))
    return [flow for flow in flows.values() if len(flow.packets) >= MIN_WRAPPED_PACKETS]


def _rtpmap_of(payload_type: int, payloads: Sequence[bytes]) -> sdp.RtpMap | None:
    """RFC 3551 Table 4 for static payload types; a dynamic one is taken for RFC 4733
    ``telephone-event`` when every payload is one 4-octet event block (§2.3)."""
    static = sdp.STATIC_PAYLOAD_TYPES.get(payload_type)
    if static is not None:
        return static
    if payload_type >= 96 and all(len(p) == 4 for p in payloads):
        return sdp.RtpMap(payload_type, "telephone-event", 8000)
    return None


def _ptime_ms(flow: _RtpFlow, rtpmaps: dict[int, sdp.RtpMap]) -> int | None:
    """The most common timestamp step between consecutive audio packets, in ms (RFC 8866
    §6.4); ``None`` when the flow has no two consecutive audio packets."""
    counts: dict[int, int] = {}
    previous: RtpHeader | None = None
    for _, header, _ in flow.packets:
        rtpmap = rtpmaps.get(header.payload_type)
        if rtpmap is None or rtpmap.encoding in _NOT_AUDIO:
            continue
        if (
            previous is not None
            and header.ssrc == previous.ssrc
            and (header.sequence - previous.sequence) & 0xFFFF == 1
        ):
            step = (header.timestamp - previous.timestamp) & 0xFFFFFFFF
            ms = round(step * 1000 / rtpmap.clock_rate)
            counts[ms] = counts.get(ms, 0) + 1
        previous = header
    ms = max(counts, key=counts.__getitem__, default=0)
    return ms if 0 < ms <= 1000 else None


def _recording_id(pcap: Path, what: str) -> str:
    """A stable RFC 7865 §6 identifier: base64 of a UUID (RFC 4122 §4.3, name-based)."""
    return base64.b64encode(uuid.uuid5(uuid.NAMESPACE_URL, f"{pcap.name}#{what}").bytes).decode()


def _wrapped_media(flow: _RtpFlow, label: str) -> sdp.Media:
    """The ``sendonly`` m-line offering what ``flow`` carries (RFC 3264 §5, RFC 4574 label)."""
    types: dict[int, list[bytes]] = {}
    for _, header, data in flow.packets:
        types.setdefault(header.payload_type, []).append(
            data[header.payload_offset : header.payload_end]
        )
    rtpmaps = {
        pt: rtpmap
        for pt, payloads in types.items()
        if (rtpmap := _rtpmap_of(pt, payloads)) is not None
    }
    if all(m.encoding in _NOT_AUDIO for m in rtpmaps.values()):
        # Events need an audio stream to belong to (RFC 4733 §2.1): offer PCMU first.
        rtpmaps = {0: sdp.STATIC_PAYLOAD_TYPES[0], **rtpmaps}
    attributes: list[tuple[str, str | None]] = [
        ("rtpmap", f"{pt} {m.encoding}/{m.clock_rate}") for pt, m in rtpmaps.items()
    ]
    attributes += [
        ("fmtp", f"{pt} 0-16") for pt, m in rtpmaps.items() if m.encoding == "telephone-event"
    ]
    ptime = _ptime_ms(flow, rtpmaps)
    if ptime is not None:
        attributes.append(("ptime", str(ptime)))
    attributes += [("sendonly", None), ("label", label)]
    family = "IP6" if ":" in flow.src[0] else "IP4"
    return sdp.Media(
        "audio",
        flow.src[1],
        None,
        "RTP/AVP",
        [str(pt) for pt in rtpmaps],
        connection=sdp.Connection("IN", family, flow.src[0]),
        attributes=attributes,
    )


def _wrapped_invite(pcap: Path, flows: Sequence[_RtpFlow]) -> SipRequest:
    """A SIPREC INVITE (RFC 7866 §6.1): one labelled ``sendonly`` m-line per flow and RFC 7865
    metadata in which flow *i* is sent by participant *i*."""
    src, dst = flows[0].src, flows[0].dst
    call_id = f"{uuid.uuid5(uuid.NAMESPACE_URL, pcap.name).hex}@wrapped.invalid"
    session = _recording_id(pcap, "session")
    media: list[sdp.Media] = []
    participants: list[str] = []
    for index, flow in enumerate(flows):
        media.append(_wrapped_media(flow, str(index + 1)))
        participant, stream = _recording_id(pcap, f"p{index}"), _recording_id(pcap, f"s{index}")
        participants.append(
            f'<participant participant_id="{participant}"><nameID aor="sip:rtp-{index + 1}@'
            f'{_hostport(*flow.src)}"/></participant>'
            f'<stream stream_id="{stream}" session_id="{session}"><label>{index + 1}</label>'
            f'</stream><participantstreamassoc participant_id="{participant}"><send>{stream}'
            f"</send></participantstreamassoc>"
        )
    description = sdp.SessionDescription(
        0,
        sdp.Origin("-", "1", "1", "IN", "IP6" if ":" in src[0] else "IP4", src[0]),
        "-",
        media=media,
    )
    metadata = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<recording xmlns="urn:ietf:params:xml:ns:recording:1"><datamode>complete</datamode>'
        f'<session session_id="{session}"><sipSessionID>{call_id}</sipSessionID></session>'
        + "".join(participants)
        + "</recording>"
    ).encode()
    boundary = "wrapped-rtp-boundary"
    body = b"".join(
        [
            f"--{boundary}\r\nContent-Type: {SDP_TYPE}\r\n\r\n".encode(),
            sdp.serialize(description),
            f"\r\n--{boundary}\r\nContent-Type: application/rs-metadata+xml\r\n"
            "Content-Disposition: recording-session\r\n\r\n".encode(),
            metadata,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    src_uri, dst_uri = f"sip:src@{_hostport(src[0], 5060)}", f"sip:srs@{_hostport(dst[0], 5060)}"
    headers = Headers(
        [
            ("Via", f"SIP/2.0/UDP {_hostport(src[0], 5060)};branch=z9hG4bK-wrapped"),
            ("Max-Forwards", "70"),
            ("From", f"<{src_uri}>;tag=wrapped"),
            ("To", f"<{dst_uri}>"),
            ("Call-ID", call_id),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<{src_uri}>;+sip.src"),
            ("Require", "siprec"),
            ("Content-Type", f"multipart/mixed;boundary={boundary}"),
        ]
    )
    return SipRequest("INVITE", dst_uri, headers, body)


def wrap_rtp(pcap: Path) -> RecordedCall:
    """A SIPREC call synthesised around the RTP of a capture without signalling.

    Every UDP flow (source address → destination address) with RTP becomes one offered
    m-line, in order of first appearance, labelled ``1``, ``2``...: its payload types (static
    ones by RFC 3551 Table 4, dynamic ones taken for RFC 4733 ``telephone-event`` when they
    look like it, others left out of the offer), ``a=ptime`` from its timestamp steps,
    ``sendonly``; RFC 7865 metadata names one participant per flow as its sender. The INVITE
    is sent at the time of the first RTP packet; every datagram of a flow is replayed as
    captured, payload types left out of the offer included. Any SIP in the capture is ignored.
    Raises :class:`ReplayError` when the capture cannot be read or carries no RTP.
    """
    capture = _scan(pcap)
    flows = _rtp_flows(capture)
    if not flows:
        raise ReplayError(
            f"{pcap}: no RTP flow in the capture ({capture.frames} frames, "
            f"{len(capture.datagrams)} UDP datagrams)"
        )
    invite = parse_message(_wrapped_invite(pcap, flows).to_bytes())
    assert isinstance(invite, SipRequest)  # we built it
    t0 = min(flow.packets[0][0] for flow in flows)
    packets = sorted(
        (
            RecordedPacket(time - t0, index, data)
            for index, flow in enumerate(flows)
            for time, _, data in flow.packets
        ),
        key=lambda p: p.time,
    )
    streams = tuple(
        RecordedStream(
            index=index,
            label=str(index + 1),
            offered_port=flow.src[1],
            answered_port=flow.dst[1],
            packets=len(flow.packets),
            ssrcs=tuple(dict.fromkeys(header.ssrc for _, header, _ in flow.packets)),
        )
        for index, flow in enumerate(flows)
    )
    return RecordedCall(
        pcap=pcap,
        transport="udp",
        src=(flows[0].src[0], 5060),
        srs=(flows[0].dst[0], 5060),
        call_id=invite.call_id,
        invite=invite,
        requests=(RecordedRequest(0.0, invite),),
        answer_time=None,
        answer=None,
        streams=streams,
        packets=tuple(packets),
        end_time=packets[-1].time + WRAPPED_TAIL,
        sip_messages=len(capture.sip),
        ignored_datagrams=len(capture.datagrams) - len(packets),
    )


def _call_id(message: SipRequest | SipResponse) -> str | None:
    try:
        return message.call_id
    except SipParseError:
        return None


def _branch(message: SipRequest | SipResponse) -> str | None:
    try:
        return message.top_via.branch
    except SipParseError:
        return None


def _hosts(descriptions: Sequence[sdp.SessionDescription]) -> set[str]:
    return {
        c.address
        for d in descriptions
        for m in d.media
        if (c := d.connection_of(m)) is not None and c.address not in ("0.0.0.0", "::")
    }


def _rtp_of(
    capture: _Capture,
    invite: _Sip,
    offers: Sequence[sdp.SessionDescription],
    answers: Sequence[sdp.SessionDescription],
    media_lines: int,
) -> tuple[list[RecordedPacket], dict[int, int]]:
    """The SRC's RTP per m-line; see the module docstring for the mapping rules."""
    offered = _port_map(offers)
    answered = _port_map(answers)
    src_hosts = {invite.src[0]} | _hosts(offers)
    srs_hosts = {invite.dst[0]} | _hosts(answers)
    src_only, srs_only = src_hosts - srs_hosts, srs_hosts - src_hosts
    t0 = invite.time
    by_ssrc: dict[int, int] = {}
    packets: list[RecordedPacket] = []
    for d in capture.datagrams:
        if d.time < t0 or d.src[0] in srs_only or d.dst[0] in src_only or is_rtcp(d.payload):
            continue  # before the call, sent by the SRS or towards the SRC, or RTCP
        try:
            ssrc = parse_header(d.payload).ssrc
        except RtpError:
            continue
        index = offered.get(d.src[1])
        if index is None:
            index = answered.get(d.dst[1])
        if index is None:
            if d.src[1] in answered or d.dst[1] in offered:
                continue  # the other direction of a known stream (same-host captures)
            if d.src[0] not in src_hosts and d.dst[0] not in srs_hosts:
                continue  # traffic of other hosts
            index = by_ssrc.get(ssrc)
            if index is None:
                taken = set(by_ssrc.values())
                index = next((i for i in range(media_lines) if i not in taken), None)
        if index is None or index >= media_lines:
            continue
        by_ssrc.setdefault(ssrc, index)
        packets.append(RecordedPacket(d.time - t0, index, d.payload))
    return packets, by_ssrc


# --------------------------------------------------------------------------------------------
# Rewriting (pure helpers)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _with_hostport(uri: str, hostport: str) -> str | None:
    """``uri`` with its host and port replaced (RFC 3261 §19.1.1), ``None`` if not a SIP URI."""
    match = _URI_PARTS.match(uri.strip())
    if match is None:
        return None
    user = f"{match['user']}@" if match["user"] is not None else ""
    return f"{match['scheme']}:{user}{hostport}{match['rest'] or ''}"


def _with_transport(uri: str, transport: Transport) -> str:
    """Set ``;transport=tcp`` for TCP, drop the parameter for UDP (RFC 3261 §19.1.1 default)."""
    uri = _TRANSPORT_PARAM.sub("", uri)
    if transport == "udp":
        return uri
    head, sep, headers = uri.partition("?")
    return f"{head};transport=tcp{sep}{headers}"


def _token() -> str:
    return secrets.token_hex(8)


def _rewrite_sdp(body: bytes, host: str, ports: Sequence[int]) -> bytes:
    """Point ``c=`` at ``host`` and m-line *i* at ``ports[i]`` (RFC 8866 §5.7, §5.14).

    Line-based so that everything else reaches the bridge byte for byte; held (``0.0.0.0``)
    connections and disabled (port 0) m-lines are kept, m-lines beyond ``ports`` get port 0.
    """
    family = b"IP6" if ":" in host else b"IP4"
    out: list[bytes] = []
    index = -1
    for line in body.splitlines(keepends=True):
        content = line.rstrip(b"\r\n")
        ending = line[len(content) :]
        if content.startswith(b"m="):
            index += 1
            fields = content.split(b" ")
            port, slash, count = fields[1].partition(b"/") if len(fields) > 2 else (b"0", b"", b"")
            if port != b"0":
                fields[1] = (str(ports[index]).encode() if index < len(ports) else b"0") + (
                    slash + count
                )
                content = b" ".join(fields)
        elif content.startswith(b"c="):
            fields = content.split(b" ")
            if len(fields) == 3 and fields[2].split(b"/")[0] not in (b"0.0.0.0", b"::"):
                content = b" ".join([fields[0], family, host.encode()])
        out.append(content + ending)
    return b"".join(out)


def _rewrite_body(content_type: str | None, body: bytes, host: str, ports: Sequence[int]) -> bytes:
    """Rewrite the SDP of a body: alone, or in place inside ``multipart/*`` (RFC 2046 §5.1)."""
    if not body or not content_type:
        return body
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == SDP_TYPE:
        return _rewrite_sdp(body, host, ports)
    if not mime.startswith("multipart/"):
        return body
    try:
        parts = split_multipart(content_type, body)
    except BodyError:
        return body
    out: list[bytes] = []
    position = 0
    for part in parts:
        start = body.find(part.body, position)
        if start < 0:
            continue
        if part.content_type == SDP_TYPE:
            out += [body[position:start], _rewrite_sdp(part.body, host, ports)]
            position = start + len(part.body)
        else:
            out.append(body[position : start + len(part.body)])
            position = start + len(part.body)
    out.append(body[position:])
    return b"".join(out)


def _media_targets(
    answer: sdp.SessionDescription, default_host: str, count: int
) -> list[Address | None]:
    """Where to send m-line *i*: the answer's m-line *i* (RFC 3264 §6), ``None`` if rejected."""
    targets: list[Address | None] = []
    for index in range(count):
        if index >= len(answer.media) or answer.media[index].port == 0:
            targets.append(None)
            continue
        media = answer.media[index]
        connection = answer.connection_of(media)
        host = connection.address if connection is not None else default_host
        targets.append(None if host in ("0.0.0.0", "::") else (host, media.port))
    return targets


# --------------------------------------------------------------------------------------------
# The sans-I/O user agent client


@dataclass(slots=True)
class _ClientTransaction:
    """RFC 3261 §17.1.1 (INVITE) / §17.1.2 (non-INVITE) client transaction, timers as data."""

    method: str
    cseq: int
    data: bytes
    deadline: float
    retransmit_at: float | None
    interval: float
    initial: bool = False


class CallDriver:
    """Sans-I/O SIP UAC that replays one recorded call's signalling (RFC 3261 §8.1, §12, §17.1).

    Calling protocol: :meth:`start` once, then any of :meth:`receive` (bytes from the bridge),
    :meth:`send_recorded` (a later SRC request is due), :meth:`hang_up` and
    :meth:`handle_timer` (when :meth:`next_timer` has passed), each followed by
    :meth:`data_to_send`. ``media_targets`` says where each m-line's RTP goes once
    ``answered_at`` is set; the call is over when :attr:`finished` is true.
    """

    def __init__(
        self,
        call: RecordedCall,
        *,
        call_id: str,
        local_sip: Address,
        local_rtp_ports: Sequence[int],
        target: Address,
        transport: Transport,
        timeout: float = ANSWER_TIMEOUT,
    ) -> None:
        self.call = call
        self.call_id = call_id
        self._local = local_sip
        self._rtp_ports = list(local_rtp_ports)
        self._target = target
        self._transport = transport
        self._timeout = timeout
        self._from_tag = _token()
        self._cseq = call.invite.cseq[0]
        self._remote_tag: str | None = None
        self._remote_target: str | None = None
        self._transactions: dict[str, _ClientTransaction] = {}
        self._acks: dict[int, bytes] = {}
        self._outbox: list[bytes] = []
        self.statuses: list[tuple[str, int]] = []
        """``(method, final status)`` of every request sent, in completion order; 408 when
        no final response came within the timeout."""
        self.media_targets: list[Address | None] = [None] * len(self._rtp_ports)
        self.started_at: float | None = None
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.error: str | None = None
        self.bye_sent = False
        self.remote_bye = False

    # -- state -----------------------------------------------------------------------------

    @property
    def established(self) -> bool:
        """A confirmed dialog (RFC 3261 §12) that neither side has ended."""
        ended = self.bye_sent or self.remote_bye or self.error is not None
        return self.answered_at is not None and not ended

    @property
    def finished(self) -> bool:
        """Nothing more will be sent: the call failed or ended and no transaction is pending."""
        ended = self.error is not None or self.remote_bye or self.bye_sent
        return ended and not self._transactions

    def data_to_send(self) -> list[bytes]:
        out, self._outbox = self._outbox, []
        return out

    def next_timer(self) -> float | None:
        """Earliest retransmission or timeout instant (same clock as ``now``)."""
        times = [
            t
            for tx in self._transactions.values()
            for t in (tx.retransmit_at, tx.deadline)
            if t is not None
        ]
        return min(times, default=None)

    # -- inputs ----------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Send the rewritten initial INVITE (RFC 3261 §8.1.1)."""
        recorded = self.call.invite
        uri = _with_hostport(recorded.uri, _hostport(*self._target)) or (
            f"sip:{_hostport(*self._target)}"
        )
        to = self._name_addr(recorded.headers.get("To"), tag=None)
        self.started_at = now
        self._send_request(recorded, "INVITE", uri, to, self._cseq, now, initial=True)

    def send_recorded(self, recorded: SipRequest, now: float) -> None:
        """Send a later SRC request (re-INVITE, UPDATE, BYE, INFO ...) within the dialog."""
        if not self.established or recorded.method in _NOT_REPLAYED:
            return
        if recorded.method == "BYE":
            self.bye_sent = True
        self._send_in_dialog(recorded, recorded.method, now)

    def hang_up(self, now: float) -> None:
        """Send a BYE (RFC 3261 §15.1.1) if the dialog is still up."""
        if self.established:
            self.bye_sent = True
            self._send_in_dialog(SipRequest("BYE", "sip:invalid"), "BYE", now)

    def receive(self, data: bytes, now: float) -> None:
        """A datagram or a framed stream message from the bridge."""
        try:
            message = parse_message(data)
            if message.call_id != self.call_id:
                return
            if isinstance(message, SipResponse):
                self._on_response(message, now)
            else:
                self._on_request(message, now)
        except SipError:
            return  # malformed or not for us: RFC 3261 §18.1.2 says discard

    def handle_timer(self, now: float) -> None:
        """Retransmit on UDP (RFC 3261 §17.1.1.2 Timer A, §17.1.2.2 Timer E) and time out."""
        for branch, tx in list(self._transactions.items()):
            if now >= tx.deadline:
                del self._transactions[branch]
                self._completed(tx, 408, None, now)
            elif tx.retransmit_at is not None and now >= tx.retransmit_at:
                self._outbox.append(tx.data)
                tx.interval = tx.interval * 2 if tx.method == "INVITE" else min(tx.interval * 2, T2)
                tx.retransmit_at = now + tx.interval

    def connection_lost(self, now: float) -> None:
        """The TCP connection to the bridge closed: nothing more can be sent or received."""
        if self.finished:
            return  # our own close after the call
        if self.answered_at is None and self.error is None:
            self.error = "the bridge closed the connection before answering the INVITE"
        for tx in self._transactions.values():
            self.statuses.append((tx.method, 408))
        self._transactions.clear()
        self.remote_bye = self.remote_bye or self.error is None
        self.ended_at = now

    # -- internals -------------------------------------------------------------------------

    def _name_addr(self, value: str | None, *, tag: str | None) -> str:
        try:
            parsed = parse_name_addr(value or "")
        except SipParseError:
            parsed = NameAddr(None, f"sip:{_hostport(*self._target)}")
        params = {k: v for k, v in parsed.params.items() if k != "tag"}
        if tag is not None:
            params["tag"] = tag
        return str(NameAddr(parsed.display, parsed.uri, params))

    def _contact(self, value: str | None) -> str:
        local = _hostport(*self._local)
        try:
            parsed = parse_name_addr(value or "")
            uri = _with_hostport(parsed.uri, local) or f"sip:src@{local}"
            params = parsed.params
            display = parsed.display
        except SipParseError:
            uri, params, display = f"sip:src@{local}", {}, None
        return str(NameAddr(display, _with_transport(uri, self._transport), params))

    def _via(self, branch: str) -> str:
        return f"SIP/2.0/{self._transport.upper()} {_hostport(*self._local)};branch={branch};rport"

    def _headers(
        self, recorded: SipRequest, branch: str, to: str, cseq: int, method: str
    ) -> Headers:
        """The recorded headers with the transaction and dialog fields replaced (§8.1.1)."""
        headers = Headers([("Via", self._via(branch))])
        for name, value in recorded.headers.items():
            if name.lower() not in ("via", "route", "record-route", "content-length"):
                headers.add(name, value)
        # The dialog's local URI is the INVITE's From (RFC 3261 §12.2.1.1).
        headers.set(
            "From", self._name_addr(self.call.invite.headers.get("From"), tag=self._from_tag)
        )
        headers.set("To", to)
        headers.set("Call-ID", self.call_id)
        headers.set("CSeq", f"{cseq} {method}")
        if "Max-Forwards" not in headers:
            headers.set("Max-Forwards", "70")
        if method in ("INVITE", "UPDATE", "SUBSCRIBE", "REFER") or "Contact" in headers:
            headers.set("Contact", self._contact(recorded.headers.get("Contact")))
        return headers

    def _send_in_dialog(self, recorded: SipRequest, method: str, now: float) -> None:
        """RFC 3261 §12.2.1.1: remote target as Request-URI, tags of the dialog, CSeq + 1."""
        self._cseq += 1
        uri = self._remote_target or f"sip:{_hostport(*self._target)}"
        to = self._name_addr(self.call.invite.headers.get("To"), tag=self._remote_tag)
        self._send_request(recorded, method, uri, to, self._cseq, now)

    def _send_request(
        self,
        recorded: SipRequest,
        method: str,
        uri: str,
        to: str,
        cseq: int,
        now: float,
        *,
        initial: bool = False,
    ) -> None:
        branch = f"z9hG4bK{_token()}"
        headers = self._headers(recorded, branch, to, cseq, method)
        body = _rewrite_body(
            recorded.headers.get("Content-Type"), recorded.body, self._local[0], self._rtp_ports
        )
        data = SipRequest(method, uri, headers, body).to_bytes()
        udp = self._transport == "udp"
        self._transactions[branch] = _ClientTransaction(
            method=method,
            cseq=cseq,
            data=data,
            deadline=now + self._timeout,
            retransmit_at=now + T1 if udp else None,
            interval=T1,
            initial=initial,
        )
        self._outbox.append(data)

    def _on_response(self, response: SipResponse, now: float) -> None:
        branch = response.top_via.branch or ""
        number, method = response.cseq
        tx = self._transactions.get(branch)
        if tx is None:
            if method == "INVITE" and 200 <= response.status < 300 and number in self._acks:
                self._outbox.append(self._acks[number])  # 2xx retransmission (RFC 3261 §13.2.2.4)
            return
        if response.status < 200:
            # Proceeding: INVITE retransmissions stop (§17.1.1.2), non-INVITE go to T2 (§17.1.2.2).
            if tx.method == "INVITE":
                tx.retransmit_at = None
            elif tx.retransmit_at is not None:
                tx.retransmit_at, tx.interval = now + T2, T2
            return
        del self._transactions[branch]
        if tx.method == "INVITE":
            self._ack(tx, branch, response)
        self._completed(tx, response.status, response, now)

    def _ack(self, tx: _ClientTransaction, branch: str, response: SipResponse) -> None:
        """ACK a final response to INVITE: §17.1.1.3 (non-2xx, same branch) or §13.2.2.4 (2xx)."""
        success = 200 <= response.status < 300
        if success and tx.initial:
            self._remote_tag = response.to_tag
            contact = response.headers.get("Contact")
            try:
                self._remote_target = parse_name_addr(contact).uri if contact else None
            except SipParseError:
                self._remote_target = None
        headers = Headers([("Via", self._via(f"z9hG4bK{_token()}" if success else branch))])
        headers.add("Max-Forwards", "70")
        headers.add(
            "From", self._name_addr(self.call.invite.headers.get("From"), tag=self._from_tag)
        )
        headers.add("To", response.headers.get("To") or "")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{tx.cseq} ACK")
        uri = (
            self._remote_target
            if success and self._remote_target
            else (
                _with_hostport(self.call.invite.uri, _hostport(*self._target))
                or f"sip:{_hostport(*self._target)}"
            )
        )
        ack = SipRequest("ACK", uri, headers).to_bytes()
        if success:
            self._acks[tx.cseq] = ack
        self._outbox.append(ack)

    def _completed(
        self, tx: _ClientTransaction, status: int, response: SipResponse | None, now: float
    ) -> None:
        self.statuses.append((tx.method, status))
        success = 200 <= status < 300
        if success and response is not None and tx.method in ("INVITE", "UPDATE"):
            answer = _sdp_of(response)
            if answer is not None:
                self.media_targets = _media_targets(answer, self._target[0], len(self._rtp_ports))
            elif tx.initial:
                self.error = "the 2xx to the INVITE carries no SDP answer"
        if tx.initial:
            if success:
                self.answered_at = now
                if self.error is not None:
                    self.bye_sent = True
                    self._send_in_dialog(SipRequest("BYE", "sip:invalid"), "BYE", now)
            elif status == 408 and response is None:
                self.error = f"no final response to the INVITE within {self._timeout:g} s"
            else:
                reason = response.reason if response is not None else ""
                self.error = f"the bridge rejected the INVITE: {status} {reason}".rstrip()
        if tx.method == "BYE" or self.finished:
            self.ended_at = now

    def _on_request(self, request: SipRequest, now: float) -> None:
        """Requests from the bridge (RFC 3261 §12.2.2): BYE ends the call, OPTIONS is answered."""
        if request.method == "ACK":
            return
        status = 200 if request.method in ("BYE", "OPTIONS") else 501
        self._outbox.append(build_response(request, status).to_bytes())
        if request.method == "BYE":
            self.remote_bye = True
            self.media_targets = [None] * len(self._rtp_ports)
            if not self._transactions:
                self.ended_at = now


# --------------------------------------------------------------------------------------------
# The asyncio adapter: sockets and the one scheduling loop


@dataclass(frozen=True, slots=True)
class CallReport:
    """What one replayed copy of the call did."""

    call_id: str
    statuses: tuple[tuple[str, int], ...]
    """``(method, final status)`` per request sent, e.g. ``(("INVITE", 200), ("BYE", 200))``."""
    packets_sent: dict[str, int]
    """RTP packets sent per stream label (``m<index>`` for unlabelled m-lines)."""
    duration: float
    """Seconds from sending the INVITE to the end of the last transaction."""
    remote_bye: bool
    """The bridge ended the call with its own BYE."""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ReplayResult:
    pcap: Path
    calls: tuple[CallReport, ...]
    call: RecordedCall
    """What was replayed: the capture's call after wrapping and cutting."""


@dataclass(frozen=True, slots=True)
class _Item:
    """A timeline entry: an RTP packet (``stream`` ≥ 0), a request, or the final hang-up."""

    time: float
    stream: int = -1
    data: bytes = b""
    request: SipRequest | None = None


def _timeline(call: RecordedCall) -> list[_Item]:
    items = [_Item(p.time, p.stream, p.data) for p in call.packets]
    items += [
        _Item(r.time, request=r.request)
        for r in call.requests[1:]
        if r.request.method not in _NOT_REPLAYED
    ]
    items.sort(key=lambda item: item.time)  # stable: capture order among equal times
    items.append(_Item(call.end_time))  # hang up if the recording had no BYE from the SRC
    return items


class _Waker:
    """Sleep until a loop time, or until :meth:`wake` (SIP input arrived)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._future: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    async def sleep_until(self, when: float | None) -> None:
        self._future = self._loop.create_future()
        handle = self._loop.call_at(when, self.wake) if when is not None else None
        try:
            await self._future
        finally:
            if handle is not None:
                handle.cancel()
            self._future = None


class _SipDatagram(asyncio.DatagramProtocol):
    def __init__(self, on_message: Callable[[bytes], None]) -> None:
        self._on_message = on_message

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._on_message(data)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors (bridge not listening): the transaction timer reports the failure."""


class _SipStream(asyncio.Protocol):
    def __init__(self, on_message: Callable[[bytes], None], on_lost: Callable[[], None]) -> None:
        self._on_message = on_message
        self._on_lost = on_lost
        self._framer = StreamFramer()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass the asyncio ABCs: no isinstance check here.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._framer.feed(data)
        except SipFramingError as exc:
            messages = exc.messages
            if self._transport is not None:
                self._transport.close()
        for message in messages:
            if message != KEEPALIVE_PING:
                self._on_message(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost()


@dataclass(slots=True)
class _Run:
    """One concurrent copy of the call: its driver, sockets and timeline cursor."""

    driver: CallDriver
    send_sip: Callable[[bytes], None]
    rtp: list[asyncio.DatagramTransport]
    closers: list[asyncio.BaseTransport]
    sent: list[int]
    cursor: int = 0
    media_started: bool = False
    timer_at: float | None = None
    done: bool = False


class _Scheduler:
    """The single loop: a heap of (due time, run) for timeline cursors and SIP timers."""

    _ITEM: Final = 0
    _TIMER: Final = 1
    _START: Final = 2

    def __init__(self, loop: asyncio.AbstractEventLoop, call: RecordedCall, speed: float) -> None:
        self._loop = loop
        self._items = _timeline(call)
        self._origin = call.answer_time if call.answer_time is not None else 0.0
        self._speed = speed
        self._heap: list[tuple[float, int, int, int]] = []
        self._counter = 0
        self.runs: list[_Run] = []
        self.waker = _Waker(loop)
        self._active = 0

    def start_at(self, when: float, index: int) -> None:
        """Send copy ``index``'s INVITE at loop time ``when``."""
        self._push(when, index, self._START)

    def _push(self, when: float, run_index: int, kind: int) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (when, self._counter, run_index, kind))

    def _due(self, run: _Run) -> float:
        answered = run.driver.answered_at
        assert answered is not None
        offset = max(0.0, self._items[run.cursor].time - self._origin)
        return answered + offset / self._speed

    def after_input(self, index: int) -> None:
        """Flush the driver's output and (re)arm its media cursor and timer."""
        run = self.runs[index]
        for data in run.driver.data_to_send():
            run.send_sip(data)
        if not run.done and run.driver.finished:
            run.done = True
            self._active -= 1
        if run.driver.answered_at is not None and not run.media_started:
            run.media_started = True
            self._push(self._due(run), index, self._ITEM)
        timer = run.driver.next_timer()
        if timer is not None and (run.timer_at is None or timer < run.timer_at):
            run.timer_at = timer
            self._push(timer, index, self._TIMER)
        self.waker.wake()

    def _send_due(self, run: _Run, index: int, now: float) -> None:
        """Send every timeline item of ``run`` that is due, then re-queue the cursor."""
        driver = run.driver
        items = self._items
        while run.cursor < len(items) and self._due(run) <= now:
            item = items[run.cursor]
            run.cursor += 1
            if not driver.established:
                run.cursor = len(items)
                break
            if item.stream >= 0:
                target = driver.media_targets[item.stream]
                if target is not None:
                    run.rtp[item.stream].sendto(item.data, target)
                    run.sent[item.stream] += 1
            elif item.request is not None:
                driver.send_recorded(item.request, now)
            else:
                driver.hang_up(now)
        if run.cursor < len(items):
            self._push(self._due(run), index, self._ITEM)

    async def run(self) -> None:
        """Until every copy has finished: send what is due, then sleep until the next due
        instant or until SIP input arrives."""
        self._active = sum(1 for run in self.runs if not run.done)
        while self._active:
            now = self._loop.time()
            while self._heap and self._heap[0][0] <= now:
                when, _, index, kind = heapq.heappop(self._heap)
                run = self.runs[index]
                if kind == self._START:
                    run.driver.start(now)
                elif kind == self._ITEM:
                    self._send_due(run, index, now)
                elif run.timer_at == when:
                    run.timer_at = None
                    run.driver.handle_timer(now)
                self.after_input(index)
            if not self._active:
                break
            await self.waker.sleep_until(self._heap[0][0] if self._heap else None)


def _stream_writer(
    loop: asyncio.AbstractEventLoop, transport: asyncio.Transport, segment: int | None
) -> Callable[[bytes], None]:
    """Write SIP messages to a TCP connection, whole or cut into ``segment``-byte pieces.

    Pieces are written one per event-loop iteration with Nagle's algorithm off, so they leave
    as separate TCP segments, the way captured SRCs split large messages (QUIRKS.md #7): the
    receiver must frame by ``Content-Length`` (RFC 3261 §18.3).
    """
    if segment is None:

        def write(data: bytes) -> None:
            if not transport.is_closing():
                transport.write(data)

        return write
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pending: deque[bytes] = deque()

    def pump() -> None:
        if pending and not transport.is_closing():
            transport.write(pending.popleft())
            if pending:
                loop.call_soon(pump)
        else:
            pending.clear()

    def write_pieces(data: bytes) -> None:
        idle = not pending
        pending.extend(data[i : i + segment] for i in range(0, len(data), segment))
        if idle:
            pump()

    return write_pieces


async def _open_run(
    scheduler: _Scheduler,
    index: int,
    call: RecordedCall,
    *,
    target: Address,
    transport: Transport,
    local_host: str,
    call_id: str,
    tcp_segment: int | None,
) -> _Run:
    loop = asyncio.get_running_loop()
    closers: list[asyncio.BaseTransport] = []

    def on_message(data: bytes) -> None:
        scheduler.runs[index].driver.receive(data, loop.time())
        scheduler.after_input(index)

    def on_lost() -> None:
        if index < len(scheduler.runs):
            scheduler.runs[index].driver.connection_lost(loop.time())
            scheduler.after_input(index)

    try:
        rtp: list[asyncio.DatagramTransport] = []
        for _ in range(max(1, len(call.streams))):
            rtp_transport, _protocol = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=(local_host, 0)
            )
            closers.append(rtp_transport)
            rtp.append(rtp_transport)
        if transport == "udp":
            sip_udp, _ = await loop.create_datagram_endpoint(
                lambda: _SipDatagram(on_message), local_addr=(local_host, 0)
            )
            closers.append(sip_udp)
            local = sip_udp.get_extra_info("sockname")

            def send_datagram(data: bytes) -> None:
                sip_udp.sendto(data, target)

            send_sip: Callable[[bytes], None] = send_datagram

        else:
            sip_tcp, _ = await loop.create_connection(
                lambda: _SipStream(on_message, on_lost),
                target[0],
                target[1],
                local_addr=(local_host, 0),
            )
            closers.append(sip_tcp)
            local = sip_tcp.get_extra_info("sockname")
            send_sip = _stream_writer(loop, sip_tcp, tcp_segment)

    except OSError as exc:
        for closer in closers:
            closer.close()
        raise ReplayError(
            f"cannot open {transport.upper()} sockets from {local_host} to "
            f"{_hostport(*target)}: {exc}"
        ) from exc
    ports = [int(t.get_extra_info("sockname")[1]) for t in rtp]
    driver = CallDriver(
        call,
        call_id=call_id,
        local_sip=(str(local[0]), int(local[1])),
        local_rtp_ports=ports[: len(call.streams)],
        target=target,
        transport=transport,
    )
    return _Run(driver, send_sip, rtp, closers, [0] * len(call.streams))


async def replay(
    pcap: Path | RecordedCall,
    target: tuple[str, int],
    *,
    transport: Literal["udp", "tcp"] = "udp",
    local_host: str = "127.0.0.1",
    speed: float = 1.0,
    calls: int = 1,
    call_id_suffix: str = "",
    wrap: bool = False,
    start: float = 0.0,
    max_duration: float | None = None,
    tcp_segment: int | None = None,
) -> ReplayResult:
    """Replay the call of ``pcap`` ``calls`` times concurrently against the bridge at ``target``.

    ``pcap`` is a capture file, or a call already read by :func:`prepare_call` (reading a large
    capture takes a while; a caller that starts several replays at once reads them first).

    Each copy gets its own Call-ID (``<random>-<n><call_id_suffix>``) and sockets on
    ``local_host``; the copies' INVITEs are spread over :data:`START_SPREAD` seconds, at most
    :data:`MAX_CALL_RATE` per second. ``wrap`` replays the RTP of a capture without signalling
    inside a synthesised SIPREC INVITE (:func:`wrap_rtp`); ``start`` and ``max_duration`` cut
    the media to a window (:meth:`RecordedCall.excerpt`); ``tcp_segment`` cuts every SIP
    message sent over TCP into segments of at most that many bytes. Returns when every copy
    has ended (BYE answered, timed out, or ended by the bridge). Raises :class:`ReplayError`
    when the capture has no INVITE (or, with ``wrap``, no RTP), sockets cannot be opened, or
    the bridge rejects or does not answer an INVITE within :data:`ANSWER_TIMEOUT`
    (``exc.result`` then holds the reports of all copies).
    """
    if not (speed > 0 and math.isfinite(speed)):
        raise ReplayError(f"speed must be a positive number, not {speed!r}")
    if calls < 1:
        raise ReplayError(f"calls must be at least 1, not {calls!r}")
    if tcp_segment is not None and tcp_segment < 1:
        raise ReplayError(f"tcp_segment must be at least 1, not {tcp_segment!r}")
    if not isinstance(pcap, RecordedCall):
        call = await asyncio.to_thread(prepare_call, Path(pcap), wrap, start, max_duration)
    elif wrap:
        raise ReplayError("wrap applies to a capture file, not to a call already read")
    else:
        call = pcap.excerpt(start, max_duration) if start or max_duration is not None else pcap
    loop = asyncio.get_running_loop()
    scheduler = _Scheduler(loop, call, speed)
    stem = secrets.token_hex(6)
    try:
        for index in range(calls):
            scheduler.runs.append(
                await _open_run(
                    scheduler,
                    index,
                    call,
                    target=target,
                    transport=transport,
                    local_host=local_host,
                    call_id=f"{stem}-{index}{call_id_suffix}",
                    tcp_segment=tcp_segment,
                )
            )
        # Spread the copies over (at least) one packet interval: real calls start at random
        # times, so their packets do not all fall due at the same instant, and a burst of
        # large INVITEs would overflow the bridge's SIP socket.
        base = loop.time()
        interval = max(START_SPREAD / calls, 1.0 / MAX_CALL_RATE)
        for index in range(calls):
            scheduler.start_at(base + index * interval, index)
        await scheduler.run()
    finally:
        for run in scheduler.runs:
            for closer in run.closers:
                closer.close()
    result = ReplayResult(call.pcap, tuple(_report(call, run) for run in scheduler.runs), call)
    failed = [report for report in result.calls if report.error is not None]
    if failed:
        details = "; ".join(f"{report.call_id}: {report.error}" for report in failed)
        raise ReplayError(
            f"{call.pcap}: {len(failed)} of {calls} call(s) failed: {details}", result
        )
    return result


def prepare_call(
    pcap: Path, wrap: bool = False, start: float = 0.0, max_duration: float | None = None
) -> RecordedCall:
    """:func:`load_call` (or :func:`wrap_rtp` with ``wrap``), cut by
    :meth:`RecordedCall.excerpt` when ``start`` or ``max_duration`` is given: what
    :func:`replay` sends."""
    call = wrap_rtp(pcap) if wrap else load_call(pcap)
    if start or max_duration is not None:
        call = call.excerpt(start, max_duration)
    return call


def _report(call: RecordedCall, run: _Run) -> CallReport:
    driver = run.driver
    sent: dict[str, int] = {}
    for stream, count in zip(call.streams, run.sent, strict=True):
        sent[stream.name] = sent.get(stream.name, 0) + count
    started = driver.started_at if driver.started_at is not None else 0.0
    ended = driver.ended_at if driver.ended_at is not None else started
    return CallReport(
        call_id=driver.call_id,
        statuses=tuple(driver.statuses),
        packets_sent=sent,
        duration=ended - started,
        remote_bye=driver.remote_bye,
        error=driver.error,
    )


# --------------------------------------------------------------------------------------------
# Command line: ``siprec-bridge replay FILE.pcap --target HOST:PORT``


def _run(main: Coroutine[Any, Any, ReplayResult]) -> ReplayResult:
    """On uvloop when installed: many concurrent calls send many datagrams (DEPENDENCIES.md)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: ReplayResult = uvloop.run(main)
    return result


def _target(value: str) -> Address:
    try:
        return split_host_port(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--target: {exc}") from None


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not (number > 0 and math.isfinite(number)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if not (number >= 0 and math.isfinite(number)):
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {value!r}")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``siprec-bridge replay``."""
    parser.add_argument("pcap", type=Path, metavar="FILE.pcap", help="capture with the call")
    parser.add_argument(
        "--target",
        type=_target,
        metavar="HOST:PORT",
        help="SIP address of the bridge (required unless --show)",
    )
    parser.add_argument(
        "--transport", choices=("udp", "tcp"), default="udp", help="SIP transport (default udp)"
    )
    parser.add_argument(
        "--calls",
        type=_positive_int,
        default=1,
        metavar="N",
        help="concurrent copies of the call (default 1)",
    )
    parser.add_argument(
        "--speed",
        type=_positive_float,
        default=1.0,
        metavar="X",
        help="pace factor: 2 replays twice as fast (default 1)",
    )
    parser.add_argument(
        "--local-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address to bind SIP and RTP sockets to (default 127.0.0.1)",
    )
    parser.add_argument(
        "--call-id-suffix", default="", metavar="TEXT", help="appended to every generated Call-ID"
    )
    parser.add_argument(
        "--wrap-rtp",
        action="store_true",
        help="the capture has RTP but no SIP: send its RTP flows inside a "
        "synthesised SIPREC INVITE (one labelled m-line per flow)",
    )
    parser.add_argument(
        "--start",
        type=_non_negative_float,
        default=0.0,
        metavar="S",
        help="skip the first S seconds of media (default 0)",
    )
    parser.add_argument(
        "--max-duration",
        type=_positive_float,
        metavar="S",
        help="replay at most S seconds of media, then hang up",
    )
    parser.add_argument(
        "--tcp-segment",
        type=_positive_int,
        metavar="BYTES",
        help="with --transport tcp: send SIP messages in segments of BYTES",
    )
    parser.add_argument(
        "--show", action="store_true", help="print what the capture holds and exit without sending"
    )


def main_from_args(args: argparse.Namespace) -> int:
    """Run the replay for parsed ``args``; print one line per call.

    Returns 0 on success, 1 when the replay failed, 2 when ``--target`` is missing.
    """
    try:
        if args.show:
            print(prepare_call(args.pcap, args.wrap_rtp, args.start, args.max_duration).summary())
            return 0
        if args.target is None:
            print("siprec-bridge replay: --target HOST:PORT is required", file=sys.stderr)
            return 2
        result = _run(
            replay(
                args.pcap,
                args.target,
                transport=args.transport,
                local_host=args.local_host,
                speed=args.speed,
                calls=args.calls,
                call_id_suffix=args.call_id_suffix,
                wrap=args.wrap_rtp,
                start=args.start,
                max_duration=args.max_duration,
                tcp_segment=args.tcp_segment,
            )
        )
    except ReplayError as exc:
        print(f"siprec-bridge replay: {exc}", file=sys.stderr)
        return 1
    for report in result.calls:
        statuses = " ".join(f"{method}={status}" for method, status in report.statuses)
        packets = " ".join(f"{label}={count}" for label, count in report.packets_sent.items())
        print(
            f"{report.call_id}: {statuses}; RTP {packets}; {report.duration:.2f}s"
            + ("; ended by the bridge" if report.remote_bye else "")
        )
    return 0
