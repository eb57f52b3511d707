"""RTP port bookkeeping for the media sockets of recording sessions.

RFC 3550 §11: RTP uses an even port and RTCP the next (odd) one, so every allocated port is even
and its pair ``port + 1`` is inside the range and reserved with it. Free ports are handed out
round-robin: a released port goes to the back of the queue, so a late packet of an ended call
does not land on the next call. Pure bookkeeping: the caller binds the sockets (and, if a bind
fails, allocates again and releases the port it could not use later or never).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from .errors import PortsExhausted, RtpError

__all__ = ["PortAllocator", "PortsExhausted"]


class PortAllocator:
    """Even RTP ports in ``[low, high]`` whose odd neighbour (RTCP) is also in the range."""

    __slots__ = ("_free", "_in_use")

    def __init__(self, low: int, high: int) -> None:
        """Raises :class:`RtpError` unless ``1 <= low <= high <= 65535`` with at least one pair."""
        if not 1 <= low <= high <= 65535:
            raise RtpError(f"bad port range {low}-{high}")
        first = low + (low & 1)
        self._free: deque[int] = deque(range(first, high, 2))
        if not self._free:
            raise RtpError(f"port range {low}-{high} holds no even/odd pair")
        self._in_use: set[int] = set()

    @property
    def available(self) -> int:
        """Number of free RTP ports (pairs)."""
        return len(self._free)

    @property
    def in_use(self) -> frozenset[int]:
        """The RTP ports currently allocated."""
        return frozenset(self._in_use)

    def allocate(self, count: int = 1) -> list[int]:
        """Take ``count`` free even ports, oldest-released first.

        Raises :class:`PortsExhausted` (and takes none) when fewer than ``count`` are free.
        """
        if count < 1:
            raise RtpError(f"count must be positive, not {count}")
        if count > len(self._free):
            raise PortsExhausted(f"{count} RTP ports requested, {len(self._free)} free")
        ports = [self._free.popleft() for _ in range(count)]
        self._in_use.update(ports)
        return ports

    def release(self, ports: Iterable[int]) -> None:
        """Return ports to the back of the free queue; ports not allocated are ignored."""
        for port in ports:
            if port in self._in_use:
                self._in_use.remove(port)
                self._free.append(port)
