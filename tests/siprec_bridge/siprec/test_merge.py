"""Metadata merging: appended participants, newest stream association wins, silence keeps."""

from __future__ import annotations

from siprec_bridge.siprec.merge import merge_metadata
from siprec_bridge.siprec.metadata import Participant, RecordingMetadata, Stream


def doc(*participants: Participant, datamode: str = "complete") -> RecordingMetadata:
    streams = [Stream("s1", "1"), Stream("s2", "2")]
    return RecordingMetadata(datamode, "rfc7865", participants=list(participants), streams=streams)


def test_new_participants_are_appended_and_take_over_their_streams() -> None:
    old = doc(Participant("alice", "sip:alice@x", send=["s1"]), Participant("bob", send=["s2"]))
    transfer = doc(
        Participant("alice", send=["s1"]), Participant("carol", "sip:carol@x", send=["s2"])
    )
    merged = merge_metadata(old, transfer)
    assert [p.participant_id for p in merged.participants] == ["alice", "bob", "carol"]
    sends = {p.participant_id: p.send for p in merged.participants}
    assert sends == {"alice": ["s1"], "bob": [], "carol": ["s2"]}
    assert merged.participants[0].aor == "sip:alice@x"  # not lost when the update omits it


def test_a_snapshot_without_associations_keeps_what_was_known() -> None:
    """Cisco hold re-INVITEs and BYE metadata say "complete" but list no associations."""
    old = doc(Participant("alice", send=["s1"]), Participant("bob", send=["s2"]))
    merged = merge_metadata(old, doc(Participant("alice"), Participant("bob")))
    assert {p.participant_id: p.send for p in merged.participants} == {
        "alice": ["s1"],
        "bob": ["s2"],
    }
    assert merge_metadata(None, old) is old
