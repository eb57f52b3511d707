"""Vendor conformance: every file of the shared corpus through the real parser, UA and SRS.

The expected outcome of each file is the named vector ``vectors/conformance/expected.json``
(written by reading the files; see its ``about``). Known gaps are rows with ``"xfail"``, run as
``xfail(strict=True)``. Corpus files without a row still get generic checks, so new captures
dropped into the corpus are exercised at once.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from siprec_bridge import conformance
from siprec_bridge.conformance import FileResult, format_table, run_folder

CORPUS = (Path(__file__).parents[2] / ".." / "shared" / "siprec-corpus").resolve()
INVITES = CORPUS / "invites"
EXPECTED = Path(__file__).parent / "vectors" / "conformance" / "expected.json"
NO_CORPUS = f"shared SIPREC corpus not found at {CORPUS} (only present on CI and dev machines)"
FIELDS = (
    "method",
    "status",
    "m_lines",
    "recorded",
    "paused",
    "codecs",
    "senders",
    "participants",
    "dialect",
    "siprec",
    "changes",
)


def _expected() -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = json.loads(EXPECTED.read_text(encoding="utf-8"))["files"]
    return rows


@cache
def _results() -> dict[str, FileResult]:
    return {r.file: r for r in run_folder(INVITES)}


def _row_of(result: FileResult) -> dict[str, Any]:
    return {
        "method": result.method,
        "status": result.status,
        "m_lines": result.m_lines,
        "recorded": result.recorded,
        "paused": result.paused,
        "codecs": result.codecs,
        "senders": result.senders,
        "participants": [p.aor or p.participant_id for p in result.participants],
        "dialect": result.dialect,
        "siprec": result.siprec,
        "changes": result.changes,
    }


def _expected_params() -> list[Any]:
    if not INVITES.is_dir():
        return [pytest.param("", {}, id="no-corpus", marks=pytest.mark.skip(reason=NO_CORPUS))]
    params = []
    for rel, row in _expected().items():
        marks = [pytest.mark.xfail(strict=True, reason=row["xfail"])] if "xfail" in row else []
        params.append(pytest.param(rel, row, id=rel, marks=marks))
    return params


def _unlisted_params() -> list[Any]:
    if not INVITES.is_dir():
        return [pytest.param("", id="no-corpus", marks=pytest.mark.skip(reason=NO_CORPUS))]
    listed = set(_expected())
    files = [
        p.relative_to(INVITES).as_posix()
        for p in sorted(INVITES.rglob("*"))
        if p.is_file() and p.suffix in (".sip", ".txt", ".xml")
    ]
    unlisted = [rel for rel in files if rel not in listed]
    if not unlisted:
        return [pytest.param("", id="none", marks=pytest.mark.skip(reason="every file is listed"))]
    return [pytest.param(rel, id=rel) for rel in unlisted]


@pytest.mark.parametrize(("rel", "row"), _expected_params())
def test_corpus_file_conforms(rel: str, row: dict[str, Any]) -> None:
    result = _results().get(rel)
    assert result is not None, f"{rel} is in the expected table but not in the corpus"
    expected = {name: row[name] for name in FIELDS}
    assert _row_of(result) == expected


@pytest.mark.parametrize("rel", _unlisted_params())
def test_unlisted_corpus_file_is_handled(rel: str) -> None:
    """Generic checks for corpus files the table does not list yet: every well-meant request
    is accepted, an INVITE that starts a session records streams, metadata parses."""
    result = _results()[rel]
    assert result.method != "?", result.notes
    if result.method == "metadata":
        assert result.dialect is not None, result.problems
        assert result.participants
    elif result.method != "response":
        assert result.accepted, (result.status, result.warning)
    if "started" in result.changes:
        assert result.recorded and set(result.codecs) == set(result.recorded)


def test_every_request_is_answered_and_initial_invites_are_accepted() -> None:
    if not INVITES.is_dir():
        pytest.skip(NO_CORPUS)
    results = list(_results().values())
    requests = [r for r in results if r.method in ("INVITE", "UPDATE", "BYE")]
    assert requests and all(r.status is not None for r in requests)
    started = [r for r in results if "started" in r.changes]
    assert len(started) >= 100 and all(r.accepted and r.recorded for r in started)


def test_table_rows_have_every_field() -> None:
    rows = _expected()
    assert len(rows) >= 270
    for rel, row in rows.items():
        assert set(FIELDS) <= set(row), rel
        assert set(row) - set(FIELDS) <= {"xfail"}, rel


# -- harness behaviour on a folder of our own --------------------------------------------------
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
    b"m=audio 16000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=sendonly\r\na=label:1\r\n"
)


def _request(method: str, cseq: int, body: bytes, to_tag: str = "", cseq_method: str = "") -> bytes:
    lines = [
        f"{method} sip:srs@192.0.2.10:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-same",
        "Max-Forwards: 70",
        "From: <sip:sbc@198.51.100.7>;tag=sbc",
        "To: <sip:srs@192.0.2.10>" + (f";tag={to_tag}" if to_tag else ""),
        "Call-ID: own-1@198.51.100.7",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:sbc@198.51.100.7:5060>;+sip.src",
        "Require: siprec",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


def _own_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "capture"
    folder.mkdir()
    hold = SDP.replace(b"a=sendonly", b"a=inactive")
    (folder / "call.01.INVITE.sip").write_bytes(_request("INVITE", 1, SDP))
    (folder / "call.02.INVITE.sip").write_bytes(_request("INVITE", 2, hold, to_tag="theirs"))
    (folder / "call.03.BYE.sip").write_bytes(_request("BYE", 3, b"", cseq_method="INVITE"))
    (folder / "bad.txt").write_bytes(b"v=0\nm=audio 1 RTP/AVP 18\n")
    return folder


def test_sequence_is_played_in_one_dialog_with_rewrites_noted(tmp_path: Path) -> None:
    results = {r.file: r for r in run_folder(_own_folder(tmp_path))}
    first, hold, bye = (
        results[f"call.0{n}.{m}.sip"] for n, m in ((1, "INVITE"), (2, "INVITE"), (3, "BYE"))
    )
    assert (first.status, first.recorded, first.codecs, first.changes) == (
        200,
        ["1"],
        {"1": "PCMA"},
        ["started"],
    )
    assert first.remotes == {"1": "198.51.100.7:16000"}
    assert (hold.status, hold.paused, hold.changes) == (200, ["1"], ["paused:1"])
    assert (bye.status, bye.changes) == (200, ["ended:bye"])
    assert bye.notes == ["added the missing To tag", "CSeq method INVITE changed to BYE"]
    bad = results["bad.txt"]
    assert bad.notes == ["body only: wrapped in a minimal INVITE"]
    assert bad.status == 400 and bad.warning is not None and "SDP" in bad.warning


def test_cli_prints_the_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _own_folder(tmp_path)
    parser = argparse.ArgumentParser()
    conformance.add_arguments(parser)
    assert conformance.main_from_args(parser.parse_args([str(folder)])) == 1  # bad.txt: 400
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == [
        "FILE",
        "METHOD",
        "STATUS",
        "M",
        "RECORDED",
        "SENDERS",
        "DIALECT",
        "CHANGES",
    ]
    assert any(
        line.startswith("call.02.INVITE.sip") and "1(p)" in line for line in table.splitlines()
    )
    assert "    ~ added the missing To tag" in table
    assert table.rstrip().endswith("4 files, 4 answered: 3 accepted, 1 rejected")
    assert table == format_table(run_folder(folder))

    assert conformance.main_from_args(parser.parse_args([str(folder), "--json"])) == 1
    rows = json.loads(capsys.readouterr().out)
    assert [row["file"] for row in rows] == [
        "bad.txt",
        "call.01.INVITE.sip",
        "call.02.INVITE.sip",
        "call.03.BYE.sip",
    ]
    assert rows[1]["senders"] == {"1": None} and rows[1]["status"] == 200

    assert conformance.main_from_args(parser.parse_args([str(tmp_path / "missing")])) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_cli_on_the_corpus_prints_a_row_per_file(capsys: pytest.CaptureFixture[str]) -> None:
    if not INVITES.is_dir():
        pytest.skip(NO_CORPUS)
    parser = argparse.ArgumentParser()
    conformance.add_arguments(parser)
    assert conformance.main_from_args(parser.parse_args([str(INVITES), "--brief"])) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(_results()) + 1
    assert lines[-1].startswith(f"{len(_results())} files")


def test_interop_vendor_table_matches_the_expected_table() -> None:
    """docs/interop.md: each vendor row's globs, file count and outcome agree with the vector."""
    doc = (Path(__file__).parents[2] / "docs" / "interop.md").read_text(encoding="utf-8")
    lines = doc.split("| Vendor / SRC |", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    rows = _expected()
    owners: dict[str, list[str]] = {rel: [] for rel in rows}
    for line in lines:
        vendor, files, count, outcome, _ = (cell.strip() for cell in line.strip("|").split(" | "))
        globs = re.findall(r"`([^`]+)`", files)
        matched = [rel for rel in rows if any(fnmatch.fnmatch(rel, g) for g in globs)]
        assert len(matched) == int(count), vendor
        answered = [rows[rel]["status"] for rel in matched if rows[rel]["status"] is not None]
        accepted = all(200 <= status < 300 for status in answered)
        assert outcome == ("accepted" if accepted else "rejected"), vendor
        for rel in matched:
            owners[rel].append(vendor)
    assert {rel: v for rel, v in owners.items() if len(v) != 1} == {}
