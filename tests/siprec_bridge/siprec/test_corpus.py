"""Table-driven tests over the shared vendor corpus (../shared/siprec-corpus/invites/**).

``.sip`` files are whole SIP messages; drachtio ``.txt`` files are bodies only (the boundary is
read from the first ``--`` line; those without one are plain SDP), except the Intrado one,
which is a whole INVITE. ``.xml`` files are bare metadata documents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import sdp
from sdp.answer import acceptable, build_answer
from siprec_bridge.siprec.metadata import MetadataError, RecordingMetadata, parse_metadata
from siprec_bridge.siprec.multipart import RecordingBody, extract_recording_body
from siprec_bridge.siprec.session import is_siprec_request, join

CORPUS = (Path(__file__).parents[3] / ".." / "shared" / "siprec-corpus").resolve()
INVITES = CORPUS / "invites"
SKIP = pytest.mark.skip(reason=f"shared SIPREC corpus not found at {CORPUS}")

# Metadata known to be damaged in the corpus (SOURCES.md): must raise MetadataError.
KNOWN_GARBAGE = {"drachtio-test-data/broadworks-offer.txt"}

# Non-SIPREC INVITEs that reach the same port (QUIRKS #18, #19): Cisco NBR and CUCM BiB.
NOT_SIPREC = re.compile(r"cisco_cube_network_based_|cisco_bib_call_")

# label → AoR of the sender, for a spread of vendors (None: the metadata does not say).
EXPECTED_SENDERS: dict[str, dict[str, str | None]] = {
    "cisco-cube-doc/cisco-cube-iosxe16.10-initial-invite.sip": {
        "1": "sip:1234@10.0.0.15",
        "2": "sip:911@209.165.201.1",
    },
    "cisco-cube-doc/cisco-cube-av-4mline-initial-invite.sip": {
        "1": "sip:808808@9.0.0.174",
        "2": "sip:909909@9.0.0.174",
        "3": "sip:808808@9.0.0.174",
        "4": "sip:909909@9.0.0.174",
    },
    "drachtio-test-data/acme-siprec-offer.txt": {
        "16777227": "sip:9000@192.168.50.102",
        "16777228": "sip:1002@192.168.50.10",
    },
    "drachtio-test-data/avaya-siprec-offer.txt": {
        "201835599": "sip:31624895902@10.10.128.62",
        "201835600": "sip:33187164021@sip.webhelpgroupe.lan",
    },
    "drachtio-test-data/broadworks-offer-2.txt": {
        "10": "sip:9878942259@212.188.68.145",
        "20": "sip:ASBCE@asbce.com",
    },
    "drachtio-test-data/cisco-siprec-offer.txt": {
        "1": "sip:7301@35.162.237.204",
        "2": "sip:7300@35.162.237.204",
    },
    "drachtio-test-data/connectel-offer.txt": {"1": None, "2": None},
    "drachtio-test-data/intrado-siprec-invite.txt": {"1": "4058327108@10.105.190.136:5060"},
    "drachtio-test-data/procomm-siprec-offer.txt": {
        "a_leg": "sip:016190200@87.252.209.116",
        "b_leg": "Extension-016190619@speechpath.ie",
    },
    "simonwillis/cisco-ios15.6-invite.sip": {
        "1": "sip:448707803128@192.168.33.1",
        "2": "sip:8001@172.17.12.99",  # inferred (the assoc names a stream id)
    },
    "synthesized/audiocodes-style-legacy-metadata-invite.SYNTH.sip": {
        "1": "1000@198.51.100.1",
        "2": "2000@198.51.100.2",
    },
    "synthesized/jambonz-siprec-client-default-invite.SYNTH.sip": {
        "1": "sip:+15551230001@203.0.113.9",
        "2": "sip:+15559870002@203.0.113.9",
    },
    "miarec-sipp-rendered/cisco_webex_calling/inbound_01.01.INVITE.sip": {
        "1": "sip:kculs9klre@44936045.int10.bcld.webex.com",
    },
    "miarec-sipp-rendered/broadworks_3way_call_1.01.INVITE.sip": {
        "1": "sip:86074075017412@cloudcalling-e.onestreamnetworks.com",
    },
    "miarec-sipp-rendered/avaya_sbce_inbound/avaya_sbce_inbound.01.INVITE.sip": {
        "10": "sip:13035381001@10.64.110.65",
    },
    "miarec-sipp-rendered/oracle_sbc_basic_calls_outbound.01.INVITE.sip": {
        "16777227": "sip:1000@192.168.50.102",
    },
    "miarec-sipp-rendered/metaswitch_16_basic_call_recording/"
    "16a_basic_call_inbound.01.INVITE.sip": {
        "1": "7602922411",  # mixed stream: first of two senders
    },
}


@dataclass
class Message:
    rel: str
    method: str | None
    headers: dict[str, list[str]]
    content_type: str | None
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return ", ".join(values) if values else None


def _load(path: Path) -> Message:
    data = path.read_bytes()
    rel = path.relative_to(INVITES).as_posix()
    if path.suffix == ".sip" or data.startswith(b"INVITE "):
        match = re.search(rb"\r?\n\r?\n", data)
        assert match is not None, rel
        head, body = data[: match.start()], data[match.end() :]
        headers: dict[str, list[str]] = {}
        for line in re.split(rb"\r?\n", head)[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        content_type = headers["content-type"][0] if "content-type" in headers else None
        method = head.split(b" ", 1)[0].decode("latin-1")
        return Message(rel, method, headers, content_type, body)
    first = next((line for line in data.splitlines() if line.startswith(b"--")), None)
    if first is None:
        return Message(rel, None, {}, "application/sdp", data)
    boundary = first[2:].strip().decode()
    return Message(rel, None, {}, f"multipart/mixed;boundary={boundary}", data)


def _corpus_files() -> list[Path]:
    if not INVITES.is_dir():
        return []
    return sorted(p for p in INVITES.rglob("*") if p.is_file() and p.suffix in (".sip", ".txt"))


def _params(predicate: str) -> list[object]:
    files = _corpus_files()
    if not files:
        return [pytest.param(None, id="no-corpus", marks=SKIP)]
    messages = [_load(p) for p in files]
    selected: list[object] = []
    for m in messages:
        content_type = (m.content_type or "").lower()
        initial_invite = m.method == "INVITE" and "tag=" not in (m.header("to") or "")
        if (
            (predicate == "multipart" and content_type.startswith("multipart/"))
            or (predicate == "any" and m.body.strip())
            or (predicate == "initial-invite" and initial_invite)
        ):
            selected.append(pytest.param(m, id=m.rel))
    return selected


def _metadata(message: Message) -> tuple[RecordingBody, RecordingMetadata | None]:
    body = extract_recording_body(message.content_type, message.body)
    if body.metadata is None or message.rel in KNOWN_GARBAGE:
        return body, None
    return body, parse_metadata(body.metadata)


@pytest.mark.parametrize("message", _params("multipart"))
def test_multipart_has_sdp_and_metadata(message: Message) -> None:
    body = extract_recording_body(message.content_type, message.body)
    assert body.sdp is not None and body.sdp.lstrip().startswith(b"v=0")
    assert body.metadata is not None and b"recording" in body.metadata


@pytest.mark.parametrize("message", _params("any"))
def test_metadata_parses(message: Message) -> None:
    body = extract_recording_body(message.content_type, message.body)
    if body.metadata is None:
        assert (message.content_type or "").startswith("application/sdp"), message.rel
        return
    if message.rel in KNOWN_GARBAGE:
        with pytest.raises(MetadataError):
            parse_metadata(body.metadata)
        return
    md = parse_metadata(body.metadata)
    assert md.participants, message.rel
    assert all(p.participant_id for p in md.participants)
    assert all(s.label for s in md.streams)


@pytest.mark.parametrize("message", _params("any"))
def test_sdp_parses_and_is_answered(message: Message) -> None:
    body = extract_recording_body(message.content_type, message.body)
    if body.sdp is None:
        return
    offer = sdp.parse(body.sdp)
    usable = acceptable(offer)
    ports = [20000 + 2 * i if ok else 0 for i, ok in enumerate(usable)]
    answer, streams = build_answer(
        offer, local_address="192.0.2.10", ports=ports, session_id=1, session_version=1
    )
    assert len(answer.media) == len(offer.media) == len(streams)
    assert [m.label for m in answer.media] == [m.label for m in offer.media]
    assert [m.port for m in answer.media] == ports
    for m, s in zip(answer.media, streams, strict=True):
        assert (m.direction is not None) == s.accepted
        assert s.codec is None or s.codec.encoding in ("PCMU", "PCMA", "G722")
    assert sdp.parse(sdp.serialize(answer)).media == answer.media


@pytest.mark.parametrize("message", _params("any"))
def test_join_gives_labels_and_senders(message: Message) -> None:
    body, md = _metadata(message)
    if body.sdp is None or md is None:
        return
    offer = sdp.parse(body.sdp)
    view = join(offer, md)
    assert [s.label for s in view.streams] == [m.label for m in offer.media]
    assert all(s.label is not None for s in view.streams), "every SIPREC m-line has a=label"
    metadata_labels = {s.label: s for s in md.streams}
    for recorded in view.streams:
        stream = metadata_labels.get(recorded.label)
        if stream is None or not stream.stream_id:
            continue
        assert recorded.stream_id == stream.stream_id
        declared = [p.participant_id for p in md.participants if stream.stream_id in p.send]
        if declared:
            assert recorded.participant_id == declared[0]
            assert recorded.senders == declared
    expected = EXPECTED_SENDERS.get(message.rel)
    if expected is not None:
        aor = {p.participant_id: p.aor for p in view.participants}
        got = {s.label: aor.get(s.participant_id or "") for s in view.streams}
        assert got == expected


def test_expected_senders_table_is_used() -> None:
    if not INVITES.is_dir():
        pytest.skip(f"shared SIPREC corpus not found at {CORPUS}")
    missing = [rel for rel in EXPECTED_SENDERS if not (INVITES / rel).is_file()]
    assert missing == []


@pytest.mark.parametrize("message", _params("initial-invite"))
def test_siprec_detection(message: Message) -> None:
    body = extract_recording_body(message.content_type, message.body)
    expected = not NOT_SIPREC.search(message.rel)
    assert is_siprec_request(message.header, body) is expected


@pytest.mark.parametrize(
    "name",
    [
        "simonwillis/broadworks-cognia-metadata.xml",
        "simonwillis/broadworks-cognia-metadata-2.xml",
        "rfc/rfc7865-example-metadata.xml",
    ],
)
def test_bare_metadata_documents(name: str) -> None:
    path = INVITES / name
    if not path.is_file():
        pytest.skip(f"shared SIPREC corpus not found at {CORPUS}")
    md = parse_metadata(path.read_bytes())
    assert md.participants and md.streams
    for stream in md.streams:
        assert stream.label is not None
        assert md.participant_sending(stream.label) is not None
