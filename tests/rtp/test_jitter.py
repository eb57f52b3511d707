"""RFC 3550 A.1 sequence extension and the pure jitter buffer."""

from __future__ import annotations

import pytest

from rtp.errors import RtpError
from rtp.jitter import MAX_DROPOUT, JitterBuffer, Put, SequenceTracker


def _drain(buffer: JitterBuffer[str], end: int) -> list[tuple[int, str]]:
    out = []
    while (entry := buffer.pop(end)) is not None:
        out.append((entry[0], entry[2]))
    return out


class TestSequenceTracker:
    def test_wrap(self) -> None:
        tracker = SequenceTracker(65534)
        assert [tracker.extend(s) for s in (65535, 0, 1)] == [65535, 65536, 65537]
        assert tracker.max_extended == 65537 and tracker.lost == 0

    def test_reorder_across_wrap(self) -> None:
        tracker = SequenceTracker(65534)
        assert tracker.extend(0) == 65536  # 65535 still missing
        assert tracker.lost == 1
        assert tracker.extend(65535) == 65535  # late, from before the wrap
        assert tracker.lost == 0

    def test_loss_and_repeat(self) -> None:
        tracker = SequenceTracker(10)
        assert tracker.extend(13) == 13
        assert tracker.lost == 2
        assert tracker.extend(13) == 13  # repeat of the newest: not counted as received
        assert tracker.lost == 2

    def test_large_jump_needs_two_sequential_packets(self) -> None:
        tracker = SequenceTracker(100)
        jump = 100 + MAX_DROPOUT + 5
        assert tracker.extend(jump) is None
        restarted = tracker.extend(jump + 1)
        assert restarted is not None and restarted > 100 + 65536
        assert tracker.extend(jump + 2) == restarted + 1
        assert tracker.lost == 0

    def test_stray_packet_is_dropped(self) -> None:
        tracker = SequenceTracker(100)
        assert tracker.extend(40000) is None
        assert tracker.extend(101) == 101
        assert tracker.lost == 0

    def test_restart_keeps_loss_and_stays_unique(self) -> None:
        tracker = SequenceTracker(1)
        tracker.extend(5)  # 3 lost
        base = tracker.restart(50000)
        assert base > 5 and tracker.lost == 3
        assert tracker.extend(50002) == base + 2
        assert tracker.lost == 4


class TestJitterBuffer:
    def test_releases_in_timestamp_order_per_window(self) -> None:
        buffer: JitterBuffer[str] = JitterBuffer(10)
        for seq, ts in ((2, 160), (1, 0), (4, 480), (3, 320)):
            assert buffer.put(seq, ts, f"p{seq}") is Put.ACCEPTED
        assert _drain(buffer, 160) == [(0, "p1")]
        assert buffer.playout_timestamp == 160
        assert _drain(buffer, 480) == [(160, "p2"), (320, "p3")]
        assert len(buffer) == 1

    def test_duplicates_buffered_and_released(self) -> None:
        buffer: JitterBuffer[str] = JitterBuffer(10)
        buffer.put(1, 0, "a")
        assert buffer.put(1, 0, "a") is Put.DUPLICATE
        _drain(buffer, 160)
        assert buffer.put(1, 0, "a") is Put.DUPLICATE  # remembered after release
        assert buffer.duplicates == 2 and buffer.late == 0

    def test_late(self) -> None:
        buffer: JitterBuffer[str] = JitterBuffer(10)
        _drain(buffer, 320)
        assert buffer.put(1, 160, "x") is Put.LATE
        assert buffer.put(2, 320, "y") is Put.ACCEPTED
        assert buffer.late == 1

    def test_overflow_drops_oldest(self) -> None:
        buffer: JitterBuffer[str] = JitterBuffer(2)
        buffer.put(1, 0, "a")
        buffer.put(2, 160, "b")
        assert buffer.put(3, 320, "c") is Put.OVERFLOW
        assert buffer.overflow == 1
        assert _drain(buffer, 1000) == [(160, "b"), (320, "c")]
        assert buffer.put(1, 1000, "a") is Put.DUPLICATE  # the dropped one is remembered

    def test_shift_moves_packets_and_drops_what_becomes_late(self) -> None:
        buffer: JitterBuffer[str] = JitterBuffer(10)
        _drain(buffer, 160)
        buffer.put(1, 200, "a")
        buffer.put(2, 360, "b")
        buffer.shift(-100)
        assert _drain(buffer, 320) == [(260, "b")]
        assert buffer.late == 1

    def test_history_is_bounded(self) -> None:
        buffer: JitterBuffer[str] = JitterBuffer(4, history=2)
        for seq in range(1, 4):
            buffer.put(seq, seq * 160, "x")
        _drain(buffer, 1000)
        assert buffer.put(1, 2000, "again") is Put.ACCEPTED  # forgotten
        assert buffer.put(3, 2000, "again") is Put.DUPLICATE

    def test_bad_arguments(self) -> None:
        with pytest.raises(RtpError):
            JitterBuffer(0)
