"""twilio and wavix: Twilio Media Streams messages in both spellings; mark and clear."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from ws_out.dialects import get_dialect
from ws_out.dialects.base import AudioFormat, DialectBase, Message
from ws_out.dialects.twilio import MEDIA_TYPES
from ws_out.errors import UsageError

Golden = Callable[[str, list[Message]], None]
PCMU_10MS = AudioFormat(8000, 2, 10, "PCMU")
L16_24K = AudioFormat(24000, 2, 10, "L16")


def parsed(messages: list[Message]) -> list[dict[str, Any]]:
    assert all(isinstance(m, str) for m in messages)  # JSON only
    return [json.loads(m) for m in messages]


def mark_and_clear(encoder: DialectBase, clock: Any) -> list[Message]:
    """The consumer marks, clears, marks again; replies are queued after the audio so far."""
    stream = encoder.call.stream_uuid
    sid = f"MZ{stream.hex}" if encoder.name == "twilio" else str(stream)
    key = "streamSid" if encoder.name == "twilio" else "stream_id"
    now = clock.now
    out = encoder.receive(
        json.dumps({"event": "mark", key: sid, "mark": {"name": "greeting"}}), now
    )
    out += encoder.receive(json.dumps({"event": "clear", key: sid}), now)
    out += encoder.receive(json.dumps({"event": "mark", "mark": {"name": "läuft"}}), now)
    return out


def test_twilio_full_call_golden(kit: SimpleNamespace, clock: Any, golden: Golden) -> None:
    encoder = get_dialect("twilio", clock=clock)
    call = kit.make_call("mux", PCMU_10MS)
    messages = kit.fake_call(encoder, call, clock, between=mark_and_clear)
    golden("twilio_mux_pcmu", messages)
    m = parsed(messages)
    assert [x["event"] for x in m] == [
        "connected", "start", "media", "media", "media", "media", "dtmf", "mark", "mark", "stop"
    ]  # fmt: skip
    assert m[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert [x["sequenceNumber"] for x in m[1:]] == [str(n) for n in range(1, 10)]
    start = m[1]["start"]
    assert start["streamSid"] == m[1]["streamSid"] == "MZ" + kit.SID.replace("-", "")
    assert start["callSid"] == "CA" + kit.SID.replace("-", "")
    assert start["tracks"] == ["inbound", "outbound"]
    assert start["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert start["customParameters"] == {
        "session_id": kit.SID,
        "call_id": kit.CALL_ID,
        "inbound_aor": "sip:alice@example.com",
        "outbound_aor": "sip:bob@example.net",
        "tenant": "acme",
    }
    for k, (inbound, outbound) in enumerate([(m[2], m[3]), (m[4], m[5])]):
        frame = kit.make_frame(k, PCMU_10MS)
        assert inbound["media"]["track"] == "inbound" and outbound["media"]["track"] == "outbound"
        assert base64.b64decode(inbound["media"]["payload"]) == frame.channel_bytes(0)
        assert base64.b64decode(outbound["media"]["payload"]) == frame.channel_bytes(1)
        assert inbound["media"]["chunk"] == str(k + 1) and inbound["media"]["timestamp"] == str(
            10 * k
        )
    assert m[6]["dtmf"] == {"track": "inbound_track", "digit": "5"}
    assert [x["mark"]["name"] for x in m[7:9]] == ["greeting", "läuft"]
    assert m[9]["stop"] == {"accountSid": "AC" + "0" * 32, "callSid": start["callSid"]}
    assert encoder.ignored == 0
    for text in messages:  # the hand-built media messages are canonical compact JSON
        assert text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


def test_wavix_full_call_golden(kit: SimpleNamespace, clock: Any, golden: Golden) -> None:
    encoder = get_dialect("wavix", clock=clock)
    assert (encoder.default_encoding, encoder.default_sample_rate) == ("L16", 24000)
    call = kit.make_call("mux", L16_24K)
    messages = kit.fake_call(encoder, call, clock, between=mark_and_clear)
    golden("wavix_mux_l16_24k", messages)
    m = parsed(messages)
    assert [x["sequence_number"] for x in m] == list(range(10))
    assert all(x["event_time"].endswith("Z") for x in m)
    assert m[0]["event_time"] == "2023-11-14T22:13:20Z"
    assert m[-1]["event_time"] == "2023-11-14T22:13:22Z"
    start = m[1]
    assert start["stream_id"] == kit.SID and start["call_id"] == kit.CALL_ID
    assert (start["stream_type"], start["channel"]) == ("oneway", "both")
    assert start["media_format"] == {"encoding": "audio/x-l16", "sample_rate": 24000, "channels": 1}
    media = m[3]["media"]
    assert media["track"] == "outbound" and media["timestamp"] == 0 and media["chunk"] == 1
    assert base64.b64decode(media["payload"]) == kit.make_frame(0, L16_24K).channel_bytes(1)
    assert len(base64.b64decode(media["payload"])) == 480  # 10 ms of 24 kHz L16
    assert m[6]["dtmf"] == {"track": "inbound", "digit": "5"}
    assert set(m[9]) == {"event", "event_time", "call_id", "stream_id", "sequence_number"}
    for text in messages:
        assert text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


def test_per_leg_track_follows_the_leg_not_the_connection(kit: SimpleNamespace, clock: Any) -> None:
    encoder = get_dialect("wavix", clock=clock)
    call = kit.make_call("per-leg", AudioFormat(8000, 1, 20, "PCMU"), connection=1)
    start = parsed(encoder.open(call))[1]
    assert start["tracks"] == ["outbound"] and start["channel"] == "outbound"
    assert start["media_format"]["encoding"] == MEDIA_TYPES["PCMU"]
    media = parsed(encoder.audio(kit.make_frame(4, call.format)))
    assert [(x["media"]["track"], x["media"]["timestamp"]) for x in media] == [("outbound", 80)]


def test_consumer_messages_that_do_not_apply_are_counted(kit: SimpleNamespace, clock: Any) -> None:
    encoder = get_dialect("twilio", clock=clock)
    assert encoder.receive('{"event":"mark","mark":{"name":"early"}}', 0) == []  # before open
    encoder.open(kit.make_call("mux", PCMU_10MS))
    ignored = [
        '{"event":"media","media":{"payload":"AAAA"}}',  # audio to play: a recording cannot
        '{"event":"mark","streamSid":"MZother","mark":{"name":"x"}}',  # another stream
        '{"event":"mark","mark":{}}',
        '{"event":"mark","mark":{"name":"' + "x" * 300 + '"}}',
        '{"event":"dance"}',
        "not json",
        b"\x00\x01",
    ]
    for message in ignored:
        assert encoder.receive(message, 0) == []
    assert encoder.ignored == len(ignored) + 1
    assert encoder.receive('{"event":"clear"}', 0) == []
    assert encoder.ignored == len(ignored) + 1  # clear is understood


def test_tracks_are_configurable_and_must_cover_the_legs(kit: SimpleNamespace) -> None:
    encoder = get_dialect("twilio", tracks=["caller", "agent"], call_parameters=False)
    call = kit.make_call("mux", PCMU_10MS, custom={})
    start = parsed(encoder.open(call))[1]["start"]
    assert start["tracks"] == ["caller", "agent"] and start["customParameters"] == {}
    with pytest.raises(UsageError):
        get_dialect("twilio", tracks=["inbound"]).check("mux", PCMU_10MS)
    for bad in (["a", "a"], [], "inbound"):
        with pytest.raises(UsageError):
            get_dialect("twilio", tracks=bad)
    with pytest.raises(UsageError):
        get_dialect("twilio").check("mixed", AudioFormat(8000, 1))


def test_a_refused_open_can_be_retried(kit: SimpleNamespace) -> None:
    encoder = get_dialect("twilio", tracks=["inbound"])
    callee = kit.make_call("per-leg", AudioFormat(8000, 1, 20, "PCMU"), connection=1)
    with pytest.raises(UsageError, match="no track name"):
        encoder.open(callee)  # position 1 has no track name
    assert not encoder.is_open
    caller = kit.make_call("per-leg", AudioFormat(8000, 1, 20, "PCMU"), connection=0)
    assert parsed(encoder.open(caller))[1]["start"]["tracks"] == ["inbound"]
