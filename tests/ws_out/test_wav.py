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
