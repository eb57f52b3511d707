"""The SRS's own offer for a delayed-offer INVITE, and negotiating the SRC's answer to it."""

from __future__ import annotations

import pytest

import sdp
from sdp.answer import build_answer
from sdp.offer import build_offer


def test_offer_is_recvonly_labelled_and_lists_every_codec() -> None:
    offer = build_offer(
        local_address="2001:db8::1",
        ports=[40000, 40002],
        labels=["1", "2"],
        session_id=7,
        session_version=1,
    )
    text = sdp.serialize(offer).decode()
    assert "o=siprec-bridge 7 1 IN IP6 2001:db8::1\r\n" in text
    assert "c=IN IP6 2001:db8::1\r\n" in text
    parsed = sdp.parse(text)
    assert [(m.port, m.label, m.direction) for m in parsed.media] == [
        (40000, "1", "recvonly"),
        (40002, "2", "recvonly"),
    ]
    assert parsed.media[0].formats == ["0", "8", "9", "101"]
    assert parsed.media[0].fmtp(101) == "0-16"


def test_the_srcs_answer_negotiates_like_an_offer() -> None:
    answer = sdp.parse(
        "v=0\r\no=src 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n"
        "m=audio 30000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n"
    )
    _, streams = build_answer(
        answer, local_address="192.0.2.10", ports=[40000], session_id=7, session_version=2
    )
    (stream,) = streams
    assert stream.accepted and stream.codec is not None and stream.codec.encoding == "PCMA"
    assert (stream.remote_address, stream.remote_port, stream.dtmf_payload_type) == (
        "192.0.2.5",
        30000,
        101,
    )


def test_ports_and_labels_must_pair_up() -> None:
    with pytest.raises(ValueError):
        build_offer(
            local_address="192.0.2.10", ports=[1], labels=[], session_id=1, session_version=1
        )
