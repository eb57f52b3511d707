"""Delivery of one stream to one consumer over WebSocket (RFC 6455): reconnect, replay, spool.

Protocol-agnostic: the caller (a dialect encoder) gives the sender ready-made messages, tagged
by role, and the sender decides when they go out:

* **opening** (``send_open``): the messages that open the stream (``start``, ``connected``...);
  sent first on every connection;
* **frames** (``send_frame``): the messages of one output frame of audio (one binary frame in
  the native protocol, several JSON ``media`` messages in others), plus its PCM for the spool.
  The *n*-th frame given has index *n* (from 0): frame indices are the stream's clock;
* **events** (``send_event``): text events (``dtmf``, ``stop``, answers to the consumer),
  positioned after the frames given before them.

Calling protocol (inside a running event loop)::

    sender = WsSender(url, format=fmt, reopen=encoder_reopen, spool=spool.stream(...),
                      auth=consumer_auth.bind(call_id=..., session_id=...), ssl=context)
    sender.send_open(encoder.open(...))     # may come before start(): everything is buffered
    sender.start()
    sender.send_frame(encoder.audio(f), pcm=l16_bytes)   # per frame; never blocks or raises on I/O
    sender.send_event(encoder.dtmf(...), event={"type": "dtmf", ...})
    sender.send_event(encoder.close(...), event={"type": "stop", ...})
    await sender.close()

``send(message)`` is the native-protocol shortcut: text before the first frame opens the stream,
later text is an event, ``bytes`` are frames (and their own L16 PCM).

Delivery policy (:class:`DeliveryPolicy`; see ``docs/delivery.md``):

* **Connect and reconnect** with exponential backoff and full jitter (:class:`Backoff`): the
  *n*-th consecutive failure waits ``uniform(0, min(reconnect_max_s, reconnect_initial_s·2ⁿ))``;
  every attempt is bounded by ``open_timeout_s`` (TCP + TLS + HTTP upgrade); an open connection
  is checked with pings (RFC 6455 §5.5.2) every ``ping_interval_s``, and closed when no pong
  arrives within ``ping_timeout_s``.
* **Replay**: the :class:`ReplayBuffer` keeps the frames (and events) sent during the last
  ``buffer_s`` seconds of audio plus everything not sent yet. On a new connection the sender
  sends the opening again — for a resumed stream, what ``reopen(ResumePoint)`` returns (the
  native dialect's ``start`` with ``resumed: true`` and the position) — then replays the buffer
  from its oldest entry, byte for byte; consumers de-duplicate by position.
* **Spool** (when a :class:`ws_out.spool.StreamSpool` is given): when the buffer overflows
  (more than ``buffer_s`` of audio not sent), when the target stays down ``spool_after_s``,
  when :meth:`close` cannot flush in time, or when the consumer closes the connection with 1000
  (it does not want the rest), live delivery ends and the whole buffer and every later frame
  and event go to disk. Nothing is dropped.
* **Without a spool**, on overflow the *oldest unsent frame* is dropped (events never are) and
  counted in ``stats.dropped_frames``; frames left unsent at the close deadline, or after the
  consumer closed with 1000, are dropped and counted too.
* A slow consumer never blocks the caller: ``send_*`` only append to the buffer; one task per
  sender does the I/O. Frames that were sent but fall out of the replay window are forgotten.

Peer and network failures are logged and counted, never raised. Misuse raises
:exc:`ws_out.errors.UsageError` (:exc:`~ws_out.errors.SenderClosedError` after ``close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import ssl as ssl_module
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException
from websockets.uri import parse_uri

from ws_out.errors import SenderClosedError, UsageError
from ws_out.native import AudioFormat
from ws_out.spool import SpoolWriter, StreamSpool

__all__ = [
    "Backoff",
    "DeliveryPolicy",
    "HandshakeAuth",
    "Reopen",
    "ReplayBuffer",
    "ResumePoint",
    "SenderStats",
    "WsSender",
]

logger = logging.getLogger(__name__)

_MAX_INBOUND: Final = 64 * 1024  # consumer messages are small control messages
_CLOSE_TIMEOUT: Final = 2.0  # closing handshake bound, seconds (websockets close_timeout)
_GOING_AWAY: Final = 1001  # RFC 6455 §7.4.1: live delivery ends (the stream went to the spool)

_OPENING: Final = 0
_EVENT: Final = 1
_FRAME: Final = 2

Messages = tuple[str | bytes, ...]
# (kind, position, messages, pcm, event): position is the frame index (frames) or the
# number of frames given before it (events, opening).
_Item = tuple[int, int, Messages, bytes | None, Mapping[str, object] | None]


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Per-target delivery settings (seconds). See the module docstring for their effect.

    Keep ``buffer_s >= ping_interval_s + ping_timeout_s``: a silently dead connection is only
    noticed after that long, and what was sent meanwhile must still be in the buffer.
    """

    buffer_s: float = 20.0
    open_timeout_s: float = 5.0
    ping_interval_s: float | None = 10.0
    ping_timeout_s: float | None = 10.0
    reconnect_initial_s: float = 0.1
    reconnect_max_s: float = 5.0
    spool_after_s: float = 20.0

    def __post_init__(self) -> None:
        for name in ("buffer_s", "open_timeout_s", "reconnect_initial_s", "reconnect_max_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise UsageError(f"{name} must be a positive number, got {value!r}")
        if not (math.isfinite(self.spool_after_s) and self.spool_after_s >= 0):
            raise UsageError(f"spool_after_s must not be negative, got {self.spool_after_s!r}")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise UsageError("reconnect_max_s must not be below reconnect_initial_s")
        for name in ("ping_interval_s", "ping_timeout_s"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise UsageError(f"{name} must be positive or None, got {value!r}")
        detect = (self.ping_interval_s or 0.0) + (self.ping_timeout_s or 0.0)
        if self.ping_interval_s is not None and self.buffer_s < detect:
            raise UsageError(
                f"buffer_s={self.buffer_s} is shorter than ping_interval_s + ping_timeout_s"
                f" = {detect}: audio sent into a dead connection could not be replayed"
            )


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a resumed stream continues: the first frame the new connection carries.

    ``frame`` is the index of the first replayed frame (or of the next new frame when nothing
    is buffered); ``position_ms`` is ``frame * frame_ms``; ``connection`` counts connections
    (2 for the first reconnection).
    """

    frame: int
    position_ms: int
    connection: int


Reopen = Callable[[ResumePoint], Sequence[str | bytes]]
"""Produces the opening messages of a resumed stream (native: ``start`` + ``resumed: true``)."""


class HandshakeAuth(Protocol):
    """Header source for each opening handshake (``ws_out.auth.SessionAuth``)."""

    def headers(self) -> Mapping[str, str]: ...


@dataclass(slots=True)
class SenderStats:
    """Counters of one :class:`WsSender`.

    Frames are output frames of audio (one ``send_frame``, whatever number of messages it
    has); messages are WebSocket messages. ``sent_frames`` counts every transmission, so
    replayed frames count again; ``dropped_frames`` counts frames neither sent nor spooled
    (``dropped_events`` the same for events); ``queue_depth`` is items waiting to be sent.
    """

    sent_frames: int = 0
    sent_messages: int = 0
    sent_bytes: int = 0
    dropped_frames: int = 0
    dropped_events: int = 0
    replayed_frames: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    spooled_frames: int = 0
    spooled_events: int = 0
    received_messages: int = 0
    queue_depth: int = 0
    connected: bool = False
    spooled: bool = False


class Backoff:
    """Exponential backoff with full jitter (sans-I/O): ``uniform(0, min(cap, base·2ⁿ))``.

    ``rng`` returns floats in ``[0, 1)`` (``random.random`` or a seeded ``Random().random``).
    """

    __slots__ = ("_attempt", "_initial", "_maximum", "_rng")

    def __init__(self, initial: float, maximum: float, rng: Callable[[], float]) -> None:
        self._initial = initial
        self._maximum = maximum
        self._rng = rng
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """Consecutive failures so far."""
        return self._attempt

    def next_delay(self) -> float:
        """The pause before the next attempt, after one more failure."""
        ceiling = min(self._maximum, self._initial * 2.0 ** min(self._attempt, 62))
        self._attempt += 1
        return ceiling * self._rng()

    def reset(self) -> None:
        """A connection succeeded: the next failure starts from ``initial`` again."""
        self._attempt = 0


class ReplayBuffer:
    """Sent history plus unsent items of one stream, bounded in frames (sans-I/O).

    Items move ``pending → in flight → history``. The total of frames in all three is at most
    ``window``: a new frame first evicts the oldest frame of the history (with the events
    before it); when the history holds no frame, :meth:`push_frame` reports an overflow and
    the caller either :meth:`drop_oldest_pending_frame` or :meth:`take_all`. Events and the
    opening do not count against the window and are never evicted for room; the opening is
    not kept in the history (the sender keeps it).
    """

    __slots__ = (
        "_history",
        "_history_frames",
        "_inflight",
        "_pending",
        "_pending_frames",
        "window",
    )

    def __init__(self, window: int) -> None:
        if window < 1:
            raise UsageError(f"replay window must hold at least one frame, got {window}")
        self.window = window
        self._history: deque[_Item] = deque()
        self._pending: deque[_Item] = deque()
        self._inflight: _Item | None = None
        self._history_frames = 0
        self._pending_frames = 0  # pending and in flight

    @property
    def queue_depth(self) -> int:
        """Items not yet sent (including the one in flight)."""
        return len(self._pending) + (self._inflight is not None)

    @property
    def frames(self) -> int:
        """Frames held (history, in flight and pending)."""
        return self._history_frames + self._pending_frames

    def first_position(self, default: int) -> int:
        """Position of the oldest item held, or ``default`` when empty."""
        for part in (self._history, self._pending):
            if part:
                return part[0][1]
        return self._inflight[1] if self._inflight is not None else default

    def push(self, item: _Item) -> bool:
        """Append an item; ``False`` when a frame overflows the window (see the class doc)."""
        self._pending.append(item)
        if item[0] != _FRAME:
            return True
        self._pending_frames += 1
        if self._history_frames + self._pending_frames <= self.window:
            return True
        if self._history_frames:
            history = self._history
            while history.popleft()[0] != _FRAME:
                pass
            self._history_frames -= 1
            return True
        return False

    def pop(self) -> _Item | None:
        """The next item to send, now in flight; ``None`` when nothing is pending."""
        if self._inflight is not None:
            raise UsageError("an item is already in flight")
        if not self._pending:
            return None
        item = self._inflight = self._pending.popleft()
        return item

    def delivered(self, item: _Item) -> bool:
        """The in-flight item was written to the connection; ``False`` (and ignored) if it
        was taken meanwhile (:meth:`take_all`)."""
        if item is not self._inflight:
            return False
        self._inflight = None
        kind = item[0]
        if kind == _FRAME:
            self._pending_frames -= 1
            self._history_frames += 1
            self._history.append(item)
        elif kind == _EVENT:
            self._history.append(item)
        return True

    def undelivered(self, item: _Item) -> None:
        """The connection failed while the in-flight item was sent: it is pending again."""
        if item is self._inflight:
            self._inflight = None
            self._pending.appendleft(item)

    def rewind(self) -> int:
        """Prepare a new connection: history becomes pending again, opening items go.

        Returns the number of frames that will be replayed.
        """
        if self._inflight is not None:
            raise UsageError("rewind() with an item in flight")
        replay = self._history_frames
        pending = self._history
        pending.extend(item for item in self._pending if item[0] != _OPENING)
        self._pending = pending
        self._history = deque()
        self._pending_frames += replay
        self._history_frames = 0
        return replay

    def drop_oldest_pending_frame(self) -> bool:
        """Drop the oldest frame that was never sent; ``False`` if there is none."""
        pending = self._pending
        for index, item in enumerate(pending):
            if item[0] == _FRAME:
                del pending[index]
                self._pending_frames -= 1
                return True
        return False

    def take_all(self, *, history: bool) -> list[_Item]:
        """Empty the buffer, oldest first (the history only if ``history``); opening excluded."""
        items: list[_Item] = list(self._history) if history else []
        if self._inflight is not None:
            items.append(self._inflight)
        items.extend(self._pending)
        self._history.clear()
        self._pending.clear()
        self._inflight = None
        self._history_frames = self._pending_frames = 0
        return [item for item in items if item[0] != _OPENING]


class WsSender:
    """Deliver one stream to one consumer: reconnect, replay, spool (see the module doc).

    ``format`` describes the PCM given with frames (L16) and the frame length: it sizes the
    replay window (``policy.buffer_s``) and the spool's WAV; without it the window is
    ``max_queue`` frames. A ``spool`` or a ``reopen`` needs a ``format``; a spool also needs
    every frame's ``pcm``. ``reopen``
    is used for resumed streams; without it the original opening is sent again (a fresh
    stream with the same ids). ``headers`` are static handshake headers, ``auth`` adds its own
    per attempt; ``ssl`` is the context for ``wss://`` (default: verification on, system CAs).
    ``on_message`` receives the consumer's messages. ``rng`` (floats in ``[0, 1)``) and
    ``clock`` (monotonic seconds; default: the loop's) are injectable for tests.
    """

    __slots__ = (
        "_auth",
        "_buffer",
        "_clock",
        "_closed",
        "_closer",
        "_closing",
        "_connections",
        "_diverted",
        "_events_given",
        "_format",
        "_headers",
        "_next_frame",
        "_on_message",
        "_opening",
        "_opening_live",
        "_opening_sent",
        "_pcm_bytes",
        "_policy",
        "_reopen",
        "_rng",
        "_spool",
        "_spool_failed",
        "_ssl",
        "_stop",
        "_task",
        "_wakeup",
        "_writer",
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
        name: str = "",
        policy: DeliveryPolicy | None = None,
        format: AudioFormat | None = None,
        reopen: Reopen | None = None,
        spool: StreamSpool | None = None,
        auth: HandshakeAuth | None = None,
        ssl: ssl_module.SSLContext | None = None,
        on_message: Callable[[str | bytes], None] | None = None,
        rng: Callable[[], float] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        try:
            uri = parse_uri(url)
        except InvalidURI as exc:
            raise UsageError(f"invalid WebSocket URL: {exc}") from None
        if max_queue < 1:
            raise UsageError(f"max_queue must be at least 1, got {max_queue}")
        if ssl is not None and not uri.secure:
            raise UsageError("an ssl context needs a wss:// URL")
        if (spool is not None or reopen is not None) and format is None:
            raise UsageError("a spool or a reopen callback needs the audio format")
        self.url = url
        # Default log name without credentials or query string (tokens often live there).
        self.name = name or f"{uri.host}:{uri.port}{uri.path}"
        self.stats = SenderStats()
        self._policy = policy if policy is not None else DeliveryPolicy()
        self._format = format
        window = (
            math.ceil(self._policy.buffer_s * 1000 / format.frame_ms)
            if format is not None
            else max_queue
        )
        self._buffer = ReplayBuffer(window)
        self._pcm_bytes = format.frame_bytes if format is not None else 0
        self._headers = dict(headers) if headers is not None else {}
        self._reopen = reopen
        self._spool = spool
        self._auth = auth
        self._ssl = ssl
        self._on_message = on_message
        self._rng = rng if rng is not None else random.random
        self._clock = clock
        self._opening: list[str | bytes] = []
        self._opening_sent = False  # some connection carried the whole opening
        self._opening_live = False  # the current connection did
        self._next_frame = 0
        self._events_given = False
        self._closer: asyncio.Task[None] | None = None
        self._connections = 0
        self._diverted: str | None = None  # why live delivery ended
        self._writer: SpoolWriter | None = None
        self._spool_failed = False
        self._wakeup = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self._closing = False
        self._closed = False

    @property
    def queued(self) -> int:
        """Items (frames, events, opening parts) waiting to be sent."""
        return self._buffer.queue_depth

    @property
    def spool_path(self) -> Path | None:
        """The spool folder of this stream, once it was spooled."""
        return self._writer.path if self._writer is not None else None

    # -- producer side (never blocks) --------------------------------------------------------
    def start(self) -> None:
        """Create the task that connects and delivers (needs a running loop)."""
        if self._task is not None:
            raise UsageError("start() was already called")
        if self._closing:
            raise SenderClosedError(f"{self.name}: start() after close()")
        loop = asyncio.get_running_loop()
        if self._clock is None:
            self._clock = loop.time
        self._task = loop.create_task(self._run(), name=f"ws_out {self.name}")

    def send(self, message: str | bytes) -> None:
        """Native-protocol shortcut: text opens the stream until the first frame or event
        arrives, later text is an event; ``bytes`` is a frame whose payload is its L16 PCM."""
        if isinstance(message, str):
            if self._next_frame == 0 and not self._events_given:
                self.send_open((message,))
            else:
                self.send_event(message)
        else:
            self.send_frame(message, message if self._spool is not None else None)

    def send_open(self, messages: str | bytes | Sequence[str | bytes]) -> None:
        """Append to the stream's opening (before the first frame or event)."""
        self._check_open()
        if self._next_frame or self._events_given:
            raise UsageError("send_open() after the first frame or event")
        msgs = _as_tuple(messages)
        self._opening.extend(msgs)
        if self._opening_live:  # this connection already sent the opening: send these too
            self._push((_OPENING, 0, msgs, None, None))

    def send_frame(
        self, messages: str | bytes | Sequence[str | bytes], pcm: bytes | None = None
    ) -> None:
        """Queue the messages of the next output frame; ``pcm`` is its L16 audio (spool)."""
        self._check_open()
        if self._spool is not None and (pcm is None or len(pcm) != self._pcm_bytes):
            raise UsageError(f"a spooled sender needs each frame's pcm ({self._pcm_bytes} bytes)")
        position = self._next_frame
        self._next_frame = position + 1
        self._push((_FRAME, position, _as_tuple(messages), pcm, None))

    def send_event(
        self,
        messages: str | bytes | Sequence[str | bytes],
        event: Mapping[str, object] | None = None,
    ) -> None:
        """Queue a text event; ``event`` is what the spool records for it (default: messages)."""
        self._check_open()
        self._events_given = True
        self._push((_EVENT, self._next_frame, _as_tuple(messages), None, event))

    def _check_open(self) -> None:
        if self._closing:
            raise SenderClosedError(f"{self.name}: send after close()")

    def _push(self, item: _Item) -> None:
        if self._diverted is not None:
            self._to_spool(item)
            return
        if not self._buffer.push(item):
            if self._spool is not None:
                self._divert("overflow", history=True)
            else:
                self._buffer.drop_oldest_pending_frame()
                self.stats.dropped_frames += 1
        self.stats.queue_depth = self._buffer.queue_depth
        self._wakeup.set()

    # -- spool -------------------------------------------------------------------------------
    def _divert(self, reason: str, *, history: bool) -> None:
        """End live delivery: the buffer and everything later go to the spool (or are dropped)."""
        if self._diverted is not None:
            return
        self._diverted = reason
        logger.warning("> %s: live delivery ended (%s)", self.name, reason)
        # Sent frames are only worth keeping on disk; without a spool they are not "dropped".
        history = history and self._spool is not None
        for item in self._buffer.take_all(history=history):
            self._to_spool(item)
        self.stats.queue_depth = 0
        self._stop.set()
        self._wakeup.set()
        ws = self._ws
        if ws is not None:  # also unblocks a send stuck on a stalled consumer
            self._closer = asyncio.get_running_loop().create_task(_close_ws(ws, _GOING_AWAY))

    def _to_spool(self, item: _Item) -> None:
        kind, position, messages, pcm, event = item
        writer = self._writer
        if writer is None and self._spool is not None and not self._spool_failed:
            assert self._format is not None
            try:
                writer = self._writer = self._spool.open(
                    format=self._format,
                    from_frame=position,
                    reason=self._diverted or "closed",
                    opening=self._opening,
                )
                self.stats.spooled = True
            except OSError as exc:
                logger.error("> %s: cannot open the spool: %s", self.name, exc)
                self._spool_failed = True
        if writer is not None:
            try:
                if kind == _FRAME:
                    assert pcm is not None
                    writer.write_frame(pcm)
                    self.stats.spooled_frames += 1
                else:
                    writer.write_event(position=position, event=event, messages=messages)
                    self.stats.spooled_events += 1
                return
            except UsageError as exc:  # an event the caller made unserialisable
                logger.error("> %s: cannot spool %s: %s", self.name, messages[:1], exc)
            except OSError as exc:
                logger.error("> %s: spool write failed, dropping from now on: %s", self.name, exc)
                self._spool_failed = True
                self._writer = None
                with contextlib.suppress(OSError):
                    writer.close()
        if kind == _FRAME:
            self.stats.dropped_frames += 1
        else:
            self.stats.dropped_events += 1

    # -- close -------------------------------------------------------------------------------
    async def close(self, timeout: float = 5.0) -> None:
        """Deliver what is buffered (for at most ``timeout`` seconds), then close with 1000.

        While the target is down the sender keeps reconnecting until the deadline. Whatever
        is still undelivered then goes to the spool (or is dropped and counted); a stalled
        connection gets 2 s more for its closing handshake before TCP is aborted. Idempotent.
        """
        self._closing = True
        self._wakeup.set()
        if self._closed:
            return
        task = self._task
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                unsent = self._buffer.queue_depth
                logger.warning("> %s: close timed out with %d items unsent", self.name, unsent)
                self._divert("close timeout", history=True)
                if self._closer is not None:
                    await self._closer  # unblocks a send stuck on the connection
                task.cancel()
                await asyncio.wait({task})
        else:
            self._divert("closed before start", history=True)
        self._closed = True
        self.stats.connected = False
        if self._closer is not None:
            await self._closer
        writer = self._writer
        if writer is not None:
            try:
                writer.close()
            except OSError as exc:
                logger.error("> %s: cannot finalise the spool: %s", self.name, exc)

    # -- the delivery task -------------------------------------------------------------------
    async def _run(self) -> None:
        policy = self._policy
        clock = self._clock
        assert clock is not None
        backoff = Backoff(policy.reconnect_initial_s, policy.reconnect_max_s, self._rng)
        down_since = clock()
        try:
            while self._diverted is None:
                ws = await self._connect(backoff.attempt)
                if ws is None:
                    waited = clock() - down_since
                    if self._spool is not None and waited >= policy.spool_after_s:
                        self._divert(f"target down {waited:.1f} s", history=True)
                        break
                    delay = backoff.next_delay()
                    if self._spool is not None:
                        delay = min(delay, policy.spool_after_s - waited)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._stop.wait()
                    continue
                backoff.reset()
                if await self._serve(ws):
                    return
                down_since = clock()
        except Exception:
            logger.exception("%s: sender failed", self.name)
            self._divert("sender failed", history=True)

    async def _connect(self, attempt: int) -> ClientConnection | None:
        policy = self._policy
        headers = dict(self._headers)
        if self._auth is not None:
            headers.update(self._auth.headers())
        extra: dict[str, Any] = {"ssl": self._ssl} if self._ssl is not None else {}
        try:
            ws = await connect(
                self.url,
                additional_headers=headers or None,
                compression=None,
                max_size=_MAX_INBOUND,
                open_timeout=policy.open_timeout_s,
                ping_interval=policy.ping_interval_s,
                ping_timeout=policy.ping_timeout_s,
                close_timeout=_CLOSE_TIMEOUT,
                **extra,
            )
        except (OSError, WebSocketException) as exc:
            self.stats.connect_failures += 1
            log = logger.warning if attempt == 0 else logger.debug
            log("> %s: connect failed (attempt %d): %s", self.name, attempt + 1, exc)
            return None
        logger.debug("> %s: connected", self.name)
        return ws

    async def _serve(self, ws: ClientConnection) -> bool:
        """Deliver on one connection; ``True`` when the stream is finished (closed cleanly)."""
        self._ws = ws
        self._connections += 1
        stats = self.stats
        if self._connections > 1:
            stats.reconnects += 1
            logger.info("> %s: reconnected (connection %d)", self.name, self._connections)
        stats.connected = True
        reader = asyncio.get_running_loop().create_task(self._read(ws))
        reader.add_done_callback(lambda _: self._wakeup.set())
        try:
            lost = await self._deliver(ws, reader)
        finally:
            reader.cancel()
            self._opening_live = False
            stats.connected = False
            self._ws = None
        if lost and not self._closing:
            logger.warning("< %s: connection lost: %s", self.name, _close_text(ws))
        received = ws.protocol.close_rcvd
        if lost and received is not None and received.code == 1000:
            self._divert("consumer closed the stream", history=False)
            return True
        return not lost or self._diverted is not None

    async def _deliver(self, ws: ClientConnection, reader: asyncio.Task[None]) -> bool:
        """Send the opening, the replay and new items; ``True`` if the connection was lost."""
        buffer = self._buffer
        stats = self.stats
        wakeup = self._wakeup
        replay = buffer.rewind()
        stats.replayed_frames += replay
        try:
            await self._send_opening(ws, replay)
        except ConnectionClosed:
            return True
        while True:
            if self._diverted is not None:  # _divert() is closing the connection
                return False
            item = buffer.pop()
            if item is None:
                stats.queue_depth = 0
                if self._closing:
                    # Clean only if our close came first and was answered: after a close
                    # from the consumer, what we sent meanwhile was not read (RFC 6455 §5.5.1).
                    await ws.close(1000)
                    protocol = ws.protocol
                    return protocol.close_rcvd is None or protocol.close_rcvd_then_sent is not False
                if reader.done():
                    return True
                wakeup.clear()
                await wakeup.wait()
                continue
            try:
                for message in item[2]:
                    await ws.send(message)
                    stats.sent_messages += 1
                    stats.sent_bytes += _size(message)
            except ConnectionClosed:
                buffer.undelivered(item)
                return True
            if buffer.delivered(item) and item[0] == _FRAME:
                stats.sent_frames += 1
            stats.queue_depth = buffer.queue_depth

    async def _send_opening(self, ws: ClientConnection, replay: int) -> None:
        position = self._buffer.first_position(self._next_frame)
        opening: Sequence[str | bytes] = self._opening
        if (self._opening_sent or position > 0) and self._reopen is not None:
            assert self._format is not None
            point = ResumePoint(position, position * self._format.frame_ms, self._connections)
            try:
                opening = list(self._reopen(point))
            except Exception:
                logger.exception("> %s: reopen callback failed, sending the opening", self.name)
            else:
                logger.info(
                    "> %s: resuming at frame %d, replaying %d frames", self.name, position, replay
                )
        index = 0
        while index < len(opening):  # send_open() may extend self._opening meanwhile
            await ws.send(opening[index])
            self.stats.sent_messages += 1
            self.stats.sent_bytes += _size(opening[index])
            index += 1
        self._opening_sent = self._opening_live = True

    async def _read(self, ws: ClientConnection) -> None:
        on_message = self._on_message
        stats = self.stats
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                stats.received_messages += 1
                if on_message is not None:
                    try:
                        on_message(message)
                    except Exception:
                        logger.exception("< %s: on_message failed", self.name)


def _as_tuple(messages: str | bytes | Sequence[str | bytes]) -> Messages:
    if isinstance(messages, str | bytes):
        return (messages,)
    return tuple(messages)


def _size(message: str | bytes) -> int:
    """Payload bytes of a message (text is UTF-8; ``isascii`` is O(1) on str)."""
    if isinstance(message, str) and not message.isascii():
        return len(message.encode())
    return len(message)


async def _close_ws(ws: ClientConnection, code: int) -> None:
    """Close within a bound; a connection whose writes are stuck is aborted at once (the
    close frame would sit behind them, and websockets' close() drains them first)."""
    if ws.transport.get_write_buffer_size():
        ws.transport.abort()
        return
    try:
        await asyncio.wait_for(ws.close(code), _CLOSE_TIMEOUT)
    except TimeoutError:
        ws.transport.abort()


def _close_text(ws: ClientConnection) -> str:
    received = ws.protocol.close_rcvd
    if received is None:
        return "no close frame (code 1006)"
    return f"code {received.code} {received.reason!r}".rstrip()
