"""SessionRecordingServer lifecycle: a real UserAgent + SRS fed SIP bytes, fake ports and clock."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

import sdp
from rtp.errors import PortsExhausted
from siprec_bridge.admission import Admission
from siprec_bridge.sip.message import SipRequest, SipResponse, parse_message
from siprec_bridge.sip.transaction import Source
from siprec_bridge.sip.ua import UserAgent
from siprec_bridge.srs import (
    RecordingSession,
    SessionEnded,
    SessionRecordingServer,
    SessionRejected,
    SessionStarted,
    SessionUpdated,
    SrsEvent,
    view_of,
)

SRS_HOST = "192.0.2.10"
SRC_HOST = "198.51.100.20"
SRC = Source("udp", (SRC_HOST, 5060))
BOUNDARY = "unique-boundary-1"


class FakePorts:
    """PortBinder: even ports from 40000, at most ``limit`` open at once."""

    def __init__(self, limit: int = 100) -> None:
        self.limit = limit
        self.open: set[int] = set()
        self._next = 40000

    def bind(self, count: int) -> list[int]:
        if len(self.open) + count > self.limit:
            raise PortsExhausted("no ports left")
        ports = list(range(self._next, self._next + 2 * count, 2))
        self._next += 2 * count
        self.open.update(ports)
        return ports

    def release(self, ports: Sequence[int]) -> None:
        self.open.difference_update(ports)


# -- message builders --------------------------------------------------------------------------
def media(
    label: str | None,
    port: int = 16000,
    *,
    codecs: str = "0 101",
    direction: str | None = "sendonly",
    c: str | None = None,
) -> str:
    names = {
        "0": "PCMU/8000",
        "8": "PCMA/8000",
        "9": "G722/8000",
        "18": "G729/8000",
        "101": "telephone-event/8000",
    }
    lines = [f"m=audio {port} RTP/AVP {codecs}"]
    if c is not None:
        lines.append(f"c=IN IP4 {c}")
    lines += [f"a=rtpmap:{pt} {names[pt]}" for pt in codecs.split()]
    if direction:
        lines.append(f"a={direction}")
    if label is not None:
        lines.append(f"a=label:{label}")
    return "\r\n".join(lines)


def sdp_body(*lines: str, c: str | None = SRC_HOST, version: int = 1) -> bytes:
    head = ["v=0", f"o=src 1 {version} IN IP4 {SRC_HOST}", "s=-"]
    if c is not None:
        head.append(f"c=IN IP4 {c}")
    head.append("t=0 0")
    return ("\r\n".join([*head, *lines]) + "\r\n").encode()


def metadata(
    participants: Sequence[tuple[str, str, Sequence[str]]],
    streams: Sequence[tuple[str, str]],
    extension: str = "",
) -> bytes:
    """RFC 7865 document: participants (id, aor, sent stream ids), streams (id, label)."""
    parts = [
        '<recording xmlns="urn:ietf:params:xml:ns:recording:1">',
        "<datamode>complete</datamode>",
    ]
    parts.append('<session session_id="s"><sipSessionID>x</sipSessionID></session>')
    for pid, aor, _ in participants:
        parts.append(f'<participant participant_id="{pid}"><nameID aor="{aor}"/></participant>')
    for sid, label in streams:
        parts.append(f'<stream stream_id="{sid}" session_id="s"><label>{label}</label></stream>')
    for pid, _, sends in participants:
        sent = "".join(f"<send>{sid}</send>" for sid in sends)
        parts.append(
            f'<participantstreamassoc participant_id="{pid}">{sent}</participantstreamassoc>'
        )
    parts.append(extension)
    parts.append("</recording>")
    return "".join(parts).encode()


def multipart(sdp_part: bytes, md: bytes) -> tuple[str, bytes]:
    body = (
        f"--{BOUNDARY}\r\nContent-Type: application/sdp\r\n\r\n".encode()
        + sdp_part
        + f"\r\n--{BOUNDARY}\r\nContent-Type: application/rs-metadata+xml\r\n"
        "Content-Disposition: recording-session\r\n\r\n".encode()
        + md
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return f"multipart/mixed;boundary={BOUNDARY}", body


ALICE_BOB = metadata(
    [("pa", "sip:alice@example.com", ["sa"]), ("pb", "sip:bob@example.net", ["sb"])],
    [("sa", "1"), ("sb", "2")],
)

_calls = itertools.count(1)


@dataclass
class Dialog:
    """The SRC side of one recording dialog: builds its requests."""

    call_id: str
    cseq: int = 0
    to_tag: str | None = None
    contact: str = f"<sip:sbc@{SRC_HOST}:5060>;+sip.src"

    def request(
        self,
        method: str,
        body: bytes = b"",
        content_type: str | None = None,
        extra: Sequence[str] = (),
        *,
        cseq: int | None = None,
    ) -> bytes:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        to = f"<sip:srs@{SRS_HOST}>" + (f";tag={self.to_tag}" if self.to_tag else "")
        lines = [
            f"{method} sip:srs@{SRS_HOST}:5060 SIP/2.0",
            f"Via: SIP/2.0/UDP {SRC_HOST}:5060;branch=z9hG4bK-{method.lower()}-{next(_calls)}",
            "Max-Forwards: 70",
            f"From: <sip:sbc@{SRC_HOST}>;tag=src-{self.call_id}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: {self.contact}",
            *extra,
        ]
        if content_type is not None:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


class Rig:
    """UA + SRS + fake ports + fake clock; helpers to play one SRC."""

    def __init__(self, *, max_calls: int | None = None, **kw: object) -> None:
        self.admission = Admission(max_calls=max_calls, active_calls=lambda: len(self.srs.sessions))
        self.ua = UserAgent(local_host=SRS_HOST, local_port=5060, screen=self.admission.screen)
        self.ports = FakePorts()
        ids = itertools.count(1)
        self.srs = SessionRecordingServer(
            self.ua,
            self.ports,
            media_host=SRS_HOST,
            session_ids=lambda: f"session-{next(ids)}",
            rng=random.Random(7),
            **kw,  # type: ignore[arg-type]
        )
        self.now = 100.0
        self.sent: list[SipRequest | SipResponse] = []
        self.answer = sdp.parse(b"v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\n")  # of the last reoffer()

    def send(self, data: bytes, source: Source = SRC) -> list[SrsEvent]:
        self.ua.receive(data, source, self.now)
        events = self.srs.handle(self.ua.events(), self.now)
        self.sent = [parse_message(o.data) for o in self.ua.data_to_send()]
        return events

    def advance(self, seconds: float) -> list[SrsEvent]:
        self.now += seconds
        self.ua.handle_timer(self.now)
        events = self.srs.handle(self.ua.events(), self.now)
        self.sent = [parse_message(o.data) for o in self.ua.data_to_send()]
        return events

    def final(self) -> SipResponse:
        finals = [m for m in self.sent if isinstance(m, SipResponse) and m.status >= 200]
        assert len(finals) == 1, self.sent
        return finals[0]

    def invite(
        self,
        body: bytes,
        content_type: str | None,
        extra: Sequence[str] = (),
        dialog: Dialog | None = None,
    ) -> tuple[Dialog, list[SrsEvent]]:
        dialog = dialog or Dialog(f"rec-{next(_calls)}@{SRC_HOST}")
        events = self.send(dialog.request("INVITE", body, content_type, extra))
        response = self.final()
        if response.status < 300:
            dialog.to_tag = response.to_tag
        return dialog, events

    def ack(self, dialog: Dialog, body: bytes = b"") -> list[SrsEvent]:
        content_type = "application/sdp" if body else None
        return self.send(dialog.request("ACK", body, content_type, cseq=dialog.cseq))

    def start(
        self, body: bytes | None = None, content_type: str | None = None, extra: Sequence[str] = ()
    ) -> tuple[Dialog, RecordingSession]:
        """Initial INVITE (default: two streams with ALICE_BOB metadata), 200, ACK."""
        if body is None:
            content_type, body = multipart(sdp_body(media("1"), media("2", 16002)), ALICE_BOB)
        dialog, events = self.invite(body, content_type, extra)
        assert self.final().status == 200
        self.ack(dialog)
        assert len(events) == 1 and isinstance(events[0], SessionStarted)
        return dialog, events[0].session

    def start_multipart(self, sdp_part: bytes, md: bytes) -> tuple[Dialog, RecordingSession]:
        content_type, body = multipart(sdp_part, md)
        return self.start(body, content_type)

    def reoffer(
        self, dialog: Dialog, body: bytes, content_type: str = "application/sdp"
    ) -> SessionUpdated | None:
        """re-INVITE with ``body``, 200 (its SDP kept in ``self.answer``), ACK."""
        events = self.send(dialog.request("INVITE", body, content_type))
        self.answer = answer_of(self.final())
        self.ack(dialog)
        assert len(events) <= 1
        if not events:
            return None
        assert isinstance(events[0], SessionUpdated)
        return events[0]


def answer_of(response: SipResponse) -> sdp.SessionDescription:
    assert response.headers.get("Content-Type") == "application/sdp"
    return sdp.parse(response.body)


def legs(session: RecordingSession) -> dict[str, tuple[int, str, bool]]:
    """label → (local port, codec, paused)."""
    return {leg.label: (leg.port, leg.codec, leg.paused) for leg in session.legs.values()}


# -- initial INVITE ----------------------------------------------------------------------------
def test_initial_invite_answers_recvonly_with_labels_and_reports_senders() -> None:
    rig = Rig()
    content_type, body = multipart(sdp_body(media("1"), media("2", 16002)), ALICE_BOB)
    dialog, events = rig.invite(body, content_type)
    answer = answer_of(rig.final())
    assert [m.label for m in answer.media] == ["1", "2"]
    assert [m.direction for m in answer.media] == ["recvonly", "recvonly"]
    assert answer.connection is not None and answer.connection.address == SRS_HOST
    assert [m.port for m in answer.media] == [40000, 40002]
    assert len(events) == 1 and isinstance(events[0], SessionStarted)
    session = events[0].session
    assert legs(session) == {"1": (40000, "PCMU", False), "2": (40002, "PCMU", False)}
    senders = {leg.label: leg.participant_id for leg in session.legs.values()}
    assert senders == {"1": "pa", "2": "pb"}
    assert [p.aor for p in session.participants] == ["sip:alice@example.com", "sip:bob@example.net"]
    assert session.siprec and session.problems == []
    assert dialog.to_tag is not None


def test_one_mixed_m_line_has_every_sender() -> None:
    md = metadata(
        [("pa", "sip:a@x", ["m"]), ("pb", "sip:b@x", ["m"])],
        [("m", "1")],
    )
    rig = Rig()
    _, session = rig.start_multipart(sdp_body(media("1")), md)
    assert list(legs(session)) == ["1"]
    assert session.legs["label:1"].participant_id == "pa"
    view = view_of(session)
    assert view is not None and view.streams[0].senders == ["pa", "pb"]


def test_three_and_more_m_lines_each_get_a_port() -> None:
    body = sdp_body(*(media(str(n), 16000 + 2 * n) for n in range(1, 5)))
    rig = Rig()
    _, session = rig.start(body, "application/sdp", ["Require: siprec"])
    assert legs(session) == {
        "1": (40000, "PCMU", False),
        "2": (40002, "PCMU", False),
        "3": (40004, "PCMU", False),
        "4": (40006, "PCMU", False),
    }


def test_initial_offer_inactive_is_answered_inactive_and_starts_paused() -> None:
    rig = Rig()
    body = sdp_body(media("1", direction="inactive"), media("2", 16002, direction="inactive"))
    dialog, events = rig.invite(body, "application/sdp", ["Require: siprec"])
    assert [m.direction for m in answer_of(rig.final()).media] == ["inactive", "inactive"]
    rig.ack(dialog)
    assert isinstance(events[0], SessionStarted)
    assert all(leg.paused for leg in events[0].session.legs.values())


@pytest.mark.parametrize("labels", [("0", "1"), ("16777227", "16777228"), ("a_leg", "b_leg")])
def test_labels_of_any_form_are_echoed(labels: tuple[str, str]) -> None:
    md = metadata(
        [("pa", "sip:a@x", ["sa"]), ("pb", "sip:b@x", ["sb"])],
        [("sa", labels[0]), ("sb", labels[1])],
    )
    rig = Rig()
    content_type, body = multipart(sdp_body(media(labels[0]), media(labels[1], 16002)), md)
    _, events = rig.invite(body, content_type)
    assert [m.label for m in answer_of(rig.final()).media] == list(labels)
    assert isinstance(events[0], SessionStarted)
    session = events[0].session
    assert {leg.label: leg.participant_id for leg in session.legs.values()} == {
        labels[0]: "pa",
        labels[1]: "pb",
    }


def test_label_mismatch_is_matched_by_position_and_reported() -> None:
    # BroadWorks 2016: a=label:5 in the SDP, <label>1</label> in the metadata (QUIRKS #23).
    md = metadata([("pa", "sip:a@x", ["sa"])], [("sa", "1")])
    rig = Rig()
    _, session = rig.start_multipart(sdp_body(media("5")), md)
    assert session.legs["label:5"].participant_id == "pa"
    assert any("label '5' is not in metadata" in p for p in session.problems)


def test_missing_connection_falls_back_to_the_signalling_source() -> None:
    rig = Rig()
    source = Source("udp", ("203.0.113.77", 5070))
    dialog = Dialog("no-c@203.0.113.77")
    body = sdp_body(media("1"), media("2", 16002), c=None)
    events = rig.send(
        dialog.request("INVITE", body, "application/sdp", ["Require: siprec"]), source
    )
    assert rig.final().status == 200
    assert isinstance(events[0], SessionStarted)
    assert {leg.stream.remote_address for leg in events[0].session.legs.values()} == {
        "203.0.113.77"
    }


def test_no_acceptable_audio_is_488_with_warning_and_no_ports() -> None:
    rig = Rig()
    _, events = rig.invite(sdp_body(media("1", codecs="18")), "application/sdp")
    response = rig.final()
    assert response.status == 488
    assert "no acceptable audio" in (response.headers.get("Warning") or "")
    assert isinstance(events[0], SessionRejected) and rig.ports.open == set()


# -- re-INVITE / UPDATE ------------------------------------------------------------------------
def test_reinvite_keeps_ports_per_label_and_reports_codec_change() -> None:
    rig = Rig()
    dialog, session = rig.start()
    # Streams swapped in order, label 2 now PCMA, label 1 on a new remote port.
    update = rig.reoffer(
        dialog, sdp_body(media("2", 16002, codecs="8 101"), media("1", 16010), version=2)
    )
    assert update is not None
    assert legs(session) == {"1": (40000, "PCMU", False), "2": (40002, "PCMA", False)}
    assert [(m.label, m.port) for m in rig.answer.media] == [("2", 40002), ("1", 40000)]
    assert [leg.label for leg in update.changed] == ["2"]  # new codec: a new decoder
    assert [leg.label for leg in update.moved] == ["1"]  # same codec from a new port
    assert update.added == update.removed == []
    assert rig.ports.open == {40000, 40002}


def test_reinvite_answer_uses_the_kept_ports() -> None:
    rig = Rig()
    dialog, _ = rig.start()
    rig.send(dialog.request("INVITE", sdp_body(media("2", 16002), media("1")), "application/sdp"))
    answer = answer_of(rig.final())
    assert [(m.label, m.port) for m in answer.media] == [("2", 40002), ("1", 40000)]
    assert answer.origin.sess_version == "2"  # RFC 3264 §8: version +1


def test_stream_added_then_removed_with_port_zero() -> None:
    rig = Rig()
    dialog, session = rig.start()
    added = rig.reoffer(dialog, sdp_body(media("1"), media("2", 16002), media("3", 16004)))
    assert added is not None and [leg.label for leg in added.added] == ["3"]
    assert legs(session)["3"] == (40004, "PCMU", False)
    removed = rig.reoffer(dialog, sdp_body(media("1"), media("2", 0), media("3", 16004)))
    assert removed is not None and [leg.label for leg in removed.removed] == ["2"]
    assert sorted(legs(session)) == ["1", "3"]
    assert rig.ports.open == {40000, 40004}
    assert [m.port for m in rig.answer.media] == [40000, 0, 40004]


@pytest.mark.parametrize(
    ("hold", "label"),
    [
        (
            sdp_body(media("1", direction="inactive"), media("2", 16002, direction="inactive")),
            "a=inactive",
        ),
        (
            sdp_body(media("1", direction=None), media("2", 16002, direction=None), c="0.0.0.0"),
            "c=0.0.0.0",
        ),
    ],
)
def test_pause_and_resume(hold: bytes, label: str) -> None:
    rig = Rig()
    dialog, session = rig.start()
    paused = rig.reoffer(dialog, hold)
    assert paused is not None and sorted(leg.label for leg in paused.paused) == ["1", "2"], label
    assert all(leg.paused for leg in session.legs.values())
    assert legs(session)["1"][0] == 40000  # ports are kept while paused
    resumed = rig.reoffer(dialog, sdp_body(media("1"), media("2", 16002)))
    assert resumed is not None and sorted(leg.label for leg in resumed.resumed) == ["1", "2"]
    assert not any(leg.paused for leg in session.legs.values())


def test_pause_of_one_m_line_only() -> None:
    rig = Rig()
    dialog, session = rig.start()
    update = rig.reoffer(dialog, sdp_body(media("1", direction="inactive"), media("2", 16002)))
    assert update is not None and [leg.label for leg in update.paused] == ["1"]
    assert legs(session)["2"][2] is False


def test_metadata_only_update_appends_participants_without_reindexing() -> None:
    rig = Rig()
    dialog, session = rig.start()
    newer = metadata(
        [("pc", "sip:carol@example.org", ["sb"]), ("pa", "sip:alice@new.example.com", ["sa"])],
        [("sa", "1"), ("sb", "2")],
    )
    events = rig.send(dialog.request("UPDATE", newer, "application/rs-metadata+xml"))
    response = rig.final()
    assert response.status == 200 and response.body == b""
    assert len(events) == 1 and isinstance(events[0], SessionUpdated)
    assert events[0].participants_changed
    assert [p.participant_id for p in session.participants] == ["pa", "pb", "pc"]
    assert session.participants[0].aor == "sip:alice@new.example.com"
    assert legs(session) == {"1": (40000, "PCMU", False), "2": (40002, "PCMU", False)}


def test_reinvite_with_metadata_changing_the_sender_is_a_participant_change() -> None:
    # A transfer: complete metadata re-declares label 2 with a new stream id and sender.
    rig = Rig()
    dialog, session = rig.start()
    newer = metadata(
        [("pa", "sip:alice@example.com", ["sa"]), ("pc", "sip:carol@example.org", ["sc"])],
        [("sa", "1"), ("sc", "2")],
    )
    content_type, body = multipart(sdp_body(media("1"), media("2", 16002)), newer)
    update = rig.reoffer(dialog, body, content_type)
    assert update is not None and update.participants_changed
    assert session.legs["label:2"].participant_id == "pc"
    assert [p.participant_id for p in session.participants] == ["pa", "pb", "pc"]


def test_metadata_in_bye_is_merged_into_the_ended_session() -> None:
    rig = Rig()
    dialog, _ = rig.start()
    final = metadata([("pd", "sip:dave@example.org", [])], [])
    events = rig.send(dialog.request("BYE", final, "application/rs-metadata+xml"))
    assert rig.final().status == 200
    assert len(events) == 1 and isinstance(events[0], SessionEnded)
    assert events[0].reason == "bye"
    assert [p.participant_id for p in events[0].session.participants] == ["pa", "pb", "pd"]
    assert rig.ports.open == set()


# -- delayed offer -----------------------------------------------------------------------------
def test_delayed_offer_offers_in_200_and_starts_on_the_ack_answer() -> None:
    rig = Rig()
    md = metadata(
        [("pa", "sip:a@x", ["sa"]), ("pb", "sip:b@x", ["sb"])], [("sa", "L1"), ("sb", "L2")]
    )
    body = (
        f"--{BOUNDARY}\r\nContent-Type: application/rs-metadata+xml\r\n\r\n".encode()
        + md
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    dialog, events = rig.invite(body, f"multipart/mixed;boundary={BOUNDARY}")
    assert events == []  # nothing to record before the answer
    offer = answer_of(rig.final())
    assert [(m.label, m.direction) for m in offer.media] == [("L1", "recvonly"), ("L2", "recvonly")]
    ports = [m.port for m in offer.media]
    answer = sdp_body(media("L1", 17000, codecs="8 101"), media("L2", 17002, codecs="8 101"))
    started = rig.ack(dialog, answer)
    assert len(started) == 1 and isinstance(started[0], SessionStarted)
    session = started[0].session
    assert legs(session) == {"L1": (ports[0], "PCMA", False), "L2": (ports[1], "PCMA", False)}
    assert {leg.label: leg.participant_id for leg in session.legs.values()} == {
        "L1": "pa",
        "L2": "pb",
    }


def test_cucm_delayed_offer_gets_one_m_line_and_a_label_less_answer_keeps_ours() -> None:
    # Cisco CUCM built-in bridge (QUIRKS #19, miarec cisco_bib_call_slave1.xml): not SIPREC, no
    # SDP; CUCM answers in the ACK with one m-line without a=label.
    rig = Rig()
    cucm = Dialog("1-4242@198.51.100.20", contact="<sip:4062@198.51.100.20:5060>;isFocus")
    guid = "Cisco-Guid: 0648881792-0000065536-0000001647-0185272330"
    dialog, events = rig.invite(b"", None, [guid], cucm)
    offer = answer_of(rig.final())
    assert events == [] and [m.label for m in offer.media] == ["1"]
    answer = (
        b"v=0\r\no=CiscoSystemsCCM-SIP 512196 1 IN IP4 198.51.100.20\r\ns=SIP Call\r\n"
        b"c=IN IP4 198.51.100.20\r\nb=TIAS:64000\r\nt=0 0\r\nm=audio 24580 RTP/AVP 0 101\r\n"
        b"a=ptime:20\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\na=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-15\r\n"
    )
    started = rig.ack(dialog, answer)
    assert isinstance(started[0], SessionStarted)
    session = started[0].session
    assert legs(session) == {"1": (offer.media[0].port, "PCMU", False)}
    assert session.correlation["cisco_guid"] == "0648881792-0000065536-0000001647-0185272330"
    assert not session.siprec


def test_offerless_reinvite_gets_our_offer_with_the_same_ports() -> None:
    rig = Rig()
    dialog, session = rig.start()
    events = rig.send(dialog.request("INVITE"))
    assert events == []
    offer = answer_of(rig.final())
    assert [(m.label, m.port, m.direction) for m in offer.media] == [
        ("1", 40000, "recvonly"),
        ("2", 40002, "recvonly"),
    ]
    updated = rig.ack(dialog, sdp_body(media("1", 16020), media("2", 16022)))
    assert legs(session) == {"1": (40000, "PCMU", False), "2": (40002, "PCMU", False)}
    assert rig.ports.open == {40000, 40002}
    assert len(updated) == 1 and isinstance(updated[0], SessionUpdated)
    assert sorted(leg.label for leg in updated[0].moved) == ["1", "2"]  # new remote ports


# -- session timers, limits, correlation -------------------------------------------------------
TIMER = ("Supported: timer", "Session-Expires: 120")


def test_session_expires_is_honoured_and_refreshes_keep_the_session() -> None:
    rig = Rig()
    content_type, body = multipart(sdp_body(media("1"), media("2", 16002)), ALICE_BOB)
    dialog, _ = rig.invite(body, content_type, TIMER)
    response = rig.final()
    assert response.headers.get("Session-Expires") == "120;refresher=uac"
    assert "timer" in (response.headers.get("Require") or "")
    rig.ack(dialog)
    assert rig.advance(60) == []
    rig.send(
        dialog.request("INVITE", sdp_body(media("1"), media("2", 16002)), "application/sdp", TIMER)
    )
    assert rig.final().status == 200
    rig.ack(dialog)
    assert rig.advance(60) == []  # 120 s after the start, 60 s after the refresh
    rig.send(dialog.request("UPDATE", extra=TIMER))  # refresh by UPDATE without a body
    assert rig.final().status == 200
    assert rig.advance(80) == []
    assert dialog.call_id in {d.call_id for d in rig.srs.sessions}


def test_no_refresh_ends_the_session_with_bye() -> None:
    rig = Rig()
    content_type, body = multipart(sdp_body(media("1"), media("2", 16002)), ALICE_BOB)
    dialog, _ = rig.invite(body, content_type, TIMER)
    rig.ack(dialog)
    assert rig.advance(80) == []
    events = rig.advance(10)  # RFC 4028 §10: expiry minus min(32 s, 120 / 3) = 88 s
    assert len(events) == 1 and isinstance(events[0], SessionEnded)
    assert events[0].reason == "timeout"
    byes = [m for m in rig.sent if isinstance(m, SipRequest) and m.method == "BYE"]
    assert len(byes) == 1 and byes[0].call_id == dialog.call_id
    assert rig.ports.open == set()


def test_session_interval_below_min_se_gets_422() -> None:
    rig = Rig()
    content_type, body = multipart(sdp_body(media("1")), ALICE_BOB)
    _, events = rig.invite(body, content_type, ("Supported: timer", "Session-Expires: 30"))
    response = rig.final()
    assert response.status == 422 and response.headers.get("Min-SE") == "90"
    assert events == [] and rig.srs.sessions == {} and rig.ports.open == set()


def test_max_calls_gives_503_with_retry_after_and_holds_nothing() -> None:
    rig = Rig(max_calls=1)
    rig.start()
    content_type, body = multipart(sdp_body(media("1"), media("2", 16002)), ALICE_BOB)
    _, events = rig.invite(body, content_type)
    response = rig.final()
    assert response.status == 503 and response.headers.get("Retry-After") is not None
    assert "too many calls" in (response.headers.get("Warning") or "")
    assert events == []  # refused by the admission screen before any transaction or port
    assert len(rig.srs.sessions) == 1 and rig.ports.open == {40000, 40002}


def test_port_exhaustion_gives_503() -> None:
    rig = Rig()
    rig.ports.limit = 1
    content_type, body = multipart(sdp_body(media("1"), media("2", 16002)), ALICE_BOB)
    rig.invite(body, content_type)
    response = rig.final()
    assert response.status == 503 and response.headers.get("Retry-After") is not None


def test_correlation_from_headers_user_to_user_and_metadata() -> None:
    rig = Rig()
    extra = (
        "Cisco-Guid: 0802710458-1959465449-2686421522-1015028268",
        "Session-ID: a62dd6d8be0059c38d142bae9b46880b;remote=00000000000000000000000000000000",
        "User-to-User: 00FA080019001A2B3C4D5E;encoding=hex",
        "X-Custom: yes",
    )
    _, session = rig.start(extra=extra)
    assert session.correlation["cisco_guid"] == "0802710458-1959465449-2686421522-1015028268"
    assert session.correlation["session_id"].startswith("a62dd6d8be0059c38d142bae9b46880b")
    assert session.correlation["ucid"] == "00FA080019001A2B3C4D5E"
    assert session.correlation["x:x-custom"] == "yes"

    acme = (
        '<extensiondata xmlns:apkt="http://acmepacket.com/siprec/extensiondata">'
        "<apkt:ucid>00FA08100A1B2C3D4E5F60;encoding=hex</apkt:ucid></extensiondata>"
    )
    md = metadata([("pa", "sip:a@x", ["sa"])], [("sa", "1")], acme)
    _, other = rig.start_multipart(sdp_body(media("1")), md)
    assert other.correlation["ucid"] == "00FA08100A1B2C3D4E5F60"


def test_group_id_links_the_sessions_of_a_transfer() -> None:
    # NetSapiens / Ribbon: a party change is a BYE plus a new recording session in the same
    # group (QUIRKS #39); consumers link them by group_id.
    def grouped(session_id: str, stream_id: str) -> bytes:
        return (
            '<recording xmlns="urn:ietf:params:xml:ns:recording:1">'
            '<group group_id="grp-7"/>'
            f'<session session_id="{session_id}"><group-ref>grp-7</group-ref></session>'
            '<participant participant_id="pa"><nameID aor="sip:a@x"/></participant>'
            f'<stream stream_id="{stream_id}" session_id="{session_id}"><label>1</label></stream>'
            f'<participantstreamassoc participant_id="pa"><send>{stream_id}</send>'
            "</participantstreamassoc></recording>"
        ).encode()

    rig = Rig()
    first, one = rig.start_multipart(sdp_body(media("1")), grouped("s1", "st1"))
    ended = rig.send(first.request("BYE"))
    assert isinstance(ended[0], SessionEnded)
    _, two = rig.start_multipart(sdp_body(media("1")), grouped("s2", "st1"))
    assert one.group_id == two.group_id == "grp-7"
    assert one.session_id != two.session_id
