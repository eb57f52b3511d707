"""RFC 4733 telephone events (DTMF digits) received over RTP.

:func:`parse_event` reads the 4-octet payload of RFC 4733 §2.3; :class:`DtmfDetector` turns the
packets of one stream into one :class:`DtmfEvent` per key press:

* an event is identified by its RTP timestamp (the onset, RFC 4733 §2.5.1.1);
* it is emitted when its first end packet (``E`` bit, §2.5.1.4) arrives; the retransmitted end
  packets (sent three times, with the same sequence number by some senders) are ignored;
* when every end packet of an event was lost, the event is emitted with its last known duration
  as soon as a packet of a new event (another timestamp) arrives, or by :meth:`DtmfDetector.flush`;
* events 0-15 are the digits ``0-9 * # A-D``, 16 is hook flash (reported as :data:`FLASH`); other
  events (tones, RFC 4734) are ignored.

Long events split into segments (§2.5.1.3, longer than 8 s at 8 kHz) are reported once per
segment.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, NamedTuple

from .errors import RtpError

__all__ = ["DIGITS", "FLASH", "DtmfDetector", "DtmfEvent", "TelephoneEvent", "parse_event"]

FLASH: Final = "flash"
"""Name reported for event 16 (hook flash)."""
DIGITS: Final[tuple[str, ...]] = (*"0123456789*#ABCD", FLASH)
"""Event code → name, RFC 4733 §3.2 Table 3 (codes 0-16)."""

_EVENT: Final = struct.Struct("!BBH")
_NO_EVENTS: Final[tuple[DtmfEvent, ...]] = ()


class TelephoneEvent(NamedTuple):
    """One RFC 4733 §2.3 event payload."""

    event: int
    end: bool
    volume: int
    """Power level in -dBm0 (0-63)."""
    duration: int
    """Duration so far, in RTP timestamp units."""


def parse_event(payload: bytes) -> TelephoneEvent:
    """Parse the first event of a telephone-event payload (RFC 4733 §2.3).

    Raises :class:`RtpError` when the payload is shorter than 4 octets.
    """
    if len(payload) < _EVENT.size:
        raise RtpError(f"telephone-event payload too short: {len(payload)} octets")
    event, flags, duration = _EVENT.unpack_from(payload)
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """A key press: ``digit`` is one of :data:`DIGITS`."""

    digit: str
    duration_ms: int
    timestamp: int
    """RTP timestamp of the event onset."""


class DtmfDetector:
    """Per-stream RFC 4733 event state (see the module docstring for the rules).

    Feed it the telephone-event packets of one stream with :meth:`feed`; it returns the events
    that completed. Sans-I/O and clock-free.
    """

    __slots__ = ("_clock_rate", "_duration", "_ended", "_event", "_previous", "_timestamp")

    def __init__(self, clock_rate: int = 8000) -> None:
        self._clock_rate = clock_rate
        self._timestamp: int | None = None
        self._previous: int | None = None
        self._event = 0
        self._duration = 0
        self._ended = False

    def feed(self, timestamp: int, payload: bytes) -> tuple[DtmfEvent, ...]:
        """Process one packet (its RTP timestamp and payload); return the events it completes.

        Raises :class:`RtpError` for a payload shorter than 4 octets (the state is unchanged).
        """
        parsed = parse_event(payload)
        if parsed.event >= len(DIGITS):
            return _NO_EVENTS
        if timestamp == self._timestamp:
            if self._ended:
                return _NO_EVENTS
            self._duration = max(self._duration, parsed.duration)
            if parsed.end:
                self._ended = True
                return (self._current(),)
            return _NO_EVENTS
        if timestamp == self._previous:
            return _NO_EVENTS
        unfinished = self.flush()
        self._previous = self._timestamp
        self._timestamp = timestamp
        self._event = parsed.event
        self._duration = parsed.duration
        self._ended = parsed.end
        if unfinished is None:
            return (self._current(),) if parsed.end else _NO_EVENTS
        return (unfinished, self._current()) if parsed.end else (unfinished,)

    def flush(self) -> DtmfEvent | None:
        """Return the event in progress whose end packet was not seen (once), else ``None``."""
        if self._timestamp is None or self._ended:
            return None
        self._ended = True
        return self._current()

    def _current(self) -> DtmfEvent:
        assert self._timestamp is not None
        return DtmfEvent(
            DIGITS[self._event], self._duration * 1000 // self._clock_rate, self._timestamp
        )
