"""Write the RTCP test vectors in ``rtcp/`` (deterministic; run from anywhere).

``webrtc_*`` are real compound packets: the SRTCP packets of the corpus capture
``pcap/srtp/WebRTC_PCMA_p2p_SDES_Call_1.pcap`` (Chrome, 2016), decrypted with the keys of its
``.keys.txt``. The others are built here with ``struct`` (not with ``rtp.rtcp``) so that the
parser is checked against an independent encoding of RFC 3550 §6.4.1, §6.4.2 and §6.6.
"""

from __future__ import annotations

import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent / "rtcp"

REAL = {
    # SR of SSRC 0xD092D296 + SDES CNAME (192.168.1.142, t=1467975054.84).
    "webrtc_sr_sdes.bin": "80c80006d092d296db2a040ed69984a1e0fecf150000008500004a47"
    "81ca0006d092d29601105370704174672b522f47315a555a49790000",
    # RR of the receive-only SSRC 0xFA17FA17 about 0xD092D296 (reduced size: no SDES).
    "webrtc_rr.bin": "81c90007fa17fa17d092d296000000000000497a00000036040b28870002f514",
    # RR (no blocks) + SDES + BYE of 0x522B93AB at the end of the call.
    "webrtc_rr_sdes_bye.bin": "80c90001522b93ab81ca0006522b93ab0110316e63764d6132355061447961"
    "563770000081cb0001522b93ab",
}


def _header(packet_type: int, count: int, words: int, *, padding: bool = False) -> bytes:
    return struct.pack("!BBH", 0x80 | padding << 5 | count, packet_type, words)


def _block(ssrc: int, fraction: int, lost: int, highest: int, jitter: int) -> bytes:
    return struct.pack(
        "!IIIIII", ssrc, fraction << 24 | lost & 0xFFFFFF, highest, jitter, 0x12345678, 0x10000
    )


def vectors() -> dict[str, bytes]:
    """File name → content."""
    sender_info = struct.pack("!IQIII", 0x11223344, 0xE0000000_80000000, 160000, 1000, 160000)
    blocks = _block(0xAAAA0001, 64, 3, 0x0001_0010, 40) + _block(0xAAAA0002, 0, -2, 77, 0)
    sr_two_blocks = _header(200, 2, 6 + 12) + sender_info + blocks
    app = _header(204, 1, 2) + struct.pack("!I4s", 0x11223344, b"TEST")
    xr = _header(207, 0, 1) + struct.pack("!I", 0x11223344)
    bye = _header(203, 2, 4) + struct.pack("!II", 1, 2) + b"\x05leave\x00\x00"
    sr_padded = _header(200, 0, 7, padding=True) + sender_info + b"\x00\x00\x00\x04"
    real = {name: bytes.fromhex(text) for name, text in REAL.items()}
    return {
        **real,
        "sr_two_blocks.bin": sr_two_blocks,
        "sr_app_xr.bin": _header(200, 0, 6) + sender_info + app + xr,
        "bye_reason.bin": bye,
        "sr_padded.bin": sr_padded,
        "invalid_version1.bin": b"\x40" + sr_two_blocks[1:],
        "invalid_length_past_end.bin": sr_two_blocks[:-4],
        "invalid_trailing_octets.bin": sr_two_blocks + b"\x80\xc9",
        "invalid_sr_too_short.bin": _header(200, 0, 3) + sender_info[:12],
        "invalid_rr_count_too_big.bin": _header(201, 2, 7) + struct.pack("!I", 1) + blocks[:24],
        "invalid_bye_reason_past_end.bin": _header(203, 1, 2) + struct.pack("!I", 1) + b"\x09abc",
        "invalid_truncated_header.bin": b"\x80\xc8\x00",
    }


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, content in vectors().items():
        (HERE / name).write_bytes(content)


if __name__ == "__main__":
    main()
