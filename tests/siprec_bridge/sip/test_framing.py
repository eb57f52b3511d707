"""Tests for StreamFramer: RFC 3261 §18.3 framing by Content-Length, RFC 5626 keep-alives."""

from __future__ import annotations

from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siprec_bridge.sip.errors import SipFramingError
from siprec_bridge.sip.message import (
    KEEPALIVE_PING,
    MAX_MESSAGE_SIZE,
    SipRequest,
    StreamFramer,
    parse_message,
)

VECTORS = Path(__file__).parent / "vectors"
PCAP = (
    Path(__file__).resolve().parents[3]
    / ".."
    / "shared"
    / "siprec-corpus"
    / "pcap"
    / "heplify"
    / "sip_ipv4_tcp_fragmented.pcap"
)

INVITE = (VECTORS / "valid" / "compact_headers.sip").read_bytes()
OPTIONS = (VECTORS / "valid" / "folded_headers.sip").read_bytes()
NO_BODY = (
    b"BYE sip:srs@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.5;branch=z9hG4bKnb\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: nb\r\nCSeq: 2 BYE\r\n\r\n"
)


def feed_all(framer: StreamFramer, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    return out


def test_one_message_one_segment() -> None:
    framer = StreamFramer()
    assert framer.feed(INVITE) == [INVITE]
    assert framer.buffered == 0


def test_every_split_point() -> None:
    for cut in range(1, len(INVITE)):
        framer = StreamFramer()
        assert feed_all(framer, [INVITE[:cut], INVITE[cut:]]) == [INVITE], cut


def test_byte_by_byte() -> None:
    framer = StreamFramer()
    data = INVITE + OPTIONS
    assert feed_all(framer, [data[i : i + 1] for i in range(len(data))]) == [INVITE, OPTIONS]


def test_several_messages_in_one_segment_and_trailing_partial() -> None:
    framer = StreamFramer()
    assert framer.feed(INVITE + OPTIONS + INVITE[:10]) == [INVITE, OPTIONS]
    assert framer.buffered == 10
    assert framer.feed(INVITE[10:]) == [INVITE]


def test_missing_content_length_counts_as_zero() -> None:
    framer = StreamFramer()
    assert framer.feed(NO_BODY + OPTIONS) == [NO_BODY, OPTIONS]


def test_keepalive_ping_reported_and_pong_dropped() -> None:
    framer = StreamFramer()
    assert framer.feed(KEEPALIVE_PING) == [KEEPALIVE_PING]
    assert framer.feed(b"\r\n" + INVITE) == [INVITE]  # a single CRLF (pong) is skipped
    assert framer.feed(b"\r\n\r") == []  # could still become a ping
    assert framer.feed(b"\n") == [KEEPALIVE_PING]
    assert framer.feed(b"\r\n") == []
    assert framer.feed(OPTIONS) == [OPTIONS]


def test_bare_lf_message() -> None:
    lf = (VECTORS / "valid" / "bare_lf.sip").read_bytes()
    framer = StreamFramer()
    assert framer.feed(lf + lf) == [lf, lf]
    message = parse_message(lf)
    assert isinstance(message, SipRequest) and message.body.startswith(b"v=0")


def test_header_block_too_large() -> None:
    framer = StreamFramer(max_message_size=1000)
    with pytest.raises(SipFramingError, match="header block"):
        framer.feed(b"INVITE sip:a@b SIP/2.0\r\n" + b"X-Pad: " + b"p" * 1000)


def test_header_block_too_large_across_segments() -> None:
    framer = StreamFramer()
    framer.feed(b"INVITE sip:a@b SIP/2.0\r\n")
    with pytest.raises(SipFramingError):
        for _ in range(100):
            framer.feed(b"X-Pad: " + b"p" * 1000 + b"\r\n")


def test_content_length_too_large() -> None:
    head = NO_BODY.replace(
        b"CSeq: 2 BYE\r\n", b"CSeq: 2 BYE\r\nContent-Length: %d\r\n" % MAX_MESSAGE_SIZE
    )
    with pytest.raises(SipFramingError, match="exceeds"):
        StreamFramer().feed(head)


@pytest.mark.parametrize("value", [b"abc", b"-1", b"12345678901"])
def test_malformed_content_length(value: bytes) -> None:
    head = NO_BODY.replace(b"CSeq: 2 BYE\r\n", b"CSeq: 2 BYE\r\nl: " + value + b"\r\n")
    with pytest.raises(SipFramingError, match="Content-Length"):
        StreamFramer().feed(head)


def test_conflicting_content_lengths() -> None:
    head = NO_BODY.replace(b"CSeq: 2 BYE\r\n", b"CSeq: 2 BYE\r\nContent-Length: 1\r\nl: 2\r\n")
    with pytest.raises(SipFramingError, match="conflicting"):
        StreamFramer().feed(head)


def test_error_carries_messages_framed_before_it() -> None:
    bad = NO_BODY.replace(b"CSeq: 2 BYE\r\n", b"CSeq: 2 BYE\r\nContent-Length: x\r\n")
    with pytest.raises(SipFramingError) as info:
        StreamFramer().feed(INVITE + KEEPALIVE_PING + bad)
    assert info.value.messages == [INVITE, KEEPALIVE_PING]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["invite", "options", "nobody", "ping"]), min_size=1, max_size=6),
    st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=40),
)
def test_random_splits_yield_the_same_messages(kinds: list[str], sizes: list[int]) -> None:
    table = {"invite": INVITE, "options": OPTIONS, "nobody": NO_BODY, "ping": KEEPALIVE_PING}
    expected = [table[k] for k in kinds]
    # two pings in a row are unambiguous; a ping directly before a message is fine too
    stream = b"".join(expected)
    chunks: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        size = sizes[i % len(sizes)]
        chunks.append(stream[pos : pos + size])
        pos += size
        i += 1
    framer = StreamFramer()
    assert feed_all(framer, chunks) == expected
    assert framer.buffered == 0


def tcp_streams(path: Path) -> dict[tuple[int, int], list[bytes]]:
    """Payload segments of each TCP direction, in sequence order, retransmissions removed."""
    flows: dict[tuple[bytes, int, bytes, int], list[tuple[int, bytes]]] = {}
    with path.open("rb") as f:
        for _, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            tcp = ip.data
            if isinstance(tcp, dpkt.tcp.TCP) and tcp.data:
                key = (bytes(ip.src), tcp.sport, bytes(ip.dst), tcp.dport)
                flows.setdefault(key, []).append((tcp.seq, bytes(tcp.data)))
    streams: dict[tuple[int, int], list[bytes]] = {}
    for (_, sport, _, dport), segments in flows.items():
        first = segments[0][0]
        ordered = sorted(((seq - first) % 2**32, data) for seq, data in segments)
        expected_offset = 0
        out: list[bytes] = []
        for offset, data in ordered:
            if offset + len(data) <= expected_offset:
                continue  # retransmission
            assert offset <= expected_offset, "capture has a gap"
            out.append(data[expected_offset - offset :])
            expected_offset = offset + len(data)
        streams[(sport, dport)] = out
    return streams


@pytest.mark.skipif(not PCAP.is_file(), reason="siprec-corpus heplify pcap not available")
def test_heplify_fragmented_tcp_capture() -> None:
    streams = tcp_streams(PCAP)
    assert len(streams) == 8
    total = 0
    partial_segments = 0
    for segments in streams.values():
        framer = StreamFramer()
        messages: list[bytes] = []
        for segment in segments:
            framed = framer.feed(segment)
            if not framed:
                partial_segments += 1
            messages.extend(framed)
        assert framer.buffered == 0
        assert b"".join(messages) == b"".join(segments)  # nothing lost, nothing invented
        for data in messages:
            parsed = parse_message(data)  # every framed message is a complete SIP message
            declared = parsed.headers.get("Content-Length")
            assert declared is not None and len(parsed.body) == int(declared)
        total += len(messages)
    assert total == 406
    assert partial_segments > 100  # many messages really are split across segments
