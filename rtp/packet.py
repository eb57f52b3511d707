"""RTP fixed header (RFC 3550 §5.1) parse and build; RTP/RTCP demultiplexing (RFC 5761 §4).

:func:`parse_header` does not copy the payload: it returns the slice bounds
``data[payload_offset:payload_end]`` after the CSRC list, the header extension (RFC 3550 §5.3.1)
and the padding (the ``P`` bit, last octet = padding count) have been skipped. It raises only
:class:`~rtp.errors.RtpError`.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from .errors import RtpError

__all__ = ["HEADER_SIZE", "MAX_PACKET_SIZE", "RtpHeader", "build_packet", "is_rtcp", "parse_header"]

HEADER_SIZE: Final = 12
"""Size of the fixed RTP header (RFC 3550 §5.1)."""
MAX_PACKET_SIZE: Final = 65_535
"""Largest datagram accepted by :func:`parse_header` (the UDP length field limit)."""

_FIXED: Final = struct.Struct("!BBHII")
_EXT_LENGTH: Final = struct.Struct("!H")


class RtpHeader(NamedTuple):
    """The fields of an RTP header that a receiver uses, and where the payload lies."""

    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload_offset: int
    """Index of the first payload octet (after CSRC list and header extension)."""
    payload_end: int
    """Index one past the last payload octet (padding excluded)."""


def parse_header(data: bytes) -> RtpHeader:
    """Parse the RTP header of one datagram (RFC 3550 §5.1).

    Raises :class:`RtpError` when the datagram is shorter than 12 octets or longer than
    :data:`MAX_PACKET_SIZE`, the version is not 2, the CSRC list or the header extension runs past
    the end, or the padding count is 0 or larger than the payload.
    """
    size = len(data)
    if size < HEADER_SIZE:
        raise RtpError(f"RTP packet too short: {size} octets")
    if size > MAX_PACKET_SIZE:
        raise RtpError(f"RTP packet too long: {size} octets")
    first, second, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
    if first >> 6 != 2:
        raise RtpError(f"RTP version {first >> 6} (expected 2)")
    offset = HEADER_SIZE + (first & 0x0F) * 4
    if first & 0x10:
        # RFC 3550 §5.3.1: 16-bit profile-defined field, 16-bit length in 32-bit words.
        if offset + 4 > size:
            raise RtpError("RTP header extension runs past the end of the packet")
        offset += 4 + _EXT_LENGTH.unpack_from(data, offset + 2)[0] * 4
    if offset > size:
        raise RtpError("RTP CSRC list or header extension runs past the end of the packet")
    end = size
    if first & 0x20:
        padding = data[size - 1]
        if padding == 0 or padding > size - offset:
            raise RtpError(f"bad RTP padding count {padding}")
        end -= padding
    return RtpHeader(second & 0x7F, bool(second & 0x80), sequence, timestamp, ssrc, offset, end)


def is_rtcp(data: bytes) -> bool:
    """Tell RTCP from RTP on a shared port (RFC 5761 §4): octet 1 in 192..223 is RTCP.

    RTCP packet types 192-223 would be RTP payload types 64-95 with the marker bit set,
    which RFC 5761 §4 forbids for RTP.
    """
    return len(data) >= 2 and 192 <= data[1] <= 223


def build_packet(
    *,
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    marker: bool = False,
) -> bytes:
    """Build an RTP packet with a 12-octet header (RFC 3550 §5.1): no CSRC, extension, padding.

    Raises :class:`RtpError` when a field is outside its range (payload type 0-127, sequence
    0-65535, timestamp and SSRC 0-2^32-1) or the packet would exceed :data:`MAX_PACKET_SIZE`.
    """
    if not 0 <= payload_type <= 0x7F:
        raise RtpError(f"payload type out of range: {payload_type}")
    if not 0 <= sequence <= 0xFFFF:
        raise RtpError(f"sequence number out of range: {sequence}")
    if not 0 <= timestamp <= 0xFFFFFFFF:
        raise RtpError(f"timestamp out of range: {timestamp}")
    if not 0 <= ssrc <= 0xFFFFFFFF:
        raise RtpError(f"SSRC out of range: {ssrc}")
    if HEADER_SIZE + len(payload) > MAX_PACKET_SIZE:
        raise RtpError(f"payload too long: {len(payload)} octets")
    second = payload_type | 0x80 if marker else payload_type
    return _FIXED.pack(0x80, second, sequence, timestamp, ssrc) + payload
