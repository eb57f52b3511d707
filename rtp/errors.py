"""The exception tree of the :mod:`rtp` package.

::

    RtpError (ValueError)      a datagram or payload that cannot be parsed, or a bad argument
     └── PortsExhausted        PortAllocator.allocate() found no free RTP/RTCP port pair

Parsers raise nothing else on bad input. :class:`rtp.leg.Leg.feed` never raises: it counts
and drops what it cannot use.
"""

from __future__ import annotations

__all__ = ["PortsExhausted", "RtpError"]


class RtpError(ValueError):
    """Invalid RTP data (RFC 3550 §5.1, RFC 4733 §2.3) or an invalid argument."""


class PortsExhausted(RtpError):
    """No free even port (with port + 1 free for RTCP, RFC 3550 §11) is left in the range."""
