"""``voxology``: Voxology Media Stream messages (JSON text frames).

``init_stream`` (stream and call ids, track names, ``stream_data``) → one ``start_track`` per
leg (``media_format``: encoding and sample rate) → ``live_track`` per leg and frame (base64
``media``) → one ``stop_track`` per leg (``duration`` in ms, ``start_time``/``end_time``) →
``end_stream``. Every message carries ``stream_sequence_number`` (the stream's messages, from 1)
and, for track messages, ``track_sequence_number`` (that track's messages, from 1: its
``start_track``).

Tracks are named by leg position (caller first): ``inbound``, ``outbound`` by default. The
protocol has no DTMF message: digits are not sent. Nothing from the consumer is expected;
whatever arrives is counted in ``ignored``. The field set follows the public summary of the
protocol (``ANCHORS.md``): check names and units against a live Voxology consumer.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from typing import ClassVar

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
    iso_utc,
    to_json,
)
from ws_out.dialects.twilio import DEFAULT_TRACKS, MEDIA_TYPES
from ws_out.errors import UsageError

__all__ = ["VoxologyDialect"]


class _Track:
    """One leg's track: its channel, name (also JSON-quoted) and track sequence number."""

    __slots__ = ("channel", "name", "quoted", "seq")

    def __init__(self, channel: int, name: str) -> None:
        self.channel, self.name, self.quoted, self.seq = channel, name, json.dumps(name), 0


class VoxologyDialect(DialectBase):
    """Voxology Media Stream for one stream."""

    name: ClassVar[str] = "voxology"
    modes: ClassVar[frozenset[str]] = frozenset({"mux", "stereo", "per-leg"})

    def __init__(self, *, clock: Clock = time.time, tracks: Sequence[str] = DEFAULT_TRACKS) -> None:
        """``tracks``: track names by leg position (caller first)."""
        super().__init__(clock=clock)
        if isinstance(tracks, str) or not tracks or len(set(tracks)) != len(tracks):
            raise UsageError(f"track names must be distinct and not empty: {tracks!r}")
        self.tracks = tuple(tracks)
        self.default_mode = "mux"
        self.default_encoding, self.default_sample_rate = "PCMU", 8000
        self._stream_seq = 0
        self._stream_id = ""
        self._tracks: list[_Track] = []  # in channel order
        self._started = ""

    def check(self, mode: Mode, format: AudioFormat) -> None:
        super().check(mode, format)
        if format.channels > len(self.tracks):
            raise UsageError(f"{format.channels} channels but only tracks {self.tracks}")

    def _track(self, leg: Leg) -> str:
        if leg.position >= len(self.tracks):
            raise UsageError(f"no track name for leg position {leg.position}: {self.tracks}")
        return self.tracks[leg.position]

    def _message(self, event: str, body: dict[str, object]) -> str:
        self._stream_seq += 1
        head: dict[str, object] = {"event": event, "stream_sequence_number": self._stream_seq}
        return to_json(head | body)

    def _track_message(self, event: str, track: _Track, body: dict[str, object]) -> str:
        track.seq += 1
        head = {"track_sequence_number": track.seq, "stream_id": self._stream_id}
        return self._message(event, head | {"name": track.name} | body)

    def _open(self, call: CallInfo) -> list[Message]:
        legs = sorted(call.legs, key=lambda leg: leg.channel)
        names = [self._track(leg) for leg in legs]
        self._stream_id = str(call.stream_uuid)
        self._tracks = [_Track(leg.channel, name) for leg, name in zip(legs, names, strict=True)]
        self._started = iso_utc(self.clock())
        fmt = call.format
        out: list[Message] = [
            self._message(
                "init_stream",
                {
                    "stream_id": self._stream_id,
                    "call_id": call.call_id,
                    "tracks": names,
                    "stream_data": dict(call.custom_parameters),
                },
            )
        ]
        media_format = {"encoding": MEDIA_TYPES[fmt.encoding], "sample_rate": fmt.sample_rate}
        out.extend(
            self._track_message("start_track", track, {"media_format": media_format})
            for track in self._tracks
        )
        return out

    def _audio(self, frame: AudioFrame) -> list[Message]:
        out: list[Message] = []
        sid = self._stream_id
        for track in self._tracks:
            track.seq += 1
            self._stream_seq += 1
            payload = base64.b64encode(frame.channel_bytes(track.channel)).decode("ascii")
            out.append(
                f'{{"event":"live_track","stream_sequence_number":{self._stream_seq},'
                f'"track_sequence_number":{track.seq},"stream_id":"{sid}","name":{track.quoted},'
                f'"media":"{payload}"}}'
            )
        return out

    def _dtmf(self, leg: Leg, event: DtmfInfo) -> list[Message]:
        return []  # the protocol has no DTMF message

    def _close(self, info: CloseInfo) -> list[Message]:
        ended = iso_utc(self.clock())
        body = {"duration": self.duration_ms, "start_time": self._started, "end_time": ended}
        out: list[Message] = [self._track_message("stop_track", t, body) for t in self._tracks]
        out.append(self._message("end_stream", {"stream_id": self._stream_id}))
        return out
