"""RFC 4733 telephone events: payload parsing, the per-stream detector, real captures."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from rtp.dtmf import DIGITS, FLASH, DtmfDetector, DtmfEvent, TelephoneEvent, parse_event
from rtp.errors import RtpError
from rtp.leg import Leg, Timeline
from rtp.packet import parse_header

UdpPacket = tuple[float, tuple[str, int], bytes]

SIPP_FILES = [(str(d), str(d)) for d in range(10)] + [("star", "*"), ("pound", "#")]


def _payload(event: int, duration: int, *, end: bool = False, volume: int = 10) -> bytes:
    return struct.pack("!BBH", event, (0x80 if end else 0) | volume, duration)


def test_parse_event() -> None:
    assert parse_event(bytes.fromhex("0b8a08c0")) == TelephoneEvent(11, True, 10, 2240)
    assert parse_event(bytes.fromhex("010a0140ffff")) == TelephoneEvent(1, False, 10, 320)
    with pytest.raises(RtpError):
        parse_event(b"\x01\x0a\x01")


def test_digit_table() -> None:
    assert DIGITS[:12] == tuple("0123456789*#") and DIGITS[12:16] == tuple("ABCD")
    assert DIGITS[16] == FLASH


def test_end_packets_are_reported_once() -> None:
    detector = DtmfDetector()
    assert detector.feed(1000, _payload(5, 160)) == ()
    assert detector.feed(1000, _payload(5, 320)) == ()
    event = DtmfEvent("5", 60, 1000)
    assert detector.feed(1000, _payload(5, 480, end=True)) == (event,)
    assert detector.feed(1000, _payload(5, 480, end=True)) == ()
    assert detector.feed(1000, _payload(5, 480, end=True)) == ()
    assert detector.flush() is None


def test_event_with_lost_end_is_reported_when_the_next_starts() -> None:
    detector = DtmfDetector()
    detector.feed(1000, _payload(1, 160))
    detector.feed(1000, _payload(1, 640))
    assert detector.feed(9000, _payload(2, 160)) == (DtmfEvent("1", 80, 1000),)
    # A straggler of the previous event does not restart it.
    assert detector.feed(1000, _payload(1, 800, end=True)) == ()
    assert detector.feed(9000, _payload(2, 400, end=True)) == (DtmfEvent("2", 50, 9000),)


def test_event_seen_only_by_its_end_packet() -> None:
    detector = DtmfDetector()
    detector.feed(1000, _payload(3, 160))
    assert detector.feed(5000, _payload(16, 800, end=True)) == (
        DtmfEvent("3", 20, 1000),
        DtmfEvent(FLASH, 100, 5000),
    )


def test_flush_reports_an_unfinished_event_once() -> None:
    detector = DtmfDetector(clock_rate=16000)
    detector.feed(7, _payload(12, 1600))
    assert detector.flush() == DtmfEvent("A", 100, 7)
    assert detector.flush() is None
    assert detector.feed(7, _payload(12, 1760, end=True)) == ()


def test_non_digit_events_are_ignored() -> None:
    detector = DtmfDetector()
    assert detector.feed(1000, _payload(70, 160, end=True)) == ()  # RFC 4734 tone
    assert detector.flush() is None


@pytest.mark.parametrize(("name", "digit"), SIPP_FILES)
def test_sipp_captures(read_udp: Callable[[str], list[UdpPacket]], name: str, digit: str) -> None:
    """sipp dtmf_2833_*.pcap: 8 packets + the end packet 3x with the same sequence number."""
    packets = read_udp(f"pcap/sipp/dtmf_2833_{name}.pcap")
    detector = DtmfDetector()
    events: list[DtmfEvent] = []
    for _, _, data in packets:
        header = parse_header(data)
        events.extend(detector.feed(header.timestamp, data[header.payload_offset :]))
    assert [(e.digit, e.duration_ms) for e in events] == [(digit, 280)]
    # Through a Leg: reported once, at the frame of its onset (the first packet, frame 0).
    timeline = Timeline()
    leg = Leg(timeline, payload_types={0: "PCMU"}, out_rate=8000, dtmf_payload_type=101)
    for ts, addr, data in packets:
        leg.feed(data, addr, ts)
    assert [(index, e.digit) for index, e in leg.pop_dtmf()] == [(0, digit)]
    assert leg.stats.dtmf_events == 1 and leg.pop_dtmf() == []


def test_miarec_capture_with_audio(read_udp: Callable[[str], list[UdpPacket]]) -> None:
    """Audio and events on one SSRC; end packets repeated with new sequence numbers."""
    packets = read_udp("pcap/miarec/09a_2833_dtmf.pcap")
    timeline = Timeline()
    leg = Leg(timeline, payload_types={0: "PCMU"}, out_rate=8000, dtmf_payload_type=101)
    index = 0
    found: list[tuple[int, DtmfEvent]] = []
    for ts, addr, data in packets:
        while (due := leg.frame_due(index)) is not None and due <= ts:
            leg.read_frame(index)
            index += 1
        leg.feed(data, addr, ts)
        found.extend(leg.pop_dtmf())
    assert "".join(e.digit for _, e in found) == "123456789**0#"
    assert all(90 <= e.duration_ms <= 130 for _, e in found)
    first_ts = parse_header(packets[0][2]).timestamp
    for frame, event in found:
        # Onset in call time follows RTP time: (event ts - first ts) ticks after the start.
        assert frame == (event.timestamp - first_ts) // 160
    stats = leg.stats
    assert stats.lost == 0 and stats.bad == 0 and stats.dtmf_events == 13
