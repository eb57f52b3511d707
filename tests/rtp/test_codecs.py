"""G.711 tables (ITU-T G.711) and G.722 (libg722) behind the codec table."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest

from rtp.codecs import (
    CODECS,
    alaw_decode,
    alaw_encode,
    decoder_for,
    encoder_for,
    ulaw_decode,
    ulaw_encode,
)
from rtp.errors import RtpError

ALL_BYTES = bytes(range(256))
ALL_PCM = np.arange(-32768, 32768, dtype=np.int16)


def _audioop() -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:  # Python >= 3.13 without audioop-lts
            pytest.skip("audioop not available")
    return audioop


def _tone(freq: float, rate: int, seconds: float, amplitude: float = 8000) -> npt.NDArray[np.int16]:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _dominant_hz(pcm: npt.NDArray[np.int16], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(np.argmax(spectrum))])


def test_table() -> None:
    assert CODECS["PCMU"].static_payload_type == 0 and CODECS["PCMU"].silence_byte == 0xFF
    assert CODECS["PCMA"].static_payload_type == 8 and CODECS["PCMA"].silence_byte == 0xD5
    g722 = CODECS["G722"]
    assert (g722.rtp_clock, g722.sample_rate, g722.silence_byte) == (8000, 16000, None)
    # RFC 3551 §4.5.2: 160 octets of G.722 are 20 ms = 160 RTP ticks (320 samples).
    assert g722.duration_ticks(160) == 160


def test_ulaw_known_values() -> None:
    assert ulaw_decode(b"\xff\x7f\x00\x80").tolist() == [0, 0, -32124, 32124]
    assert ulaw_encode(np.array([0, -32768, 32767], dtype=np.int16)) == b"\xff\x00\x80"


def test_alaw_known_values() -> None:
    assert alaw_decode(b"\xd5\x55\x2a\xaa").tolist() == [8, -8, -32256, 32256]
    assert alaw_encode(np.array([0, -1, 32767, -32768], dtype=np.int16)) == b"\xd5\x55\xaa\x2a"


def test_silence_bytes_decode_to_near_zero() -> None:
    assert ulaw_decode(bytes([CODECS["PCMU"].silence_byte or 0])).tolist() == [0]
    assert abs(int(alaw_decode(bytes([CODECS["PCMA"].silence_byte or 0]))[0])) <= 8


def test_g711_matches_audioop() -> None:
    audioop = _audioop()
    assert ulaw_decode(ALL_BYTES).tobytes() == audioop.ulaw2lin(ALL_BYTES, 2)
    assert alaw_decode(ALL_BYTES).tobytes() == audioop.alaw2lin(ALL_BYTES, 2)
    assert ulaw_encode(ALL_PCM) == audioop.lin2ulaw(ALL_PCM.tobytes(), 2)
    assert alaw_encode(ALL_PCM) == audioop.lin2alaw(ALL_PCM.tobytes(), 2)


@pytest.mark.parametrize(
    ("decode", "encode"), [(ulaw_decode, ulaw_encode), (alaw_decode, alaw_encode)]
)
def test_g711_round_trip_codes(
    decode: Callable[[bytes], npt.NDArray[np.int16]],
    encode: Callable[[npt.NDArray[np.int16]], bytes],
) -> None:
    # Decoding then encoding reproduces every code (except μ-law 0x7F, the second zero).
    pcm = decode(ALL_BYTES)
    again = encode(pcm)
    differ = [i for i in range(256) if again[i] != i]
    assert differ in ([], [0x7F])


def test_encoders_reject_non_int16() -> None:
    with pytest.raises(RtpError):
        ulaw_encode(np.zeros(4, dtype=np.float32))
    with pytest.raises(RtpError):
        encoder_for("G722").encode(np.zeros(4, dtype=np.int32))


def test_decoder_objects() -> None:
    for name in ("PCMU", "PCMA"):
        decoder = decoder_for(name)
        assert decoder.spec is CODECS[name] and decoder.sample_rate == 8000
        encoder = encoder_for(name)
        pcm = _tone(440, 8000, 0.02)
        assert len(decoder.decode(encoder.encode(pcm))) == 160


def test_unknown_codec_and_rate() -> None:
    with pytest.raises(KeyError):
        decoder_for("G729")
    with pytest.raises(KeyError):
        encoder_for("opus")
    with pytest.raises(RtpError):
        decoder_for("PCMU", sample_rate=16000)
    assert decoder_for("pcma").spec is CODECS["PCMA"]  # RFC 4855 §3: case-insensitive
    assert encoder_for("g722").spec is CODECS["G722"]


@pytest.mark.parametrize("rate", [16000, 8000])
def test_g722_tone(rate: int) -> None:
    encoder = encoder_for("G722")
    decoder = decoder_for("G722", sample_rate=rate)
    tone = _tone(1000, 16000, 0.5)
    out = []
    for i in range(0, len(tone), 320):  # 20 ms packets
        payload = encoder.encode(tone[i : i + 320])
        assert len(payload) == 160
        out.append(decoder.decode(payload))
    pcm = np.concatenate(out)
    assert len(pcm) == len(tone) * rate // 16000
    assert abs(_dominant_hz(pcm[rate // 10 :], rate) - 1000) < 20
    # The level survives (8000 peak → RMS 5657), in both output modes.
    rms = float(np.sqrt(np.mean(pcm[rate // 10 :].astype(np.float64) ** 2)))
    assert 4500 < rms < 6500


def test_g722_decoder_is_stateful_per_object() -> None:
    payload = encoder_for("G722").encode(_tone(1000, 16000, 0.02))
    one = decoder_for("G722")
    first = one.decode(payload).copy()
    second = one.decode(payload)
    assert not np.array_equal(first, second)  # state carried over
    assert np.array_equal(decoder_for("G722").decode(payload), first)
