from __future__ import annotations

import itertools
import json
import re
import wave
from pathlib import Path

import pytest

from ws_out import AudioFormat, Spool, UsageError
from ws_out.spool import MAX_MANIFEST_BYTES

FMT = AudioFormat(8000, 2, 20)  # 640-byte frames


def clock() -> itertools.count[float]:
    return itertools.count(1_700_000_000.0, 1.0)


def test_a_spooled_stream_has_wav_events_and_manifest(tmp_path: Path) -> None:
    ticks = clock()
    spool = Spool(tmp_path, clock=lambda: next(ticks))
    stream = spool.stream(call_id="c@host", session_id="3f2b8c1e", target="consumer:8765/calls")
    writer = stream.open(
        format=FMT, from_frame=7, reason="target down", opening=['{"type":"start"}', b"\x01\x02"]
    )
    assert writer.path == tmp_path / "3f2b8c1e-consumer_8765_calls"
    frames = [bytes([i]) * FMT.frame_bytes for i in range(3)]
    writer.write_frame(frames[0])
    writer.write_event(position=8, event={"type": "dtmf", "digit": "#"})
    writer.write_frame(frames[1])
    writer.write_frame(frames[2])
    writer.write_event(position=10, messages=['{"type":"stop"}', b"\xff"])
    writer.close()
    writer.close()  # idempotent
    assert writer.closed and writer.frames == 3

    manifest = json.loads((writer.path / "spool.json").read_text())
    assert manifest == {
        "version": 1,
        "call_id": "c@host",
        "session_id": "3f2b8c1e",
        "target": "consumer:8765/calls",
        "format": {"encoding": "L16", "sample_rate": 8000, "channels": 2, "frame_ms": 20},
        "from_frame": 7,
        "from_ms": 140,
        "reason": "target down",
        "spooled_at": "2023-11-14T22:13:20.000Z",
        "opening": ['{"type":"start"}', {"base64": "AQI="}],
        "complete": True,
        "frames": 3,
        "closed_at": "2023-11-14T22:13:21.000Z",
    }
    with wave.open(str(writer.path / "audio.wav"), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getnframes()) == (2, 8000, 480)
        assert wav.readframes(480) == b"".join(frames)
    events = [json.loads(x) for x in (writer.path / "events.jsonl").read_text().splitlines()]
    assert events == [
        {"position": 8, "position_ms": 160, "event": {"type": "dtmf", "digit": "#"}},
        {
            "position": 10,
            "position_ms": 200,
            "event": {"messages": ['{"type":"stop"}', {"base64": "/w=="}]},
        },
    ]
    [entry] = spool.list()
    assert (entry.path, entry.call_id, entry.from_frame, entry.frames) == (
        writer.path,
        "c@host",
        7,
        3,
    )
    assert entry.complete and entry.duration_s == pytest.approx(0.06)
    assert entry.format == FMT
    assert spool.spooled_calls == 1


def test_a_crashed_writer_is_listed_with_the_audio_on_disk(tmp_path: Path) -> None:
    spool = Spool(tmp_path, flush_every=2)
    writer = spool.stream(call_id="c", session_id="s", target="t").open(
        format=FMT, from_frame=0, reason="overflow"
    )
    for i in range(5):
        writer.write_frame(bytes([i]) * FMT.frame_bytes)
    # Were the process to die now, the disk would hold a valid WAV with the first 4 frames
    # (header patched and data flushed every 2 frames); the 5th is still in a buffer.
    with wave.open(str(writer.path / "audio.wav"), "rb") as wav:
        assert wav.getnframes() == 4 * FMT.samples_per_frame
    [entry] = Spool(tmp_path).list()
    assert (entry.complete, entry.frames) == (False, 4)
    writer.close()
    [entry] = Spool(tmp_path).list()
    assert (entry.complete, entry.frames) == (True, 5)


def test_folders_are_unique_and_names_sanitised(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "new")
    stream = spool.stream(call_id="c", session_id="../../etc", target="a b/c?x=1")
    first = stream.open(format=FMT, from_frame=0, reason="r")
    second = stream.open(format=FMT, from_frame=5, reason="r")
    first.close()
    second.close()
    assert first.path.name == "_.._etc-a_b_c_x_1"
    assert second.path.name == "_.._etc-a_b_c_x_1-2"
    assert all(p.parent == tmp_path / "new" for p in (first.path, second.path))
    assert [e.from_frame for e in spool.list()] == [0, 5]
    assert spool.spooled_calls == 2


def test_list_skips_unusable_folders(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path)
    assert Spool(tmp_path / "missing").list() == []
    good = spool.stream(call_id="c", session_id="s", target="t").open(
        format=FMT, from_frame=0, reason="r"
    )
    good.close()
    (tmp_path / "no-manifest").mkdir()
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "spool.json").write_text("{not json")
    (tmp_path / "other-version").mkdir()
    (tmp_path / "other-version" / "spool.json").write_text('{"version": 2}')
    (tmp_path / "huge").mkdir()
    (tmp_path / "huge" / "spool.json").write_text(" " * (MAX_MANIFEST_BYTES + 1))
    (tmp_path / "bad-format").mkdir()
    manifest = json.loads((good.path / "spool.json").read_text())
    manifest["format"]["channels"] = 0
    (tmp_path / "bad-format" / "spool.json").write_text(json.dumps(manifest))
    (tmp_path / "a-file").write_text("x")
    assert [e.path for e in spool.list()] == [good.path]
    skipped = {
        Path(match[1]).name
        for r in caplog.records
        if (match := re.match(r"spool: skipping (\S+): ", r.getMessage()))
    }
    assert skipped == {"no-manifest", "garbage", "other-version", "huge", "bad-format"}


def test_misuse_raises_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        Spool(tmp_path, flush_every=0)
    stream = Spool(tmp_path).stream(call_id="c", session_id="s", target="t")
    with pytest.raises(UsageError):
        stream.open(format=FMT, from_frame=-1, reason="r")
    writer = stream.open(format=FMT, from_frame=0, reason="r")
    with pytest.raises(UsageError):
        writer.write_frame(b"\x00" * 10)
    with pytest.raises(UsageError):
        writer.write_event(position=0, event={"x": object()})
    writer.close()
    with pytest.raises(UsageError):
        writer.write_frame(b"\x00" * FMT.frame_bytes)
    with pytest.raises(UsageError):
        writer.write_event(position=0)


def test_unwritable_root_raises_oserror(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    stream = Spool(tmp_path / "file" / "spool").stream(call_id="c", session_id="s", target="t")
    with pytest.raises(OSError):
        stream.open(format=FMT, from_frame=0, reason="r")
