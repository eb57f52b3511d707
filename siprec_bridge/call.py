"""One recording session's media: its legs, its consumer connections, the per-tick frame pump.

A :class:`RecordingCall` is driven by the single media ticker (:mod:`siprec_bridge.media`):
``tick(now)`` reads every due frame once from each leg and hands it to every connection of
every target. Each :class:`Connection` shapes the audio for its consumer (mode, rate,
encoding, frame length: :class:`~siprec_bridge.audio.OutputShaper`), encodes it in its dialect
(:mod:`ws_out.dialects`) and queues it on its sender. Nothing here blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from rtp.leg import Leg, LegStats, Timeline
from ws_out.dialects.base import (
    AudioFrame,
    CloseInfo,
    DialectBase,
    DtmfInfo,
    Message,
    SessionEvent,
)
from ws_out.dialects.base import Leg as WireLeg
from ws_out.native import Participant, StopReason, StreamStats

from .audio import OutputShaper

log = logging.getLogger(__name__)

#: LegStats counters added up over the legs of a stream.
_SUMMED = (
    "packets",
    "bytes",
    "lost",
    "late",
    "duplicates",
    "bad",
    "wrong_payload_type",
    "wrong_source",
    "dtmf_events",
    "concealed_frames",
    "srtp_errors",
    "sender_reports",
    "foreign_ssrc",
)


class Sink(Protocol):
    """A consumer connection's queue (``ws_out.sender.WsSender``)."""

    def send_open(self, messages: Sequence[Message]) -> None: ...
    def send_frame(self, messages: Sequence[Message], pcm: bytes | None = None) -> None: ...
    def send_event(self, messages: Sequence[Message]) -> None: ...


@dataclass
class LegInfo:
    """A recorded stream: one accepted SDP m-line bound to a local RTP port."""

    key: str
    index: int
    label: str
    participant_id: str | None
    channel: int
    port: int
    codec: str
    leg: Leg
    removed: bool = False
    carried: list[LegStats] = field(default_factory=list)
    """Counters of the legs this stream had before a codec change replaced its ``Leg``."""


@dataclass
class Connection:
    """One consumer connection of one target, carrying ``legs`` (in channel order)."""

    sink: Sink
    encoder: DialectBase
    shaper: OutputShaper
    legs: list[LegInfo]
    spool_pcm: bool = False
    stopped: bool = False
    wire_legs: list[WireLeg] = field(default_factory=list)

    def send(self, frames: Sequence[AudioFrame]) -> None:
        for frame in frames:
            pcm = frame.pcm_bytes() if self.spool_pcm else None
            self.sink.send_frame(self.encoder.audio(frame), pcm)


#: Opens the connections of per-leg targets for a leg added mid-call (none: no such target).
Connect = Callable[[LegInfo], list[Connection]]


class RecordingCall:
    """The media state of one recording session (RFC 7866 §6: one CS, several RSs).

    Frame *k* covers call time ``[k·F, (k+1)·F)`` on the shared :class:`rtp.leg.Timeline`;
    every leg is read once for the same *k*, so all channels of all connections are aligned by
    RTP time. Connections are opened by the caller (``open`` already sent).
    """

    def __init__(
        self,
        *,
        session_id: str,
        call_id: str,
        timeline: Timeline,
        legs: Sequence[LegInfo],
        connections: Sequence[Connection],
        sample_rate: int,
        connect_leg: Connect | None = None,
    ) -> None:
        self.session_id = session_id
        self.call_id = call_id
        self.timeline = timeline
        self.legs = list(legs)
        self.connections = list(connections)
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * timeline.frame_ms // 1000
        self.next_index = 0
        self.finished = False
        self.ending = False  # the session ended: emit no frame past the last received audio
        self._connect_leg = connect_leg
        self._silence = np.zeros(self.frame_samples, dtype=np.int16)
        self._frames: dict[str, np.ndarray] = {}

    @property
    def frames_sent(self) -> int:
        return self.next_index

    @property
    def position_ms(self) -> int:
        """Call time of the next frame (the time base of every event's ``position_ms``)."""
        return self.next_index * self.timeline.frame_ms

    def _live(self) -> list[Connection]:
        return [conn for conn in self.connections if not conn.stopped]

    # -- the frame pump --------------------------------------------------------------------
    def tick(self, now: float) -> int:
        """Emit every frame due at ``now``; return how many were emitted."""
        if self.finished or not self.legs:
            return 0
        due = self.legs[0].leg.frame_due(self.next_index)
        emitted = 0
        last = self.last_index() if self.ending else None
        while due is not None and due <= now and (last is None or self.next_index <= last):
            self._emit(self.next_index)
            self.next_index += 1
            emitted += 1
            due = self.legs[0].leg.frame_due(self.next_index)
        return emitted

    def _emit(self, index: int) -> None:
        frames = self._frames
        for info in self.legs:  # each leg is read exactly once per index
            frames[info.key] = self._silence if info.removed else info.leg.read_frame(index)
        for conn in self._live():
            conn.send(conn.shaper.push([frames[info.key] for info in conn.legs]))
        self._emit_dtmf()

    def _emit_dtmf(self) -> None:
        frame_ms = self.timeline.frame_ms
        for info in self.legs:
            for index, event in info.leg.pop_dtmf():
                dtmf = DtmfInfo(event.digit, event.duration_ms, info.label, index * frame_ms)
                for conn in self._live():
                    if info in conn.legs:
                        conn.sink.send_event(conn.encoder.dtmf(dtmf))

    def last_index(self) -> int | None:
        """The last frame holding received audio, over all legs."""
        return max(
            (i for i in (info.leg.last_index for info in self.legs) if i is not None), default=None
        )

    def finish(self, reason: StopReason) -> None:
        """Flush what the jitter buffers and shapers still hold, then close every connection."""
        if self.finished:
            return
        last = self.last_index()
        if last is not None:
            while self.next_index <= last:
                self._emit(self.next_index)
                self.next_index += 1
        self._emit_dtmf()
        self.finished = True
        for conn in self._live():
            self._close(conn, reason)

    def _close(self, conn: Connection, reason: StopReason) -> None:
        conn.send(conn.shaper.flush())
        stats = tuple(self.leg_stats(info) for info in conn.legs)
        conn.sink.send_event(conn.encoder.close(CloseInfo(reason, stats)))
        conn.stopped = True

    # -- session changes -------------------------------------------------------------------
    def event(self, event: SessionEvent) -> None:
        """A session event (pause, resume, update, media_stall) to every live connection."""
        for conn in self._live():
            messages = conn.encoder.session_event(event)
            if messages:
                conn.sink.send_event(messages)

    def pause(self, labels: Sequence[str], *, resumed: bool = False) -> None:
        event = SessionEvent(
            "resume" if resumed else "pause", self.position_ms, labels=tuple(labels)
        )
        self.event(event)

    def update(
        self,
        participants: Sequence[Participant],
        senders: dict[str, str | None],
        group_id: str | None,
    ) -> None:
        """New participant/stream mapping (``senders``: stream key → participant id)."""
        for info in self.legs:
            if info.key in senders:
                info.participant_id = senders[info.key]
        legs = tuple(
            WireLeg(info.label, info.participant_id, info.channel, position)
            for position, info in enumerate(self.legs)
            if not info.removed
        )
        self.event(
            SessionEvent(
                "update",
                self.position_ms,
                participants=tuple(participants),
                legs=legs,
                group_id=group_id,
            )
        )

    def keepalive(self, now: float) -> None:
        """Periodic dialect messages (RCMS keep-alive); ``now`` is wall-clock time."""
        for conn in self._live():
            if conn.encoder.keepalive_interval is not None:
                messages = conn.encoder.keepalive(now)
                if messages:
                    conn.sink.send_event(messages)

    def stall(self, info: LegInfo, silent_ms: int) -> None:
        self.event(
            SessionEvent("media_stall", self.position_ms, labels=(info.label,), silent_ms=silent_ms)
        )

    def leg_for(self, key: str) -> LegInfo | None:
        return next((info for info in self.legs if info.key == key and not info.removed), None)

    def remove_leg(self, key: str) -> None:
        """The SRC removed a stream (port 0, RFC 3264 §8.2): silent from now on; in per-leg
        mode its connection is closed."""
        info = self.leg_for(key)
        if info is None:
            return
        info.removed = True
        for conn in self._live():
            if conn.legs == [info]:
                self._close(conn, "bye")

    def add_legs(self, infos: Sequence[LegInfo]) -> list[LegInfo]:
        """Streams added mid-call. Per-leg targets: one new connection each. Multi-leg
        connections: a stream takes the place of a removed stream (a transfer replaces a
        party); with none free it is not streamed (logged). Returns the legs placed."""
        placed: list[LegInfo] = []
        for info in infos:
            taken = self._take_free_slot(info)
            if self._connect_leg is not None:
                opened = self._connect_leg(info)
                self.connections.extend(opened)
                taken = taken or bool(opened)
            if not taken:
                log.warning("no free channel for new stream %s", info.label)
                continue
            self.legs.append(info)
            placed.append(info)
        return placed

    def _take_free_slot(self, info: LegInfo) -> bool:
        taken = False
        for conn in self._live():
            if len(conn.legs) < 2:
                continue
            for slot, old in enumerate(conn.legs):
                if old.removed:
                    info.channel = old.channel
                    conn.legs[slot] = info
                    taken = True
                    break
        return taken

    @staticmethod
    def leg_stats(info: LegInfo) -> StreamStats:
        """The stream's counters over all the ``Leg`` objects it had (``jitter_ms``: the last)."""
        s = replace(info.leg.stats)
        for old in info.carried:
            for name in _SUMMED:
                setattr(s, name, getattr(s, name) + getattr(old, name))
        return StreamStats(
            label=info.label,
            packets=s.packets,
            lost=s.lost,
            late=s.late,
            duplicates=s.duplicates,
            jitter_ms=round(s.jitter_ms, 3),
            extra={
                "bad": s.bad,
                "wrong_payload_type": s.wrong_payload_type,
                "wrong_source": s.wrong_source,
                "dtmf_events": s.dtmf_events,
                "concealed_frames": s.concealed_frames,
                "srtp_errors": s.srtp_errors,
                "sender_reports": s.sender_reports,
                "foreign_ssrc": s.foreign_ssrc,
            },
        )
