"""The exception tree of :mod:`ws_out`.

Every exception that :mod:`ws_out` raises on purpose derives from :exc:`WsOutError`::

    WsOutError
     └── UsageError (also a ValueError)   the caller broke the API contract: audio before
         │                                ``start``, wrong dtype or shape, an unknown stop
         │                                reason, a misaligned PCM buffer, an invalid URL...
         ├── SenderClosedError            ``WsSender.send*`` after ``WsSender.close``
         └── ConfigurationError           an unusable delivery setting: a TLS certificate,
                                          key or CA file that cannot be loaded, a JWT key
                                          that is too weak or not a private key, a header
                                          value with CR/LF...

Peer and network failures are never raised to the caller of :class:`ws_out.sender.WsSender`:
they are counted in its ``stats`` and logged; audio that cannot be delivered goes to the
spool (:mod:`ws_out.spool`) or is counted as dropped. :class:`ws_out.wav.WavWriter` and
:class:`ws_out.spool.Spool` let ``OSError`` from the file system propagate unchanged.
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "SenderClosedError", "UsageError", "WsOutError"]


class WsOutError(Exception):
    """Base class of every exception raised by :mod:`ws_out`."""


class UsageError(WsOutError, ValueError):
    """The caller misused the API (our bug, not the peer's)."""


class SenderClosedError(UsageError):
    """A message was given to a sender after :meth:`WsSender.close` was called."""


class ConfigurationError(UsageError):
    """A delivery setting (TLS files, auth keys, header values) cannot be used."""
