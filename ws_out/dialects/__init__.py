"""Dialects: the wire protocols of the consumers we stream to (``docs/dialects.md``).

One sans-I/O encoder per consumer stream, all with the contract of
:class:`ws_out.dialects.base.DialectEncoder`; :func:`get_dialect` makes one by name:

===============  ================================================================================
``native``       our protocol v1 (``docs/protocol.md``), with resume (:mod:`.native`)
``twilio``       Twilio Media Streams: JSON, base64 μ-law by default (:mod:`.twilio`)
``wavix``        the same messages in Wavix's spelling: snake_case, ``event_time``
``voxology``     Voxology Media Stream: ``init_stream``, ``*_track``, ``end_stream``
``voipbin``      VoIPBIN binary frames: ``sln``, ``rtp`` or ``audiosocket``; legs mixed
``audiosocket``  Asterisk AudioSocket packets over WebSocket (:mod:`.audiosocket`)
``rcms``         Avaya RCMS-style: every endpoint on one socket; resume, keep-alive
===============  ================================================================================
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from ws_out.dialects.audiosocket import AudioSocketDialect
from ws_out.dialects.base import (
    MODES,
    AudioFrame,
    CallInfo,
    Clock,
    CloseInfo,
    DialectBase,
    DialectEncoder,
    DtmfInfo,
    Leg,
    Message,
    Mode,
    group_legs,
    order_legs,
)
from ws_out.dialects.native import NativeDialect
from ws_out.dialects.rcms import RcmsDialect
from ws_out.dialects.twilio import TwilioDialect, WavixDialect
from ws_out.dialects.voipbin import VoipbinDialect
from ws_out.dialects.voxology import VoxologyDialect
from ws_out.errors import UsageError

__all__ = [
    "DIALECTS",
    "MODES",
    "AudioFrame",
    "CallInfo",
    "CloseInfo",
    "DialectBase",
    "DialectEncoder",
    "DtmfInfo",
    "Leg",
    "Message",
    "Mode",
    "get_dialect",
    "group_legs",
    "order_legs",
]

DIALECTS: Final[Mapping[str, type[DialectBase]]] = {
    cls.name: cls
    for cls in (
        NativeDialect,
        TwilioDialect,
        WavixDialect,
        VoxologyDialect,
        VoipbinDialect,
        AudioSocketDialect,
        RcmsDialect,
    )
}
"""Every dialect by name."""


def get_dialect(name: str, *, clock: Clock = time.time, **options: Any) -> DialectBase:
    """A new encoder for dialect ``name`` with its ``options`` (the keyword arguments of its
    class: ``tracks``, ``encapsulation``, ``keepalive_interval``...). Raises
    :exc:`ws_out.errors.UsageError` for an unknown name or option."""
    try:
        cls = DIALECTS[name]
    except KeyError:
        raise UsageError(f"unknown dialect {name!r} (one of {', '.join(DIALECTS)})") from None
    try:
        return cls(clock=clock, **options)
    except TypeError as exc:
        raise UsageError(f"dialect {name!r}: {exc}") from None
