"""``audiosocket``: Asterisk AudioSocket framing, one AudioSocket packet per binary WebSocket frame.

AudioSocket (Asterisk ``res_audiosocket``; protocol in the Asterisk documentation "AudioSocket")
packets are a 3-byte header — kind (1 octet), payload length (2 octets, big-endian) — and the
payload:

==========  ==================================================================================
kind        payload
==========  ==================================================================================
``0x00``    hangup (no payload)
``0x01``    the stream's UUID, 16 octets (RFC 4122 binary form)
``0x03``    one DTMF digit, 1 ASCII octet
``0x10``    audio: signed linear 16-bit little-endian mono at 8 kHz
``0x11``…   the same at 12, 16, 24, 32, 44.1 and 48 kHz (``0x11`` to ``0x16``, Asterisk 22+)
``0xff``    error (optional application-specific code)
==========  ==================================================================================

The encoder sends the UUID first (:attr:`CallInfo.stream_uuid`), one audio packet per frame,
one DTMF packet per digit (``flash`` has no AudioSocket form and is not sent), and on close an
error packet (reason ``error`` only) then the hangup. Mono only: ``per-leg`` or ``mixed``. What
the consumer sends (audio to play, hangup) does not apply to a recording and is counted in
``ignored``.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping
from typing import ClassVar, Final

from ws_out.dialects.base import (
    AudioFormat,
    AudioFrame,
    CallInfo,
    Clock,
    CloseInfo,
    DialectBase,
    DtmfInfo,
    Leg,
    Message,
    Mode,
)
from ws_out.errors import UsageError

__all__ = [
    "AUDIO_KINDS",
    "KIND_DTMF",
    "KIND_ERROR",
    "KIND_HANGUP",
    "KIND_UUID",
    "AudioSocketDialect",
    "packet",
]

KIND_HANGUP: Final = 0x00
KIND_UUID: Final = 0x01
KIND_DTMF: Final = 0x03
KIND_ERROR: Final = 0xFF
AUDIO_KINDS: Final[Mapping[int, int]] = {
    8000: 0x10,
    12000: 0x11,
    16000: 0x12,
    24000: 0x13,
    32000: 0x14,
    44100: 0x15,
    48000: 0x16,
}
"""AudioSocket audio kind per sample rate (signed linear 16-bit little-endian mono)."""
MAX_PAYLOAD: Final = 0xFFFF

_HEADER: Final = struct.Struct(">BH")
HANGUP: Final = _HEADER.pack(KIND_HANGUP, 0)


def packet(kind: int, payload: bytes = b"") -> bytes:
    """One AudioSocket packet: kind, big-endian payload length, payload."""
    if len(payload) > MAX_PAYLOAD:
        raise UsageError(f"AudioSocket payload of {len(payload)} octets exceeds {MAX_PAYLOAD}")
    return _HEADER.pack(kind, len(payload)) + payload


class AudioSocketDialect(DialectBase):
    """Asterisk AudioSocket over WebSocket for one mono stream."""

    name: ClassVar[str] = "audiosocket"
    modes: ClassVar[frozenset[str]] = frozenset({"per-leg", "mixed"})
    encodings: ClassVar[frozenset[str]] = frozenset({"L16"})
    sample_rates: ClassVar[frozenset[int] | None] = frozenset(AUDIO_KINDS)
    max_channels: ClassVar[int] = 1

    def __init__(self, *, clock: Clock = time.time) -> None:
        super().__init__(clock=clock)
        self.default_mode = "mixed"
        self._audio_header = b""

    def check(self, mode: Mode, format: AudioFormat) -> None:
        super().check(mode, format)
        if format.frame_bytes > MAX_PAYLOAD:
            raise UsageError(f"{format.frame_ms} ms at {format.sample_rate} Hz exceeds one packet")

    def _open(self, call: CallInfo) -> list[Message]:
        fmt = call.format
        self._audio_header = _HEADER.pack(AUDIO_KINDS[fmt.sample_rate], fmt.frame_bytes)
        return [packet(KIND_UUID, call.stream_uuid.bytes)]

    def _audio(self, frame: AudioFrame) -> list[Message]:
        return [self._audio_header + frame.pcm_bytes()]

    def _dtmf(self, leg: Leg, event: DtmfInfo) -> list[Message]:
        if len(event.digit) != 1:  # "flash" (RFC 4733 event 16)
            return []
        return [packet(KIND_DTMF, event.digit.encode("ascii"))]

    def _close(self, info: CloseInfo) -> list[Message]:
        if info.reason == "error":
            return [packet(KIND_ERROR), HANGUP]
        return [HANGUP]
