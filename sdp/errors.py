"""The one exception of the :mod:`sdp` package.

Exception tree::

    ValueError
     └── SdpError      malformed SDP (RFC 8866 §5) or misuse of the answer builder

Parsing is tolerant (see :func:`sdp.parse`); ``SdpError`` is raised only when a description
cannot be understood at all: too large, no ``v=`` line, or an unusable ``v=``/``o=``/``c=``/
``m=`` line.
"""

from __future__ import annotations


class SdpError(ValueError):
    """Malformed or oversized session description; ``str(exc)`` is a short reason."""
