from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import itertools
import json
import tempfile
import uuid
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from siprec_bridge.consumer import CallSummary, ConsumerServer, _Recording, run_consumer
from ws_out import (
    AudioFormat,
    DeliveryPolicy,
    NativeEncoder,
    Participant,
    ResumePoint,
    Stream,
    StreamStats,
    WavWriter,
    WsSender,
    client_context,
    server_context,
)

WAIT = 10.0
RATE = 16000
FRAME = 320  # 20 ms at 16 kHz
N_FRAMES = 50
CALL_ID = "a84b4c76e66710@pc33.example.com"


class Harness:
    """A ConsumerServer on 127.0.0.1 with a fake clock and a queue of finished calls."""

    def __init__(self, out_dir: Path) -> None:
        self.done: asyncio.Queue[CallSummary] = asyncio.Queue()
        ticks = itertools.count(1000.0, 0.5)
        self.server = ConsumerServer(
            "127.0.0.1", 0, out_dir, on_call_done=self.done.put_nowait, clock=lambda: next(ticks)
        )
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def next_call(self) -> CallSummary:
        return await asyncio.wait_for(self.done.get(), WAIT)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    h.port = await h.server.start()
    yield h
    await h.server.close()


def two_tones() -> np.ndarray[Any, np.dtype[np.int16]]:
    t = np.arange(N_FRAMES * FRAME) / RATE
    left = 8000 * np.sin(2 * np.pi * 440 * t)
    right = 8000 * np.sin(2 * np.pi * 1000 * t)
    return np.column_stack((left, right)).astype(np.int16)


def dominant_hz(samples: np.ndarray[Any, Any]) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    freqs = np.fft.rfftfreq(len(samples), 1 / RATE)
    return float(freqs[int(np.argmax(spectrum))])


def start_message(enc: NativeEncoder, *, mode: str = "stereo", label: str = "1") -> str:
    if mode == "stereo":
        return enc.start(
            call_id=CALL_ID,
            participants=[Participant("p1", "sip:alice@example.com", "Alice"), Participant("p2")],
            streams=[Stream("1", "p1", 0), Stream("2", "p2", 1)],
            format=AudioFormat(RATE, 2),
            mode="stereo",
            started_at=1_700_000_000.0,
        )
    return enc.start(
        call_id=CALL_ID,
        participants=[],
        streams=[Stream(label, None, 0)],
        format=AudioFormat(RATE, 1),
        mode="per-leg",
        started_at=1_700_000_000.0,
    )


async def test_stereo_call_end_to_end(harness: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    sid = str(uuid.uuid4())
    enc = NativeEncoder(sid)
    sender = WsSender(harness.url, max_queue=1000)
    sent_text = [start_message(enc)]
    sender.send(sent_text[0])
    sender.start()
    pcm = two_tones()
    for k in range(N_FRAMES):
        if k in (10, 30):
            digit = "1" if k == 10 else "#"
            sent_text.append(enc.dtmf(digit=digit, duration_ms=100, label="1", position_ms=k * 20))
            sender.send(sent_text[-1])
        sender.send(enc.audio(pcm[k * FRAME : (k + 1) * FRAME]))
    sent_text.append(enc.stop(reason="bye", streams=[StreamStats("1", 50, 0, 0, 0, 0.5)]))
    sender.send(sent_text[-1])
    await asyncio.wait_for(sender.close(), WAIT)
    summary = await harness.next_call()

    call_dir = harness.server.out_dir / CALL_ID
    assert summary == CallSummary(
        session_id=sid,
        call_id=CALL_ID,
        wav_path=call_dir / f"{sid}.wav",
        events_path=call_dir / f"{sid}.events.json",
        duration_s=1.0,
        channels=2,
        sample_rate=RATE,
        frames=N_FRAMES,
        stop_reason="bye",
        labels=["1", "2"],
        dtmf="1#",
        problems=[],
    )
    assert harness.server.summaries == [summary]
    assert capsys.readouterr().out == (
        f"call {CALL_ID} session {sid} 2ch 16000Hz 1.00s frames=50 dtmf=1# stop=bye"
        f" -> {call_dir / (sid + '.wav')}\n"
    )

    with wave.open(str(summary.wav_path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, RATE)
        assert wav.getnframes() == N_FRAMES * FRAME
        audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    assert np.array_equal(audio, pcm)
    assert dominant_hz(audio[:, 0]) == pytest.approx(440, abs=1)
    assert dominant_hz(audio[:, 1]) == pytest.approx(1000, abs=1)

    events = json.loads(summary.events_path.read_text())
    assert [e["message"] for e in events] == [json.loads(t) for t in sent_text]
    assert [e["frames_before"] for e in events] == [0, 10, 30, 50]
    assert [e["received_at"] for e in events] == [1000.5, 1001.0, 1001.5, 1002.0]
    assert not any("error" in e for e in events)


async def test_per_leg_connections_get_one_file_per_label(harness: Harness) -> None:
    sid = str(uuid.uuid4())
    tone = (np.sin(np.arange(FRAME) * 0.3) * 1000).astype(np.int16)
    for label in ("1", "2"):
        enc = NativeEncoder(sid)
        async with connect(harness.url) as ws:
            await ws.send(start_message(enc, mode="per-leg", label=label))
            for _ in range(5):
                await ws.send(enc.audio(tone))
            await ws.send(enc.stop(reason="cancel"))
    summaries = [await harness.next_call(), await harness.next_call()]
    names = sorted(s.wav_path.name for s in summaries if s.wav_path is not None)
    assert names == [f"{sid}-1.wav", f"{sid}-2.wav"]
    for summary in summaries:
        assert (summary.channels, summary.frames, summary.stop_reason) == (1, 5, "cancel")
        assert summary.duration_s == pytest.approx(0.1)


async def test_malformed_input_is_recorded_and_wav_finalised(harness: Harness) -> None:
    sid = str(uuid.uuid4())
    enc = NativeEncoder(sid)
    frame = np.full((FRAME, 2), 7, dtype=np.int16)
    async with connect(harness.url) as ws:
        await ws.send(b"\x00\x00\x00\x00")  # audio before start
        await ws.send("{not json")
        await ws.send("[" * 100_000)  # deep nesting
        await ws.send(start_message(enc))
        await ws.send('{"type":"start"}')  # duplicate
        await ws.send("[1,2]")
        await ws.send('{"type":"mute"}')
        await ws.send('{"type":"dtmf","digit":7}')
        for _ in range(3):
            await ws.send(enc.audio(frame))
        await ws.send(b"\x01\x02\x03")  # not a whole stereo sample frame
        await ws.send(b"\x00" * 8)  # whole sample frames, odd length: kept
    # closed with 1000 but without stop
    summary = await harness.next_call()
    assert summary.stop_reason == "disconnected"
    assert summary.frames == 4
    assert summary.dtmf == ""
    assert summary.wav_path is not None
    with wave.open(str(summary.wav_path), "rb") as wav:
        assert wav.getnframes() == 3 * FRAME + 2
    problems = "\n".join(summary.problems)
    for expected in (
        "not JSON",
        "duplicate start",
        "unknown message type None",
        "unknown message type 'mute'",
        "dtmf without a digit",
        "2 binary frames dropped",
        "1 binary frames of unexpected length",
        "without stop",
    ):
        assert expected in problems
    events = json.loads(summary.events_path.read_text())
    assert len(events) == 7
    assert events[0]["raw"] == "{not json" and events[0]["message"] is None
    assert events[5]["message"] == {"type": "mute"}
    assert len(events[1]["raw"]) == 1000
    assert [("error" in e) for e in events] == [True, True, False, True, True, True, True]

    # The server still serves the next call.
    async with connect(harness.url) as ws:
        await ws.send(start_message(NativeEncoder(sid)))
    assert (await harness.next_call()).wav_path != summary.wav_path
    assert len(await harness.server.wait_for(2, timeout=WAIT)) == 2


async def test_abrupt_disconnect_still_finalises(harness: Harness) -> None:
    sid = str(uuid.uuid4())
    enc = NativeEncoder(sid)
    ws = await connect(harness.url)
    await ws.send(start_message(enc))
    await ws.send(enc.audio(np.zeros((FRAME, 2), dtype=np.int16)))
    await ws.send('{"type":"stop","session_id":"' + sid + '","seq":1}')  # waits for delivery
    ws.transport.abort()
    summary = await harness.next_call()
    assert summary.frames == 1
    assert summary.stop_reason == "disconnected"  # the stop lacked its reason
    assert any("abnormally" in p for p in summary.problems)
    with wave.open(str(summary.wav_path), "rb") as wav:
        assert wav.getnframes() == FRAME


async def test_connection_without_start_and_hostile_names(harness: Harness) -> None:
    async with connect(harness.url) as ws:
        await ws.send('{"type":"stop","reason":"bye"}')
    summary = await harness.next_call()
    assert summary.wav_path is None
    assert summary.stop_reason == "bye"
    assert summary.events_path.parent == harness.server.out_dir / "_unidentified"

    enc = NativeEncoder(str(uuid.uuid4()))
    start = json.loads(start_message(enc))
    start["call_id"] = "../../etc/passwd"
    start["session_id"] = "/tmp/x"
    async with connect(harness.url) as ws:
        await ws.send(json.dumps(start))
    summary = await harness.next_call()
    assert summary.wav_path is not None
    out_dir = harness.server.out_dir.resolve()
    assert summary.wav_path.resolve().parent.parent == out_dir
    assert summary.wav_path.name == "_tmp_x.wav"


async def test_run_consumer_ready_and_stop(tmp_path: Path) -> None:
    ready, stop = asyncio.Event(), asyncio.Event()
    calls: list[CallSummary] = []
    task = asyncio.create_task(
        run_consumer("127.0.0.1", 0, tmp_path, ready=ready, stop=stop, on_call_done=calls.append)
    )
    await asyncio.wait_for(ready.wait(), WAIT)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, WAIT)
    assert calls == []
    assert tmp_path.is_dir()


async def test_server_close_finalises_open_calls(harness: Harness) -> None:
    sid = str(uuid.uuid4())
    enc = NativeEncoder(sid)
    async with connect(harness.url) as ws:
        await ws.send(start_message(enc))
        await ws.send(enc.audio(np.zeros((FRAME, 2), dtype=np.int16)))
        await ws.send(enc.dtmf(digit="5", duration_ms=80, label="2", position_ms=20))
        await asyncio.wait_for(harness.server.close(), WAIT)
        summary = harness.server.summaries[-1]
        assert (summary.session_id, summary.frames, summary.dtmf) == (sid, 1, "5")
        assert summary.stop_reason == "disconnected"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)
FORMATS = st.fixed_dictionaries(
    {},
    optional={
        "encoding": st.sampled_from(["L16", "PCMU", 16]),
        "sample_rate": st.integers(-1, 400_000) | JSON_VALUES,
        "channels": st.integers(-1, 40) | JSON_VALUES,
        "frame_ms": st.integers(-1, 100) | JSON_VALUES,
    },
)
PROTOCOL_LIKE = st.fixed_dictionaries(
    {"type": st.sampled_from(["start", "dtmf", "stop", "other"]) | JSON_VALUES},
    optional={
        "protocol": st.just("siprec-bridge/1") | JSON_VALUES,
        "session_id": st.text(max_size=40) | JSON_VALUES,
        "call_id": st.text(max_size=40) | JSON_VALUES,
        "mode": st.sampled_from(["stereo", "per-leg"]) | JSON_VALUES,
        "format": FORMATS | JSON_VALUES,
        "streams": st.lists(st.fixed_dictionaries({}, optional={"label": JSON_VALUES})),
        "digit": st.sampled_from(["1", "#"]) | JSON_VALUES,
        "reason": st.sampled_from(["bye", "error"]) | JSON_VALUES,
    },
)
INPUTS = st.lists(
    st.text(max_size=50)
    | JSON_VALUES.map(json.dumps)
    | PROTOCOL_LIKE.map(json.dumps)
    | st.binary(max_size=64),
    max_size=12,
)


@settings(max_examples=100, deadline=None)
@given(INPUTS)
def test_any_input_is_recorded_never_raised(inputs: list[str | bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        recording = _Recording(Path(tmp), "conn-1", "peer", 0.0)
        for now, item in enumerate(inputs, 1):
            if isinstance(item, str):
                recording.on_text(item, float(now))
            else:
                recording.on_binary(item)
        summary = recording.finish(100.0)
        events = json.loads(summary.events_path.read_text())
        assert len(events) == sum(isinstance(i, str) for i in inputs)
        assert summary.events_path.resolve().is_relative_to(Path(tmp).resolve())
        if summary.wav_path is not None:
            with wave.open(str(summary.wav_path), "rb") as wav:
                assert wav.getnframes() * summary.channels * 2 <= sum(
                    len(i) for i in inputs if isinstance(i, bytes)
                )


def test_deeply_nested_json_is_rejected(tmp_path: Path) -> None:
    recording = _Recording(tmp_path, "conn-1", "peer", 0.0)
    recording.on_text("[" * 40 + "]" * 40, 1.0)
    recording.on_text('{"type":"stop","reason":"bye"}', 2.0)
    summary = recording.finish(3.0)
    assert "nested deeper than 32" in summary.problems[0]
    assert summary.stop_reason == "bye"
    events = json.loads(summary.events_path.read_text())
    assert events[0]["message"] is None and events[1]["message"]["reason"] == "bye"


async def test_wait_for_counts_finished_connections(harness: Harness) -> None:
    with pytest.raises(TimeoutError):
        await harness.server.wait_for(1, timeout=0.01)

    async def one_call() -> None:
        async with connect(harness.url) as ws:
            await ws.send(start_message(NativeEncoder(str(uuid.uuid4()))))

    waiter = asyncio.create_task(harness.server.wait_for(2, timeout=WAIT))
    await one_call()
    await harness.next_call()
    assert not waiter.done()
    await one_call()
    summaries = await waiter
    assert [s.stop_reason for s in summaries] == ["disconnected", "disconnected"]


# -- resume, slow consumer, wss ---------------------------------------------------------------


def native_reopen(start: str) -> Callable[[ResumePoint], list[str]]:
    """The native dialect's resumed ``start`` (docs/delivery.md): same start, new fields."""
    fields = json.loads(start)

    def reopen(point: ResumePoint) -> list[str]:
        resumed = {
            **fields,
            "resumed": True,
            "resume_from_frame": point.frame,
            "resume_from_ms": point.position_ms,
        }
        return [json.dumps(resumed, separators=(",", ":"))]

    return reopen


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), WAIT)


@pytest.mark.integration
async def test_killed_consumer_restarted_continues_the_same_files(tmp_path: Path) -> None:
    done: asyncio.Queue[CallSummary] = asyncio.Queue()
    first = ConsumerServer("127.0.0.1", 0, tmp_path, on_call_done=done.put_nowait)
    port = await first.start()
    second = ConsumerServer("127.0.0.1", port, tmp_path, on_call_done=done.put_nowait)
    sid = str(uuid.uuid4())
    enc = NativeEncoder(sid)
    start = start_message(enc)
    policy = DeliveryPolicy(
        buffer_s=1.0, ping_interval_s=None, reconnect_initial_s=0.02, reconnect_max_s=0.1
    )
    sender = WsSender(
        f"ws://127.0.0.1:{port}/",
        format=AudioFormat(RATE, 2),
        policy=policy,  # a 50-frame replay window
        reopen=lambda point: [enc.resume(point.frame)],  # the native encoder's resumed start
    )
    sender.send_open(start)
    sender.start()
    rng = np.random.default_rng(5)
    pcm = rng.integers(-20000, 20000, (150 * FRAME, 2)).astype(np.int16)
    try:
        for k in range(150):
            if k in (80, 120):
                digit = "1" if k == 80 else "#"
                sender.send_event(
                    enc.dtmf(digit=digit, duration_ms=60, label="1", position_ms=20 * k)
                )
            if k == 100:
                await until(lambda: sender.stats.sent_frames >= 95)
                await first.abort()  # a crash: 1006 for the bridge, no stop
                killed = await asyncio.wait_for(done.get(), WAIT)
                assert (killed.stop_reason, killed.dtmf) == ("disconnected", "1")
                await second.start()
            frame_pcm = enc.audio(pcm[k * FRAME : (k + 1) * FRAME])
            sender.send_frame(frame_pcm, frame_pcm)
            await asyncio.sleep(0.003)
        sender.send_event(enc.stop(reason="bye"))
        await asyncio.wait_for(sender.close(), WAIT)
        resumed = await asyncio.wait_for(done.get(), WAIT)
    finally:
        await first.close()
        await second.close()
    assert sender.stats.reconnects == 1 and sender.stats.replayed_frames > 0
    assert resumed.resumed and resumed.wav_path == killed.wav_path
    assert resumed.events_path == killed.events_path
    assert resumed.duplicate_frames > 0 and resumed.gap_frames == 0
    assert (resumed.frames, resumed.stop_reason, resumed.dtmf) == (150, "bye", "1#")
    assert resumed.wav_path is not None
    with wave.open(str(resumed.wav_path), "rb") as wav:
        audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    assert np.array_equal(audio, pcm)  # sample for sample: nothing missing, nothing doubled
    events = json.loads(resumed.events_path.read_text())
    kinds = [(e["message"]["type"], e["message"].get("resumed", False)) for e in events]
    assert kinds[0] == ("start", False) and ("start", True) in kinds
    assert [
        e["message"]["digit"]
        for e in events
        if e["message"]["type"] == "dtmf" and not e.get("duplicate")
    ] == ["1", "#"]
    assert [e["frames_before"] for e in events if e["message"]["type"] == "stop"] == [150]


@pytest.mark.integration
async def test_resume_after_a_hard_crash_fills_gaps_and_skips_duplicates(
    harness: Harness,
) -> None:
    sid = str(uuid.uuid4())
    enc = NativeEncoder(sid)
    start = start_message(enc, mode="per-leg", label="7")
    directory = harness.server.out_dir / CALL_ID
    directory.mkdir(parents=True)
    path = directory / f"{sid}-7.wav"
    with WavWriter(path, RATE, 1) as writer:
        for k in range(10):
            writer.write(np.full(FRAME, k, dtype="<i2").tobytes())
    raw = bytearray(path.read_bytes())
    raw[40:44] = bytes(4)  # the crashed consumer never patched the header; no events file
    path.write_bytes(bytes(raw))
    reopen = native_reopen(start)

    async with connect(harness.url) as ws:  # resumes at 15: 5 frames never arrived
        await ws.send(reopen(ResumePoint(15, 300, 2))[0])
        for k in range(15, 18):
            await ws.send(np.full(FRAME, k, dtype="<i2").tobytes())
    gap = await harness.next_call()
    assert (gap.wav_path, gap.resumed, gap.gap_frames, gap.frames) == (path, True, 5, 18)
    assert any("gap of 5 frames" in p for p in gap.problems)

    async with connect(harness.url) as ws:  # replays from 16: 2 duplicates, then new audio
        await ws.send(reopen(ResumePoint(16, 320, 3))[0])
        dtmf = enc.dtmf(digit="9", duration_ms=40, label="7", position_ms=330)
        await ws.send(dtmf)
        for k in range(16, 20):
            await ws.send(np.full(FRAME, k, dtype="<i2").tobytes())
        await ws.send(dtmf)  # replayed again: same seq
        await ws.send(enc.stop(reason="bye"))
    dup = await harness.next_call()
    assert (dup.duplicate_frames, dup.frames, dup.dtmf, dup.stop_reason) == (2, 20, "9", "bye")
    with wave.open(str(path), "rb") as wav:
        audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    expected = [k if k < 10 or k >= 15 else 0 for k in range(20)]
    assert audio.reshape(20, FRAME)[:, 0].tolist() == expected
    events = json.loads(dup.events_path.read_text())
    assert [e.get("duplicate", False) for e in events].count(True) == 1


@pytest.mark.integration
async def test_a_resumed_connection_takes_over_a_live_one(harness: Harness) -> None:
    sid = str(uuid.uuid4())
    enc = NativeEncoder(sid)
    start = start_message(enc)
    frame = np.zeros((FRAME, 2), dtype=np.int16)
    old = await connect(harness.url)
    await old.send(start)
    for _ in range(3):
        await old.send(enc.audio(frame))
    await old.ping()  # everything above was handled
    async with connect(harness.url) as new:
        await new.send(native_reopen(start)(ResumePoint(1, 20, 2))[0])
        taken = await harness.next_call()
        assert any("taken over" in p for p in taken.problems) and taken.frames == 3
        await old.send(enc.audio(frame))  # the old connection no longer writes
        for _ in range(4):
            await new.send(enc.audio(frame))
        await new.send(enc.stop(reason="bye"))
    resumed = await harness.next_call()
    await old.close()
    assert (resumed.duplicate_frames, resumed.frames, resumed.wav_path) == (2, 5, taken.wav_path)
    assert len(harness.server.summaries) == 2  # the old connection's end adds nothing


@pytest.mark.integration
async def test_slow_option_back_pressures_the_sender(tmp_path: Path) -> None:
    server = ConsumerServer("127.0.0.1", 0, tmp_path, read_delay_s=0.01)
    port = await server.start()
    sender = WsSender(f"ws://127.0.0.1:{port}/", max_queue=20)
    enc = NativeEncoder(str(uuid.uuid4()))
    sender.send(start_message(enc))
    sender.start()
    big = np.zeros((FRAME * 50, 2), dtype=np.int16)  # 1 s frames: 64 kB each
    try:
        deepest = 0
        for _ in range(300):
            sender.send(big.tobytes())
            deepest = max(deepest, sender.queued)
            await asyncio.sleep(0.001)
        sender.send(enc.stop(reason="bye"))
        await asyncio.wait_for(sender.close(timeout=0.5), WAIT)
        summary = (await server.wait_for(1, timeout=WAIT))[0]
    finally:
        await server.close()
    assert deepest <= 20 and sender.stats.dropped_frames > 0  # bounded, counted
    assert summary.frames <= sender.stats.sent_frames < 300


@pytest.mark.integration
async def test_wss_consumer_with_a_private_ca(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = ConsumerServer("127.0.0.1", 0, tmp_path / "out", ssl=server_context(cert, key))
    port = await server.start()
    assert server.scheme == "wss"
    sender = WsSender(f"wss://127.0.0.1:{port}/", ssl=client_context(ca_file=cert))
    enc = NativeEncoder(str(uuid.uuid4()))
    sender.send(start_message(enc))
    sender.start()
    sender.send(enc.audio(np.zeros((FRAME, 2), dtype=np.int16)))
    sender.send(enc.stop(reason="bye"))
    try:
        await asyncio.wait_for(sender.close(), WAIT)
        [summary] = await server.wait_for(1, timeout=WAIT)
    finally:
        await server.close()
    assert (summary.frames, summary.stop_reason) == (1, "bye")


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 that is its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "consumer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "consumer.crt", directory / "consumer.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
