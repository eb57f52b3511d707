"""Output audio shaping: the call's internal frames → one target's exact output frames.

The media ticker reads one internal frame per leg per tick (``in_frame_ms`` at the call's
internal rate ``in_rate``: 8 kHz, or 16 kHz with G.722 legs), all for the same call time. An
:class:`OutputShaper` turns that stream into what one target connection carries
(:class:`ws_out.dialects.base.AudioFrame`):

1. **mode** — ``stereo``/``mux``: one channel per leg, in the order given; ``per-leg``: the
   connection's single leg; ``mixed``: the legs summed into one channel, saturating at the int16
   limits (no wrap-around);
2. **rate** — resampled to ``sample_rate`` (8, 16, 24 or 48 kHz) by
   :class:`rtp.resample.Resampler`, whose filter state runs across frames (no discontinuity at
   frame boundaries). Its constant delay is taken out: the first ``delay_samples`` output
   samples are dropped, so output frame *k* still covers call time ``[k·F, (k+1)·F)`` exactly.
   The filter looks ~2 ms ahead, so a resampled frame may come one push later;
3. **frame length** — re-chunked into exact frames of ``frame_ms`` (10-200 ms) whatever
   ``in_frame_ms`` is: a push yields zero or more frames;
4. **encoding** — ``L16`` (int16; dialects put it on the wire little-endian), or G.711
   ``PCMU``/``PCMA`` (8 kHz only) through :func:`rtp.codecs.encoder_for`; the frame then carries
   both the octets (``payload``) and the PCM (for the spool).

Calling protocol (sans-I/O, one shaper per target connection)::

    shaper = OutputShaper(mode="stereo", channels=2, in_rate=8000, in_frame_ms=20,
                          sample_rate=16000, frame_ms=40)
    for frame in shaper.push([leg_a_pcm, leg_b_pcm]): ...   # per internal frame (tick)
    for frame in shaper.flush(): ...                         # once, at the end of the call

Cost: per push a few numpy operations on preallocated buffers, one resampler GEMM when the
rates differ and one copy per output frame (``bench/bench_audio.py``). Misuse raises
:exc:`ws_out.errors.UsageError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from rtp.codecs import Encoder, encoder_for
from rtp.resample import Resampler
from ws_out.dialects.base import MODES, AudioFormat, AudioFrame, Encoding, Mode
from ws_out.errors import UsageError

__all__ = ["FRAME_MS_RANGE", "OUTPUT_RATES", "OutputShaper"]

OUTPUT_RATES: Final = (8000, 16000, 24000, 48000)
"""Output sample rates a target may ask for (G.711: 8000 only)."""
FRAME_MS_RANGE: Final = (10, 200)
"""Smallest and largest output frame length, in milliseconds."""

Pcm = npt.NDArray[np.int16]


class OutputShaper:
    """Shapes one target connection's audio: mode, rate, frame length, encoding.

    ``format`` is the output format; ``next_index`` the index of the next output frame (the
    number emitted so far).
    """

    __slots__ = (
        "_encoder",
        "_fill",
        "_finished",
        "_in_samples",
        "_in_total",
        "_input",
        "_mix",
        "_out_total",
        "_pending",
        "_resampler",
        "_skip",
        "_spf",
        "channels",
        "format",
        "mode",
        "next_index",
    )

    def __init__(
        self,
        *,
        mode: Mode,
        channels: int,
        in_rate: int,
        in_frame_ms: int,
        encoding: Encoding = "L16",
        sample_rate: int = 8000,
        frame_ms: int = 20,
    ) -> None:
        """``channels`` is the number of legs pushed (1 in ``per-leg`` mode); ``format`` is
        then the output's (one channel in ``mixed`` and ``per-leg`` mode)."""
        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r}")
        if channels < 1 or (mode == "per-leg" and channels != 1):
            raise UsageError(f"{mode} mode cannot take {channels} leg(s)")
        if sample_rate not in OUTPUT_RATES:
            raise UsageError(f"sample_rate {sample_rate} is not one of {OUTPUT_RATES}")
        if not FRAME_MS_RANGE[0] <= frame_ms <= FRAME_MS_RANGE[1]:
            raise UsageError(f"frame_ms {frame_ms} is outside {FRAME_MS_RANGE}")
        in_format = AudioFormat(in_rate, channels, in_frame_ms)  # validates the input side
        out_channels = 1 if mode == "mixed" else channels
        self.mode, self.channels = mode, channels
        self.format = AudioFormat(sample_rate, out_channels, frame_ms, encoding)
        self.next_index = 0
        self._in_samples = in_format.samples_per_frame
        self._spf = self.format.samples_per_frame
        self._resampler = Resampler(
            in_rate, sample_rate, chunk=self._in_samples, channels=out_channels
        )
        self._skip = self._resampler.delay_samples
        self._encoder: Encoder | None = None if encoding == "L16" else encoder_for(encoding)
        self._input = np.zeros((self._in_samples, channels), dtype=np.int16)
        self._mix = np.zeros(self._in_samples, dtype=np.int32)
        self._pending = np.zeros((self._spf + self._resampler.out_chunk, out_channels), np.int16)
        self._fill = 0
        self._in_total = 0  # input samples per channel pushed
        self._out_total = 0  # output samples per channel emitted in frames
        self._finished = False

    def push(self, frames: Pcm | Sequence[Pcm]) -> list[AudioFrame]:
        """Take one internal frame of every leg — a ``(samples, channels)`` array, or one 1-D
        array per leg — and return the output frames that are complete (zero or more)."""
        if self._finished:
            raise UsageError("push() after flush()")
        pcm = self._gather(frames)
        self._in_total += self._in_samples
        if self.mode == "mixed" and self.channels > 1:
            mix = self._mix  # column by column: cheaper than sum(axis=1) on a few columns
            np.add(pcm[:, 0], pcm[:, 1], out=mix, dtype=np.int32)
            for channel in range(2, self.channels):
                np.add(mix, pcm[:, channel], out=mix)
            np.minimum(mix, 32767, out=mix)  # saturate, not wrap; np.clip has more overhead
            np.maximum(mix, -32768, out=mix)
            pcm = mix.astype(np.int16).reshape(-1, 1)
        return self._take(self._resampler.process(pcm))

    def flush(self) -> list[AudioFrame]:
        """End of the call: drain the filter and pad the last frame with silence, so the output
        covers at least the audio pushed, in whole frames. No push afterwards."""
        if self._finished or not self._in_total:
            self._finished = True
            return []
        self._finished = True
        resampler = self._resampler
        expected = self._in_total * resampler.up // resampler.down
        zeros = np.zeros((self._in_samples, self.format.channels), dtype=np.int16)
        out: list[AudioFrame] = []
        while self._skip or self._out_total + self._fill < expected:
            room = expected - self._out_total - self._fill  # the filter tail beyond: dropped
            out.extend(self._take(resampler.process(zeros), room))
        if self._fill:
            last = np.zeros((self._spf, self.format.channels), dtype=np.int16)
            last[: self._fill] = self._pending[: self._fill]
            self._fill = 0
            out.append(self._frame(last))
        return out

    # -- internals

    def _gather(self, frames: Pcm | Sequence[Pcm]) -> Pcm:
        shape = (self._in_samples, self.channels)
        if isinstance(frames, np.ndarray):
            pcm = frames.reshape(-1, 1) if frames.ndim == 1 else frames
            if pcm.shape != shape or pcm.dtype != np.int16:
                raise UsageError(f"expected int16 {shape}, got {frames.dtype} {frames.shape}")
            return pcm
        if len(frames) != self.channels:
            raise UsageError(f"expected {self.channels} leg frame(s), got {len(frames)}")
        buffer = self._input
        for channel, leg in enumerate(frames):
            if leg.shape != shape[:1] or leg.dtype != np.int16:
                raise UsageError(f"expected int16 ({shape[0]},), got {leg.dtype} {leg.shape}")
            buffer[:, channel] = leg
        return buffer

    def _take(self, pcm: Pcm, room: int | None = None) -> list[AudioFrame]:
        """Append resampled samples (after the delay still to skip, at most ``room``) to the
        pending buffer and cut whole frames from it."""
        if self._skip:
            skipped = min(self._skip, len(pcm))
            self._skip -= skipped
            pcm = pcm[skipped:]
        if room is not None:
            pcm = pcm[:room]
        count = len(pcm)
        if count:
            self._pending[self._fill : self._fill + count] = pcm.reshape(count, -1)
            self._fill += count
        spf = self._spf
        out: list[AudioFrame] = []
        start = 0
        while self._fill - start >= spf:
            out.append(self._frame(self._pending[start : start + spf].copy()))
            start += spf
        if start:
            rest = self._fill - start
            self._pending[:rest] = self._pending[start : self._fill]
            self._fill = rest
        return out

    def _frame(self, pcm: Pcm) -> AudioFrame:
        payload = None
        if self._encoder is not None:
            payload = np.frombuffer(self._encoder.encode(pcm), dtype=np.uint8).reshape(pcm.shape)
        frame = AudioFrame(self.next_index, pcm, payload)
        self.next_index += 1
        self._out_total += self._spf
        return frame
