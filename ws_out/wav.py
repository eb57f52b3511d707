"""Streaming WAV (RIFF/WAVE, PCM 16-bit little-endian) writer on top of stdlib :mod:`wave`.

Calling protocol: ``WavWriter(path, sample_rate, channels)``, any number of
``write(pcm_bytes)`` with interleaved little-endian int16 sample frames (the payload of a
native-protocol binary frame), then ``close()`` (or use it as a context manager). The RIFF
and ``data`` chunk lengths are written by ``close()``; until then the file has a provisional
header.
"""

from __future__ import annotations

import wave
from pathlib import Path
from types import TracebackType
from typing import Final

from ws_out.errors import UsageError

__all__ = ["WavWriter"]

_SAMPLE_WIDTH: Final = 2


class WavWriter:
    """Append PCM16 audio to a WAV file; ``OSError`` from the file system propagates."""

    __slots__ = ("_file", "_frames", "_wave", "channels", "path", "sample_rate")

    def __init__(self, path: Path | str, sample_rate: int, channels: int) -> None:
        if sample_rate <= 0 or channels <= 0:
            raise UsageError(f"invalid WAV format: {sample_rate} Hz, {channels} channels")
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.channels = channels
        self._frames = 0
        # Open the file ourselves: wave.open(<path>) leaks an error from __del__ when the
        # open fails. Both objects live until close().
        self._file = open(self.path, "wb")  # noqa: SIM115
        writer = wave.open(self._file, "wb")  # noqa: SIM115
        writer.setnchannels(channels)
        writer.setsampwidth(_SAMPLE_WIDTH)
        writer.setframerate(sample_rate)
        self._wave: wave.Wave_write | None = writer

    @property
    def frames(self) -> int:
        """Sample frames (one sample per channel) written so far."""
        return self._frames

    @property
    def duration_s(self) -> float:
        """Audio written so far, in seconds."""
        return self._frames / self.sample_rate

    @property
    def closed(self) -> bool:
        return self._wave is None

    def write(self, pcm: bytes) -> None:
        """Append interleaved little-endian int16 sample frames."""
        if self._wave is None:
            raise UsageError(f"write() on closed WAV file {self.path}")
        frame_size = _SAMPLE_WIDTH * self.channels
        if len(pcm) % frame_size:
            raise UsageError(f"{len(pcm)} bytes is not a whole number of {frame_size}-byte frames")
        self._wave.writeframesraw(pcm)
        self._frames += len(pcm) // frame_size

    def close(self) -> None:
        """Write the final header lengths and close the file (idempotent)."""
        if self._wave is not None:
            writer, self._wave = self._wave, None
            try:
                writer.close()
            finally:
                self._file.close()

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
