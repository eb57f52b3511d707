"""The exceptions of :mod:`siprec_bridge.sip`.

Exception tree (h11 style: who is at fault decides the class)::

    Exception
     └── SipError                 base of everything raised by this package
          ├── SipParseError       the peer sent a message we cannot parse (RFC 3261 §7, §25);
          │                       carries the status to answer and whatever request part parsed
          ├── SipFramingError     a stream (TCP/TLS) cannot be framed (RFC 3261 §18.3);
          │                       the connection must be closed
          └── LocalProtocolError  the application misused the API (e.g. answered twice)

Parsers raise only :class:`SipParseError` / :class:`SipFramingError`; the user agent turns
them into ``400``-class responses or ``MalformedMessage`` events and never lets them escape
:meth:`UserAgent.receive <siprec_bridge.sip.ua.UserAgent.receive>`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import SipRequest


class SipError(Exception):
    """Base class of all errors raised by the SIP stack."""


class SipParseError(SipError):
    """A message from the peer is malformed.

    ``status`` is the response code a UAS should answer with (400 unless stated), ``partial``
    is the request as far as it could be parsed (start line and the well-formed header lines,
    no body) or ``None`` for responses and unreadable start lines.  ``str(exc)`` names the
    problem and is suitable for a ``Warning: 399`` header (RFC 3261 §20.43).
    """

    def __init__(self, message: str, status: int = 400, partial: SipRequest | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.partial = partial


class SipFramingError(SipError):
    """A byte stream cannot be split into messages; the connection must be closed.

    ``messages`` holds the complete messages that were framed from the same input before the
    error, so that the transport can still process them.
    """

    def __init__(self, message: str, messages: list[bytes] | None = None) -> None:
        super().__init__(message)
        self.messages: list[bytes] = messages if messages is not None else []


class LocalProtocolError(SipError):
    """The application called the user agent in a way the protocol does not allow."""
