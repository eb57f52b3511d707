"""SDP for a SIPREC recording server: parse/serialize (RFC 8866), answer (RFC 3264, RFC 7866 §8).

Standalone (stdlib only). Modules:

- :mod:`sdp.model` - dataclasses (:class:`SessionDescription`, :class:`Media`, ...) and lookups.
- :mod:`sdp.parser` - :func:`parse` (tolerant) and :func:`serialize` (canonical, CRLF).
- :mod:`sdp.answer` - :func:`sdp.answer.acceptable` and :func:`sdp.answer.build_answer`.

Exceptions: :class:`SdpError` (a ``ValueError``) is the only exception raised by this package.
"""

from .errors import SdpError
from .model import (
    STATIC_PAYLOAD_TYPES,
    Connection,
    Direction,
    Media,
    Origin,
    RtpMap,
    SessionDescription,
)
from .parser import MAX_SDP_SIZE, parse, serialize

__all__ = [
    "MAX_SDP_SIZE",
    "STATIC_PAYLOAD_TYPES",
    "Connection",
    "Direction",
    "Media",
    "Origin",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "parse",
    "serialize",
]
