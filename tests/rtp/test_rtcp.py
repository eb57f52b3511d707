"""RTCP compound parsing (RFC 3550 §6) against named binary vectors (vectors/rtcp/)."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtp.errors import RtpError
from rtp.packet import MAX_PACKET_SIZE, is_rtcp
from rtp.rtcp import (
    NTP_UNIX_OFFSET,
    Bye,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    parse_compound,
)

VECTORS = Path(__file__).parent / "vectors"
RTCP = VECTORS / "rtcp"


def _load(name: str) -> bytes:
    return (RTCP / name).read_bytes()


def test_vectors_match_their_generator() -> None:
    spec = importlib.util.spec_from_file_location(
        "make_rtcp_vectors", VECTORS / "make_rtcp_vectors.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generated: dict[str, bytes] = module.vectors()
    assert sorted(generated) == sorted(p.name for p in RTCP.iterdir())
    for name, content in generated.items():
        assert _load(name) == content, name


def test_real_sender_report_with_sdes() -> None:
    data = _load("webrtc_sr_sdes.bin")
    assert is_rtcp(data)
    (sr,) = parse_compound(data)  # the SDES chunk is skipped
    assert isinstance(sr, SenderReport)
    assert sr.ssrc == 0xD092D296
    assert sr.ntp_timestamp == 0xDB2A040E_D69984A1
    assert sr.rtp_timestamp == 0xE0FECF15
    assert (sr.packet_count, sr.octet_count) == (133, 19015)
    assert sr.reports == ()
    # the sender's wallclock agrees with the capture time of the packet (2016-07-08)
    assert sr.ntp_seconds - NTP_UNIX_OFFSET == pytest.approx(1467975054.838, abs=1e-3)


def test_real_receiver_report() -> None:
    (rr,) = parse_compound(_load("webrtc_rr.bin"))
    assert rr == ReceiverReport(
        0xFA17FA17,
        (ReportBlock(0xD092D296, 0.0, 0, 0x497A, 0x36, 0x040B2887, 0x0002F514),),
    )


def test_real_bye_after_rr_and_sdes() -> None:
    packets = parse_compound(_load("webrtc_rr_sdes_bye.bin"))
    assert packets == [ReceiverReport(0x522B93AB, ()), Bye((0x522B93AB,), None)]


def test_sender_report_with_blocks() -> None:
    (sr,) = parse_compound(_load("sr_two_blocks.bin"))
    assert isinstance(sr, SenderReport)
    assert sr.ntp_seconds == pytest.approx(0xE0000000 + 0.5)
    first, second = sr.reports
    assert first == ReportBlock(0xAAAA0001, 0.25, 3, 0x0001_0010, 40, 0x12345678, 0x10000)
    assert second.cumulative_lost == -2  # signed 24 bits: duplicates
    assert second.fraction_lost == 0.0


def test_app_and_xr_are_skipped() -> None:
    packets = parse_compound(_load("sr_app_xr.bin"))
    assert [type(p) for p in packets] == [SenderReport]


def test_bye_with_reason() -> None:
    assert parse_compound(_load("bye_reason.bin")) == [Bye((1, 2), "leave")]


def test_padding_in_last_packet() -> None:
    (sr,) = parse_compound(_load("sr_padded.bin"))
    assert isinstance(sr, SenderReport) and sr.packet_count == 1000


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("invalid_version1.bin", "version 1"),
        ("invalid_length_past_end.bin", "past the end"),
        ("invalid_trailing_octets.bin", "header runs past"),
        ("invalid_sr_too_short.bin", "SR too short"),
        ("invalid_rr_count_too_big.bin", "2 blocks"),
        ("invalid_bye_reason_past_end.bin", "reason runs past"),
        ("invalid_truncated_header.bin", "too short"),
    ],
)
def test_invalid(name: str, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        parse_compound(_load(name))


def test_size_limit() -> None:
    words = (MAX_PACKET_SIZE + 1) // 4
    huge = struct.pack("!BBH", 0x80, 204, words) + bytes(words * 4)
    with pytest.raises(RtpError, match="too long"):
        parse_compound(huge)


@given(st.binary(max_size=200))
def test_fuzz_raises_only_rtp_error(data: bytes) -> None:
    try:
        packets = parse_compound(data)
    except RtpError:
        return
    assert all(isinstance(p, SenderReport | ReceiverReport | Bye) for p in packets)


@given(st.data())
def test_fuzz_mutated_vectors(data: st.DataObject) -> None:
    base = bytearray(_load(data.draw(st.sampled_from(sorted(p.name for p in RTCP.iterdir())))))
    if base:
        index = data.draw(st.integers(0, len(base) - 1))
        base[index] = data.draw(st.integers(0, 255))
    try:
        packets = parse_compound(bytes(base))
    except RtpError:
        return
    assert all(isinstance(p, SenderReport | ReceiverReport | Bye) for p in packets)
