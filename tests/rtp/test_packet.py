"""RTP header parsing (RFC 3550 §5.1) against named binary vectors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtp.errors import RtpError
from rtp.packet import MAX_PACKET_SIZE, RtpHeader, build_packet, is_rtcp, parse_header

VECTORS = Path(__file__).parent / "vectors"
PACKETS = VECTORS / "packet"


def _load(name: str) -> bytes:
    return (PACKETS / name).read_bytes()


def test_vectors_match_their_generator() -> None:
    spec = importlib.util.spec_from_file_location(
        "make_packet_vectors", VECTORS / "make_packet_vectors.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generated: dict[str, bytes] = module.vectors()
    assert sorted(generated) == sorted(p.name for p in PACKETS.iterdir())
    for name, content in generated.items():
        assert _load(name) == content, name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("rtp_plain.bin", RtpHeader(0, True, 0x1234, 0x01020304, 0xDEADBEEF, 12, 172)),
        ("rtp_with_csrc.bin", RtpHeader(8, False, 0x1234, 0x01020304, 0xDEADBEEF, 20, 40)),
        ("rtp_with_extension.bin", RtpHeader(9, False, 0x1234, 0x01020304, 0xDEADBEEF, 24, 44)),
        ("rtp_with_padding.bin", RtpHeader(0, False, 0x1234, 0x01020304, 0xDEADBEEF, 12, 32)),
        ("rtp_with_all.bin", RtpHeader(101, False, 0x1234, 0x01020304, 0xDEADBEEF, 32, 52)),
        ("rtp_empty_payload.bin", RtpHeader(0, False, 65535, 0xFFFFFFFF, 0, 12, 12)),
    ],
)
def test_parse_valid(name: str, expected: RtpHeader) -> None:
    data = _load(name)
    header = parse_header(data)
    assert header == expected
    if name != "rtp_plain.bin" and name != "rtp_empty_payload.bin":
        assert data[header.payload_offset : header.payload_end] == bytes(range(20))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("rtp_truncated_header.bin", "too short"),
        ("rtp_truncated_csrc.bin", "past the end"),
        ("rtp_truncated_extension_header.bin", "past the end"),
        ("rtp_truncated_extension.bin", "past the end"),
        ("rtp_bad_padding_zero.bin", "padding"),
        ("rtp_bad_padding_too_big.bin", "padding"),
        ("rtp_version1.bin", "version 1"),
    ],
)
def test_parse_invalid(name: str, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        parse_header(_load(name))


def test_parse_rejects_oversized_datagram() -> None:
    with pytest.raises(RtpError, match="too long"):
        parse_header(_load("rtp_plain.bin") + bytes(MAX_PACKET_SIZE))


def test_is_rtcp() -> None:
    assert is_rtcp(_load("rtcp_sender_report.bin"))
    assert not is_rtcp(_load("rtp_plain.bin"))  # PT 0 with marker: 0x80
    assert not is_rtcp(_load("rtp_with_all.bin"))  # PT 101
    assert not is_rtcp(b"\x80")
    # RFC 5761 §4: 192..223 are RTCP (PT 64-95 with marker), 224+ is RTP again.
    assert is_rtcp(b"\x80\xc0") and is_rtcp(b"\x80\xdf") and not is_rtcp(b"\x80\xe0")


def test_build_matches_vector() -> None:
    built = build_packet(
        payload_type=0,
        sequence=0x1234,
        timestamp=0x01020304,
        ssrc=0xDEADBEEF,
        payload=b"\xff" * 160,
        marker=True,
    )
    assert built == _load("rtp_plain.bin")


@pytest.mark.parametrize(
    "field",
    [
        {"payload_type": 128},
        {"sequence": 65536},
        {"timestamp": -1},
        {"ssrc": 1 << 32},
        {"payload": bytes(MAX_PACKET_SIZE)},
    ],
)
def test_build_rejects_out_of_range(field: dict[str, object]) -> None:
    args: dict[str, object] = {
        "payload_type": 0,
        "sequence": 0,
        "timestamp": 0,
        "ssrc": 0,
        "payload": b"",
    }
    args.update(field)
    with pytest.raises(RtpError):
        build_packet(**args)  # type: ignore[arg-type]


@given(
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 65535),
    timestamp=st.integers(0, 2**32 - 1),
    ssrc=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=300),
    marker=st.booleans(),
)
def test_build_parse_round_trip(
    payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, marker: bool
) -> None:
    data = build_packet(
        payload_type=payload_type,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=payload,
        marker=marker,
    )
    header = parse_header(data)
    assert header == RtpHeader(payload_type, marker, sequence, timestamp, ssrc, 12, len(data))
    assert data[header.payload_offset : header.payload_end] == payload


@given(st.integers(0, 255), st.binary(max_size=200))
def test_parse_raises_only_rtp_error(first: int, rest: bytes) -> None:
    data = bytes([first | 0x80 if first & 1 else first]) + rest  # mostly version 2
    try:
        header = parse_header(data)
    except RtpError:
        return
    assert 12 <= header.payload_offset <= header.payload_end <= len(data)
