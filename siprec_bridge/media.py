"""asyncio adapters for the media path: RTP sockets and the one ticker for all calls.

Per packet the only work on the event loop is :meth:`rtp.leg.Leg.feed` (header parse and a
jitter-buffer insert). Decoding, alignment and output happen once per tick for all calls.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Sequence

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


class RtcpProtocol(RtpProtocol):
    """Feeds the RTCP port (RTP port + 1, RFC 3550 §11) into the same :class:`Leg`."""

    __slots__ = ()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.leg.feed_rtcp(data, addr, self._clock())


def _bind_udp(host: str, port: int) -> socket.socket | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        sock.bind((host, port))
    except OSError:
        sock.close()
        return None
    sock.setblocking(False)
    return sock


class RtpSocketPool:
    """RTP (and RTCP, port + 1) sockets from the port range: the SRS core's ``PortBinder``.

    - Sockets are bound synchronously when an offer is answered; the datagram endpoints that
      feed a leg are attached afterwards (packets that arrive meanwhile wait in the kernel).
    - ``release`` keeps the sockets open for :attr:`linger` seconds (RTP in flight when the SRC
      hangs up, or queued behind its BYE on another socket, still reaches its leg), then closes
      them; the port returns to the range after :attr:`cooldown` more seconds, so stale
      packets of an old call never reach a new one.
    """

    def __init__(
        self,
        host: str,
        low: int,
        high: int,
        *,
        rtcp: bool = True,
        linger: float = 0.0,
        cooldown: float = 0.0,
        attempts: int = 50,
    ) -> None:
        self.host = host
        self.rtcp = rtcp
        self.linger = linger
        self.cooldown = cooldown
        self._attempts = attempts
        self._allocator = PortAllocator(low, high)
        self._sockets: dict[int, list[socket.socket]] = {}
        self._transports: dict[int, list[asyncio.BaseTransport]] = {}
        self._protocols: dict[int, list[RtpProtocol]] = {}

    @property
    def in_use(self) -> int:
        return len(self._sockets)

    def bind(self, count: int) -> list[int]:
        """Bind ``count`` even RTP ports (RFC 3550 §11); raises :class:`PortsExhausted`."""
        ports: list[int] = []
        try:
            for _ in range(count):
                ports.append(self._bind_one())
        except PortsExhausted:
            self._close(ports)
            raise
        return ports

    def _bind_one(self) -> int:
        for _ in range(self._attempts):
            (port,) = self._allocator.allocate(1)
            rtp = _bind_udp(self.host, port)
            if rtp is None:  # held by another process: skip it
                self._allocator.release([port])
                continue
            socks = [rtp]
            if self.rtcp:
                rtcp = _bind_udp(self.host, port + 1)
                if rtcp is None:
                    log.info("RTCP port %d is busy; %d receives RTP only", port + 1, port)
                else:
                    socks.append(rtcp)
            self._sockets[port] = socks
            return port
        raise PortsExhausted(f"no bindable RTP port after {self._attempts} attempts")

    def release(self, ports: Sequence[int]) -> None:
        ports = list(ports)
        if self.linger > 0 and any(p in self._transports for p in ports):
            asyncio.get_running_loop().call_later(self.linger, self._close, ports)
        else:
            self._close(ports)

    def _close(self, ports: Sequence[int]) -> None:
        for port in ports:
            transports = self._transports.pop(port, [])
            self._protocols.pop(port, None)
            socks = self._sockets.pop(port, [])
            for transport in transports:
                transport.close()  # closes its socket too
            for sock in socks[len(transports) :]:
                sock.close()
        if self.cooldown > 0 and ports:
            asyncio.get_running_loop().call_later(
                self.cooldown, self._allocator.release, list(ports)
            )
        else:
            self._allocator.release(list(ports))

    async def attach(self, port: int, leg: Leg, clock: Clock) -> None:
        """Feed the datagrams of ``port`` (and its RTCP port) into ``leg``; re-point them when
        already attached (a re-offer gave the stream a new :class:`Leg`)."""
        attached = self._protocols.get(port)
        if attached is not None:
            for receiver in attached:
                receiver.leg = leg
            return
        socks = self._sockets.get(port)
        if socks is None:  # released meanwhile
            return
        loop = asyncio.get_running_loop()
        transports: list[asyncio.BaseTransport] = []
        protocols: list[RtpProtocol] = []
        kinds: tuple[type[RtpProtocol], ...] = (RtpProtocol, RtcpProtocol)
        for sock, kind in zip(socks, kinds, strict=False):
            protocol = kind(leg, clock)
            transport, _ = await loop.create_datagram_endpoint(_factory(protocol), sock=sock)
            transports.append(transport)
            protocols.append(protocol)
        if port not in self._sockets:  # released during the awaits
            for opened in transports:
                opened.close()
            return
        self._transports[port] = transports
        self._protocols[port] = protocols


def _factory(protocol: RtpProtocol) -> Callable[[], RtpProtocol]:
    return lambda: protocol


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
