"""SIP transactions (RFC 3261 §17, RFC 6026), sans-I/O, one method per input.

Server side: :class:`InviteServerTransaction` (§17.2.1 as amended by RFC 6026 §8.4-8.7) and
:class:`NonInviteServerTransaction` (§17.2.2).  Client side: :class:`NonInviteClientTransaction`
(§17.1.2), used for the BYE the UAS sends.  Timers are plain deadlines; the owner asks
:meth:`next_deadline` and calls ``handle_timer(now)`` when it has passed.  Every input
returns the bytes to transmit (retransmissions) and :class:`TxEvent` s for the TU.

INVITE server transaction states (``reliable``: TCP/TLS)::

                 respond(1xx)           respond(300-699)                 ACK
    PROCEEDING ────────────▶ itself ─────────────────────▶ COMPLETED ──────────▶ CONFIRMED
        │  retransmitted INVITE: resend last response   │ G: resend (UDP only)      │ I (T4 UDP,
        │                                               │ H: AckTimeout, TERMINATED │ 0 TCP)
        │ respond(2xx)                                  ▼                           ▼
        └────────────▶ ACCEPTED (RFC 6026) ──────── timer L (64·T1) ──────────▶ TERMINATED
                        G: resend 2xx, T1 doubling to T2 (also over TCP: §13.3.1.4)
                        H: no ACK → AckTimeout(accepted=True)
                        ACK: stop G/H, absorb retransmissions until L

Non-INVITE server: TRYING ─1xx▶ PROCEEDING ─final▶ COMPLETED ─J (64·T1 UDP, 0 TCP)▶ TERMINATED.
Non-INVITE client: TRYING ─1xx▶ PROCEEDING ─final▶ COMPLETED ─K (T4 UDP, 0 TCP)▶ TERMINATED,
E retransmits the request over UDP (T1 doubling to T2; T2 once PROCEEDING), F (64·T1) ends
with :class:`RequestTimeout`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from .errors import LocalProtocolError, SipParseError
from .message import BRANCH_MAGIC_COOKIE, SipRequest, SipResponse

Address = tuple[str, int]
TransportName = Literal["udp", "tcp", "tls"]


@dataclass(frozen=True)
class Source:
    """Where a message came from / goes to; ``conn_id`` identifies a stream connection."""

    transport: TransportName
    addr: Address
    conn_id: int | None = None

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"


@dataclass(frozen=True)
class Outgoing:
    """Bytes to send; for TCP/TLS ``dest.conn_id`` names the connection to write to."""

    data: bytes
    dest: Source


@dataclass(frozen=True)
class TimerConfig:
    """RFC 3261 §17.1.1.1 / Table 4 timer values in seconds."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


class TxEvent:
    """Something a transaction reports to its TU."""


@dataclass(frozen=True)
class AckTimeout(TxEvent):
    """Timer H fired: no ACK for a 2xx (``accepted``, RFC 6026) or for a non-2xx final."""

    accepted: bool


@dataclass(frozen=True)
class AnswerTimeout(TxEvent):
    """The TU gave no final response within 64·T1 (the client's timer B/F has expired)."""


@dataclass(frozen=True)
class RequestTimeout(TxEvent):
    """Timer F fired: no final response to our request (RFC 3261 §17.1.2.2)."""


class State(enum.Enum):
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


TransactionKey = tuple[str, str, str]


def server_key(request: SipRequest) -> TransactionKey:
    """Server transaction key of RFC 3261 §17.2.3.

    With an RFC 3261 branch: (branch, sent-by, method), where ACK maps to INVITE.  Without
    the magic cookie (RFC 2543 peers) the key is built from Request-URI, From tag, Call-ID,
    CSeq number and the top Via, which matches retransmissions, the ACK of a non-2xx and a
    CANCEL (looked up with method INVITE) to their INVITE.
    """
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    if via.branch and via.branch.startswith(BRANCH_MAGIC_COOKIE):
        return via.branch, via.sent_by.lower(), method
    number, _ = request.cseq
    legacy = f"{request.uri}|{request.from_tag}|{request.call_id}|{number}|{via.sent_by}"
    return "", legacy.lower(), method


def cancel_target_key(cancel: SipRequest) -> TransactionKey:
    """Key of the INVITE server transaction a CANCEL refers to (RFC 3261 §9.2)."""
    branch, sent_by, _ = server_key(cancel)
    return branch, sent_by, "INVITE"


def client_key(message: SipRequest | SipResponse) -> tuple[str, str]:
    """Client transaction key of RFC 3261 §17.1.3: (top Via branch, CSeq method)."""
    branch = message.top_via.branch
    if branch is None:
        raise SipParseError("response without Via branch")
    return branch, message.cseq[1]


class _Timers:
    """Named deadlines of one transaction."""

    def __init__(self) -> None:
        self.deadlines: dict[str, float] = {}

    def start(self, name: str, at: float) -> None:
        self.deadlines[name] = at

    def stop(self, *names: str) -> None:
        for name in names:
            self.deadlines.pop(name, None)

    def clear(self) -> None:
        self.deadlines.clear()

    def next(self) -> float | None:
        return min(self.deadlines.values()) if self.deadlines else None

    def pop_due(self, now: float) -> str | None:
        """Remove and return the earliest timer due at ``now``."""
        due = [(at, name) for name, at in self.deadlines.items() if at <= now]
        if not due:
            return None
        _, name = min(due)
        del self.deadlines[name]
        return name


class _Transaction:
    """Shared plumbing: state, timers, last message sent."""

    def __init__(self, request: SipRequest, dest: Source, config: TimerConfig) -> None:
        self.request = request
        self.dest = dest
        self.config = config
        self.reliable = dest.reliable
        self.state = State.TRYING
        self.timers = _Timers()

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def next_deadline(self) -> float | None:
        return self.timers.next()

    def _terminate(self) -> None:
        self.state = State.TERMINATED
        self.timers.clear()

    def handle_timer(self, now: float) -> tuple[list[bytes], list[TxEvent]]:
        """Fire every timer due at ``now``; return (data to send, events)."""
        sends: list[bytes] = []
        events: list[TxEvent] = []
        while (name := self.timers.pop_due(now)) is not None:
            self._fire(name, now, sends, events)
        return sends, events

    def _fire(self, name: str, now: float, sends: list[bytes], events: list[TxEvent]) -> None:
        raise NotImplementedError


class _ServerTransaction(_Transaction):
    """Common server part: the last response and the guard on the TU's answer.

    The ``answer`` timer (not in RFC 3261) fires :class:`AnswerTimeout` when no final response was
    given within 64·T1, by which time the client transaction has given up (timer B/F), so that
    a TU that never answers cannot leak transactions and dialogs.
    """

    def __init__(self, request: SipRequest, dest: Source, config: TimerConfig, now: float) -> None:
        super().__init__(request, dest, config)
        self.last_response: SipResponse | None = None
        self._last_data: bytes | None = None
        self.timers.start("answer", now + 64 * config.t1)

    @property
    def final_sent(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200

    def _store(self, response: SipResponse) -> bytes:
        if self.final_sent or self.terminated:
            raise LocalProtocolError(
                f"{self.request.method} transaction already answered ({self.state.value})"
            )
        self.last_response = response
        self._last_data = response.to_bytes()
        if response.status >= 200:
            self.timers.stop("answer")
        return self._last_data

    def _fire_answer_guard(self, name: str, events: list[TxEvent]) -> bool:
        if name == "answer" and not self.final_sent:
            events.append(AnswerTimeout())
            return True
        return False


class InviteServerTransaction(_ServerTransaction):
    """RFC 3261 §17.2.1 with the RFC 6026 Accepted state (see module docstring)."""

    def __init__(self, request: SipRequest, dest: Source, config: TimerConfig, now: float) -> None:
        super().__init__(request, dest, config, now)
        self.state = State.PROCEEDING
        self.acked = False
        self._interval = config.t1

    def respond(self, response: SipResponse, now: float) -> bytes:
        """Record ``response`` and return its bytes; a final response changes state."""
        data = self._store(response)
        cfg = self.config
        if response.status >= 300:
            self.state = State.COMPLETED
            if not self.reliable:
                self._interval = cfg.t1
                self.timers.start("G", now + cfg.t1)
            self.timers.start("H", now + 64 * cfg.t1)
        elif response.status >= 200:
            # RFC 6026 §8.4 / RFC 3261 §13.3.1.4: the 2xx is retransmitted even over a
            # reliable transport, since hops beyond the next one may be unreliable.
            self.state = State.ACCEPTED
            self._interval = cfg.t1
            self.timers.start("G", now + cfg.t1)
            self.timers.start("H", now + 64 * cfg.t1)
            self.timers.start("L", now + 64 * cfg.t1)
        return data

    def receive_retransmission(self) -> bytes | None:
        """A retransmitted INVITE: resend the last response unless the ACK has come."""
        if self.state in (State.PROCEEDING, State.COMPLETED) or (
            self.state is State.ACCEPTED and not self.acked
        ):
            return self._last_data
        return None

    def receive_ack(self, now: float) -> bool:
        """An ACK matched this transaction; True if it is the first one (pass to the TU)."""
        if self.state is State.COMPLETED:
            self.state = State.CONFIRMED
            self.timers.stop("G", "H")
            if self.reliable:
                self._terminate()
            else:
                self.timers.start("I", now + self.config.t4)
            return True
        if self.state is State.ACCEPTED and not self.acked:
            self.stop_retransmissions()
            return True
        return False

    def stop_retransmissions(self) -> None:
        """Stop resending the 2xx (its ACK came, or the dialog ended); keep absorbing."""
        self.acked = True
        self.timers.stop("G", "H")

    def _fire(self, name: str, now: float, sends: list[bytes], events: list[TxEvent]) -> None:
        if self._fire_answer_guard(name, events):
            return
        if name == "G" and self._last_data is not None:
            sends.append(self._last_data)
            self._interval = min(2 * self._interval, self.config.t2)
            self.timers.start("G", now + self._interval)
        elif name == "H":
            events.append(AckTimeout(accepted=self.state is State.ACCEPTED))
            self._terminate()
        elif name in ("I", "L"):
            self._terminate()


class NonInviteServerTransaction(_ServerTransaction):
    """RFC 3261 §17.2.2."""

    def respond(self, response: SipResponse, now: float) -> bytes:
        data = self._store(response)
        if response.status < 200:
            self.state = State.PROCEEDING
        elif self.reliable:
            self._terminate()
        else:
            self.state = State.COMPLETED
            self.timers.start("J", now + 64 * self.config.t1)
        return data

    def receive_retransmission(self) -> bytes | None:
        """Retransmitted request: Trying absorbs it, later states resend the last response."""
        return self._last_data

    def _fire(self, name: str, now: float, sends: list[bytes], events: list[TxEvent]) -> None:
        if self._fire_answer_guard(name, events):
            return
        if name == "J":
            self._terminate()


class NonInviteClientTransaction(_Transaction):
    """RFC 3261 §17.1.2; the caller sends :attr:`data` once, timers E/F/K do the rest."""

    def __init__(self, request: SipRequest, dest: Source, config: TimerConfig, now: float) -> None:
        super().__init__(request, dest, config)
        self.data = request.to_bytes()
        self.final_response: SipResponse | None = None
        self._interval = config.t1
        if not self.reliable:
            self.timers.start("E", now + config.t1)
        self.timers.start("F", now + 64 * config.t1)

    def receive_response(self, response: SipResponse, now: float) -> bool:
        """Handle a matching response; True when it is the (first) final response."""
        if self.state not in (State.TRYING, State.PROCEEDING):
            return False
        if response.status < 200:
            self.state = State.PROCEEDING
            return False
        self.final_response = response
        self.state = State.COMPLETED
        self.timers.stop("E", "F")
        if self.reliable:
            self._terminate()
        else:
            self.timers.start("K", now + self.config.t4)
        return True

    def _fire(self, name: str, now: float, sends: list[bytes], events: list[TxEvent]) -> None:
        cfg = self.config
        if name == "E":
            sends.append(self.data)
            if self.state is State.PROCEEDING:
                self._interval = cfg.t2
            else:
                self._interval = min(2 * self._interval, cfg.t2)
            self.timers.start("E", now + self._interval)
        elif name == "F":
            events.append(RequestTimeout())
            self._terminate()
        elif name == "K":
            self._terminate()
