"""rcms: every endpoint on one socket, JSON envelope, tagged binary frames, keep-alive, resume."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest

from ws_out.dialects import get_dialect
from ws_out.dialects.base import AudioFormat, DialectBase, Message
from ws_out.dialects.rcms import BINARY_HEADER
from ws_out.errors import UsageError

Golden = Callable[[str, list[Message]], None]
SCHEMA_PATH = Path(__file__).parents[3] / "docs" / "rcms-v1.schema.json"
VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
PCMU_10MS = AudioFormat(8000, 2, 10, "PCMU")


def texts(messages: list[Message]) -> list[dict[str, Any]]:
    return [json.loads(m) for m in messages if isinstance(m, str)]


def pings(encoder: DialectBase, clock: Any) -> list[Message]:
    """Keep-alive due, a consumer ping (answered), a pong (accepted), junk (ignored)."""
    out = encoder.keepalive(clock.now)  # 1.25 s after open: not due
    out += encoder.keepalive(clock.now + 10)  # due
    out += encoder.receive('{"type":"session.ping","sequenceNumber":7}', clock.now)
    out += encoder.receive('{"type":"session.pong","sequenceNumber":8}', clock.now)
    out += encoder.receive('{"type":"session.close"}', clock.now)
    return out


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


def test_full_call_golden(kit: SimpleNamespace, clock: Any, golden: Golden) -> None:
    encoder = get_dialect("rcms", clock=clock)
    call = kit.make_call("mux", PCMU_10MS)
    messages = kit.fake_call(encoder, call, clock, digits=[("5", "1"), ("9", "2")], between=pings)
    golden("rcms_mux_pcmu", messages)
    m = texts(messages)
    for message in m:
        VALIDATOR.validate(message)
    assert [x["type"] for x in m] == [
        "session.start", "endpoint.dtmf", "endpoint.dtmf", "session.ping", "session.pong",
        "session.end",
    ]  # fmt: skip
    assert [x["sequenceNumber"] for x in m] == list(range(1, 7))
    assert {x["sessionId"] for x in m} == {kit.SID}
    start = m[0]["parameters"]
    assert [(e["endpointId"], e["label"], e["role"], e["aor"]) for e in start["endpoints"]] == [
        (1, "1", "caller", "sip:alice@example.com"),
        (2, "2", "callee", "sip:bob@example.net"),
    ]
    assert start["mediaFormat"] == {"encoding": "PCMU", "sampleRate": 8000, "frameMs": 10}
    assert (start["resumed"], start["positionMs"]) == (False, 0)
    binary = [x for x in messages if isinstance(x, bytes)]
    assert len(binary) == 4
    for k in range(2):
        frame = kit.make_frame(k, PCMU_10MS)
        for endpoint in (1, 2):
            data = binary[2 * k + endpoint - 1]
            assert BINARY_HEADER.unpack(data[:8]) == (1, 0, endpoint, k)
            assert data[8:] == frame.channel_bytes(endpoint - 1)
    assert [x["parameters"]["endpointId"] for x in m[1:3]] == [1, 2]
    assert m[3]["timestamp"] == "2023-11-14T22:13:31.750Z"  # the keep-alive's own time
    assert m[4]["parameters"] == {"replyTo": 7}
    end = m[5]["parameters"]
    assert end["reason"] == "bye" and end["durationMs"] == 20
    assert end["endpoints"][0] == {
        "endpointId": 1, "label": "1", "packets": 1500, "lost": 3, "late": 1, "duplicates": 0,
        "jitterMs": 2.125, "ssrc": 0x12345678, "codec": "PCMU",
    }  # fmt: skip
    assert encoder.ignored == 1


def test_keepalive_interval(kit: SimpleNamespace, clock: Any) -> None:
    encoder = get_dialect("rcms", clock=clock, keepalive_interval=5)
    assert encoder.keepalive_interval == 5
    assert encoder.keepalive(clock.now + 100) == []  # not open yet
    encoder.open(kit.make_call("mux", PCMU_10MS))
    t = clock.now
    due = [t + s for s in (1, 4.9, 5, 6, 9.9, 10.1, 30)]
    sent = [bool(encoder.keepalive(now)) for now in due]
    assert sent == [False, False, True, False, False, True, True]
    with pytest.raises(UsageError):
        get_dialect("rcms", keepalive_interval=0)


def test_reopen_resumes_the_session(kit: SimpleNamespace, clock: Any) -> None:
    encoder = get_dialect("rcms", clock=clock)
    assert encoder.supports_resume
    call = kit.make_call("mux", PCMU_10MS)
    (first,) = encoder.open(call)
    for k in range(4):
        encoder.audio(kit.make_frame(k, PCMU_10MS))
    (again,) = encoder.reopen(20)
    resumed = json.loads(again)
    VALIDATOR.validate(resumed)
    assert resumed["sequenceNumber"] == 2
    assert (resumed["parameters"]["resumed"], resumed["parameters"]["positionMs"]) == (True, 20)
    original = json.loads(first)["parameters"]
    assert resumed["parameters"] | {"resumed": False, "positionMs": 0} == original
    with pytest.raises(UsageError):
        encoder.reopen(15)


def test_messages_for_another_session_are_ignored(kit: SimpleNamespace, clock: Any) -> None:
    encoder = get_dialect("rcms", clock=clock)
    encoder.open(kit.make_call("mux", PCMU_10MS))
    nobody = "00000000-0000-0000-0000-000000000000"
    other = json.dumps({"type": "session.ping", "sessionId": nobody, "sequenceNumber": 1})
    for message in (other, '{"type":"session.ping","sequenceNumber":true}', b"\x01", "[]"):
        assert encoder.receive(message, clock.now) == []
    assert encoder.ignored == 4
    with pytest.raises(UsageError):
        get_dialect("rcms").check("per-leg", AudioFormat(8000, 1))
