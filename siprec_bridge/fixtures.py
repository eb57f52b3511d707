"""Deterministic SIPREC fixture captures: ``python -m siprec_bridge.fixtures OUT_DIR``.

Every fixture is one complete SIPREC call (RFC 7866 §6) as an Ethernet/IPv4/UDP pcap:
the SRC at 192.0.2.10:5060 sends an INVITE whose ``multipart/mixed`` body (RFC 7866 §7.2)
carries an SDP offer with two ``a=sendonly`` audio m-lines labelled ``1`` and ``2``
(RFC 4574 labels, RFC 7866 §8.1.1) and RFC 7865 metadata (two participants, two streams,
``participantstreamassoc`` send/recv). The SRS at 192.0.2.20:5060 answers 100 Trying and
200 OK with an ``a=recvonly`` SDP answer (RFC 3264 §6.1); the SRC ACKs, sends RTP
(RFC 3550) for both legs from ports 30000/30002 to the answered ports 40000/40002, then
BYE / 200 OK.

Leg 1 (caller) carries a 440 Hz tone, leg 2 (callee) 1000 Hz, both at -12 dBFS peak, in
20 ms packets. An SRTP fixture offers ``RTP/SAVP`` m-lines with SDES ``a=crypto`` lines
(RFC 4568 §9.1, several per m-line), answered with the first suite pylibsrtp implements
(RFC 4568 §7.1.2) and a key of the SRS; its RTP is protected with the SRC's key of that line
(RFC 3711 §3.3, pylibsrtp as sender).

All identifiers (Call-ID, tags, branches, SSRCs, initial sequence numbers and timestamps,
SRTP keys) and the send-time jitter come from a seeded :class:`random.Random` that is only
ever asked for ``random()`` (the one stream Python guarantees across versions), SRTP has no
random IV, and pcap times count from a fixed epoch, so every run writes byte-identical files.

:func:`generate_all` also writes ``manifest.json``: the expectations (codec, per-leg label,
tone, packet counts, losses, DTMF digits) that tests read instead of hard-coding them.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dpkt
import numpy as np
import numpy.typing as npt
import pylibsrtp

from rtp.codecs import CODECS, CodecSpec, encoder_for
from rtp.packet import build_packet, parse_header
from rtp.srtp import SUPPORTED_SUITES

__all__ = [
    "FIXTURES",
    "MANIFEST_NAME",
    "FixtureSpec",
    "generate",
    "generate_all",
    "main",
]

MANIFEST_NAME = "manifest.json"

SRC_IP = "192.0.2.10"
SRS_IP = "192.0.2.20"
SIP_PORT = 5060
SRC_RTP_PORTS = (30000, 30002)
SRS_RTP_PORTS = (40000, 40002)
_SRC_MAC = bytes.fromhex("020000000a0a")
_SRS_MAC = bytes.fromhex("020000001414")

EPOCH_US = 1_700_000_000_000_000
"""pcap time of every fixture's INVITE (2023-11-14T22:13:20Z), in microseconds."""

PTIME_MS = 20
RTP_CLOCK = 8000
"""RTP clock of all three codecs (RFC 3551 §4.5.2: G.722 is clocked at 8000 Hz)."""
SAMPLES_PER_PACKET = RTP_CLOCK * PTIME_MS // 1000
TONE_DBFS = -12.0
DTMF_PT = 101
DTMF_EVENT_MS = 200
DTMF_VOLUME = 10
"""RFC 4733 §2.3.4 volume field: power level -10 dBm0."""
DTMF_END_COPIES = 3
"""RFC 4733 §2.5.1.4: the end packet is sent three times (same sequence number)."""

_PARTICIPANTS = (
    ("Alice", "sip:+15551230001@example.com", 440.0),
    ("Bob", "sip:+15551230002@example.com", 1000.0),
)

# Signalling timeline in microseconds after the INVITE.
_TRYING_US = 2_000
_OK_US = 18_000
_ACK_US = 20_000
_MEDIA_US = 40_000
_LEG_OFFSET_US = (0, 300)
_JITTER_US = 1_000
_BYE_AFTER_MEDIA_US = 40_000
_BYE_OK_US = 3_000


_DTMF_EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}
"""RFC 4733 §3.2 event codes of the DTMF digits."""

_SRTP_SUITES: dict[str, tuple[int, int | None]] = {
    # suite: (master key + salt octets, RFC 4568 §6.2 / RFC 6188 §7.1 / RFC 7714 §12;
    #         pylibsrtp profile, None when pylibsrtp does not implement the suite)
    "AES_CM_128_HMAC_SHA1_80": (30, pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80),
    "AES_256_CM_HMAC_SHA1_80": (46, None),
    "AEAD_AES_128_GCM": (28, pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM),
}


@dataclass(frozen=True, slots=True)
class FixtureSpec:
    """One fixture call. Times are in milliseconds of media time (first RTP slot = 0)."""

    name: str
    codec: str
    seed: int
    description: str
    duration_ms: int = 4000
    dtmf_digits: str = ""
    dtmf_start_ms: tuple[int, ...] = ()
    loss_fraction: float = 0.0
    reorder_fraction: float = 0.0
    leg2_delay_ms: int = 0
    srtp_offers: tuple[tuple[str, ...], ...] = ()
    """Per leg, the SDES suites offered in ``a=crypto`` lines (tags 1, 2, ...); empty: RTP/AVP."""


FIXTURES: tuple[FixtureSpec, ...] = (
    FixtureSpec("siprec_pcmu.pcap", "PCMU", 7866_0, "G.711 u-law (PT 0), clean."),
    FixtureSpec("siprec_pcma.pcap", "PCMA", 7866_8, "G.711 A-law (PT 8), clean."),
    FixtureSpec(
        "siprec_g722.pcap",
        "G722",
        7866_9,
        "G.722 (PT 9, RTP clock 8000) encoding 16 kHz tones, clean.",
    ),
    FixtureSpec(
        "siprec_dtmf.pcap",
        "PCMU",
        4733,
        "PCMU; leg 1 sends RFC 4733 events (PT 101) for '1', '5', '#' in place of audio,"
        " each 200 ms with the end packet sent 3 times with the same sequence number.",
        dtmf_digits="15#",
        dtmf_start_ms=(1000, 2000, 3000),
    ),
    FixtureSpec(
        "siprec_loss_reorder.pcap",
        "PCMU",
        3550,
        "PCMU; 5 % of each leg's packets missing and 5 % reordered (adjacent send times swapped).",
        loss_fraction=0.05,
        reorder_fraction=0.05,
    ),
    FixtureSpec(
        "siprec_leg2_late.pcap",
        "PCMU",
        500,
        "PCMU; leg 2's first packet is sent 500 ms after leg 1's, but its sequence number,"
        " RTP timestamp and tone phase continue a clock that started with leg 1 (first"
        " timestamp = timestamp_origin + 4000).",
        leg2_delay_ms=500,
    ),
    FixtureSpec(
        "siprec_srtp.pcap",
        "PCMU",
        3711,
        "PCMU over SDES-SRTP (RTP/SAVP): leg 1 offers AES_256_CM_HMAC_SHA1_80 (not in"
        " pylibsrtp) then AES_CM_128_HMAC_SHA1_80 and sends with the latter; leg 2 offers and"
        " sends AEAD_AES_128_GCM. Keys in the manifest.",
        srtp_offers=(("AES_256_CM_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_80"), ("AEAD_AES_128_GCM",)),
    ),
)


@dataclass(slots=True)
class _Leg:
    label: str
    name: str
    aor: str
    tone_hz: float
    src_port: int
    dst_port: int
    ssrc: int
    seq_origin: int
    ts_origin: int
    first_slot: int
    packets: list[tuple[int, bytes]] = field(default_factory=list)
    audio_packets: int = 0
    dtmf_packets: int = 0
    lost: list[int] = field(default_factory=list)
    reordered: list[list[int]] = field(default_factory=list)
    offered: list[tuple[str, str]] = field(default_factory=list)
    """SRTP: (suite, SRC key-salt base64) per offered ``a=crypto`` line, tag = position + 1."""
    accepted: int = -1
    """SRTP: index in ``offered`` of the line the SRS accepted."""
    srs_key: str = ""
    """SRTP: the SRS's key-salt (base64) in the answer."""


class _Rng:
    """Only ``random.Random.random()`` is used: its stream is stable across Python versions."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def bits(self, n: int) -> int:
        value = 0
        while n > 0:
            take = min(n, 32)
            value = (value << take) | int(self._random.random() * (1 << take))
            n -= take
        return value

    def below(self, n: int) -> int:
        return int(self._random.random() * n)

    def jitter_us(self) -> int:
        """Roughly bell-shaped send-time jitter in [-_JITTER_US, _JITTER_US] microseconds."""
        total = self._random.random() + self._random.random() + self._random.random()
        return round((total - 1.5) / 1.5 * _JITTER_US)


def _tone(freq: float, rate: int, start: int, count: int) -> npt.NDArray[np.int16]:
    """Samples ``start`` .. ``start + count`` of a sine at :data:`TONE_DBFS` (peak)."""
    amplitude = 32767.0 * 10.0 ** (TONE_DBFS / 20.0)
    n = np.arange(start, start + count, dtype=np.float64)
    wave: npt.NDArray[np.float64] = amplitude * np.sin(2.0 * math.pi * freq * n / rate)
    return np.round(wave).astype(np.int16)


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us // 1_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _crlf(lines: Sequence[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


def _sdp(
    codec: CodecSpec,
    ip: str,
    ports: Sequence[int],
    direction: str,
    version: int,
    cryptos: Sequence[Sequence[str]] = (),
) -> bytes:
    """SDP (RFC 8866) with one labelled audio m-line per leg; ``cryptos[i]`` are the values of
    m-line *i*'s ``a=crypto`` attributes (RFC 4568 §9.1): the m-lines are then RTP/SAVP."""
    proto = "RTP/SAVP" if cryptos else "RTP/AVP"
    lines = [
        "v=0",
        f"o=- {version} {version} IN IP4 {ip}",
        "s=SIPREC",
        f"c=IN IP4 {ip}",
        "t=0 0",
    ]
    for label, port in enumerate(ports, start=1):
        lines += [
            f"m=audio {port} {proto} {codec.static_payload_type} {DTMF_PT}",
            f"a=rtpmap:{codec.static_payload_type} {codec.name}/{codec.rtp_clock}",
            f"a=rtpmap:{DTMF_PT} telephone-event/8000",
            f"a=fmtp:{DTMF_PT} 0-15",
            f"a=ptime:{PTIME_MS}",
            f"a={direction}",
            f"a=label:{label}",
        ]
        if cryptos:
            lines += [f"a=crypto:{value}" for value in cryptos[label - 1]]
    return _crlf(lines)


def _srtp_keys(spec: FixtureSpec, rng: _Rng, legs: Sequence[_Leg]) -> None:
    """Draw the SRC's key of every offered crypto line and the SRS's key of the accepted one
    (the first offered suite that pylibsrtp implements, RFC 4568 §7.1.2)."""

    def key(suite: str) -> str:
        octets = _SRTP_SUITES[suite][0]
        return base64.b64encode(rng.bits(8 * octets).to_bytes(octets, "big")).decode()

    for leg, suites in zip(legs, spec.srtp_offers, strict=True):
        leg.offered = [(suite, key(suite)) for suite in suites]
        leg.accepted = next(i for i, suite in enumerate(suites) if suite in SUPPORTED_SUITES)
        leg.srs_key = key(suites[leg.accepted])


def _offer_cryptos(leg: _Leg) -> list[str]:
    return [f"{tag} {suite} inline:{key}" for tag, (suite, key) in enumerate(leg.offered, 1)]


def _answer_cryptos(leg: _Leg) -> list[str]:
    return [f"{leg.accepted + 1} {leg.offered[leg.accepted][0]} inline:{leg.srs_key}"]


def _protect(leg: _Leg) -> None:
    """SRTP-protect ``leg.packets`` (RFC 3711 §3.3) in sequence order with the SRC's key of the
    accepted crypto line."""
    suite, key = leg.offered[leg.accepted]
    profile = _SRTP_SUITES[suite][1]
    assert profile is not None
    policy = pylibsrtp.Policy(
        key=base64.b64decode(key),
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=profile,
    )
    session = pylibsrtp.Session(policy)
    leg.packets = [(when, session.protect(packet)) for when, packet in leg.packets]


def _metadata(rng: _Rng, legs: Sequence[_Leg], sip_call_id: str) -> bytes:
    """RFC 7865 §6 recording metadata: one session, two participants, two streams."""

    def ident() -> str:
        return base64.b64encode(rng.bits(128).to_bytes(16, "big")).decode()

    session = ident()
    participants = [ident() for _ in legs]
    streams = [ident() for _ in legs]
    when = _iso(EPOCH_US)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<recording xmlns="urn:ietf:params:xml:ns:recording:1">',
        "  <datamode>complete</datamode>",
        f'  <session session_id="{session}">',
        f"    <sipSessionID>{sip_call_id}</sipSessionID>",
        f"    <start-time>{when}</start-time>",
        "  </session>",
    ]
    for leg, pid in zip(legs, participants, strict=True):
        lines += [
            f'  <participant participant_id="{pid}">',
            f'    <nameID aor="{leg.aor}">',
            f'      <name xml:lang="en">{leg.name}</name>',
            "    </nameID>",
            "  </participant>",
        ]
    for leg, sid in zip(legs, streams, strict=True):
        lines += [
            f'  <stream stream_id="{sid}" session_id="{session}">',
            f"    <label>{leg.label}</label>",
            "  </stream>",
        ]
    lines += [
        f'  <sessionrecordingassoc session_id="{session}">',
        f"    <associate-time>{when}</associate-time>",
        "  </sessionrecordingassoc>",
    ]
    for pid in participants:
        lines += [
            f'  <participantsessionassoc participant_id="{pid}" session_id="{session}">',
            f"    <associate-time>{when}</associate-time>",
            "  </participantsessionassoc>",
        ]
    for i, pid in enumerate(participants):
        lines += [
            f'  <participantstreamassoc participant_id="{pid}">',
            f"    <send>{streams[i]}</send>",
            f"    <recv>{streams[1 - i]}</recv>",
            "  </participantstreamassoc>",
        ]
    lines.append("</recording>")
    return _crlf(lines)


@dataclass(frozen=True, slots=True)
class _Dialog:
    call_id: str
    from_tag: str
    to_tag: str
    invite_branch: str
    ack_branch: str
    bye_branch: str
    boundary: str


def _sip_messages(
    dialog: _Dialog, offer: bytes, metadata: bytes, answer: bytes
) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes]:
    """INVITE, 100, 200 (RFC 7866 §6.1), ACK, BYE, 200 as sent on the wire."""
    src_contact = f"<sip:src@{SRC_IP}:{SIP_PORT}>;+sip.src"
    srs_contact = f"<sip:srs@{SRS_IP}:{SIP_PORT}>"
    request_uri = f"sip:srs@{SRS_IP}:{SIP_PORT}"
    from_ = f'"SRC" <sip:src@{SRC_IP}>;tag={dialog.from_tag}'
    to = f"<sip:srs@{SRS_IP}>"
    to_tagged = f"{to};tag={dialog.to_tag}"
    via = f"SIP/2.0/UDP {SRC_IP}:{SIP_PORT};branch={dialog.invite_branch};rport"
    via_answered = f"SIP/2.0/UDP {SRC_IP}:{SIP_PORT};branch={dialog.invite_branch};rport={SIP_PORT}"
    b = dialog.boundary
    body = b"".join(
        [
            f"--{b}\r\nContent-Type: application/sdp\r\n\r\n".encode(),
            offer,
            f"\r\n--{b}\r\nContent-Type: application/rs-metadata+xml\r\n"
            "Content-Disposition: recording-session\r\n\r\n".encode(),
            metadata,
            f"\r\n--{b}--\r\n".encode(),
        ]
    )

    def message(start: str, headers: Sequence[str], payload: bytes = b"") -> bytes:
        head = [start, *headers, f"Content-Length: {len(payload)}", "", ""]
        return "\r\n".join(head).encode() + payload

    invite = message(
        f"INVITE {request_uri} SIP/2.0",
        [
            f"Via: {via}",
            "Max-Forwards: 70",
            f"From: {from_}",
            f"To: {to}",
            f"Call-ID: {dialog.call_id}",
            "CSeq: 1 INVITE",
            f"Contact: {src_contact}",
            "Require: siprec",
            "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE",
            "User-Agent: siprec-bridge-fixtures/1",
            "MIME-Version: 1.0",
            f"Content-Type: multipart/mixed;boundary={b}",
        ],
        body,
    )
    answer_headers = [
        f"Via: {via_answered}",
        f"From: {from_}",
        f"To: {to_tagged}",
        f"Call-ID: {dialog.call_id}",
        "CSeq: 1 INVITE",
    ]
    trying = message(
        "SIP/2.0 100 Trying",
        [f"Via: {via_answered}", f"From: {from_}", f"To: {to}", *answer_headers[3:]],
    )
    ok = message(
        "SIP/2.0 200 OK",
        [
            *answer_headers,
            f"Contact: {srs_contact}",
            "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE",
            "Content-Type: application/sdp",
        ],
        answer,
    )
    ack = message(
        f"ACK sip:srs@{SRS_IP}:{SIP_PORT} SIP/2.0",
        [
            f"Via: SIP/2.0/UDP {SRC_IP}:{SIP_PORT};branch={dialog.ack_branch};rport",
            "Max-Forwards: 70",
            f"From: {from_}",
            f"To: {to_tagged}",
            f"Call-ID: {dialog.call_id}",
            "CSeq: 1 ACK",
        ],
    )
    bye_headers = [
        f"From: {from_}",
        f"To: {to_tagged}",
        f"Call-ID: {dialog.call_id}",
        "CSeq: 2 BYE",
    ]
    bye = message(
        f"BYE sip:srs@{SRS_IP}:{SIP_PORT} SIP/2.0",
        [
            f"Via: SIP/2.0/UDP {SRC_IP}:{SIP_PORT};branch={dialog.bye_branch};rport",
            "Max-Forwards: 70",
            *bye_headers,
        ],
    )
    bye_ok = message(
        "SIP/2.0 200 OK",
        [
            f"Via: SIP/2.0/UDP {SRC_IP}:{SIP_PORT};branch={dialog.bye_branch};rport={SIP_PORT}",
            *bye_headers,
        ],
    )
    return invite, trying, ok, ack, bye, bye_ok


def _audio_and_dtmf(spec: FixtureSpec, codec: CodecSpec, rng: _Rng, leg: _Leg, slots: int) -> None:
    """Fill ``leg.packets`` with (media time in µs, RTP packet) per datagram, in slot order."""
    encoder = encoder_for(codec.name)
    per_packet = codec.sample_rate * PTIME_MS // 1000
    event_slots = DTMF_EVENT_MS // PTIME_MS
    dtmf_slots: dict[int, tuple[str, int]] = {}
    if leg.label == "1":
        for digit, start_ms in zip(spec.dtmf_digits, spec.dtmf_start_ms, strict=True):
            first = start_ms // PTIME_MS
            for j in range(event_slots):
                dtmf_slots[first + j] = (digit, j)
    for slot in range(leg.first_slot, slots):
        seq = (leg.seq_origin + slot) & 0xFFFF
        ts = (leg.ts_origin + slot * SAMPLES_PER_PACKET) & 0xFFFFFFFF
        pcm = _tone(leg.tone_hz, codec.sample_rate, slot * per_packet, per_packet)
        payload = encoder.encode(pcm)  # also during events: the SRC's encoder keeps running
        when = slot * PTIME_MS * 1000 + rng.jitter_us()
        if slot not in dtmf_slots:
            marker = slot == leg.first_slot
            packet = build_packet(
                payload_type=codec.static_payload_type,
                sequence=seq,
                timestamp=ts,
                ssrc=leg.ssrc,
                payload=payload,
                marker=marker,
            )
            leg.packets.append((when, packet))
            leg.audio_packets += 1
            continue
        digit, j = dtmf_slots[slot]
        end = j == event_slots - 1
        event_ts = (ts - j * SAMPLES_PER_PACKET) & 0xFFFFFFFF
        duration = (j + 1) * SAMPLES_PER_PACKET
        # RFC 4733 §2.3: event, E|R|volume, duration; the timestamp is the event start.
        flags = (0x80 if end else 0) | DTMF_VOLUME
        payload = bytes([_DTMF_EVENTS[digit], flags, duration >> 8, duration & 0xFF])
        packet = build_packet(
            payload_type=DTMF_PT,
            sequence=seq,
            timestamp=event_ts,
            ssrc=leg.ssrc,
            payload=payload,
            marker=j == 0,
        )
        for copy in range(DTMF_END_COPIES if end else 1):
            leg.packets.append((when + copy * 100, packet))
            leg.dtmf_packets += 1


def _impair(spec: FixtureSpec, rng: _Rng, leg: _Leg) -> None:
    """Drop ``loss_fraction`` of the packets; swap the send times of adjacent pairs.

    Swapped pairs and losses never touch each other or the first/last three packets,
    so every reordered packet is out of order by exactly one position.
    """
    count = len(leg.packets)
    pairs = round(count * spec.reorder_fraction / 2)
    lost = round(count * spec.loss_fraction)
    used: set[int] = set()
    swaps: list[int] = []
    while len(swaps) < pairs:
        i = 3 + rng.below(count - 7)
        if used.isdisjoint(range(i - 1, i + 3)):
            swaps.append(i)
            used.update((i, i + 1))
    drops: set[int] = set()
    while len(drops) < lost:
        i = 3 + rng.below(count - 6)
        if used.isdisjoint(range(i - 1, i + 2)):
            drops.add(i)
            used.add(i)
    times = [when for when, _ in leg.packets]
    for i in sorted(swaps):
        times[i], times[i + 1] = times[i + 1], times[i]
        leg.reordered.append([_seq_of(leg.packets[i][1]), _seq_of(leg.packets[i + 1][1])])
    kept: list[tuple[int, bytes]] = []
    for i, (_, packet) in enumerate(leg.packets):
        if i not in drops:
            kept.append((times[i], packet))
            continue
        leg.lost.append(_seq_of(packet))
        if packet[1] & 0x7F == DTMF_PT:
            leg.dtmf_packets -= 1
        else:
            leg.audio_packets -= 1
    leg.packets = kept


def _seq_of(packet: bytes) -> int:
    return parse_header(packet).sequence


@dataclass(frozen=True, slots=True)
class _Datagram:
    when_us: int
    from_src: bool
    sport: int
    dport: int
    payload: bytes


def _frames(datagrams: Sequence[_Datagram]) -> list[tuple[int, bytes]]:
    """Ethernet/IPv4/UDP frames in send order, with per-host IP identification counters."""
    ip_ids = {True: 0x1000, False: 0x5000}
    frames = []
    for d in datagrams:
        udp = dpkt.udp.UDP(sport=d.sport, dport=d.dport, data=d.payload)
        udp.ulen = len(udp)
        ip = dpkt.ip.IP(
            id=ip_ids[d.from_src],
            ttl=64,
            p=dpkt.ip.IP_PROTO_UDP,
            src=ipaddress.IPv4Address(SRC_IP if d.from_src else SRS_IP).packed,
            dst=ipaddress.IPv4Address(SRS_IP if d.from_src else SRC_IP).packed,
            data=udp,
        )
        ip_ids[d.from_src] = (ip_ids[d.from_src] + 1) & 0xFFFF
        eth = dpkt.ethernet.Ethernet(
            src=_SRC_MAC if d.from_src else _SRS_MAC,
            dst=_SRS_MAC if d.from_src else _SRC_MAC,
            type=dpkt.ethernet.ETH_TYPE_IP,
            data=ip,
        )
        frames.append((d.when_us, bytes(eth)))
    return frames


def _leg_manifest(leg: _Leg, codec: CodecSpec, slots: int) -> dict[str, Any]:
    return {
        "label": leg.label,
        "participant": leg.name,
        "aor": leg.aor,
        "tone_hz": leg.tone_hz,
        "level_dbfs": TONE_DBFS,
        "src_port": leg.src_port,
        "dst_port": leg.dst_port,
        "ssrc": leg.ssrc,
        "timestamp_origin": leg.ts_origin,
        "first_sequence": (leg.seq_origin + leg.first_slot) & 0xFFFF,
        "first_timestamp": (leg.ts_origin + leg.first_slot * SAMPLES_PER_PACKET) & 0xFFFFFFFF,
        "start_ms": leg.first_slot * PTIME_MS,
        "duration_ms": (slots - leg.first_slot) * PTIME_MS,
        "packets": len(leg.packets),
        "audio_packets": leg.audio_packets,
        "dtmf_packets": leg.dtmf_packets,
        "lost": len(leg.lost),
        "lost_sequences": leg.lost,
        "reordered_sequences": leg.reordered,
        "payload_type": codec.static_payload_type,
    } | _srtp_manifest(leg)


def _srtp_manifest(leg: _Leg) -> dict[str, Any]:
    if not leg.offered:
        return {}
    suite, key = leg.offered[leg.accepted]
    return {
        "proto": "RTP/SAVP",
        "srtp": {
            "offered": [
                {"tag": tag, "suite": s, "key": k} for tag, (s, k) in enumerate(leg.offered, 1)
            ],
            "tag": leg.accepted + 1,
            "suite": suite,
            "key": key,
            "srs_key": leg.srs_key,
        },
    }


def generate(spec: FixtureSpec, out_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Write ``out_dir / spec.name``; return its path and its manifest entry."""
    codec = CODECS[spec.codec]
    rng = _Rng(spec.seed)

    def token(bits: int) -> str:
        return f"{rng.bits(bits):0{bits // 4}x}"

    dialog = _Dialog(
        call_id=f"{token(96)}@{SRC_IP}",
        from_tag=token(32),
        to_tag=token(32),
        invite_branch=f"z9hG4bK{token(64)}",
        ack_branch=f"z9hG4bK{token(64)}",
        bye_branch=f"z9hG4bK{token(64)}",
        boundary=f"siprec-{token(48)}",
    )
    slots = spec.duration_ms // PTIME_MS
    legs = [
        _Leg(
            label=str(i + 1),
            name=name,
            aor=aor,
            tone_hz=tone,
            src_port=SRC_RTP_PORTS[i],
            dst_port=SRS_RTP_PORTS[i],
            ssrc=rng.bits(32),
            seq_origin=rng.bits(16),
            ts_origin=rng.bits(32),
            first_slot=spec.leg2_delay_ms // PTIME_MS if i == 1 else 0,
        )
        for i, (name, aor, tone) in enumerate(_PARTICIPANTS)
    ]
    if spec.srtp_offers:
        _srtp_keys(spec, rng, legs)
    sdp_version = EPOCH_US // 1_000_000
    offer = _sdp(
        codec,
        SRC_IP,
        SRC_RTP_PORTS,
        "sendonly",
        sdp_version,
        [_offer_cryptos(leg) for leg in legs if leg.offered],
    )
    answer = _sdp(
        codec,
        SRS_IP,
        SRS_RTP_PORTS,
        "recvonly",
        sdp_version,
        [_answer_cryptos(leg) for leg in legs if leg.offered],
    )
    invite, trying, ok, ack, bye, bye_ok = _sip_messages(
        dialog, offer, _metadata(rng, legs, dialog.call_id), answer
    )
    datagrams = [
        _Datagram(0, True, SIP_PORT, SIP_PORT, invite),
        _Datagram(_TRYING_US, False, SIP_PORT, SIP_PORT, trying),
        _Datagram(_OK_US, False, SIP_PORT, SIP_PORT, ok),
        _Datagram(_ACK_US, True, SIP_PORT, SIP_PORT, ack),
    ]
    for i, leg in enumerate(legs):
        _audio_and_dtmf(spec, codec, rng, leg, slots)
        _impair(spec, rng, leg)
        if leg.offered:
            _protect(leg)
        start = _MEDIA_US + _LEG_OFFSET_US[i]
        datagrams += [
            _Datagram(start + when, True, leg.src_port, leg.dst_port, packet)
            for when, packet in leg.packets
        ]
    bye_at = max(d.when_us for d in datagrams) + _BYE_AFTER_MEDIA_US
    datagrams += [
        _Datagram(bye_at, True, SIP_PORT, SIP_PORT, bye),
        _Datagram(bye_at + _BYE_OK_US, False, SIP_PORT, SIP_PORT, bye_ok),
    ]
    datagrams.sort(key=lambda d: d.when_us)
    path = out_dir / spec.name
    with path.open("wb") as f:
        writer = dpkt.pcap.Writer(f, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        for when_us, frame in _frames(datagrams):
            writer.writepkt(frame, (EPOCH_US + when_us) / 1_000_000)
    entry: dict[str, Any] = {
        "description": spec.description,
        "codec": codec.name,
        "payload_type": codec.static_payload_type,
        "clock_rate": RTP_CLOCK,
        "sample_rate": codec.sample_rate,
        "ptime_ms": PTIME_MS,
        "duration_ms": spec.duration_ms,
        "call_id": dialog.call_id,
        "sip_flow": ["INVITE", "100", "200", "ACK", "BYE", "200"],
        "src": {"ip": SRC_IP, "sip_port": SIP_PORT},
        "srs": {"ip": SRS_IP, "sip_port": SIP_PORT},
        "legs": [_leg_manifest(leg, codec, slots) for leg in legs],
        "dtmf_payload_type": DTMF_PT,
        "dtmf": list(spec.dtmf_digits),
        "dtmf_events": [
            {
                "label": "1",
                "digit": digit,
                "event": _DTMF_EVENTS[digit],
                "start_ms": start_ms,
                "duration_ms": DTMF_EVENT_MS,
                "timestamp": (legs[0].ts_origin + start_ms * RTP_CLOCK // 1000) & 0xFFFFFFFF,
                "end_packets": DTMF_END_COPIES,
            }
            for digit, start_ms in zip(spec.dtmf_digits, spec.dtmf_start_ms, strict=True)
        ],
        "lost_packets": sum(len(leg.lost) for leg in legs),
        "reordered_packets": sum(2 * len(leg.reordered) for leg in legs),
        "pcap_duration_ms": (bye_at + _BYE_OK_US) // 1000,
    }
    return path, entry


def generate_all(out_dir: Path) -> list[Path]:
    """Write every fixture of :data:`FIXTURES` and ``manifest.json``; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    files: dict[str, Any] = {}
    for spec in FIXTURES:
        path, entry = generate(spec, out_dir)
        paths.append(path)
        files[spec.name] = entry
    manifest_path = out_dir / MANIFEST_NAME
    manifest_path.write_text(json.dumps(files, indent=2) + "\n", encoding="utf-8")
    paths.append(manifest_path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m siprec_bridge.fixtures",
        description="Write the deterministic SIPREC fixture pcaps and manifest.json.",
    )
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    args = parser.parse_args(argv)
    for path in generate_all(args.out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
