"""ws_out: the output side of siprec-bridge (standalone: stdlib, numpy, websockets, PyJWT).

* :mod:`ws_out.native` - sans-I/O encoder for the native WebSocket protocol v1
  (``docs/protocol.md``);
* :mod:`ws_out.sender` - delivery of one stream to one consumer: reconnect with backoff,
  replay buffer, resume, spool, bounded queues (``docs/delivery.md``);
* :mod:`ws_out.spool` - the disk spool for audio that could not be delivered live;
* :mod:`ws_out.auth` - handshake authentication: static headers, bearer token, per-session JWT;
* :mod:`ws_out.tls` - TLS contexts for ``wss://`` (verification, custom CA, mTLS);
* :mod:`ws_out.wav` - streaming WAV writer (append, crash-safe header flush).

Exceptions (:mod:`ws_out.errors`)::

    WsOutError
     └── UsageError (ValueError)   the caller broke the API contract
         ├── SenderClosedError     send*() after close()
         └── ConfigurationError    an unusable TLS file, JWT key or header value
"""

from ws_out.auth import ConsumerAuth, JwtOptions, SessionAuth
from ws_out.errors import ConfigurationError, SenderClosedError, UsageError, WsOutError
from ws_out.native import (
    CORRELATION_HEADERS,
    PROTOCOL,
    STOP_REASONS,
    AudioFormat,
    Mode,
    NativeEncoder,
    Participant,
    StopReason,
    Stream,
    StreamStats,
    select_sip_headers,
)
from ws_out.sender import DeliveryPolicy, ResumePoint, SenderStats, WsSender
from ws_out.spool import Spool, SpoolEntry, StreamSpool
from ws_out.tls import client_context, server_context
from ws_out.wav import WavWriter

__all__ = [
    "CORRELATION_HEADERS",
    "PROTOCOL",
    "STOP_REASONS",
    "AudioFormat",
    "ConfigurationError",
    "ConsumerAuth",
    "DeliveryPolicy",
    "JwtOptions",
    "Mode",
    "NativeEncoder",
    "Participant",
    "ResumePoint",
    "SenderClosedError",
    "SenderStats",
    "SessionAuth",
    "Spool",
    "SpoolEntry",
    "StopReason",
    "Stream",
    "StreamSpool",
    "StreamStats",
    "UsageError",
    "WavWriter",
    "WsOutError",
    "WsSender",
    "client_context",
    "select_sip_headers",
    "server_context",
]
