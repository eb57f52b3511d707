"""Events the user agent reports to the application (drained with ``UserAgent.events()``).

Requests that need an application decision (:class:`InviteReceived`,
:class:`UpdateReceived`) derive from :class:`IncomingRequest` and are answered with
``UserAgent.respond``; everything else has already been answered by the user agent.
"""

from __future__ import annotations

from dataclasses import dataclass

from .dialog import DialogId
from .message import SipRequest, SipResponse
from .screen import Refusal
from .transaction import Source


class Event:
    """Base class of user agent events."""


@dataclass(frozen=True)
class IncomingRequest(Event):
    """A request the application must answer with ``UserAgent.respond``."""

    request: SipRequest
    source: Source
    dialog_id: DialogId


@dataclass(frozen=True)
class InviteReceived(IncomingRequest):
    """Initial INVITE (100 Trying already sent, RFC 3261 §17.2.1) or re-INVITE (§14.2)."""

    is_reinvite: bool


@dataclass(frozen=True)
class UpdateReceived(IncomingRequest):
    """UPDATE in a dialog (RFC 3311), e.g. a metadata-only SIPREC update."""


@dataclass(frozen=True)
class AckReceived(Event):
    """The ACK for our 2xx to an (re-)INVITE (RFC 3261 §13.3.1.4); may carry an answer."""

    dialog_id: DialogId
    request: SipRequest


@dataclass(frozen=True)
class ByeReceived(Event):
    """The peer ended the dialog; 200 OK already sent (RFC 3261 §15.1.2)."""

    request: SipRequest
    source: Source
    dialog_id: DialogId


@dataclass(frozen=True)
class CancelReceived(Event):
    """CANCEL of a pending INVITE; 200 to the CANCEL and 487 to the INVITE sent (§9.2)."""

    dialog_id: DialogId
    request: SipRequest


@dataclass(frozen=True)
class InfoReceived(Event):
    """INFO in a dialog (RFC 6086); 200 OK already sent."""

    request: SipRequest
    source: Source
    dialog_id: DialogId


@dataclass(frozen=True)
class ByeResult(Event):
    """Outcome of ``UserAgent.send_bye``: final ``status`` or ``None`` on timeout (timer F)."""

    dialog_id: DialogId
    status: int | None
    response: SipResponse | None


@dataclass(frozen=True)
class DialogTerminated(Event):
    """The dialog is gone; emitted once per dialog the application was told about.

    ``reason``: ``"bye"`` (peer BYE), ``"bye-sent"`` (our BYE completed or timed out),
    ``"cancelled"``, ``"ack-timeout"`` (no ACK for our 2xx: BYE sent, §13.3.1.4),
    ``"session-timeout"`` (RFC 4028 refresh missing: BYE sent), ``"no-answer"`` (the
    application never answered the INVITE: 500 sent).  Not emitted when the application
    itself rejects an initial INVITE.
    """

    dialog_id: DialogId
    reason: str


@dataclass(frozen=True)
class MalformedMessage(Event):
    """A message could not be parsed; ``responded`` tells whether a 4xx/5xx was sent."""

    source: Source
    error: str
    responded: bool


@dataclass(frozen=True)
class RequestRefused(Event):
    """A new request outside a dialog was refused by the screen (answered statelessly, or
    dropped when ``refusal.status`` is ``None``); no transaction or dialog was created."""

    request: SipRequest
    source: Source
    refusal: Refusal
