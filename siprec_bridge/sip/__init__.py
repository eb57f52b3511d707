"""SIP stack of the SRS (RFC 3261 UAS, RFC 6026, RFC 3581, RFC 4028), sans-I/O.

Layers (each module only imports the ones above it)::

    errors       SipError tree: SipParseError, SipFramingError, LocalProtocolError
    message      Headers, SipRequest/SipResponse, parse_message, StreamFramer, build_response
    transaction  server INVITE / non-INVITE and client non-INVITE transactions (§17)
    dialog       DialogId, Dialog (§12)
    screen       Refusal and the Screen hook (admission control before any state exists)
    events       what the user agent reports to the application
    ua           UserAgent: the UAS core (receive / handle_timer / events / data_to_send)
    transport    SipServer: the thin asyncio adapter (UDP + TCP on one port, TLS), TLS context
"""

from .dialog import DialogId
from .errors import LocalProtocolError, SipError, SipFramingError, SipParseError
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
    MAX_HEADER_LINE,
    MAX_HEADERS,
    MAX_MESSAGE_SIZE,
    Headers,
    NameAddr,
    SipRequest,
    SipResponse,
    StreamFramer,
    Via,
    build_response,
    parse_content_type,
    parse_cseq,
    parse_message,
    parse_name_addr,
    parse_via,
    warning_header,
)
from .screen import Refusal, Screen
from .transaction import Address, Outgoing, Source
from .transport import SipServer, server_tls_context
from .ua import UserAgent

__all__ = [
    "MAX_HEADERS",
    "MAX_HEADER_LINE",
    "MAX_MESSAGE_SIZE",
    "AckReceived",
    "Address",
    "ByeReceived",
    "ByeResult",
    "CancelReceived",
    "DialogId",
    "DialogTerminated",
    "Event",
    "Headers",
    "IncomingRequest",
    "InfoReceived",
    "InviteReceived",
    "LocalProtocolError",
    "MalformedMessage",
    "NameAddr",
    "Outgoing",
    "Refusal",
    "RequestRefused",
    "Screen",
    "SipError",
    "SipFramingError",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipServer",
    "Source",
    "StreamFramer",
    "UpdateReceived",
    "UserAgent",
    "Via",
    "build_response",
    "parse_content_type",
    "parse_cseq",
    "parse_message",
    "parse_name_addr",
    "parse_via",
    "server_tls_context",
    "warning_header",
]
