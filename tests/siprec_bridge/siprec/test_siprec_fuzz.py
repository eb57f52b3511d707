"""Property tests: multipart and metadata parsers raise only their documented errors."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sdp
from siprec_bridge.siprec.metadata import MetadataError, parse_metadata
from siprec_bridge.siprec.multipart import BodyError, extract_recording_body, split_multipart
from siprec_bridge.siprec.session import is_siprec_request, join

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_BOUNDARY = "b0und"
_LINES = st.sampled_from(
    [
        b"--b0und",
        b"--b0und--",
        b"--b0und  ",
        b"--b0undX",
        b"--other",
        b"",
        b"Content-Type: application/sdp",
        b"Content-Type: application/rs-metadata+xml; charset=UTF-8",
        b"Content-Disposition: recording-session",
        b"Content-Disposition:session;handling=required",
        b" folded",
        b"v=0",
        b"<recording/>",
        b"junk: value",
    ]
)
_BODY = st.lists(
    st.tuples(st.one_of(_LINES, st.binary(max_size=20)), st.sampled_from([b"\r\n", b"\n", b"\r"])),
    max_size=40,
).map(lambda items: b"".join(line + end for line, end in items))

_FRAGMENTS = st.sampled_from(
    [
        '<participant participant_id="p"><nameID aor="sip:a@b"><name>A</name></nameID>'
        "</participant>",
        "<participant id='q' session='s'><send>s</send><recv>t</recv></participant>",
        "<participant id='r'><aor>r@x</aor><send><id>t</id></send><role>x</role></participant>",
        '<stream stream_id="s" session_id="x"><label>1</label><mode>mixed</mode></stream>',
        "<stream id='t'><label>2</label></stream>",
        "<stream stream_id=''><label>1</label></stream>",
        '<participantstreamassoc participant_id="p"><send>s</send></participantstreamassoc>',
        '<participantstreamassoc participant_id="zz"><recv>s</recv></participantstreamassoc>',
        "<session session_id='x'><sipSessionID>c@h</sipSessionID>"
        "<start-time>t</start-time></session>",
        "<group group_id='g'><x:u xmlns:x='urn:x'>1</x:u></group>",
        '<extensiondata xmlns:x="urn:x"><x:a label="h"><x:v>1</x:v></x:a><x:b/></extensiondata>',
        "<callData xmlns='urn:cd'><gcid>1</gcid></callData>",
        "<datamode>complete</datamode>",
        "<!-- c -->",
        "&amp;",
        "&undefined;",
        "<unclosed>",
        "\x00",
    ]
)
_ROOTS = st.sampled_from(
    [
        ('<recording xmlns="urn:ietf:params:xml:ns:recording:1">', "</recording>"),
        ("<tns:recording xmlns:tns='urn:ietf:params:xml:ns:recording'>", "</tns:recording>"),
        ("<recording_metadata xmlns='urn:ietf:params:xml:ns:siprec'>", "</recording_metadata>"),
        ("<recording>", "</recording>"),
        ("<!DOCTYPE recording><recording>", "</recording>"),
    ]
)
_XML = st.tuples(_ROOTS, st.lists(_FRAGMENTS, max_size=12)).map(
    lambda t: (t[0][0] + "".join(t[1]) + t[0][1]).encode()
)


@SETTINGS
@given(_BODY)
def test_split_structured(body: bytes) -> None:
    try:
        parts = split_multipart(f"multipart/mixed; boundary={_BOUNDARY}", body)
    except BodyError as exc:
        assert exc.status in (400, 413)
        return
    for part in parts:
        assert part.content_type == part.content_type.lower()


@SETTINGS
@given(st.text(max_size=80), st.binary(max_size=2000))
def test_extract_arbitrary(content_type: str, body: bytes) -> None:
    try:
        result = extract_recording_body(content_type, body)
    except BodyError:
        return
    assert is_siprec_request(lambda name: None, result) is (result.metadata is not None)


@SETTINGS
@given(st.binary(max_size=3000))
def test_parse_metadata_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(MetadataError):
        parse_metadata(data)


@SETTINGS
@given(_XML)
def test_parse_metadata_structured_and_join(data: bytes) -> None:
    try:
        md = parse_metadata(data)
    except MetadataError:
        return
    offer = sdp.parse(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=label:1\r\n"
        "m=audio 4002 RTP/AVP 0\r\n"
    )
    view = join(offer, md)  # never raises
    assert len(view.streams) == 2
