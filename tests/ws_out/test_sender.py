from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers

from ws_out import SenderClosedError, UsageError, WsSender

WAIT = 10.0  # generous upper bound for conditions that normally hold within milliseconds


@dataclass
class Received:
    headers: Headers
    messages: list[str | bytes] = field(default_factory=list)
    close_code: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Recorder:
    """A real websockets server on 127.0.0.1 that records what every connection received."""

    def __init__(self, *, read_limit: int | None = None, stall: bool = False) -> None:
        self.connections: list[Received] = []
        self.connected = asyncio.Event()
        self._read_limit = read_limit
        self._stall = stall
        self._release = asyncio.Event()
        self.server: Server | None = None

    async def handler(self, ws: ServerConnection) -> None:
        received = Received(ws.request.headers if ws.request is not None else Headers())
        self.connections.append(received)
        self.connected.set()
        try:
            if self._stall:  # never read: the client's writes back up
                await self._release.wait()
                return
            async for message in ws:
                received.messages.append(message)
                if self._read_limit is not None and len(received.messages) >= self._read_limit:
                    await ws.close(1000)
            await ws.wait_closed()
            received.close_code = ws.close_code
        finally:
            received.done.set()

    async def start(self, port: int = 0) -> int:
        self.server = await serve(
            self.handler, "127.0.0.1", port, compression=None, close_timeout=0.5
        )
        bound: int = self.server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        self._release.set()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def only_connection_done(self) -> Received:
        await asyncio.wait_for(self.connected.wait(), WAIT)
        assert len(self.connections) == 1
        await asyncio.wait_for(self.connections[0].done.wait(), WAIT)
        return self.connections[0]


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()
    yield rec
    await rec.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), WAIT)


async def closed(sender: WsSender, close: Awaitable[None] | None = None) -> None:
    await asyncio.wait_for(close if close is not None else sender.close(), WAIT)


async def test_messages_queued_before_connect_are_delivered_in_order(recorder: Recorder) -> None:
    port = await recorder.start()
    sender = WsSender(f"ws://127.0.0.1:{port}/calls", name="t1")
    early: list[str | bytes] = ['{"type":"start"}', b"\x01\x00" * 160, b"\x02\x00" * 160]
    for message in early:
        sender.send(message)
    assert sender.queued == 3
    sender.start()
    late: list[str | bytes] = [bytes([i]) * 640 for i in range(50)] + ['{"type":"stop"}']
    for message in late:
        sender.send(message)
    await closed(sender)
    received = await recorder.only_connection_done()
    assert received.messages == early + late
    assert received.close_code == 1000
    stats = sender.stats
    assert stats.sent_frames == 54
    assert stats.sent_bytes == 16 + 2 * 320 + 50 * 640 + 15
    assert (stats.dropped_frames, stats.connect_failures, stats.connected) == (0, 0, False)


async def test_overflow_drops_oldest_binary_and_never_text(recorder: Recorder) -> None:
    port = await recorder.start()
    sender = WsSender(f"ws://127.0.0.1:{port}", max_queue=4)
    sequence: list[str | bytes] = ["T1", b"B1", b"B2", "T2", b"B3", b"B4", "T3", "T4", b"B5", "T5"]
    for message in sequence:
        sender.send(message)
    # Each arrival beyond 4 evicted the oldest binary; B5 found none to evict; T5 overfills.
    assert sender.stats.dropped_frames == 5
    assert sender.queued == 5
    sender.start()
    sender.send(b"B6")  # full of text: the newcomer binary is the one dropped
    assert sender.stats.dropped_frames == 6
    await closed(sender)
    received = await recorder.only_connection_done()
    assert received.messages == ["T1", "T2", "T3", "T4", "T5"]
    assert sender.stats.sent_frames == 5


async def test_overflow_keeps_newest_binaries(recorder: Recorder) -> None:
    port = await recorder.start()
    sender = WsSender(f"ws://127.0.0.1:{port}", max_queue=10)
    sender.send("start")
    for i in range(100):
        sender.send(i.to_bytes(2, "little"))
    sender.start()
    await closed(sender)
    received = await recorder.only_connection_done()
    assert received.messages == ["start"] + [i.to_bytes(2, "little") for i in range(91, 100)]
    assert sender.stats.dropped_frames == 91


async def test_close_flushes_a_large_backlog(recorder: Recorder) -> None:
    port = await recorder.start()
    sender = WsSender(f"ws://127.0.0.1:{port}", max_queue=10_000)
    sender.start()
    await until(lambda: sender.stats.connected)
    frames = [i.to_bytes(4, "little") * 160 for i in range(3000)]
    for frame in frames:
        sender.send(frame)
    sender.send("stop")
    await closed(sender)
    received = await recorder.only_connection_done()
    assert received.messages == [*frames, "stop"]
    assert sender.stats.dropped_frames == 0
    assert sender.queued == 0


async def test_retries_until_the_consumer_listens() -> None:
    port = free_port()
    sender = WsSender(f"ws://127.0.0.1:{port}", retry_delays=(0.05,) * 200)
    sender.send("start")
    sender.start()
    await until(lambda: sender.stats.connect_failures >= 1)
    sender.send(b"\x00\x00")
    recorder = Recorder()
    try:
        await recorder.start(port)
        await closed(sender)
        received = await recorder.only_connection_done()
    finally:
        await recorder.close()
    assert received.messages == ["start", b"\x00\x00"]
    assert sender.stats.connect_failures >= 1
    assert sender.stats.dropped_frames == 0


async def test_gives_up_after_retries_and_counts_drops() -> None:
    sender = WsSender(f"ws://127.0.0.1:{free_port()}", retry_delays=(0.01, 0.01))
    sender.send("start")
    sender.send(b"\x00\x00")
    sender.start()
    await until(lambda: sender.stats.connect_failures == 3)
    assert sender.stats.dropped_frames == 2  # the buffered messages were discarded
    sender.send(b"\x00\x00")  # does not raise
    sender.send("dtmf")
    assert sender.stats.dropped_frames == 4
    await closed(sender)
    assert sender.stats.sent_frames == 0
    assert not sender.stats.connected


async def test_headers_are_sent_with_the_handshake(recorder: Recorder) -> None:
    port = await recorder.start()
    sender = WsSender(f"ws://127.0.0.1:{port}", headers={"Authorization": "Bearer s3cret"})
    sender.start()
    sender.send("hello")
    await closed(sender)
    received = await recorder.only_connection_done()
    assert received.headers["Authorization"] == "Bearer s3cret"
    assert received.messages == ["hello"]


async def test_consumer_closing_early_is_counted_not_raised() -> None:
    recorder = Recorder(read_limit=2)
    try:
        port = await recorder.start()
        sender = WsSender(f"ws://127.0.0.1:{port}")
        sender.start()
        sender.send("one")
        sender.send("two")
        received = await recorder.only_connection_done()
        assert received.messages == ["one", "two"]
        await until(lambda: sender.stats.connected)  # not noticed until the next send
        sender.send(b"\x00\x00")
        await until(lambda: not sender.stats.connected)
        sender.send(b"\x00\x00")
        await closed(sender)
    finally:
        await recorder.close()
    assert sender.stats.sent_frames == 2
    assert sender.stats.dropped_frames == 2


async def test_close_gives_up_flushing_a_stalled_consumer() -> None:
    recorder = Recorder(stall=True)
    try:
        port = await recorder.start()
        sender = WsSender(f"ws://127.0.0.1:{port}", max_queue=1000)
        sender.start()
        await until(lambda: sender.stats.connected)
        for _ in range(600):
            sender.send(b"\x00" * 65536)  # ~39 MB: more than the loopback buffers hold
        await closed(sender, sender.close(timeout=0.5))
    finally:
        await recorder.close()
    stats = sender.stats
    assert stats.dropped_frames > 0
    assert stats.sent_frames + stats.dropped_frames == 600
    assert sender.queued == 0
    assert not stats.connected


async def test_misuse_raises_usage_errors(recorder: Recorder) -> None:
    with pytest.raises(UsageError):
        WsSender("http://127.0.0.1:1/")
    with pytest.raises(UsageError):
        WsSender("ws://127.0.0.1:1/", max_queue=0)
    assert WsSender("ws://user:pw@127.0.0.1:9/calls?token=s3cret").name == "127.0.0.1:9/calls"
    port = await recorder.start()
    sender = WsSender(f"ws://127.0.0.1:{port}")
    sender.start()
    with pytest.raises(UsageError):
        sender.start()
    await closed(sender)
    with pytest.raises(SenderClosedError):
        sender.send("late")
    await closed(sender)  # idempotent


async def test_close_without_start_drops_the_buffer() -> None:
    sender = WsSender("ws://127.0.0.1:9/")
    sender.send("start")
    await closed(sender)
    assert sender.stats.dropped_frames == 1
    with pytest.raises(SenderClosedError):
        sender.start()
