"""Shared dialect types: leg order, connections, CallInfo checks, frames, the registry."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from ws_out.dialects import DIALECTS, get_dialect
from ws_out.dialects.base import (
    AudioFormat,
    AudioFrame,
    CallInfo,
    CloseInfo,
    DialectBase,
    DtmfInfo,
    Leg,
    Participant,
    group_legs,
    iso_utc,
    order_legs,
    parse_json,
    to_json,
)
from ws_out.errors import UsageError

A, B, C = "pa", "pb", "pc"
PEOPLE = [
    Participant(A, "sip:+15551230001@carrier.example"),
    Participant(B, "sip:agent17@cc.example"),
    Participant(C, None),
]


def labels(legs: list[Leg]) -> list[str]:
    return [leg.label for leg in legs]


def test_order_legs_puts_the_first_metadata_participant_first() -> None:
    legs = order_legs([("callee", B), ("caller", A)], PEOPLE)
    assert labels(legs) == ["caller", "callee"]
    assert [(leg.position, leg.channel) for leg in legs] == [(0, 0), (1, 1)]
    assert legs[0].participant_id == A


def test_order_legs_without_metadata_keeps_the_first_label() -> None:
    assert labels(order_legs([("7", None), ("3", None)], [])) == ["7", "3"]
    assert labels(order_legs([("7", None), ("3", C)], PEOPLE[2:])) == ["3", "7"]
    assert order_legs([], PEOPLE) == []


@pytest.mark.parametrize(
    ("caller", "first"),
    [
        ("2", "2"),  # a label
        (B, "2"),  # a participant id
        ("AGENT17@", "2"),  # part of an AoR, any case
        ("nobody", "1"),  # no match: metadata order
    ],
)
def test_order_legs_configured_caller(caller: str, first: str) -> None:
    legs = order_legs([("1", A), ("2", B), ("3", C)], PEOPLE, caller=caller)
    assert labels(legs)[0] == first
    assert sorted(labels(legs)) == ["1", "2", "3"]
    assert [leg.position for leg in legs] == [0, 1, 2]


def test_group_legs_per_mode() -> None:
    legs = order_legs([("1", A), ("2", B)], PEOPLE)
    assert group_legs("stereo", legs) == group_legs("mux", legs) == [tuple(legs)]
    per_leg = group_legs("per-leg", legs)
    assert [(c[0].label, c[0].channel, c[0].position) for c in per_leg] == [
        ("1", 0, 0),
        ("2", 0, 1),
    ]
    (mixed,) = group_legs("mixed", legs)
    assert [(leg.channel, leg.position) for leg in mixed] == [(0, 0), (0, 1)]
    with pytest.raises(UsageError):
        group_legs("quad", legs)  # type: ignore[arg-type]


def test_call_info_stream_uuid(kit: SimpleNamespace) -> None:
    assert kit.make_call("mux").stream_uuid == uuid.UUID(kit.SID)
    assert kit.make_call("mixed").stream_uuid == uuid.UUID(kit.SID)
    first, second = kit.make_call("per-leg", connection=0), kit.make_call("per-leg", connection=1)
    assert first.stream_uuid == uuid.uuid5(uuid.UUID(kit.SID), "1")  # the caller's leg
    assert first.stream_uuid != second.stream_uuid
    assert kit.make_call("per-leg", connection=0).stream_uuid == first.stream_uuid  # stable


@pytest.mark.parametrize(
    ("mode", "legs", "channels"),
    [
        ("stereo", [Leg("1", None, 0, 0), Leg("2", None, 0, 1)], 2),  # one channel twice
        ("stereo", [Leg("1", None, 0, 0), Leg("2", None, 2, 1)], 2),  # channel out of range
        ("mux", [Leg("1", None, 0, 0), Leg("1", None, 1, 1)], 2),  # label twice
        ("mux", [Leg("1", None, 0, 0), Leg("2", None, 1, 0)], 2),  # position twice
        ("per-leg", [Leg("1", None, 0, 0), Leg("2", None, 0, 1)], 1),  # two legs
        ("per-leg", [Leg("1", None, 0, 0)], 2),  # stereo format
        ("mixed", [Leg("1", None, 0, 0), Leg("2", None, 1, 1)], 1),  # channel 1
        ("quad", [], 1),
    ],
)
def test_call_info_rejects_inconsistent_layouts(mode: Any, legs: list[Leg], channels: int) -> None:
    with pytest.raises(UsageError):
        CallInfo(
            "3f2b8c1e-9d4a-4e5b-8f6c-7a1d2e3f4a5b",
            "c",
            0.0,
            tuple(legs),
            AudioFormat(8000, channels),
            mode,
        )


def test_call_info_rejects_a_bad_session_id() -> None:
    with pytest.raises(UsageError):
        CallInfo("3F2B8C1E-9D4A-4E5B-8F6C-7A1D2E3F4A5B", "c", 0.0, (), AudioFormat(8000, 1), "mux")


def test_audio_frame_bytes() -> None:
    pcm = np.array([[1, -2], [3, -4]], dtype=np.int16)
    frame = AudioFrame(0, pcm)
    assert frame.samples == 2
    assert frame.channel_bytes(0) == b"\x01\x00\x03\x00"
    assert frame.channel_bytes(1) == b"\xfe\xff\xfc\xff"
    assert frame.interleaved_bytes() == frame.pcm_bytes() == b"\x01\x00\xfe\xff\x03\x00\xfc\xff"
    coded = AudioFrame(0, pcm, np.array([[0xFF, 0x7F], [0x10, 0x20]], dtype=np.uint8))
    assert coded.channel_bytes(1) == b"\x7f\x20"
    assert coded.interleaved_bytes() == b"\xff\x7f\x10\x20"
    assert coded.pcm_bytes() == frame.pcm_bytes()


def test_message_helpers() -> None:
    assert to_json({"a": "é", "b": [1, None]}) == '{"a":"é","b":[1,null]}'
    assert to_json({"bad": "x\udcffy"}) == '{"bad":"x?y"}'
    with pytest.raises(UsageError):
        to_json({"x": float("nan")})
    assert iso_utc(1_700_000_000.25) == "2023-11-14T22:13:20.250Z"
    assert iso_utc(1_700_000_000.25, milliseconds=False) == "2023-11-14T22:13:20Z"
    with pytest.raises(UsageError):
        iso_utc(1e20)
    assert parse_json('{"event":"mark"}') == {"event": "mark"}
    for junk in (b'{"event":"mark"}', "[1]", "{", " " * 70_000 + "{}"):
        assert parse_json(junk) is None


def test_registry_knows_every_dialect() -> None:
    assert set(DIALECTS) == {
        "native",
        "twilio",
        "wavix",
        "voxology",
        "voipbin",
        "audiosocket",
        "rcms",
    }
    for name in DIALECTS:
        encoder = get_dialect(name)
        assert isinstance(encoder, DialectBase) and encoder.name == name
        encoder.check(
            encoder.default_mode,
            AudioFormat(encoder.default_sample_rate, 1, 20, encoder.default_encoding),
        )
    assert get_dialect("voipbin", encapsulation="rtp").default_encoding == "PCMU"
    with pytest.raises(UsageError, match="unknown dialect"):
        get_dialect("genesys")
    with pytest.raises(UsageError, match="voxology"):
        get_dialect("voxology", encapsulation="rtp")


def test_call_order_is_enforced(kit: SimpleNamespace) -> None:
    encoder = get_dialect("twilio")
    call = kit.make_call("mux", AudioFormat(8000, 2, 10, "PCMU"))
    frame = kit.make_frame(0, call.format)
    with pytest.raises(UsageError):
        encoder.audio(frame)
    with pytest.raises(UsageError):
        encoder.reopen(0)
    with pytest.raises(UsageError):
        encoder.close(CloseInfo("bye"))
    encoder.open(call)
    with pytest.raises(UsageError):
        encoder.open(call)
    with pytest.raises(UsageError):
        encoder.audio(kit.make_frame(0, AudioFormat(8000, 2, 20, "PCMU")))  # 20 ms, not 10
    with pytest.raises(UsageError):
        encoder.audio(AudioFrame(0, frame.pcm))  # PCM without the μ-law octets
    with pytest.raises(UsageError):
        encoder.dtmf(DtmfInfo("X", 100, "1", 0))
    with pytest.raises(UsageError):
        encoder.dtmf(DtmfInfo("1", 100, "9", 0))  # no such leg
    with pytest.raises(UsageError):
        encoder.close(CloseInfo("hangup"))  # type: ignore[arg-type]
    assert encoder.frames_sent == 0
    encoder.close(CloseInfo("bye"))
    with pytest.raises(UsageError):
        encoder.audio(frame)
    assert encoder.receive(json.dumps({"event": "mark", "mark": {"name": "x"}}), 0.0) == []
