"""Tests for siprec_bridge.sip.message: headers, parser, helper parsers, response builder."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siprec_bridge.sip.errors import LocalProtocolError, SipParseError
from siprec_bridge.sip.message import (
    MAX_HEADER_LINE,
    MAX_MESSAGE_SIZE,
    Headers,
    NameAddr,
    SipRequest,
    SipResponse,
    build_response,
    parse_content_type,
    parse_cseq,
    parse_message,
    parse_name_addr,
    parse_via,
    split_quoted,
    warning_header,
)

VECTORS = Path(__file__).parent / "vectors"
CORPUS = Path(__file__).resolve().parents[3] / ".." / "shared" / "siprec-corpus" / "invites"


def vector(kind: str, name: str) -> bytes:
    return (VECTORS / kind / name).read_bytes()


def parse_request(data: bytes) -> SipRequest:
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def same_message(a: SipRequest | SipResponse, b: SipRequest | SipResponse) -> bool:
    """Equal up to the position of Content-Length (to_bytes() writes it last)."""

    def fields(m: SipRequest | SipResponse) -> list[tuple[str, str]]:
        return [(n, v) for n, v in m.headers.items() if n.lower() not in ("content-length", "l")]

    def start(m: SipRequest | SipResponse) -> tuple[str | int, str]:
        return (m.method, m.uri) if isinstance(m, SipRequest) else (m.status, m.reason)

    return start(a) == start(b) and fields(a) == fields(b) and a.body == b.body


def check_parse_outcome(data: bytes) -> None:
    """parse_message either succeeds with a re-parseable message or raises SipParseError."""
    try:
        message = parse_message(data)
    except SipParseError as exc:
        assert exc.status in (400, 505, 513)
        assert str(exc)
        return
    assert same_message(parse_message(message.to_bytes()), message)


# ---------------------------------------------------------------- Headers


def test_headers_preserve_order_and_duplicates() -> None:
    h = Headers([("Via", "a"), ("X-A", "1"), ("via", "b"), ("X-A", "2")])
    assert h.items() == [("Via", "a"), ("X-A", "1"), ("via", "b"), ("X-A", "2")]
    assert h.get("VIA") == "a"
    assert h.get_all("x-a") == ["1", "2"]
    assert h.get("missing") is None
    assert len(h) == 4


def test_headers_compact_forms_lookup_and_serialize_long() -> None:
    h = Headers()
    for compact, value in [
        ("i", "cid"),
        ("f", "<sip:a>"),
        ("t", "<sip:b>"),
        ("v", "SIP/2.0/UDP h"),
        ("m", "<sip:c>"),
        ("l", "0"),
        ("c", "application/sdp"),
        ("k", "timer"),
        ("s", "subj"),
        ("e", "gzip"),
        ("o", "dialog"),
        ("r", "<sip:d>"),
        ("x", "1800"),
        ("u", "talk"),
    ]:
        h.add(compact, value)
    assert h.get("Call-ID") == "cid"
    assert h.get("content-type") == "application/sdp"
    assert h.get("Session-Expires") == "1800"
    assert h.get("Allow-Events") == "talk"
    names = [name for name, _ in h.items()]
    assert names == [
        "Call-ID",
        "From",
        "To",
        "Via",
        "Contact",
        "Content-Length",
        "Content-Type",
        "Supported",
        "Subject",
        "Content-Encoding",
        "Event",
        "Refer-To",
        "Session-Expires",
        "Allow-Events",
    ]
    assert h.get("i") == "cid"  # compact lookups work too


def test_headers_get_all_splits_only_list_headers() -> None:
    h = Headers(
        [
            ("Supported", "timer, replaces,siprec"),
            ("Supported", ""),
            ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"),
            ("Record-Route", '<sip:p1;lr>, "Proxy, Two" <sip:p2;lr>'),
            ("From", '"Smith, John" <sip:j@x>;tag=1'),
            ("Date", "Mon, 13 May 2019 15:32:45 GMT"),
        ]
    )
    assert h.get_all("Supported") == ["timer", "replaces", "siprec"]
    assert h.get_all("Via") == ["SIP/2.0/UDP a;branch=z9hG4bK1", "SIP/2.0/UDP b;branch=z9hG4bK2"]
    assert h.get_all("Record-Route") == ["<sip:p1;lr>", '"Proxy, Two" <sip:p2;lr>']
    assert h.get_all("From") == ['"Smith, John" <sip:j@x>;tag=1']
    assert h.get_all("Date") == ["Mon, 13 May 2019 15:32:45 GMT"]


def test_headers_set_replaces_all_at_first_position_and_remove() -> None:
    h = Headers([("X-A", "1"), ("X-B", "x"), ("x-a", "2"), ("X-C", "y")])
    h.set("X-A", "3")
    assert h.items() == [("X-A", "3"), ("X-B", "x"), ("X-C", "y")]
    h.set("X-D", "4")
    assert h.items()[-1] == ("X-D", "4")
    h.remove("x-b")
    assert "X-B" not in h
    assert "X-A" in h


def test_headers_reject_injection() -> None:
    with pytest.raises(LocalProtocolError):
        Headers().add("X-Evil", "a\r\nVia: injected")
    with pytest.raises(LocalProtocolError):
        Headers().add("Bad Name", "v")


def test_split_quoted_handles_escapes() -> None:
    assert split_quoted(r'"a \", b", c') == [r'"a \", b"', "c"]


# ---------------------------------------------------------------- helper parsers


def test_parse_via_full() -> None:
    via = parse_via("SIP/2.0/udp 192.0.2.5:5062;branch=z9hG4bK776;rport;received=10.0.0.1;x")
    assert via.transport == "UDP"
    assert (via.host, via.port, via.branch) == ("192.0.2.5", 5062, "z9hG4bK776")
    assert via.rport is True
    assert via.received == "10.0.0.1"
    assert via.params["x"] is None
    assert via.sent_by == "192.0.2.5:5062"


def test_parse_via_ipv6_rport_value_and_lws() -> None:
    via = parse_via("SIP / 2.0 / TCP [2001:db8::5] : 5061 ; branch=z9hG4bKx ; rport=1234")
    assert via.host == "2001:db8::5"
    assert via.port == 5061
    assert via.rport == 1234
    assert via.sent_by == "[2001:db8::5]:5061"


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0/UDP",
        "SIP/3.0/UDP host",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP host;rport=abc",
        "SIP/2.0/UDP host garbage",
    ],
)
def test_parse_via_rejects(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_via(value)


@pytest.mark.parametrize(
    ("value", "display", "uri", "params"),
    [
        ('"Alice" <sip:alice@x>;tag=1', "Alice", "sip:alice@x", {"tag": "1"}),
        ('"A \\"Q\\" B" <sip:q@x>', 'A "Q" B', "sip:q@x", {}),
        ("Bob <sip:bob@x;transport=tcp>;tag=2", "Bob", "sip:bob@x;transport=tcp", {"tag": "2"}),
        ("<sip:203.0.113.5:5060>;+sip.src", None, "sip:203.0.113.5:5060", {"+sip.src": None}),
        ("<sip:a@b;transport=tcp;+sip.src>", None, "sip:a@b;transport=tcp;+sip.src", {}),
        ("sip:srs@x;tag=y", None, "sip:srs@x", {"tag": "y"}),
        (
            "<sip:7602922410@198.51.100.20:5060;+sip.src",
            None,
            "sip:7602922410@198.51.100.20:5060;+sip.src",
            {},
        ),
    ],
)
def test_parse_name_addr(
    value: str, display: str | None, uri: str, params: dict[str, str | None]
) -> None:
    addr = parse_name_addr(value)
    assert (addr.display, addr.uri, addr.params) == (display, uri, params)


@pytest.mark.parametrize(
    "value", ["", '"unterminated <sip:a@b>', '"x" sip:a@b', "<sip:a> junk", "sip:a b", "<>"]
)
def test_parse_name_addr_rejects(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_name_addr(value)


def test_name_addr_str_roundtrip() -> None:
    addr = NameAddr('Q "x"', "sip:a@b", {"tag": "t1", "lr": None, "q": "a b"})
    assert str(addr) == '"Q \\"x\\"" <sip:a@b>;tag=t1;lr;q="a b"'
    assert parse_name_addr(str(addr)) == addr


def test_parse_cseq() -> None:
    assert parse_cseq("101 INVITE") == (101, "INVITE")
    assert parse_cseq("  7\tBYE ") == (7, "BYE")
    for bad in ("INVITE", "1", "-1 INVITE", "2147483648 INVITE", "1 INV ITE"):
        with pytest.raises(SipParseError):
            parse_cseq(bad)


def test_parse_content_type_variants() -> None:
    assert parse_content_type("multipart/mixed;boundary=X") == (
        "multipart/mixed",
        {"boundary": "X"},
    )
    assert parse_content_type('Multipart/Mixed; Boundary="unique boundary"') == (
        "multipart/mixed",
        {"boundary": "unique boundary"},
    )
    assert parse_content_type("application/sdp ") == ("application/sdp", {})
    assert parse_content_type("application/rs-metadata+xml;charset=UTF-8")[1] == {
        "charset": "UTF-8"
    }
    with pytest.raises(SipParseError):
        parse_content_type("sdp")


# ---------------------------------------------------------------- parse_message: vectors


def test_compact_headers_vector() -> None:
    req = parse_request(vector("valid", "compact_headers.sip"))
    assert req.method == "INVITE"
    assert req.call_id == "compact@192.0.2.5"
    assert req.cseq == (7, "INVITE")
    assert req.from_tag == "c1"
    assert req.to_tag is None
    assert req.headers.get_all("Supported") == ["timer", "siprec"]
    assert req.body.startswith(b"v=0\r\n") and req.body.endswith(b"a=label:1\r\n")
    assert b"\r\nContact: <sip:src@192.0.2.5;+sip.src>\r\n" in req.to_bytes()


def test_folded_headers_vector() -> None:
    req = parse_request(vector("valid", "folded_headers.sip"))
    assert req.top_via.branch == "z9hG4bK-folded"
    assert req.top_via.transport == "TCP"
    assert req.cseq == (3, "OPTIONS")
    assert req.headers.get("Subject") == "a subject spanning two lines"
    assert req.headers.get("Supported") == ""
    assert req.headers.get("Recv-Info") == ""
    assert req.headers.get_all("Supported") == []
    assert req.to_tag is None


def test_bare_lf_vector() -> None:
    req = parse_request(vector("valid", "bare_lf.sip"))
    assert req.call_id == "lf@192.0.2.5"
    assert req.body == b"v=0\no=- 1 1 IN IP4 0.0.0.0\n"


def test_leading_crlf_vector() -> None:
    assert parse_request(vector("valid", "leading_crlf.sip")).method == "INVITE"


def test_body_truncated_to_content_length() -> None:
    req = parse_request(vector("valid", "body_longer_than_content_length.sip"))
    assert len(req.body) == int(req.headers.get("Content-Length") or "")
    assert b"garbage" not in req.body


def test_udp_body_without_content_length_is_the_rest() -> None:
    req = parse_request(vector("valid", "no_content_length.sip"))
    assert req.body.endswith(b"a=label:1\r\n")
    assert b"Content-Length: %d\r\n" % len(req.body) in req.to_bytes()


def test_multi_via_ipv6_vector() -> None:
    req = parse_request(vector("valid", "multi_via_ipv6.sip"))
    vias = [parse_via(v) for v in req.headers.get_all("Via")]
    assert [v.host for v in vias] == ["2001:db8::5", "proxy.example.com", "198.51.100.1"]
    assert vias[0].rport == 5062
    assert parse_name_addr(req.headers.get("From") or "").display == 'Al "Q" Smith, Jr.'
    assert req.to_tag == "srs9"


def test_response_vector() -> None:
    resp = parse_message(vector("valid", "response_200.sip"))
    assert isinstance(resp, SipResponse)
    assert (resp.status, resp.reason) == (200, "OK")
    assert resp.cseq == (1, "BYE")


def test_unknown_method_parses() -> None:
    assert parse_request(vector("valid", "unknown_method.sip")).method == "FOOBAR"


def test_vendor_quirk_headers_parse() -> None:
    req = parse_request(vector("valid", "avaya_src_tag_in_uri.sip"))
    contact = parse_name_addr(req.headers.get("Contact") or "")
    assert contact.uri.endswith(";+sip.src")
    assert parse_content_type(req.headers.get("Content-Type") or "")[1] == {"boundary": "foobar"}
    assert req.headers.get("Min-SE") == "1800"
    assert req.headers.get("mime-version") == "1.0"


INVALID = {
    "missing_cseq.sip": (400, "missing CSeq", True),
    "cseq_method_mismatch.sip": (400, "CSeq method BYE does not match", True),
    "content_length_exceeds_body.sip": (400, "Content-Length 500 exceeds body", True),
    "content_length_not_a_number.sip": (400, "malformed Content-Length", True),
    "content_length_negative.sip": (400, "malformed Content-Length", True),
    "missing_call_id.sip": (400, "missing Call-ID", True),
    "unterminated_display_name.sip": (400, "malformed From header", True),
    "sip_version_7.sip": (505, "unsupported SIP version", True),
    "header_without_colon.sip": (400, "malformed header line", True),
    "max_forwards_not_a_number.sip": (400, "malformed Max-Forwards", True),
    "malformed_via.sip": (400, "malformed Via", True),
    "garbage_start_line.sip": (400, "malformed request line", False),
    "continuation_before_any_header.sip": (400, "continuation line", True),
    "too_many_headers.sip": (513, "more than 128 header fields", True),
    "conflicting_call_ids.sip": (400, "conflicting Call-ID", True),
    "request_uri_without_scheme.sip": (400, "malformed Request-URI", True),
}


def test_every_invalid_vector_is_listed() -> None:
    assert {p.name for p in (VECTORS / "invalid").iterdir()} == set(INVALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_vectors(name: str) -> None:
    status, text, has_partial = INVALID[name]
    with pytest.raises(SipParseError) as info:
        parse_message(vector("invalid", name))
    assert info.value.status == status
    assert text in str(info.value)
    assert (info.value.partial is not None) == has_partial


def test_partial_keeps_well_formed_headers() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(vector("invalid", "header_without_colon.sip"))
    partial = info.value.partial
    assert partial is not None
    assert partial.call_id == "base-1@192.0.2.5"
    assert partial.top_via.branch == "z9hG4bK-base-1"
    assert partial.body == b""


def test_oversize_message() -> None:
    data = vector("valid", "leading_crlf.sip") + b"x" * MAX_MESSAGE_SIZE
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == 513


def test_overlong_header_line() -> None:
    data = vector("valid", "folded_headers.sip").replace(
        b"Subject: a subject", b"Subject: " + b"s" * (MAX_HEADER_LINE + 1)
    )
    with pytest.raises(SipParseError, match="longer than"):
        parse_message(data)


def test_empty_message() -> None:
    with pytest.raises(SipParseError, match="empty"):
        parse_message(b"\r\n\r\n")


def test_non_utf8_bytes_roundtrip() -> None:
    data = vector("valid", "leading_crlf.sip").replace(b"Max-Forwards: 70", b"X-Raw: \xff\xfe")
    req = parse_request(data)
    assert b"X-Raw: \xff\xfe\r\n" in req.to_bytes()


def test_to_bytes_roundtrip_sets_content_length() -> None:
    req = parse_request(vector("valid", "compact_headers.sip"))
    req.body = b"hello"
    again = parse_request(req.to_bytes())
    assert again.body == b"hello"
    assert again.headers.get_all("Content-Length") == ["5"]
    assert again.headers.items()[:3] == req.headers.items()[:3]


# ---------------------------------------------------------------- build_response / Warning


def test_build_response_copies_mandatory_headers() -> None:
    req = parse_request(vector("valid", "multi_via_ipv6.sip"))
    resp = build_response(req, 481)
    assert resp.reason == "Call/Transaction Does Not Exist"
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    for name in ("From", "To", "Call-ID", "CSeq"):
        assert resp.headers.get(name) == req.headers.get(name)
    assert resp.to_tag == "srs9"  # existing tag kept


def test_build_response_adds_to_tag_and_record_route_for_2xx_invite() -> None:
    data = vector("valid", "compact_headers.sip").replace(
        b"s: recording", b"Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\nTimestamp: 54"
    )
    req = parse_request(data)
    ok = build_response(
        req,
        200,
        to_tag="abc",
        headers=[("X-Y", "z")],
        body=b"v=0\r\n",
        content_type="application/sdp",
    )
    assert ok.to_tag == "abc"
    assert ok.headers.get_all("Record-Route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    assert ok.headers.get("Content-Type") == "application/sdp"
    assert ok.headers.get("X-Y") == "z"
    wire = ok.to_bytes()
    assert wire.startswith(b"SIP/2.0 200 OK\r\n")
    assert wire.endswith(b"Content-Length: 5\r\n\r\nv=0\r\n")
    trying = build_response(req, 100, to_tag="abc")
    assert trying.to_tag is None  # no tag on 100 (§8.2.6.2)
    assert trying.headers.get("Timestamp") == "54"  # §8.2.6.1
    assert trying.headers.get("Record-Route") is None
    rejected = build_response(req, 486, to_tag="abc")
    assert rejected.headers.get("Record-Route") is None


def test_build_response_bad_status_and_missing_headers() -> None:
    req = parse_request(vector("valid", "compact_headers.sip"))
    with pytest.raises(LocalProtocolError):
        build_response(req, 99)
    req.headers.remove("Call-ID")
    with pytest.raises(SipParseError):
        build_response(req, 400)


def test_default_reason_for_unknown_code() -> None:
    req = parse_request(vector("valid", "compact_headers.sip"))
    assert build_response(req, 499).reason == "Bad Request"


def test_warning_header_escapes() -> None:
    assert warning_header('bad "CSeq"\r\nx', "srs.example") == r'399 srs.example "bad \"CSeq\" x"'


# ---------------------------------------------------------------- real INVITEs


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    files = sorted((CORPUS / "cisco-cube-doc").glob("*.sip"))
    files += sorted((CORPUS / "miarec-sipp-rendered").rglob("*.INVITE.sip"))
    return files


@pytest.mark.skipif(not CORPUS.is_dir(), reason="/work/shared/siprec-corpus not available")
@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_corpus_messages_parse(path: Path) -> None:
    data = path.read_bytes()
    message = parse_message(data)
    assert message.call_id
    assert message.top_via.host
    declared = message.headers.get("Content-Length")
    assert declared is not None and len(message.body) == int(declared)
    if isinstance(message, SipRequest):
        assert message.cseq[1] == message.method
        assert message.from_tag
        assert same_message(parse_message(message.to_bytes()), message)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="/work/shared/siprec-corpus not available")
def test_corpus_broken_bye_is_rejected_with_partial() -> None:
    # This SIPp-rendered BYE really carries "CSeq: n INVITE": §8.1.1.5 requires a 400.
    data = (CORPUS / "miarec-sipp-rendered" / "broadworks_pause_resume.04.BYE.sip").read_bytes()
    with pytest.raises(SipParseError, match="does not match") as info:
        parse_message(data)
    assert info.value.partial is not None and info.value.partial.method == "BYE"


# ---------------------------------------------------------------- fuzzing


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes_only_raise_parse_error(data: bytes) -> None:
    check_parse_outcome(data)


SIP_ALPHABET = st.sampled_from(
    [
        b"INVITE ",
        b"SIP/2.0",
        b" ",
        b"\r\n",
        b"\n",
        b":",
        b";",
        b",",
        b"<",
        b">",
        b'"',
        b"\\",
        b"Via",
        b"v",
        b"From",
        b"To",
        b"t",
        b"i",
        b"CSeq",
        b"Call-ID",
        b"Content-Length",
        b"l",
        b"tag=",
        b"branch=z9hG4bK",
        b"rport",
        b"sip:",
        b"1",
        b"99999999999",
        b"\t",
        b"\xff",
        b"=",
    ]
)


@settings(max_examples=600, deadline=None)
@given(st.lists(SIP_ALPHABET, max_size=80).map(b"".join))
def test_fuzz_sip_shaped_bytes_only_raise_parse_error(data: bytes) -> None:
    check_parse_outcome(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2000), st.binary(min_size=1, max_size=3))
def test_fuzz_mutated_real_message(position: int, replacement: bytes) -> None:
    base = vector("valid", "compact_headers.sip")
    index = position % len(base)
    check_parse_outcome(base[:index] + replacement + base[index + 1 :])
