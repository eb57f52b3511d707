"""Thin asyncio adapter around :class:`~siprec_bridge.sip.ua.UserAgent` (UDP, TCP, TLS).

:class:`SipServer` binds UDP and TCP on the same port (RFC 3261 §18: a UAS listens on both)
and, with :meth:`SipServer.start_tls`, a TLS listener on its own port (RFC 3261 §26.3.1,
TLS 1.2 or later as RFC 8446/7525 advise; optional client certificates for mutual TLS).  It
feeds every datagram / framed stream message to ``UserAgent.receive``, calls the
application's ``on_events`` synchronously after each input, then sends what the user agent
queued and re-arms a single ``loop.call_at`` for ``UserAgent.next_timer()``.  Responses to
stream requests go back on the connection they came from (§18.2.2), for TLS too (source
transport ``"tls"``).  No uvloop specifics: only the public ``asyncio`` transport API is used.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Literal, cast

from .errors import SipFramingError
from .events import Event
from .message import KEEPALIVE_PING, KEEPALIVE_PONG, StreamFramer
from .transaction import Outgoing, Source, TransportName
from .ua import UserAgent

log = logging.getLogger(__name__)

_BIND_ATTEMPTS = 20


def _first_line(data: bytes) -> str:
    return data.split(b"\n", 1)[0].rstrip(b"\r")[:120].decode("utf-8", "replace")


#: SO_RCVBUF for the SIP UDP socket (the kernel caps it at net.core.rmem_max).
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024

#: Seconds a TLS client has to complete the handshake before the connection is dropped.
TLS_HANDSHAKE_TIMEOUT = 10.0

TlsVersion = Literal["1.2", "1.3"]
_TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


def server_tls_context(
    cert: Path | str,
    key: Path | str,
    *,
    client_ca: Path | str | None = None,
    require_client_cert: bool = True,
    min_version: TlsVersion = "1.2",
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """An ``SSLContext`` for the SIP TLS listener (RFC 3261 §26.3.1, RFC 5630 §3.1.3).

    ``cert`` is the PEM certificate chain (leaf first), ``key`` its private key.  With
    ``client_ca`` (PEM bundle) client certificates are verified against it: required
    (mutual TLS) when ``require_client_cert``, else verified only when presented.  TLS 1.2
    is the floor (RFC 8996 deprecates 1.0/1.1); ``ciphers`` is an OpenSSL cipher list for
    TLS 1.2.  Raises ``OSError`` for unreadable files and ``ssl.SSLError`` for a bad
    certificate, key or cipher list.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = _TLS_VERSIONS[min_version]
    context.load_cert_chain(str(cert), str(key))
    if ciphers:
        context.set_ciphers(ciphers)
    if client_ca is not None:
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: SipServer) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        host, port = str(addr[0]), int(addr[1])
        self._server._deliver(data, Source("udp", (host, port)))
        self._server._process()

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class _StreamProtocol(asyncio.Protocol):
    """One TCP or TLS connection (for TLS, ``connection_made`` follows the handshake)."""

    def __init__(self, server: SipServer, transport_name: TransportName) -> None:
        self._server = server
        self._name: TransportName = transport_name
        self._framer = StreamFramer(server.ua.max_message_size)
        self._transport: asyncio.Transport | None = None
        self._source: Source | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: never assert the type.
        transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        conn_id = self._server._register(transport)
        self._transport = transport
        self._source = Source(self._name, (str(peer[0]), int(peer[1])), conn_id)
        if self._name == "tls" and log.isEnabledFor(logging.DEBUG):
            subject = (transport.get_extra_info("peercert") or {}).get("subject")
            cipher = transport.get_extra_info("cipher")
            log.debug(
                "+ tls %s:%d conn %d %s client %s",
                *self._source.addr,
                conn_id,
                cipher[0] if cipher else "?",
                subject or "without certificate",
            )
        else:
            log.debug("+ %s %s:%d conn %d", self._name, peer[0], peer[1], conn_id)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None and self._source is not None
        try:
            messages = self._framer.feed(data)
        except SipFramingError as exc:
            log.info("%s %s:%d framing error, closing: %s", self._name, *self._source.addr, exc)
            self._handle(exc.messages)
            self._transport.close()
        else:
            self._handle(messages)
        self._server._process()

    def _handle(self, messages: list[bytes]) -> None:
        assert self._transport is not None and self._source is not None
        for message in messages:
            if message == KEEPALIVE_PING:
                self._transport.write(KEEPALIVE_PONG)  # RFC 5626 §3.5.1
            else:
                self._server._deliver(message, self._source)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._source is not None and self._source.conn_id is not None:
            self._server._unregister(self._source.conn_id)
            log.debug("- %s %s:%d conn %d", self._name, *self._source.addr, self._source.conn_id)


class SipServer:
    """Runs a :class:`UserAgent` on real sockets.

    ``on_events(events)`` is called synchronously after every input that produced events;
    it may call ``ua.respond`` / ``ua.send_bye`` (output is sent when it returns).  When the
    application calls the user agent at any other time it must call :meth:`flush`.
    ``clock`` is the time source passed to the user agent (default ``loop.time``).
    """

    def __init__(
        self,
        ua: UserAgent,
        on_events: Callable[[list[Event]], None],
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.ua = ua
        self._on_events = on_events
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tls: asyncio.Server | None = None
        self._conns: dict[int, asyncio.Transport] = {}
        self._conn_ids = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.port = 0
        self.tls_port = 0

    def now(self) -> float:
        """The current time on the clock given to the user agent."""
        if self._clock is not None:
            return self._clock()
        assert self._loop is not None, "SipServer not started"
        return self._loop.time()

    async def start(self, host: str, port: int, *, udp: bool = True, tcp: bool = True) -> None:
        """Bind UDP and/or TCP on ``host:port``; port 0 picks one port shared by both."""
        if not (udp or tcp):
            raise ValueError("enable at least one of udp and tcp")
        loop = asyncio.get_running_loop()
        self._loop = loop
        for attempt in range(_BIND_ATTEMPTS):
            bound = port
            if udp:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), local_addr=(host, port)
                )
                self._udp = transport
                sock = transport.get_extra_info("socket")
                if sock is not None:  # bursts of ~3 KB SIPREC INVITEs overflow the default
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
                bound = int(transport.get_extra_info("sockname")[1])
            if not tcp:
                break
            try:
                self._tcp = await loop.create_server(
                    lambda: _StreamProtocol(self, "tcp"), host, bound
                )
            except OSError as exc:
                retry = udp and port == 0 and exc.errno == errno.EADDRINUSE
                if self._udp is not None:
                    self._udp.close()
                    self._udp = None
                if retry and attempt + 1 < _BIND_ATTEMPTS:
                    continue
                raise
            bound = int(self._tcp.sockets[0].getsockname()[1])
            break
        self.port = bound
        log.info("SIP listening on %s:%d (udp=%s tcp=%s)", host, bound, udp, tcp)

    async def start_tls(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext,
        *,
        handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT,
    ) -> None:
        """Listen for SIP over TLS on ``host:port`` (0: ephemeral) with ``context``
        (see :func:`server_tls_context`).  Sets :attr:`tls_port` and the user agent's
        ``local_tls_port`` (Contact/Via of TLS dialogs).  May be called before or after
        :meth:`start`.  A failed handshake closes the connection without reaching the UA
        (asyncio and uvloop report it only in debug mode).
        """
        if context.minimum_version < ssl.TLSVersion.TLSv1_2:
            raise ValueError("SIP over TLS needs TLS 1.2 or later")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._tls = await loop.create_server(
            lambda: _StreamProtocol(self, "tls"),
            host,
            port,
            ssl=context,
            ssl_handshake_timeout=handshake_timeout,
        )
        self.tls_port = int(self._tls.sockets[0].getsockname()[1])
        self.ua.local_tls_port = self.tls_port
        mutual = context.verify_mode == ssl.CERT_REQUIRED
        log.info(
            "SIP over TLS listening on %s:%d (client certificates %s)",
            host,
            self.tls_port,
            "required" if mutual else "not required",
        )

    async def close(self) -> None:
        """Stop timers, close every connection and every listener."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for transport in list(self._conns.values()):
            transport.close()
        self._conns.clear()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        for server in (self._tcp, self._tls):
            if server is not None:
                server.close()
                await server.wait_closed()
        self._tcp = self._tls = None

    def flush(self) -> None:
        """Send what the user agent queued and re-arm the timer."""
        for out in self.ua.data_to_send():
            self._send(out)
        self._arm_timer()

    # -- internals used by the protocols

    def _register(self, transport: asyncio.Transport) -> int:
        conn_id = next(self._conn_ids)
        self._conns[conn_id] = transport
        return conn_id

    def _unregister(self, conn_id: int) -> None:
        self._conns.pop(conn_id, None)

    def _deliver(self, data: bytes, source: Source) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("< %s %s:%d %s", source.transport, *source.addr, _first_line(data))
        try:
            self.ua.receive(data, source, self.now())
        except Exception:  # a bug must not take the listener down with it
            log.exception("user agent failed on a message from %s:%d", *source.addr)

    def _process(self) -> None:
        events = self.ua.events()
        if events:
            try:
                self._on_events(events)
            except Exception:
                log.exception("on_events callback failed")
        self.flush()

    def _send(self, out: Outgoing) -> None:
        dest = out.dest
        if log.isEnabledFor(logging.DEBUG):
            log.debug("> %s %s:%d %s", dest.transport, *dest.addr, _first_line(out.data))
        if dest.transport == "udp":
            if self._udp is None:
                log.warning("no UDP socket to send to %s:%d", *dest.addr)
                return
            self._udp.sendto(out.data, dest.addr)
            return
        transport = self._conns.get(dest.conn_id) if dest.conn_id is not None else None
        if transport is None or transport.is_closing():
            log.info("connection %s to %s:%d is gone, message dropped", dest.conn_id, *dest.addr)
            return
        transport.write(out.data)

    def _arm_timer(self) -> None:
        deadline = self.ua.next_timer()
        if deadline == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is None or self._loop is None:
            return
        delay = max(0.0, deadline - self.now())
        self._timer = self._loop.call_at(self._loop.time() + delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.ua.handle_timer(self.now())
        self._process()
