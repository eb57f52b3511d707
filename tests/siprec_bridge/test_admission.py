"""Admission control: allow-list, drain, per-source INVITE rate, max_calls — through the UA."""

from __future__ import annotations

import itertools

import pytest

from siprec_bridge.admission import Admission, AllowList, TokenBuckets, admission_from_settings
from siprec_bridge.auth import DigestAuthenticator
from siprec_bridge.settings import load_settings
from siprec_bridge.sip.errors import LocalProtocolError
from siprec_bridge.sip.events import (
    ByeReceived,
    Event,
    InviteReceived,
    MalformedMessage,
    RequestRefused,
)
from siprec_bridge.sip.message import SipResponse, parse_message
from siprec_bridge.sip.screen import Refusal
from siprec_bridge.sip.transaction import Source
from siprec_bridge.sip.ua import UserAgent

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n"
SBC = Source("udp", ("192.0.2.5", 5060))
STRANGER = Source("udp", ("203.0.113.9", 5060))
_ids = itertools.count(1)


def request(
    method: str,
    *,
    source: Source = SBC,
    call_id: str | None = None,
    cseq: int = 1,
    branch: str | None = None,
    to_tag: str | None = None,
    body: bytes = b"",
    extra: tuple[str, ...] = (),
) -> bytes:
    host, port = source.addr
    to = "<sip:srs@192.0.2.10>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} sip:srs@192.0.2.10 SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch={branch or f'z9hG4bK-{next(_ids)}'}",
        "Max-Forwards: 70",
        "From: <sip:src@example.com>;tag=src",
        f"To: {to}",
        f"Call-ID: {call_id or f'call-{next(_ids)}'}",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:src@192.0.2.5>",
        *extra,
        *(["Content-Type: application/sdp"] if body else []),
        f"Content-Length: {len(body)}",
    ]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


class Harness:
    """A user agent screened by an :class:`Admission`, driven with a fake clock."""

    def __init__(self, **kw: object) -> None:
        self.calls = 0
        self.admission = Admission(active_calls=lambda: self.calls, **kw)  # type: ignore[arg-type]
        self.ua = UserAgent(local_host="192.0.2.10", local_port=5060, screen=self.admission.screen)
        self.now = 0.0

    def send(self, data: bytes, source: Source = SBC) -> tuple[list[Event], list[SipResponse]]:
        self.ua.receive(data, source, self.now)
        events = self.ua.events()
        out = [parse_message(o.data) for o in self.ua.data_to_send()]
        assert all(isinstance(m, SipResponse) for m in out)
        return events, [m for m in out if isinstance(m, SipResponse)]

    def invite(self, source: Source = SBC, **kw: object) -> tuple[list[Event], list[int]]:
        events, responses = self.send(request("INVITE", source=source, body=SDP, **kw), source)  # type: ignore[arg-type]
        return events, [r.status for r in responses]

    def accept(self, events: list[Event]) -> str:
        (event,) = [e for e in events if isinstance(e, InviteReceived)]
        self.ua.respond(event, 200, body=SDP, content_type="application/sdp")
        self.calls += 1
        (ok,) = [parse_message(o.data) for o in self.ua.data_to_send()]
        assert isinstance(ok, SipResponse) and ok.to_tag is not None
        return ok.to_tag


# -- allow-list and token buckets -----------------------------------------------------------


def test_allow_list() -> None:
    assert AllowList([]).allows("203.0.113.9")
    allow = AllowList(["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"])
    assert allow.allows("192.0.2.200")
    assert allow.allows("198.51.100.7") and not allow.allows("198.51.100.8")
    assert allow.allows("2001:db8::1") and allow.allows("[2001:db8::1]")
    assert allow.allows("::ffff:192.0.2.1")  # IPv4-mapped (dual-stack socket)
    assert not allow.allows("203.0.113.9")
    assert not allow.allows("sbc.example.com")  # never a name
    with pytest.raises(ValueError, match=r"10\.0\.0\.300"):
        AllowList(["10.0.0.300/8"])


def test_token_bucket_spends_burst_then_refills_at_rate() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3)
    assert [buckets.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", 0.0) == pytest.approx(0.5)
    assert buckets.take("b", 0.0) == 0.0  # other keys have their own bucket
    assert buckets.take("a", 0.25) == pytest.approx(0.25)  # half a token so far
    assert buckets.take("a", 0.5) == 0.0
    assert buckets.take("a", 100.0) == 0.0  # refill is capped at the burst
    assert [buckets.take("a", 100.0) for _ in range(3)][-1] > 0


def test_token_buckets_evict_the_least_recently_used_key() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1, max_keys=2)
    buckets.take("a", 0.0)
    buckets.take("b", 0.0)
    buckets.take("a", 0.0)  # "a" is now the most recent (and empty)
    buckets.take("c", 0.0)  # evicts "b"
    assert len(buckets) == 2
    assert buckets.take("b", 0.0) == 0.0  # a fresh, full bucket again
    assert buckets.take("c", 0.0) > 0


def test_refusal_needs_a_final_error_status() -> None:
    with pytest.raises(LocalProtocolError):
        Refusal(200, "bad")
    assert Refusal(None, "dropped").status is None


# -- through the user agent -----------------------------------------------------------------


def test_source_outside_the_allow_list_gets_403_and_nothing_is_kept() -> None:
    h = Harness(allow_sources=["192.0.2.0/24"])
    events, responses = h.send(request("INVITE", source=STRANGER, body=SDP), STRANGER)
    assert [r.status for r in responses] == [403]
    assert "not allowed" in (responses[0].headers.get("Warning") or "")
    (refused,) = events
    assert isinstance(refused, RequestRefused) and refused.refusal.cause == "source-denied"
    assert h.ua.next_timer() is None  # no transaction, no dialog, no timer
    ack = request("ACK", source=STRANGER, to_tag=responses[0].to_tag)
    assert h.send(ack, STRANGER) == ([], [])  # a stray ACK
    events, statuses = h.invite()
    assert statuses == [100] and isinstance(events[0], InviteReceived)
    assert h.admission.counts == {"source-denied": 1}


def test_drop_action_answers_nothing() -> None:
    h = Harness(allow_sources=["192.0.2.0/24"], deny_action="drop")
    events, responses = h.send(request("OPTIONS", source=STRANGER), STRANGER)
    assert responses == []
    (refused,) = events
    assert isinstance(refused, RequestRefused) and refused.refusal.status is None


def test_draining_refuses_new_invites_and_options_but_not_running_calls() -> None:
    h = Harness(drain_retry_after=30)
    events, _ = h.invite(call_id="running")
    to_tag = h.accept(events)
    h.admission.draining = True
    for method in ("INVITE", "OPTIONS"):
        _, responses = h.send(request(method, body=SDP if method == "INVITE" else b""))
        assert [r.status for r in responses] == [503]
        assert responses[0].headers.get("Retry-After") == "30"
    events, responses = h.send(request("BYE", call_id="running", cseq=2, to_tag=to_tag))
    assert [r.status for r in responses] == [200]
    assert any(isinstance(e, ByeReceived) for e in events)
    assert h.admission.counts == {"draining": 2}


def test_allow_list_is_checked_before_draining() -> None:
    h = Harness(allow_sources=["192.0.2.0/24"])
    h.admission.draining = True
    _, responses = h.send(request("INVITE", source=STRANGER, body=SDP), STRANGER)
    assert [r.status for r in responses] == [403]


def test_per_source_invite_rate_limit() -> None:
    h = Harness(invite_rate=1.0, invite_burst=2)
    assert h.invite()[1] == [100]
    assert h.invite()[1] == [100]
    events, responses = h.send(request("INVITE", body=SDP))
    assert [r.status for r in responses] == [503]
    assert responses[0].headers.get("Retry-After") == "1"
    (refused,) = events
    assert isinstance(refused, RequestRefused) and refused.refusal.cause == "rate-limited"
    other = Source("udp", ("192.0.2.6", 5060))
    assert h.invite(other)[1] == [100]  # another SBC has its own budget
    _, responses = h.send(request("OPTIONS"))
    assert [r.status for r in responses] == [200]  # only INVITEs are rate limited
    h.now = 1.0
    assert h.invite()[1] == [100]


def test_max_calls() -> None:
    h = Harness(max_calls=1, retry_after=7)
    events, _ = h.invite(call_id="first", branch="z9hG4bK-first")
    h.accept(events)
    _, responses = h.send(request("INVITE", body=SDP))
    assert [(r.status, r.headers.get("Retry-After")) for r in responses] == [(503, "7")]
    # A retransmission of the running call's INVITE is absorbed, not screened.
    retransmission = request("INVITE", call_id="first", branch="z9hG4bK-first", body=SDP)
    _, responses = h.send(retransmission)
    assert [r.status for r in responses] == [200]
    h.calls = 0
    assert h.invite()[1] == [100]
    assert h.admission.counts == {"max-calls": 1}


def test_refused_invite_retransmissions_are_screened_and_answered_again() -> None:
    h = Harness(max_calls=1)
    h.calls = 1
    invite = request("INVITE", body=SDP, branch="z9hG4bK-same", call_id="same")
    assert [r.status for r in h.send(invite)[1]] == [503]
    assert [r.status for r in h.send(invite)[1]] == [503]
    assert h.admission.counts == {"max-calls": 2}


def test_digest_authentication_runs_last() -> None:
    authenticator = DigestAuthenticator("srs", {"sbc": "pw"})
    h = Harness(max_calls=1, authenticator=authenticator)
    _, responses = h.send(request("INVITE", body=SDP))
    assert [r.status for r in responses] == [401]
    assert len(responses[0].headers.get_all("WWW-Authenticate")) == 2
    h.calls = 1
    _, responses = h.send(request("INVITE", body=SDP))
    assert [r.status for r in responses] == [503]  # full: no challenge round trip
    assert h.admission.counts == {"auth-challenge": 1, "max-calls": 1}


def test_oversized_request_gets_513() -> None:
    ua = UserAgent(local_host="192.0.2.10", local_port=5060, max_message_size=2000)
    big = request("INVITE", body=SDP, extra=("X-Padding: " + "x" * 2000,))
    ua.receive(big, SBC, 0.0)
    (event,) = ua.events()
    assert isinstance(event, MalformedMessage) and event.responded
    (out,) = ua.data_to_send()
    response = parse_message(out.data)
    assert isinstance(response, SipResponse) and response.status == 513
    assert ua.next_timer() is None
    with pytest.raises(LocalProtocolError):
        UserAgent(local_host="192.0.2.10", local_port=5060, max_message_size=70000)


def test_admission_from_settings() -> None:
    settings = load_settings(
        env={},
        overrides={
            "limits.allow_sources": ["192.0.2.0/24"],
            "limits.invite_rate": 0,
            "limits.max_calls": 3,
            "drain.retry_after_s": 44,
            "sip.advertise": "198.51.100.7",
            "sip.auth.enabled": True,
            "sip.auth.users": {"sbc": "pw"},
            "sip.auth.algorithms": ["MD5"],
        },
    )
    admission = admission_from_settings(settings, active_calls=lambda: 0)
    assert admission.allow.allows("192.0.2.9") and not admission.allow.allows("192.0.3.1")
    assert admission.buckets is None  # invite_rate 0: no rate limit
    assert (admission.max_calls, admission.drain_retry_after, admission.agent) == (
        3,
        44,
        "198.51.100.7",
    )
    assert admission.authenticator is not None
    assert admission.authenticator.algorithms == ("MD5",)
    defaults = admission_from_settings(load_settings(env={}), active_calls=lambda: 0)
    assert defaults.authenticator is None and defaults.buckets is not None
    assert (defaults.buckets.rate, defaults.buckets.burst) == (50.0, 100)
