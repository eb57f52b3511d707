"""ws_out: the output side of siprec-bridge (standalone: stdlib, numpy, websockets).

* :mod:`ws_out.native` - sans-I/O encoder for the native WebSocket protocol v1
  (``docs/protocol.md``);
* :mod:`ws_out.sender` - asyncio adapter: one WebSocket client connection with a bounded queue;
* :mod:`ws_out.wav` - streaming WAV writer.

Exceptions (:mod:`ws_out.errors`)::

    WsOutError
     └── UsageError (ValueError)   the caller broke the API contract
         └── SenderClosedError     send() after close()
"""

from ws_out.errors import SenderClosedError, UsageError, WsOutError
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
from ws_out.sender import SenderStats, WsSender
from ws_out.wav import WavWriter

__all__ = [
    "CORRELATION_HEADERS",
    "PROTOCOL",
    "STOP_REASONS",
    "AudioFormat",
    "Mode",
    "NativeEncoder",
    "Participant",
    "SenderClosedError",
    "SenderStats",
    "StopReason",
    "Stream",
    "StreamStats",
    "UsageError",
    "WavWriter",
    "WsOutError",
    "WsSender",
    "select_sip_headers",
]
