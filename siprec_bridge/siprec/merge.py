"""Merging recording metadata received during a session (RFC 7866 §9.2, RFC 7865 §5).

An SRC sends metadata in the INVITE and again in re-INVITEs, UPDATEs and BYE, as a complete
snapshot (``datamode complete``) or a delta (``partial``). Consumers index participants and
streams by position, so a merge never re-indexes: known ids keep their place and are updated
in place with what the newer document says; unknown ids are appended. The newest association
of a stream to its sender wins.
"""

from __future__ import annotations

from dataclasses import replace

from .metadata import RecordingMetadata, RecordingSessionInfo, Stream


def merge_metadata(old: RecordingMetadata | None, new: RecordingMetadata) -> RecordingMetadata:
    """Return ``old`` updated with ``new`` (``old`` is not modified)."""
    if old is None:
        return new
    # The newest association of a stream wins: a stream the newer document says someone sends
    # (a transfer: Carol now sends what Bob sent) is nobody else's any more. Silence keeps what
    # was known: SRCs send "complete" snapshots without associations (Cisco hold re-INVITEs,
    # metadata in BYE; QUIRKS.md #32).
    claimed = {stream_id for p in new.participants for stream_id in p.send}
    participants = {p.participant_id: replace(p) for p in old.participants}
    for kept in participants.values():
        kept.send = [stream_id for stream_id in kept.send if stream_id not in claimed]
    for p in new.participants:
        known = participants.get(p.participant_id)
        if known is None:
            participants[p.participant_id] = replace(p)
            continue
        known.aor = p.aor or known.aor
        known.name = p.name or known.name
        known.send = p.send or known.send
        known.recv = p.recv or known.recv
        known.extension = {**known.extension, **p.extension}
    streams = {s.stream_id: replace(s) for s in old.streams}
    for s in new.streams:
        known_stream = streams.get(s.stream_id)
        if known_stream is None:
            streams[s.stream_id] = replace(s)
        else:
            _update_stream(known_stream, s)
    sessions = {s.session_id: replace(s) for s in old.sessions}
    for info in new.sessions:
        known_session = sessions.get(info.session_id)
        if known_session is None:
            sessions[info.session_id] = replace(info)
        else:
            _update_session(known_session, info)
    return RecordingMetadata(
        datamode=new.datamode or old.datamode,
        dialect=new.dialect,
        sessions=list(sessions.values()),
        participants=list(participants.values()),
        streams=list(streams.values()),
        groups=list(dict.fromkeys([*old.groups, *new.groups])),
        extensions={**old.extensions, **new.extensions},
        raw=new.raw,
        problems=list(new.problems),
    )


def _update_stream(known: Stream, newer: Stream) -> None:
    known.label = newer.label or known.label
    known.session_id = newer.session_id or known.session_id
    known.mode = newer.mode or known.mode


def _update_session(known: RecordingSessionInfo, newer: RecordingSessionInfo) -> None:
    known.sip_session_ids = newer.sip_session_ids or known.sip_session_ids
    known.group_id = newer.group_id or known.group_id
    known.start_time = newer.start_time or known.start_time
    known.stop_time = newer.stop_time or known.stop_time
