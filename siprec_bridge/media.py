"""asyncio adapters for the media path: RTP sockets and the one ticker for all calls.

Per packet the only work on the event loop is :meth:`rtp.leg.Leg.feed` (header parse and a
jitter-buffer insert). Decoding, alignment and output happen once per tick for all calls.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable

from rtp.leg import Leg
from rtp.ports import PortAllocator, PortsExhausted

from .call import RecordingCall

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class RtpProtocol(asyncio.DatagramProtocol):
    """Feeds every datagram of one RTP port into its :class:`Leg` (RFC 3550 §11: even port)."""

    __slots__ = ("_clock", "leg", "transport")

    def __init__(self, leg: Leg, clock: Clock) -> None:
        self.leg = leg  # re-pointed when a re-offer changes the stream's codec
        self._clock = clock
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.leg.feed(data, addr, self._clock())

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable etc.
        log.debug("rtp socket error: %s", exc)


def open_rtp_sockets(
    allocator: PortAllocator, host: str, count: int, *, attempts: int = 50
) -> list[socket.socket]:
    """Bind ``count`` UDP sockets on even ports from ``allocator``.

    A port that some other process holds is skipped (and released back to the allocator).
    Raises :class:`PortsExhausted` when no port can be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            for _attempt in range(attempts):
                (port,) = allocator.allocate(1)
                sock = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
                    sock.bind((host, port))
                except OSError:
                    sock.close()
                    allocator.release([port])
                    continue
                sock.setblocking(False)
                socks.append(sock)
                break
            else:
                raise PortsExhausted(f"no bindable RTP port after {attempts} attempts")
    except BaseException:
        release_sockets(allocator, socks)
        raise
    return socks


def release_sockets(allocator: PortAllocator, socks: Iterable[socket.socket]) -> None:
    for sock in socks:
        port = sock.getsockname()[1]
        sock.close()
        allocator.release([port])


class MediaTicker:
    """One periodic callback driving every call's output (no task per call or per packet).

    The tick grid is absolute (``start + n·period``) so a late tick does not shift later ones;
    each call emits every frame that is due, so a late tick catches up in one batch.
    """

    def __init__(self, period: float, clock: Clock) -> None:
        self.period = period
        self._clock = clock
        self._calls: dict[str, RecordingCall] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._next = 0.0
        self.ticks = 0
        self.late_ticks = 0

    def add(self, call: RecordingCall) -> None:
        self._calls[call.session_id] = call

    def remove(self, call: RecordingCall) -> None:
        self._calls.pop(call.session_id, None)

    @property
    def active(self) -> int:
        return len(self._calls)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._next = self._clock() + self.period
        self._handle = loop.call_at(self._next, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        now = self._clock()
        self.ticks += 1
        for call in list(self._calls.values()):
            try:
                call.tick(now)
            except Exception:  # one broken call must never stop the others
                log.exception("call %s: tick failed; ending it", call.session_id)
                self._calls.pop(call.session_id, None)
        self._next += self.period
        if self._next < now:  # we fell behind by more than a period: skip, don't spin
            self.late_ticks += 1
            self._next = now + self.period
        self._handle = asyncio.get_running_loop().call_at(self._next, self._tick)
