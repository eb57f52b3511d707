"""The exception tree of :mod:`ws_out`.

Every exception that :mod:`ws_out` raises on purpose derives from :exc:`WsOutError`::

    WsOutError
     └── UsageError (also a ValueError)   the caller broke the API contract: audio before
         │                                ``start``, wrong dtype or shape, an unknown stop
         │                                reason, a misaligned PCM buffer, an invalid URL...
         └── SenderClosedError            ``WsSender.send`` after ``WsSender.close``

Peer and network failures are never raised to the caller of :class:`ws_out.sender.WsSender`:
they are counted in its ``stats`` and logged. :class:`ws_out.wav.WavWriter` lets ``OSError``
from the file system propagate unchanged.
"""

from __future__ import annotations

__all__ = ["SenderClosedError", "UsageError", "WsOutError"]


class WsOutError(Exception):
    """Base class of every exception raised by :mod:`ws_out`."""


class UsageError(WsOutError, ValueError):
    """The caller misused the API (our bug, not the peer's)."""


class SenderClosedError(UsageError):
    """A message was given to a sender after :meth:`WsSender.close` was called."""
