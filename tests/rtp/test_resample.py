"""The polyphase resamplers: Upsampler2 (8 → 16 kHz) and Resampler (any L/M, fixed chunks)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from rtp.errors import RtpError
from rtp.resample import Resampler, Upsampler2


def _tone(freq: float, seconds: float) -> npt.NDArray[np.int16]:
    t = np.arange(int(8000 * seconds)) / 8000
    return (10000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def test_chunked_equals_whole() -> None:
    tone = _tone(1000, 0.2)
    chunked = Upsampler2()
    out = np.concatenate([chunked.process(tone[i : i + 160]) for i in range(0, len(tone), 160)])
    assert np.array_equal(out, Upsampler2().process(tone))
    assert len(out) == 2 * len(tone)


def test_passband_level_and_delay() -> None:
    tone = _tone(1000, 0.2)
    out = Upsampler2().process(tone)
    t = (np.arange(len(out)) - 31.5) / 16000  # 31.5 samples of filter delay
    reference = 10000 * np.sin(2 * np.pi * 1000 * t)
    assert np.abs(out[100:] - reference[100:]).max() < 3


def test_image_rejection() -> None:
    tone = _tone(3000, 0.5)  # zero insertion images it at 5 kHz
    out = Upsampler2().process(tone)[200:].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    freqs = np.fft.rfftfreq(len(out), 1 / 16000)
    signal = spectrum[np.argmin(np.abs(freqs - 3000))]
    image = spectrum[np.argmin(np.abs(freqs - 5000))]
    assert 20 * np.log10(image / signal) < -60


def test_reset_and_empty_input() -> None:
    upsampler = Upsampler2()
    upsampler.process(_tone(1000, 0.02))
    assert len(upsampler.process(np.empty(0, dtype=np.int16))) == 0
    upsampler.reset()
    silence = upsampler.process(np.zeros(160, dtype=np.int16))
    assert not silence.any()


# --- Resampler (rational ratio, fixed chunks) ----------------------------------------------

PAIRS = [
    (8000, 16000),
    (8000, 24000),
    (8000, 48000),
    (16000, 8000),
    (16000, 24000),
    (16000, 48000),
    (48000, 8000),
]


def _signal(rate: int, seconds: float, seed: int = 1) -> npt.NDArray[np.int16]:
    """Band-limited noise well inside int16 (the reference below does not clip)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(rate * seconds)) * 4000).clip(-16000, 16000).astype(np.int16)


def _reference(resampler: Resampler, x: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    """Textbook L/M resampling: zero insertion, the prototype filter, decimation (float)."""
    up, down = resampler.up, resampler.down
    stuffed = np.zeros(len(x) * up)
    stuffed[::up] = x
    return np.convolve(stuffed, resampler.filter)[: len(stuffed)][::down]


def _process_chunks(resampler: Resampler, x: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    step = resampler.chunk
    return np.concatenate([resampler.process(x[i : i + step]) for i in range(0, len(x), step)])


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_resampler_chunks_equal_reference(in_rate: int, out_rate: int) -> None:
    resampler = Resampler(in_rate, out_rate, chunk=in_rate // 50)
    x = _signal(in_rate, 0.3)
    out = _process_chunks(resampler, x)
    assert len(out) == len(x) * out_rate // in_rate
    assert np.abs(out - _reference(resampler, x)).max() <= 0.5 + 1e-6  # rounding only


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_resampler_tone_level_frequency_and_delay(in_rate: int, out_rate: int) -> None:
    chunk = in_rate // 100  # 10 ms
    resampler = Resampler(in_rate, out_rate, chunk=chunk)
    t = np.arange(in_rate // 2) / in_rate
    tone = np.rint(10000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    out = _process_chunks(resampler, tone).astype(np.float64)
    t_out = np.arange(len(out)) / out_rate - resampler.delay
    expected = 10000 * np.sin(2 * np.pi * 1000 * t_out)
    settled = slice(int(0.01 * out_rate), None)  # after the filter has filled
    assert np.abs(out[settled] - expected[settled]).max() < 6  # ±1 quantisation, no drift
    assert 0.0009 < resampler.delay < 0.0025
    assert resampler.delay_samples == round(resampler.delay * out_rate)


def _level_db(x: npt.NDArray[np.float64], rate: int, freq: float) -> float:
    window = np.hanning(len(x))
    spectrum = np.abs(np.fft.rfft(x * window)) / window.sum() * 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    near = np.abs(freqs - freq) < 30
    return float(20 * np.log10(spectrum[near].max() + 1e-12))


@pytest.mark.parametrize("out_rate", [16000, 24000, 48000])
def test_resampler_rejects_images(out_rate: int) -> None:
    resampler = Resampler(8000, out_rate, chunk=160)
    t = np.arange(8000) / 8000
    tone = np.rint(16000 * np.sin(2 * np.pi * 3000 * t)).astype(np.int16)
    out = _process_chunks(resampler, tone)[out_rate // 10 :].astype(np.float64)
    signal = _level_db(out, out_rate, 3000)
    assert abs(signal - 20 * np.log10(16000)) < 0.05  # 3 kHz: flat passband
    for image in (5000, 11000):  # 8k - 3k, 8k + 3k
        if image < out_rate / 2:
            assert _level_db(out, out_rate, image) - signal < -75


def test_resampler_rejects_aliases_when_downsampling() -> None:
    resampler = Resampler(16000, 8000, chunk=320)
    t = np.arange(16000) / 16000
    passband = np.rint(8000 * np.sin(2 * np.pi * 3400 * t))
    alias = np.rint(8000 * np.sin(2 * np.pi * 6000 * t))  # would fold to 2 kHz
    out = _process_chunks(resampler, (passband + alias).astype(np.int16))[800:]
    out_f = out.astype(np.float64)
    assert abs(_level_db(out_f, 8000, 3400) - 20 * np.log10(8000)) < 0.1
    assert _level_db(out_f, 8000, 2000) - 20 * np.log10(8000) < -75


def test_resampler_channels_are_independent() -> None:
    left, right = _signal(8000, 0.1, seed=2), _signal(8000, 0.1, seed=3)
    stereo = Resampler(8000, 24000, chunk=80, channels=2)
    out = _process_chunks(stereo, np.column_stack((left, right)))
    assert out.shape == (2400, 2)
    assert np.array_equal(out[:, 0], _process_chunks(Resampler(8000, 24000, chunk=80), left))
    assert np.array_equal(out[:, 1], _process_chunks(Resampler(8000, 24000, chunk=80), right))


def test_resampler_equal_rates_pass_through_and_reset() -> None:
    same = Resampler(8000, 8000, chunk=160, channels=2)
    frame = np.ones((160, 2), dtype=np.int16)
    assert same.process(frame) is frame and same.delay == 0
    resampler = Resampler(8000, 16000, chunk=160)
    resampler.process(_signal(8000, 0.02))
    resampler.reset()
    assert not resampler.process(np.zeros(160, dtype=np.int16)).any()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"in_rate": 8000, "out_rate": 0, "chunk": 160},
        {"in_rate": 8000, "out_rate": 16000, "chunk": 0},
        {"in_rate": 48000, "out_rate": 44100, "chunk": 100},  # 91.875 output samples
    ],
)
def test_resampler_rejects_bad_arguments(kwargs: dict[str, int]) -> None:
    with pytest.raises(RtpError):
        Resampler(**kwargs)


def test_resampler_rejects_bad_chunks() -> None:
    resampler = Resampler(8000, 16000, chunk=160, channels=2)
    for bad in (
        np.zeros((161, 2), dtype=np.int16),
        np.zeros((160, 2), dtype=np.int32),
        np.zeros((160, 3), dtype=np.int16),
        np.zeros(160, dtype=np.int16),
    ):
        with pytest.raises(RtpError):
            resampler.process(bad)


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_resampler_delay_is_whole_output_samples(in_rate: int, out_rate: int) -> None:
    chunk = in_rate // 50
    resampler = Resampler(in_rate, out_rate, chunk=chunk)
    impulse = np.zeros(4 * chunk, dtype=np.int16)
    impulse[chunk] = 20000  # at 20 ms
    out = _process_chunks(resampler, impulse).astype(np.float64)
    peak = out_rate // 50 + resampler.delay_samples
    assert int(np.argmax(out)) == peak
    span = np.arange(1, resampler.delay_samples)
    assert np.allclose(out[peak - span], out[peak + span], atol=1.0)  # linear phase
