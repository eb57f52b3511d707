from __future__ import annotations

import asyncio
import json
import random
import socket
import ssl
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers

from ws_out import (
    AudioFormat,
    DeliveryPolicy,
    ResumePoint,
    SenderClosedError,
    Spool,
    UsageError,
    WsSender,
)
from ws_out.sender import Backoff, ReplayBuffer

pytestmark = pytest.mark.integration

WAIT = 10.0  # generous upper bound for conditions that normally hold within milliseconds
FMT = AudioFormat(8000, 1, 20)  # 320-byte frames
# Small windows for tests; buffer_s >= ping_interval_s + ping_timeout_s holds.
FAST = DeliveryPolicy(
    buffer_s=2.0,
    ping_interval_s=0.5,
    ping_timeout_s=0.5,
    reconnect_initial_s=0.02,
    reconnect_max_s=0.1,
    spool_after_s=60.0,
)


@dataclass
class Received:
    headers: Headers
    messages: list[str | bytes] = field(default_factory=list)
    close_code: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def frames(self) -> list[bytes]:
        return [m for m in self.messages if isinstance(m, bytes)]


class Recorder:
    """A real websockets server on 127.0.0.1 that records what every connection received."""

    def __init__(
        self, *, read_limit: int | None = None, stall: bool = False, read_delay: float = 0.0
    ) -> None:
        self.connections: list[Received] = []
        self.connected = asyncio.Event()
        self._read_limit = read_limit
        self._stall = stall
        self._read_delay = read_delay
        self._release = asyncio.Event()
        self.server: Server | None = None
        self.live: list[ServerConnection] = []

    async def handler(self, ws: ServerConnection) -> None:
        received = Received(ws.request.headers if ws.request is not None else Headers())
        self.connections.append(received)
        self.live.append(ws)
        self.connected.set()
        try:
            if self._stall:  # never read: the client's writes back up
                await self._release.wait()
                return
            async for message in ws:
                received.messages.append(message)
                if self._read_limit is not None and len(received.messages) >= self._read_limit:
                    await ws.close(1000)
                if self._read_delay:
                    await asyncio.sleep(self._read_delay)
            await ws.wait_closed()
        except Exception:  # killed: ConnectionClosedError
            pass
        finally:
            received.close_code = ws.close_code
            received.done.set()

    async def start(self, port: int = 0) -> int:
        self.server = await serve(
            self.handler, "127.0.0.1", port, compression=None, close_timeout=0.5
        )
        bound: int = self.server.sockets[0].getsockname()[1]
        return bound

    async def kill(self) -> None:
        """Drop every connection without a closing handshake and stop listening (a crash)."""
        assert self.server is not None
        for ws in self.live:
            ws.transport.abort()
        self.server.close(close_connections=False)
        await self.server.wait_closed()

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


def noise_frames(count: int, seed: int = 7) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [
        rng.integers(-32768, 32767, FMT.samples_per_frame, dtype=np.int16).astype("<i2").tobytes()
        for _ in range(count)
    ]


def start_text(point: ResumePoint | None = None) -> str:
    """The opening of the test protocol: native-like ``start`` with the resume fields."""
    message: dict[str, object] = {"type": "start"}
    if point is not None:
        message.update(
            resumed=True, resume_from_frame=point.frame, resume_from_ms=point.position_ms
        )
    return json.dumps(message)


def reopen(point: ResumePoint) -> Sequence[str]:
    return [start_text(point)]


def reassemble(connections: list[Received]) -> tuple[list[bytes], list[str]]:
    """What a consumer keeps after de-duplicating by position (docs/delivery.md)."""
    frames: list[bytes] = []
    events: list[str] = []
    for conn in connections:
        start = json.loads(conn.messages[0])
        first = start["resume_from_frame"] if start.get("resumed") else 0
        assert first <= len(frames), "gap: audio lost"
        position = first
        for message in conn.messages[1:]:
            if isinstance(message, bytes):
                if position >= len(frames):
                    frames.append(message)
                position += 1
            elif message not in events:
                events.append(message)
    return frames, events


# -- sans-I/O parts ------------------------------------------------------------------------


def test_backoff_is_exponential_with_full_jitter_and_resets() -> None:
    backoff = Backoff(0.1, 1.0, lambda: 0.5)
    assert [backoff.next_delay() for _ in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
    assert backoff.attempt == 6
    backoff.reset()
    assert backoff.next_delay() == 0.05
    seeded = Backoff(0.1, 5.0, random.Random(1).random)
    delays = [seeded.next_delay() for _ in range(40)]
    ceilings = [min(5.0, 0.1 * 2**n) for n in range(40)]
    assert all(0 <= d < c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == 40  # jittered
    assert Backoff(0.1, 5.0, random.Random(1).random).next_delay() == delays[0]  # seeded


def frame(position: int) -> tuple[int, int, tuple[bytes], bytes, None]:
    return (2, position, (bytes([position]),), bytes([position]), None)


def event(position: int, text: str) -> tuple[int, int, tuple[str], None, None]:
    return (1, position, (text,), None, None)


def test_replay_buffer_keeps_a_window_of_frames_and_replays_in_order() -> None:
    buf = ReplayBuffer(3)
    for item in (frame(0), event(1, "e1"), frame(1), frame(2)):
        assert buf.push(item)
    while (popped := buf.pop()) is not None:
        assert buf.delivered(popped)
    assert buf.queue_depth == 0 and buf.frames == 3
    assert buf.push(frame(3))  # evicts frame 0 from the history
    assert buf.push(frame(4))  # evicts e1 and frame 1
    assert buf.first_position(99) == 2
    assert buf.rewind() == 1  # frame 2 replayed, then 3 and 4
    assert buf.pop() == frame(2)
    buf.undelivered(frame(2))  # an equal tuple, not the in-flight object: ignored
    assert not buf.delivered(frame(2))
    with pytest.raises(UsageError):
        buf.pop()  # frame 2 is still in flight
    assert buf.take_all(history=True) == [frame(2), frame(3), frame(4)]
    assert buf.frames == 0 and buf.first_position(5) == 5


def test_replay_buffer_overflow_only_drops_unsent_frames_never_events() -> None:
    buf = ReplayBuffer(2)
    assert buf.push(frame(0)) and buf.push(event(1, "dtmf")) and buf.push(frame(1))
    assert not buf.push(frame(2))  # nothing sent yet: overflow
    assert buf.drop_oldest_pending_frame()
    assert buf.take_all(history=False) == [event(1, "dtmf"), frame(1), frame(2)]
    buf.push(event(0, "only text"))
    assert not buf.drop_oldest_pending_frame()
    first = buf.pop()
    assert first is not None
    buf.undelivered(first)
    assert buf.queue_depth == 1 and buf.rewind() == 0


def test_delivery_policy_is_validated() -> None:
    with pytest.raises(UsageError, match="ping_interval_s"):
        DeliveryPolicy(buffer_s=5.0)  # a dead peer is noticed after 20 s by default
    with pytest.raises(UsageError):
        DeliveryPolicy(reconnect_initial_s=0.0)
    with pytest.raises(UsageError):
        DeliveryPolicy(reconnect_initial_s=2.0, reconnect_max_s=1.0)
    with pytest.raises(UsageError):
        DeliveryPolicy(spool_after_s=float("nan"))
    assert DeliveryPolicy(buffer_s=1.0, ping_interval_s=None).ping_timeout_s == 10.0


# -- real connections ----------------------------------------------------------------------


async def test_messages_queued_before_connect_are_delivered_in_order(recorder: Recorder) -> None:
    port = await recorder.start()
    sender = WsSender(f"ws://127.0.0.1:{port}/calls", name="t1")
    early: list[str | bytes] = ['{"type":"start"}', b"\x01\x00" * 160, b"\x02\x00" * 160]
    for message in early:
        sender.send(message)
    assert sender.queued == 2  # the opening is not queued: every connection sends it first
    sender.start()
    late: list[str | bytes] = [bytes([i]) * 640 for i in range(50)] + ['{"type":"stop"}']
    for message in late:
        sender.send(message)
    await closed(sender)
    received = await recorder.only_connection_done()
    assert received.messages == early + late
    assert received.close_code == 1000
    stats = sender.stats
    assert (stats.sent_frames, stats.sent_messages) == (52, 54)
    assert stats.sent_bytes == 16 + 2 * 320 + 50 * 640 + 15
    assert (stats.dropped_frames, stats.connect_failures, stats.connected) == (0, 0, False)
    assert (stats.reconnects, stats.replayed_frames, stats.queue_depth) == (0, 0, 0)


async def test_overflow_drops_oldest_unsent_frames_and_never_text(recorder: Recorder) -> None:
    port = await recorder.start()
    sender = WsSender(f"ws://127.0.0.1:{port}", max_queue=2)
    sequence: list[str | bytes] = ["T0", b"B1", b"B2", "T1", b"B3", b"B4", "T2", "T3", b"B5"]
    for message in sequence:
        sender.send(message)
    assert sender.stats.dropped_frames == 3  # B1, B2, B3 made room for B3, B4, B5
    sender.start()
    await closed(sender)
    received = await recorder.only_connection_done()
    assert received.messages == ["T0", "T1", b"B4", "T2", "T3", b"B5"]
    assert sender.stats.sent_frames == 2


async def test_close_flushes_a_large_backlog(recorder: Recorder) -> None:
    port = await recorder.start()
    sender = WsSender(f"ws://127.0.0.1:{port}", max_queue=10_000)
    sender.send_open("start")
    sender.start()
    await until(lambda: sender.stats.connected)
    frames = [i.to_bytes(4, "little") * 160 for i in range(3000)]
    for f in frames:
        sender.send_frame(f)
    sender.send_event("stop")
    await closed(sender)
    received = await recorder.only_connection_done()
    assert received.messages == ["start", *frames, "stop"]
    assert sender.stats.dropped_frames == 0
    assert sender.queued == 0


async def test_retries_with_backoff_until_the_consumer_listens() -> None:
    port = free_port()
    sender = WsSender(f"ws://127.0.0.1:{port}", policy=FAST, rng=random.Random(3).random)
    sender.send("start")
    sender.start()
    await until(lambda: sender.stats.connect_failures >= 3)
    sender.send(b"\x00\x00")
    recorder = Recorder()
    try:
        await recorder.start(port)
        await closed(sender)
        received = await recorder.only_connection_done()
    finally:
        await recorder.close()
    assert received.messages == ["start", b"\x00\x00"]
    assert sender.stats.dropped_frames == 0
    assert sender.stats.reconnects == 0  # the first successful connection is no reconnect


async def test_a_refusing_target_without_spool_counts_drops_at_close() -> None:
    sender = WsSender(f"ws://127.0.0.1:{free_port()}", policy=FAST)
    sender.send("start")
    sender.send(b"\x00\x00")
    sender.start()
    await until(lambda: sender.stats.connect_failures >= 2)
    sender.send("dtmf")
    await closed(sender, sender.close(timeout=0.2))
    stats = sender.stats
    assert (stats.dropped_frames, stats.dropped_events, stats.sent_frames) == (1, 1, 0)
    assert not stats.connected and not stats.spooled


async def test_headers_are_sent_with_the_handshake(recorder: Recorder) -> None:
    port = await recorder.start()
    sender = WsSender(f"ws://127.0.0.1:{port}", headers={"Authorization": "Bearer s3cret"})
    sender.start()
    sender.send("hello")
    await closed(sender)
    received = await recorder.only_connection_done()
    assert received.headers["Authorization"] == "Bearer s3cret"
    assert received.messages == ["hello"]


async def test_consumer_closing_normally_ends_the_stream_and_counts_drops() -> None:
    recorder = Recorder(read_limit=2)
    try:
        port = await recorder.start()
        sender = WsSender(f"ws://127.0.0.1:{port}", policy=FAST)
        sender.start()
        sender.send("one")
        sender.send("two")
        received = await recorder.only_connection_done()
        assert received.messages == ["one", "two"]
        await until(lambda: not sender.stats.connected)
        sender.send(b"\x00\x00")
        sender.send(b"\x00\x00")
        await closed(sender)
    finally:
        await recorder.close()
    assert len(recorder.connections) == 1  # a 1000 from the consumer is not reconnected
    assert sender.stats.sent_messages == 2
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


async def test_misuse_raises_usage_errors(recorder: Recorder, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        WsSender("http://127.0.0.1:1/")
    with pytest.raises(UsageError):
        WsSender("ws://127.0.0.1:1/", max_queue=0)
    stream_spool = Spool(tmp_path).stream(call_id="c", session_id="s", target="t")
    with pytest.raises(UsageError):
        WsSender("ws://127.0.0.1:1/", spool=stream_spool)  # no format
    with pytest.raises(UsageError):
        WsSender("ws://127.0.0.1:1/", reopen=reopen)  # no format
    with pytest.raises(UsageError):
        WsSender("ws://127.0.0.1:1/", ssl=ssl.create_default_context())  # not wss://
    assert WsSender("ws://user:pw@127.0.0.1:9/calls?token=s3cret").name == "127.0.0.1:9/calls"
    spooled = WsSender("ws://127.0.0.1:1/", format=FMT, spool=stream_spool)
    with pytest.raises(UsageError):
        spooled.send_frame(b"\x00" * 10, pcm=b"\x00" * 10)  # not a whole frame of pcm
    port = await recorder.start()
    sender = WsSender(f"ws://127.0.0.1:{port}")
    sender.start()
    with pytest.raises(UsageError):
        sender.start()
    sender.send_frame(b"\x00\x00")
    with pytest.raises(UsageError):
        sender.send_open("too late")
    await closed(sender)
    with pytest.raises(SenderClosedError):
        sender.send("late")
    await closed(sender)  # idempotent
    await closed(spooled)


async def test_close_without_start_drops_the_buffer() -> None:
    sender = WsSender("ws://127.0.0.1:9/")
    sender.send("start")
    sender.send(b"\x00\x00")
    await closed(sender)
    assert sender.stats.dropped_frames == 1
    with pytest.raises(SenderClosedError):
        sender.start()


async def test_consumer_killed_and_restarted_gets_every_frame_once_after_dedup() -> None:
    frames = noise_frames(240)
    first = Recorder()
    port = await first.start()
    sender = WsSender(f"ws://127.0.0.1:{port}", policy=FAST, format=FMT, reopen=reopen)
    sender.send_open(start_text())
    sender.start()
    second = Recorder()
    try:
        for index, pcm in enumerate(frames):
            if index == 130:
                sender.send_event('{"type":"dtmf","seq":1}')
            if index == 140:
                await until(lambda: len(first.connections[0].frames) >= 130)
                await first.kill()
                await until(lambda: sender.stats.connect_failures >= 1)
                await second.start(port)
            sender.send_frame(pcm, pcm)
            await asyncio.sleep(0.004)
        sender.send_event('{"type":"stop","seq":2}')
        await closed(sender)
    finally:
        await first.close()
        await second.close()
    stats = sender.stats
    assert (stats.reconnects, stats.dropped_frames) == (1, 0)
    assert stats.replayed_frames > 0
    resumed = json.loads(second.connections[0].messages[0])
    # The window is 100 frames: the replay starts inside the audio the first consumer got.
    assert resumed["resumed"] is True
    assert 40 <= resumed["resume_from_frame"] <= len(first.connections[0].frames)
    assert resumed["resume_from_ms"] == resumed["resume_from_frame"] * 20
    audio, events = reassemble(first.connections + second.connections)
    assert audio == frames  # sample for sample: nothing missing, nothing doubled
    assert events == ['{"type":"dtmf","seq":1}', '{"type":"stop","seq":2}']
    # The replayed dtmf sits where it was: after frame 129.
    replay = second.connections[0].messages
    if '{"type":"dtmf","seq":1}' in replay:
        before = replay[: replay.index('{"type":"dtmf","seq":1}')]
        assert resumed["resume_from_frame"] + sum(isinstance(m, bytes) for m in before) == 130


async def test_slow_consumer_is_bounded_counted_and_does_not_block_others() -> None:
    slow, fast = Recorder(read_delay=0.02), Recorder()
    try:
        slow_sender = WsSender(f"ws://127.0.0.1:{await slow.start()}", max_queue=50)
        fast_sender = WsSender(f"ws://127.0.0.1:{await fast.start()}", max_queue=50)
        for sender in (slow_sender, fast_sender):
            sender.send("start")
            sender.start()
        deepest = 0
        for i in range(400):
            for sender in (slow_sender, fast_sender):
                sender.send(i.to_bytes(4, "little") * 16384)  # 64 KiB
            deepest = max(deepest, slow_sender.queued)
            await asyncio.sleep(0.001)
        for sender in (slow_sender, fast_sender):
            sender.send("stop")
        await closed(fast_sender)
        fast_received = await fast.only_connection_done()
        assert slow_sender.stats.dropped_frames > 0  # the slow one is still behind
        await closed(slow_sender, slow_sender.close(timeout=0.5))
    finally:
        await slow.close()
        await fast.close()
    assert len(fast_received.frames) == 400 and fast_sender.stats.dropped_frames == 0
    stats = slow_sender.stats
    assert deepest <= 50  # bounded memory
    assert stats.dropped_frames > 0
    assert stats.sent_frames + stats.dropped_frames == 400
    got = [int.from_bytes(f[:4], "little") for f in slow.connections[0].frames]
    assert got == sorted(got) and len(set(got)) == len(got)  # in order, no duplicates


async def test_refusing_target_is_spooled_with_every_frame(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    frames = noise_frames(100)
    policy = DeliveryPolicy(
        buffer_s=20.0, reconnect_initial_s=0.01, reconnect_max_s=0.05, spool_after_s=0.2
    )
    sender = WsSender(
        f"ws://127.0.0.1:{free_port()}/calls",
        format=FMT,
        policy=policy,
        spool=spool.stream(call_id="call-1", session_id="sess-1", target="consumer"),
        reopen=reopen,
    )
    sender.send_open(start_text())
    sender.start()
    for index, pcm in enumerate(frames):
        if index == 60:
            sender.send_event('{"type":"dtmf"}', event={"type": "dtmf", "digit": "5"})
        sender.send_frame(pcm, pcm)
        await asyncio.sleep(0.002 if index < 50 else 0)
    await until(lambda: sender.stats.spooled)
    sender.send_event('{"type":"stop"}')
    await closed(sender)
    stats = sender.stats
    assert stats.connect_failures >= 2 and stats.sent_frames == 0
    assert (stats.spooled_frames, stats.spooled_events, stats.dropped_frames) == (100, 2, 0)
    assert spool.spooled_calls == 1
    [entry] = spool.list()
    assert (entry.call_id, entry.session_id, entry.target) == ("call-1", "sess-1", "consumer")
    assert (entry.from_frame, entry.frames, entry.complete) == (0, 100, True)
    assert entry.reason.startswith("target down")
    assert entry.path == sender.spool_path
    with wave.open(str(entry.path / "audio.wav"), "rb") as wav:
        assert wav.getnframes() == 100 * FMT.samples_per_frame
        assert wav.readframes(wav.getnframes()) == b"".join(frames)
    lines = [json.loads(line) for line in (entry.path / "events.jsonl").read_text().splitlines()]
    assert lines == [
        {"position": 60, "position_ms": 1200, "event": {"type": "dtmf", "digit": "5"}},
        {"position": 100, "position_ms": 2000, "event": {"messages": ['{"type":"stop"}']}},
    ]
    manifest = json.loads((entry.path / "spool.json").read_text())
    assert manifest["opening"] == [start_text()]


async def test_overflow_while_down_spools_the_whole_buffer(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    frames = noise_frames(150)
    sender = WsSender(
        f"ws://127.0.0.1:{free_port()}",
        format=FMT,
        policy=FAST,  # 100-frame window, spool_after_s=60
        spool=spool.stream(call_id="c", session_id="s", target="t"),
    )
    sender.start()
    for pcm in frames:
        sender.send_frame(pcm, pcm)
    assert sender.stats.spooled and sender.stats.queue_depth == 0
    await closed(sender)
    [entry] = spool.list()
    assert (entry.reason, entry.from_frame, entry.frames) == ("overflow", 0, 150)
    assert sender.stats.dropped_frames == 0


async def test_slow_consumer_overflow_spools_and_spool_covers_the_rest(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    fmt = AudioFormat(48000, 2, 100)  # 19.2 kB frames fill the loopback buffers quickly
    pcm = [bytes([i % 251]) * fmt.frame_bytes for i in range(1200)]
    recorder = Recorder(stall=True)
    try:
        port = await recorder.start()
        sender = WsSender(
            f"ws://127.0.0.1:{port}",
            format=fmt,
            policy=DeliveryPolicy(buffer_s=5.0, ping_interval_s=None),  # 50 frames
            spool=spool.stream(call_id="c", session_id="s", target="t"),
        )
        sender.start()
        await until(lambda: sender.stats.connected)
        for frame_pcm in pcm:
            sender.send_frame(frame_pcm, frame_pcm)
            await asyncio.sleep(0)
        await closed(sender, sender.close(timeout=1.0))
    finally:
        await recorder.close()
    stats = sender.stats
    assert stats.spooled and stats.dropped_frames == 0
    [entry] = spool.list()
    assert entry.reason == "overflow"
    # Everything from the spool's first frame on is on disk; before it, frames were sent.
    assert entry.from_frame + entry.frames == 1200
    assert stats.sent_frames >= entry.from_frame
    with wave.open(str(entry.path / "audio.wav"), "rb") as wav:
        assert wav.readframes(wav.getnframes()) == b"".join(pcm[entry.from_frame :])


async def test_consumer_messages_reach_on_message_and_replies_go_out(recorder: Recorder) -> None:
    got: list[str | bytes] = []
    port = await recorder.start()
    sender = WsSender(f"ws://127.0.0.1:{port}", on_message=got.append)
    sender.send_open("start")
    sender.start()
    await asyncio.wait_for(recorder.connected.wait(), WAIT)
    await recorder.live[0].send('{"event":"mark","name":"m1"}')
    await until(lambda: bool(got))
    sender.send_event('{"event":"mark","name":"m1"}')
    await closed(sender)
    received = await recorder.only_connection_done()
    assert got == ['{"event":"mark","name":"m1"}']
    assert received.messages == ["start", '{"event":"mark","name":"m1"}']
    assert sender.stats.received_messages == 1
