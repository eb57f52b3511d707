"""One recording session's media: its legs, their outputs, and the per-tick frame pump.

A :class:`RecordingCall` is driven by the single media ticker (:mod:`siprec_bridge.media`):
``tick(now)`` emits every frame that is due, for every output of the call. It never blocks:
outputs are :class:`ws_out.sender.WsSender` queues.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rtp.leg import Leg, Timeline
from ws_out.native import (
    AudioFormat,
    NativeEncoder,
    Participant,
    StopReason,
    Stream,
    StreamStats,
)

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where a call's messages go (a WebSocket sender)."""

    def send(self, message: str | bytes) -> None: ...


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


@dataclass
class Output:
    """One consumer connection carrying some of the call's legs (by channel order)."""

    sink: Sink
    encoder: NativeEncoder
    legs: list[LegInfo]
    stopped: bool = False

    def streams(self) -> list[Stream]:
        return [Stream(info.label, info.participant_id, ch) for ch, info in enumerate(self.legs)]


class RecordingCall:
    """The media state of one recording session (RFC 7866 §6: one CS, several RSs).

    Frame *k* of every output covers call time ``[k·F, (k+1)·F)`` on the shared
    :class:`rtp.leg.Timeline`; all legs are read for the same *k*, so the channels of one frame
    are aligned by RTP time.
    """

    def __init__(
        self,
        *,
        session_id: str,
        call_id: str,
        timeline: Timeline,
        legs: Sequence[LegInfo],
        outputs: Sequence[Output],
        sample_rate: int,
        start_fields: dict[str, Any],
        new_output: Callable[[LegInfo], Output] | None = None,
    ) -> None:
        self.session_id = session_id
        self.call_id = call_id
        self.timeline = timeline
        self.legs = list(legs)
        self.outputs = list(outputs)
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * timeline.frame_ms // 1000
        self.next_index = 0
        self.finished = False
        self.ending = False  # the session ended: emit no frame past the last received audio
        self._start_fields = start_fields
        self._new_output = new_output
        self._buffers: list[np.ndarray] = []
        for out in self.outputs:
            self._open(out)

    def _open(self, out: Output) -> None:
        fmt = AudioFormat(self.sample_rate, len(out.legs), self.timeline.frame_ms)
        out.sink.send(out.encoder.start(streams=out.streams(), format=fmt, **self._start_fields))
        self._buffers.append(np.zeros((self.frame_samples, len(out.legs)), dtype=np.int16))

    @property
    def position_ms(self) -> int:
        """Call time of the next frame (the time base of every event's ``position_ms``)."""
        return self.next_index * self.timeline.frame_ms

    def _live_outputs(self) -> list[Output]:
        return [out for out in self.outputs if not out.stopped]

    def pause(self, labels: Sequence[str], *, resumed: bool = False) -> None:
        """Tell each output carrying these streams that they were paused (or resumed)."""
        for out in self._live_outputs():
            mine = [info.label for info in out.legs if info.label in labels and not info.removed]
            if not mine:
                continue
            if resumed:
                out.sink.send(out.encoder.resume_streams(labels=mine, position_ms=self.position_ms))
            else:
                out.sink.send(out.encoder.pause(labels=mine, position_ms=self.position_ms))

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
        for out in self._live_outputs():
            out.sink.send(
                out.encoder.update(
                    participants=participants,
                    streams=out.streams(),
                    group_id=group_id,
                    position_ms=self.position_ms,
                )
            )

    def stall(self, info: LegInfo, silent_ms: int) -> None:
        for out in self._live_outputs():
            if info in out.legs:
                out.sink.send(
                    out.encoder.media_stall(
                        label=info.label, silent_ms=silent_ms, position_ms=self.position_ms
                    )
                )

    def leg_for(self, key: str) -> LegInfo | None:
        return next((info for info in self.legs if info.key == key and not info.removed), None)

    def remove_leg(self, key: str) -> None:
        """The SRC removed a stream (port 0, RFC 3264 §8.2): its channel is silent from now on;
        in per-leg mode its connection gets ``stop``."""
        info = self.leg_for(key)
        if info is None:
            return
        info.removed = True
        for out in self.outputs:
            if out.legs == [info] and not out.stopped:
                out.stopped = True
                out.sink.send(out.encoder.stop(reason="bye", streams=[self.leg_stats(info)]))

    def add_legs(self, infos: Sequence[LegInfo]) -> list[LegInfo]:
        """Streams added mid-call. Per-leg mode: one new connection each. Stereo: a stream takes
        the channel of a removed stream (a transfer replaces a party); with no free channel it
        is not recorded (logged). Returns the legs that were placed."""
        placed: list[LegInfo] = []
        for info in infos:
            if self._new_output is not None:
                out = self._new_output(info)
                self.outputs.append(out)
                self._open(out)
            elif not self._take_free_channel(info):
                log.warning("call %s: no free channel for new stream %s", self.call_id, info.label)
                continue
            self.legs.append(info)
            placed.append(info)
        return placed

    def _take_free_channel(self, info: LegInfo) -> bool:
        for out in self.outputs:
            for ch, old in enumerate(out.legs):
                if old.removed:
                    info.channel = ch
                    out.legs[ch] = info
                    return True
        return False

    @property
    def frames_sent(self) -> int:
        return self.next_index

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
        for out, buf in zip(self.outputs, self._buffers, strict=True):
            if out.stopped:
                continue
            for ch, info in enumerate(out.legs):
                if info.removed:
                    buf[:, ch] = 0
                else:
                    buf[:, ch] = info.leg.read_frame(index)
            out.sink.send(out.encoder.audio(buf))
        self._emit_dtmf()

    def _emit_dtmf(self) -> None:
        frame_ms = self.timeline.frame_ms
        for info in self.legs:
            for index, event in info.leg.pop_dtmf():
                for out in self.outputs:
                    if info in out.legs and not out.stopped:
                        out.sink.send(
                            out.encoder.dtmf(
                                digit=event.digit,
                                duration_ms=event.duration_ms,
                                label=info.label,
                                position_ms=index * frame_ms,
                            )
                        )

    def last_index(self) -> int | None:
        """The last frame holding received audio, over all legs."""
        return max(
            (i for i in (info.leg.last_index for info in self.legs) if i is not None), default=None
        )

    def finish(self, reason: StopReason) -> None:
        """Flush what the jitter buffers still hold, then send ``stop`` on every output."""
        if self.finished:
            return
        last = self.last_index()
        if last is not None:
            while self.next_index <= last:
                self._emit(self.next_index)
                self.next_index += 1
        self._emit_dtmf()
        self.finished = True
        for out in self.outputs:
            if out.stopped:
                continue
            stats = [self.leg_stats(info) for info in out.legs]
            out.sink.send(out.encoder.stop(reason=reason, streams=stats))

    @staticmethod
    def leg_stats(info: LegInfo) -> StreamStats:
        s = info.leg.stats
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
            },
        )
