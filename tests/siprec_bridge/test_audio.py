"""OutputShaper: modes, resampling, exact re-chunking, G.711, flush."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from testkit.audio import dominant_hz, rms

from rtp.codecs import alaw_encode, ulaw_encode
from siprec_bridge.audio import FRAME_MS_RANGE, OUTPUT_RATES, OutputShaper
from ws_out.dialects.base import AudioFrame
from ws_out.errors import UsageError

Pcm = npt.NDArray[np.int16]


def tone(freq: float, rate: int, samples: int, amplitude: float = 10000, start: int = 0) -> Pcm:
    t = (np.arange(samples) + start) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def run(shaper: OutputShaper, legs: list[Pcm], in_samples: int) -> list[AudioFrame]:
    """Push ``legs`` (whole signals) in internal frames, then flush."""
    frames: list[AudioFrame] = []
    for start in range(0, len(legs[0]), in_samples):
        frames += shaper.push([leg[start : start + in_samples] for leg in legs])
    return frames + shaper.flush()


def joined(frames: list[AudioFrame]) -> Pcm:
    return np.concatenate([f.pcm for f in frames])


@pytest.mark.parametrize("in_rate", [8000, 16000])
@pytest.mark.parametrize("out_rate", OUTPUT_RATES)
def test_exact_frame_sizes_for_every_rate_and_frame_length(in_rate: int, out_rate: int) -> None:
    in_samples = in_rate // 50  # 20 ms internal frames
    seconds_ms = 620
    legs = [tone(440, in_rate, in_rate * seconds_ms // 1000), tone(1000, in_rate, 0)]
    legs[1] = np.zeros_like(legs[0])
    for frame_ms in [*range(FRAME_MS_RANGE[0], FRAME_MS_RANGE[1] + 1, 10), 15, 25]:
        shaper = OutputShaper(
            mode="stereo",
            channels=2,
            in_rate=in_rate,
            in_frame_ms=20,
            sample_rate=out_rate,
            frame_ms=frame_ms,
        )
        frames = run(shaper, legs, in_samples)
        spf = out_rate * frame_ms // 1000
        assert all(f.pcm.shape == (spf, 2) and f.payload is None for f in frames)
        assert [f.index for f in frames] == list(range(len(frames)))
        assert len(frames) == -(-seconds_ms // frame_ms)  # the input, rounded up to frames
        assert shaper.format.frame_bytes == spf * 2 * 2


@pytest.mark.parametrize("in_frame_ms", [10, 20, 30, 60])
@pytest.mark.parametrize("frame_ms", [10, 20, 50, 200])
def test_rechunking_keeps_every_sample_in_order(in_frame_ms: int, frame_ms: int) -> None:
    """Same rate: output frames are exactly the input samples, re-cut."""
    signal = np.arange(8000 * 3 // 5, dtype=np.int16)  # 600 ms, every sample distinct
    shaper = OutputShaper(
        mode="per-leg", channels=1, in_rate=8000, in_frame_ms=in_frame_ms, frame_ms=frame_ms
    )
    frames = run(shaper, [signal], 8 * in_frame_ms)
    out = joined(frames)[:, 0]
    assert np.array_equal(out[: len(signal)], signal)
    assert not out[len(signal) :].any()  # padding of the last frame only
    assert len(out) - len(signal) < 8 * frame_ms


@pytest.mark.parametrize("out_rate", OUTPUT_RATES)
@pytest.mark.parametrize("in_rate", [8000, 16000])
def test_tone_in_tone_out_aligned_on_call_time(in_rate: int, out_rate: int) -> None:
    in_samples = in_rate // 50
    left, right = tone(440, in_rate, in_rate), tone(1000, in_rate, in_rate)
    shaper = OutputShaper(
        mode="mux",
        channels=2,
        in_rate=in_rate,
        in_frame_ms=20,
        sample_rate=out_rate,
        frame_ms=30,
    )
    out = joined(run(shaper, [left, right], in_samples)).astype(np.float64)
    settled = slice(out_rate // 20, out_rate * 9 // 10)  # away from start and end transients
    for channel, freq in ((0, 440), (1, 1000)):
        x = out[settled, channel]
        assert abs(dominant_hz(x, out_rate) - freq) < 3
        assert abs(rms(x) / (10000 / np.sqrt(2)) - 1) < 0.002
        # frame k covers call time [k·F, (k+1)·F): sample m is the input signal at m / rate
        expected = tone(freq, out_rate, len(out))[settled]
        assert np.abs(x - expected).max() < 8


@pytest.mark.parametrize("out_rate", [16000, 48000])
def test_no_clicks_at_frame_boundaries(out_rate: int) -> None:
    """A continuous sine stays continuous across internal and output frame boundaries."""
    signal = tone(1000, 8000, 8000, amplitude=20000)
    shaper = OutputShaper(
        mode="per-leg",
        channels=1,
        in_rate=8000,
        in_frame_ms=20,
        sample_rate=out_rate,
        frame_ms=30,
    )
    frames = run(shaper, [signal], 160)
    out = joined(frames)[out_rate // 100 : -(out_rate // 10), 0].astype(np.float64)
    steps = np.abs(np.diff(out))
    max_slope = 2 * np.pi * 1000 / out_rate * 20000  # largest step of the ideal sine
    assert steps.max() < max_slope * 1.01 + 2  # no step anywhere, frame boundaries included


def test_mixed_sums_legs_and_saturates() -> None:
    shaper = OutputShaper(mode="mixed", channels=3, in_rate=8000, in_frame_ms=20)
    assert shaper.format.channels == 1
    loud = np.full(160, 30000, dtype=np.int16)
    quiet = np.arange(160, dtype=np.int16)
    frames = shaper.push([loud, loud, quiet])  # 60000+: clipped, not wrapped
    frames += shaper.push([-loud, -loud, -quiet])
    frames += shaper.push([loud, -loud, quiet])
    frames += shaper.push([quiet, quiet, -quiet])
    assert len(frames) == 4
    assert (frames[0].pcm == 32767).all()
    assert (frames[1].pcm == -32768).all()
    assert np.array_equal(frames[2].pcm[:, 0], quiet)
    assert np.array_equal(frames[3].pcm[:, 0], quiet)


@pytest.mark.parametrize(("encoding", "encode"), [("PCMU", ulaw_encode), ("PCMA", alaw_encode)])
def test_g711_frames_carry_octets_and_pcm(encoding: Any, encode: Any) -> None:
    shaper = OutputShaper(
        mode="stereo", channels=2, in_rate=16000, in_frame_ms=20, encoding=encoding, frame_ms=40
    )
    legs = [tone(700, 16000, 320 * 6), tone(1300, 16000, 320 * 6)]
    frames = run(shaper, legs, 320)
    assert shaper.format.frame_bytes == 640
    for f in frames:
        assert f.payload is not None and f.payload.dtype == np.uint8
        assert f.payload.shape == f.pcm.shape == (320, 2)
        assert f.payload.tobytes() == encode(f.pcm)
        assert f.interleaved_bytes() == f.payload.tobytes()
        assert f.channel_bytes(1) == encode(np.ascontiguousarray(f.pcm[:, 1]))
        assert f.pcm_bytes() == f.pcm.astype("<i2").tobytes()


def test_push_takes_arrays_or_leg_lists() -> None:
    a = OutputShaper(mode="stereo", channels=2, in_rate=8000, in_frame_ms=20, sample_rate=24000)
    b = OutputShaper(mode="stereo", channels=2, in_rate=8000, in_frame_ms=20, sample_rate=24000)
    left, right = tone(300, 8000, 160), tone(900, 8000, 160)
    for _ in range(3):
        fa = a.push(np.column_stack((left, right)))
        fb = b.push([left, right])
        assert [f.index for f in fa] == [f.index for f in fb]
        assert all(np.array_equal(x.pcm, y.pcm) for x, y in zip(fa, fb, strict=True))
    mono = OutputShaper(mode="per-leg", channels=1, in_rate=8000, in_frame_ms=20)
    assert np.array_equal(mono.push(left)[0].pcm[:, 0], left)


def test_flush_drains_once() -> None:
    shaper = OutputShaper(mode="per-leg", channels=1, in_rate=8000, in_frame_ms=20, frame_ms=50)
    assert shaper.push([tone(500, 8000, 160)]) == []
    last = shaper.flush()
    assert len(last) == 1 and last[0].pcm.shape == (400, 1)
    assert not last[0].pcm[160:].any()
    assert shaper.flush() == []
    with pytest.raises(UsageError):
        shaper.push([tone(500, 8000, 160)])
    assert OutputShaper(mode="mixed", channels=2, in_rate=8000, in_frame_ms=20).flush() == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "quad", "channels": 2},
        {"mode": "per-leg", "channels": 2},
        {"mode": "stereo", "channels": 0},
        {"mode": "stereo", "channels": 2, "sample_rate": 44100},
        {"mode": "stereo", "channels": 2, "frame_ms": 5},
        {"mode": "stereo", "channels": 2, "frame_ms": 220},
        {"mode": "stereo", "channels": 2, "encoding": "PCMU", "sample_rate": 16000},
        {"mode": "stereo", "channels": 2, "encoding": "G729"},
    ],
)
def test_invalid_configurations(kwargs: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        OutputShaper(in_rate=8000, in_frame_ms=20, **kwargs)


def test_invalid_pushes() -> None:
    shaper = OutputShaper(mode="stereo", channels=2, in_rate=8000, in_frame_ms=20)
    leg = np.zeros(160, dtype=np.int16)
    for bad in (
        [leg],
        [leg, leg, leg],
        [leg, leg[:100]],
        [leg, leg.astype(np.int32)],
        np.zeros((160, 3), dtype=np.int16),
        np.zeros((160, 2), dtype=np.float32),
    ):
        with pytest.raises(UsageError):
            shaper.push(bad)  # type: ignore[arg-type]
    assert shaper.next_index == 0
