from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from ws_out import UsageError, WavWriter


def test_streaming_write_produces_a_valid_wav(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    frames = [np.full((320, 2), i, dtype="<i2") for i in range(5)]
    with WavWriter(path, 16000, 2) as writer:
        for frame in frames:
            writer.write(frame.tobytes())
        assert writer.frames == 1600
        assert writer.duration_s == pytest.approx(0.1)
    assert writer.closed
    with wave.open(str(path), "rb") as reader:
        assert reader.getnchannels() == 2
        assert reader.getsampwidth() == 2
        assert reader.getframerate() == 16000
        assert reader.getnframes() == 1600
        data = reader.readframes(1600)
    assert data == b"".join(f.tobytes() for f in frames)


def test_empty_file_is_still_a_wav(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    WavWriter(path, 8000, 1).close()
    with wave.open(str(path), "rb") as reader:
        assert (reader.getnchannels(), reader.getframerate(), reader.getnframes()) == (1, 8000, 0)


def test_misaligned_data_and_misuse_raise_usage_error(tmp_path: Path) -> None:
    writer = WavWriter(tmp_path / "x.wav", 8000, 2)
    with pytest.raises(UsageError):
        writer.write(b"\x00" * 6)  # 1.5 stereo sample frames
    assert writer.frames == 0
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(UsageError):
        writer.write(b"\x00" * 4)
    with pytest.raises(UsageError):
        WavWriter(tmp_path / "y.wav", 0, 1)


def test_unwritable_path_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        WavWriter(tmp_path / "missing-dir" / "x.wav", 8000, 1)


def test_append_continues_a_file_and_flush_keeps_it_valid(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    first = np.arange(640, dtype="<i2").tobytes()
    second = np.arange(640, 1280, dtype="<i2").tobytes()
    with WavWriter(path, 8000, 2) as writer:
        writer.write(first)
    with WavWriter(path, 8000, 2, append=True) as writer:
        assert writer.frames == 320
        writer.write(second)
        writer.flush()
        with wave.open(str(path), "rb") as reader:  # valid while still open
            assert reader.getnframes() == 640
        assert writer.duration_s == pytest.approx(0.08)
    with wave.open(str(path), "rb") as reader:
        assert reader.readframes(640) == first + second
    fresh = tmp_path / "fresh.wav"
    with WavWriter(fresh, 8000, 1, append=True) as writer:  # nothing to continue: created
        writer.write(b"\x01\x00")
    with wave.open(str(fresh), "rb") as reader:
        assert reader.getnframes() == 1


def test_append_after_a_crash_uses_the_file_size(tmp_path: Path) -> None:
    path = tmp_path / "crashed.wav"
    writer = WavWriter(path, 8000, 2)
    writer.write(b"\x01\x00\x02\x00" * 100)
    writer.close()
    raw = bytearray(path.read_bytes())
    raw[4:8] = raw[40:44] = b"\x00\x00\x00\x00"  # header never patched
    path.write_bytes(bytes(raw) + b"\x07\x00")  # and half a sample frame at the end
    with WavWriter(path, 8000, 2, append=True) as writer:
        assert writer.frames == 100
        writer.write(b"\x03\x00\x04\x00")
    with wave.open(str(path), "rb") as reader:
        assert reader.getnframes() == 101
        assert reader.readframes(101)[-8:] == b"\x01\x00\x02\x00\x03\x00\x04\x00"


def test_append_refuses_other_formats_and_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "mono.wav"
    WavWriter(path, 8000, 1).close()
    with pytest.raises(UsageError, match="does not match"):
        WavWriter(path, 8000, 2, append=True)
    with pytest.raises(UsageError, match="does not match"):
        WavWriter(path, 16000, 1, append=True)
    foreign = tmp_path / "foreign.wav"
    foreign.write_bytes(b"RIFF\x00\x00\x00\x00WAVEJUNK" + b"\x00" * 40)
    with pytest.raises(UsageError, match="canonical"):
        WavWriter(foreign, 8000, 1, append=True)
    short = tmp_path / "short.wav"
    short.write_bytes(b"RIFF")
    with pytest.raises(UsageError, match="too short"):
        WavWriter(short, 8000, 1, append=True)
    assert short.read_bytes() == b"RIFF"  # untouched
    writer = WavWriter(tmp_path / "closed.wav", 8000, 1)
    writer.close()
    with pytest.raises(UsageError):
        writer.flush()
