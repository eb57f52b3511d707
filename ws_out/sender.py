"""Thin asyncio adapter: one WebSocket (RFC 6455) client connection per consumer stream.

:class:`WsSender` owns a bounded queue and exactly one task, which connects (retrying a few
times with a short backoff), sends the queued messages in order and, on :meth:`WsSender.close`,
flushes the queue and closes the connection with status 1000 (RFC 6455 §7.4.1).

Calling protocol (inside a running event loop)::

    sender = WsSender("ws://consumer:8080/calls", headers={"Authorization": "Bearer ..."})
    sender.send(encoder.start(...))   # may be called before start(): messages are buffered
    sender.start()
    sender.send(encoder.audio(frame)) # per 20 ms frame; never blocks, never raises on I/O
    ...
    await sender.close()

Back-pressure: when the queue holds ``max_queue`` messages, the *oldest binary* message is
dropped (and counted in ``stats.dropped_frames``) to make room; text messages are never dropped
for room, so the queue may exceed ``max_queue`` by text messages only. Network failures are
logged and counted, never raised: when every connection attempt has failed, or the connection
is lost, the queue is discarded and later messages are counted as dropped. Resuming a lost
connection is not part of protocol v1; the connect step is kept separate (``_connect``) so a
resume policy can re-enter it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException
from websockets.uri import parse_uri

from ws_out.errors import SenderClosedError, UsageError

__all__ = ["SenderStats", "WsSender"]

logger = logging.getLogger(__name__)

DEFAULT_RETRY_DELAYS: Final[tuple[float, ...]] = (0.1, 0.5, 1.0)
"""Pauses between connection attempts: 1 + len(delays) attempts in all."""

_MAX_INBOUND: Final = 64 * 1024  # the consumer sends no data messages in protocol v1
_CLOSE_TIMEOUT: Final = 2.0  # closing handshake bound, seconds (websockets close_timeout)


@dataclass(slots=True)
class SenderStats:
    """Counters of one :class:`WsSender` (messages, i.e. WebSocket frames, and payload bytes)."""

    sent_frames: int = 0
    sent_bytes: int = 0
    dropped_frames: int = 0
    connect_failures: int = 0
    connected: bool = False


class WsSender:
    """Send native-protocol messages to one consumer over one WebSocket connection."""

    __slots__ = (
        "_closing",
        "_dead",
        "_headers",
        "_max_queue",
        "_open_timeout",
        "_ping_interval",
        "_queue",
        "_retry_delays",
        "_task",
        "_wakeup",
        "_ws",
        "name",
        "stats",
        "url",
    )

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        max_queue: int = 500,
        open_timeout: float = 5.0,
        ping_interval: float | None = 20.0,
        name: str = "",
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    ) -> None:
        try:
            uri = parse_uri(url)
        except InvalidURI as exc:
            raise UsageError(f"invalid WebSocket URL: {exc}") from None
        if max_queue < 1:
            raise UsageError(f"max_queue must be at least 1, got {max_queue}")
        self.url = url
        # Default log name without credentials or query string (tokens often live there).
        self.name = name or f"{uri.host}:{uri.port}{uri.path}"
        self.stats = SenderStats()
        self._headers = dict(headers) if headers is not None else None
        self._max_queue = max_queue
        self._open_timeout = open_timeout
        self._ping_interval = ping_interval
        self._retry_delays = tuple(retry_delays)
        self._queue: deque[str | bytes] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self._closing = False
        self._dead = False

    @property
    def queued(self) -> int:
        """Messages waiting to be sent."""
        return len(self._queue)

    def start(self) -> None:
        """Create the task that connects and drains the queue (needs a running loop)."""
        if self._task is not None:
            raise UsageError("start() was already called")
        if self._closing:
            raise SenderClosedError(f"{self.name}: start() after close()")
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name=f"ws_out {self.name}")

    def send(self, message: str | bytes) -> None:
        """Queue ``message`` (``str``: text frame, ``bytes``: binary frame); never blocks."""
        if self._closing:
            raise SenderClosedError(f"{self.name}: send() after close()")
        if self._dead:
            self.stats.dropped_frames += 1
            return
        queue = self._queue
        # Full: make room by dropping the oldest binary; failing that, drop a binary newcomer.
        if (
            len(queue) >= self._max_queue
            and not self._drop_oldest_binary()
            and not isinstance(message, str)
        ):
            self.stats.dropped_frames += 1
            return
        queue.append(message)
        self._wakeup.set()

    async def close(self, timeout: float = 5.0) -> None:
        """Flush the queue (for at most ``timeout`` seconds) and close with 1000.

        Whatever is still queued at the deadline is dropped and counted; the closing
        handshake then gets 2 s more before the TCP connection is aborted. Idempotent.
        """
        self._closing = True
        self._wakeup.set()
        task = self._task
        if task is None:
            self._discard_queue()
            return
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if done:
            return
        logger.warning("> %s: flush timed out, dropping %d messages", self.name, len(self._queue))
        self._discard_queue()
        ws = self._ws
        if ws is not None:
            # websockets' close() drains the write buffer first: bound it, then abort TCP.
            try:
                await asyncio.wait_for(ws.close(1000), _CLOSE_TIMEOUT)
            except TimeoutError:
                ws.transport.abort()
        task.cancel()
        await asyncio.wait({task})

    def _drop_oldest_binary(self) -> bool:
        queue = self._queue
        for index, queued in enumerate(queue):
            if not isinstance(queued, str):
                del queue[index]
                self.stats.dropped_frames += 1
                return True
        return False

    def _discard_queue(self) -> None:
        self.stats.dropped_frames += len(self._queue)
        self._queue.clear()

    async def _run(self) -> None:
        try:
            ws = await self._connect()
            if ws is None:
                return
            self._ws = ws
            self.stats.connected = True
            try:
                await self._drain(ws)
            except ConnectionClosed as exc:
                if not self._closing:
                    logger.warning("< %s: connection lost: %s", self.name, exc)
            finally:
                self.stats.connected = False
        except Exception:
            logger.exception("%s: sender failed", self.name)
        finally:
            self._dead = True
            self._discard_queue()

    async def _connect(self) -> ClientConnection | None:
        delays = iter(self._retry_delays)
        while True:
            try:
                ws = await connect(
                    self.url,
                    additional_headers=self._headers,
                    compression=None,
                    max_size=_MAX_INBOUND,
                    open_timeout=self._open_timeout,
                    ping_interval=self._ping_interval,
                    close_timeout=_CLOSE_TIMEOUT,
                )
            except (OSError, WebSocketException) as exc:
                self.stats.connect_failures += 1
                delay = next(delays, None)
                if delay is None:
                    logger.error("> %s: giving up connecting: %s", self.name, exc)
                    return None
                logger.warning(
                    "> %s: connect failed (%s), retrying in %.1f s", self.name, exc, delay
                )
                await asyncio.sleep(delay)
            else:
                logger.debug("> %s: connected", self.name)
                return ws

    async def _drain(self, ws: ClientConnection) -> None:
        queue = self._queue
        stats = self.stats
        wakeup = self._wakeup
        while True:
            while queue:
                message = queue.popleft()
                try:
                    await ws.send(message)
                except BaseException:  # lost or cancelled: this message is not delivered
                    stats.dropped_frames += 1
                    raise
                stats.sent_frames += 1
                stats.sent_bytes += (
                    len(message.encode()) if isinstance(message, str) else len(message)
                )
            if self._closing:
                await ws.close(1000)
                return
            wakeup.clear()
            await wakeup.wait()
