"""RTCP receive side (RFC 3550 §6): compound packets, sender and receiver reports, BYE.

:func:`parse_compound` splits one (decrypted) RTCP datagram into its packets (RFC 3550 §6.1)
and returns the ones a recorder uses: :class:`SenderReport` (§6.4.1, the sender's NTP ↔ RTP
timestamp mapping plus its counts), :class:`ReceiverReport` (§6.4.2) and :class:`Bye` (§6.6).
SDES, APP, feedback (RFC 4585) and XR (RFC 3611) packets are checked for length and skipped.
Reduced-size RTCP (RFC 5506: a datagram that does not start with SR/RR) is accepted.

On a port shared with RTP (RFC 5761 §4), :func:`rtp.packet.is_rtcp` tells the two apart.

Validity checks (RFC 3550 A.2): every packet has version 2 and a length that stays inside the
datagram, the lengths add up to the datagram size, and an SR/RR is long enough for its report
count. Anything else raises :class:`~rtp.errors.RtpError` (nothing else is raised).
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from .errors import RtpError
from .packet import MAX_PACKET_SIZE

__all__ = [
    "NTP_UNIX_OFFSET",
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "SenderReport",
    "parse_compound",
]

NTP_UNIX_OFFSET: Final = 2_208_988_800
"""Seconds from the NTP epoch (1900-01-01) to the Unix epoch (RFC 5905 §6)."""

SR: Final = 200
RR: Final = 201
SDES: Final = 202
BYE: Final = 203
APP: Final = 204

_HEADER: Final = struct.Struct("!BBH")
_SSRC: Final = struct.Struct("!I")
_SENDER_INFO: Final = struct.Struct("!IQIII")  # SSRC, NTP, RTP timestamp, packets, octets
_BLOCK: Final = struct.Struct("!IIIIII")
_BLOCK_SIZE: Final = 24


class ReportBlock(NamedTuple):
    """One reception report block (RFC 3550 §6.4.1) about source ``ssrc``."""

    ssrc: int
    fraction_lost: float
    """Fraction of packets lost since the previous report, 0.0-1.0 (8-bit fixed point)."""
    cumulative_lost: int
    """Packets lost since the beginning of reception (signed 24 bits: duplicates make it < 0)."""
    highest_sequence: int
    """Extended highest sequence number received."""
    jitter: int
    """Interarrival jitter (§6.4.1, A.8) in RTP timestamp units."""
    last_sr: int
    """Middle 32 bits of the NTP timestamp of the last SR received from ``ssrc`` (0: none)."""
    delay_since_last_sr: int
    """Delay since that SR, in 1/65536 s."""


class SenderReport(NamedTuple):
    """An SR (RFC 3550 §6.4.1): the sender's wallclock ↔ RTP timestamp mapping and counts."""

    ssrc: int
    ntp_timestamp: int
    """64-bit NTP timestamp (RFC 3550 §4): seconds since 1900 in 32.32 fixed point."""
    rtp_timestamp: int
    """The RTP timestamp corresponding to the same instant as ``ntp_timestamp``."""
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...]

    @property
    def ntp_seconds(self) -> float:
        """``ntp_timestamp`` as seconds since 1900 (subtract :data:`NTP_UNIX_OFFSET` for Unix)."""
        return self.ntp_timestamp / 4_294_967_296


class ReceiverReport(NamedTuple):
    """An RR (RFC 3550 §6.4.2) from ``ssrc``."""

    ssrc: int
    reports: tuple[ReportBlock, ...]


class Bye(NamedTuple):
    """A BYE (RFC 3550 §6.6): the sources are leaving; ``reason`` if one is given."""

    ssrcs: tuple[int, ...]
    reason: str | None


RtcpPacket = SenderReport | ReceiverReport | Bye


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP datagram (RFC 3550 §6.1) into its SR, RR and BYE packets.

    Raises :class:`RtpError` when the datagram is shorter than 4 or longer than
    :data:`~rtp.packet.MAX_PACKET_SIZE` octets, a packet is not version 2 or runs past the end,
    the packet lengths do not add up to the datagram, or an SR/RR/BYE is shorter than its
    count field requires.
    """
    size = len(data)
    if size < 4:
        raise RtpError(f"RTCP datagram too short: {size} octets")
    if size > MAX_PACKET_SIZE:
        raise RtpError(f"RTCP datagram too long: {size} octets")
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < size:
        if size - offset < 4:
            raise RtpError("RTCP packet header runs past the end of the datagram")
        first, packet_type, length = _HEADER.unpack_from(data, offset)
        if first >> 6 != 2:
            raise RtpError(f"RTCP version {first >> 6} (expected 2)")
        end = offset + 4 + length * 4
        if end > size:
            raise RtpError("RTCP packet runs past the end of the datagram")
        count = first & 0x1F
        if packet_type == SR:
            packets.append(_sender_report(data, offset + 4, end, count))
        elif packet_type == RR:
            packets.append(_receiver_report(data, offset + 4, end, count))
        elif packet_type == BYE:
            packets.append(_bye(data, offset + 4, end, count))
        offset = end
    return packets


def _blocks(data: bytes, offset: int, end: int, count: int) -> tuple[ReportBlock, ...]:
    if offset + count * _BLOCK_SIZE > end:
        raise RtpError(f"RTCP report with {count} blocks is too short")
    blocks = []
    for index in range(count):
        ssrc, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset + index * 24)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        blocks.append(ReportBlock(ssrc, (lost >> 24) / 256, cumulative, highest, jitter, lsr, dlsr))
    return tuple(blocks)


def _sender_report(data: bytes, offset: int, end: int, count: int) -> SenderReport:
    if offset + _SENDER_INFO.size > end:
        raise RtpError("RTCP SR too short for its sender info")
    ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(data, offset)
    blocks = _blocks(data, offset + _SENDER_INFO.size, end, count)
    return SenderReport(ssrc, ntp, rtp_ts, packets, octets, blocks)


def _receiver_report(data: bytes, offset: int, end: int, count: int) -> ReceiverReport:
    if offset + 4 > end:
        raise RtpError("RTCP RR too short for its SSRC")
    (ssrc,) = _SSRC.unpack_from(data, offset)
    return ReceiverReport(ssrc, _blocks(data, offset + 4, end, count))


def _bye(data: bytes, offset: int, end: int, count: int) -> Bye:
    stop = offset + 4 * count
    if stop > end:
        raise RtpError(f"RTCP BYE with {count} sources is too short")
    ssrcs = tuple(_SSRC.unpack_from(data, offset + 4 * i)[0] for i in range(count))
    reason: str | None = None
    if stop < end:
        length = data[stop]
        if stop + 1 + length > end:
            raise RtpError("RTCP BYE reason runs past the end of the packet")
        reason = data[stop + 1 : stop + 1 + length].decode("utf-8", "replace")
    return Bye(ssrcs, reason)
