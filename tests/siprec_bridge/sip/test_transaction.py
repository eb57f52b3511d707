"""Server/client transaction state machines (RFC 3261 §17, RFC 6026), driven by a fake clock."""

from __future__ import annotations

import pytest

from siprec_bridge.sip.errors import LocalProtocolError
from siprec_bridge.sip.message import SipRequest, SipResponse, build_response, parse_message
from siprec_bridge.sip.transaction import (
    AckTimeout,
    AnswerTimeout,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    RequestTimeout,
    Source,
    State,
    TimerConfig,
    TxEvent,
    _Transaction,
    cancel_target_key,
    client_key,
    server_key,
)

CFG = TimerConfig(t1=0.5, t2=4.0, t4=5.0)
UDP = Source("udp", ("192.0.2.5", 5060))
TCP = Source("tcp", ("192.0.2.5", 40000), conn_id=7)


def request(
    method: str = "INVITE",
    branch: str = "z9hG4bK-1",
    cseq_method: str | None = None,
    uri: str = "sip:srs@192.0.2.10",
) -> SipRequest:
    data = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.5:5060;branch={branch}\r\n"
        "From: <sip:src@192.0.2.5>;tag=f1\r\nTo: <sip:srs@192.0.2.10>\r\n"
        f"Call-ID: c1\r\nCSeq: 1 {cseq_method or method}\r\n\r\n"
    ).encode()
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def run_timers(tx: _Transaction, until: float) -> tuple[list[float], list[tuple[float, TxEvent]]]:
    """Fire timers until ``until``; return send times and (time, event) pairs."""
    sends: list[float] = []
    events: list[tuple[float, TxEvent]] = []
    while (deadline := tx.next_deadline()) is not None and deadline <= until:
        data, evs = tx.handle_timer(deadline)
        sends.extend(deadline for _ in data)
        events.extend((deadline, ev) for ev in evs)
    return sends, events


def answer(
    tx: InviteServerTransaction | NonInviteServerTransaction, status: int, now: float = 0.0
) -> bytes:
    response: SipResponse = build_response(tx.request, status, to_tag="t")
    return tx.respond(response, now)


def test_invite_2xx_retransmission_schedule_and_ack_timeout() -> None:
    tx = InviteServerTransaction(request(), UDP, CFG, now=0.0)
    assert tx.state is State.PROCEEDING
    answer(tx, 100)
    data = answer(tx, 200)
    assert tx.state is State.ACCEPTED
    sends, events = run_timers(tx, 100.0)
    intervals = [b - a for a, b in zip([0.0, *sends], sends, strict=False)]
    assert intervals[:6] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]  # T1, 2T1, 4T1, then T2 cap
    assert max(sends) < 32.0
    assert events == [(32.0, AckTimeout(accepted=True))]  # timer H = 64·T1
    assert tx.terminated
    assert data.startswith(b"SIP/2.0 200 OK")


def test_invite_2xx_ack_stops_retransmissions_then_absorbs_until_timer_l() -> None:
    tx = InviteServerTransaction(request(), UDP, CFG, now=0.0)
    answer(tx, 200)
    assert tx.receive_retransmission() is not None  # before the ACK: resend the 2xx
    sends, _ = run_timers(tx, 1.0)
    assert sends == [0.5]
    assert tx.receive_ack(1.2) is True
    assert tx.receive_ack(1.3) is False  # retransmitted ACK
    assert tx.receive_retransmission() is None  # absorbed (RFC 6026 Accepted)
    assert tx.state is State.ACCEPTED
    sends, events = run_timers(tx, 100.0)
    assert sends == [] and events == []
    assert tx.terminated  # timer L


def test_invite_2xx_retransmitted_over_tcp_too() -> None:
    tx = InviteServerTransaction(request(), TCP, CFG, now=0.0)
    answer(tx, 200)
    sends, _ = run_timers(tx, 2.0)
    assert sends == [0.5, 1.5]  # §13.3.1.4: the 2xx is retransmitted whatever the transport


def test_invite_non_2xx_over_udp() -> None:
    tx = InviteServerTransaction(request(), UDP, CFG, now=0.0)
    answer(tx, 486)
    assert tx.state is State.COMPLETED
    sends, _ = run_timers(tx, 8.0)
    assert sends == [0.5, 1.5, 3.5, 7.5]  # timer G
    assert tx.receive_retransmission() is not None
    assert tx.receive_ack(8.0) is True
    assert tx.state is State.CONFIRMED
    assert tx.receive_ack(8.1) is False
    sends, _ = run_timers(tx, 12.9)
    assert sends == [] and not tx.terminated
    run_timers(tx, 13.0)  # timer I = T4
    assert tx.terminated


def test_invite_non_2xx_timer_h_without_ack() -> None:
    tx = InviteServerTransaction(request(), UDP, CFG, now=0.0)
    answer(tx, 603)
    _, events = run_timers(tx, 40.0)
    assert events == [(32.0, AckTimeout(accepted=False))]


def test_invite_non_2xx_over_tcp() -> None:
    tx = InviteServerTransaction(request(), TCP, CFG, now=0.0)
    answer(tx, 486)
    assert tx.next_deadline() == 32.0  # only timer H, no G
    assert tx.receive_ack(1.0) is True
    assert tx.terminated  # timer I = 0 on reliable transports


def test_invite_answer_guard() -> None:
    tx = InviteServerTransaction(request(), UDP, CFG, now=10.0)
    answer(tx, 100, now=10.0)
    _, events = run_timers(tx, 100.0)
    assert events == [(42.0, AnswerTimeout())]
    assert tx.state is State.PROCEEDING  # the TU decides what to send


def test_answer_twice_is_local_error() -> None:
    tx = InviteServerTransaction(request(), UDP, CFG, now=0.0)
    answer(tx, 180)
    answer(tx, 200)
    with pytest.raises(LocalProtocolError):
        answer(tx, 500)


def test_non_invite_server_udp() -> None:
    tx = NonInviteServerTransaction(request("BYE"), UDP, CFG, now=0.0)
    assert tx.state is State.TRYING
    assert tx.receive_retransmission() is None  # Trying: absorbed
    answer(tx, 200, now=1.0)
    assert tx.state is State.COMPLETED
    assert tx.receive_retransmission() is not None
    sends, _ = run_timers(tx, 32.9)
    assert sends == [] and not tx.terminated
    run_timers(tx, 33.0)  # timer J = 64·T1
    assert tx.terminated


def test_non_invite_server_provisional_then_tcp_final() -> None:
    tx = NonInviteServerTransaction(request("UPDATE"), TCP, CFG, now=0.0)
    provisional = answer(tx, 100)
    assert tx.state is State.PROCEEDING
    assert tx.receive_retransmission() == provisional
    answer(tx, 200)
    assert tx.terminated  # timer J = 0 on reliable transports


def test_client_non_invite_udp_retransmits_and_times_out() -> None:
    tx = NonInviteClientTransaction(request("BYE"), UDP, CFG, now=0.0)
    sends, events = run_timers(tx, 100.0)
    assert sends[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]  # timer E: T1 doubling to T2
    assert events == [(32.0, RequestTimeout())]  # timer F
    assert tx.terminated


def test_client_non_invite_proceeding_uses_t2_then_final() -> None:
    bye = request("BYE")
    tx = NonInviteClientTransaction(bye, UDP, CFG, now=0.0)
    run_timers(tx, 0.5)
    assert tx.receive_response(build_response(bye, 100), 0.6) is False
    assert tx.state is State.PROCEEDING
    sends, _ = run_timers(tx, 10.0)
    assert sends == [1.5, 5.5, 9.5]  # E fired at 1.5 (armed before), then every T2
    ok = build_response(bye, 200)
    assert tx.receive_response(ok, 10.0) is True
    assert tx.final_response is ok
    assert tx.receive_response(ok, 10.1) is False  # retransmitted final
    assert not tx.terminated
    run_timers(tx, 15.0)  # timer K = T4
    assert tx.terminated


def test_client_non_invite_tcp() -> None:
    bye = request("BYE")
    tx = NonInviteClientTransaction(bye, TCP, CFG, now=0.0)
    assert tx.next_deadline() == 32.0  # no timer E over TCP
    assert tx.receive_response(build_response(bye, 481), 1.0) is True
    assert tx.terminated


def test_transaction_keys() -> None:
    invite = request("INVITE", branch="z9hG4bKabc")
    ack = request("ACK", branch="z9hG4bKabc")
    cancel = request("CANCEL", branch="z9hG4bKabc")
    assert server_key(invite) == ("z9hG4bKabc", "192.0.2.5:5060", "INVITE")
    assert server_key(ack) == server_key(invite)
    assert server_key(cancel) != server_key(invite)
    assert cancel_target_key(cancel) == server_key(invite)
    assert server_key(request("INVITE", branch="z9hG4bKother")) != server_key(invite)
    response = build_response(invite, 200)
    assert client_key(response) == ("z9hG4bKabc", "INVITE")


def test_rfc2543_keys_without_magic_cookie() -> None:
    invite = request("INVITE", branch="old1")
    ack = request("ACK", branch="old1")
    cancel = request("CANCEL", branch="old1")
    assert server_key(invite)[0] == ""
    assert server_key(ack) == server_key(invite)
    assert cancel_target_key(cancel) == server_key(invite)
    assert server_key(request("INVITE", branch="old1", uri="sip:other@x")) != server_key(invite)
