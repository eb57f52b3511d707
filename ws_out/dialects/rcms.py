"""``rcms``: an Avaya RCMS-style stream — one connection per call carrying every endpoint.

Modelled on Avaya Infinity's Real-time Contextual Media Streaming (one WebSocket per call,
several endpoints, a JSON control envelope, binary audio tagged by endpoint, keep-alive, session
recovery); the exact field names below are ours (``docs/dialects.md``, JSON Schema
``docs/rcms-v1.schema.json``).

Text frames: one JSON object each, with the envelope

==================  ===========================================================================
``version``         ``"1.0"``
``type``            ``session.start``, ``endpoint.dtmf``, ``session.ping``, ``session.pong``,
                    ``session.end``
``sessionId``       our recording session id (UUID)
``sequenceNumber``  the stream's text messages, from 1 (kept across reconnections)
``timestamp``       when the message was made: ISO 8601 UTC, milliseconds, ``Z``
``parameters``      the type's fields (object)
==================  ===========================================================================

* ``session.start`` — ``callId`` (SIP Call-ID), ``startedAt``, ``resumed``, ``positionMs`` (call
  time of the next binary frame), ``mediaFormat`` {``encoding`` ``PCMU``/``PCMA``/``L16``,
  ``sampleRate``, ``frameMs``}, ``endpoints`` [{``endpointId`` (1, 2, … by caller-first
  position), ``label``, ``role`` (``caller``, ``callee``, ``participant``), ``participantId``,
  ``aor``, ``name``}], ``customParameters``, ``sip``, ``metadataProblems``;
* ``endpoint.dtmf`` — ``endpointId``, ``digit``, ``durationMs``, ``positionMs``;
* ``session.ping`` — sent every ``keepalive_interval`` seconds; the consumer may send one too
  and gets ``session.pong`` with ``replyTo`` (its ``sequenceNumber``);
* ``session.end`` — ``reason`` (the native stop reasons), ``durationMs``, ``endpoints`` with the
  receive statistics of each (``packets``, ``lost``, ``late``, ``duplicates``, ``jitterMs``…).

Binary frames: an 8-octet big-endian header — version (1), reserved (0), ``endpointId``
(uint16), frame index on the call timeline (uint32; call time = index · ``frameMs``) — then one
frame of that endpoint's audio (G.711 octets, or L16 little-endian). One binary frame per
endpoint per frame.

Session recovery: after a reconnection :meth:`RcmsDialect.reopen` sends ``session.start`` again
with ``resumed: true`` and ``positionMs``; the consumer de-duplicates frames by (endpoint,
index) and text messages by ``sequenceNumber``.
"""

from __future__ import annotations

import struct
import time
from typing import ClassVar, Final

from ws_out.dialects.base import (
    AudioFrame,
    CallInfo,
    Clock,
    CloseInfo,
    DialectBase,
    DtmfInfo,
    Leg,
    Message,
    iso_utc,
    parse_json,
    to_json,
)
from ws_out.errors import UsageError

__all__ = ["BINARY_HEADER", "VERSION", "RcmsDialect"]

VERSION: Final = "1.0"
BINARY_HEADER: Final = struct.Struct(">BBHI")
"""Binary frame header: version, reserved, endpoint id, frame index."""
_BINARY_VERSION: Final = 1
_ROLES: Final = ("caller", "callee")


class RcmsDialect(DialectBase):
    """RCMS-style stream: every endpoint of the call on one connection."""

    name: ClassVar[str] = "rcms"
    supports_resume: ClassVar[bool] = True
    modes: ClassVar[frozenset[str]] = frozenset({"mux", "stereo"})

    def __init__(self, *, clock: Clock = time.time, keepalive_interval: float = 10.0) -> None:
        """``keepalive_interval``: seconds between ``session.ping`` messages."""
        super().__init__(clock=clock)
        if not keepalive_interval > 0:
            raise UsageError(f"keepalive_interval must be positive, got {keepalive_interval!r}")
        self.keepalive_interval = self._interval = keepalive_interval
        self.default_mode = "mux"
        self.default_encoding = "PCMU"
        self._seq = 0
        self._next_ping = 0.0
        self._headers: list[tuple[int, int]] = []  # (channel, endpoint id)
        self._start: dict[str, object] = {}

    def _message(self, kind: str, parameters: dict[str, object], at: float | None = None) -> str:
        self._seq += 1
        return to_json(
            {
                "version": VERSION,
                "type": kind,
                "sessionId": self.call.session_id,
                "sequenceNumber": self._seq,
                "timestamp": iso_utc(self.clock() if at is None else at),
                "parameters": parameters,
            }
        )

    @staticmethod
    def endpoint_id(leg: Leg) -> int:
        """A leg's endpoint id: its caller-first position + 1."""
        return leg.position + 1

    def _open(self, call: CallInfo) -> list[Message]:
        legs = sorted(call.legs, key=lambda leg: leg.channel)
        self._headers = [(leg.channel, self.endpoint_id(leg)) for leg in legs]
        endpoints: list[dict[str, object]] = []
        for leg in legs:
            participant = call.participant(leg.participant_id)
            endpoints.append(
                {
                    "endpointId": self.endpoint_id(leg),
                    "label": leg.label,
                    "role": _ROLES[leg.position] if leg.position < len(_ROLES) else "participant",
                    "participantId": leg.participant_id,
                    "aor": participant.aor if participant is not None else None,
                    "name": participant.name if participant is not None else None,
                }
            )
        fmt = call.format
        self._start = {
            "callId": call.call_id,
            "startedAt": iso_utc(call.started_at),
            "resumed": False,
            "positionMs": 0,
            "mediaFormat": {
                "encoding": fmt.encoding,
                "sampleRate": fmt.sample_rate,
                "frameMs": fmt.frame_ms,
            },
            "endpoints": endpoints,
            "customParameters": dict(call.custom_parameters),
            "sip": dict(call.sip),
            "metadataProblems": list(call.metadata_problems),
        }
        message = self._message("session.start", self._start)
        self._next_ping = self.clock() + self._interval
        return [message]

    def reopen(self, position_ms: int) -> list[Message]:
        """``session.start`` with ``resumed: true`` and ``positionMs``."""
        self._require_open("reopen")
        if position_ms < 0 or position_ms % self.call.format.frame_ms:
            raise UsageError(f"resume position {position_ms} is not a frame boundary")
        resumed = self._start | {"resumed": True, "positionMs": position_ms}
        return [self._message("session.start", resumed)]

    def _audio(self, frame: AudioFrame) -> list[Message]:
        index = frame.index & 0xFFFFFFFF
        pack = BINARY_HEADER.pack
        return [
            pack(_BINARY_VERSION, 0, endpoint, index) + frame.channel_bytes(channel)
            for channel, endpoint in self._headers
        ]

    def _dtmf(self, leg: Leg, event: DtmfInfo) -> list[Message]:
        return [
            self._message(
                "endpoint.dtmf",
                {
                    "endpointId": self.endpoint_id(leg),
                    "digit": event.digit,
                    "durationMs": event.duration_ms,
                    "positionMs": event.position_ms,
                },
            )
        ]

    def _close(self, info: CloseInfo) -> list[Message]:
        endpoints: list[dict[str, object]] = []
        for stats in info.streams:
            leg = self.leg(stats.label)
            entry: dict[str, object] = {
                "endpointId": self.endpoint_id(leg),
                "label": stats.label,
                "packets": stats.packets,
                "lost": stats.lost,
                "late": stats.late,
                "duplicates": stats.duplicates,
                "jitterMs": round(stats.jitter_ms, 3),
            }
            entry.update((k, v) for k, v in stats.extra.items() if k not in entry)
            endpoints.append(entry)
        parameters: dict[str, object] = {
            "reason": info.reason,
            "durationMs": self.duration_ms,
            "endpoints": endpoints,
        }
        return [self._message("session.end", parameters)]

    def keepalive(self, now: float) -> list[Message]:
        """``session.ping`` when ``keepalive_interval`` has passed since the last one."""
        if not self.is_open or now < self._next_ping:
            return []
        self._next_ping = now + self._interval
        return [self._message("session.ping", {}, at=now)]

    def receive(self, message: Message, now: float) -> list[Message]:
        """``session.ping`` → ``session.pong``; ``session.pong`` → nothing; the rest is
        ``ignored``."""
        data = parse_json(message)
        if (
            data is None
            or not self.is_open
            or data.get("sessionId", self.call.session_id) != (self.call.session_id)
        ):
            self.ignored += 1
            return []
        kind = data.get("type")
        if kind == "session.pong":
            return []
        seq = data.get("sequenceNumber")
        if kind == "session.ping" and isinstance(seq, int) and not isinstance(seq, bool):
            return [self._message("session.pong", {"replyTo": seq}, at=now)]
        self.ignored += 1
        return []
