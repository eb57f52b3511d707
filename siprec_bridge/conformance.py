"""Vendor conformance harness: replay captured SIPREC messages through the real SRS core.

``siprec-bridge conformance DIR`` (or :func:`run_folder`) reads every message file of a folder
and plays it, sans-I/O, through the real SIP parser and user agent
(:meth:`~siprec_bridge.sip.ua.UserAgent.receive`) and the real
:class:`~siprec_bridge.srs.SessionRecordingServer` with a fake port binder and a fake clock.
Nothing is sent on the network. For every file it reports what the SRS answered (RFC 7866 §6,
RFC 3261 §21) and what it would record: m-lines, recorded stream labels, participants and the
label each one sends (RFC 7865 §6.4/§6.11), the metadata dialect, the problems the SRS reports
and the session changes (pause/resume, streams added/removed, participant changes).

Files (searched recursively, sorted by path; at most :data:`MAX_FILE_SIZE` bytes each):

- ``*.sip`` and ``*.txt`` holding a whole SIP message (request or response);
- ``*.txt`` holding only a body (the drachtio test data): wrapped in a minimal INVITE envelope
  whose ``Content-Type`` comes from the body: ``multipart/mixed`` with the boundary of the
  first ``--`` line, else ``application/sdp``. The envelope has no ``Require: siprec``;
- ``*.xml``, and any file starting with ``<``: a bare RFC 7865 metadata document, parsed on its
  own (no SIP).

Messages that belong to one dialog are played in order through one user agent: files named
``<name>.<nn>.<METHOD>.sip`` (MiaRec's rendered SIPp sequences) by ``nn``, other files by
Call-ID (requests without a To tag first, then by CSeq). Captured sequences were sent to
another SRS, so the harness rewrites what only that SRS could know, and says so in the
result's ``notes``: the To tag of in-dialog requests becomes ours (a *missing* To tag is
noted), a CSeq method that does not match the request and a CSeq not above the dialog's are
fixed (noted), a Via branch reused within the sequence is replaced (rendering artefact, not
noted), and every 2xx to an INVITE is acknowledged — with an SDP answer when our 2xx carried
an offer (delayed offer, RFC 3264 §5; noted) — unless the folder holds the ACK. Files stored
with bare LF line ends are converted to CRLF first (noted).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

import sdp

from .sip.errors import SipParseError
from .sip.events import Event, InviteReceived, MalformedMessage
from .sip.message import SipRequest, SipResponse, parse_message
from .sip.transaction import Source, TransportName
from .sip.ua import DialogId, UserAgent
from .siprec.metadata import MetadataError, RecordingMetadata, parse_metadata
from .srs import (
    RecordingSession,
    Reject,
    SessionEnded,
    SessionRecordingServer,
    SessionRejected,
    SessionStarted,
    SessionUpdated,
    SrsEvent,
    offer_of,
    view_of,
)

#: Files larger than this are reported as unreadable, not loaded.
MAX_FILE_SIZE: Final = 1024 * 1024
#: Address and SIP port of the simulated SRS (RFC 5737 documentation address).
SRS_HOST: Final = "192.0.2.10"
SRS_PORT: Final = 5060
#: Signalling source used when a message's top Via does not name an IP address.
DEFAULT_SOURCE: Final = ("198.51.100.20", 5060)
#: First local RTP port handed out by the fake port binder.
FIRST_PORT: Final = 40000

MESSAGE_SUFFIXES: Final = frozenset({".sip", ".txt"})
METADATA_SUFFIXES: Final = frozenset({".xml"})

_SEQUENCE_NAME = re.compile(r"(?P<stem>.+)\.(?P<seq>\d{1,4})\.(?P<method>[A-Za-z]+)\.(?:sip|txt)")
_REQUEST_LINE = re.compile(rb"([A-Za-z]+) \S+ SIP/2\.0\s*$")
_STATUS_LINE = re.compile(rb"SIP/2\.0 ([1-6][0-9][0-9])\b")
_BLANK = re.compile(rb"\r?\n\r?\n")
_TAG = re.compile(r";\s*tag\s*=\s*([^;>\s,]+)", re.IGNORECASE)
_BRANCH = re.compile(r"(;\s*branch\s*=\s*)([^;\s,]+)", re.IGNORECASE)
_COMPACT = {"i": "call-id", "t": "to", "f": "from", "v": "via", "c": "content-type"}
_VIA_ADDRESS = re.compile(r"SIP/2\.0/(\w+)\s+([0-9.]+|\[[0-9a-fA-F:.]+\])(?::(\d{1,5}))?")
_TRANSPORTS: Final[dict[str, TransportName]] = {"udp": "udp", "tcp": "tcp", "tls": "tls"}
_METHOD_ORDER = {"INVITE": 0, "UPDATE": 0, "INFO": 0, "ACK": 1, "BYE": 2, "CANCEL": 2}


class SequentialPorts:
    """A fake :class:`~siprec_bridge.srs.PortBinder`: even ports upwards from ``first``."""

    def __init__(self, first: int = FIRST_PORT) -> None:
        self._next = first
        self.open: set[int] = set()

    def bind(self, count: int) -> list[int]:
        ports = [self._next + 2 * i for i in range(count)]
        self._next += 2 * count
        self.open.update(ports)
        return ports

    def release(self, ports: Sequence[int]) -> None:
        self.open.difference_update(ports)


@dataclass(slots=True)
class ParticipantRow:
    """A participant of the recorded call and the labels it sends on (RFC 7865 §6.4, §6.11)."""

    participant_id: str
    aor: str | None
    name: str | None
    sends: list[str] = field(default_factory=list)


@dataclass(slots=True)
class FileResult:
    """What the SRS did with one file, and the session state right after it.

    ``method``: request method, ``"response"``, ``"metadata"`` (bare XML) or ``"?"``
    (unreadable). ``status``/``warning``: our final response and its Warning text (``None``
    for ACKs, responses and bare metadata). ``m_lines``: m-lines in the file's SDP (``None``
    without SDP). ``recorded``: labels of the recorded streams in m-line order; ``paused``:
    those of them paused; ``codecs``/``remotes``: label → codec and the SRC's media address
    (``host:port``); ``senders``: label → AoR (else participant id, else ``None``) of the
    participant sending it. ``changes``: session events (``started``, ``paused:1``,
    ``ended:bye``...). ``notes``: what the harness did to the file (see the module docstring).
    """

    file: str
    method: str
    dialog: str
    status: int | None = None
    warning: str | None = None
    m_lines: int | None = None
    recorded: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    codecs: dict[str, str] = field(default_factory=dict)
    remotes: dict[str, str] = field(default_factory=dict)
    senders: dict[str, str | None] = field(default_factory=dict)
    participants: list[ParticipantRow] = field(default_factory=list)
    dialect: str | None = None
    siprec: bool | None = None
    problems: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    correlation: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def rejected(self) -> bool:
        return self.status is not None and self.status >= 300


# -- loading ----------------------------------------------------------------------------------
@dataclass(slots=True)
class _Head:
    """Start line and the few headers the harness needs, read leniently (no validation)."""

    method: str | None = None
    status: int | None = None
    call_id: str | None = None
    from_tag: str | None = None
    to_tag: str | None = None
    cseq: int | None = None
    via: str | None = None


@dataclass(slots=True)
class _Item:
    rel: str
    kind: str  # "message", "metadata" or "unreadable"
    data: bytes = b""
    head: _Head = field(default_factory=_Head)
    notes: list[str] = field(default_factory=list)
    sequence: tuple[str, int] | None = None


def _split(data: bytes) -> tuple[bytes, bytes, bytes]:
    """Head, separator and body of a message (the separator is the blank line)."""
    match = _BLANK.search(data)
    if match is None:
        return data, b"", b""
    return data[: match.start()], data[match.start() : match.end()], data[match.end() :]


def _header_name(line: str) -> str | None:
    name, colon, _ = line.partition(":")
    if not colon or not name.strip() or " " in name.strip():
        return None
    lower = name.strip().lower()
    return _COMPACT.get(lower, lower)


def _peek(data: bytes) -> _Head:
    head_bytes, _, _ = _split(data.lstrip(b"\r\n"))
    lines = head_bytes.decode("utf-8", "replace").splitlines()
    head = _Head()
    if not lines:
        return head
    first = lines[0].encode()
    request = _REQUEST_LINE.match(first)
    status = _STATUS_LINE.match(first)
    if request:
        head.method = request.group(1).decode().upper()
    elif status:
        head.status = int(status.group(1))
    for line in lines[1:]:
        name = _header_name(line)
        value = line.partition(":")[2].strip()
        if name == "call-id" and head.call_id is None:
            head.call_id = value
        elif name in ("to", "from"):
            tag = _TAG.search(value[value.rfind(">") :] if ">" in value else value)
            setattr(head, f"{name}_tag", tag.group(1) if tag else None)
        elif name == "cseq" and value.split()[:1] and value.split()[0].isdigit():
            head.cseq = int(value.split()[0])
        elif name == "via" and head.via is None:
            head.via = value
    return head


def _wrap_body(body: bytes, index: int) -> bytes:
    """A minimal INVITE around a bare body (drachtio test data); Content-Type from the body."""
    first = next((line for line in body.splitlines() if line.startswith(b"--")), None)
    if first is not None:
        boundary = first[2:].strip().decode("utf-8", "replace")
        content_type = f"multipart/mixed;boundary={boundary}"
    else:
        content_type = "application/sdp"
    host, port = DEFAULT_SOURCE
    lines = [
        f"INVITE sip:srs@{SRS_HOST}:{SRS_PORT} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-conformance-{index};rport",
        "Max-Forwards: 70",
        f"From: <sip:src@{host}>;tag=conformance-{index}",
        f"To: <sip:srs@{SRS_HOST}>",
        f"Call-ID: conformance-{index}@{host}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:src@{host}:{port}>",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
    ]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


def _load(path: Path, rel: str, index: int) -> _Item:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_SIZE:
            return _Item(rel, "unreadable", notes=[f"{size} bytes: larger than {MAX_FILE_SIZE}"])
        data = path.read_bytes()
    except OSError as exc:
        return _Item(rel, "unreadable", notes=[f"cannot read: {exc.strerror or exc}"])
    stripped = data.lstrip(b"\r\n")
    if path.suffix.lower() in METADATA_SUFFIXES or stripped.lstrip().startswith(b"<"):
        return _Item(rel, "metadata", data)
    item = _Item(rel, "message", data)
    if _REQUEST_LINE.match(stripped.split(b"\n", 1)[0]) or _STATUS_LINE.match(stripped):
        if b"\r\n" not in data and b"\n" in data:
            item.data = data.replace(b"\n", b"\r\n")
            item.notes.append("stored with LF line ends: converted to CRLF")
    else:
        item.data = _wrap_body(data, index)
        item.notes.append("body only: wrapped in a minimal INVITE")
    item.head = _peek(item.data)
    match = _SEQUENCE_NAME.fullmatch(path.name)
    if match:
        stem = str(Path(rel).parent / match.group("stem"))
        item.sequence = (stem, int(match.group("seq")))
    return item


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    suffixes = MESSAGE_SUFFIXES | METADATA_SUFFIXES
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def _groups(items: list[_Item]) -> list[tuple[str, list[_Item]]]:
    """Dialog sequences in file order: numbered sequences, then same Call-ID, else alone."""
    groups: dict[str, list[_Item]] = {}
    for item in items:
        if item.kind != "message":
            key = f"file:{item.rel}"
        elif item.sequence is not None:
            key = f"seq:{item.sequence[0]}"
        elif item.head.call_id:
            key = f"call:{Path(item.rel).parent}/{item.head.call_id}"
        else:
            key = f"file:{item.rel}"
        groups.setdefault(key, []).append(item)
    ordered: list[tuple[str, list[_Item]]] = []
    for key, members in groups.items():
        if key.startswith("seq:"):
            members.sort(key=lambda i: i.sequence[1] if i.sequence else 0)
        elif key.startswith("call:"):
            members.sort(
                key=lambda i: (
                    i.head.to_tag is not None,
                    i.head.cseq or 0,
                    _METHOD_ORDER.get(i.head.method or "", 3),
                    i.rel,
                )
            )
        name = key.partition(":")[2]
        ordered.append((name, members))
    return ordered


# -- playing a dialog -------------------------------------------------------------------------
def _set_header(head: str, name: str, value: str) -> str:
    """Replace the first header ``name`` (or its compact form) in ``head``."""
    lines = head.split("\r\n")
    for index, line in enumerate(lines[1:], start=1):
        if _header_name(line) == name:
            lines[index] = f"{line.partition(':')[0]}: {value}"
            break
    return "\r\n".join(lines)


def _header_value(head: str, name: str) -> str | None:
    for line in head.split("\r\n")[1:]:
        if _header_name(line) == name:
            return line.partition(":")[2].strip()
    return None


def _source_of(head: _Head) -> Source:
    """The signalling source: the top Via's sent-by when it is an address, else a default."""
    match = _VIA_ADDRESS.match(head.via or "")
    transport = _TRANSPORTS.get(match.group(1).lower()) if match else None
    if match is None or transport is None:
        return Source("udp", DEFAULT_SOURCE)
    address = (match.group(2).strip("[]"), int(match.group(3) or 5060))
    return Source(transport, address, None if transport == "udp" else 1)


def _answer_for(offer: bytes, source: Source) -> bytes:
    """The SDP answer an SRC would put in its ACK to our offer: PCMU, sendonly, labels kept."""
    ours = sdp.parse(offer)
    host = source.addr[0]
    addrtype = "IP6" if ":" in host else "IP4"
    lines = ["v=0", f"o=src 1 1 IN {addrtype} {host}", "s=-", f"c=IN {addrtype} {host}", "t=0 0"]
    for index, m in enumerate(ours.media):
        lines += [
            f"m=audio {30000 + 2 * index} RTP/AVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=sendonly",
        ]
        if m.label is not None:
            lines.append(f"a=label:{m.label}")
    return ("\r\n".join(lines) + "\r\n").encode()


class _Player:
    """One fresh UA + SRS playing one dialog sequence (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ua = UserAgent(local_host=SRS_HOST, local_port=SRS_PORT)
        self.ids = itertools.count(1)
        self.srs = SessionRecordingServer(
            self.ua,
            SequentialPorts(),
            media_host=SRS_HOST,
            session_ids=lambda: f"session-{next(self.ids)}",
            rng=random.Random(0),
        )
        self.now = 1000.0
        self.dialog_id: DialogId | None = None
        self.session: RecordingSession | None = None
        self.remote_cseq = 0
        self.branches: set[str] = set()
        self.branch_ids = itertools.count(1)

    def play(self, items: list[_Item]) -> list[FileResult]:
        results: list[FileResult] = []
        for position, item in enumerate(items):
            following = items[position + 1] if position + 1 < len(items) else None
            if item.kind == "metadata":
                results.append(_metadata_result(item, self.name))
            elif item.kind == "unreadable":
                results.append(FileResult(item.rel, "?", self.name, notes=list(item.notes)))
            else:
                next_is_ack = following is not None and following.head.method == "ACK"
                results.append(self._message(item, acked_by_next=next_is_ack))
        return results

    # -- one message
    def _message(self, item: _Item, *, acked_by_next: bool) -> FileResult:
        head = item.head
        method = head.method or ("response" if head.status is not None else "?")
        result = FileResult(item.rel, method, self.name, notes=list(item.notes))
        data = self._rewrite(item, result) if head.method else item.data
        source = _source_of(head)
        previous = self.session
        problems_before = len(previous.problems) if previous else 0
        self.now += 1.0
        self.ua.handle_timer(self.now)
        self.ua.receive(data, source, self.now)
        events = self.ua.events()
        self._note_events(events, result)
        srs_events = self.srs.handle(events, self.now)
        responses = self._responses()
        final = self._final(responses, data)
        if final is not None:
            result.status = final.status
            result.warning = _warning_text(final.headers.get("Warning"))
        self._apply(srs_events, result)
        if head.status is not None:
            result.notes.append("a response: a UAS ignores it")
        accepted_invite = final is not None and method == "INVITE" and 200 <= final.status < 300
        if final is not None and accepted_invite and not acked_by_next:
            self._ack(final, source, result)
        if self.session is not previous:
            problems_before = 0  # a new session: all of its problems are this file's
        self._describe(data, result, problems_before)
        return result

    def _rewrite(self, item: _Item, result: FileResult) -> bytes:
        """Fit an in-dialog request to our dialog; reuse-free Via branches (module docstring)."""
        head_bytes, separator, body = _split(item.data)
        head = head_bytes.decode("utf-8", "surrogateescape")
        method = item.head.method or ""
        in_dialog = self.dialog_id is not None and (
            item.head.to_tag is not None or method != "INVITE"
        )
        if in_dialog and self.dialog_id is not None:
            to = _header_value(head, "to") or ""
            if item.head.to_tag is None:
                result.notes.append("added the missing To tag")
                head = _set_header(head, "to", f"{to};tag={self.dialog_id.local_tag}")
            elif item.head.to_tag != self.dialog_id.local_tag:
                head = _set_header(head, "to", _TAG.sub(f";tag={self.dialog_id.local_tag}", to))
            cseq = _header_value(head, "cseq") or ""
            parts = cseq.split()
            number = int(parts[0]) if parts and parts[0].isdigit() else None
            if len(parts) == 2 and parts[1] != method:
                result.notes.append(f"CSeq method {parts[1]} changed to {method}")
            if method != "ACK" and (number is None or number <= self.remote_cseq):
                result.notes.append(f"CSeq {number} raised to {self.remote_cseq + 1}")
                number = self.remote_cseq + 1
            if number is not None:
                head = _set_header(head, "cseq", f"{number} {method}")
        via = _header_value(head, "via") or ""
        branch = _BRANCH.search(via)
        if branch is not None:
            if branch.group(2) in self.branches:
                fresh = f"z9hG4bK-conformance-{next(self.branch_ids)}"
                head = _set_header(head, "via", _BRANCH.sub(rf"\g<1>{fresh}", via, count=1))
            else:
                self.branches.add(branch.group(2))
        if method != "ACK" and item.head.cseq is not None:
            cseq_now = (_header_value(head, "cseq") or "").split()
            if cseq_now and cseq_now[0].isdigit():
                self.remote_cseq = max(self.remote_cseq, int(cseq_now[0]))
        return head.encode("utf-8", "surrogateescape") + separator + body

    def _note_events(self, events: Sequence[Event], result: FileResult) -> None:
        for event in events:
            if isinstance(event, InviteReceived) and not event.is_reinvite:
                self.dialog_id = event.dialog_id
            elif isinstance(event, MalformedMessage):
                result.problems.append(f"malformed: {event.error}")

    def _responses(self) -> list[SipResponse]:
        out: list[SipResponse] = []
        for outgoing in self.ua.data_to_send():
            try:
                message = parse_message(outgoing.data)
            except SipParseError:
                continue
            if isinstance(message, SipResponse):
                out.append(message)
        return out

    @staticmethod
    def _final(responses: list[SipResponse], data: bytes) -> SipResponse | None:
        """Our final response to the request in ``data`` (matched by CSeq)."""
        cseq = _header_value(_split(data)[0].decode("utf-8", "replace"), "cseq")
        finals = [r for r in responses if r.status >= 200]
        for response in finals:
            if cseq is not None and response.headers.get("CSeq") == cseq:
                return response
        return finals[-1] if finals else None

    def _apply(self, events: Sequence[SrsEvent], result: FileResult) -> None:
        for event in events:
            if isinstance(event, SessionStarted):
                self.session = event.session
                result.changes.append("started")
            elif isinstance(event, SessionUpdated):
                self.session = event.session
                result.changes.extend(_update_changes(event))
            elif isinstance(event, SessionEnded):
                self.session = event.session
                result.changes.append(f"ended:{event.reason}")
            elif isinstance(event, SessionRejected):
                result.changes.append("rejected")
        if self.session is None and self.dialog_id is not None:
            self.session = self.srs.sessions.get(self.dialog_id)

    def _ack(self, final: SipResponse, source: Source, result: FileResult) -> None:
        """ACK our 2xx (RFC 3261 §13.2.2.4); carry an answer when the 2xx was an offer."""
        body = b""
        session = self.session
        if session is not None and session.awaiting_answer:
            body = _answer_for(final.body, source)
            result.notes.append("ACK with an SDP answer synthesized (PCMU, sendonly)")
        number = (final.headers.get("CSeq") or "0").split()[0]
        host, port = source.addr
        lines = [
            f"ACK sip:{SRS_HOST}:{SRS_PORT} SIP/2.0",
            f"Via: SIP/2.0/{source.transport.upper()} {host}:{port};"
            f"branch=z9hG4bK-conformance-ack-{next(self.branch_ids)}",
            "Max-Forwards: 70",
            f"From: {final.headers.get('From')}",
            f"To: {final.headers.get('To')}",
            f"Call-ID: {final.headers.get('Call-ID')}",
            f"CSeq: {number} ACK",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        self.now += 0.1
        self.ua.receive("\r\n".join(lines).encode() + b"\r\n\r\n" + body, source, self.now)
        srs_events = self.srs.handle(self.ua.events(), self.now)
        self.ua.data_to_send()
        self._apply(srs_events, result)

    def _describe(self, data: bytes, result: FileResult, before: int) -> None:
        """m-lines of the file's SDP; session state and the problems it added."""
        try:
            request = parse_message(data)
        except SipParseError:
            request = None
        if isinstance(request, SipRequest) and request.body:
            try:
                _, offer = offer_of(request)
            except Reject:
                offer = None
            result.m_lines = len(offer.media) if offer is not None else None
        session = self.session
        if session is None:
            return
        _fill_session(result, session)
        result.problems.extend(session.problems[before:])
        if any(change.startswith("ended:") for change in result.changes):
            self.session = None  # later requests of the sequence find no session


def _fill_session(result: FileResult, session: RecordingSession) -> None:
    legs = sorted(session.legs.values(), key=lambda leg: leg.index)
    aor = {p.participant_id: p.aor or p.participant_id for p in session.participants}
    result.recorded = [leg.label for leg in legs]
    result.paused = [leg.label for leg in legs if leg.paused]
    result.codecs = {leg.label: leg.codec for leg in legs}
    result.remotes = {
        leg.label: _hostport(leg.stream.remote_address, leg.stream.remote_port) for leg in legs
    }
    result.senders = {
        leg.label: aor.get(leg.participant_id, leg.participant_id) if leg.participant_id else None
        for leg in legs
    }
    view = view_of(session)
    sends: dict[str, list[str]] = {}
    for stream in view.streams if view is not None else []:
        label = stream.label if stream.label is not None else str(stream.index)
        for sender in stream.senders or ([stream.participant_id] if stream.participant_id else []):
            sends.setdefault(sender, []).append(label)
    result.participants = [
        ParticipantRow(p.participant_id, p.aor, p.name, sends.get(p.participant_id, []))
        for p in session.participants
    ]
    result.dialect = session.metadata.dialect if session.metadata else None
    result.siprec = session.siprec
    result.correlation = dict(session.correlation)


def _hostport(host: str | None, port: int) -> str:
    if host is None:
        return f"?:{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _update_changes(event: SessionUpdated) -> list[str]:
    changes = [
        f"{kind}:{','.join(leg.label for leg in legs)}"
        for kind, legs in (
            ("added", event.added),
            ("removed", event.removed),
            ("changed", event.changed),
            ("moved", event.moved),
            ("paused", event.paused),
            ("resumed", event.resumed),
        )
        if legs
    ]
    if event.participants_changed:
        changes.append("participants")
    return changes


def _warning_text(value: str | None) -> str | None:
    """The text of a ``Warning: 399 agent "text"`` header (RFC 3261 §20.43)."""
    if value is None:
        return None
    match = re.search(r'"((?:[^"\\]|\\.)*)"', value)
    return match.group(1).replace('\\"', '"').replace("\\\\", "\\") if match else value


def _metadata_result(item: _Item, dialog: str) -> FileResult:
    result = FileResult(item.rel, "metadata", dialog, notes=list(item.notes))
    try:
        metadata: RecordingMetadata = parse_metadata(item.data)
    except MetadataError as exc:
        result.problems.append(f"unparseable metadata: {exc}")
        return result
    result.dialect = metadata.dialect
    result.problems.extend(metadata.problems)
    labels: dict[str, str] = {s.stream_id: s.label for s in metadata.streams if s.label}
    for p in metadata.participants:
        sent = [labels[s] for s in p.send if s in labels]
        result.participants.append(ParticipantRow(p.participant_id, p.aor, p.name, sent))
        for label in sent:
            result.senders.setdefault(label, p.aor or p.participant_id)
    return result


# -- entry points -----------------------------------------------------------------------------
def run_folder(path: Path | str) -> list[FileResult]:
    """Play every message file under ``path`` (a folder, or one file); one result per file.

    Raises ``FileNotFoundError`` when ``path`` does not exist. Never raises for file content.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no such file or folder: {root}")
    base = root.parent if root.is_file() else root
    items = [
        _load(p, p.relative_to(base).as_posix(), index)
        for index, p in enumerate(_files(root), start=1)
    ]
    by_file: dict[str, FileResult] = {}
    for name, members in _groups(items):
        for result in _Player(name).play(members):
            by_file[result.file] = result
    return [by_file[item.rel] for item in items]


def _rows(results: Sequence[FileResult]) -> Iterator[list[str]]:
    yield ["FILE", "METHOD", "STATUS", "M", "RECORDED", "SENDERS", "DIALECT", "CHANGES"]
    for r in results:
        senders = " ".join(f"{label}={aor or '?'}" for label, aor in r.senders.items())
        recorded = ",".join(f"{label}(p)" if label in r.paused else label for label in r.recorded)
        yield [
            r.file,
            r.method,
            "-" if r.status is None else str(r.status),
            "-" if r.m_lines is None else str(r.m_lines),
            recorded or "-",
            senders or "-",
            r.dialect or "-",
            " ".join(r.changes) or "-",
        ]


def format_table(results: Sequence[FileResult], *, details: bool = True) -> str:
    """A plain-text table, one row per file; with ``details`` the Warning, participants,
    problems (``!``) and harness notes (``~``) follow each row, indented."""
    rows = list(_rows(results))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines: list[str] = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
        if not details or index == 0:
            continue
        r = results[index - 1]
        if r.warning:
            lines.append(f"    warning: {r.warning}")
        if r.codecs:
            streams = "; ".join(
                f"{label} {codec} from {r.remotes.get(label, '?')}"
                for label, codec in r.codecs.items()
            )
            lines.append(f"    streams: {streams}")
        if r.participants:
            people = "; ".join(
                f"{p.aor or p.participant_id}"
                + (f' "{p.name}"' if p.name else "")
                + (f" sends {','.join(p.sends)}" if p.sends else "")
                for p in r.participants
            )
            lines.append(f"    participants: {people}")
        lines.extend(f"    ! {problem}" for problem in r.problems)
        lines.extend(f"    ~ {note}" for note in r.notes)
    requests = [r for r in results if r.status is not None]
    accepted = sum(r.accepted for r in requests)
    lines.append(
        f"{len(results)} file{'' if len(results) == 1 else 's'}, {len(requests)} answered: "
        f"{accepted} accepted, "
        f"{len(requests) - accepted} rejected"
    )
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``siprec-bridge conformance``."""
    parser.add_argument(
        "folder", type=Path, metavar="DIR", help="folder (or file) of captured SIP messages"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--brief", action="store_true", help="table rows only, without details under each row"
    )


def main_from_args(args: argparse.Namespace) -> int:
    """Print the conformance table (or JSON) for ``args.folder``.

    Returns 0 when every request got a 2xx, 1 when some were rejected, 2 when the folder
    does not exist.
    """
    try:
        results = run_folder(args.folder)
    except FileNotFoundError as exc:
        print(f"siprec-bridge conformance: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=1))
    else:
        sys.stdout.write(format_table(results, details=not args.brief))
    return 1 if any(r.rejected for r in results) else 0
