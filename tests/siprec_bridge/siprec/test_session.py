"""siprec.session: join m-lines to metadata streams and senders; SIPREC detection."""

from __future__ import annotations

from pathlib import Path

import pytest

import sdp
from siprec_bridge.siprec.metadata import parse_metadata
from siprec_bridge.siprec.multipart import RecordingBody
from siprec_bridge.siprec.session import RecordedStream, is_siprec_request, join

VECTORS = Path(__file__).parent / "vectors"


def offer(*labels: str | None) -> sdp.SessionDescription:
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0"]
    for i, label in enumerate(labels):
        lines += [f"m=audio {4000 + 2 * i} RTP/AVP 0", "a=sendonly"]
        if label is not None:
            lines.append(f"a=label:{label}")
    return sdp.parse("\r\n".join(lines) + "\r\n")


def metadata(*streams: tuple[str, str, str | None]) -> bytes:
    """(stream id, label, sender participant id or None) → RFC 7865 document."""
    parts = ['<recording xmlns="urn:ietf:params:xml:ns:recording:1">']
    senders = {sender for _, _, sender in streams if sender}
    parts += [f'<participant participant_id="{p}"/>' for p in sorted(senders)]
    parts += [
        f'<stream stream_id="{sid}" session_id="x"><label>{label}</label></stream>'
        for sid, label, _ in streams
    ]
    parts += [
        f'<participantstreamassoc participant_id="{sender}"><send>{sid}</send>'
        "</participantstreamassoc>"
        for sid, _, sender in streams
        if sender
    ]
    return "".join([*parts, "</recording>"]).encode()


def test_labels_map_to_streams_and_senders() -> None:
    md = parse_metadata(metadata(("s1", "1", "alice"), ("s2", "2", "bob")))
    view = join(offer("2", "1"), md)  # m-line order differs from metadata order
    assert view.streams == [
        RecordedStream(0, "2", "s2", "bob", ["bob"]),
        RecordedStream(1, "1", "s1", "alice", ["alice"]),
    ]
    assert [p.participant_id for p in view.participants] == ["alice", "bob"]
    assert view.problems == []


def test_missing_metadata() -> None:
    view = join(offer("1", "2"), None)
    assert [(s.label, s.stream_id, s.participant_id) for s in view.streams] == [
        ("1", None, None),
        ("2", None, None),
    ]
    assert view.participants == []
    assert view.problems == ["no recording metadata: senders unknown"]


def test_label_mismatch_with_same_count_falls_back_to_position() -> None:
    # BroadWorks 2016: SDP says a=label:5 while the metadata says <label>1</label> (QUIRKS #23)
    md = parse_metadata(metadata(("s1", "1", "alice")))
    view = join(offer("5"), md)
    assert view.streams == [RecordedStream(0, "5", "s1", "alice", ["alice"])]
    assert len(view.problems) == 1
    assert "label '5' is not in metadata" in view.problems[0]


def test_missing_labels_matched_by_order() -> None:
    md = parse_metadata(metadata(("s1", "1", "alice"), ("s2", "2", "bob")))
    view = join(offer(None, None), md)
    assert [(s.label, s.stream_id, s.participant_id) for s in view.streams] == [
        (None, "s1", "alice"),
        (None, "s2", "bob"),
    ]
    assert len(view.problems) == 2 and all("no a=label" in p for p in view.problems)


def test_unmatched_lines_and_streams_are_reported() -> None:
    md = parse_metadata(metadata(("s1", "1", "alice"), ("s2", "2", "bob")))
    view = join(offer("1", "7", None), md)  # 3 m-lines, 2 streams: no positional fallback
    assert [s.stream_id for s in view.streams] == ["s1", None, None]
    assert view.problems == [
        "m-line 1 label '7' has no metadata stream",
        "m-line 2 has no a=label and cannot be matched to metadata",
        "metadata stream labelled '2' has no m-line",
    ]


def test_duplicate_label_claims_one_stream() -> None:
    md = parse_metadata(metadata(("s1", "1", "alice")))
    view = join(offer("1", "1"), md)
    assert [s.stream_id for s in view.streams] == ["s1", None]
    assert "more than one m-line" in view.problems[0]


def test_mixed_stream_has_all_senders() -> None:
    md = parse_metadata(
        b'<recording_metadata xmlns="urn:ietf:params:xml:ns:siprec">'
        b'<participant id="a"><send><id>m</id></send></participant>'
        b'<participant id="b"><send><id>m</id></send></participant>'
        b'<participant id="c"/>'
        b'<stream id="m"><label>1</label><mode>mixed</mode></stream></recording_metadata>'
    )
    view = join(offer("1"), md)
    assert view.streams == [RecordedStream(0, "1", "m", "a", ["a", "b"])]
    assert [p.participant_id for p in view.participants] == ["a", "b", "c"]  # c sends nothing
    assert view.problems == []


def test_single_silent_participant_is_inferred_as_sender() -> None:
    # Cisco IOS 15.6: the second assoc names a stream id instead of a participant id
    md = parse_metadata((VECTORS / "cisco156_assoc_names_stream.xml").read_bytes())
    view = join(offer("1", "2"), md)
    assert [s.participant_id for s in view.streams] == [
        "Dyu5IhKXEeaANvFyJSj9YQ==",
        "Dyu5IhKXEeaAN/FyJSj9YQ==",
    ]
    assert view.problems[0].startswith("participantstreamassoc for unknown participant")
    assert "inferred" in view.problems[1]
    assert len(view.problems) == 2


def test_empty_stream_id_and_no_associations() -> None:
    md = parse_metadata((VECTORS / "avaya_dummy_stream.xml").read_bytes())
    view = join(offer("10", "20"), md)
    assert [(s.stream_id, s.participant_id) for s in view.streams] == [
        ("0ccc2d78b71d8a1ea1c7", "b536ff63b7f3643d4d7b"),
        (None, "abcdef12345678901234"),  # the SBC's dummy far-end participant, inferred
    ]
    assert any("empty stream id" in p for p in view.problems)
    # OpenSIPS: no participantstreamassoc at all → no sender, reported, not guessed
    md2 = parse_metadata(metadata(("s1", "1", None), ("s2", "2", None)))
    view2 = join(offer("1", "2"), md2)
    assert [s.participant_id for s in view2.streams] == [None, None]
    assert view2.problems == [
        "no participant is known to send m-line 0 (label '1')",
        "no participant is known to send m-line 1 (label '2')",
    ]


def test_dangling_send_reference_is_reported() -> None:
    md = parse_metadata(
        b'<recording xmlns="urn:ietf:params:xml:ns:recording">'
        b'<participant id="a"><send>s1</send></participant>'
        b'<participant id="b"><send>gone</send></participant>'
        b'<stream id="s1"><label>1</label></stream></recording>'
    )
    view = join(offer("1"), md)
    assert view.streams[0].participant_id == "a"
    assert view.problems == ["participant 'b' sends unknown stream 'gone'"]


def headers(**values: str) -> dict[str, str]:
    return {k.replace("_", "-").lower(): v for k, v in values.items()}


@pytest.mark.parametrize(
    ("hdrs", "expected"),
    [
        (headers(Require="siprec"), True),
        (headers(Require="100rel, siprec"), True),
        (headers(Require="100relsiprec"), True),  # Cisco typo (QUIRKS #3)
        (headers(Contact="<sip:198.51.100.20:5060>;+sip.src"), True),
        (headers(Contact="<sip:198.51.100.20:5060;transport=UDP>;src"), True),
        (headers(Contact='"H323 User" <sip:198.51.100.20:5060;transport=UDP;+sip.src>'), True),
        (headers(Contact="<sip:7602922410@198.51.100.20:5060;+sip.src"), True),  # no ">"
        (headers(Contact="<sip:198.51.100.20:5060>;isup-oli=0;+SIP.SRC"), True),
        (headers(Contact="<sip:198.51.100.20:5060>;isFocus"), False),
        (headers(Contact="<sip:src@198.51.100.20>"), False),
        (headers(Require="100rel", Supported="siprec"), False),
        ({}, False),
    ],
)
def test_is_siprec_request_by_headers(hdrs: dict[str, str], expected: bool) -> None:
    assert is_siprec_request(lambda name: hdrs.get(name.lower()), RecordingBody()) is expected


def test_is_siprec_request_by_metadata_part() -> None:
    body = RecordingBody(sdp=b"v=0", metadata=b"<recording/>")
    assert is_siprec_request(lambda name: None, body)
    assert not is_siprec_request(lambda name: None, RecordingBody(sdp=b"v=0"))
