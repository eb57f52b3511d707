"""``voipbin``: VoIPBIN media-stream binary frames, the call's legs mixed into one mono stream.

VoIPBIN streams the call audio (both parties mixed) as binary WebSocket frames in one of three
encapsulations (its ``encapsulation`` parameter), all 8 kHz mono:

* ``sln``: raw signed linear 16-bit little-endian samples (320 octets per 20 ms);
* ``rtp``: one RTP packet per frame (RFC 3550 §5.1: 12-octet header, version 2, payload type 0)
  carrying G.711 μ-law (RFC 3551 §4.5.14; 160 octets per 20 ms). The SSRC and the initial
  sequence number and timestamp come from the stream UUID (random for a UUID4 session id, as
  §5.1 asks, and the same after a reconnection); the timestamp is the frame's call time in
  samples, the marker bit is set on the first packet (RFC 3551 §4.1);
* ``audiosocket``: Asterisk AudioSocket packets (:mod:`ws_out.dialects.audiosocket`): the UUID,
  then one ``0x10`` audio packet per frame, DTMF packets, and the hangup on close.

There are no control messages in ``sln`` and ``rtp``: DTMF is not sent and the stream ends with
the WebSocket close. Modes ``mixed`` (the default, as VoIPBIN does) and ``per-leg``. Nothing
from the consumer applies to a recording: it is counted in ``ignored``.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping
from typing import ClassVar, Final, Literal, get_args

from ws_out.dialects.audiosocket import AudioSocketDialect
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

__all__ = ["ENCAPSULATIONS", "Encapsulation", "VoipbinDialect"]

Encapsulation = Literal["sln", "rtp", "audiosocket"]
ENCAPSULATIONS: Final[frozenset[str]] = frozenset(get_args(Encapsulation))
_ENCODING: Final[Mapping[str, str]] = {"sln": "L16", "rtp": "PCMU", "audiosocket": "L16"}

_RTP: Final = struct.Struct(">BBHII")
_RTP_VERSION: Final = 0x80  # V=2, P=0, X=0, CC=0 (RFC 3550 §5.1)
_MARKER: Final = 0x80
_PCMU: Final = 0  # RFC 3551 Table 4


class VoipbinDialect(DialectBase):
    """VoIPBIN binary media stream for one mono stream."""

    name: ClassVar[str] = "voipbin"
    modes: ClassVar[frozenset[str]] = frozenset({"mixed", "per-leg"})
    sample_rates: ClassVar[frozenset[int] | None] = frozenset({8000})
    max_channels: ClassVar[int] = 1

    def __init__(self, *, clock: Clock = time.time, encapsulation: Encapsulation = "sln") -> None:
        super().__init__(clock=clock)
        if encapsulation not in ENCAPSULATIONS:
            raise UsageError(f"unknown VoIPBIN encapsulation {encapsulation!r}")
        self.encapsulation = encapsulation
        self.default_mode = "mixed"
        self.default_encoding = "PCMU" if encapsulation == "rtp" else "L16"
        self._socket = AudioSocketDialect(clock=clock) if encapsulation == "audiosocket" else None
        self._ssrc = self._seq0 = self._ts0 = 0

    def check(self, mode: Mode, format: AudioFormat) -> None:
        super().check(mode, format)
        if format.encoding != _ENCODING[self.encapsulation]:
            raise UsageError(f"{self.encapsulation} carries {_ENCODING[self.encapsulation]}")

    def _open(self, call: CallInfo) -> list[Message]:
        if self._socket is not None:
            return self._socket.open(call)
        if self.encapsulation == "rtp":
            ids = call.stream_uuid.bytes
            self._ssrc = int.from_bytes(ids[0:4])
            self._seq0 = int.from_bytes(ids[4:6])
            self._ts0 = int.from_bytes(ids[12:16])
        return []

    def _audio(self, frame: AudioFrame) -> list[Message]:
        if self._socket is not None:
            return self._socket.audio(frame)
        if self.encapsulation == "sln":
            return [frame.pcm_bytes()]
        header = _RTP.pack(
            _RTP_VERSION,
            _PCMU | (_MARKER if self._frames == 0 else 0),
            (self._seq0 + self._frames) & 0xFFFF,
            (self._ts0 + frame.index * frame.samples) & 0xFFFFFFFF,
            self._ssrc,
        )
        return [header + frame.channel_bytes(0)]

    def _dtmf(self, leg: Leg, event: DtmfInfo) -> list[Message]:
        return self._socket.dtmf(event) if self._socket is not None else []

    def _close(self, info: CloseInfo) -> list[Message]:
        return self._socket.close(info) if self._socket is not None else []
