"""Sans-I/O encoder for the siprec-bridge native WebSocket protocol, version 1.

The protocol is specified in ``docs/protocol.md`` (JSON Schema: ``docs/protocol-v1.schema.json``).
It runs over one WebSocket connection (RFC 6455) per consumer stream:

* text frames (RFC 6455 §5.6, opcode 0x1) carry one UTF-8 JSON object (RFC 8259) each:
  ``start`` (exactly once, first), ``dtmf`` (any number), ``stop`` (exactly once, last);
* binary frames (opcode 0x2) carry exactly ``frame_ms`` of audio as signed 16-bit linear PCM
  ("L16", RFC 3551 §4.5.11, but **little-endian**, as in WAV), interleaved when stereo; or, when a
  target is configured for it (v1.1), as G.711 octets (``PCMU``/``PCMA``, RFC 3551 §4.5.14), one
  octet per sample, interleaved the same way.

Calling protocol of :class:`NativeEncoder` (one encoder per connection)::

    enc = NativeEncoder(session_id)
    ws.send(enc.start(...))          # once
    ws.send(enc.audio(frame))        # per output frame (hot path)
    ws.send(enc.dtmf(...))           # whenever a digit completes
    ws.send(enc.stop(...))           # once, then close the connection with 1000
    new_ws.send(enc.resume(frame))   # v1.1: the stream continues on a new connection

The encoder performs no I/O and reads no clock: wall-clock values (``started_at``) are passed in.
Misuse raises :exc:`ws_out.errors.UsageError`; nothing else is raised on purpose.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal, get_args

import numpy as np
import numpy.typing as npt

from ws_out.errors import UsageError

__all__ = [
    "CORRELATION_HEADERS",
    "DTMF_DIGITS",
    "ENCODING",
    "ENCODINGS",
    "PROTOCOL",
    "STOP_REASONS",
    "AudioFormat",
    "Encoding",
    "Mode",
    "NativeEncoder",
    "Participant",
    "StopReason",
    "Stream",
    "StreamStats",
    "select_sip_headers",
]

PROTOCOL: Final = "siprec-bridge/1"
"""Value of ``protocol`` in every ``start`` message of this version."""

ENCODING: Final = "L16"
"""The default (and v1.0's only) encoding of the binary frames."""

Mode = Literal["stereo", "per-leg", "mixed"]
Encoding = Literal["L16", "PCMU", "PCMA"]
ENCODINGS: Final[frozenset[str]] = frozenset(get_args(Encoding))
_BYTES_PER_SAMPLE: Final[Mapping[str, int]] = {"L16": 2, "PCMU": 1, "PCMA": 1}
_G711_RATE: Final = 8000
StopReason = Literal["bye", "cancel", "timeout", "shutdown", "error"]
STOP_REASONS: Final[frozenset[str]] = frozenset(get_args(StopReason))
_MODES: Final[frozenset[str]] = frozenset(get_args(Mode))

DTMF_DIGITS: Final[frozenset[str]] = frozenset([*"0123456789*#ABCD", "flash"])  # RFC 4733 §3.2
"""RFC 4733 §3.2 events 0-15, as characters."""

CORRELATION_HEADERS: Final[tuple[str, ...]] = (
    "cisco-guid",
    "session-id",
    "x-broadworks-correlation-info",
    "user-to-user",
    "x-cisco-recording-participant",
    "x-audc-call-id",
    "diversion",
    "p-asserted-identity",
    "x-call-direction",
)
"""SIP headers (lower case) copied into ``start.sip`` when present (vendor correlation ids)."""

# RFC 3261 §7.3.3 compact forms of the headers we copy.
_COMPACT: Final[Mapping[str, str]] = {"f": "from", "t": "to"}
_SIP_WANTED: Final[frozenset[str]] = frozenset(("from", "to", *CORRELATION_HEADERS))

_LE_INT16: Final = np.dtype("<i2")
_OCTETS: Final = np.dtype(np.uint8)
_MAX_CHANNELS: Final = 32
_MAX_SAMPLE_RATE: Final = 384_000
_STATS_FIELDS: Final[frozenset[str]] = frozenset(
    ("label", "packets", "lost", "late", "duplicates", "jitter_ms")
)

_NEW: Final = 0
_STARTED: Final = 1
_STOPPED: Final = 2

_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


@dataclass(frozen=True, slots=True)
class Participant:
    """A recorded party (RFC 7865 §6.4); ``id`` is its metadata ``participant_id``."""

    id: str
    aor: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Stream:
    """A recorded stream (RFC 7865 §6.5), identified by its SDP ``a=label`` (RFC 4574).

    ``participant_id`` is the participant that *sends* on the stream, or ``None`` when the
    metadata does not say. ``channel`` is its channel index in the binary frames.
    """

    label: str
    participant_id: str | None
    channel: int


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """Format of the binary frames: ``encoding`` at ``sample_rate``, ``frame_ms`` per frame.

    ``L16`` is signed 16-bit little-endian; ``PCMU``/``PCMA`` are G.711 octets (8000 Hz only).
    """

    sample_rate: int
    channels: int
    frame_ms: int = 20
    encoding: Encoding = ENCODING

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise UsageError(f"unknown encoding {self.encoding!r}")
        if self.encoding != ENCODING and self.sample_rate != _G711_RATE:
            raise UsageError(f"{self.encoding} is sampled at 8000 Hz, not {self.sample_rate}")
        if not 0 < self.sample_rate <= _MAX_SAMPLE_RATE:
            raise UsageError(f"sample_rate out of range: {self.sample_rate}")
        if not 0 < self.channels <= _MAX_CHANNELS:
            raise UsageError(f"channels out of range: {self.channels}")
        if self.frame_ms <= 0 or (self.sample_rate * self.frame_ms) % 1000:
            raise UsageError(
                f"frame_ms={self.frame_ms} is not a whole number of samples"
                f" at {self.sample_rate} Hz"
            )

    @property
    def samples_per_frame(self) -> int:
        """Samples per channel in one binary frame."""
        return self.sample_rate * self.frame_ms // 1000

    @property
    def bytes_per_sample(self) -> int:
        """Octets per sample of one channel: 2 for L16, 1 for G.711."""
        return _BYTES_PER_SAMPLE[self.encoding]

    @property
    def frame_bytes(self) -> int:
        """Length in bytes of one binary frame."""
        return self.samples_per_frame * self.channels * self.bytes_per_sample


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Receive statistics of one stream for ``stop`` (RFC 3550 §6.4.1 for ``jitter_ms``).

    ``extra`` holds further counters (e.g. ``ssrc``, ``codec``); its keys must not repeat
    the named fields.
    """

    label: str
    packets: int
    lost: int
    late: int
    duplicates: int
    jitter_ms: float
    extra: Mapping[str, int | float | str | None] = field(default_factory=dict)


def select_sip_headers(headers: Iterable[tuple[str, str]], *, request_uri: str) -> dict[str, str]:
    """Build the ``start.sip`` object from the INVITE's headers (RFC 3261 §7.3).

    Keeps ``From``, ``To`` (also in compact form ``f``/``t``, §7.3.3) and the
    :data:`CORRELATION_HEADERS`, keyed by lower-case name; repeated headers are joined with
    ``", "`` (§7.3.1). ``request_uri`` is stored under ``request_uri``.
    """
    out = {"request_uri": request_uri}
    for name, value in headers:
        key = name.strip().lower()
        key = _COMPACT.get(key, key)
        if key not in _SIP_WANTED:
            continue
        value = value.strip()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _utc_iso(timestamp: float) -> str:
    if not math.isfinite(timestamp):
        raise UsageError(f"started_at is not a finite timestamp: {timestamp!r}")
    try:
        when = datetime.fromtimestamp(timestamp, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise UsageError(f"started_at out of range: {timestamp!r}") from exc
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(message: dict[str, object]) -> str:
    try:
        text = _json_encode(message)
    except ValueError as exc:  # NaN or infinity in a number
        raise UsageError(f"cannot encode {message.get('type')!r}: {exc}") from None
    if not text.isascii():
        # Lone surrogates (e.g. from surrogateescape-decoded SIP) are not valid UTF-8.
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


class NativeEncoder:
    """Encoder for one native-protocol v1 stream (sans-I/O).

    ``seq`` starts at 0 on ``start`` and increases by one on every further text message of the
    stream; binary frames have no ``seq`` (their index is implicit in their order). A stream
    normally lives on one connection; :meth:`resume` re-opens it on a new one (v1.1).
    """

    __slots__ = (
        "_dtype",
        "_format",
        "_frames",
        "_seq",
        "_shapes",
        "_start",
        "_state",
        "session_id",
    )

    def __init__(self, session_id: str) -> None:
        try:
            canonical = str(uuid.UUID(session_id))
        except ValueError:
            canonical = ""
        if canonical != session_id:
            raise UsageError(f"session_id must be a lower-case hyphenated UUID: {session_id!r}")
        self.session_id = session_id
        self._seq = 0
        self._state = _NEW
        self._format: AudioFormat | None = None
        self._shapes: tuple[tuple[int, ...], ...] = ()
        self._dtype: np.dtype[np.int16] | np.dtype[np.uint8] = _LE_INT16
        self._start: dict[str, object] = {}
        self._frames = 0

    @property
    def seq(self) -> int:
        """The ``seq`` the next text message will carry."""
        return self._seq

    @property
    def format(self) -> AudioFormat | None:
        """The format announced in ``start`` (``None`` before it)."""
        return self._format

    @property
    def frames_sent(self) -> int:
        """Binary frames encoded so far."""
        return self._frames

    @property
    def duration_ms(self) -> int:
        """Audio encoded so far, in milliseconds."""
        return self._frames * self._format.frame_ms if self._format is not None else 0

    def _envelope(self, kind: str) -> dict[str, object]:
        return {"type": kind, "session_id": self.session_id, "seq": self._seq}

    def _emit(self, message: dict[str, object]) -> str:
        text = _text(message)
        self._seq += 1
        return text

    def start(
        self,
        *,
        call_id: str,
        participants: Sequence[Participant],
        streams: Sequence[Stream],
        format: AudioFormat,
        mode: Mode,
        started_at: float,
        metadata_problems: Sequence[str] = (),
        sip: Mapping[str, str] | None = None,
        group_id: str | None = None,
        correlation: Mapping[str, str] | None = None,
        metadata_xml: str | None = None,
    ) -> str:
        """Encode ``start``; ``started_at`` is a POSIX timestamp (seconds, UTC).

        ``group_id`` (RFC 7865 §6.1: links the recording sessions of one call, e.g. across a
        transfer), ``correlation`` (vendor ids: Cisco-Guid, Session-ID, UCID, X- headers…, see
        ``docs/protocol.md``) and ``metadata_xml`` (the raw RFC 7865 document) are optional.

        Stereo mode: every stream's ``channel`` is distinct and below ``format.channels``.
        Per-leg mode: exactly one stream, on channel 0, and ``format.channels == 1``.
        Mixed mode (v1.1): ``format.channels == 1`` and every stream is on channel 0 (the frames
        carry the sum of the streams).
        """
        if self._state != _NEW:
            raise UsageError("start() was already called")
        if mode not in _MODES:
            raise UsageError(f"unknown mode {mode!r}")
        channels = [s.channel for s in streams]
        if mode == "per-leg" and (format.channels != 1 or channels != [0]):
            raise UsageError("per-leg mode needs one stream on channel 0 and a mono format")
        if mode == "mixed":
            if format.channels != 1 or any(channels):
                raise UsageError("mixed mode needs a mono format and every stream on channel 0")
        elif len(set(channels)) != len(channels) or any(
            not 0 <= c < format.channels for c in channels
        ):
            raise UsageError(f"stream channels {channels} do not fit {format.channels} channels")
        message = self._envelope("start")
        message["protocol"] = PROTOCOL
        message.update(
            call_id=call_id,
            started_at=_utc_iso(started_at),
            mode=mode,
            format={
                "encoding": format.encoding,
                "sample_rate": format.sample_rate,
                "channels": format.channels,
                "frame_ms": format.frame_ms,
            },
            participants=[{"id": p.id, "aor": p.aor, "name": p.name} for p in participants],
            streams=[
                {"label": s.label, "participant_id": s.participant_id, "channel": s.channel}
                for s in streams
            ],
            metadata_problems=list(metadata_problems),
            sip=dict(sip) if sip is not None else {},
            group_id=group_id,
            correlation=dict(correlation) if correlation is not None else {},
        )
        if metadata_xml is not None:
            message["metadata_xml"] = metadata_xml
        text = self._emit(message)
        self._start = message
        self._format = format
        spf = format.samples_per_frame
        self._shapes = ((spf,), (spf, 1)) if format.channels == 1 else ((spf, format.channels),)
        self._dtype = _LE_INT16 if format.encoding == ENCODING else _OCTETS
        self._state = _STARTED
        return text

    def resume(self, frame: int) -> str:
        """Encode the ``start`` of a new connection that continues this stream (v1.1 resume,
        ``docs/delivery.md``).

        It repeats the first ``start`` (``seq`` 0 included) and adds ``resumed: true``,
        ``resume_from_frame`` (index of the first binary frame that follows on the new
        connection, at most the number of frames encoded) and ``resume_from_ms``
        (``resume_from_frame · frame_ms``). It takes no ``seq``: the text messages sent after it
        keep the stream's numbering (replayed ones their original ``seq``), so the consumer
        de-duplicates them by ``seq`` and binary frames by index.
        """
        # Also after stop(): the stop may still sit in the sender's replay buffer when the
        # connection drops, and its replay needs a resumed start in front of it.
        if self._state == _NEW or self._format is None:
            raise UsageError("resume() before start()")
        if not 0 <= frame <= self._frames:
            raise UsageError(f"cannot resume at frame {frame}: {self._frames} frames encoded")
        message = dict(self._start)
        message.update(
            resumed=True, resume_from_frame=frame, resume_from_ms=frame * self._format.frame_ms
        )
        return _text(message)

    def audio(self, pcm: npt.NDArray[np.int16] | npt.NDArray[np.uint8]) -> bytes:
        """Encode one binary frame: exactly ``frame_ms`` of audio.

        ``pcm`` is 1-D (mono) or 2-D ``(samples, channels)``; column *i* is channel *i*. For L16
        it holds int16 samples; for PCMU/PCMA the encoded uint8 octets. Output is interleaved
        (little-endian for L16); a C-contiguous input of the right dtype is copied once (into the
        returned ``bytes``), anything else is converted on the way.
        """
        if self._state != _STARTED:
            raise UsageError("audio() outside start()..stop()")
        dtype = pcm.dtype
        if dtype != self._dtype:
            if self._dtype == _OCTETS or dtype.kind != "i" or dtype.itemsize != 2:
                raise UsageError(f"audio must be {self._dtype}, got {dtype}")
            pcm = pcm.astype(_LE_INT16)
        if pcm.shape not in self._shapes:
            raise UsageError(f"audio shape {pcm.shape} is not one of {self._shapes}")
        self._frames += 1
        return pcm.tobytes()

    def dtmf(self, *, digit: str, duration_ms: int, label: str, position_ms: int) -> str:
        """Encode ``dtmf`` (RFC 4733 §2.5 event): ``position_ms`` is call time of its onset."""
        if self._state != _STARTED:
            raise UsageError("dtmf() outside start()..stop()")
        if digit not in DTMF_DIGITS:
            raise UsageError(f"not a DTMF digit: {digit!r}")
        if duration_ms < 0 or position_ms < 0:
            raise UsageError("duration_ms and position_ms must not be negative")
        message = self._envelope("dtmf")
        message.update(digit=digit, duration_ms=duration_ms, label=label, position_ms=position_ms)
        return self._emit(message)

    def pause(self, *, labels: Sequence[str], position_ms: int) -> str:
        """Encode ``pause``: the SRC paused these streams (RFC 7866 §8.1.6: ``a=inactive`` or
        ``c=0.0.0.0``). Frames keep flowing (silence), so positions stay continuous."""
        return self._session_event("pause", labels=list(labels), position_ms=position_ms)

    def resume_streams(self, *, labels: Sequence[str], position_ms: int) -> str:
        """Encode ``resume``: these streams were paused and are recorded again."""
        return self._session_event("resume", labels=list(labels), position_ms=position_ms)

    def update(
        self,
        *,
        participants: Sequence[Participant],
        streams: Sequence[Stream],
        group_id: str | None,
        position_ms: int,
    ) -> str:
        """Encode ``update``: new participant/stream mapping (transfer, conference, pickup;
        RFC 7866 §9.2). Participants are only ever appended, never re-indexed."""
        return self._session_event(
            "update",
            participants=[{"id": p.id, "aor": p.aor, "name": p.name} for p in participants],
            streams=[
                {"label": s.label, "participant_id": s.participant_id, "channel": s.channel}
                for s in streams
            ],
            group_id=group_id,
            position_ms=position_ms,
        )

    def media_stall(self, *, label: str, silent_ms: int, position_ms: int) -> str:
        """Encode ``media_stall``: no RTP on this (not paused) stream for ``silent_ms``."""
        return self._session_event(
            "media_stall", label=label, silent_ms=silent_ms, position_ms=position_ms
        )

    def _session_event(self, kind: str, **fields: object) -> str:
        if self._state != _STARTED:
            raise UsageError(f"{kind}() outside start()..stop()")
        message = self._envelope(kind)
        message.update(fields)
        return self._emit(message)

    def stop(self, *, reason: StopReason, streams: Sequence[StreamStats] = ()) -> str:
        """Encode ``stop``; ``duration_ms`` is the audio encoded for the stream."""
        if self._state != _STARTED:
            raise UsageError("stop() outside start()..stop()")
        if reason not in STOP_REASONS:
            raise UsageError(f"unknown stop reason {reason!r}")
        stats: list[dict[str, object]] = []
        for s in streams:
            clash = _STATS_FIELDS.intersection(s.extra)
            if clash:
                raise UsageError(f"StreamStats.extra repeats {sorted(clash)}")
            entry: dict[str, object] = {
                "label": s.label,
                "packets": s.packets,
                "lost": s.lost,
                "late": s.late,
                "duplicates": s.duplicates,
                "jitter_ms": round(s.jitter_ms, 3),
            }
            entry.update(s.extra)
            stats.append(entry)
        message = self._envelope("stop")
        message.update(reason=reason, duration_ms=self.duration_ms, streams=stats)
        text = self._emit(message)
        self._state = _STOPPED
        return text
