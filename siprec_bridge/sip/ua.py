"""The UAS core of the SRS: transactions, dialogs and the requests it answers by itself.

Sans-I/O (websockets/aioquic style) — the calling protocol is::

    ua.receive(data, source, now)       # one datagram, or one message from a StreamFramer
    ua.handle_timer(now)                # when now >= ua.next_timer()
    for event in ua.events(): ...       # InviteReceived → ua.respond(event, 200, body=...)
    for out in ua.data_to_send(): ...   # send out.data to out.dest (conn_id for TCP/TLS)

What the user agent does by itself (RFC 3261 section in brackets):

* 100 Trying to every INVITE at once [§17.2.1]; retransmissions absorbed [§17.2.3];
* OPTIONS → 200 with Allow/Accept/Supported, in or out of a dialog [§11.2];
* unsupported known methods → 405 with Allow, unknown methods → 501 [§8.2.1];
* Max-Forwards 0 → 483 [§8.2.2, §16.3]; merged initial INVITE → 482 [§8.2.2.2];
* To tag for an unknown dialog → 481; lower CSeq in a dialog → 500 [§12.2.2];
* re-INVITE/UPDATE while an offer is unanswered → 500 + Retry-After, re-INVITE while the
  2xx of the previous INVITE is unacknowledged → 491 [§14.2, RFC 3311 §5.2];
* BYE → 200 and dialog end [§15.1.2]; CANCEL → 200 and 487 to the INVITE [§9.2];
  INFO → 200 [RFC 6086];
* parse failures → 400 (505/513) with ``Warning: 399`` when the request allows it [§21.4];
* no ACK for a 2xx within 64·T1 → BYE [§13.3.1.4]; RFC 4028 session timer as the
  non-refresher → BYE when the refresh is late [RFC 4028 §10];
* responses routed per §18.2.2 and RFC 3581 (``received``/``rport`` stamped on the Via);
* admission: new requests outside a dialog pass the optional ``screen``
  (:mod:`~siprec_bridge.sip.screen`); a :class:`Refusal` is answered statelessly and reported
  as :class:`RequestRefused`; requests above ``max_message_size`` get 513 [§21.5.14].
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from .dialog import Dialog, DialogId, DialogState, contact_target, source_uri
from .errors import LocalProtocolError, SipParseError
from .events import (
    AckReceived,
    ByeReceived,
    ByeResult,
    CancelReceived,
    DialogTerminated,
    Event,
    IncomingRequest,
    InfoReceived,
    InviteReceived,
    MalformedMessage,
    RequestRefused,
    UpdateReceived,
)
from .message import (
    BRANCH_MAGIC_COOKIE,
    MAX_MESSAGE_SIZE,
    Headers,
    SipRequest,
    SipResponse,
    build_response,
    parse_message,
    split_quoted,
    warning_header,
)
from .screen import Refusal, Screen
from .transaction import (
    AckTimeout,
    Address,
    AnswerTimeout,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    Outgoing,
    RequestTimeout,
    Source,
    State,
    TimerConfig,
    TransactionKey,
    TxEvent,
    cancel_target_key,
    client_key,
    server_key,
)

__all__ = [
    "AckReceived",
    "Address",
    "ByeReceived",
    "ByeResult",
    "CancelReceived",
    "DialogId",
    "DialogTerminated",
    "Event",
    "IncomingRequest",
    "InfoReceived",
    "InviteReceived",
    "MalformedMessage",
    "Outgoing",
    "Refusal",
    "RequestRefused",
    "Screen",
    "Source",
    "UpdateReceived",
    "UserAgent",
]

ServerTransaction = InviteServerTransaction | NonInviteServerTransaction
_Timed = InviteServerTransaction | NonInviteServerTransaction | NonInviteClientTransaction | Dialog

HANDLED_METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE", "INFO"})
KNOWN_METHODS = HANDLED_METHODS | {
    "REGISTER",
    "SUBSCRIBE",
    "NOTIFY",
    "PRACK",
    "REFER",
    "MESSAGE",
    "PUBLISH",
}
MIN_SE = 90  # RFC 4028 §5: the smallest Session-Expires we accept
_SE_RE = re.compile(r"\s*([0-9]{1,9})\s*(;.*)?", re.DOTALL)


@dataclass
class _ByeContext:
    tx: NonInviteClientTransaction
    dialog: Dialog
    notify: bool  # report a ByeResult (BYEs requested by the application)


def _new_tag() -> str:
    return secrets.token_hex(6)


def _same_host(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a.lower() == b.lower()


def _session_interval(request: SipRequest) -> int | None:
    """Session-Expires delta-seconds (RFC 4028 §4), None if absent or unreadable."""
    value = request.headers.get("Session-Expires")
    m = _SE_RE.fullmatch(value) if value is not None else None
    return int(m.group(1)) if m else None


class UserAgent:
    """Sans-I/O SIP user agent server with a BYE-only client side (see module docstring)."""

    def __init__(
        self,
        *,
        local_host: str,
        local_port: int,
        user_agent: str = "siprec-bridge",
        t1: float = 0.5,
        t2: float = 4.0,
        t4: float = 5.0,
        allow: Sequence[str] = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE", "INFO"),
        accept: Sequence[str] = (
            "application/sdp",
            "multipart/mixed",
            "application/rs-metadata+xml",
            "application/rs-metadata",
        ),
        supported: Sequence[str] = ("timer", "replaces", "siprec"),
        local_tls_port: int | None = None,
        screen: Screen | None = None,
        max_message_size: int = MAX_MESSAGE_SIZE,
    ) -> None:
        """``local_tls_port`` is the port put in Contact and Via for TLS (``local_port`` for
        UDP/TCP); ``screen`` is the admission hook; ``max_message_size`` (at most
        :data:`~siprec_bridge.sip.message.MAX_MESSAGE_SIZE`) the largest request accepted."""
        unhandled = set(allow) - HANDLED_METHODS
        if unhandled:
            raise LocalProtocolError(f"cannot allow unhandled methods {sorted(unhandled)}")
        if not (0 < t1 <= t2 and t4 > 0):
            raise LocalProtocolError("timers must satisfy 0 < t1 <= t2 and t4 > 0")
        if not 0 < max_message_size <= MAX_MESSAGE_SIZE:
            raise LocalProtocolError(f"max_message_size must be 1..{MAX_MESSAGE_SIZE}")
        self.local_host = local_host
        self.local_port = local_port
        self.local_tls_port = local_tls_port
        self.screen = screen
        self.max_message_size = max_message_size
        self.user_agent = user_agent
        self.config = TimerConfig(t1=t1, t2=t2, t4=t4)
        self.allow = tuple(allow)
        self.accept = tuple(accept)
        self.supported = tuple(supported)
        self._server_txs: dict[TransactionKey, ServerTransaction] = {}
        self._tx_dialog: dict[TransactionKey, Dialog] = {}
        self._merge_index: dict[tuple[str, str, int], TransactionKey] = {}
        self._client_txs: dict[tuple[str, str], _ByeContext] = {}
        self._dialogs: dict[DialogId, Dialog] = {}
        self._events: list[Event] = []
        self._outgoing: list[Outgoing] = []
        self._heap: list[tuple[float, int, _Timed]] = []
        self._armed: dict[int, float] = {}
        self._counter = itertools.count()
        self._now = 0.0

    # ------------------------------------------------------------------ public API

    def receive(self, data: bytes, source: Source, now: float) -> None:
        """Process one message from ``source``; never raises for bad input."""
        self._now = now
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._malformed(exc, source)
            return
        if isinstance(message, SipResponse):
            self._receive_response(message, now)
        elif len(data) > self.max_message_size:
            limit = self.max_message_size
            error = f"message of {len(data)} bytes exceeds {limit}"
            self._malformed(SipParseError(error, 513, message), source)
        else:
            self._receive_request(message, source, now)

    def handle_timer(self, now: float) -> None:
        """Fire every transaction and dialog timer due at ``now``."""
        self._now = now
        while self._heap and self._heap[0][0] <= now:
            deadline, _, obj = heapq.heappop(self._heap)
            if self._armed.get(id(obj)) == deadline:
                del self._armed[id(obj)]
            if self._is_stale(obj, deadline):
                continue
            if isinstance(obj, Dialog):
                self._session_expired(obj, now)
                continue
            sends, tx_events = obj.handle_timer(now)
            for data in sends:
                self._send(data, obj.dest)
            for tx_event in tx_events:
                self._on_tx_event(obj, tx_event, now)
            self._after_tx(obj)

    def next_timer(self) -> float | None:
        """Absolute time of the next timer, or None."""
        while self._heap:
            deadline, _, obj = self._heap[0]
            if not self._is_stale(obj, deadline):
                return deadline
            heapq.heappop(self._heap)
            if self._armed.get(id(obj)) == deadline:
                del self._armed[id(obj)]
        return None

    def events(self) -> list[Event]:
        """Drain the pending events."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[Outgoing]:
        """Drain the pending outgoing messages."""
        out, self._outgoing = self._outgoing, []
        return out

    def dialog(self, dialog_id: DialogId) -> Dialog | None:
        """The live dialog with this id (read-only use), or None."""
        return self._dialogs.get(dialog_id)

    def respond(
        self,
        request_event: IncomingRequest,
        status: int,
        reason: str | None = None,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        now: float | None = None,
    ) -> None:
        """Answer an INVITE/UPDATE event with a 101-699 response.

        For 2xx the user agent adds Contact (and Allow/Supported for INVITE and the RFC 4028
        Session-Expires when negotiated).  Raises :class:`LocalProtocolError` if the request
        was already answered finally (also by the UA itself: CANCEL, BYE, timeout).
        ``now`` defaults to the time of the last input.
        """
        if now is not None:
            self._now = now
        if not 101 <= status <= 699:
            raise LocalProtocolError(f"cannot answer with status {status} (use 101-699)")
        key = server_key(request_event.request)
        tx = self._server_txs.get(key)
        dialog = self._tx_dialog.get(key)
        if tx is None or dialog is None or tx.request is not request_event.request:
            raise LocalProtocolError("the request is no longer pending (answered or timed out)")
        if tx.final_sent:
            raise LocalProtocolError(f"the request was already answered ({tx.last_response})")
        self._respond_in_dialog(
            tx, dialog, status, reason, headers=headers, body=body, content_type=content_type
        )

    def send_bye(
        self, dialog_id: DialogId, now: float, *, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """End a confirmed dialog with BYE (RFC 3261 §15.1.1); result: :class:`ByeResult`.

        If our 2xx is not yet acknowledged the BYE is sent when the ACK (or its timeout)
        comes (§15).  Raises :class:`LocalProtocolError` for unknown, unconfirmed or already
        terminating dialogs.
        """
        self._now = now
        dialog = self._dialogs.get(dialog_id)
        if dialog is None:
            raise LocalProtocolError(f"no such dialog {dialog_id}")
        if dialog.state is DialogState.TERMINATING:
            raise LocalProtocolError("BYE already sent")
        if dialog.state is not DialogState.CONFIRMED:
            raise LocalProtocolError("dialog not confirmed: answer the INVITE instead")
        dialog.state = DialogState.TERMINATING
        if dialog.awaiting_ack:
            dialog.deferred_bye = tuple(headers)
            return
        self._send_bye(dialog, tuple(headers), now, notify=True)

    # ------------------------------------------------------------------ output helpers

    def _send(self, data: bytes, dest: Source) -> None:
        self._outgoing.append(Outgoing(data, dest))

    def _hostport(self, transport: str) -> str:
        host = f"[{self.local_host}]" if ":" in self.local_host else self.local_host
        port = self.local_port
        if transport == "tls" and self.local_tls_port is not None:
            port = self.local_tls_port
        return f"{host}:{port}"

    def _contact(self, dest: Source) -> str:
        return f"<sip:{self._hostport(dest.transport)};transport={dest.transport}>"

    def _capabilities(self) -> list[tuple[str, str]]:
        return [
            ("Allow", ", ".join(self.allow)),
            ("Accept", ", ".join(self.accept)),
            ("Supported", ", ".join(self.supported)),
        ]

    def _answer(
        self,
        tx: ServerTransaction,
        status: int,
        *,
        headers: Sequence[tuple[str, str]] = (),
        to_tag: str | None = None,
        reason: str | None = None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> None:
        """Send a response through ``tx`` (the UA's own answers and the application's)."""
        all_headers = [("Server", self.user_agent), *headers]
        response = build_response(
            tx.request,
            status,
            reason,
            to_tag=to_tag if to_tag is not None else _new_tag(),
            headers=all_headers,
            body=body,
            content_type=content_type,
        )
        self._send(tx.respond(response, self._now), tx.dest)
        self._after_tx(tx)

    # ------------------------------------------------------------------ scheduling

    def _schedule(self, obj: _Timed) -> None:
        deadline = obj.session_expires if isinstance(obj, Dialog) else obj.next_deadline()
        if deadline is None or self._armed.get(id(obj)) == deadline:
            return
        self._armed[id(obj)] = deadline
        heapq.heappush(self._heap, (deadline, next(self._counter), obj))

    @staticmethod
    def _is_stale(obj: _Timed, deadline: float) -> bool:
        if isinstance(obj, Dialog):
            return obj.ended or obj.session_expires != deadline
        return obj.next_deadline() != deadline

    def _after_tx(self, tx: ServerTransaction | NonInviteClientTransaction) -> None:
        """Reschedule a transaction, or forget it once terminated."""
        if not tx.terminated:
            self._schedule(tx)
            return
        self._armed.pop(id(tx), None)
        if isinstance(tx, NonInviteClientTransaction):
            self._client_txs.pop(client_key(tx.request), None)
            return
        key = server_key(tx.request)
        if self._server_txs.get(key) is tx:
            del self._server_txs[key]
            self._tx_dialog.pop(key, None)
            request = tx.request
            merge = (request.call_id, request.from_tag or "", request.cseq[0])
            if self._merge_index.get(merge) == key:
                del self._merge_index[merge]

    # ------------------------------------------------------------------ parse errors

    def _malformed(self, exc: SipParseError, source: Source) -> None:
        """Answer a malformed request with exc.status and a Warning when possible (§21.4)."""
        responded = False
        partial = exc.partial
        if partial is not None and partial.method != "ACK":
            try:
                self._stamp_via(partial, source)
                response = build_response(
                    partial,
                    exc.status,
                    to_tag=_new_tag(),
                    headers=[
                        ("Server", self.user_agent),
                        ("Warning", warning_header(str(exc), self.local_host)),
                    ],
                )
                dest = self._response_dest(partial, source)
            except SipParseError:
                pass
            else:
                self._send(response.to_bytes(), dest)
                responded = True
        self._events.append(MalformedMessage(source, str(exc), responded))

    def _refuse(self, request: SipRequest, source: Source, dest: Source, refusal: Refusal) -> None:
        """Answer a screened-out request statelessly (RFC 3261 §8.2.6); nothing is kept."""
        if refusal.status is not None:
            response = build_response(
                request,
                refusal.status,
                refusal.reason,
                to_tag=_new_tag(),
                headers=[("Server", self.user_agent), *refusal.headers],
            )
            self._send(response.to_bytes(), dest)
        self._events.append(RequestRefused(request, source, refusal))

    # ------------------------------------------------------------------ routing

    @staticmethod
    def _stamp_via(request: SipRequest, source: Source) -> None:
        """Add ``received`` (RFC 3261 §18.2.1) and fill ``rport`` (RFC 3581 §4) on the top Via."""
        via = request.top_via
        host = source.addr[0]
        if via.rport is not True and _same_host(via.host, host):
            return
        items = request.headers.items()
        for i, (name, value) in enumerate(items):
            if name.lower() not in ("via", "v"):
                continue
            parts = split_quoted(value)
            top = re.sub(r";\s*received\s*=[^;]*", "", parts[0], flags=re.IGNORECASE)
            if via.rport is True:
                top = re.sub(
                    r";\s*rport\s*(?=;|$)", f";rport={source.addr[1]}", top, flags=re.IGNORECASE
                )
            items[i : i + 1] = [(name, f"{top};received={host}"), *((name, p) for p in parts[1:])]
            break
        request.headers = Headers(items)

    @staticmethod
    def _response_dest(request: SipRequest, source: Source) -> Source:
        """§18.2.2 / RFC 3581: same connection for streams; symmetric UDP when behind NAT."""
        if source.reliable:
            return source
        via = request.top_via
        if via.rport is not None or not _same_host(via.host, source.addr[0]):
            return source
        return Source("udp", (via.host, via.port or 5060))

    # ------------------------------------------------------------------ requests

    def _receive_request(self, request: SipRequest, source: Source, now: float) -> None:
        self._stamp_via(request, source)
        key = server_key(request)
        if request.method == "ACK":
            self._receive_ack(request, key, source, now)
            return
        existing = self._server_txs.get(key)
        if existing is not None:
            data = existing.receive_retransmission()
            if data is not None:
                self._send(data, existing.dest)
            return
        dest = self._response_dest(request, source)
        if self.screen is not None and request.to_tag is None and request.method != "CANCEL":
            refusal = self.screen(request, source, now)
            if refusal is not None:
                self._refuse(request, source, dest, refusal)
                return
        tx: ServerTransaction
        if request.method == "INVITE":
            tx = InviteServerTransaction(request, dest, self.config, now)
        else:
            tx = NonInviteServerTransaction(request, dest, self.config, now)
        self._server_txs[key] = tx
        self._schedule(tx)
        self._dispatch(tx, key, source)

    def _dispatch(self, tx: ServerTransaction, key: TransactionKey, source: Source) -> None:
        request = tx.request
        method = request.method
        if method not in self.allow:
            status = 405 if method in KNOWN_METHODS else 501
            self._answer(tx, status, headers=[("Allow", ", ".join(self.allow))])
            return
        if isinstance(tx, NonInviteServerTransaction) and method == "CANCEL":
            self._receive_cancel(tx)
            return
        max_forwards = request.headers.get("Max-Forwards")
        if method != "OPTIONS" and max_forwards is not None and int(max_forwards) == 0:
            self._answer(tx, 483)
            return
        if request.to_tag is not None:
            self._in_dialog(tx, key, source)
        elif method == "INVITE":
            assert isinstance(tx, InviteServerTransaction)
            self._initial_invite(tx, key, source)
        elif method == "OPTIONS":
            self._answer(tx, 200, headers=self._capabilities())
        else:
            self._answer(tx, 481)

    def _session_interval_too_small(self, tx: ServerTransaction) -> bool:
        """RFC 4028 §9: 422 with Min-SE when Session-Expires is below our minimum."""
        interval = _session_interval(tx.request)
        if "timer" not in self.supported or interval is None or interval >= MIN_SE:
            return False
        self._answer(tx, 422, headers=[("Min-SE", str(MIN_SE))])
        return True

    def _initial_invite(
        self, tx: InviteServerTransaction, key: TransactionKey, source: Source
    ) -> None:
        request = tx.request
        merge = (request.call_id, request.from_tag or "", request.cseq[0])
        if merge in self._merge_index:  # §8.2.2.2: same request arrived by another path
            self._answer(tx, 482)
            return
        if self._session_interval_too_small(tx):
            return
        local_tag = _new_tag()
        dialog_id = DialogId(request.call_id, local_tag, request.from_tag or "")
        dialog = Dialog(
            id=dialog_id,
            remote_party=request.headers.get("From") or "",
            local_party=f"{request.headers.get('To')};tag={local_tag}",
            remote_target=contact_target(request) or source_uri(source),
            route_set=tuple(request.headers.get_all("Record-Route")),
            remote_cseq=request.cseq[0],
            source=source,
            invite_tx=tx,
            offer_tx=tx,
        )
        self._dialogs[dialog_id] = dialog
        self._tx_dialog[key] = dialog
        self._merge_index[merge] = key
        self._answer(tx, 100)
        self._events.append(InviteReceived(request, source, dialog_id, is_reinvite=False))

    def _in_dialog(self, tx: ServerTransaction, key: TransactionKey, source: Source) -> None:
        request = tx.request
        method = request.method
        dialog = self._dialogs.get(
            DialogId(request.call_id, request.to_tag or "", request.from_tag or "")
        )
        if dialog is None or dialog.state is DialogState.INIT:
            self._answer(tx, 481)
            return
        cseq = request.cseq[0]
        if cseq < dialog.remote_cseq:  # §12.2.2
            self._answer(tx, 500, reason="CSeq Out Of Order")
            return
        dialog.remote_cseq = cseq
        dialog.source = source
        if dialog.state is DialogState.TERMINATING and method != "BYE":
            self._answer(tx, 481)
        elif method == "BYE":
            self._answer(tx, 200)
            self._peer_bye(dialog, request, source)
        elif method == "OPTIONS":
            self._answer(tx, 200, headers=self._capabilities())
        elif method == "INFO":
            self._answer(tx, 200)
            self._events.append(InfoReceived(request, source, dialog.id))
        else:
            self._offer(tx, key, dialog, source)

    def _offer(
        self, tx: ServerTransaction, key: TransactionKey, dialog: Dialog, source: Source
    ) -> None:
        """re-INVITE or UPDATE: glare checks (§14.2, RFC 3311 §5.2), then the application."""
        request = tx.request
        pending = dialog.offer_tx
        if pending is not None and not pending.final_sent and not pending.terminated:
            retry = str(secrets.randbelow(11))
            self._answer(tx, 500, headers=[("Retry-After", retry)], reason="Request Pending")
            return
        if request.method == "INVITE" and dialog.awaiting_ack:
            self._answer(tx, 491)
            return
        if self._session_interval_too_small(tx):
            return
        self._tx_dialog[key] = dialog
        dialog.offer_tx = tx
        if isinstance(tx, InviteServerTransaction):
            dialog.invite_tx = tx
            self._answer(tx, 100)
            self._events.append(InviteReceived(request, source, dialog.id, is_reinvite=True))
        else:
            self._events.append(UpdateReceived(request, source, dialog.id))

    def _peer_bye(self, dialog: Dialog, request: SipRequest, source: Source) -> None:
        invite_tx = dialog.invite_tx
        if invite_tx is not None and invite_tx.state is State.PROCEEDING:
            self._answer(invite_tx, 487, to_tag=dialog.id.local_tag)  # §15.1.2
        elif invite_tx is not None and invite_tx.state is State.ACCEPTED:
            invite_tx.stop_retransmissions()
            self._after_tx(invite_tx)
        self._events.append(ByeReceived(request, source, dialog.id))
        self._end_dialog(dialog, "bye")

    def _receive_cancel(self, tx: NonInviteServerTransaction) -> None:
        """§9.2: 200 to the CANCEL, 487 to the INVITE if it has no final response yet."""
        target_key = cancel_target_key(tx.request)
        target = self._server_txs.get(target_key)
        dialog = self._tx_dialog.get(target_key)
        if not isinstance(target, InviteServerTransaction) or dialog is None:
            self._answer(tx, 481)
            return
        self._answer(tx, 200, to_tag=dialog.id.local_tag)
        if target.state is not State.PROCEEDING:
            return
        self._events.append(CancelReceived(dialog.id, tx.request))
        initial = dialog.state in (DialogState.INIT, DialogState.EARLY)
        if initial:
            self._end_dialog(dialog, "cancelled")
        self._respond_in_dialog(target, dialog, 487)

    def _receive_ack(
        self, request: SipRequest, key: TransactionKey, source: Source, now: float
    ) -> None:
        tx = self._server_txs.get(key)
        if isinstance(tx, InviteServerTransaction) and tx.state is State.COMPLETED:
            tx.receive_ack(now)  # ACK of a non-2xx: part of the transaction (§17.2.1)
            self._after_tx(tx)
            return
        dialog = self._dialogs.get(
            DialogId(request.call_id, request.to_tag or "", request.from_tag or "")
        )
        invite_tx = dialog.invite_tx if dialog is not None else None
        if dialog is None or invite_tx is None or invite_tx.request.cseq[0] != request.cseq[0]:
            return  # stray ACK: dropped (§17.2.3, nothing to match)
        if not invite_tx.receive_ack(now):
            return  # retransmitted ACK
        self._after_tx(invite_tx)
        dialog.source = source
        self._events.append(AckReceived(dialog.id, request))
        if dialog.deferred_bye is not None:
            self._send_bye(dialog, dialog.deferred_bye, now, notify=True)

    # ------------------------------------------------------------------ our responses

    def _respond_in_dialog(
        self,
        tx: ServerTransaction,
        dialog: Dialog,
        status: int,
        reason: str | None = None,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> None:
        """Answer an INVITE/UPDATE of ``dialog`` and update the dialog state (§12.1.1)."""
        request = tx.request
        extra = list(headers)
        if 200 <= status < 300:
            extra.append(("Contact", self._contact(tx.dest)))
            if request.method == "INVITE":
                extra.append(("Allow", ", ".join(self.allow)))
                extra.append(("Supported", ", ".join(self.supported)))
            extra.extend(self._session_timer(dialog, request))
        self._answer(
            tx,
            status,
            headers=extra,
            to_tag=dialog.id.local_tag,
            reason=reason,
            body=body,
            content_type=content_type,
        )
        if status >= 200 and dialog.offer_tx is tx:
            dialog.offer_tx = None
        if 200 <= status < 300:
            if dialog.state is not DialogState.TERMINATING:
                dialog.state = DialogState.CONFIRMED
            if request.to_tag is not None:  # re-INVITE/UPDATE: target refresh (§12.2.2)
                dialog.refresh_target(request)
        elif status < 200 and dialog.state is DialogState.INIT:
            dialog.state = DialogState.EARLY
        elif status >= 300 and dialog.state in (DialogState.INIT, DialogState.EARLY):
            self._forget_dialog(dialog)  # rejected initial INVITE: no dialog (§12.1)

    def _session_timer(self, dialog: Dialog, request: SipRequest) -> list[tuple[str, str]]:
        """RFC 4028 §9 for a 2xx: the UAC refreshes, we watch (we never send refreshes)."""
        interval = _session_interval(request)
        uac_supports = any(s.lower() == "timer" for s in request.headers.get_all("Supported"))
        if interval is None or "timer" not in self.supported or not uac_supports:
            dialog.session_expires = None
            return []
        # RFC 4028 §10: the non-refresher ends the session if no refresh arrives before
        # expiry minus min(32 s, interval / 3).
        dialog.session_expires = self._now + interval - min(32.0, interval / 3)
        self._schedule(dialog)
        return [("Session-Expires", f"{interval};refresher=uac"), ("Require", "timer")]

    # ------------------------------------------------------------------ dialog end

    def _forget_dialog(self, dialog: Dialog) -> None:
        dialog.ended = True
        dialog.session_expires = None
        if self._dialogs.get(dialog.id) is dialog:
            del self._dialogs[dialog.id]

    def _end_dialog(self, dialog: Dialog, reason: str) -> None:
        if dialog.ended:
            return
        self._forget_dialog(dialog)
        self._events.append(DialogTerminated(dialog.id, reason))

    def _send_bye(
        self, dialog: Dialog, headers: Sequence[tuple[str, str]], now: float, *, notify: bool
    ) -> None:
        dialog.state = DialogState.TERMINATING
        dialog.deferred_bye = None
        pending = dialog.offer_tx
        if pending is not None and not pending.final_sent and not pending.terminated:
            self._respond_in_dialog(pending, dialog, 487)  # the session is going away
        dest = dialog.source
        branch = BRANCH_MAGIC_COOKIE + secrets.token_hex(8)
        hostport = self._hostport(dest.transport)
        via = f"SIP/2.0/{dest.transport.upper()} {hostport};branch={branch};rport"
        request = dialog.create_request("BYE", via=via, user_agent=self.user_agent, headers=headers)
        tx = NonInviteClientTransaction(request, dest, self.config, now)
        self._client_txs[(branch, "BYE")] = _ByeContext(tx, dialog, notify)
        self._send(tx.data, dest)
        self._schedule(tx)

    def _session_expired(self, dialog: Dialog, now: float) -> None:
        dialog.session_expires = None
        if dialog.state is DialogState.TERMINATING:
            return
        self._end_dialog(dialog, "session-timeout")
        reason = ("Reason", 'SIP;cause=408;text="Session expired"')
        self._send_bye(dialog, (reason,), now, notify=False)

    # ------------------------------------------------------------------ timers and responses

    def _on_tx_event(
        self,
        tx: ServerTransaction | NonInviteClientTransaction,
        event: TxEvent,
        now: float,
    ) -> None:
        if isinstance(tx, NonInviteClientTransaction):
            context = self._client_txs.get(client_key(tx.request))
            if context is not None and isinstance(event, RequestTimeout):
                self._bye_done(context, None)
            return
        dialog = self._tx_dialog.get(server_key(tx.request))
        if dialog is None:
            return
        if isinstance(event, AckTimeout) and event.accepted and not dialog.ended:
            # §13.3.1.4: no ACK for our 2xx within 64·T1 → end the session with BYE.
            deferred = dialog.deferred_bye
            self._end_dialog(dialog, "ack-timeout")
            self._send_bye(dialog, deferred or (), now, notify=deferred is not None)
        elif isinstance(event, AnswerTimeout):
            if tx is dialog.invite_tx and dialog.state in (DialogState.INIT, DialogState.EARLY):
                self._end_dialog(dialog, "no-answer")
            self._respond_in_dialog(tx, dialog, 500, "Application Did Not Answer")

    def _receive_response(self, response: SipResponse, now: float) -> None:
        try:
            key = client_key(response)
        except SipParseError:
            return
        context = self._client_txs.get(key)
        if context is None:
            return  # stray or late retransmission (§17.1.3: no match → dropped)
        if context.tx.receive_response(response, now):
            self._bye_done(context, response)
        self._after_tx(context.tx)

    def _bye_done(self, context: _ByeContext, response: SipResponse | None) -> None:
        dialog = context.dialog
        if context.notify:
            status = response.status if response is not None else None
            self._events.append(ByeResult(dialog.id, status, response))
        self._end_dialog(dialog, "bye-sent")
