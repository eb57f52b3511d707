"""UAS dialog state (RFC 3261 §12) and in-dialog request construction (§12.2.1.1).

A :class:`Dialog` is created when an initial INVITE arrives (so that its :class:`DialogId`,
including the local tag we will put in every response > 100, is known to the application
at once), becomes *early* or *confirmed* when the first 101-299 response is sent (§12.1.1)
and ends with BYE, CANCEL, an ACK timeout or a rejected INVITE.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import SipParseError
from .message import Headers, SipRequest, parse_name_addr
from .transaction import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    Source,
)

_URI_SCHEME_RE = re.compile(r"(?:sips?|tel):[^\s<>]+", re.IGNORECASE)


@dataclass(frozen=True)
class DialogId:
    """RFC 3261 §12: Call-ID, local tag (ours, the To tag we send) and remote tag (From)."""

    call_id: str
    local_tag: str
    remote_tag: str


class DialogState(enum.Enum):
    INIT = "init"  # initial INVITE received, no response > 100 sent yet
    EARLY = "early"  # 101-199 with our tag sent (§12.1)
    CONFIRMED = "confirmed"  # 2xx sent
    TERMINATING = "terminating"  # we sent BYE (or are about to, after the ACK)


def uri_params(uri: str) -> dict[str, str | None]:
    """Parameters of a SIP URI (``sip:host;lr;transport=tcp`` → {"lr": None, ...})."""
    params: dict[str, str | None] = {}
    for item in uri.split("?", 1)[0].split(";")[1:]:
        name, sep, value = item.partition("=")
        params[name.strip().lower()] = value.strip() if sep else None
    return params


def contact_target(request: SipRequest) -> str | None:
    """The remote target from the Contact header (§12.1.1), or None if absent/unusable."""
    value = request.headers.get("Contact")
    if value is None:
        return None
    try:
        uri = parse_name_addr(value).uri
    except SipParseError:
        return None
    return uri if _URI_SCHEME_RE.fullmatch(uri) else None


def source_uri(source: Source) -> str:
    """A SIP URI for the address a message came from (fallback remote target)."""
    host, port = source.addr
    if ":" in host:
        host = f"[{host}]"
    transport = "" if source.transport == "udp" else f";transport={source.transport}"
    return f"sip:{host}:{port}{transport}"


@dataclass(eq=False)
class Dialog:
    """One UAS dialog and the bookkeeping the user agent needs around it."""

    id: DialogId
    remote_party: str  # From of the initial INVITE: the To of our requests
    local_party: str  # To of the initial INVITE + our tag: the From of our requests
    remote_target: str
    route_set: tuple[str, ...]
    remote_cseq: int
    source: Source  # where we last heard the peer from (our requests go there)
    state: DialogState = DialogState.INIT
    local_cseq: int = 0
    invite_tx: InviteServerTransaction | None = None  # latest INVITE of this dialog
    offer_tx: InviteServerTransaction | NonInviteServerTransaction | None = None
    deferred_bye: tuple[tuple[str, str], ...] | None = None  # send_bye waiting for the ACK
    session_expires: float | None = None  # RFC 4028 deadline for a refresh, if negotiated
    ended: bool = False

    @property
    def awaiting_ack(self) -> bool:
        tx = self.invite_tx
        return (
            tx is not None
            and tx.final_sent
            and tx.last_response is not None
            and (tx.last_response.status < 300 and not tx.acked and not tx.terminated)
        )

    def refresh_target(self, request: SipRequest) -> None:
        """Target refresh from an accepted re-INVITE/UPDATE Contact (§12.2.2, RFC 3311)."""
        target = contact_target(request)
        if target is not None:
            self.remote_target = target

    def create_request(
        self,
        method: str,
        *,
        via: str,
        user_agent: str,
        headers: Sequence[tuple[str, str]] = (),
    ) -> SipRequest:
        """Build an in-dialog request per RFC 3261 §12.2.1.1 (loose and strict routing)."""
        self.local_cseq += 1
        uri = self.remote_target
        routes = list(self.route_set)
        if routes and "lr" not in uri_params(_route_uri(routes[0])):
            # §12.2.1.1 strict router: it becomes the Request-URI, the target goes last.
            uri = _route_uri(routes.pop(0))
            routes.append(f"<{self.remote_target}>")
        out = Headers()
        out.add("Via", via)
        out.add("Max-Forwards", "70")
        for route in routes:
            out.add("Route", route)
        out.add("From", self.local_party)
        out.add("To", self.remote_party)
        out.add("Call-ID", self.id.call_id)
        out.add("CSeq", f"{self.local_cseq} {method}")
        out.add("User-Agent", user_agent)
        for name, value in headers:
            out.add(name, value)
        return SipRequest(method, uri, out)


def _route_uri(route: str) -> str:
    try:
        return parse_name_addr(route).uri
    except SipParseError:
        return route.strip().strip("<>")
