"""Join the SDP offer and the recording metadata: which participant sends which m-line.

RFC 7866 §8.1.1 / RFC 7865 §6.5: each recorded m-line carries ``a=label`` (RFC 4574); the
metadata ``<stream>`` with the same ``<label>`` names the stream, and the participant whose
``<send>`` lists that stream id is the one speaking on it.

Metadata is advisory (RFC 7866 §9): nothing here raises. Anything that does not add up -
label mismatches (QUIRKS #23), missing labels, missing metadata, dangling ids (QUIRKS #32) -
is reported in :attr:`RecordingView.problems`, with these fallbacks:

- when several metadata streams carry the same label, the last one wins: merged metadata
  appends the streams of a newer document, and after a redirect or transfer BroadWorks and
  Webex re-declare label ``1`` with a new stream id and new senders (the older ones are
  superseded, not reported);
- m-lines whose label matches no metadata stream are matched by position when the offer has
  as many m-lines as the metadata has streams (CUBE answers without labels, BroadWorks labels
  that disagree with the metadata);
- when exactly one matched stream has no known sender and exactly one participant sends
  nothing, that participant is taken as the sender (Cisco IOS 15.6 names a stream id where the
  participant id belongs; Avaya SBCE's dummy far-end participant).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sdp import SessionDescription

from .metadata import Participant, RecordingMetadata, Stream
from .multipart import RecordingBody


@dataclass(slots=True)
class RecordedStream:
    """One offered m-line and who sends on it.

    ``participant_id`` is the (first) sender; ``senders`` lists every participant sending this
    stream (several for a mixed stream: BroadWorks, Metaswitch; QUIRKS #20).
    """

    index: int
    label: str | None
    stream_id: str | None
    participant_id: str | None
    senders: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RecordingView:
    """The recorded streams in m-line order, all participants, and what did not add up."""

    streams: list[RecordedStream]
    participants: list[Participant]
    problems: list[str]


def _match_streams(
    offer: SessionDescription, metadata: RecordingMetadata, problems: list[str]
) -> list[Stream | None]:
    """Metadata stream per m-line: by label, then by position (see module docstring)."""
    # The latest declaration of a label wins: merged updates append the streams of a newer
    # document (BroadWorks redirect, Webex transfer: same label, new stream id and senders).
    by_label: dict[str, Stream] = {}
    for candidate in metadata.streams:
        if candidate.label is not None:
            by_label[candidate.label] = candidate
    claimed: set[int] = set()
    matched: list[Stream | None] = []
    for m in offer.media:
        stream: Stream | None = by_label.get(m.label) if m.label is not None else None
        if stream is not None and id(stream) in claimed:
            problems.append(f"label {m.label!r} is used by more than one m-line")
            stream = None
        if stream is not None:
            claimed.add(id(stream))
        matched.append(stream)

    by_position = len(offer.media) == len(metadata.streams)
    for index, m in enumerate(offer.media):
        if matched[index] is not None:
            continue
        positional = metadata.streams[index] if by_position else None
        if positional is not None and id(positional) not in claimed:
            claimed.add(id(positional))
            matched[index] = positional
            what = "has no a=label" if m.label is None else f"label {m.label!r} is not in metadata"
            problems.append(
                f"m-line {index} {what}; matched by position to metadata stream "
                f"labelled {positional.label!r}"
            )
        elif m.label is None:
            problems.append(f"m-line {index} has no a=label and cannot be matched to metadata")
        else:
            problems.append(f"m-line {index} label {m.label!r} has no metadata stream")

    for unclaimed in metadata.streams:
        superseded = unclaimed.label is not None and by_label[unclaimed.label] is not unclaimed
        if id(unclaimed) not in claimed and not superseded:
            problems.append(f"metadata stream labelled {unclaimed.label!r} has no m-line")
    return matched


def join(offer: SessionDescription, metadata: RecordingMetadata | None) -> RecordingView:
    """Map every m-line to its metadata stream and sending participant (never raises)."""
    if metadata is None:
        bare = [RecordedStream(i, m.label, None, None) for i, m in enumerate(offer.media)]
        return RecordingView(bare, [], ["no recording metadata: senders unknown"])

    problems = list(metadata.problems)
    matched = _match_streams(offer, metadata, problems)
    known_ids = {s.stream_id for s in metadata.streams}
    for participant in metadata.participants:
        for sent in participant.send:
            if sent not in known_ids:
                problems.append(
                    f"participant {participant.participant_id!r} sends unknown stream {sent!r}"
                )

    streams: list[RecordedStream] = []
    for index, (m, stream) in enumerate(zip(offer.media, matched, strict=True)):
        if stream is None:
            streams.append(RecordedStream(index, m.label, None, None))
            continue
        sid = stream.stream_id or None
        if sid is None:
            problems.append(f"metadata stream labelled {stream.label!r} has an empty stream id")
        senders = [p.participant_id for p in metadata.participants if sid and sid in p.send]
        streams.append(
            RecordedStream(index, m.label, sid, senders[0] if senders else None, senders)
        )

    _infer_single_sender(streams, metadata.participants, matched, problems)
    for recorded in streams:
        if matched[recorded.index] is not None and recorded.participant_id is None:
            problems.append(
                f"no participant is known to send m-line {recorded.index} "
                f"(label {recorded.label!r})"
            )
    return RecordingView(streams, list(metadata.participants), problems)


def _infer_single_sender(
    streams: list[RecordedStream],
    participants: list[Participant],
    matched: list[Stream | None],
    problems: list[str],
) -> None:
    orphans = [s for s in streams if matched[s.index] is not None and s.participant_id is None]
    silent = [p for p in participants if not p.send]
    if len(orphans) == 1 and len(silent) == 1:
        orphan, participant = orphans[0], silent[0]
        orphan.participant_id = participant.participant_id
        orphan.senders = [participant.participant_id]
        problems.append(
            f"sender of m-line {orphan.index} (label {orphan.label!r}) inferred: "
            f"{participant.participant_id!r} is the only participant sending nothing"
        )


def _has_src_tag(contact: str) -> bool:
    """``+sip.src`` (RFC 7866 §6.1.1) or draft ``src``, outside or inside ``<>`` (QUIRKS #2)."""
    for param in contact.lower().split(";")[1:]:
        name = param.split("=", 1)[0].strip(" \t<>\"',")
        if name in ("+sip.src", "src"):
            return True
    return False


def is_siprec_request(headers_get: Callable[[str], str | None], body: RecordingBody) -> bool:
    """Is this INVITE a recording session (RFC 7866 §6.1)?

    Any of: ``Require`` containing ``siprec`` (also the ``100relsiprec`` typo, QUIRKS #3);
    a Contact with the SRC feature tag; a metadata part in the body. ``Require`` alone is not
    enough as a test: BroadWorks and old Cisco IOS omit it (QUIRKS #1). ``headers_get`` returns
    the (comma-joined) value of a header, case-insensitively, or ``None``.
    """
    if body.metadata is not None:
        return True
    require = headers_get("Require") or ""
    if "siprec" in require.lower():
        return True
    return _has_src_tag(headers_get("Contact") or "")
