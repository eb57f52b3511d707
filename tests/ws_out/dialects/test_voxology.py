"""voxology: init_stream, start_track per leg, live_track, stop_track, end_stream."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from ws_out.dialects import get_dialect
from ws_out.dialects.base import AudioFormat, Message
from ws_out.errors import UsageError

Golden = Callable[[str, list[Message]], None]
PCMU_10MS = AudioFormat(8000, 2, 10, "PCMU")


def test_full_call_golden(kit: SimpleNamespace, clock: Any, golden: Golden) -> None:
    encoder = get_dialect("voxology", clock=clock)
    call = kit.make_call("mux", PCMU_10MS)
    messages = kit.fake_call(encoder, call, clock)
    golden("voxology_mux_pcmu", messages)
    m = [json.loads(x) for x in messages if isinstance(x, str)]
    assert len(m) == len(messages)  # JSON only
    assert [x["event"] for x in m] == [
        "init_stream",
        "start_track",
        "start_track",
        "live_track",
        "live_track",
        "live_track",
        "live_track",
        "stop_track",
        "stop_track",
        "end_stream",
    ]  # fmt: skip; no DTMF message in this protocol
    assert [x["stream_sequence_number"] for x in m] == list(range(1, 11))
    init = m[0]
    assert init["stream_id"] == kit.SID and init["call_id"] == kit.CALL_ID
    assert init["tracks"] == ["inbound", "outbound"]
    assert init["stream_data"] == {"tenant": "acme"}
    for track, name in ((m[1], "inbound"), (m[2], "outbound")):
        assert track["name"] == name and track["track_sequence_number"] == 1
        assert track["media_format"] == {"encoding": "audio/x-mulaw", "sample_rate": 8000}
    live = [x for x in m if x["event"] == "live_track"]
    assert [(x["name"], x["track_sequence_number"]) for x in live] == [
        ("inbound", 2), ("outbound", 2), ("inbound", 3), ("outbound", 3)
    ]  # fmt: skip
    assert base64.b64decode(live[3]["media"]) == kit.make_frame(1, PCMU_10MS).channel_bytes(1)
    for stop in m[7:9]:
        assert stop["track_sequence_number"] == 4 and stop["duration"] == 20
        assert stop["start_time"] == "2023-11-14T22:13:20.250Z"
        assert stop["end_time"] == "2023-11-14T22:13:22.250Z"
    assert m[9] == {"event": "end_stream", "stream_sequence_number": 10, "stream_id": kit.SID}
    for text in messages:
        assert text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


def test_per_leg_and_l16(kit: SimpleNamespace, clock: Any) -> None:
    encoder = get_dialect("voxology", clock=clock, tracks=["customer", "agent"])
    call = kit.make_call("per-leg", AudioFormat(16000, 1, 20), connection=1)
    init, start = (json.loads(x) for x in encoder.open(call))
    assert init["tracks"] == ["agent"] and start["name"] == "agent"
    assert start["media_format"] == {"encoding": "audio/x-l16", "sample_rate": 16000}
    (live,) = encoder.audio(kit.make_frame(0, call.format))
    assert len(base64.b64decode(json.loads(live)["media"])) == 640
    assert encoder.receive('{"event":"anything"}', 0) == [] and encoder.ignored == 1


def test_unsupported_modes() -> None:
    with pytest.raises(UsageError):
        get_dialect("voxology").check("mixed", AudioFormat(8000, 1))
    with pytest.raises(UsageError):
        get_dialect("voxology", tracks=["only"]).check("mux", PCMU_10MS)
