"""Consumer-side decoders of every dialect (``docs/dialects.md``), for end-to-end tests.

Each ``decode_*`` function takes the messages one connection received, in order (``str`` for
text frames, ``bytes`` for binary frames, as :class:`testkit.recorder.RecordingServer` keeps
them), and returns a :class:`Decoded`: the audio of every track as int16 columns, the text
messages parsed, the digits and the binary control packets. The decoders are written from the
documentation, independently of the encoders in ``ws_out.dialects``, and fail (``AssertionError``)
on anything that breaks the framing: a frame of the wrong size, an unknown packet kind, a track
or endpoint that was never announced.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from rtp.codecs import alaw_decode, ulaw_decode

Message = str | bytes
Pcm = npt.NDArray[np.int16]

_RCMS_HEADER = struct.Struct(">BBHI")
_RTP_HEADER = struct.Struct(">BBHII")
_SOCKET_HEADER = struct.Struct(">BH")
_AUDIOSOCKET_RATES = {0x10: 8000, 0x11: 12000, 0x12: 16000, 0x13: 24000, 0x16: 48000}
_MEDIA_TYPES = {"audio/x-mulaw": "PCMU", "audio/x-alaw": "PCMA", "audio/x-l16": "L16"}


def pcm_of(payload: bytes, encoding: str) -> Pcm:
    """One track's payload → int16 samples (L16 little-endian, or G.711)."""
    if encoding == "PCMU":
        return ulaw_decode(payload)
    if encoding == "PCMA":
        return alaw_decode(payload)
    assert encoding == "L16", encoding
    return np.frombuffer(payload, dtype="<i2").astype(np.int16)


@dataclass
class Decoded:
    """What one connection carried.

    ``pcm`` has one column per track, in the dialect's order (native: channel index; Twilio and
    Voxology: ``tracks`` of the opening; RCMS: endpoint id; mono dialects: one column).
    ``frames`` counts audio frames per track and ``payload_sizes`` the distinct sizes (octets)
    of one track's frame payload: exactly one size when every frame is exact.
    """

    rate: int
    encoding: str
    tracks: list[str]
    pcm: Pcm
    frames: int
    payload_sizes: set[int]
    texts: list[dict[str, Any]] = field(default_factory=list)
    digits: str = ""
    kinds: list[int] = field(default_factory=list)
    """AudioSocket: the kind of every packet, in order."""
    rtp: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    """VoIPBIN ``rtp``: (V/P/X/CC octet, M/PT octet, sequence, timestamp, SSRC) per packet."""

    @property
    def duration_ms(self) -> float:
        return float(1000 * self.pcm.shape[0] / self.rate)

    def of_type(self, key: str, value: str) -> list[dict[str, Any]]:
        """The text messages whose ``key`` is ``value`` (e.g. ``event``, ``media``)."""
        return [m for m in self.texts if m.get(key) == value]


class _Columns:
    """Per-track payloads gathered in order, then stacked into equal-length columns."""

    def __init__(self, tracks: Sequence[str], encoding: str) -> None:
        self.tracks = list(tracks)
        self.encoding = encoding
        self.parts: dict[str, list[Pcm]] = {t: [] for t in tracks}
        self.sizes: set[int] = set()

    def add(self, track: str, payload: bytes) -> None:
        assert track in self.parts, f"audio for unannounced track {track!r}"
        self.sizes.add(len(payload))
        self.parts[track].append(pcm_of(payload, self.encoding))

    def decoded(self, rate: int, texts: list[dict[str, Any]], **extra: Any) -> Decoded:
        counts = {len(p) for p in self.parts.values()}
        assert len(counts) == 1, f"tracks have different frame counts: {counts}"
        columns = [np.concatenate(p) if p else np.zeros(0, np.int16) for p in self.parts.values()]
        pcm = np.stack(columns, axis=1).astype(np.int16)
        return Decoded(
            rate, self.encoding, self.tracks, pcm, counts.pop(), self.sizes, texts, **extra
        )


def _json(message: str) -> dict[str, Any]:
    value = json.loads(message)
    assert isinstance(value, dict), message[:200]
    return value


def decode_native(messages: Sequence[Message]) -> Decoded:
    """``native``: ``start`` (format), binary frames interleaved by channel, ``dtmf``, ``stop``."""
    texts = [_json(m) for m in messages if isinstance(m, str)]
    start = texts[0]
    assert start["type"] == "start", start
    fmt = start["format"]
    channels, encoding = int(fmt["channels"]), str(fmt["encoding"])
    width = 2 if encoding == "L16" else 1
    frame = fmt["sample_rate"] * fmt["frame_ms"] // 1000 * channels * width
    binaries = [m for m in messages if isinstance(m, bytes)]
    sizes = {len(b) for b in binaries}
    data = b"".join(binaries)
    samples = pcm_of(data, encoding).reshape(-1, channels)
    tracks = [f"ch{i}" for i in range(channels)]
    digits = "".join(m["digit"] for m in texts if m["type"] == "dtmf")
    decoded = Decoded(
        int(fmt["sample_rate"]), encoding, tracks, samples, len(binaries), sizes, texts, digits
    )
    assert sizes <= {frame}, (sizes, frame)
    return decoded


def decode_twilio(messages: Sequence[Message]) -> Decoded:
    """``twilio`` and ``wavix``: JSON only; ``media`` per track, base64 payload."""
    assert all(isinstance(m, str) for m in messages), "twilio/wavix carry text frames only"
    texts = [_json(m) for m in messages if isinstance(m, str)]
    assert texts[0]["event"] == "connected", texts[0]
    start = texts[1]
    assert start["event"] == "start", start
    body = start.get("start", start)  # twilio nests the fields under "start", wavix does not
    fmt = body.get("mediaFormat", body.get("media_format"))
    rate = int(fmt.get("sampleRate", fmt.get("sample_rate")))
    columns = _Columns(body["tracks"], _MEDIA_TYPES[fmt["encoding"]])
    digits = ""
    for message in texts[2:]:
        if message["event"] == "media":
            media = message["media"]
            columns.add(media["track"], base64.b64decode(media["payload"]))
        elif message["event"] == "dtmf":
            digits += message["dtmf"]["digit"]
    return columns.decoded(rate, texts, digits=digits)


def decode_voxology(messages: Sequence[Message]) -> Decoded:
    """``voxology``: ``init_stream``, ``start_track`` per track, ``live_track``, ``stop_track``,
    ``end_stream``."""
    assert all(isinstance(m, str) for m in messages), "voxology carries text frames only"
    texts = [_json(m) for m in messages if isinstance(m, str)]
    init = texts[0]
    assert init["event"] == "init_stream", init
    starts = [m for m in texts if m["event"] == "start_track"]
    fmt = starts[0]["media_format"]
    columns = _Columns(init["tracks"], _MEDIA_TYPES[fmt["encoding"]])
    for message in texts:
        if message["event"] == "live_track":
            columns.add(message["name"], base64.b64decode(message["media"]))
    return columns.decoded(int(fmt["sample_rate"]), texts)


def decode_audiosocket(messages: Sequence[Message]) -> Decoded:
    """Asterisk AudioSocket packets (kind, big-endian length, payload), one per binary frame."""
    assert all(isinstance(m, bytes) for m in messages), "audiosocket carries binary frames only"
    kinds: list[int] = []
    rates: set[int] = set()
    columns = _Columns(["mono"], "L16")
    digits = ""
    for message in messages:
        assert isinstance(message, bytes)
        kind, length = _SOCKET_HEADER.unpack_from(message)
        payload = message[_SOCKET_HEADER.size :]
        assert len(payload) == length, (kind, length, len(payload))
        kinds.append(kind)
        if kind in _AUDIOSOCKET_RATES:
            rates.add(_AUDIOSOCKET_RATES[kind])
            columns.add("mono", payload)
        elif kind == 0x03:
            digits += payload.decode("ascii")
        else:
            assert kind in (0x00, 0x01, 0xFF), f"unknown AudioSocket kind {kind:#x}"
    assert len(rates) == 1, rates
    return columns.decoded(rates.pop(), [], digits=digits, kinds=kinds)


def decode_voipbin(messages: Sequence[Message], encapsulation: str) -> Decoded:
    """``voipbin``: binary frames of 8 kHz mono, ``sln`` (raw L16), ``rtp`` (RTP + μ-law) or
    ``audiosocket``."""
    if encapsulation == "audiosocket":
        return decode_audiosocket(messages)
    assert all(isinstance(m, bytes) for m in messages), "voipbin carries binary frames only"
    if encapsulation == "sln":
        columns = _Columns(["mono"], "L16")
        for message in messages:
            assert isinstance(message, bytes)
            columns.add("mono", message)
        return columns.decoded(8000, [])
    assert encapsulation == "rtp", encapsulation
    columns = _Columns(["mono"], "PCMU")
    headers: list[tuple[int, int, int, int, int]] = []
    for message in messages:
        assert isinstance(message, bytes)
        headers.append(_RTP_HEADER.unpack_from(message))
        columns.add("mono", message[_RTP_HEADER.size :])
    return columns.decoded(8000, [], rtp=headers)


def decode_rcms(messages: Sequence[Message]) -> Decoded:
    """``rcms``: JSON envelope text frames; binary frames with an 8-octet header (version,
    reserved, endpoint id, frame index) per endpoint."""
    texts = [_json(m) for m in messages if isinstance(m, str)]
    start = texts[0]
    assert start["type"] == "session.start", start
    params = start["parameters"]
    fmt = params["mediaFormat"]
    endpoints = [str(e["endpointId"]) for e in params["endpoints"]]
    columns = _Columns(endpoints, fmt["encoding"])
    expected_index: dict[str, int] = dict.fromkeys(endpoints, 0)
    for message in messages:
        if isinstance(message, bytes):
            version, reserved, endpoint, index = _RCMS_HEADER.unpack_from(message)
            assert (version, reserved) == (1, 0), message[:8]
            key = str(endpoint)
            assert index == expected_index[key], (key, index, expected_index[key])
            expected_index[key] = index + 1
            columns.add(key, message[_RCMS_HEADER.size :])
    digits = "".join(m["parameters"]["digit"] for m in texts if m["type"] == "endpoint.dtmf")
    return columns.decoded(int(fmt["sampleRate"]), texts, digits=digits)
