"""The native dialect: the protocol v1 encoder behind the dialect interface."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest

from ws_out.dialects import get_dialect
from ws_out.dialects.base import AudioFormat, Message

SCHEMA = json.loads((Path(__file__).parents[3] / "docs" / "protocol-v1.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

Golden = Callable[[str, list[Message]], None]


def texts(messages: list[Message]) -> list[dict[str, object]]:
    return [json.loads(m) for m in messages if isinstance(m, str)]


def test_full_call_stereo_golden(kit: SimpleNamespace, clock: object, golden: Golden) -> None:
    encoder = get_dialect("native", clock=clock)
    call = kit.make_call("stereo")
    messages = kit.fake_call(encoder, call, clock)
    golden("native_stereo", messages)
    for message in texts(messages):
        VALIDATOR.validate(message)
    start = texts(messages)[0]
    assert [s["label"] for s in start["streams"]] == ["1", "2"]  # caller (Alice) left
    frames = [m for m in messages if isinstance(m, bytes)]
    assert frames == [kit.make_frame(k, call.format).interleaved_bytes() for k in range(2)]
    assert [m["type"] for m in texts(messages)] == ["start", "dtmf", "stop"]
    assert texts(messages)[-1]["duration_ms"] == 20


def test_full_call_mixed_pcmu_golden(kit: SimpleNamespace, clock: object, golden: Golden) -> None:
    encoder = get_dialect("native", clock=clock)
    call = kit.make_call("mixed", AudioFormat(8000, 1, 10, "PCMU"))
    messages = kit.fake_call(encoder, call, clock)
    golden("native_mixed_pcmu", messages)
    for message in texts(messages):
        VALIDATOR.validate(message)
    frame = kit.make_frame(0, call.format)
    assert messages[1] == frame.payload.tobytes()
    assert len(messages[1]) == 80


def test_per_leg_connection_carries_its_leg(kit: SimpleNamespace, clock: object) -> None:
    encoder = get_dialect("native", clock=clock)
    call = kit.make_call("per-leg", connection=1)
    messages = kit.fake_call(encoder, call, clock, digits=[("5", "1"), ("7", "2")])
    start, dtmf, stop = texts(messages)
    assert start["streams"] == [{"label": "2", "participant_id": kit.BOB, "channel": 0}]
    assert dtmf["label"] == "2" and dtmf["digit"] == "7"
    assert [s["label"] for s in stop["streams"]] == ["2"]


def test_reopen_is_a_resumed_start(kit: SimpleNamespace, clock: object) -> None:
    encoder = get_dialect("native", clock=clock)
    assert encoder.supports_resume
    call = kit.make_call("stereo")
    (first,) = encoder.open(call)
    for k in range(3):
        encoder.audio(kit.make_frame(k, call.format))
    (again,) = encoder.reopen(10)  # 10 ms frames: frame 1
    message = json.loads(again)
    VALIDATOR.validate(message)
    assert (message["resumed"], message["resume_from_frame"], message["resume_from_ms"]) == (
        True,
        1,
        10,
    )
    assert message["seq"] == 0 and message["streams"] == json.loads(first)["streams"]
    with pytest.raises(ValueError):
        encoder.reopen(15)  # not a frame boundary


def test_mux_is_not_a_native_mode() -> None:
    encoder = get_dialect("native")
    with pytest.raises(ValueError):
        encoder.check("mux", AudioFormat(8000, 2))
    encoder.check("mixed", AudioFormat(48000, 1))
