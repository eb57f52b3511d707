"""A raw WebSocket consumer for end-to-end tests: keeps every message of every connection.

Unlike the demo consumer (``siprec_bridge.consumer``, native protocol only) it understands no
protocol: each connection is recorded as its request path, handshake headers, messages in
arrival order (``str`` for text frames, ``bytes`` for binary frames) and the close code, so a
test can decode any dialect itself. ``respond`` lets a test play the consumer's side of a
dialect (Twilio ``mark``, RCMS ``session.ping``): it is called for every message and may send
on the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

Message = str | bytes


@dataclass
class RecordedConnection:
    """One connection as the consumer saw it."""

    path: str
    headers: dict[str, str]
    """The opening handshake's request headers (names as sent)."""
    ws: ServerConnection
    messages: list[Message] = field(default_factory=list)
    close_code: int | None = None
    """Close code received from the bridge (1006: the connection ended without a close)."""
    sent: list[tuple[int, Message]] = field(default_factory=list)
    """What :meth:`send` sent, each with the number of messages received before it."""

    async def send(self, message: Message) -> None:
        self.sent.append((len(self.messages), message))
        await self.ws.send(message)


Responder = Callable[[RecordedConnection, Message], Awaitable[None]]


class RecordingServer:
    """``await start()`` → port; connections in :attr:`connections` (in order of arrival)."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, respond: Responder | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.connections: list[RecordedConnection] = []
        self._respond = respond
        self._server: Server | None = None
        self._changed = asyncio.Event()

    def url(self, path: str = "/") -> str:
        """The URL of ``path`` on this server (after :meth:`start`: the port is known then)."""
        if self._server is None:
            raise RuntimeError("start() the server before asking for its URL")
        return f"ws://{self.host}:{self.port}{path}"

    async def start(self) -> int:
        self._server = await serve(
            self._handle, self.host, self.port, max_size=None, compression=None
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def on(self, path: str) -> list[RecordedConnection]:
        """The connections made to ``path`` (query string included, if any)."""
        return [c for c in self.connections if c.path == path]

    async def wait_closed(self, count: int, *, timeout: float) -> list[RecordedConnection]:
        """Wait until at least ``count`` connections have ended; ``TimeoutError`` if not."""
        async with asyncio.timeout(timeout):
            while sum(c.close_code is not None for c in self.connections) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.connections

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        conn = RecordedConnection(request.path, dict(request.headers.raw_items()), ws)
        self.connections.append(conn)
        respond = self._respond
        try:
            async for message in ws:
                conn.messages.append(message)
                if respond is not None:
                    await respond(conn, message)
        except ConnectionClosed:
            pass
        finally:
            received = ws.protocol.close_rcvd
            conn.close_code = received.code if received is not None else 1006
            self._changed.set()
