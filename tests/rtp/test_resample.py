"""The 8 kHz → 16 kHz polyphase resampler."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from rtp.resample import Upsampler2


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
