"""The admission hook of the user agent: a request screen and the refusal it may return.

A *screen* is consulted by :class:`~siprec_bridge.sip.ua.UserAgent` for every new request
outside a dialog (no To tag; not ACK or CANCEL), after retransmissions were absorbed and
before any transaction or dialog exists.  It returns ``None`` to let the request through or
a :class:`Refusal`.  A refusal is answered *statelessly* (as Kamailio's ``sl_send_reply``):
no transaction, no dialog, nothing kept — a retransmitted request is simply screened and
answered again, and the ACK to a refused INVITE is a stray ACK that is dropped (RFC 3261
§17.2.3).  This is what keeps a flood of refused INVITEs from holding any resources.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import LocalProtocolError
from .message import SipRequest
from .transaction import Source


@dataclass(frozen=True)
class Refusal:
    """How to refuse a request.

    ``status`` is the final response (e.g. 401, 403, 503) or ``None`` to drop the request
    without an answer.  ``headers`` are added to the response (``Retry-After``,
    ``WWW-Authenticate``, ``Warning``, ...).  ``cause`` is a short fixed token for logs and
    metrics (``"source-denied"``, ``"draining"``, ``"rate-limited"``, ...), never free text.
    """

    status: int | None
    cause: str
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.status is not None and not 300 <= self.status <= 699:
            raise LocalProtocolError(f"a refusal needs a 3xx-6xx status, not {self.status}")


Screen = Callable[[SipRequest, Source, float], "Refusal | None"]
"""``screen(request, source, now)``: ``None`` to accept, a :class:`Refusal` to refuse."""
