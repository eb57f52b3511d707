from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import given
from hypothesis.extra.numpy import arrays

from ws_out import (
    AudioFormat,
    NativeEncoder,
    Participant,
    Stream,
    StreamStats,
    UsageError,
    select_sip_headers,
)

VECTORS = Path(__file__).parent / "vectors"
SCHEMA_PATH = Path(__file__).parents[2] / "docs" / "protocol-v1.schema.json"
SID = "3f2b8c1e-9d4a-4e5b-8f6c-7a1d2e3f4a5b"
ALICE = "srfBElmCRp2QB23b7Mpk0w=="
BOB = "zSfPoSvdSDCmU3A3TRDxAw=="
STEREO_8K = AudioFormat(sample_rate=8000, channels=2, frame_ms=20)

SIP_HEADERS = [
    ("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds"),
    ("f", "<sip:sbc@192.0.2.1>;tag=35fa "),
    ("To", "<sip:srs@192.0.2.10>"),
    ("Cisco-Guid", "1234567-89ABCDEF-1234567-89ABCDEF"),
    ("Diversion", "<sip:1000@192.0.2.1>;reason=unconditional"),
    ("DIVERSION", "<sip:2000@192.0.2.1>;reason=user-busy"),
    ("Content-Type", "multipart/mixed;boundary=foobar"),
]

VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def vector(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


def assert_golden(text: str, name: str) -> None:
    expected = vector(name)
    assert json.loads(text) == expected
    # Same key order, compact separators, UTF-8 rather than \u escapes.
    assert text == json.dumps(expected, separators=(",", ":"), ensure_ascii=False)


def started_stereo() -> tuple[NativeEncoder, str]:
    enc = NativeEncoder(SID)
    text = enc.start(
        call_id="a84b4c76e66710@pc33.example.com",
        participants=[
            Participant(ALICE, "sip:alice@example.com", "Zoë Müller"),
            Participant(BOB, "sip:bob@example.net"),
        ],
        streams=[Stream("1", ALICE, 0), Stream("2", BOB, 1)],
        format=STEREO_8K,
        mode="stereo",
        started_at=1_700_000_000.25,
        sip=select_sip_headers(SIP_HEADERS, request_uri="sip:srs@192.0.2.10:5060"),
    )
    return enc, text


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


@pytest.mark.parametrize(
    "name", ["start_stereo.json", "start_per_leg.json", "dtmf.json", "stop.json"]
)
def test_golden_vectors_match_schema(name: str) -> None:
    VALIDATOR.validate(vector(name))


def test_start_stereo_golden() -> None:
    enc, text = started_stereo()
    assert_golden(text, "start_stereo.json")
    VALIDATOR.validate(json.loads(text))
    assert enc.seq == 1
    assert enc.format == STEREO_8K


def test_start_per_leg_golden() -> None:
    enc = NativeEncoder(SID)
    text = enc.start(
        call_id="B2B.415.7262.1700000000",
        participants=[],
        streams=[Stream("0", None, 0)],
        format=AudioFormat(16000, 1),
        mode="per-leg",
        started_at=0.0,
        metadata_problems=[
            "rs-metadata: not well-formed XML (line 3)",
            "stream label 7 has no m-line",
        ],
        sip={"request_uri": "sip:srs@192.0.2.10"},
    )
    assert_golden(text, "start_per_leg.json")
    VALIDATOR.validate(json.loads(text))


def test_dtmf_and_stop_golden() -> None:
    enc, _ = started_stereo()
    dtmf = enc.dtmf(digit="#", duration_ms=160, label="1", position_ms=12340)
    assert_golden(dtmf, "dtmf.json")
    frame = np.zeros((160, 2), dtype=np.int16)
    for _ in range(3):
        assert len(enc.audio(frame)) == STEREO_8K.frame_bytes == 640
    stop = enc.stop(
        reason="bye",
        streams=[
            StreamStats("1", 1500, 3, 1, 0, 2.1250004, {"ssrc": 0x12345678, "codec": "PCMU"}),
            StreamStats("2", 1497, 0, 0, 2, 0.0),
        ],
    )
    assert_golden(stop, "stop.json")
    for text in (dtmf, stop):
        VALIDATOR.validate(json.loads(text))


def test_schema_rejects_broken_messages() -> None:
    start = vector("start_stereo.json")
    del start["format"]
    dtmf = vector("dtmf.json") | {"digit": "X"}
    stop = vector("stop.json") | {"reason": "hangup"}
    unknown = vector("dtmf.json") | {"type": "mute"}
    extra = vector("dtmf.json") | {"surprise": 1}
    for bad in (start, dtmf, stop, unknown, extra):
        assert not VALIDATOR.is_valid(bad), bad


def test_select_sip_headers_keeps_useful_headers_only() -> None:
    sip = select_sip_headers(SIP_HEADERS, request_uri="sip:srs@192.0.2.10:5060")
    assert sip == vector("start_stereo.json")["sip"]
    assert "via" not in sip and "content-type" not in sip


def test_stereo_audio_is_interleaved_little_endian() -> None:
    enc, _ = started_stereo()
    left = np.arange(160, dtype=np.int16)
    right = -np.arange(160, dtype=np.int16) - 1000
    data = enc.audio(np.column_stack((left, right)))
    samples = np.frombuffer(data, dtype="<i2")
    assert np.array_equal(samples[0::2], left)
    assert np.array_equal(samples[1::2], right)
    assert data[:4] == b"\x00\x00\x18\xfc"  # 0, then -1000 little-endian


def test_audio_accepts_fortran_order_and_big_endian() -> None:
    enc, _ = started_stereo()
    rng = np.random.default_rng(7)
    frame = rng.integers(-32768, 32767, size=(160, 2), dtype=np.int16)
    expected = frame.astype("<i2").tobytes()
    fortran = np.asfortranarray(frame)
    assert not fortran.flags.c_contiguous
    assert enc.audio(fortran) == expected
    assert enc.audio(frame.astype(">i2")) == expected
    assert enc.audio(np.stack((frame[:, 0], frame[:, 1])).T) == expected
    assert enc.frames_sent == 3
    assert enc.duration_ms == 60


def test_mono_audio_accepts_1d_and_column() -> None:
    enc = NativeEncoder(SID)
    enc.start(
        call_id="c",
        participants=[],
        streams=[Stream("a", None, 0)],
        format=AudioFormat(16000, 1),
        mode="per-leg",
        started_at=0.0,
    )
    pcm = np.arange(320, dtype=np.int16)
    assert enc.audio(pcm) == enc.audio(pcm.reshape(320, 1)) == pcm.astype("<i2").tobytes()


@given(arrays(np.int16, (160, 2)))
def test_audio_round_trips_any_samples(frame: np.ndarray[Any, np.dtype[np.int16]]) -> None:
    enc, _ = started_stereo()
    decoded = np.frombuffer(enc.audio(frame), dtype="<i2").reshape(160, 2)
    assert np.array_equal(decoded, frame)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((160, 2), dtype=np.float32),
        np.zeros((160, 2), dtype=np.int32),
        np.zeros((161, 2), dtype=np.int16),
        np.zeros((160, 3), dtype=np.int16),
        np.zeros(320, dtype=np.int16),
    ],
)
def test_audio_rejects_wrong_dtype_or_shape(bad: np.ndarray[Any, Any]) -> None:
    enc, _ = started_stereo()
    with pytest.raises(UsageError):
        enc.audio(bad)
    assert enc.frames_sent == 0


def test_call_order_is_enforced() -> None:
    enc = NativeEncoder(SID)
    frame = np.zeros((160, 2), dtype=np.int16)
    with pytest.raises(UsageError):
        enc.audio(frame)
    with pytest.raises(UsageError):
        enc.dtmf(digit="1", duration_ms=100, label="1", position_ms=0)
    with pytest.raises(UsageError):
        enc.stop(reason="bye")
    enc, _ = started_stereo()
    with pytest.raises(UsageError):
        enc.start(
            call_id="x",
            participants=[],
            streams=[],
            format=STEREO_8K,
            mode="stereo",
            started_at=0.0,
        )
    enc.stop(reason="shutdown")
    with pytest.raises(UsageError):
        enc.audio(frame)
    with pytest.raises(UsageError):
        enc.stop(reason="bye")


@pytest.mark.parametrize(
    ("streams", "fmt", "mode"),
    [
        ([Stream("1", None, 0), Stream("2", None, 0)], STEREO_8K, "stereo"),
        ([Stream("1", None, 2)], STEREO_8K, "stereo"),
        ([Stream("1", None, 0)], STEREO_8K, "per-leg"),
        ([Stream("1", None, 0), Stream("2", None, 1)], AudioFormat(8000, 1), "per-leg"),
        ([Stream("1", None, 0), Stream("2", None, 1)], AudioFormat(8000, 1), "mixed"),
        ([Stream("1", None, 0)], STEREO_8K, "mixed"),
        ([Stream("1", None, 0)], AudioFormat(8000, 1), "mux"),
    ],
)
def test_start_rejects_inconsistent_layout(
    streams: list[Stream], fmt: AudioFormat, mode: Any
) -> None:
    enc = NativeEncoder(SID)
    with pytest.raises(UsageError):
        enc.start(
            call_id="c", participants=[], streams=streams, format=fmt, mode=mode, started_at=0.0
        )
    assert enc.seq == 0


def test_invalid_arguments_raise_usage_error() -> None:
    with pytest.raises(UsageError):
        NativeEncoder("not-a-uuid")
    with pytest.raises(UsageError):
        NativeEncoder(SID.upper())
    with pytest.raises(UsageError):
        AudioFormat(44100, 2, frame_ms=7)  # 308.7 samples per frame
    with pytest.raises(UsageError):
        AudioFormat(0, 1)
    for bad_time in (float("inf"), 1e20):
        with pytest.raises(UsageError):
            NativeEncoder(SID).start(
                call_id="c",
                participants=[],
                streams=[],
                format=STEREO_8K,
                mode="stereo",
                started_at=bad_time,
            )
    enc, _ = started_stereo()
    with pytest.raises(UsageError):
        enc.dtmf(digit="E", duration_ms=100, label="1", position_ms=0)
    with pytest.raises(UsageError):
        enc.stop(reason="hangup")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        enc.stop(reason="bye", streams=[StreamStats("1", 1, 0, 0, 0, 0.0, {"lost": 5})])
    with pytest.raises(UsageError):
        enc.stop(reason="bye", streams=[StreamStats("1", 1, 0, 0, 0, float("nan"))])
    assert enc.seq == 1  # failed messages do not consume a seq
    assert json.loads(enc.stop(reason="error"))["seq"] == 1


def test_lone_surrogates_are_replaced_not_raised() -> None:
    enc = NativeEncoder(SID)
    text = enc.start(
        call_id="bad\udcffid",
        participants=[Participant("p", None, "x\ud800y")],
        streams=[],
        format=STEREO_8K,
        mode="stereo",
        started_at=0.0,
    )
    text.encode("utf-8")  # must not raise
    message = json.loads(text)
    assert message["call_id"] == "bad?id"
    assert message["participants"][0]["name"] == "x?y"


# --- v1.1 additions: mixed mode, G.711 frames, resumed starts ------------------------------------


def test_mixed_mode_start_lists_every_stream_on_channel_0() -> None:
    enc = NativeEncoder(SID)
    text = enc.start(
        call_id="c",
        participants=[Participant(ALICE), Participant(BOB)],
        streams=[Stream("1", ALICE, 0), Stream("2", BOB, 0)],
        format=AudioFormat(16000, 1),
        mode="mixed",
        started_at=0.0,
    )
    message = json.loads(text)
    VALIDATOR.validate(message)
    assert message["mode"] == "mixed"
    assert [s["channel"] for s in message["streams"]] == [0, 0]
    assert len(enc.audio(np.zeros(320, dtype=np.int16))) == 640


@pytest.mark.parametrize("encoding", ["PCMU", "PCMA"])
def test_g711_frames_are_one_octet_per_sample(encoding: Any) -> None:
    fmt = AudioFormat(8000, 2, 20, encoding)
    assert fmt.frame_bytes == 320
    enc = NativeEncoder(SID)
    message = json.loads(
        enc.start(
            call_id="c",
            participants=[],
            streams=[Stream("1", None, 0), Stream("2", None, 1)],
            format=fmt,
            mode="stereo",
            started_at=0.0,
        )
    )
    VALIDATOR.validate(message)
    assert message["format"] == {
        "encoding": encoding,
        "sample_rate": 8000,
        "channels": 2,
        "frame_ms": 20,
    }
    octets = np.arange(320, dtype=np.uint8).reshape(160, 2)
    assert enc.audio(octets) == octets.tobytes()
    with pytest.raises(UsageError):
        enc.audio(np.zeros((160, 2), dtype=np.int16))  # PCM where octets are expected


def test_g711_is_8khz_only_and_encodings_are_known() -> None:
    with pytest.raises(UsageError):
        AudioFormat(16000, 1, 20, "PCMU")
    with pytest.raises(UsageError):
        AudioFormat(8000, 1, 20, "G722")  # type: ignore[arg-type]
    invalid = vector("start_stereo.json")
    invalid["format"] |= {"encoding": "PCMA", "sample_rate": 16000}
    assert not VALIDATOR.is_valid(invalid)


def test_resume_repeats_start_with_the_first_frame_to_follow() -> None:
    enc, first = started_stereo()
    for _ in range(5):
        enc.audio(np.zeros((160, 2), dtype=np.int16))
    enc.dtmf(digit="5", duration_ms=100, label="2", position_ms=40)
    resumed = json.loads(enc.resume(3))
    VALIDATOR.validate(resumed)
    assert resumed.pop("resumed") is True
    assert resumed.pop("resume_from_frame") == 3
    assert resumed.pop("resume_from_ms") == 60
    assert resumed == json.loads(first)  # seq 0 and every field of the first start
    stop = json.loads(enc.stop(reason="bye"))
    assert stop["seq"] == 2 and stop["duration_ms"] == 100  # the stream's numbering goes on


def test_resume_needs_a_frame_of_the_stream() -> None:
    with pytest.raises(UsageError):
        NativeEncoder(SID).resume(0)
    enc, _ = started_stereo()
    enc.audio(np.zeros((160, 2), dtype=np.int16))
    assert json.loads(enc.resume(1))["resume_from_ms"] == 20  # the next frame
    for bad in (-1, 2):
        with pytest.raises(UsageError):
            enc.resume(bad)
    assert enc.seq == 1


def test_schema_ties_the_resume_fields() -> None:
    start = vector("start_stereo.json")
    resume = {"resumed": True, "resume_from_frame": 2, "resume_from_ms": 40}
    assert VALIDATOR.is_valid(start | resume)
    for key in resume:
        partial = {k: v for k, v in resume.items() if k != key}
        assert not VALIDATOR.is_valid(start | partial), key
    assert not VALIDATOR.is_valid(start | resume | {"seq": 4})
    assert not VALIDATOR.is_valid(start | resume | {"resumed": False})


def test_session_events_golden_and_valid() -> None:
    """pause / resume / update / media_stall (issue 3's consumer events), in stream order."""
    enc, _ = started_stereo()
    carol = Participant("Y2Fyb2w=", "sip:carol@example.org", "Carol")
    texts = [
        enc.pause(labels=["1", "2"], position_ms=5000),
        enc.resume_streams(labels=["2"], position_ms=9000),
        enc.update(
            participants=[
                Participant(ALICE, "sip:alice@example.com", "Zoë Müller"),
                Participant(BOB, "sip:bob@example.net"),
                carol,
            ],
            streams=[Stream("1", ALICE, 0), Stream("2", carol.id, 1)],
            group_id="7+OTCyoxTmqmqyA/1weDAg==",
            position_ms=12000,
        ),
        enc.media_stall(label="2", silent_ms=5000, position_ms=20000),
    ]
    expected = json.loads((VECTORS / "session_events.json").read_text(encoding="utf-8"))
    assert [json.loads(t) for t in texts] == expected
    for text in texts:
        VALIDATOR.validate(json.loads(text))
    enc.stop(reason="bye")
    with pytest.raises(UsageError):
        enc.pause(labels=["1"], position_ms=0)


def test_resume_is_allowed_after_stop() -> None:
    """A stop still in the sender's replay buffer is replayed behind a resumed start."""
    enc, _ = started_stereo()
    enc.audio(np.zeros((160, 2), dtype=np.int16))
    enc.stop(reason="bye")
    resumed = json.loads(enc.resume(1))
    assert resumed["resumed"] is True and resumed["resume_from_frame"] == 1
    with pytest.raises(UsageError):
        NativeEncoder(SID).resume(0)
