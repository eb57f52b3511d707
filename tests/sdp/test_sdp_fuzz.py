"""Property tests: the SDP parser raises only SdpError; answers are always well formed."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sdp
from sdp.answer import acceptable, build_answer

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_LINE_KINDS = st.sampled_from([*"vosictbamkz", "x", "V", " ", "--"])
_VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "0",
            "- 1 1 IN IP4 192.0.2.1",
            "IN IP4 192.0.2.1",
            "IN IP6 ::1/64",
            "audio 4000 RTP/AVP 0 8 101",
            "audio 0 RTP/SAVP 0",
            "audio 4000/2 RTP/AVPF 96",
            "video 5000 RTP/AVP 97",
            "rtpmap:101 telephone-event/8000",
            "rtpmap:96 G722/8000/1",
            "rtpmap:13 CN/8000",
            "fmtp:101 0-15",
            "sendonly",
            "inactive",
            "label:1",
            "ptime:20",
            "rtcp:4001",
            "AS:64",
        ]
    ),
)
_SDP_TEXT = st.lists(st.tuples(_LINE_KINDS, _VALUES), max_size=30).map(
    lambda lines: "\r\n".join(["v=0", "o=- 1 1 IN IP4 192.0.2.1"] + [f"{k}={v}" for k, v in lines])
)


@SETTINGS
@given(st.binary(max_size=2000))
def test_parse_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(sdp.SdpError):
        sdp.parse(data)


@SETTINGS
@given(st.text(max_size=2000))
def test_parse_arbitrary_text(text: str) -> None:
    with contextlib.suppress(sdp.SdpError):
        sdp.parse(text)


@SETTINGS
@given(_SDP_TEXT)
def test_structured_offers_answer_cleanly(text: str) -> None:
    try:
        offer = sdp.parse(text)
    except sdp.SdpError:
        return
    for m in offer.media:  # lookups never raise
        _ = (m.label, m.direction, m.ptime, m.rtcp_port, m.rtpmaps(), m.fmtp(101))
    usable = acceptable(offer)
    answer, streams = build_answer(
        offer,
        local_address="192.0.2.10",
        ports=[4000 if ok else 0 for ok in usable],
        session_id=1,
        session_version=1,
    )
    assert len(answer.media) == len(offer.media) == len(streams)
    assert [s.accepted for s in streams] == usable
    again = sdp.parse(sdp.serialize(answer))
    assert [m.port for m in again.media] == [4000 if ok else 0 for ok in usable]
    assert sdp.parse(sdp.serialize(offer)).media == offer.media
