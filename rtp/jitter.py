"""Receive-side reordering: extended sequence numbers (RFC 3550 A.1) and a jitter buffer.

:class:`SequenceTracker` extends 16-bit sequence numbers across wraps and source restarts and
counts what RFC 3550 A.3 needs for the cumulative number of packets lost.

:class:`JitterBuffer` is a pure data structure: packets go in keyed by extended sequence number
with an extended timestamp (any monotonic integer time base chosen by the caller, e.g. RTP
timestamp units since the start of the call), and come out in timestamp order, one window at a
time, via :meth:`JitterBuffer.pop`. It drops and counts duplicates, late packets (timestamp before
the playout point, i.e. the end of the last released window) and, when full, the oldest packet.
It knows nothing about clocks, codecs or timestamp jumps: :class:`rtp.leg.Leg` handles those.
"""

from __future__ import annotations

import heapq
from collections import deque
from enum import IntEnum
from typing import Final, Generic, TypeVar

from .errors import RtpError

__all__ = ["MAX_DROPOUT", "MAX_MISORDER", "JitterBuffer", "Put", "SequenceTracker"]

MAX_DROPOUT: Final = 3000
"""RFC 3550 A.1: a forward jump below this is loss, not a restart."""
MAX_MISORDER: Final = 100
"""RFC 3550 A.1: a backward jump below this is reordering, not a restart."""
_SEQ_MOD: Final = 1 << 16

T = TypeVar("T")


class SequenceTracker:
    """RFC 3550 Appendix A.1 sequence number validation, without the probation period.

    :meth:`extend` maps each 16-bit sequence number to an extended one (a Python int that grows
    past 65535 on wrap). Extended numbers stay unique across :meth:`restart` (a new SSRC, or a
    large jump confirmed by two sequential packets): a restart moves them at least 2^16 above the
    highest one issued so far.
    """

    __slots__ = ("_bad_seq", "_base", "_cycles", "_lost_before", "_max_seq", "_received")

    def __init__(self, sequence: int) -> None:
        self._cycles = 0
        self._lost_before = 0
        self._max_seq = sequence
        self._base = sequence
        self._received = 1
        self._bad_seq: int | None = None

    def restart(self, sequence: int) -> int:
        """Start a new run at ``sequence`` (keeps the loss count); return its extended number."""
        self._lost_before = self.lost
        self._cycles += 2 * _SEQ_MOD
        self._max_seq = sequence
        self._base = self._cycles + sequence
        self._received = 1
        self._bad_seq = None
        return self._base

    def extend(self, sequence: int) -> int | None:
        """Return the extended sequence number, or ``None`` for a packet to discard.

        ``None`` means a jump of more than :data:`MAX_DROPOUT` forward or :data:`MAX_MISORDER`
        backward; if the next packet continues from it the tracker restarts there (A.1).
        A repeat of the highest sequence number is returned but not counted as received.
        """
        max_seq = self._max_seq
        udelta = (sequence - max_seq) & 0xFFFF
        if udelta == 0:
            return self._cycles + sequence
        if udelta < MAX_DROPOUT:
            if sequence < max_seq:
                self._cycles += _SEQ_MOD
            self._max_seq = sequence
            self._received += 1
            return self._cycles + sequence
        if udelta <= _SEQ_MOD - MAX_MISORDER:
            if sequence == self._bad_seq:
                return self.restart(sequence)
            self._bad_seq = (sequence + 1) & 0xFFFF
            return None
        self._received += 1
        if sequence > max_seq:  # sent before the last wrap
            return self._cycles - _SEQ_MOD + sequence
        return self._cycles + sequence

    @property
    def max_extended(self) -> int:
        """Highest extended sequence number seen."""
        return self._cycles + self._max_seq

    @property
    def lost(self) -> int:
        """Cumulative packets lost (RFC 3550 A.3: expected - received), never negative."""
        expected = self._cycles + self._max_seq - self._base + 1
        return self._lost_before + max(0, expected - self._received)


class Put(IntEnum):
    """Outcome of :meth:`JitterBuffer.put`."""

    ACCEPTED = 0
    DUPLICATE = 1
    """Same extended sequence number as a buffered or recently released packet: dropped."""
    LATE = 2
    """Timestamp before the playout point: dropped."""
    OVERFLOW = 3
    """Accepted, but the buffer was full and its oldest packet was dropped."""


class JitterBuffer(Generic[T]):
    """Packets ordered by timestamp; released one window at a time.

    Calling protocol: :meth:`put` on arrival; per output window ``[.., end)`` call
    :meth:`pop` with that ``end`` until it returns ``None`` (which moves the playout point to
    ``end``). Windows must not go backwards.
    """

    __slots__ = (
        "_buffered",
        "_heap",
        "_playout",
        "_recent",
        "_recent_set",
        "duplicates",
        "late",
        "max_packets",
        "overflow",
    )

    def __init__(self, max_packets: int, *, history: int = 512) -> None:
        """``max_packets``: capacity; ``history``: how many released sequence numbers are
        remembered to recognise duplicates that arrive after their original was played."""
        if max_packets < 1 or history < 1:
            raise RtpError("max_packets and history must be positive")
        self.max_packets = max_packets
        self._heap: list[tuple[int, int, T]] = []
        self._buffered: set[int] = set()
        self._recent: deque[int] = deque(maxlen=history)
        self._recent_set: set[int] = set()
        self._playout: int | None = None
        self.duplicates = 0
        self.late = 0
        self.overflow = 0

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def playout_timestamp(self) -> int | None:
        """End of the last released window (``None`` before the first): earlier is late."""
        return self._playout

    def put(self, sequence: int, timestamp: int, item: T) -> Put:
        """Store ``item`` under extended ``sequence`` at extended ``timestamp``."""
        if sequence in self._buffered or sequence in self._recent_set:
            self.duplicates += 1
            return Put.DUPLICATE
        if self._playout is not None and timestamp < self._playout:
            self.late += 1
            self._remember(sequence)
            return Put.LATE
        heapq.heappush(self._heap, (timestamp, sequence, item))
        self._buffered.add(sequence)
        if len(self._heap) <= self.max_packets:
            return Put.ACCEPTED
        _, oldest, _ = heapq.heappop(self._heap)
        self._buffered.discard(oldest)
        self._remember(oldest)
        self.overflow += 1
        return Put.OVERFLOW

    def pop(self, end: int) -> tuple[int, int, T] | None:
        """Release the next packet with timestamp < ``end`` as ``(timestamp, sequence, item)``.

        Packets whose timestamp fell before the playout point (after :meth:`shift`) are
        dropped and counted as late. Returns ``None`` when the window is exhausted and then sets
        the playout point to ``end``.
        """
        heap = self._heap
        playout = self._playout
        while heap and heap[0][0] < end:
            entry = heapq.heappop(heap)
            self._buffered.discard(entry[1])
            self._remember(entry[1])
            if playout is not None and entry[0] < playout:
                self.late += 1
                continue
            return entry
        if playout is None or end > playout:
            self._playout = end
        return None

    def shift(self, delta: int) -> None:
        """Add ``delta`` to the timestamp of every buffered packet (a time base correction).

        Packets moved before the playout point are dropped as late by :meth:`pop`.
        """
        # A uniform shift keeps the heap invariant.
        self._heap = [(ts + delta, seq, item) for ts, seq, item in self._heap]

    def _remember(self, sequence: int) -> None:
        recent = self._recent
        if len(recent) == recent.maxlen:
            self._recent_set.discard(recent[0])
        recent.append(sequence)
        self._recent_set.add(sequence)
