"""sdp.answer: receive-only SRS answer (RFC 3264 §6, RFC 7866 §8.1.1)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import sdp
from sdp.answer import (
    DEFAULT_SUPPORTED,
    Codec,
    NegotiatedStream,
    SrtpPolicy,
    acceptable,
    build_answer,
)
from sdp.crypto import SUITES, parse_crypto

VECTORS = Path(__file__).parent / "vectors"


def load(name: str) -> sdp.SessionDescription:
    return sdp.parse((VECTORS / name).read_bytes())


def answer_for(
    offer: sdp.SessionDescription,
    *,
    fallback_address: str | None = None,
    supported: tuple[str, ...] = DEFAULT_SUPPORTED,
) -> tuple[sdp.SessionDescription, list[NegotiatedStream]]:
    ports = [20000 + 2 * i if ok else 0 for i, ok in enumerate(acceptable(offer))]
    return build_answer(
        offer,
        local_address="192.0.2.10",
        ports=ports,
        session_id=42,
        session_version=7,
        fallback_address=fallback_address,
        supported=supported,
    )


def test_cisco_two_streams_answer() -> None:
    offer = load("cisco_two_streams.sdp")
    answer, streams = answer_for(offer)
    text = sdp.serialize(answer).decode()
    assert text == (
        "v=0\r\n"
        "o=siprec-bridge 42 7 IN IP4 192.0.2.10\r\n"
        "s=-\r\n"
        "c=IN IP4 192.0.2.10\r\n"
        "t=0 0\r\n"
        "m=audio 20000 RTP/AVP 0 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        "a=ptime:20\r\n"
        "a=recvonly\r\n"
        "a=label:1\r\n"
        "m=audio 20002 RTP/AVP 0 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        "a=ptime:20\r\n"
        "a=recvonly\r\n"
        "a=label:2\r\n"
    )
    first = streams[0]
    assert first.index == 0 and first.label == "1" and first.accepted
    assert first.local_port == 20000
    assert first.codec == Codec(0, "PCMU", 8000, 1)
    assert first.dtmf_payload_type == 101
    assert first.cn_payload_types == frozenset({19})  # CN is on the wire but not answered
    assert (first.remote_address, first.remote_port) == ("203.0.113.5", 8086)
    assert first.direction == "sendonly"
    assert first.ptime == 20


def test_offerer_preference_per_line_and_fallback_address() -> None:
    offer = load("lf_no_connection.sdp")  # no c= at all (OpenSIPS)
    _, streams = answer_for(offer, fallback_address="198.51.100.7")
    assert [s.codec.encoding if s.codec else None for s in streams] == ["PCMU", "PCMA"]
    assert [s.remote_address for s in streams] == ["198.51.100.7", "198.51.100.7"]
    _, without = answer_for(offer)
    assert without[0].remote_address is None


def test_supported_order_does_not_override_offer_order() -> None:
    offer = load("static_payload_types.sdp")  # offers 9 18 0 8 101, no direction
    answer, streams = answer_for(offer)
    assert streams[0].codec == Codec(9, "G722", 8000, 1)
    assert streams[0].remote_address == "0.0.0.0"  # reported as is (hold)
    assert streams[0].direction == "sendrecv"
    m = answer.media[0]
    assert m.formats == ["9", "0", "8", "101"]  # every decodable codec, offer order (no G729)
    assert m.attribute("rtpmap") == "9 G722/8000"
    assert [c.payload_type for c in streams[0].codecs] == [9, 0, 8]
    assert m.direction == "recvonly"
    _, pcmu_only = answer_for(offer, supported=("PCMU",))
    assert pcmu_only[0].codec == Codec(0, "PCMU", 8000, 1)


def test_telephone_event_matches_codec_clock() -> None:
    offer = load("webex_opus_first.sdp")
    answer, streams = answer_for(offer)
    assert streams[0].codec == Codec(0, "PCMU", 8000, 1)  # opus is not supported
    assert streams[0].dtmf_payload_type == 101  # not 107 (48000)
    assert answer.media[0].formats == ["0", "8", "9", "101"]
    assert answer.media[0].attribute("rtcp") is None


def test_mixed_lines() -> None:
    offer = load("mixed_lines.sdp")
    assert acceptable(offer) == [True, False, False, False, True, True]
    answer, streams = answer_for(offer)
    assert answer.origin.addrtype == "IP4"
    assert [m.port for m in answer.media] == [20000, 0, 0, 0, 20008, 20010]
    assert [m.media for m in answer.media] == ["audio", "audio", "video", "audio", "audio", "audio"]
    assert [m.proto for m in answer.media] == [
        "RTP/AVP",
        "RTP/SAVP",
        "RTP/AVP",
        "RTP/AVP",
        "RTP/AVP",
        "RTP/AVPF",
    ]
    # rejected lines: port 0, first offered format, label kept, nothing else
    assert answer.media[2].formats == ["97"]
    assert answer.media[2].attributes == [("label", "3")]
    assert answer.media[1].attribute("crypto") is None
    # direction: inactive (session level) -> inactive, recvonly -> inactive, sendrecv -> recvonly
    assert [answer.media[i].direction for i in (0, 4, 5)] == ["inactive", "inactive", "recvonly"]
    assert [s.accepted for s in streams] == [True, False, False, False, True, True]
    assert streams[1].codec is None and streams[1].local_port == 0
    assert streams[5].codec == Codec(9, "G722", 8000, 1)
    assert streams[5].dtmf_payload_type == 96


def test_caller_can_reject_an_acceptable_line() -> None:
    offer = load("cisco_two_streams.sdp")
    answer, streams = build_answer(
        offer, local_address="::1", ports=[0, 30000], session_id=1, session_version=1
    )
    assert answer.origin.addrtype == "IP6"
    assert answer.connection == sdp.Connection("IN", "IP6", "::1")
    assert [m.port for m in answer.media] == [0, 30000]
    assert answer.media[0].formats == ["0"]
    assert not streams[0].accepted and streams[0].codec is None
    assert streams[1].accepted


def test_ports_must_match_m_lines() -> None:
    offer = load("cisco_two_streams.sdp")
    with pytest.raises(sdp.SdpError, match="ports"):
        build_answer(offer, local_address="192.0.2.1", ports=[1], session_id=1, session_version=1)
    with pytest.raises(sdp.SdpError, match="port"):
        build_answer(
            offer, local_address="192.0.2.1", ports=[1, 70000], session_id=1, session_version=1
        )


def test_unsupported_clock_rate_or_stereo_is_not_acceptable() -> None:
    offer = sdp.parse(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 96 97\r\n"
        "a=rtpmap:96 PCMU/16000\r\na=rtpmap:97 PCMA/8000/2\r\n"
    )
    assert acceptable(offer) == [False]


def test_answer_round_trips_through_parser() -> None:
    offer = load("mixed_lines.sdp")
    answer, _ = answer_for(offer)
    again = sdp.parse(sdp.serialize(answer))
    assert again.media == answer.media
    assert [m.label for m in again.media] == ["1", "2", "3", "4", "5", "6"]


# --- SRTP (RFC 4568 SDES) ----------------------------------------------------------------------

# What the caller's SRTP library implements (rtp.srtp.SUPPORTED_SUITES; sdp does not import rtp).
SRTP_SUITES = (
    "AES_CM_128_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32",
    "AEAD_AES_128_GCM",
    "AEAD_AES_256_GCM",
)


def _counting_keys() -> Callable[[int], bytes]:
    """A deterministic key source: the n-th call returns octets n, n+1, ..."""
    calls = iter(range(1, 1000))

    def source(n: int) -> bytes:
        first = next(calls)
        return bytes((first + i) & 0xFF for i in range(n))

    return source


def srtp_answer(
    offer: sdp.SessionDescription, policy: SrtpPolicy, suites: Sequence[str] = SRTP_SUITES
) -> tuple[sdp.SessionDescription, list[NegotiatedStream]]:
    usable = acceptable(offer, srtp=policy, srtp_suites=suites)
    return build_answer(
        offer,
        local_address="192.0.2.10",
        ports=[20000 + 2 * i if ok else 0 for i, ok in enumerate(usable)],
        session_id=42,
        session_version=1,
        srtp=policy,
        srtp_suites=suites,
        key_source=_counting_keys(),
    )


def test_srtp_answer_text() -> None:
    offer = load("srtp_several_crypto.sdp")
    answer, streams = srtp_answer(offer, "allow")
    key1 = base64.b64encode(bytes(range(1, 31))).decode()
    key2 = base64.b64encode(bytes(range(2, 32))).decode()
    assert sdp.serialize(answer).decode() == (
        "v=0\r\n"
        "o=siprec-bridge 42 1 IN IP4 192.0.2.10\r\n"
        "s=-\r\n"
        "c=IN IP4 192.0.2.10\r\n"
        "t=0 0\r\n"
        "m=audio 20000 RTP/SAVP 8 0 101\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-15\r\n"
        "a=ptime:20\r\n"
        f"a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{key1}\r\n"
        "a=recvonly\r\n"
        "a=label:1\r\n"
        "m=audio 20002 RTP/SAVP 8 101\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        f"a=crypto:9 AES_CM_128_HMAC_SHA1_32 inline:{key2} KDR=0\r\n"
        "a=recvonly\r\n"
        "a=label:2\r\n"
    )
    # m-line 1: tag 1 is AES_256_CM (not supported), tag 2 is the first usable one.
    first = streams[0].remote_crypto
    assert first is not None and first.tag == 2 and first.suite == "AES_CM_128_HMAC_SHA1_80"
    assert first.key.key_b64 == "d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj"
    assert (first.key.mki, first.key.mki_length) == (1, 1)
    # m-line 2: tag 7 malformed, tag 8 asks for UNENCRYPTED_SRTCP: tag 9 (KDR=0 echoed).
    second = streams[1].remote_crypto
    assert second is not None and second.tag == 9
    assert streams[1].local_crypto is not None
    assert streams[1].local_crypto.key.key_salt == bytes(range(2, 32))


@pytest.mark.parametrize("suite", SRTP_SUITES)
def test_srtp_answer_for_every_suite(suite: str) -> None:
    spec = SUITES[suite]
    remote = base64.b64encode(bytes(spec.key_length + spec.salt_length)).decode()
    offer = sdp.parse(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\n"
        "m=audio 4000 RTP/SAVP 0\r\n"
        "a=crypto:1 NOT_A_SUITE inline:AAAA\r\n"
        f"a=crypto:4 {suite} inline:{remote}|2^31\r\na=label:1\r\n"
    )
    answer, (stream,) = srtp_answer(offer, "require")
    (crypto_line,) = answer.media[0].attributes_named("crypto")
    ours = parse_crypto(crypto_line)
    assert ours.tag == 4 and ours.suite == suite and len(ours.keys) == 1
    assert len(ours.key.key_salt) == spec.key_length + spec.salt_length
    assert ours.key.key_salt != bytes(len(ours.key.key_salt))  # our key, not theirs
    assert stream.local_crypto == ours
    assert stream.remote_crypto is not None and stream.remote_crypto.key.key_b64 == remote
    assert stream.remote_crypto.key.lifetime == 1 << 31
    assert answer.media[0].proto == "RTP/SAVP"
    # A suite the caller's library lacks is not acceptable.
    others = [s for s in SRTP_SUITES if s != suite]
    assert acceptable(offer, srtp="allow", srtp_suites=others) == [False]


@pytest.mark.parametrize(
    ("policy", "usable"),
    [
        ("off", [True, False, False, False]),
        ("allow", [True, True, False, False]),
        ("require", [False, True, False, False]),
    ],
)
def test_srtp_policy_on_mixed_lines(policy: SrtpPolicy, usable: list[bool]) -> None:
    """RTP/AVP, RTP/SAVP (+ rtcp-mux), RTP/SAVPF with an F8 key only, DTLS-SRTP."""
    offer = load("srtp_mixed.sdp")
    assert acceptable(offer, srtp=policy, srtp_suites=SRTP_SUITES) == usable
    answer, streams = srtp_answer(offer, policy)
    assert [m.port != 0 for m in answer.media] == usable
    assert [m.proto for m in answer.media] == [m.proto for m in offer.media]
    assert [s.accepted for s in streams] == usable
    assert streams[0].remote_crypto is None and streams[0].local_crypto is None
    assert (streams[1].remote_crypto is not None) == usable[1]
    assert streams[1].rtcp_mux == usable[1]
    assert (answer.media[1].attribute("rtcp-mux") is not None) == usable[1]
    assert all(m.attribute("crypto") is None for m in answer.media if m.port == 0)


def test_require_with_plain_offer_has_nothing_acceptable() -> None:
    assert acceptable(load("cisco_two_streams.sdp"), srtp="require") == [False, False]


def test_fresh_key_per_stream() -> None:
    offer = load("srtp_several_crypto.sdp")
    _, streams = build_answer(
        offer,
        local_address="192.0.2.10",
        ports=[20000, 20002],
        session_id=1,
        session_version=1,
        srtp="allow",
        srtp_suites=SRTP_SUITES,
    )
    keys = [s.local_crypto.key.key_salt for s in streams if s.local_crypto is not None]
    assert len(keys) == 2 and keys[0] != keys[1]


def test_srtp_argument_errors() -> None:
    offer = load("srtp_several_crypto.sdp")
    with pytest.raises(sdp.SdpError, match="policy"):
        acceptable(offer, srtp="maybe")  # type: ignore[arg-type]
    with pytest.raises(sdp.SdpError, match="wrong number"):
        build_answer(
            offer,
            local_address="192.0.2.10",
            ports=[20000, 20002],
            session_id=1,
            session_version=1,
            srtp="allow",
            srtp_suites=SRTP_SUITES,
            key_source=lambda n: bytes(n + 1),
        )
