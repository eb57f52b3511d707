"""Write the RTP header test vectors in ``packet/`` (deterministic; run from anywhere).

The packets are built here with ``struct`` directly (not with ``rtp.packet``) so that the parser
is checked against an independent encoding of RFC 3550 §5.1.
"""

from __future__ import annotations

import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent / "packet"


def _header(
    *,
    version: int = 2,
    padding: bool = False,
    extension: bool = False,
    csrc_count: int = 0,
    marker: bool = False,
    payload_type: int = 0,
    sequence: int = 0x1234,
    timestamp: int = 0x01020304,
    ssrc: int = 0xDEADBEEF,
) -> bytes:
    first = version << 6 | padding << 5 | extension << 4 | csrc_count
    return struct.pack("!BBHII", first, marker << 7 | payload_type, sequence, timestamp, ssrc)


def vectors() -> dict[str, bytes]:
    """File name → content."""
    payload = bytes(range(20))
    csrcs = struct.pack("!II", 0x11111111, 0x22222222)
    ext = struct.pack("!HH", 0xBEDE, 2) + bytes(8)
    plain = _header(marker=True) + b"\xff" * 160
    return {
        "rtp_plain.bin": plain,
        "rtp_with_csrc.bin": _header(csrc_count=2, payload_type=8) + csrcs + payload,
        "rtp_with_extension.bin": _header(extension=True, payload_type=9) + ext + payload,
        "rtp_with_padding.bin": _header(padding=True) + payload + b"\x00\x00\x00\x04",
        "rtp_with_all.bin": _header(padding=True, extension=True, csrc_count=2, payload_type=101)
        + csrcs
        + ext
        + payload
        + b"\x00\x02",
        "rtp_empty_payload.bin": _header(sequence=65535, timestamp=0xFFFFFFFF, ssrc=0),
        "rtp_truncated_header.bin": plain[:11],
        "rtp_truncated_csrc.bin": _header(csrc_count=3) + csrcs,
        "rtp_truncated_extension_header.bin": _header(extension=True) + b"\xbe\xde",
        "rtp_truncated_extension.bin": _header(extension=True)
        + struct.pack("!HH", 0xBEDE, 3)
        + bytes(8),
        "rtp_bad_padding_zero.bin": _header(padding=True) + payload + b"\x00",
        "rtp_bad_padding_too_big.bin": _header(padding=True) + b"\x01\x02\x03\x09",
        "rtp_version1.bin": _header(version=1) + payload,
        "rtcp_sender_report.bin": struct.pack("!BBHI", 0x80, 200, 6, 0xDEADBEEF) + bytes(20),
    }


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, content in vectors().items():
        (HERE / name).write_bytes(content)


if __name__ == "__main__":
    main()
