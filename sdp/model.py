"""SDP data model (RFC 8866 §5) with the lookups a recording server needs.

Attributes are kept in order exactly as received (``(name, value)``, ``value`` is ``None`` for
property attributes such as ``a=sendonly``); the helpers below interpret them on demand.
Attribute names are matched case-insensitively, values are opaque strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from .crypto import Crypto, parse_crypto
from .errors import SdpError

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]

DIRECTIONS: Final[frozenset[str]] = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})

Attribute = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]`` (RFC 8866 §6.6)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None


# RFC 3551 §6 Tables 4 and 5: static payload types, used when a format has no a=rtpmap.
# G.722 is listed with an 8000 Hz RTP clock although it carries 16 kHz audio (RFC 3551 §4.5.2).
STATIC_PAYLOAD_TYPES: Final[dict[int, RtpMap]] = {
    pt: RtpMap(pt, name, rate, channels)
    for pt, name, rate, channels in (
        (0, "PCMU", 8000, None),
        (3, "GSM", 8000, None),
        (4, "G723", 8000, None),
        (5, "DVI4", 8000, None),
        (6, "DVI4", 16000, None),
        (7, "LPC", 8000, None),
        (8, "PCMA", 8000, None),
        (9, "G722", 8000, None),
        (10, "L16", 44100, 2),
        (11, "L16", 44100, None),
        (12, "QCELP", 8000, None),
        (13, "CN", 8000, None),
        (14, "MPA", 90000, None),
        (15, "G728", 8000, None),
        (16, "DVI4", 11025, None),
        (17, "DVI4", 22050, None),
        (18, "G729", 8000, None),
        (25, "CelB", 90000, None),
        (26, "JPEG", 90000, None),
        (28, "nv", 90000, None),
        (31, "H261", 90000, None),
        (32, "MPV", 90000, None),
        (33, "MP2T", 90000, None),
        (34, "H263", 90000, None),
    )
}


@dataclass(slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`` (§5.2)."""

    username: str
    sess_id: str
    sess_version: str
    nettype: str
    addrtype: str
    address: str


@dataclass(slots=True)
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (§5.7); ``address`` without ``/ttl``."""

    nettype: str
    addrtype: str
    address: str


def _first(attributes: list[Attribute], name: str) -> str | None:
    wanted = name.lower()
    for key, value in attributes:
        if key.lower() == wanted:
            return "" if value is None else value
    return None


def _all(attributes: list[Attribute], name: str) -> list[str]:
    wanted = name.lower()
    return ["" if value is None else value for key, value in attributes if key.lower() == wanted]


def _direction(attributes: list[Attribute]) -> Direction | None:
    for key, value in attributes:
        if value is None:
            lowered = key.lower()
            if lowered == "sendrecv":
                return "sendrecv"
            if lowered == "sendonly":
                return "sendonly"
            if lowered == "recvonly":
                return "recvonly"
            if lowered == "inactive":
                return "inactive"
    return None


def _int_or_none(text: str | None, low: int, high: int) -> int | None:
    if text is None:
        return None
    token = text.strip().split(" ", 1)[0]
    if not token.isascii() or not token.isdigit() or len(token) > 10:
        return None
    value = int(token)
    return value if low <= value <= high else None


def parse_ptime(text: str | None) -> int | None:
    """``a=ptime`` in milliseconds (RFC 8866 §6.4); fractional values are rounded."""
    if text is None:
        return None
    token = text.strip()
    if not token.isascii() or not token.replace(".", "", 1).isdigit() or len(token) > 10:
        return None
    value = round(float(token))
    return value if 0 < value <= 10_000 else None


def parse_rtpmap(value: str) -> RtpMap | None:
    """Parse the value of an ``a=rtpmap`` attribute; ``None`` when it is not well formed."""
    pt_text, _, rest = value.strip().partition(" ")
    pt = _int_or_none(pt_text, 0, 127)
    parts = rest.strip().split("/")
    if pt is None or len(parts) not in (2, 3) or not parts[0]:
        return None
    clock = _int_or_none(parts[1], 1, 10_000_000)
    if clock is None:
        return None
    channels: int | None = None
    if len(parts) == 3:
        channels = _int_or_none(parts[2], 1, 255)
        if channels is None:
            return None
    return RtpMap(pt, parts[0], clock, channels)


@dataclass(slots=True)
class Media:
    """One media description: ``m=`` line plus its ``c=``, ``b=`` and ``a=`` lines (§5.14)."""

    media: str
    port: int
    num_ports: int | None
    proto: str
    formats: list[str]
    connection: Connection | None = None
    bandwidths: list[tuple[str, str]] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)

    def attribute(self, name: str) -> str | None:
        """Value of the first ``a=<name>`` ("" for a property attribute), ``None`` if absent."""
        return _first(self.attributes, name)

    def attributes_named(self, name: str) -> list[str]:
        """Values of every ``a=<name>`` in order ("" for property attributes)."""
        return _all(self.attributes, name)

    @property
    def label(self) -> str | None:
        """``a=label`` (RFC 4574), an opaque string tying the stream to SIPREC metadata."""
        return self.attribute("label")

    @property
    def direction(self) -> Direction | None:
        """Media-level direction attribute (RFC 8866 §6.7), ``None`` when there is none."""
        return _direction(self.attributes)

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in milliseconds (§6.4)."""
        return parse_ptime(self.attribute("ptime"))

    @property
    def rtcp_port(self) -> int | None:
        """Port of ``a=rtcp`` (RFC 3605)."""
        return _int_or_none(self.attribute("rtcp"), 0, 65535)

    def rtpmaps(self) -> dict[int, RtpMap]:
        """Payload type → mapping for every numeric format of the ``m=`` line, in offer order.

        ``a=rtpmap`` wins; formats without one fall back to the RFC 3551 static table; dynamic
        payload types without ``a=rtpmap`` and mappings for unlisted formats are left out.
        """
        mapped: dict[int, RtpMap] = {}
        for value in self.attributes_named("rtpmap"):
            rtpmap = parse_rtpmap(value)
            if rtpmap is not None and rtpmap.payload_type not in mapped:
                mapped[rtpmap.payload_type] = rtpmap
        result: dict[int, RtpMap] = {}
        for fmt in self.formats:
            pt = _int_or_none(fmt, 0, 127)
            if pt is None or pt in result:
                continue
            rtpmap = mapped.get(pt) or STATIC_PAYLOAD_TYPES.get(pt)
            if rtpmap is not None:
                result[pt] = rtpmap
        return result

    def cryptos(self) -> list[Crypto]:
        """Every well-formed ``a=crypto`` (RFC 4568 §9.1) in offer order; malformed ones are
        left out (a crypto line the answerer cannot understand is not acceptable, §7.1.2)."""
        result: list[Crypto] = []
        for value in self.attributes_named("crypto"):
            try:
                result.append(parse_crypto(value))
            except SdpError:
                continue
        return result

    def fmtp(self, pt: int) -> str | None:
        """Parameters of the first ``a=fmtp:<pt> <parameters>`` (§6.15), ``None`` if absent."""
        for value in self.attributes_named("fmtp"):
            pt_text, _, params = value.strip().partition(" ")
            if _int_or_none(pt_text, 0, 127) == pt:
                return params.strip()
        return None


@dataclass(slots=True)
class SessionDescription:
    """A parsed session description (RFC 8866 §5)."""

    version: int
    origin: Origin
    session_name: str
    connection: Connection | None = None
    bandwidths: list[tuple[str, str]] = field(default_factory=list)
    times: list[str] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)

    def attribute(self, name: str) -> str | None:
        """Value of the first session-level ``a=<name>``; see :meth:`Media.attribute`."""
        return _first(self.attributes, name)

    def direction_of(self, m: Media) -> Direction:
        """Media-level direction, else session-level, else ``sendrecv`` (RFC 8866 §6.7)."""
        return m.direction or _direction(self.attributes) or "sendrecv"

    def connection_of(self, m: Media) -> Connection | None:
        """Media-level ``c=``, else session-level ``c=`` (RFC 8866 §5.7)."""
        return m.connection if m.connection is not None else self.connection


def local_session(
    local_address: str, session_id: int, session_version: int, username: str
) -> SessionDescription:
    """Our own session-level lines (RFC 8866 §5.2, §5.7, §5.9): ``o=``, ``s=-``, ``c=`` on
    ``local_address`` (IP6 when it contains ``:``) and ``t=0 0``; no media yet."""
    addrtype = "IP6" if ":" in local_address else "IP4"
    return SessionDescription(
        version=0,
        origin=Origin(
            username, str(session_id), str(session_version), "IN", addrtype, local_address
        ),
        session_name="-",
        connection=Connection("IN", addrtype, local_address),
        times=["0 0"],
    )
