"""SDP offer of an SRS for a delayed-offer INVITE (RFC 3264 §5, RFC 7866 §8.1.2).

An SRC may send an INVITE without SDP (Cisco CUCM built-in-bridge recording, QUIRKS #19). The
SRS then offers in its 2xx and the SRC answers in the ACK. The recorder only receives, so every
m-line is ``recvonly``, offers every codec the bridge decodes plus ``telephone-event``, and
carries an ``a=label`` so the SRC can tell the streams apart (RFC 4574).

To negotiate, treat the SRC's answer like an offer with the same ports:
``build_answer(answer, ports=offered_ports, ...)`` yields the chosen codec, DTMF payload type,
remote address and direction per m-line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from .model import Attribute, Media, SessionDescription, local_session

#: (payload type, encoding/clock) in preference order: RFC 3551 static types.
OFFERED_CODECS: Final[tuple[tuple[int, str], ...]] = (
    (0, "PCMU/8000"),
    (8, "PCMA/8000"),
    (9, "G722/8000"),
)
DTMF_PAYLOAD_TYPE: Final = 101


def build_offer(
    *,
    local_address: str,
    ports: Sequence[int],
    labels: Sequence[str],
    session_id: int,
    session_version: int,
    username: str = "siprec-bridge",
) -> SessionDescription:
    """One ``recvonly`` audio m-line per port, labelled with ``labels`` in order."""
    if len(ports) != len(labels):
        raise ValueError(f"{len(ports)} ports for {len(labels)} labels")
    offer = local_session(local_address, session_id, session_version, username)
    formats = [str(pt) for pt, _ in OFFERED_CODECS] + [str(DTMF_PAYLOAD_TYPE)]
    for port, label in zip(ports, labels, strict=True):
        attributes: list[Attribute] = [("rtpmap", f"{pt} {name}") for pt, name in OFFERED_CODECS]
        attributes += [
            ("rtpmap", f"{DTMF_PAYLOAD_TYPE} telephone-event/8000"),
            ("fmtp", f"{DTMF_PAYLOAD_TYPE} 0-16"),
            ("ptime", "20"),
            ("recvonly", None),
            ("label", label),
        ]
        offer.media.append(Media("audio", port, None, "RTP/AVP", formats, attributes=attributes))
    return offer
