"""``twilio`` and ``wavix``: the Twilio Media Streams message set, in two spellings.

Both are JSON-only (text frames). The stream opens with ``connected`` then ``start``; each
output frame becomes one ``media`` message per track (base64 payload, ``track``,
``timestamp`` in ms of call time, ``chunk`` counting the track's messages from 1); completed
digits become ``dtmf``; ``stop`` ends the stream. Every message after ``connected`` carries a
``sequence`` number that starts at 1 on ``start`` and counts the stream's messages.

* ``twilio``: Twilio's own names (Media Streams "WebSocket Messages"): camelCase
  (``sequenceNumber``, ``streamSid``, ``start.callSid``, ``start.mediaFormat.sampleRate``...),
  numbers sent as strings where Twilio does (``sequenceNumber``, ``chunk``, ``timestamp``), SIDs
  of Twilio's shape (``MZ``/``CA``/``AC`` + 32 hex digits, from our UUIDs). Twilio itself only
  sends ``audio/x-mulaw`` at 8000 Hz: that is the default.
* ``wavix``: Wavix's spelling of the same messages: snake_case (``sequence_number``,
  ``stream_id``, ``call_id``, ``stream_type``, ``channel``), integers, and ``event_time`` (ISO
  8601 UTC, to the second) on every message, ``connected`` included (which gets
  ``sequence_number`` 0). Wavix streams L16 at 24 kHz: that is the default.

Tracks: the leg at position *i* (caller first, :func:`ws_out.dialects.base.order_legs`) is
``tracks[i]``, by default ``inbound`` then ``outbound``; a call with more legs than track names
is refused (configure more names, or use ``mixed`` with another dialect).

From the consumer (bidirectional streams): ``mark`` is answered with a ``mark`` of the same name
once the audio before it was sent — the answer is queued behind every frame already encoded, so
it follows them on the connection; ``clear`` is accepted and ignored (a recording has nothing
to play back); ``media`` and anything else is counted in ``ignored``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping, Sequence
from typing import ClassVar, Final, Literal

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
    parse_json,
    to_json,
)
from ws_out.errors import UsageError

__all__ = ["MEDIA_TYPES", "TwilioDialect", "WavixDialect"]

Style = Literal["twilio", "wavix"]

MEDIA_TYPES: Final[Mapping[str, str]] = {
    "PCMU": "audio/x-mulaw",
    "PCMA": "audio/x-alaw",
    "L16": "audio/x-l16",
}
"""``mediaFormat.encoding`` per encoding (L16 payloads are little-endian)."""

DEFAULT_TRACKS: Final = ("inbound", "outbound")
_ACCOUNT_SID: Final = "AC" + "0" * 32
_MAX_MARK_NAME: Final = 256


class TwilioDialect(DialectBase):
    """Twilio Media Streams messages, Twilio spelling."""

    name: ClassVar[str] = "twilio"
    style: ClassVar[Style] = "twilio"
    modes: ClassVar[frozenset[str]] = frozenset({"mux", "stereo", "per-leg"})

    def __init__(
        self,
        *,
        clock: Clock = time.time,
        tracks: Sequence[str] = DEFAULT_TRACKS,
        account_sid: str = _ACCOUNT_SID,
        call_parameters: bool = True,
    ) -> None:
        """``tracks``: names by leg position; ``account_sid``: ``start.accountSid`` (twilio
        spelling only); ``call_parameters``: add ``session_id``, ``call_id`` and the
        participants' AoRs (``<track>_aor``) to the custom parameters (configured ones win)."""
        super().__init__(clock=clock)
        if isinstance(tracks, str) or not tracks or len(set(tracks)) != len(tracks):
            raise UsageError(f"track names must be distinct and not empty: {tracks!r}")
        self.tracks = tuple(tracks)
        self.account_sid = account_sid
        self.call_parameters = call_parameters
        self.default_mode = "mux"
        if self.style == "twilio":
            self.default_encoding, self.default_sample_rate = "PCMU", 8000
        else:
            self.default_encoding, self.default_sample_rate = "L16", 24000
        self._seq = 0
        self._stream_id = ""
        self._call_sid = ""
        self._ids = ""  # JSON fragment with the stream ids, wavix spelling
        self._tracks: list[tuple[int, str]] = []  # (channel, JSON-encoded track name)
        self._second = -1
        self._event_time = ""

    def check(self, mode: Mode, format: AudioFormat) -> None:
        super().check(mode, format)
        if format.channels > len(self.tracks):
            raise UsageError(f"{format.channels} channels but only tracks {self.tracks}")

    # -- helpers

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def _time(self, now: float | None = None) -> str:
        """``event_time`` (``now`` or the clock's), to the second (one format per second)."""
        second = int(self.clock() if now is None else now)
        if second != self._second:
            self._second, self._event_time = second, iso_utc(second, milliseconds=False)
        return self._event_time

    def _message(self, event: str, body: dict[str, object], now: float | None = None) -> str:
        """A non-media message in this dialect's spelling; ``body`` is its event object."""
        head: dict[str, object] = {"event": event}
        if self.style == "twilio":
            head["sequenceNumber"] = str(self._next())
            return to_json(head | body | {"streamSid": self._stream_id})
        head.update(
            event_time=self._time(now), call_id=self.call.call_id, stream_id=self._stream_id
        )
        head["sequence_number"] = self._next()
        return to_json(head | body)

    def track_name(self, leg: Leg) -> str:
        """The track of a leg (by its caller-first position)."""
        if leg.position >= len(self.tracks):
            raise UsageError(f"no track name for leg position {leg.position}: {self.tracks}")
        return self.tracks[leg.position]

    # -- the dialect

    def _open(self, call: CallInfo) -> list[Message]:
        legs = sorted(call.legs, key=lambda leg: leg.channel)
        names = [self.track_name(leg) for leg in legs]
        self._tracks = [(leg.channel, json.dumps(n)) for leg, n in zip(legs, names, strict=True)]
        stream = call.stream_uuid.hex
        fmt = call.format
        parameters = self._parameters(call, legs, names)
        if self.style == "twilio":
            self._stream_id = "MZ" + stream
            self._call_sid = "CA" + call.session_id.replace("-", "")
            connected = to_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            start = self._message(
                "start",
                {
                    "start": {
                        "accountSid": self.account_sid,
                        "streamSid": self._stream_id,
                        "callSid": self._call_sid,
                        "tracks": names,
                        "customParameters": parameters,
                        "mediaFormat": {
                            "encoding": MEDIA_TYPES[fmt.encoding],
                            "sampleRate": fmt.sample_rate,
                            "channels": 1,
                        },
                    }
                },
            )
            return [connected, start]
        self._stream_id = str(call.stream_uuid)
        self._ids = f'"call_id":{json.dumps(call.call_id)},"stream_id":"{self._stream_id}"'
        connected = to_json(
            {"event": "connected", "event_time": self._time(), "sequence_number": 0}
        )
        start = self._message(
            "start",
            {
                "stream_type": "oneway",
                "channel": "both" if len(names) > 1 else names[0],
                "tracks": names,
                "media_format": {
                    "encoding": MEDIA_TYPES[fmt.encoding],
                    "sample_rate": fmt.sample_rate,
                    "channels": 1,
                },
                "custom_parameters": parameters,
            },
        )
        return [connected, start]

    def _parameters(
        self, call: CallInfo, legs: Sequence[Leg], names: Sequence[str]
    ) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.call_parameters:
            out.update(session_id=call.session_id, call_id=call.call_id)
            for leg, name in zip(legs, names, strict=True):
                participant = call.participant(leg.participant_id)
                if participant is not None and participant.aor is not None:
                    out[f"{name}_aor"] = participant.aor
        out.update(call.custom_parameters)
        return out

    def _audio(self, frame: AudioFrame) -> list[Message]:
        timestamp = frame.index * self.call.format.frame_ms
        chunk = self._frames + 1
        out: list[Message] = []
        b64 = base64.b64encode
        if self.style == "twilio":
            sid = self._stream_id
            for channel, track in self._tracks:
                payload = b64(frame.channel_bytes(channel)).decode("ascii")
                self._seq += 1
                out.append(
                    f'{{"event":"media","sequenceNumber":"{self._seq}","media":{{"track":{track},'
                    f'"chunk":"{chunk}","timestamp":"{timestamp}","payload":"{payload}"}},'
                    f'"streamSid":"{sid}"}}'
                )
            return out
        head = f'{{"event":"media","event_time":"{self._time()}",{self._ids},"sequence_number":'
        for channel, track in self._tracks:
            payload = b64(frame.channel_bytes(channel)).decode("ascii")
            self._seq += 1
            out.append(
                f'{head}{self._seq},"media":{{"payload":"{payload}","track":{track},'
                f'"timestamp":{timestamp},"chunk":{chunk}}}}}'
            )
        return out

    def _dtmf(self, leg: Leg, event: DtmfInfo) -> list[Message]:
        track = self.track_name(leg)
        if self.style == "twilio":
            track += "_track"  # Twilio: "inbound_track"
        return [self._message("dtmf", {"dtmf": {"track": track, "digit": event.digit}})]

    def _close(self, info: CloseInfo) -> list[Message]:
        if self.style == "twilio":
            ids = {"accountSid": self.account_sid, "callSid": self._call_sid}
            return [self._message("stop", {"stop": ids})]
        return [self._message("stop", {})]

    def receive(self, message: Message, now: float) -> list[Message]:
        """``mark`` → ``mark`` (same name); ``clear`` → nothing; the rest is ``ignored``."""
        data = parse_json(message)
        if data is None or not self.is_open:
            self.ignored += 1
            return []
        event = data.get("event")
        sid = data.get("streamSid", data.get("stream_id"))
        if sid is not None and sid != self._stream_id:
            self.ignored += 1
            return []
        if event == "clear":
            return []
        if event == "mark":
            mark = data.get("mark")
            name = mark.get("name") if isinstance(mark, dict) else None
            if isinstance(name, str) and len(name) <= _MAX_MARK_NAME:
                return [self._message("mark", {"mark": {"name": name}}, now)]
        self.ignored += 1
        return []


class WavixDialect(TwilioDialect):
    """Twilio Media Streams messages, Wavix spelling (snake_case, ``event_time``)."""

    name: ClassVar[str] = "wavix"
    style: ClassVar[Style] = "wavix"
