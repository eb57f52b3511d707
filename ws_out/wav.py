"""Streaming WAV (RIFF/WAVE, ``WAVE_FORMAT_PCM`` 16-bit little-endian) writer that can append.

The file layout is the canonical 44-byte header written by stdlib :mod:`wave` (Microsoft
RIFF/WAVE; the PCM ``fmt`` chunk of RFC 2361 appendix A)::

    "RIFF" <riff size> "WAVE" "fmt " 16 <format 1> <channels> <rate> <byte rate> <align> 16
    "data" <data size> <interleaved little-endian int16 sample frames...>

Calling protocol: ``WavWriter(path, sample_rate, channels)``, any number of
``write(pcm_bytes)`` with interleaved little-endian int16 sample frames (the payload of a
native-protocol binary frame), optionally ``flush()``, then ``close()`` (or use it as a context
manager). Until ``flush()``/``close()`` the header lengths are provisional; ``flush()`` patches
them so that the file is a valid WAV at that point (crash safety for long recordings).

Stdlib :mod:`wave` can neither continue an existing file nor patch the header mid-stream,
hence this small writer. ``append=True`` reopens a file this writer (or :mod:`wave`) produced
and continues it: the audio length is taken from the file size, not the header, so a file
whose writer died before patching the header is continued correctly (a trailing partial
sample frame is cut off).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final

from ws_out.errors import UsageError

__all__ = ["HEADER_BYTES", "WavWriter"]

_SAMPLE_WIDTH: Final = 2
_FORMAT_PCM: Final = 1
HEADER_BYTES: Final = 44
"""Length of the canonical RIFF/WAVE PCM header."""
_HEADER: Final = struct.Struct("<4sI4s4sIHHIIHH4sI")
_MAX_DATA_BYTES: Final = 0xFFFF_FFFF - (HEADER_BYTES - 8)  # RIFF sizes are 32-bit


def _header(sample_rate: int, channels: int, data_bytes: int) -> bytes:
    align = channels * _SAMPLE_WIDTH
    return _HEADER.pack(
        b"RIFF",
        HEADER_BYTES - 8 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        _FORMAT_PCM,
        channels,
        sample_rate,
        sample_rate * align,
        align,
        8 * _SAMPLE_WIDTH,
        b"data",
        data_bytes,
    )


def _check_header(raw: bytes, path: Path, sample_rate: int, channels: int) -> None:
    if len(raw) < HEADER_BYTES:
        raise UsageError(f"{path}: too short for a WAV header")
    riff, _, wave_id, fmt_id, fmt_len, fmt, nch, rate, _, _, bits, data_id, _ = _HEADER.unpack(raw)
    if (riff, wave_id, fmt_id, fmt_len, data_id) != (b"RIFF", b"WAVE", b"fmt ", 16, b"data"):
        raise UsageError(f"{path}: not a canonical 44-byte PCM WAV header, cannot append")
    if (fmt, bits, nch, rate) != (_FORMAT_PCM, 8 * _SAMPLE_WIDTH, channels, sample_rate):
        raise UsageError(
            f"{path}: format {rate} Hz x {nch} ({bits}-bit, format {fmt}) does not match"
            f" {sample_rate} Hz x {channels} (16-bit PCM)"
        )


class WavWriter:
    """Append PCM16 audio to a WAV file; ``OSError`` from the file system propagates."""

    __slots__ = ("_file", "_frame_size", "_frames", "channels", "path", "sample_rate")

    def __init__(
        self, path: Path | str, sample_rate: int, channels: int, *, append: bool = False
    ) -> None:
        if sample_rate <= 0 or channels <= 0:
            raise UsageError(f"invalid WAV format: {sample_rate} Hz, {channels} channels")
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.channels = channels
        self._frame_size = _SAMPLE_WIDTH * channels
        self._frames = 0
        file: BinaryIO | None = None
        if append:
            try:
                file = open(self.path, "r+b")  # noqa: SIM115 - lives until close()
            except FileNotFoundError:
                file = None
        try:
            if file is not None and os.fstat(file.fileno()).st_size > 0:
                _check_header(file.read(HEADER_BYTES), self.path, sample_rate, channels)
                size = file.seek(0, os.SEEK_END)
                self._frames = (size - HEADER_BYTES) // self._frame_size
                end = HEADER_BYTES + self._frames * self._frame_size
                if end != size:
                    file.truncate(end)
                file.seek(end)
            else:
                if file is None:
                    file = open(self.path, "wb")  # noqa: SIM115 - lives until close()
                file.write(_header(sample_rate, channels, 0))
        except BaseException:
            if file is not None:
                file.close()
            raise
        self._file: BinaryIO | None = file

    @property
    def frames(self) -> int:
        """Sample frames (one sample per channel) in the file so far."""
        return self._frames

    @property
    def duration_s(self) -> float:
        """Audio in the file so far, in seconds."""
        return self._frames / self.sample_rate

    @property
    def closed(self) -> bool:
        return self._file is None

    def write(self, pcm: bytes) -> None:
        """Append interleaved little-endian int16 sample frames."""
        file = self._file
        if file is None:
            raise UsageError(f"write() on closed WAV file {self.path}")
        if len(pcm) % self._frame_size:
            raise UsageError(
                f"{len(pcm)} bytes is not a whole number of {self._frame_size}-byte frames"
            )
        if (self._frames * self._frame_size) + len(pcm) > _MAX_DATA_BYTES:
            raise UsageError(f"{self.path}: WAV data would exceed the 4 GiB RIFF limit")
        file.write(pcm)
        self._frames += len(pcm) // self._frame_size

    def flush(self) -> None:
        """Write the current lengths into the header and flush to the OS."""
        file = self._file
        if file is None:
            raise UsageError(f"flush() on closed WAV file {self.path}")
        end = file.tell()
        file.seek(0)
        file.write(_header(self.sample_rate, self.channels, self._frames * self._frame_size))
        file.seek(end)
        file.flush()

    def close(self) -> None:
        """Write the final header lengths and close the file (idempotent)."""
        file = self._file
        if file is not None:
            try:
                self.flush()
            finally:
                self._file = None
                file.close()

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
