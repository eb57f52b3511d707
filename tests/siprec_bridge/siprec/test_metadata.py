"""siprec.metadata: RFC 7865 and pre-RFC dialects (QUIRKS #30-#37), hardened lxml."""

from __future__ import annotations

from pathlib import Path

import pytest

from siprec_bridge.siprec.metadata import (
    MAX_METADATA_SIZE,
    MetadataError,
    Participant,
    RecordingSessionInfo,
    Stream,
    parse_metadata,
)

VECTORS = Path(__file__).parent / "vectors"


def load(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def test_rfc7865_associations_in_any_order() -> None:
    data = load("rfc7865_assoc.xml")
    md = parse_metadata(data)
    assert md.dialect == "rfc7865"
    assert md.datamode == "complete"
    assert md.raw == data
    assert md.groups == ["7+OTCyoxTmqmqyA/1weDAg=="]
    assert md.sessions == [
        RecordingSessionInfo(
            session_id="hVpd7YQgRW2nD22h7q60JQ==",
            sip_session_ids=[
                "ab30317f1a784dc48ff824d0d3715d86;remote=47755a9de7794ba387653f2099600ef2"
            ],
            group_id="7+OTCyoxTmqmqyA/1weDAg==",
            start_time="2010-12-16T23:41:07Z",
            stop_time=None,
        )
    ]
    # the first <participantstreamassoc> precedes its <participant>: still applied
    assert md.participants == [
        Participant(
            "srfBElmCRp2QB23b7Mpk0w==",
            aor="sip:bob@biloxi.com",
            name="Bob",
            send=["UAAMm5GRQKSCMVvLyl4rFw=="],
            recv=["i1Pz3to5hGk8fuXl+PbwCw=="],
        ),
        Participant(
            "zSfPoSvdSDCmU3A3TRDxAw==",
            aor="sip:Paul@biloxi.com",
            name=None,  # <name xml:lang="en"> </name>
            send=["i1Pz3to5hGk8fuXl+PbwCw=="],
            recv=["UAAMm5GRQKSCMVvLyl4rFw=="],
        ),
    ]
    assert md.streams == [
        Stream("UAAMm5GRQKSCMVvLyl4rFw==", "96", "hVpd7YQgRW2nD22h7q60JQ==", None),
        Stream("i1Pz3to5hGk8fuXl+PbwCw==", "97", "hVpd7YQgRW2nD22h7q60JQ==", None),
    ]
    assert md.extensions == {}
    assert md.problems == []
    bob = md.participant_sending("96")
    assert bob is not None and bob.name == "Bob"
    paul = md.participant_sending("97")
    assert paul is not None and paul.aor == "sip:Paul@biloxi.com"
    assert md.participant_sending("98") is None


def test_sonus_prefix_legacy_attributes_and_foreign_call_data() -> None:
    md = parse_metadata(load("sonus_tns_prefix.xml"))
    assert md.dialect == "draft"
    assert md.datamode == "complete"  # dataMode spelling
    assert md.sessions[0].session_id == "c2Vzc2lvbg=="
    assert md.sessions[0].start_time == "1970-05-13T03:29:05Z"  # absurd clock kept verbatim
    caller, callee = md.participants
    assert (caller.participant_id, caller.name, caller.send, caller.recv) == (
        "cGFydDE=",
        "Caller",
        ["c3RyMQ=="],
        ["c3RyMg=="],
    )
    assert callee.aor == "sip:+15559870002@sonus.example" and callee.name is None
    assert md.streams[0] == Stream("c3RyMQ==", "2", "c2Vzc2lvbg==", "separate")
    # Sonus: the caller sends label 2 (QUIRKS #23: do not assume label 1 = caller)
    sender = md.participant_sending("2")
    assert sender is not None and sender.name == "Caller"
    assert md.extensions == {
        "fromhdr": "<sip:+15551230001@sonus.example>;tag=1",
        "callid": "abc@sonus.example",
        "gcid": "12345",
    }


def test_acme_send_inside_participant_and_extension_data() -> None:
    md = parse_metadata(load("acme_legacy_send.xml"))
    assert md.dialect == "draft"
    first, second = md.participants
    assert first.send == ["0CWQGFVzQf5hAGoO9gnx8g=="]
    assert first.extension == {
        "callingParty": "true",
        "Call-ID": "134485702_44821128@10.10.128.62",  # apkt:header label=... <value>
    }
    assert second.name == "33187164021" and second.extension == {}
    assert md.extensions == {"ucid": "00FA081003B9CF5E7DF7E5;encoding=hex"}
    assert [s.mode for s in md.streams] == ["separate", "separate"]
    sender = md.participant_sending("201835600")
    assert sender is not None and sender.participant_id == "L1OKBsjoTO11Pn5uow6ptQ=="


def test_broadworks_send_id_and_aor_child() -> None:
    md = parse_metadata(load("broadworks_send_id.xml"))
    assert md.dialect == "siprec-draft"
    assert md.datamode == "complete"
    assert md.groups == ["urn:uuid:1f24"]
    assert md.sessions[0].group_id == "urn:uuid:1f24"
    assert md.sessions[0].start_time == "2021-05-17T19:22:08+00:00"
    assert [(p.aor, p.send) for p in md.participants] == [
        ("sip:86074075017412@example.com", ["urn:uuid:s1"]),
        ("8101@10.21.0.216", ["urn:uuid:s1"]),  # AoR without scheme kept verbatim
    ]
    assert md.streams == [Stream("urn:uuid:s1", "1", "urn:uuid:d849", "mixed")]
    assert md.extensions == {
        "extTrackingID": "tracking-1",
        "callingPartyNumber": "sip:7412@10.21.0.216",
        "recordingType": "on",
    }


def test_avaya_dummy_stream_and_empty_assoc() -> None:
    md = parse_metadata(load("avaya_dummy_stream.xml"))
    assert [s.stream_id for s in md.streams] == ["0ccc2d78b71d8a1ea1c7", ""]
    assert [p.send for p in md.participants] == [["0ccc2d78b71d8a1ea1c7"], []]
    assert md.problems == []


def test_assoc_naming_a_stream_is_reported() -> None:
    md = parse_metadata(load("cisco156_assoc_names_stream.xml"))
    assert [p.send for p in md.participants] == [["DyxVShKXEeaAO/FyJSj9YQ=="], []]
    assert md.problems == [
        "participantstreamassoc for unknown participant 'DyxVShKXEeaAO/FyJSj9YQ==' ignored"
    ]


def test_whitespace_single_quotes_trailing_nul_and_direct_children() -> None:
    md = parse_metadata(load("whitespace_nul.xml"))
    assert md.datamode == "partial"
    (participant,) = md.participants
    assert participant.name == "Direct Name"
    assert participant.aor == "7602922411"
    assert participant.extension == {"channel": "SIP/911202-073e", "role": "calling"}


def test_foreign_element_in_group_and_root_extension_data() -> None:
    md = parse_metadata(load("audiocodes_foreign_in_group.xml"))
    assert md.groups == ["ac1fffff"]
    assert md.sessions[0].group_id == "ac1fffff"
    assert md.extensions == {
        "AvayaUCID": "FA080019001038F725B3",
        "carrier": "Carrier & Co",
        "direction": "inbound",
    }


def test_duplicate_elements_merge() -> None:
    data = b"""<recording xmlns="urn:ietf:params:xml:ns:recording:1">
    <participant participant_id="p"><send>s</send></participant>
    <participant participant_id="p">
      <nameID aor="sip:p@x"/><send>s</send><send>t</send>
    </participant>
    <stream stream_id="s"/><stream stream_id="s" session_id="x"><label>1</label></stream>
    </recording>"""
    md = parse_metadata(data)
    assert md.participants == [Participant("p", aor="sip:p@x", send=["s", "t"])]
    assert md.streams == [Stream("s", "1", "x", None)]


def test_namespace_less_root_is_read_as_draft() -> None:
    md = parse_metadata(b"<recording><participant id='a'><send>s</send></participant></recording>")
    assert md.dialect == "draft"
    assert md.participants[0].send == ["s"]
    old = parse_metadata(b"<recording_metadata><dataMode>complete</dataMode></recording_metadata>")
    assert old.dialect == "siprec-draft"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("invalid_unquoted_attribute.xml", "not well-formed"),
        ("invalid_truncated.xml", "not well-formed"),
        ("invalid_tags_stripped.xml", "no child elements"),
        ("invalid_billion_laughs.xml", "DOCTYPE"),
        ("invalid_xxe.xml", "DOCTYPE"),
        ("invalid_utf16_doctype.xml", "DOCTYPE"),  # caught after parsing (bytes check can't see)
        ("invalid_wrong_root.xml", "root"),
        ("invalid_foreign_namespace.xml", "namespace"),
    ],
)
def test_invalid_vectors(name: str, reason: str) -> None:
    with pytest.raises(MetadataError, match=reason):
        parse_metadata(load(name))


@pytest.mark.parametrize(
    "data",
    [b"", b"  \r\n\x00", b"not xml", b"<recording", b"<?xml version='1.0' encoding='bogus'?><a/>"],
)
def test_garbage_raises_metadata_error(data: bytes) -> None:
    with pytest.raises(MetadataError):
        parse_metadata(data)


def test_size_limit() -> None:
    data = b"<recording>" + b" " * MAX_METADATA_SIZE + b"</recording>"
    with pytest.raises(MetadataError, match="larger"):
        parse_metadata(data)
