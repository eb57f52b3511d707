"""sdp.parse / sdp.serialize and the Media/SessionDescription lookups (RFC 8866)."""

from __future__ import annotations

from pathlib import Path

import pytest

import sdp
from sdp import Connection, RtpMap, SdpError

VECTORS = Path(__file__).parent / "vectors"


def load(name: str) -> sdp.SessionDescription:
    return sdp.parse((VECTORS / name).read_bytes())


def test_cisco_two_streams() -> None:
    sd = load("cisco_two_streams.sdp")
    assert sd.version == 0
    assert sd.origin == sdp.Origin(
        "CiscoSystemsSIP-GW-UserAgent", "5511", "2889", "IN", "IP4", "203.0.113.5"
    )
    assert sd.session_name == "SIP Call"
    assert sd.connection == Connection("IN", "IP4", "203.0.113.5")
    assert sd.times == ["0 0"]
    assert [m.label for m in sd.media] == ["1", "2"]
    first = sd.media[0]
    assert (first.media, first.port, first.num_ports, first.proto) == (
        "audio",
        8086,
        None,
        "RTP/AVP",
    )
    assert first.formats == ["0", "101", "19"]
    assert first.direction == "sendonly"
    assert first.ptime == 20
    assert first.fmtp(101) == "0-16"
    assert first.fmtp(0) is None
    assert first.rtpmaps() == {
        0: RtpMap(0, "PCMU", 8000),
        101: RtpMap(101, "telephone-event", 8000),
        19: RtpMap(19, "CN", 8000),
    }
    # attributes are kept in order, exactly as received
    assert first.attributes[0] == ("rtpmap", "0 PCMU/8000")
    assert ("sendonly", None) in first.attributes


def test_lf_trailing_spaces_no_connection_no_time() -> None:
    sd = load("lf_no_connection.sdp")
    assert sd.version == 0
    assert sd.connection is None
    assert sd.times == []
    assert [m.formats for m in sd.media] == [["0", "8", "3", "101"], ["8", "0", "101"]]
    m = sd.media[0]
    assert sd.connection_of(m) is None
    assert m.attribute("maxptime") == "150"
    assert m.ptime is None
    assert list(m.rtpmaps()) == [0, 8, 3, 101]


def test_static_payload_types_and_session_defaults() -> None:
    sd = load("static_payload_types.sdp")
    m = sd.media[0]
    assert m.direction is None
    assert sd.direction_of(m) == "sendrecv"
    assert sd.connection_of(m) == Connection("IN", "IP4", "0.0.0.0")
    maps = m.rtpmaps()
    assert maps[9] == RtpMap(9, "G722", 8000)  # RTP clock 8000 for 16 kHz audio
    assert maps[18] == RtpMap(18, "G729", 8000)
    assert maps[0].encoding == "PCMU" and maps[8].encoding == "PCMA"
    assert list(maps) == [9, 18, 0, 8, 101]


def test_media_connection_bandwidth_and_odd_attributes() -> None:
    sd = load("webex_opus_first.sdp")
    assert sd.connection is None
    assert sd.attributes == [("3gOoBTC", None), ("nortpproxy", "yes")]
    m = sd.media[0]
    assert m.connection == Connection("IN", "IP4", "198.51.100.21")  # "/127" TTL dropped
    assert sd.connection_of(m) == m.connection
    assert m.bandwidths == [("AS", "84"), ("TIAS", "64000")]
    assert m.rtcp_port == 16001
    assert m.rtpmaps()[111] == RtpMap(111, "opus", 48000, 2)
    assert m.attributes_named("fmtp") == ["111 useinbandfec=1", "101 0-15", "107 0-15"]
    assert m.fmtp(107) == "0-15"


def test_session_level_direction_and_ipv6() -> None:
    sd = load("mixed_lines.sdp")
    assert sd.origin.addrtype == "IP6" and sd.origin.address == "2001:db8::1"
    assert [sd.direction_of(m) for m in sd.media] == [
        "inactive",  # from the session level
        "sendonly",
        "sendonly",
        "inactive",
        "recvonly",
        "sendrecv",
    ]
    assert sd.media[3].port == 0
    crypto = sd.media[1].attribute("crypto")
    assert crypto is not None and crypto.startswith("1 AES_CM_128_HMAC_SHA1_80 inline:")


def test_second_description_ends_parsing() -> None:
    sd = load("stray_second_description.sdp")
    assert len(sd.media) == 1
    assert sd.media[0].label == "16777227"
    assert sd.media[0].attributes[-1] == ("sendonly", None)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("invalid_no_version.sdp", "v="),
        ("invalid_bad_port.sdp", "port"),
        ("invalid_truncated_origin.sdp", "o="),
        ("invalid_short_media.sdp", "m="),
        ("invalid_bad_connection.sdp", "c="),
        ("invalid_no_origin.sdp", "o="),
    ],
)
def test_invalid_vectors(name: str, reason: str) -> None:
    with pytest.raises(SdpError, match=reason):
        load(name)


def test_size_limit() -> None:
    data = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n" + b"a=x\r\n" * (sdp.MAX_SDP_SIZE // 5)
    with pytest.raises(SdpError, match="larger"):
        sdp.parse(data)


def test_empty_input() -> None:
    with pytest.raises(SdpError):
        sdp.parse(b"")


def test_str_input_and_bare_cr() -> None:
    sd = sdp.parse("v=0\ro=- 1 2 IN IP4 192.0.2.1\rs=x\rm=audio 4000/2 RTP/AVP 0\r")
    assert sd.media[0].num_ports == 2
    assert sd.session_name == "x"


def test_username_with_spaces_is_rejoined() -> None:
    sd = sdp.parse(b"v=0\r\no=Cisco SIP UA 1 2 IN IP4 192.0.2.1\r\ns=-\r\n")
    assert sd.origin.username == "Cisco SIP UA"
    assert sd.origin.sess_id == "1"


def test_lookup_is_case_insensitive_and_flags_are_empty() -> None:
    sd = sdp.parse(
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio 1 RTP/AVP 0\r\na=Label:7\r\na=SENDONLY\r\n"
    )
    m = sd.media[0]
    assert m.label == "7"
    assert m.direction == "sendonly"
    assert m.attribute("sendonly") == ""
    assert m.attribute("recvonly") is None


def test_malformed_optional_attributes_are_ignored() -> None:
    text = (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio 1 RTP/AVP 0 96 97 x\r\n"
        "a=rtpmap:96 opus\r\na=rtpmap:97 foo/bar\r\na=ptime:abc\r\na=rtcp:99999\r\n"
    )
    m = sdp.parse(text).media[0]
    assert m.rtpmaps() == {0: RtpMap(0, "PCMU", 8000)}
    assert m.ptime is None
    assert m.rtcp_port is None


def test_fractional_ptime_is_rounded() -> None:
    m = sdp.parse("v=0\no=- 1 1 IN IP4 192.0.2.1\nm=audio 1 RTP/AVP 0\na=ptime:20.0\n").media[0]
    assert m.ptime == 20


@pytest.mark.parametrize(
    "name",
    [
        "cisco_two_streams.sdp",
        "lf_no_connection.sdp",
        "static_payload_types.sdp",
        "webex_opus_first.sdp",
        "mixed_lines.sdp",
    ],
)
def test_serialize_round_trip(name: str) -> None:
    sd = load(name)
    data = sdp.serialize(sd)
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")
    again = sdp.parse(data)
    assert again.media == sd.media
    assert again.attributes == sd.attributes
    assert again.origin == sd.origin
    assert again.connection == sd.connection


def test_serialize_field_order() -> None:
    sd = load("webex_opus_first.sdp")
    lines = sdp.serialize(sd).decode().split("\r\n")
    kinds = [line[0] for line in lines if line]
    first_m = kinds.index("m")
    assert kinds[:4] == ["v", "o", "s", "t"]
    assert kinds[first_m : first_m + 4] == ["m", "c", "b", "b"]


def test_serialize_fills_mandatory_fields() -> None:
    sd = load("lf_no_connection.sdp")
    sd.session_name = ""
    text = sdp.serialize(sd).decode()
    assert "\r\ns=-\r\n" in text
    assert "\r\nt=0 0\r\n" in text
