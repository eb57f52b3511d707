from __future__ import annotations

import asyncio
import itertools
import json
import tempfile
import uuid
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from siprec_bridge.consumer import CallSummary, ConsumerServer, _Recording, run_consumer
from ws_out import AudioFormat, NativeEncoder, Participant, Stream, StreamStats, WsSender

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
