"""UserAgent (sans-I/O UAS core) driven by a scripted SRC and a fake clock."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siprec_bridge.sip.dialog import DialogId
from siprec_bridge.sip.errors import LocalProtocolError, SipParseError
from siprec_bridge.sip.events import (
    AckReceived,
    ByeReceived,
    ByeResult,
    CancelReceived,
    DialogTerminated,
    Event,
    InfoReceived,
    InviteReceived,
    MalformedMessage,
    UpdateReceived,
)
from siprec_bridge.sip.message import (
    SipRequest,
    SipResponse,
    build_response,
    parse_message,
    parse_via,
)
from siprec_bridge.sip.transaction import Outgoing, Source
from siprec_bridge.sip.ua import UserAgent

SRC_ADDR = ("192.0.2.5", 5060)
UDP = Source("udp", SRC_ADDR)
SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n"

_branches = itertools.count(1)


@dataclass
class Src:
    """A scripted SRC: builds the requests an SBC would send in one call."""

    call_id: str = "call-1@192.0.2.5"
    from_tag: str = "src-tag"
    via_host: str = "192.0.2.5"
    via_port: int = 5060
    transport: str = "UDP"
    rport: bool = True
    contact: str = "<sip:src@192.0.2.5:5060>;+sip.src"
    invite_branch: str = field(default_factory=lambda: f"z9hG4bK-inv-{next(_branches)}")

    def request(
        self,
        method: str,
        cseq: int,
        *,
        to_tag: str | None = None,
        branch: str | None = None,
        extra: tuple[str, ...] = (),
        body: bytes = b"",
        uri: str = "sip:srs@192.0.2.10:5060",
        cseq_method: str | None = None,
    ) -> bytes:
        branch = branch or f"z9hG4bK-{method.lower()}-{next(_branches)}"
        rport = ";rport" if self.rport else ""
        to = "<sip:srs@192.0.2.10>" + (f";tag={to_tag}" if to_tag else "")
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/{self.transport} {self.via_host}:{self.via_port};branch={branch}{rport}",
            "Max-Forwards: 70",
            f'From: "SRC" <sip:src@192.0.2.5>;tag={self.from_tag}',
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {cseq_method or method}",
            f"Contact: {self.contact}",
            *extra,
            f"Content-Length: {len(body)}",
        ]
        return "\r\n".join(lines).encode() + b"\r\n\r\n" + body

    def invite(self, cseq: int = 1, **kw: object) -> bytes:
        kw.setdefault("branch", self.invite_branch)
        kw.setdefault(
            "extra",
            (
                "Record-Route: <sip:sbc1.example.com;lr>, <sip:sbc2.example.com;lr>",
                "Content-Type: application/sdp",
                "Require: siprec",
            ),
        )
        kw.setdefault("body", SDP)
        return self.request("INVITE", cseq, **kw)  # type: ignore[arg-type]

    def ack(self, to_tag: str, cseq: int = 1, branch: str | None = None) -> bytes:
        return self.request("ACK", cseq, to_tag=to_tag, branch=branch, uri="sip:192.0.2.10:5060")

    def cancel(self, cseq: int = 1) -> bytes:
        return self.request("CANCEL", cseq, branch=self.invite_branch)


class Harness:
    """A UA, a clock and helpers to read what it sent."""

    def __init__(self, **kw: object) -> None:
        self.ua = UserAgent(local_host="192.0.2.10", local_port=5060, **kw)  # type: ignore[arg-type]
        self.now = 0.0

    def send(self, data: bytes, source: Source = UDP) -> list[Event]:
        self.ua.receive(data, source, self.now)
        return self.ua.events()

    def out(self) -> list[Outgoing]:
        return self.ua.data_to_send()

    def sent(self) -> list[SipRequest | SipResponse]:
        return [parse_message(o.data) for o in self.out()]

    def responses(self) -> list[SipResponse]:
        messages = self.sent()
        assert all(isinstance(m, SipResponse) for m in messages), messages
        return [m for m in messages if isinstance(m, SipResponse)]

    def advance(self, to: float) -> list[Event]:
        """Run all timers up to ``to`` (inclusive)."""
        events: list[Event] = []
        while (deadline := self.ua.next_timer()) is not None and deadline <= to:
            self.now = deadline
            self.ua.handle_timer(deadline)
            events.extend(self.ua.events())
        self.now = to
        return events

    def established(self, src: Src, source: Source = UDP) -> InviteReceived:
        """INVITE → 200 → ACK; returns the InviteReceived event."""
        (event,) = self.send(src.invite(), source)
        assert isinstance(event, InviteReceived)
        self.ua.respond(event, 200, body=SDP, content_type="application/sdp")
        self.out()
        (ack,) = self.send(src.ack(event.dialog_id.local_tag), source)
        assert isinstance(ack, AckReceived)
        return event


@pytest.fixture
def h() -> Harness:
    return Harness()


# ---------------------------------------------------------------- initial INVITE


def test_initial_invite_100_then_200(h: Harness) -> None:
    src = Src()
    events = h.send(src.invite())
    (event,) = events
    assert isinstance(event, InviteReceived) and not event.is_reinvite
    assert event.source == UDP
    assert event.dialog_id.call_id == src.call_id
    assert event.dialog_id.remote_tag == "src-tag"
    (trying,) = h.out()
    assert trying.dest == UDP
    trying_msg = parse_message(trying.data)
    assert isinstance(trying_msg, SipResponse) and trying_msg.status == 100
    assert trying_msg.to_tag is None
    via = trying_msg.top_via
    assert via.rport == 5060 and via.received == "192.0.2.5"  # RFC 3581 stamping

    h.ua.respond(event, 200, body=SDP, content_type="application/sdp")
    (ok,) = h.responses()
    assert ok.status == 200
    assert ok.to_tag == event.dialog_id.local_tag
    assert ok.headers.get("Contact") == "<sip:192.0.2.10:5060;transport=udp>"
    assert ok.headers.get_all("Record-Route") == [
        "<sip:sbc1.example.com;lr>",
        "<sip:sbc2.example.com;lr>",
    ]
    assert ok.headers.get("Content-Type") == "application/sdp"
    assert ok.body == SDP
    assert "INVITE" in ok.headers.get_all("Allow")
    assert ok.headers.get("Server") == "siprec-bridge"


def test_provisional_with_tag_then_final_keeps_same_tag(h: Harness) -> None:
    (event,) = h.send(Src().invite())
    assert isinstance(event, InviteReceived)
    h.out()
    h.ua.respond(event, 180)
    h.ua.respond(event, 200, body=SDP, content_type="application/sdp")
    ringing, ok = h.responses()
    assert ringing.status == 180 and ok.status == 200
    assert ringing.to_tag == ok.to_tag == event.dialog_id.local_tag


def test_ack_received_once(h: Harness) -> None:
    src = Src()
    (event,) = h.send(src.invite())
    assert isinstance(event, InviteReceived)
    h.ua.respond(event, 200, body=SDP, content_type="application/sdp")
    h.out()
    ack = src.ack(event.dialog_id.local_tag)
    (received,) = h.send(ack)
    assert received == AckReceived(event.dialog_id, received.request)  # type: ignore[attr-defined]
    assert h.send(ack) == []  # retransmitted ACK absorbed
    assert h.advance(100.0) == []  # no retransmissions, no timeout after the ACK
    assert h.out() == []


def test_2xx_retransmission_schedule_then_ack_timeout_sends_bye(h: Harness) -> None:
    src = Src()
    (event,) = h.send(src.invite())
    assert isinstance(event, InviteReceived)
    h.ua.respond(event, 200, body=SDP, content_type="application/sdp")
    h.out()
    times: list[float] = []
    while (deadline := h.ua.next_timer()) is not None and deadline < 32.0:
        h.now = deadline
        h.ua.handle_timer(deadline)
        (resent,) = h.responses()
        assert resent.status == 200
        times.append(deadline)
    assert times[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]  # T1, 2T1, 4T1, T2, T2, ...
    events = h.advance(32.0)
    assert events == [DialogTerminated(event.dialog_id, "ack-timeout")]
    (bye,) = h.sent()
    assert isinstance(bye, SipRequest) and bye.method == "BYE"
    # §12.2.1.1: remote target = Contact, route set = Record-Route, tags swapped
    assert bye.uri == "sip:src@192.0.2.5:5060"
    assert bye.headers.get_all("Route") == [
        "<sip:sbc1.example.com;lr>",
        "<sip:sbc2.example.com;lr>",
    ]
    assert bye.from_tag == event.dialog_id.local_tag
    assert bye.to_tag == "src-tag"
    assert bye.cseq == (1, "BYE")
    assert bye.call_id == src.call_id
    assert bye.top_via.branch is not None and bye.top_via.branch.startswith("z9hG4bK")
    assert h.ua.dialog(event.dialog_id) is None


def test_retransmitted_invite_absorbed_in_every_state(h: Harness) -> None:
    src = Src()
    invite = src.invite()
    (event,) = h.send(invite)
    assert isinstance(event, InviteReceived)
    h.out()
    assert h.send(invite) == []  # Proceeding: resend the 100
    assert [r.status for r in h.responses()] == [100]
    h.ua.respond(event, 200, body=SDP, content_type="application/sdp")
    h.out()
    assert h.send(invite) == []  # Accepted before the ACK: resend the 200
    assert [r.status for r in h.responses()] == [200]
    h.send(src.ack(event.dialog_id.local_tag))
    assert h.send(invite) == []  # Accepted after the ACK: absorbed silently
    assert h.out() == []


def test_merged_invite_by_another_path_gets_482(h: Harness) -> None:
    src = Src()
    h.send(src.invite())
    h.out()
    assert h.send(src.invite(branch="z9hG4bK-other-path")) == []
    (loop,) = h.responses()
    assert loop.status == 482


def test_application_rejects_initial_invite(h: Harness) -> None:
    src = Src()
    (event,) = h.send(src.invite())
    assert isinstance(event, InviteReceived)
    h.out()
    h.ua.respond(event, 488, headers=[("Warning", '399 srs "no SDP"')])
    (rejected,) = h.responses()
    assert rejected.status == 488 and rejected.to_tag == event.dialog_id.local_tag
    assert h.ua.dialog(event.dialog_id) is None
    assert h.send(src.ack(event.dialog_id.local_tag, branch=src.invite_branch)) == []
    assert h.advance(40.0) == []  # ACK stopped timer G; no events for a rejected INVITE
    assert h.out() == []


def test_respond_misuse(h: Harness) -> None:
    (event,) = h.send(Src().invite())
    assert isinstance(event, InviteReceived)
    with pytest.raises(LocalProtocolError):
        h.ua.respond(event, 100)
    h.ua.respond(event, 200, body=SDP, content_type="application/sdp")
    with pytest.raises(LocalProtocolError):
        h.ua.respond(event, 200)
    with pytest.raises(LocalProtocolError):
        UserAgent(local_host="h", local_port=1, allow=("INVITE", "REGISTER"))


def test_application_never_answers(h: Harness) -> None:
    (event,) = h.send(Src().invite())
    assert isinstance(event, InviteReceived)
    h.out()
    events = h.advance(32.0)
    assert events == [DialogTerminated(event.dialog_id, "no-answer")]
    (failed,) = h.responses()
    assert failed.status == 500
    with pytest.raises(LocalProtocolError):
        h.ua.respond(event, 200)


# ---------------------------------------------------------------- CANCEL


def test_cancel_before_answer(h: Harness) -> None:
    src = Src()
    (event,) = h.send(src.invite())
    assert isinstance(event, InviteReceived)
    h.out()
    events = h.send(src.cancel())
    assert isinstance(events[0], CancelReceived) and events[0].dialog_id == event.dialog_id
    assert events[1] == DialogTerminated(event.dialog_id, "cancelled")
    cancel_ok, terminated = h.responses()
    assert (cancel_ok.status, cancel_ok.cseq) == (200, (1, "CANCEL"))
    assert (terminated.status, terminated.cseq) == (487, (1, "INVITE"))
    assert cancel_ok.to_tag == terminated.to_tag == event.dialog_id.local_tag
    with pytest.raises(LocalProtocolError):
        h.ua.respond(event, 200)
    assert h.advance(0.5) == []
    assert [r.status for r in h.responses()] == [487]  # timer G over UDP
    h.send(src.ack(event.dialog_id.local_tag, branch=src.invite_branch))
    assert h.advance(2.0) == [] and h.out() == []


def test_cancel_after_answer_only_200(h: Harness) -> None:
    src = Src()
    event = h.established(src)
    assert h.send(src.cancel()) == []
    (ok,) = h.responses()
    assert ok.status == 200
    assert h.ua.dialog(event.dialog_id) is not None


def test_cancel_unknown_transaction_481(h: Harness) -> None:
    assert h.send(Src().cancel()) == []
    (resp,) = h.responses()
    assert resp.status == 481


# ---------------------------------------------------------------- BYE / in-dialog


def test_peer_bye(h: Harness) -> None:
    src = Src()
    event = h.established(src)
    events = h.send(src.request("BYE", 2, to_tag=event.dialog_id.local_tag))
    assert isinstance(events[0], ByeReceived) and events[0].dialog_id == event.dialog_id
    assert events[1] == DialogTerminated(event.dialog_id, "bye")
    (ok,) = h.responses()
    assert ok.status == 200 and ok.cseq == (2, "BYE")
    assert h.ua.dialog(event.dialog_id) is None
    # a retransmitted BYE gets the same 200 from the transaction, not a 481
    assert h.send(src.request("BYE", 2, to_tag=event.dialog_id.local_tag, branch="z9hG4bK-b")) == []
    assert h.responses()[0].status == 481  # different branch: a new request, dialog gone


def test_bye_retransmission_gets_cached_200(h: Harness) -> None:
    src = Src()
    event = h.established(src)
    bye = src.request("BYE", 2, to_tag=event.dialog_id.local_tag)
    h.send(bye)
    first = h.out()
    assert h.send(bye) == []
    assert h.out() == first


def test_bye_before_ack_stops_2xx_retransmission(h: Harness) -> None:
    src = Src()
    (event,) = h.send(src.invite())
    assert isinstance(event, InviteReceived)
    h.ua.respond(event, 200, body=SDP, content_type="application/sdp")
    h.out()
    h.send(src.request("BYE", 2, to_tag=event.dialog_id.local_tag))
    h.out()
    assert h.advance(40.0) == []  # no 2xx retransmissions, no ack-timeout BYE
    assert h.out() == []


def test_unknown_dialog_481(h: Harness) -> None:
    src = Src()
    for method in ("BYE", "UPDATE", "INFO", "INVITE"):
        assert h.send(src.request(method, 5, to_tag="nope")) == []
    assert [r.status for r in h.responses()] == [481, 481, 481, 481]


def test_out_of_dialog_bye_481(h: Harness) -> None:
    assert h.send(Src().request("BYE", 5)) == []
    (resp,) = h.responses()
    assert resp.status == 481 and resp.to_tag  # §8.2.6.2: UAS adds a To tag


def test_lower_cseq_in_dialog_500(h: Harness) -> None:
    src = Src()
    event = h.established(src)
    h.send(src.request("INFO", 10, to_tag=event.dialog_id.local_tag))
    h.out()
    assert h.send(src.request("INFO", 9, to_tag=event.dialog_id.local_tag)) == []
    (resp,) = h.responses()
    assert resp.status == 500


def test_info_answered_200(h: Harness) -> None:
    src = Src()
    event = h.established(src)
    (info,) = h.send(src.request("INFO", 2, to_tag=event.dialog_id.local_tag, body=b"x"))
    assert isinstance(info, InfoReceived) and info.request.body == b"x"
    assert [r.status for r in h.responses()] == [200]


# ---------------------------------------------------------------- re-INVITE / UPDATE


def test_reinvite_refreshes_target(h: Harness) -> None:
    src = Src()
    event = h.established(src)
    src.contact = "<sip:src@198.51.100.77:5070;transport=udp>"
    reinvite = src.request(
        "INVITE",
        2,
        to_tag=event.dialog_id.local_tag,
        body=SDP,
        extra=("Content-Type: application/sdp",),
    )
    (re_event,) = h.send(reinvite)
    assert isinstance(re_event, InviteReceived) and re_event.is_reinvite
    assert re_event.dialog_id == event.dialog_id
    assert [r.status for r in h.responses()] == [100]
    h.ua.respond(re_event, 200, body=SDP, content_type="application/sdp")
    (ok,) = h.responses()
    assert ok.to_tag == event.dialog_id.local_tag and ok.headers.get("Contact")
    (ack,) = h.send(src.ack(event.dialog_id.local_tag, cseq=2))
    assert isinstance(ack, AckReceived)
    h.ua.send_bye(event.dialog_id, h.now)
    (bye,) = h.sent()
    assert isinstance(bye, SipRequest) and bye.uri == "sip:src@198.51.100.77:5070;transport=udp"


def test_reinvite_rejected_keeps_dialog(h: Harness) -> None:
    src = Src()
    event = h.established(src)
    (re_event,) = h.send(src.request("INVITE", 2, to_tag=event.dialog_id.local_tag))
    assert isinstance(re_event, InviteReceived)
    h.ua.respond(re_event, 488)
    assert [r.status for r in h.responses()] == [100, 488]
    assert h.ua.dialog(event.dialog_id) is not None


def test_reinvite_glare(h: Harness) -> None:
    src = Src()
    event = h.established(src)
    tag = event.dialog_id.local_tag
    (first,) = h.send(src.request("INVITE", 2, to_tag=tag))
    assert isinstance(first, InviteReceived)
    h.out()
    assert h.send(src.request("INVITE", 3, to_tag=tag)) == []
    (pending,) = h.responses()
    assert pending.status == 500  # §14.2: INVITE while one is unanswered
    retry = pending.headers.get("Retry-After")
    assert retry is not None and 0 <= int(retry) <= 10
    assert h.send(src.request("UPDATE", 4, to_tag=tag)) == []
    assert h.responses()[0].status == 500  # RFC 3311 §5.2: offer while an offer is pending
    h.ua.respond(first, 200, body=SDP, content_type="application/sdp")
    h.out()
    assert h.send(src.request("INVITE", 5, to_tag=tag)) == []
    assert h.responses()[0].status == 491  # our 2xx still waits for its ACK


def test_update(h: Harness) -> None:
    src = Src()
    event = h.established(src)
    (update,) = h.send(
        src.request(
            "UPDATE",
            2,
            to_tag=event.dialog_id.local_tag,
            extra=("Content-Type: application/rs-metadata+xml",),
            body=b"<recording/>",
        )
    )
    assert isinstance(update, UpdateReceived) and update.dialog_id == event.dialog_id
    assert h.out() == []  # no 100 for non-INVITE
    h.ua.respond(update, 200)
    (ok,) = h.responses()
    assert ok.status == 200 and ok.headers.get("Contact") is not None
    assert ok.cseq == (2, "UPDATE")


# ---------------------------------------------------------------- UA-answered requests


def test_options_out_of_dialog(h: Harness) -> None:
    assert h.send(Src().request("OPTIONS", 1, extra=("Max-Forwards: 0",))) == []
    (ok,) = h.responses()
    assert ok.status == 200
    assert ok.headers.get_all("Allow") == [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "UPDATE",
        "INFO",
    ]
    assert "application/rs-metadata+xml" in ok.headers.get_all("Accept")
    assert ok.headers.get_all("Supported") == ["timer", "replaces", "siprec"]
    assert ok.to_tag


def test_options_in_dialog(h: Harness) -> None:
    src = Src()
    event = h.established(src)
    h.send(src.request("OPTIONS", 2, to_tag=event.dialog_id.local_tag))
    (ok,) = h.responses()
    assert ok.status == 200 and ok.to_tag == event.dialog_id.local_tag


@pytest.mark.parametrize(
    ("method", "status"),
    [
        ("REGISTER", 405),
        ("SUBSCRIBE", 405),
        ("PRACK", 405),
        ("REFER", 405),
        ("NOTIFY", 405),
        ("MESSAGE", 405),
        ("FOOBAR", 501),
    ],
)
def test_unsupported_methods(h: Harness, method: str, status: int) -> None:
    assert h.send(Src().request(method, 1)) == []
    (resp,) = h.responses()
    assert resp.status == status
    assert "INVITE" in resp.headers.get_all("Allow")


def test_max_forwards_zero_483(h: Harness) -> None:
    src = Src()
    data = src.invite().replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
    assert h.send(data) == []
    (resp,) = h.responses()
    assert resp.status == 483


# ---------------------------------------------------------------- malformed input


def test_malformed_request_gets_400_with_warning(h: Harness) -> None:
    data = Src().request("INVITE", 1, cseq_method="BYE")
    (event,) = h.send(data)
    assert isinstance(event, MalformedMessage) and event.responded
    assert "does not match" in event.error
    (resp,) = h.responses()
    assert resp.status == 400
    warning = resp.headers.get("Warning")
    assert warning is not None and warning.startswith('399 192.0.2.10 "CSeq method BYE')
    assert resp.top_via.received == "192.0.2.5"


def test_bad_version_gets_505(h: Harness) -> None:
    data = Src().request("OPTIONS", 1).replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1)
    (event,) = h.send(data)
    assert isinstance(event, MalformedMessage) and event.responded
    assert h.responses()[0].status == 505


def test_malformed_without_call_id_cannot_be_answered(h: Harness) -> None:
    data = Src().request("INVITE", 1).replace(b"Call-ID: call-1@192.0.2.5\r\n", b"")
    (event,) = h.send(data)
    assert event == MalformedMessage(UDP, "missing Call-ID header", False)
    assert h.out() == []


def test_malformed_ack_and_response_not_answered(h: Harness) -> None:
    ack = Src().request("ACK", 1, cseq_method="INVITE")
    (event,) = h.send(ack)
    assert isinstance(event, MalformedMessage) and not event.responded
    (event,) = h.send(b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n")
    assert isinstance(event, MalformedMessage) and not event.responded
    assert h.out() == []


def test_stray_response_and_ack_ignored(h: Harness) -> None:
    response = b"".join(
        [
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKstray\r\n",
            b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 BYE\r\n\r\n",
        ]
    )
    assert h.send(response) == []
    assert h.send(Src().ack("unknown")) == []
    assert h.out() == []


# ---------------------------------------------------------------- send_bye


def test_send_bye_udp_retransmits_then_200(h: Harness) -> None:
    src = Src()
    event = h.established(src)
    h.ua.send_bye(event.dialog_id, h.now, headers=[("Reason", "Q.850;cause=16")])
    (bye,) = h.sent()
    assert isinstance(bye, SipRequest) and bye.headers.get("Reason") == "Q.850;cause=16"
    assert h.advance(1.5) == []
    assert [m.method for m in h.sent() if isinstance(m, SipRequest)] == ["BYE", "BYE"]  # E
    with pytest.raises(LocalProtocolError):
        h.ua.send_bye(event.dialog_id, h.now)  # already terminating
    ok = build_response(bye, 200)
    events = h.send(ok.to_bytes())
    assert events == [
        ByeResult(event.dialog_id, 200, events[0].response),  # type: ignore[attr-defined]
        DialogTerminated(event.dialog_id, "bye-sent"),
    ]
    assert h.advance(10.0) == [] and h.out() == []


def test_send_bye_timeout(h: Harness) -> None:
    event = h.established(Src())
    h.ua.send_bye(event.dialog_id, h.now)
    events = h.advance(40.0)
    assert events == [
        ByeResult(event.dialog_id, None, None),
        DialogTerminated(event.dialog_id, "bye-sent"),
    ]
    assert len(h.out()) == 11  # first send + 10 timer-E retransmissions before timer F


def test_send_bye_misuse(h: Harness) -> None:
    with pytest.raises(LocalProtocolError):
        h.ua.send_bye(DialogId("x", "y", "z"), 0.0)
    (event,) = h.send(Src().invite())
    assert isinstance(event, InviteReceived)
    with pytest.raises(LocalProtocolError):
        h.ua.send_bye(event.dialog_id, 0.0)  # not confirmed yet


def test_send_bye_deferred_until_ack(h: Harness) -> None:
    src = Src()
    (event,) = h.send(src.invite())
    assert isinstance(event, InviteReceived)
    h.ua.respond(event, 200, body=SDP, content_type="application/sdp")
    h.out()
    h.ua.send_bye(event.dialog_id, h.now)
    assert h.out() == []  # §15: not before the ACK
    (ack,) = h.send(src.ack(event.dialog_id.local_tag))
    assert isinstance(ack, AckReceived)
    (bye,) = h.sent()
    assert isinstance(bye, SipRequest) and bye.method == "BYE"


def test_crossing_byes(h: Harness) -> None:
    src = Src()
    event = h.established(src)
    h.ua.send_bye(event.dialog_id, h.now)
    (our_bye,) = h.sent()
    assert isinstance(our_bye, SipRequest)
    events = h.send(src.request("BYE", 2, to_tag=event.dialog_id.local_tag))
    assert isinstance(events[0], ByeReceived)
    assert events[1] == DialogTerminated(event.dialog_id, "bye")
    assert h.responses()[0].status == 200
    events = h.send(build_response(our_bye, 481).to_bytes())
    assert [type(e) for e in events] == [ByeResult]  # no second DialogTerminated


def test_send_bye_answers_pending_reinvite_487(h: Harness) -> None:
    src = Src()
    event = h.established(src)
    (re_event,) = h.send(src.request("INVITE", 2, to_tag=event.dialog_id.local_tag))
    assert isinstance(re_event, InviteReceived)
    h.out()
    h.ua.send_bye(event.dialog_id, h.now)
    terminated, bye = h.sent()
    assert isinstance(terminated, SipResponse) and terminated.status == 487
    assert isinstance(bye, SipRequest) and bye.method == "BYE" and bye.cseq == (1, "BYE")
    with pytest.raises(LocalProtocolError):
        h.ua.respond(re_event, 200)


def test_reinvite_after_our_bye_481(h: Harness) -> None:
    src = Src()
    event = h.established(src)
    h.ua.send_bye(event.dialog_id, h.now)
    h.out()
    assert h.send(src.request("INVITE", 2, to_tag=event.dialog_id.local_tag)) == []
    assert h.responses()[0].status == 481


# ---------------------------------------------------------------- routing


def test_udp_response_without_rport_goes_to_via_port(h: Harness) -> None:
    src = Src(rport=False)
    h.send(src.request("OPTIONS", 1), Source("udp", ("192.0.2.5", 40000)))
    (out,) = h.out()
    assert out.dest == Source("udp", ("192.0.2.5", 5060))  # §18.2.2: sent-by port


def test_udp_response_to_source_when_sent_by_differs(h: Harness) -> None:
    src = Src(rport=False, via_host="sbc.example.com")
    source = Source("udp", ("203.0.113.9", 40000))
    h.send(src.request("OPTIONS", 1), source)
    (out,) = h.out()
    assert out.dest == source
    resp = parse_message(out.data)
    assert resp.top_via.received == "203.0.113.9"
    assert resp.top_via.rport is None


def test_tcp_responses_on_the_same_connection_and_bye_too(h: Harness) -> None:
    src = Src(transport="TCP", rport=False)
    tcp = Source("tcp", ("192.0.2.5", 40001), conn_id=3)
    event = h.established(src, tcp)
    assert event.source == tcp
    h.ua.send_bye(event.dialog_id, h.now)
    (out,) = h.out()
    assert out.dest == tcp
    bye = parse_message(out.data)
    assert parse_via(bye.headers.get("Via") or "").transport == "TCP"
    assert h.advance(5.0) == [] and h.out() == []  # no timer E over TCP


def test_tcp_non_2xx_not_retransmitted(h: Harness) -> None:
    tcp = Source("tcp", ("192.0.2.5", 40001), conn_id=3)
    (event,) = h.send(Src(transport="TCP").invite(), tcp)
    assert isinstance(event, InviteReceived)
    h.out()
    h.ua.respond(event, 486)
    (busy,) = h.out()
    assert busy.dest == tcp
    assert h.advance(10.0) == [] and h.out() == []


def test_contact_quirks_fall_back_to_source() -> None:
    harness = Harness()
    src = Src(contact="<sip192.168.33.1:5060>")  # Cisco IOS 15.6 capture
    event = harness.established(src)
    harness.ua.send_bye(event.dialog_id, harness.now)
    (bye,) = harness.sent()
    assert isinstance(bye, SipRequest) and bye.uri == "sip:192.0.2.5:5060"
    harness2 = Harness()
    src2 = Src(contact="<sip:7602922410@198.51.100.20:5060;+sip.src")  # missing '>'
    event2 = harness2.established(src2)
    harness2.ua.send_bye(event2.dialog_id, harness2.now)
    (bye2,) = harness2.sent()
    assert isinstance(bye2, SipRequest)
    assert bye2.uri == "sip:7602922410@198.51.100.20:5060;+sip.src"


def test_strict_route_set() -> None:
    harness = Harness()
    src = Src()
    data = src.invite(extra=("Record-Route: <sip:strict.example.com>",))
    (event,) = harness.send(data)
    assert isinstance(event, InviteReceived)
    harness.ua.respond(event, 200)
    harness.out()
    harness.send(src.ack(event.dialog_id.local_tag))
    harness.ua.send_bye(event.dialog_id, harness.now)
    (bye,) = harness.sent()
    assert isinstance(bye, SipRequest)
    assert bye.uri == "sip:strict.example.com"  # §12.2.1.1 strict router
    assert bye.headers.get_all("Route") == ["<sip:src@192.0.2.5:5060>"]


# ---------------------------------------------------------------- RFC 4028 session timer


def test_session_timer_negotiated_and_enforced(h: Harness) -> None:
    src = Src()
    extra = ("Supported: timer", "Session-Expires: 120;refresher=uac", "Min-SE: 90")
    (event,) = h.send(src.invite(extra=extra))
    assert isinstance(event, InviteReceived)
    h.ua.respond(event, 200)
    (_, ok) = h.responses()
    assert ok.headers.get("Session-Expires") == "120;refresher=uac"
    assert ok.headers.get("Require") == "timer"
    h.send(src.ack(event.dialog_id.local_tag))
    # a refresh at t=60 re-arms the timer
    h.advance(60.0)
    (refresh,) = h.send(src.request("UPDATE", 2, to_tag=event.dialog_id.local_tag, extra=extra))
    assert isinstance(refresh, UpdateReceived)
    h.ua.respond(refresh, 200)
    h.out()
    assert h.advance(147.9) == []
    events = h.advance(148.0)  # refresh at 60 + 120 - min(32 s, 120/3) (RFC 4028 §10)
    assert events == [DialogTerminated(event.dialog_id, "session-timeout")]
    (bye,) = h.sent()
    assert isinstance(bye, SipRequest) and bye.method == "BYE"


def test_session_interval_too_small_422(h: Harness) -> None:
    data = Src().invite(extra=("Supported: timer", "Session-Expires: 30"))
    assert h.send(data) == []
    (resp,) = h.responses()
    assert resp.status == 422 and resp.headers.get("Min-SE") == "90"


def test_no_session_timer_without_uac_support(h: Harness) -> None:
    (event,) = h.send(Src().invite(extra=("Session-Expires: 1800",)))
    assert isinstance(event, InviteReceived)
    h.ua.respond(event, 200)
    ok = h.responses()[-1]
    assert ok.headers.get("Session-Expires") is None


# ---------------------------------------------------------------- robustness


def test_many_calls_are_independent(h: Harness) -> None:
    srcs = [Src(call_id=f"call-{i}", from_tag=f"t{i}") for i in range(20)]
    invites = [h.send(s.invite())[0] for s in srcs]
    ids = {e.dialog_id for e in invites if isinstance(e, InviteReceived)}
    assert len(ids) == 20
    for s, e in zip(srcs, invites, strict=True):
        assert isinstance(e, InviteReceived)
        h.ua.respond(e, 200)
        h.send(s.ack(e.dialog_id.local_tag))
    h.out()
    for s, e in zip(srcs, invites, strict=True):
        assert isinstance(e, InviteReceived)
        events = h.send(s.request("BYE", 2, to_tag=e.dialog_id.local_tag))
        assert events[-1] == DialogTerminated(e.dialog_id, "bye")
    h.advance(100.0)
    assert h.ua.next_timer() is None  # every transaction cleaned up


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=5000),
    st.binary(min_size=0, max_size=4),
    st.sampled_from(["invite", "bye", "cancel", "options", "ack"]),
)
def test_fuzz_receive_never_raises(position: int, replacement: bytes, kind: str) -> None:
    harness = Harness()
    src = Src(invite_branch="z9hG4bK-fuzz-inv")
    (event,) = harness.send(src.invite())
    assert isinstance(event, InviteReceived)
    tag = event.dialog_id.local_tag
    base = {
        "invite": src.request("INVITE", 2, to_tag=tag, body=SDP, branch="z9hG4bK-fuzz-re"),
        "bye": src.request("BYE", 2, to_tag=tag, branch="z9hG4bK-fuzz-bye"),
        "cancel": src.cancel(),
        "options": src.request("OPTIONS", 3, branch="z9hG4bK-fuzz-opt"),
        "ack": src.ack(tag, branch="z9hG4bK-fuzz-ack"),
    }[kind]
    index = position % (len(base) + 1)
    harness.ua.receive(base[:index] + replacement + base[index + 1 :], UDP, 1.0)
    harness.ua.handle_timer(40.0)
    for out in harness.ua.data_to_send():
        try:
            parse_message(out.data)
        except SipParseError:
            # only our 400 to a malformed request may echo the peer's broken headers
            assert out.data.startswith(b"SIP/2.0 400 ") and b"\r\nWarning: 399 " in out.data
    assert all(isinstance(e, Event) for e in harness.ua.events())
