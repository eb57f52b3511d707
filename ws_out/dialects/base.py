"""What every dialect encoder shares: the call, frame and event types, and the encoder contract.

A *dialect* is the wire protocol a consumer expects (``docs/dialects.md``). One encoder serves
one consumer stream (one WebSocket connection at a time) and is sans-I/O: typed events in,
ready-to-send WebSocket messages out (``str`` → text frame, ``bytes`` → binary frame)::

    enc = get_dialect("twilio", clock=time.time)     # ws_out.dialects.get_dialect
    enc.check(mode, fmt)                             # config validation, before any call
    send(enc.open(call))                             # connected/start/init_stream/...
    send(enc.audio(frame))                           # per output frame (hot path)
    send(enc.dtmf(event))                            # per completed RFC 4733 event
    send(enc.receive(message, now))                  # per message from the consumer
    send(enc.keepalive(now))                         # every ``keepalive_interval`` s (if set)
    new_connection_send(enc.reopen(position_ms))     # the stream continues on a new connection
    send(enc.close(info))                            # stop/end_stream/hangup; then close 1000

Every method returns a list of messages, possibly empty. Wall-clock values in messages come
from the injected ``clock`` (POSIX seconds) or the ``now`` argument, never from the system.
Misuse (audio before ``open``, a frame of the wrong shape, a mode the dialect cannot carry)
raises :exc:`ws_out.errors.UsageError`; what the consumer sends never raises: messages that are
not understood are counted in ``ignored`` and dropped.

Time alignment is the skeleton's: frame *k* (``AudioFrame.index``) covers call time
``[k·F, (k+1)·F)`` for every leg of the connection, ``F = CallInfo.format.frame_ms``.
"""

from __future__ import annotations

import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar, Final, Literal, Protocol, get_args

import numpy as np
import numpy.typing as npt

from ws_out.errors import UsageError
from ws_out.native import (
    DTMF_DIGITS,
    ENCODINGS,
    STOP_REASONS,
    AudioFormat,
    Encoding,
    Participant,
    StopReason,
    StreamStats,
)

__all__ = [
    "DTMF_DIGITS",
    "MAX_INBOUND",
    "MODES",
    "AudioFormat",
    "AudioFrame",
    "CallInfo",
    "Clock",
    "CloseInfo",
    "DialectBase",
    "DialectEncoder",
    "DtmfInfo",
    "Encoding",
    "Leg",
    "Message",
    "Mode",
    "Participant",
    "StopReason",
    "StreamStats",
    "group_legs",
    "iso_utc",
    "order_legs",
    "parse_json",
    "to_json",
]

Mode = Literal["stereo", "per-leg", "mixed", "mux"]
"""How a target gets the legs of a call: ``stereo`` one connection, one channel per leg;
``per-leg`` one connection per leg; ``mixed`` one connection, the legs summed into one channel;
``mux`` one connection, each leg sent separately, tagged (track, endpoint id...)."""
MODES: Final[frozenset[str]] = frozenset(get_args(Mode))

Message = str | bytes
Clock = Callable[[], float]

MAX_INBOUND: Final = 64 * 1024
"""Largest consumer message an encoder looks at (bytes or characters); larger ones are ignored."""

_LE_INT16: Final = np.dtype("<i2")
_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


# --- what a connection carries ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leg:
    """A recorded stream (RFC 7866 §6: one RS, labelled by its SDP ``a=label``, RFC 4574) as
    carried on one connection.

    ``channel`` is its column in :attr:`AudioFrame.pcm` on this connection (0 for every leg in
    ``mixed`` mode). ``position`` is its place in the call's caller-first order
    (:func:`order_legs`): 0 is the caller's leg — ``inbound`` track, left channel — 1 the next
    (``outbound``), and so on; dialects name tracks and endpoints by it.
    """

    label: str
    participant_id: str | None
    channel: int
    position: int


@dataclass(frozen=True, slots=True)
class CallInfo:
    """The recording session as one connection sees it (what ``open`` announces).

    ``session_id`` is our lower-case UUID for the recording session and ``call_id`` the SIP
    ``Call-ID`` of the SRC→SRS dialog; ``started_at`` is POSIX seconds. ``custom_parameters``
    are the target's configured key/value pairs (Twilio ``customParameters``, Voxology
    ``stream_data``...). ``format`` describes :class:`AudioFrame` on this connection.
    """

    session_id: str
    call_id: str
    started_at: float
    legs: tuple[Leg, ...]
    format: AudioFormat
    mode: Mode
    participants: tuple[Participant, ...] = ()
    custom_parameters: Mapping[str, str] = field(default_factory=dict)
    metadata_problems: tuple[str, ...] = ()
    sip: Mapping[str, str] = field(default_factory=dict)
    group_id: str | None = None
    correlation: Mapping[str, str] = field(default_factory=dict)
    metadata_xml: str | None = None

    def __post_init__(self) -> None:
        try:
            canonical = str(uuid.UUID(self.session_id))
        except ValueError:
            canonical = ""
        if canonical != self.session_id:
            raise UsageError(f"session_id is not a lower-case hyphenated UUID: {self.session_id!r}")
        if self.mode not in MODES:
            raise UsageError(f"unknown mode {self.mode!r}")
        labels = [leg.label for leg in self.legs]
        positions = [leg.position for leg in self.legs]
        channels = [leg.channel for leg in self.legs]
        if len(set(labels)) != len(labels) or len(set(positions)) != len(positions):
            raise UsageError(f"legs repeat a label or a position: {self.legs}")
        mono = self.mode in ("mixed", "per-leg")
        if mono and self.format.channels != 1:
            raise UsageError(f"{self.mode} mode carries one channel, not {self.format.channels}")
        if self.mode == "per-leg" and len(self.legs) != 1:
            raise UsageError(f"per-leg mode carries exactly one leg, not {len(self.legs)}")
        if self.mode == "mixed":
            if any(channels):
                raise UsageError("mixed mode puts every leg on channel 0")
        elif len(set(channels)) != len(channels) or any(
            not 0 <= c < self.format.channels for c in channels
        ):
            raise UsageError(f"leg channels {channels} do not fit {self.format.channels} channels")

    @property
    def stream_uuid(self) -> uuid.UUID:
        """Identifier of this connection's stream: the session UUID, or for a ``per-leg``
        connection a name-based UUID (RFC 4122 §4.3, SHA-1) of the session UUID and the leg's
        label. The same call gives the same ids after a reconnection."""
        session = uuid.UUID(self.session_id)
        if self.mode == "per-leg":
            return uuid.uuid5(session, self.legs[0].label)
        return session

    def participant(self, participant_id: str | None) -> Participant | None:
        """The participant with this id (``None`` when unknown)."""
        for p in self.participants:
            if p.id == participant_id:
                return p
        return None


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One output frame: exactly ``frame_ms`` of audio for every channel of the connection.

    ``pcm`` holds the samples as int16, shape ``(samples, channels)``. When the connection's
    encoding is G.711, ``payload`` holds the encoded octets (uint8, same shape) and the dialect
    sends those; ``pcm`` is still there for the spool. ``index`` is the frame number on the call
    timeline: the frame covers call time ``[index·F, (index+1)·F)``.
    """

    index: int
    pcm: npt.NDArray[np.int16]
    payload: npt.NDArray[np.uint8] | None = None

    @property
    def samples(self) -> int:
        """Samples per channel."""
        return int(self.pcm.shape[0])

    def channel_bytes(self, channel: int) -> bytes:
        """The encoded bytes of one channel (L16: little-endian; G.711: one octet per sample)."""
        if self.payload is not None:
            return self.payload[:, channel].tobytes()
        return self.pcm[:, channel].astype(_LE_INT16, copy=False).tobytes()

    def interleaved_bytes(self) -> bytes:
        """The encoded bytes of all channels, interleaved by sample (L16: little-endian)."""
        if self.payload is not None:
            return self.payload.tobytes()
        return self.pcm_bytes()

    def pcm_bytes(self) -> bytes:
        """The audio as interleaved little-endian L16, whatever the encoding (for the spool)."""
        return self.pcm.astype(_LE_INT16, copy=False).tobytes()


@dataclass(frozen=True, slots=True)
class DtmfInfo:
    """A completed RFC 4733 telephone event (§2.5) received on the leg labelled ``label``;
    ``position_ms`` is the call time of its onset."""

    digit: str
    duration_ms: int
    label: str
    position_ms: int


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """Why the stream ends (native ``stop`` reasons) and the receive statistics of its legs."""

    reason: StopReason
    streams: tuple[StreamStats, ...] = ()


# --- leg order and connections -------------------------------------------------------------------


def order_legs(
    streams: Sequence[tuple[str, str | None]],
    participants: Sequence[Participant],
    *,
    caller: str | None = None,
) -> list[Leg]:
    """Put a call's streams ``(label, sending participant_id)`` in caller-first order.

    The caller's leg comes first (``position`` 0, ``channel`` 0: ``inbound``, left); the others
    keep their order (the SDP order of the offer). The caller's leg is, in this order:

    1. with ``caller`` given (configuration): the first stream whose label equals it, else
       whose participant id equals it, else whose participant's AoR contains it
       (case-insensitive);
    2. by metadata (RFC 7865 §6.4): the stream sent by the first participant of the metadata
       that sends at all (SRCs list the calling party first);
    3. otherwise the first stream (first label).
    """
    streams = list(streams)
    if not streams:
        return []
    first = _configured(streams, participants, caller) if caller is not None else None
    if first is None:
        senders = [pid for _, pid in streams]
        first = next((senders.index(p.id) for p in participants if p.id in senders), 0)
    order = [first, *(i for i in range(len(streams)) if i != first)]
    return [
        Leg(streams[i][0], streams[i][1], channel=pos, position=pos) for pos, i in enumerate(order)
    ]


def _configured(
    streams: Sequence[tuple[str, str | None]], participants: Sequence[Participant], caller: str
) -> int | None:
    aors = {p.id: p.aor.lower() for p in participants if p.aor is not None}
    tests = (
        lambda label, pid: label == caller,
        lambda label, pid: pid == caller,
        lambda label, pid: pid in aors and caller.lower() in aors[pid],
    )
    for test in tests:
        for i, (label, pid) in enumerate(streams):
            if test(label, pid):
                return i
    return None


def group_legs(mode: Mode, legs: Sequence[Leg]) -> list[tuple[Leg, ...]]:
    """The connections of a target in ``mode``: the legs each carries, with their channels.

    ``per-leg``: one connection per leg, on channel 0; ``mixed``: one connection, every leg on
    channel 0; ``stereo``/``mux``: one connection, the legs on their channels (positions).
    """
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}")
    if mode == "per-leg":
        return [(Leg(leg.label, leg.participant_id, 0, leg.position),) for leg in legs]
    if mode == "mixed":
        return [tuple(Leg(leg.label, leg.participant_id, 0, leg.position) for leg in legs)]
    return [tuple(legs)]


# --- message helpers ---------------------------------------------------------------------------


def to_json(message: Mapping[str, object]) -> str:
    """Compact UTF-8 JSON text (RFC 8259); lone surrogates become ``?`` (they are not UTF-8)."""
    try:
        text = _json_encode(message)
    except ValueError as exc:  # NaN or infinity
        raise UsageError(f"cannot encode message: {exc}") from None
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def iso_utc(timestamp: float, *, milliseconds: bool = True) -> str:
    """ISO 8601 UTC time with a ``Z`` suffix (RFC 3339 §5.6), to the millisecond or second."""
    try:
        when = datetime.fromtimestamp(timestamp, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise UsageError(f"not a usable timestamp: {timestamp!r}") from exc
    spec = "milliseconds" if milliseconds else "seconds"
    return when.isoformat(timespec=spec).replace("+00:00", "Z")


def parse_json(message: Message) -> dict[str, object] | None:
    """A consumer's text message as a JSON object, or ``None`` (binary, too large, not JSON,
    not an object)."""
    if not isinstance(message, str) or len(message) > MAX_INBOUND:
        return None
    try:
        value = json.loads(message)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# --- the encoder contract ----------------------------------------------------------------------


class DialectEncoder(Protocol):
    """What the call pipeline needs from a dialect encoder (see the module docstring)."""

    @property
    def name(self) -> str: ...
    @property
    def supports_resume(self) -> bool: ...

    keepalive_interval: float | None
    default_mode: Mode
    default_encoding: Encoding
    default_sample_rate: int
    ignored: int

    def check(self, mode: Mode, format: AudioFormat) -> None: ...
    def open(self, call: CallInfo) -> list[Message]: ...
    def reopen(self, position_ms: int) -> list[Message]: ...
    def audio(self, frame: AudioFrame) -> list[Message]: ...
    def dtmf(self, event: DtmfInfo) -> list[Message]: ...
    def close(self, info: CloseInfo) -> list[Message]: ...
    def receive(self, message: Message, now: float) -> list[Message]: ...
    def keepalive(self, now: float) -> list[Message]: ...
    def session_event(self, event: SessionEvent) -> list[Message]: ...


@dataclass(frozen=True)
class SessionEvent:
    """Something that happened to the recording session (RFC 7866 §8.1.6, §9.2):
    ``kind`` is ``pause``/``resume`` (``labels``), ``update`` (``participants``, ``legs`` with
    their current senders, ``group_id``) or ``media_stall`` (``labels``: one, ``silent_ms``).
    ``position_ms`` is call time."""

    kind: Literal["pause", "resume", "update", "media_stall"]
    position_ms: int
    labels: tuple[str, ...] = ()
    participants: tuple[Participant, ...] = ()
    legs: tuple[Leg, ...] = ()
    group_id: str | None = None
    silent_ms: int = 0


_NEW: Final = 0
_OPEN: Final = 1
_CLOSED: Final = 2


class DialectBase(ABC):
    """Shared state machine and checks; a dialect implements ``_open``, ``_audio``, ``_dtmf``
    and ``_close`` (and overrides ``reopen``, ``receive``, ``keepalive`` where it has them).

    Class attributes describe what the dialect can carry: ``modes``, ``encodings``,
    ``sample_rates`` (``None``: any), ``max_channels``. ``default_mode``,
    ``default_encoding`` and ``default_sample_rate`` are what a target gets when its
    configuration does not say. ``ignored`` counts consumer messages that were not understood
    or do not apply (dropped).
    """

    name: ClassVar[str]
    supports_resume: ClassVar[bool] = False
    modes: ClassVar[frozenset[str]]
    encodings: ClassVar[frozenset[str]] = ENCODINGS
    sample_rates: ClassVar[frozenset[int] | None] = None
    max_channels: ClassVar[int] = 32

    def __init__(self, *, clock: Clock = time.time) -> None:
        self.clock = clock
        self.keepalive_interval: float | None = None
        self.default_mode: Mode = "stereo"
        self.default_encoding: Encoding = "L16"
        self.default_sample_rate = 8000
        self.ignored = 0
        self._state = _NEW
        self._call: CallInfo | None = None
        self._labels: dict[str, Leg] = {}
        self._shape: tuple[int, int] = (0, 0)
        self._coded = False
        self._frames = 0
        self._opening: list[Message] = []

    # -- configuration

    def check(self, mode: Mode, format: AudioFormat) -> None:
        """Raise :exc:`UsageError` unless this dialect can carry ``mode`` in ``format``."""
        if mode not in self.modes:
            raise UsageError(f"{self.name} cannot carry mode {mode!r} ({sorted(self.modes)})")
        if format.encoding not in self.encodings:
            raise UsageError(
                f"{self.name} cannot carry {format.encoding}: {sorted(self.encodings)}"
            )
        if self.sample_rates is not None and format.sample_rate not in self.sample_rates:
            raise UsageError(f"{self.name} cannot carry {format.sample_rate} Hz")
        if format.channels > self.max_channels:
            raise UsageError(f"{self.name} carries at most {self.max_channels} channel(s)")

    @property
    def call(self) -> CallInfo:
        """The call given to :meth:`open`."""
        if self._call is None:
            raise UsageError("open() was not called")
        return self._call

    @property
    def frames_sent(self) -> int:
        """Frames encoded since :meth:`open`."""
        return self._frames

    @property
    def duration_ms(self) -> int:
        """Audio encoded since :meth:`open`, in milliseconds."""
        return self._frames * self.call.format.frame_ms if self._call is not None else 0

    def leg(self, label: str) -> Leg:
        """The leg of this connection labelled ``label``."""
        try:
            return self._labels[label]
        except KeyError:
            raise UsageError(f"no leg labelled {label!r} on this connection") from None

    # -- the calling protocol

    def open(self, call: CallInfo) -> list[Message]:
        """The messages that open the stream; once, first."""
        if self._state != _NEW:
            raise UsageError("open() was already called")
        self.check(call.mode, call.format)
        self._call = call
        try:
            self._opening = self._open(call)
        except Exception:
            self._call = None
            raise
        self._labels = {leg.label: leg for leg in call.legs}
        self._shape = (call.format.samples_per_frame, call.format.channels)
        self._coded = call.format.encoding != "L16"
        self._state = _OPEN
        return list(self._opening)

    def reopen(self, position_ms: int) -> list[Message]:
        """The opening of a new connection that continues the stream at call time
        ``position_ms``. Dialects without resume send their opening again (a fresh stream with
        the same ids); counters are not reset, so what is replayed keeps its numbers."""
        self._require_started("reopen")  # also after close(): its replay needs the reopen
        return list(self._opening)

    def audio(self, frame: AudioFrame) -> list[Message]:
        """The messages of one output frame."""
        if self._state != _OPEN:
            raise UsageError("audio() outside open()..close()")
        if frame.pcm.shape != self._shape or (frame.payload is not None) != self._coded:
            raise UsageError(
                f"frame {frame.pcm.shape} does not match {self._shape} {self.call.format.encoding}"
            )
        out = self._audio(frame)
        self._frames += 1
        return out

    def dtmf(self, event: DtmfInfo) -> list[Message]:
        """The messages for a completed telephone event (possibly none)."""
        self._require_open("dtmf")
        if event.digit not in DTMF_DIGITS:
            raise UsageError(f"not a DTMF digit: {event.digit!r}")
        if event.duration_ms < 0 or event.position_ms < 0:
            raise UsageError("duration_ms and position_ms must not be negative")
        return self._dtmf(self.leg(event.label), event)

    def close(self, info: CloseInfo) -> list[Message]:
        """The messages that end the stream; once, last."""
        self._require_open("close")
        if info.reason not in STOP_REASONS:
            raise UsageError(f"unknown stop reason {info.reason!r}")
        out = self._close(info)
        self._state = _CLOSED
        return out

    def receive(self, message: Message, now: float) -> list[Message]:
        """Answer a consumer message; the default understands none."""
        self.ignored += 1
        return []

    def keepalive(self, now: float) -> list[Message]:
        """Periodic messages; the default has none."""
        return []

    def session_event(self, event: SessionEvent) -> list[Message]:
        """The messages for a session event; dialects without such messages send none."""
        self._require_open("session_event")
        return []

    def _require_started(self, what: str) -> None:
        if self._state == _NEW:
            raise UsageError(f"{what}() before open()")

    def _require_open(self, what: str) -> None:
        if self._state != _OPEN:
            raise UsageError(f"{what}() outside open()..close()")

    @property
    def is_open(self) -> bool:
        """Between :meth:`open` and :meth:`close`."""
        return self._state == _OPEN

    # -- the dialect

    @abstractmethod
    def _open(self, call: CallInfo) -> list[Message]: ...

    @abstractmethod
    def _audio(self, frame: AudioFrame) -> list[Message]: ...

    @abstractmethod
    def _dtmf(self, leg: Leg, event: DtmfInfo) -> list[Message]: ...

    @abstractmethod
    def _close(self, info: CloseInfo) -> list[Message]: ...
