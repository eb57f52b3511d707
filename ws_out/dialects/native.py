"""``native``: our own protocol (``docs/protocol.md``) behind the dialect interface.

An adapter over :class:`ws_out.native.NativeEncoder`: ``open`` → ``start``, each frame → one
binary frame (interleaved channels), ``dtmf`` → ``dtmf``, ``close`` → ``stop``. It supports
resume (v1.1): :meth:`NativeDialect.reopen` is a ``start`` with ``resumed: true``,
``resume_from_frame`` and ``resume_from_ms``. Modes ``stereo``, ``per-leg`` and ``mixed``;
``mux`` has no native form (a ``stereo`` connection already carries every leg, by channel).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
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
    SessionEvent,
)
from ws_out.errors import UsageError
from ws_out.native import Mode, NativeEncoder, Stream

__all__ = ["NativeDialect"]

_MODES: Final[Mapping[str, Mode]] = {"stereo": "stereo", "per-leg": "per-leg", "mixed": "mixed"}


class NativeDialect(DialectBase):
    """The native protocol v1 for one stream."""

    name: ClassVar[str] = "native"
    supports_resume: ClassVar[bool] = True
    modes: ClassVar[frozenset[str]] = frozenset({"stereo", "per-leg", "mixed"})

    def __init__(self, *, clock: Clock = time.time) -> None:
        super().__init__(clock=clock)
        self._encoder: NativeEncoder | None = None

    @property
    def encoder(self) -> NativeEncoder:
        """The underlying encoder (after :meth:`open`)."""
        if self._encoder is None:
            raise UsageError("open() was not called")
        return self._encoder

    def _open(self, call: CallInfo) -> list[Message]:
        self._encoder = NativeEncoder(call.session_id)
        return [
            self._encoder.start(
                call_id=call.call_id,
                participants=call.participants,
                streams=[
                    Stream(leg.label, leg.participant_id, leg.channel)
                    for leg in sorted(call.legs, key=lambda leg: (leg.channel, leg.position))
                ],
                format=call.format,
                mode=_MODES[call.mode],
                started_at=call.started_at,
                metadata_problems=call.metadata_problems,
                sip=call.sip,
                group_id=call.group_id,
                correlation=call.correlation,
                metadata_xml=call.metadata_xml,
            )
        ]

    def session_event(self, event: SessionEvent) -> list[Message]:
        """``pause`` / ``resume`` / ``update`` / ``media_stall`` (``docs/protocol.md``), for
        the streams this connection carries."""
        self._require_open("session_event")
        mine = [label for label in event.labels if label in self._labels]
        encoder = self.encoder
        if event.kind == "update":
            streams = [Stream(leg.label, leg.participant_id, leg.channel) for leg in event.legs]
            mine_streams = [s for s in streams if s.label in self._labels]
            return [
                encoder.update(
                    participants=event.participants,
                    streams=mine_streams,
                    group_id=event.group_id,
                    position_ms=event.position_ms,
                )
            ]
        if not mine:
            return []
        if event.kind == "pause":
            return [encoder.pause(labels=mine, position_ms=event.position_ms)]
        if event.kind == "resume":
            return [encoder.resume_streams(labels=mine, position_ms=event.position_ms)]
        return [
            encoder.media_stall(
                label=mine[0], silent_ms=event.silent_ms, position_ms=event.position_ms
            )
        ]

    def reopen(self, position_ms: int) -> list[Message]:
        """``start`` with ``resumed: true``, ``resume_from_frame`` and ``resume_from_ms``
        (protocol v1.1); ``position_ms`` must be a frame boundary."""
        self._require_started("reopen")  # also after close(): its replay needs the reopen
        frame, rest = divmod(position_ms, self.call.format.frame_ms)
        if rest:
            raise UsageError(f"resume position {position_ms} is not a frame boundary")
        return [self.encoder.resume(frame)]

    def _audio(self, frame: AudioFrame) -> list[Message]:
        encoder = self.encoder
        return [encoder.audio(frame.pcm if frame.payload is None else frame.payload)]

    def _dtmf(self, leg: Leg, event: DtmfInfo) -> list[Message]:
        return [
            self.encoder.dtmf(
                digit=event.digit,
                duration_ms=event.duration_ms,
                label=leg.label,
                position_ms=event.position_ms,
            )
        ]

    def _close(self, info: CloseInfo) -> list[Message]:
        return [self.encoder.stop(reason=info.reason, streams=info.streams)]
