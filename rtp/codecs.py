"""Audio codecs of the RTP/AVP profile: facts as a table, decoders and encoders.

* G.711 μ-law / A-law (ITU-T G.711; RFC 3551 §4.5.14): numpy table lookups. The tables are
  built once at import from the ITU-T G.711 segment rules (the same integer algorithm as the
  reference ``g711.c`` used by ``audioop``), so results are bit-identical to ``audioop``.
* G.722 (ITU-T G.722 at 64 kbit/s; RFC 3551 §4.5.2) through libg722 (``import G722``). The RTP
  clock is 8000 Hz although the audio is sampled at 16000 Hz. Decoders and encoders are stateful:
  use one object per stream and feed it the packets in order.

All three carry 8 bits per RTP clock tick (RFC 3551 Table 1), so the duration of a payload in
RTP timestamp units is ``len(payload) * 8 // spec.bits_per_sample``.

:func:`decoder_for` and :func:`encoder_for` raise :class:`KeyError` for an unknown codec name and
:class:`~rtp.errors.RtpError` for an unsupported sample rate; encoders raise
:class:`~rtp.errors.RtpError` when the PCM is not ``int16``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

import G722
import numpy as np
import numpy.typing as npt

from .errors import RtpError

__all__ = [
    "CODECS",
    "CodecSpec",
    "Decoder",
    "Encoder",
    "alaw_decode",
    "alaw_encode",
    "decoder_for",
    "encoder_for",
    "ulaw_decode",
    "ulaw_encode",
]

Pcm = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class CodecSpec:
    """Facts about one codec (RFC 3551 §4.5, Table 4)."""

    name: str
    """Encoding name as in ``a=rtpmap`` (RFC 3551 Table 4)."""
    rtp_clock: int
    """RTP timestamp clock rate in Hz."""
    sample_rate: int
    """Audio sample rate in Hz that the decoder produces and the encoder expects."""
    silence_byte: int | None
    """Payload octet that decodes to silence, ``None`` for a stateful codec without one."""
    static_payload_type: int
    """Static RTP payload type (RFC 3551 Table 4)."""
    bits_per_sample: int = 8
    """Bits per RTP clock tick ("bits/sample" in RFC 3551 Table 1)."""

    def duration_ticks(self, payload_size: int) -> int:
        """Duration of a payload of ``payload_size`` octets in RTP timestamp units."""
        return payload_size * 8 // self.bits_per_sample


CODECS: Final[dict[str, CodecSpec]] = {
    "PCMU": CodecSpec("PCMU", 8000, 8000, 0xFF, 0),
    "PCMA": CodecSpec("PCMA", 8000, 8000, 0xD5, 8),
    "G722": CodecSpec("G722", 8000, 16000, None, 9),
}


class Decoder(Protocol):
    """Turns the payloads of one stream, in order, into int16 PCM at :attr:`sample_rate`."""

    spec: CodecSpec
    sample_rate: int

    def decode(self, payload: bytes) -> Pcm: ...


class Encoder(Protocol):
    """Turns int16 PCM at ``spec.sample_rate`` into payloads (stateful for G.722)."""

    spec: CodecSpec

    def encode(self, pcm: Pcm) -> bytes: ...


# --- G.711 tables (ITU-T G.711; segment end points of the reference g711.c) -------------------

_ULAW_SEG_END: Final = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEG_END: Final = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
_ULAW_BIAS: Final = 0x84
_ULAW_CLIP: Final = 8159


def _ulaw_decode_table() -> Pcm:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def _alaw_decode_table() -> Pcm:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


def _all_int16() -> npt.NDArray[np.int32]:
    """Every int16 value, indexed by its two's complement bit pattern (uint16 view)."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    v = _all_int16() >> 2  # 14-bit linear
    mask = np.where(v < 0, 0x7F, 0xFF)
    v = np.minimum(np.abs(v), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_ULAW_SEG_END, v)
    code = (seg << 4) | ((v >> (seg + 1)) & 0x0F)
    return np.where(seg >= 8, 0x7F ^ mask, code ^ mask).astype(np.uint8)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    v = _all_int16() >> 3  # 13-bit linear
    mask = np.where(v >= 0, 0xD5, 0x55)
    v = np.where(v >= 0, v, -v - 1)
    seg = np.searchsorted(_ALAW_SEG_END, v)
    code = (seg << 4) | (np.where(seg < 2, v >> 1, v >> seg) & 0x0F)
    return np.where(seg >= 8, 0x7F ^ mask, code ^ mask).astype(np.uint8)


_ULAW_DECODE: Final = _ulaw_decode_table()
_ALAW_DECODE: Final = _alaw_decode_table()
_ULAW_ENCODE: Final = _ulaw_encode_table()
_ALAW_ENCODE: Final = _alaw_encode_table()


def ulaw_decode(payload: bytes) -> Pcm:
    """Decode G.711 μ-law octets to int16 samples (one sample per octet)."""
    return _ULAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def alaw_decode(payload: bytes) -> Pcm:
    """Decode G.711 A-law octets to int16 samples (one sample per octet)."""
    return _ALAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def _check_pcm(pcm: Pcm) -> None:
    if pcm.dtype != np.int16:
        raise RtpError(f"PCM must be int16, got {pcm.dtype}")


def ulaw_encode(pcm: Pcm) -> bytes:
    """Encode int16 samples to G.711 μ-law octets (one octet per sample)."""
    _check_pcm(pcm)
    return _ULAW_ENCODE[pcm.view(np.uint16)].tobytes()


def alaw_encode(pcm: Pcm) -> bytes:
    """Encode int16 samples to G.711 A-law octets (one octet per sample)."""
    _check_pcm(pcm)
    return _ALAW_ENCODE[pcm.view(np.uint16)].tobytes()


# --- Decoder / Encoder objects -----------------------------------------------------------------


class _G711Decoder:
    __slots__ = ("_table", "sample_rate", "spec")

    def __init__(self, spec: CodecSpec, table: Pcm) -> None:
        self.spec = spec
        self.sample_rate = spec.sample_rate
        self._table = table

    def decode(self, payload: bytes) -> Pcm:
        return self._table[np.frombuffer(payload, dtype=np.uint8)]


class _G711Encoder:
    __slots__ = ("_table", "spec")

    def __init__(self, spec: CodecSpec, table: npt.NDArray[np.uint8]) -> None:
        self.spec = spec
        self._table = table

    def encode(self, pcm: Pcm) -> bytes:
        _check_pcm(pcm)
        return self._table[pcm.view(np.uint16)].tobytes()


_G722_BITRATE: Final = 64000


class _G722Decoder:
    """libg722 decoder. At 8000 Hz it outputs the lower sub-band only (libg722's 8 kHz mode),
    which is the 0-4 kHz band without the QMF synthesis: half the cost, no resampler needed."""

    __slots__ = ("_codec", "sample_rate", "spec")

    def __init__(self, spec: CodecSpec, sample_rate: int) -> None:
        self.spec = spec
        self.sample_rate = sample_rate
        self._codec = G722.G722(sample_rate, _G722_BITRATE)

    def decode(self, payload: bytes) -> Pcm:
        return np.frombuffer(self._codec.decode(bytes(payload)), dtype=np.int16)


class _G722Encoder:
    __slots__ = ("_codec", "spec")

    def __init__(self, spec: CodecSpec) -> None:
        self.spec = spec
        self._codec = G722.G722(spec.sample_rate, _G722_BITRATE)

    def encode(self, pcm: Pcm) -> bytes:
        _check_pcm(pcm)
        data: bytes = self._codec.encode(np.ascontiguousarray(pcm))
        return data


def decoder_for(name: str, *, sample_rate: int | None = None) -> Decoder:
    """Return a new decoder for codec ``name`` (a key of :data:`CODECS`, any case: RFC 4855 §3).

    ``sample_rate`` defaults to ``CODECS[name].sample_rate``; G.722 also decodes to 8000 Hz
    (lower sub-band). Raises :class:`KeyError` for an unknown name and :class:`RtpError` for a
    sample rate the codec cannot produce.
    """
    spec = CODECS[name.upper()]
    rate = spec.sample_rate if sample_rate is None else sample_rate
    if spec.name == "G722" and rate in (8000, 16000):
        return _G722Decoder(spec, rate)
    if rate != spec.sample_rate:
        raise RtpError(f"{spec.name} cannot be decoded to {rate} Hz")
    return _G711Decoder(spec, _ULAW_DECODE if spec.name == "PCMU" else _ALAW_DECODE)


def encoder_for(name: str) -> Encoder:
    """Return a new encoder for codec ``name`` (a key of :data:`CODECS`, any case); raises
    :class:`KeyError` if unknown. The encoder takes int16 PCM at ``spec.sample_rate``."""
    spec = CODECS[name.upper()]
    if spec.name == "G722":
        return _G722Encoder(spec)
    return _G711Encoder(spec, _ULAW_ENCODE if spec.name == "PCMU" else _ALAW_ENCODE)
