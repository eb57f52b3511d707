"""Stateful polyphase FIR resamplers for streams of int16 chunks (numpy only).

* :class:`Upsampler2` - 8 kHz → 16 kHz for chunks of any length. A 64-tap Kaiser-windowed sinc
  (β = 8, cut-off 4 kHz) split into two 32-tap phases: flat to 3.4 kHz (-0.01 dB), images above
  4.6 kHz attenuated by more than 60 dB (above 4.8 kHz by 80 dB). The filter delays the signal
  by a constant 31.5 output samples (≈ 2 ms).
* :class:`Resampler` - any rational ratio ``out_rate / in_rate = L / M`` (e.g. 8 → 16, 24 or
  48 kHz, 16 → 8, 24 or 48 kHz), any number of channels, fixed-size chunks. The prototype
  low-pass runs at ``L · in_rate`` and is designed with the Kaiser formulas (80 dB stop-band,
  cut-off at half the lower of the two rates, transition band 15 % of that rate wide): for
  telephone audio at 8 kHz, flat to 3.4 kHz and ≥ 80 dB down from 4.6 kHz, both for images
  (up-sampling) and aliases (down-sampling). It is linear-phase, and its delay is a constant
  whole number of output samples, ``delay_samples`` (≈ 2 ms with an 8 kHz side, ≈ 1 ms between
  16 and 24/48 kHz), which callers can drop to keep the output aligned with the input.

Both keep their filter history across calls, so a stream cut into chunks gives the same output
as the whole stream at once: there are no discontinuities at chunk boundaries.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided

from .errors import RtpError

__all__ = ["Resampler", "Upsampler2", "kaiser_lowpass"]

_TAPS: Final = 64
_BETA: Final = 8.0
_CUTOFF: Final = 0.25  # cycles per output sample: 4 kHz at 16 kHz


def _design() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    n = np.arange(_TAPS) - (_TAPS - 1) / 2
    h = 2 * _CUTOFF * np.sinc(2 * _CUTOFF * n) * np.kaiser(_TAPS, _BETA)
    h *= 2 / h.sum()  # gain 2 restores the level after zero insertion
    return h[0::2].copy(), h[1::2].copy()


_PHASE0, _PHASE1 = _design()
_HISTORY: Final = _TAPS // 2 - 1


class Upsampler2:
    """Doubles the sample rate of a stream of int16 chunks, keeping filter state across calls."""

    __slots__ = ("_x",)

    def __init__(self) -> None:
        self._x: npt.NDArray[np.float64] = np.zeros(_HISTORY)

    def reset(self) -> None:
        """Forget the previous input (call after a gap: the filter restarts from silence)."""
        self._x = np.zeros(_HISTORY)

    def process(self, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """Return ``2 * len(pcm)`` samples at twice the rate."""
        if not len(pcm):
            return np.empty(0, dtype=np.int16)
        x = np.concatenate((self._x[-_HISTORY:], pcm), dtype=np.float64)
        out = np.empty(2 * len(pcm))
        out[0::2] = np.convolve(x, _PHASE0, "valid")
        out[1::2] = np.convolve(x, _PHASE1, "valid")
        self._x = x
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


# --- rational resampler -------------------------------------------------------------------

STOPBAND_DB: Final = 80.0
"""Stop-band attenuation of :class:`Resampler`'s prototype filter."""
TRANSITION: Final = 0.15
"""Transition band width of :class:`Resampler`, as a fraction of the lower sample rate."""
MAX_RATE: Final = 384_000
_BLOCK_MAX: Final = 32


def kaiser_lowpass(
    rate: int, cutoff: float, transition: float, stopband_db: float, *, delay_multiple: int = 1
) -> npt.NDArray[np.float64]:
    """Linear-phase Kaiser-windowed sinc low-pass at ``rate`` Hz with unity DC gain.

    ``cutoff`` is the -6 dB point and ``transition`` the width of the transition band, in Hz;
    the length follows Kaiser's estimate ``N = (A - 8) / (2.285 · Δω) + 1`` and β his formula
    for ``A > 50 dB`` (β = 0.1102 · (A - 8.7)). The length is odd, ``2·D + 1``, with the delay
    *D* (samples) rounded up to a multiple of ``delay_multiple``.
    """
    delta = 2 * math.pi * transition / rate
    estimate = math.ceil((stopband_db - 8) / (2.285 * delta)) + 1
    delay = -(-(estimate - 1) // (2 * delay_multiple)) * delay_multiple
    taps = 2 * delay + 1
    beta = 0.1102 * (stopband_db - 8.7)
    n = np.arange(taps) - (taps - 1) / 2
    h: npt.NDArray[np.float64] = np.sinc(2 * cutoff / rate * n) * np.kaiser(taps, beta)
    h /= h.sum()
    return h


class Resampler:
    """Converts a stream of int16 chunks from ``in_rate`` to ``out_rate`` (polyphase FIR).

    Calling protocol::

        rs = Resampler(8000, 48000, chunk=160, channels=2)
        out = rs.process(pcm)   # pcm: (chunk, channels) or (chunk,) int16 → (out_chunk, ...) int16

    Every call takes exactly ``chunk`` input samples per channel and returns exactly
    ``out_chunk = chunk · out_rate / in_rate`` samples per channel (``chunk`` must make that a
    whole number). Output sample *m* is the filtered signal at time ``m / out_rate - delay``.
    Equal rates pass the input through unchanged (``delay == 0``). ``up``/``down`` are *L* and
    *M*; ``filter`` is the prototype low-pass at ``in_rate · L`` (DC gain *L*, zero-padded to a
    multiple of *L* taps); ``delay_samples`` its delay in output samples, ``delay`` in seconds.

    Cost: one small matrix product per call. The chunk is cut into blocks of *B* input
    samples; the *B · L / M* outputs of a block depend on *B + T - 1* inputs (*T* taps per
    phase) through the same matrix for every block, so the whole chunk is one GEMM of the
    overlapping block windows (a strided view of a preallocated buffer) by that matrix.
    Raises :class:`RtpError` for unsupported arguments and for a chunk of the wrong shape.
    """

    __slots__ = (
        "_block_view",
        "_buffer",
        "_history",
        "_lanes",
        "_matrix",
        "channels",
        "chunk",
        "delay",
        "delay_samples",
        "down",
        "filter",
        "in_rate",
        "out_chunk",
        "out_rate",
        "up",
    )

    def __init__(self, in_rate: int, out_rate: int, *, chunk: int, channels: int = 1) -> None:
        if not (0 < in_rate <= MAX_RATE and 0 < out_rate <= MAX_RATE):
            raise RtpError(f"sample rates out of range: {in_rate} → {out_rate}")
        if chunk <= 0 or channels <= 0:
            raise RtpError(f"chunk and channels must be positive: {chunk}, {channels}")
        g = math.gcd(in_rate, out_rate)
        up, down = out_rate // g, in_rate // g
        if (chunk * up) % down:
            raise RtpError(f"a chunk of {chunk} samples at {in_rate} Hz is not whole at {out_rate}")
        self.in_rate, self.out_rate, self.up, self.down = in_rate, out_rate, up, down
        self.chunk, self.channels = chunk, channels
        self.out_chunk = chunk * up // down
        if up == down:
            self.delay, self.delay_samples = 0.0, 0
            self.filter = np.ones(1)
            self._history = 0
            return
        low = min(in_rate, out_rate)
        fs = in_rate * up
        # Gain L restores the level after zero insertion; a delay that is a multiple of M is a
        # whole number of output samples; zeros at the end fill the last polyphase column.
        lowpass = up * kaiser_lowpass(
            fs, low / 2, TRANSITION * low, STOPBAND_DB, delay_multiple=down
        )
        delay = (len(lowpass) - 1) // 2
        h = np.zeros(-(-len(lowpass) // up) * up)
        h[: len(lowpass)] = lowpass
        h.flags.writeable = False
        self.filter = h
        taps = len(h) // up  # per phase
        self.delay_samples = delay // down
        self.delay = self.delay_samples / out_rate
        self._history = taps - 1
        block = _block_size(chunk, up, down)
        # Output k of a block (upsampled position k·M) uses phase p = k·M mod L and the inputs
        # base .. base+T-1 of the block window, base = k·M // L; tap j applies to input
        # base + T-1-j, i.e. matrix[base + T-1-j, k] = h[p + j·L].
        per_block = block * up // down
        matrix = np.zeros((block + taps - 1, per_block))
        for k in range(per_block):
            position = k * down
            phase, base = position % up, position // up
            matrix[base : base + taps, k] = h[phase::up][::-1]
        self._matrix = matrix
        # One lane per channel: [history | chunk | padding] with a length that is a multiple of
        # the block size, so that the block windows of all lanes form one strided 2-D view.
        lane = -(-(chunk + taps - 1) // block) * block
        self._buffer = np.zeros(channels * lane + taps - 1)
        self._lanes = self._buffer[: channels * lane].reshape(channels, lane)
        rows = channels * lane // block
        itemsize = self._buffer.itemsize
        self._block_view = as_strided(
            self._buffer, (rows, block + taps - 1), (block * itemsize, itemsize), writeable=False
        )

    def reset(self) -> None:
        """Forget the filter history (the next chunk starts from silence)."""
        if self._history:
            self._buffer.fill(0.0)

    def process(self, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """Resample one chunk: ``(chunk,)`` or ``(chunk, channels)`` int16 in, same layout out."""
        if pcm.dtype != np.int16 or pcm.shape[0] != self.chunk or pcm.ndim > 2:
            raise RtpError(f"expected {self.chunk} int16 samples, got {pcm.dtype} {pcm.shape}")
        mono = pcm.ndim == 1
        if (1 if mono else pcm.shape[1]) != self.channels:
            raise RtpError(f"expected {self.channels} channel(s), got shape {pcm.shape}")
        if not self._history:
            return pcm
        history, chunk, lanes = self._history, self.chunk, self._lanes
        lanes[:, :history] = lanes[:, chunk : chunk + history]
        lanes[:, history : history + chunk] = pcm if mono else pcm.T
        y = (self._block_view @ self._matrix).reshape(self.channels, -1)[:, : self.out_chunk]
        np.rint(y, out=y)
        np.minimum(y, 32767, out=y)  # np.clip costs more on small arrays
        np.maximum(y, -32768, out=y)
        out = y.astype(np.int16)
        return out[0] if mono else out.T


def _block_size(chunk: int, up: int, down: int) -> int:
    """Largest divisor *B* ≤ 32 of ``chunk`` with a whole number of outputs per block."""
    for block in range(min(chunk, _BLOCK_MAX), 0, -1):
        if chunk % block == 0 and (block * up) % down == 0:
            return block
    return chunk  # M > 32 (e.g. 44.1 ↔ 48 kHz): the whole chunk is one block
