"""siprec.multipart: RFC 2046 §5.1 splitting and RFC 7866 §9 part selection (QUIRKS #8-#17)."""

from __future__ import annotations

from pathlib import Path

import pytest

from siprec_bridge.siprec.multipart import (
    MAX_BODY_SIZE,
    BodyError,
    extract_recording_body,
    parse_content_type,
    split_multipart,
)

VECTORS = Path(__file__).parent / "vectors"


def body(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


@pytest.mark.parametrize(
    ("header", "mime", "params"),
    [
        (
            "multipart/mixed;boundary=uniqueBoundary",
            "multipart/mixed",
            {"boundary": "uniqueBoundary"},
        ),
        ("Multipart/Mixed; boundary=foobar", "multipart/mixed", {"boundary": "foobar"}),
        ("multipart/mixed; boundary = x-y ", "multipart/mixed", {"boundary": "x-y"}),
        ('multipart/mixed; boundary="a b;c"', "multipart/mixed", {"boundary": "a b;c"}),
        (
            'multipart/mixed;boundary="q\\"x"; other=1',
            "multipart/mixed",
            {"boundary": 'q"x', "other": "1"},
        ),
        (
            "application/rs-metadata+xml; charset=UTF-8",
            "application/rs-metadata+xml",
            {"charset": "UTF-8"},
        ),
        (
            'multipart/mixed; boundary="unterminated',
            "multipart/mixed",
            {"boundary": "unterminated"},
        ),
        ("application/sdp ", "application/sdp", {}),
        ("multipart/mixed;;boundary=x; ;", "multipart/mixed", {"boundary": "x"}),
        ("multipart/mixed; =x; boundary=y; boundary=z", "multipart/mixed", {"boundary": "y"}),
        ("", "", {}),
    ],
)
def test_parse_content_type(header: str, mime: str, params: dict[str, str]) -> None:
    assert parse_content_type(header) == (mime, params)


def test_cisco_three_parts_disposition_first() -> None:
    parts = split_multipart(
        "multipart/mixed;boundary=uniqueBoundary", body("cisco_gtd_three_parts.body")
    )
    assert [p.content_type for p in parts] == [
        "application/sdp",
        "application/rs-metadata+xml",
        "application/gtd",
    ]
    assert [p.disposition for p in parts] == ["session", "recording-session", "signal"]
    assert parts[0].body.startswith(b"v=0\r\n")
    assert parts[0].body.endswith(b"a=label:1\r\n")  # the CRLF before the delimiter is not content
    assert parts[1].body.endswith(b"</recording>\r\n")
    assert parts[2].header("content-disposition") == "signal;handling=optional"
    extracted = extract_recording_body(
        "multipart/mixed;boundary=uniqueBoundary", body("cisco_gtd_three_parts.body")
    )
    assert extracted.sdp == parts[0].body
    assert extracted.metadata == parts[1].body
    assert extracted.metadata_content_type == "application/rs-metadata+xml"
    assert [p.content_type for p in extracted.other_parts] == ["application/gtd"]
    assert extracted.problems == []


def test_metadata_first_and_wrong_part_content_length() -> None:
    rb = extract_recording_body(
        "multipart/mixed;boundary=UniqueBroadWorksBoundary", body("broadworks_metadata_first.body")
    )
    assert rb.sdp is not None and rb.sdp.startswith(b"v=0") and rb.sdp.endswith(b"a=label:1\r\n")
    assert rb.metadata is not None and rb.metadata.startswith(b"<?xml")
    assert rb.metadata.endswith(b"</recording>\r\n")
    assert rb.problems == []


def test_bare_lf_preamble_padding_and_epilogue() -> None:
    parts = split_multipart(
        "multipart/mixed; boundary=unique-boundary-1", body("acme_lf_padding.body")
    )
    assert len(parts) == 2
    assert parts[0].body.endswith(b"a=label:1\n")
    assert parts[1].body.endswith(b"</recording>")  # no newline before the close delimiter line
    assert b"epilogue" not in parts[1].body


def test_missing_close_delimiter() -> None:
    rb = extract_recording_body(
        "multipart/mixed;boundary=2CD2A2E9", body("sems_no_close_delimiter.body")
    )
    assert rb.sdp is not None
    assert rb.metadata is not None and rb.metadata.endswith(b"</recording>")
    assert rb.metadata_content_type == "application/rs-metadata"


def test_stray_boundary_lines_do_not_split() -> None:
    parts = split_multipart(
        "multipart/mixed; boundary=unique-boundary-1", body("oracle_stray_boundary.body")
    )
    assert len(parts) == 2
    assert b"--metaswitch-boundary" in parts[0].body
    assert b"--unique-boundary-1x" in parts[0].body
    assert parts[1].content_type == "application/rs-metadata+xml"


def test_transport_padding_and_charset() -> None:
    rb = extract_recording_body(
        'multipart/mixed;boundary="uniqueBoundary"', body("cisco156_padding.body")
    )
    assert rb.sdp is not None and rb.sdp.startswith(b"v=0")
    assert rb.metadata is not None
    assert rb.metadata_content_type == "application/rs-metadata+xml"
    parts = split_multipart(
        "multipart/mixed;boundary=uniqueBoundary", body("cisco156_padding.body")
    )
    assert parts[1].params == {"charset": "UTF-8"}


def test_metadata_found_by_disposition_when_type_is_mangled() -> None:
    rb = extract_recording_body(
        "multipart/mixed;boundary=UniqueBroadWorksBoundary", body("mangled_metadata_type.body")
    )
    assert rb.metadata is not None and rb.metadata.startswith(b"<recording_metadata")
    assert rb.metadata_content_type == "application/ +xml"
    assert rb.sdp is not None
    assert len(rb.problems) == 1 and "application/ +xml" in rb.problems[0]


def test_folded_header_headerless_and_empty_parts() -> None:
    parts = split_multipart("multipart/mixed; boundary=b", body("odd_parts.body"))
    assert [p.content_type for p in parts] == ["application/sdp", "", "", ""]
    assert parts[1].headers == [] and parts[1].body == b"no headers at all"
    assert parts[2].body == b"" and parts[2].headers == []
    assert parts[3].headers == [("X-Note", "no blank line")]
    assert parts[3].body == b"body straight away"
    rb = extract_recording_body("multipart/mixed; boundary=b", body("odd_parts.body"))
    assert rb.sdp is not None and rb.metadata is None
    assert len(rb.other_parts) == 3
    assert rb.problems == ["unexpected body part (no type)"] * 3


def test_duplicate_parts_are_reported() -> None:
    data = (
        b"--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n"
        b"--b\r\nContent-Type: application/sdp\r\n\r\nv=1\r\n"
        b"--b\r\nContent-Type: application/rs-metadata\r\n\r\n<a/>\r\n"
        b"--b\r\nContent-Type: application/rs-metadata+xml\r\n\r\n<b/>\r\n--b--\r\n"
    )
    rb = extract_recording_body("multipart/mixed;boundary=b", data)
    assert rb.sdp == b"v=0"
    assert rb.metadata == b"<a/>"
    assert len(rb.other_parts) == 2
    assert len(rb.problems) == 2


def test_single_part_bodies() -> None:
    sdp_only = extract_recording_body("application/sdp", b"v=0\r\n")
    assert (sdp_only.sdp, sdp_only.metadata) == (b"v=0\r\n", None)
    update = extract_recording_body("application/rs-metadata; charset=utf-8", b"<recording/>")
    assert (update.sdp, update.metadata) == (None, b"<recording/>")
    assert update.metadata_content_type == "application/rs-metadata"
    empty = extract_recording_body(None, b"")
    assert (empty.sdp, empty.metadata, empty.other_parts, empty.problems) == (None, None, [], [])
    other = extract_recording_body("text/plain", b"hello")
    assert other.sdp is None and other.other_parts[0].body == b"hello"
    assert other.problems == ["unexpected body part text/plain"]


@pytest.mark.parametrize(
    ("header", "data", "reason", "status"),
    [
        (None, b"v=0\r\n", "without Content-Type", 400),
        ("multipart/mixed", b"--x\r\n\r\n", "without boundary", 400),
        ("multipart/mixed; boundary=" + "x" * 300, b"--x\r\n", "unusable", 400),
        (
            "multipart/mixed; boundary=uniqueBoundary",
            body("invalid_boundary_absent.body"),
            "not found",
            400,
        ),
        ("application/sdp", b"v" * (MAX_BODY_SIZE + 1), "larger", 413),
    ],
)
def test_body_errors(header: str | None, data: bytes, reason: str, status: int) -> None:
    with pytest.raises(BodyError, match=reason) as info:
        extract_recording_body(header, data)
    assert info.value.status == status
    assert reason in info.value.text


def test_part_limit() -> None:
    data = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(5)) + b"--b--"
    assert len(split_multipart("multipart/mixed;boundary=b", data, max_parts=5)) == 5
    with pytest.raises(BodyError, match="more than 4"):
        split_multipart("multipart/mixed;boundary=b", data, max_parts=4)
    four_then_unterminated = data[: -len(b"--b--")].replace(b"--b\r\n", b"", 1) + b"--b\r\ntail"
    with pytest.raises(BodyError, match="more than 4"):  # the unterminated 5th part counts too
        split_multipart("multipart/mixed;boundary=b", four_then_unterminated, max_parts=4)


def test_size_limit_in_split() -> None:
    with pytest.raises(BodyError) as info:
        split_multipart("multipart/mixed;boundary=b", b"x" * (MAX_BODY_SIZE + 1))
    assert info.value.status == 413
