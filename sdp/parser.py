"""Tolerant SDP parser and canonical serializer (RFC 8866 §5, §9).

Grammar (RFC 8866 §9, simplified)::

    session-description = version-field origin-field session-name-field
                          [information-field] [uri-field] *email-fields *phone-fields
                          [connection-field] *bandwidth-fields time-description
                          [key-field] *attribute-fields *media-description
    media-description   = media-field [information-field] *connection-field
                          *bandwidth-fields [key-field] *attribute-fields
    <type>=<value> CRLF

Tolerance (what real SRCs send, see the corpus QUIRKS.md #20-#27): CRLF, bare LF or bare CR line
ends; leading/trailing whitespace on lines; blank lines; lines that are not ``<letter>=...``
(ignored); fields out of order; missing ``c=``/``t=``/``s=``; ``i=``, ``u=``, ``e=``, ``p=``,
``k=``, ``r=``, ``z=`` and unknown letters ignored; odd attribute tokens kept verbatim. A second
``v=`` line ends the description (concatenated descriptions, stray pasted parts).
"""

from __future__ import annotations

import re
from typing import Final

from .errors import SdpError
from .model import Attribute, Connection, Media, Origin, SessionDescription

MAX_SDP_SIZE: Final = 65536
MAX_LINES: Final = 4096
MAX_MEDIA: Final = 64

_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


def parse(data: bytes | str) -> SessionDescription:
    """Parse one session description.

    ``bytes`` are decoded as UTF-8 (RFC 8866 §5; undecodable bytes become U+FFFD).
    Raises :class:`SdpError` for more than :data:`MAX_SDP_SIZE` bytes (or characters), more than
    :data:`MAX_LINES` lines or :data:`MAX_MEDIA` media descriptions, no ``v=`` line, or an
    unusable ``v=``, ``o=``, ``c=`` or ``m=`` line. Nothing else is raised.
    """
    if len(data) > MAX_SDP_SIZE:
        raise SdpError(f"SDP larger than {MAX_SDP_SIZE} bytes")
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    lines = _LINE_BREAK.split(text)
    if len(lines) > MAX_LINES:
        raise SdpError(f"SDP has more than {MAX_LINES} lines")

    version: int | None = None
    origin: Origin | None = None
    session_name = ""
    connection: Connection | None = None
    bandwidths: list[tuple[str, str]] = []
    times: list[str] = []
    attributes: list[Attribute] = []
    media: list[Media] = []

    for raw in lines:
        line = raw.strip()
        if len(line) < 2 or line[1] != "=" or not "a" <= line[0] <= "z":
            continue  # not an SDP line: tolerated and ignored
        kind, value = line[0], line[2:].strip()
        if version is None:
            if kind != "v":
                raise SdpError("SDP does not start with a v= line")
            version = _version(value)
            continue
        if kind == "v":
            break  # a second description (or pasted junk) follows: stop here
        current = media[-1] if media else None
        if kind == "m":
            if len(media) >= MAX_MEDIA:
                raise SdpError(f"SDP has more than {MAX_MEDIA} media descriptions")
            media.append(_media(value))
        elif kind == "a":
            if value:
                (current.attributes if current else attributes).append(_attribute(value))
        elif kind == "c":
            if current is None:
                connection = connection or _connection(value)
            elif current.connection is None:
                current.connection = _connection(value)
        elif kind == "b":
            name, _, bw = value.partition(":")
            (current.bandwidths if current else bandwidths).append((name.strip(), bw.strip()))
        elif current is None:
            if kind == "o" and origin is None:
                origin = _origin(value)
            elif kind == "s" and not session_name:
                session_name = value
            elif kind == "t":
                times.append(value)

    if version is None:
        raise SdpError("SDP has no v= line")
    if origin is None:
        raise SdpError("SDP has no o= line")
    return SessionDescription(
        version=version,
        origin=origin,
        session_name=session_name,
        connection=connection,
        bandwidths=bandwidths,
        times=times,
        attributes=attributes,
        media=media,
    )


def serialize(sd: SessionDescription) -> bytes:
    """Encode ``sd`` with CRLF line ends in RFC 8866 §5 field order.

    ``s=`` defaults to ``-`` and ``t=0 0`` is written when ``sd.times`` is empty, so the output is
    always a valid description.
    """
    o = sd.origin
    out = [
        f"v={sd.version}",
        f"o={o.username} {o.sess_id} {o.sess_version} {o.nettype} {o.addrtype} {o.address}",
        f"s={sd.session_name or '-'}",
    ]
    if sd.connection is not None:
        out.append(_connection_line(sd.connection))
    out.extend(f"b={name}:{value}" for name, value in sd.bandwidths)
    out.extend(f"t={t}" for t in sd.times or ["0 0"])
    out.extend(_attribute_line(a) for a in sd.attributes)
    for m in sd.media:
        port = f"{m.port}/{m.num_ports}" if m.num_ports is not None else str(m.port)
        out.append(" ".join([f"m={m.media}", port, m.proto, *m.formats]))
        if m.connection is not None:
            out.append(_connection_line(m.connection))
        out.extend(f"b={name}:{value}" for name, value in m.bandwidths)
        out.extend(_attribute_line(a) for a in m.attributes)
    out.append("")
    return "\r\n".join(out).encode("utf-8", "replace")


def _version(value: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 3:
        raise SdpError(f"bad v= line: {value[:40]!r}")
    return int(value)


def _origin(value: str) -> Origin:
    """``o=`` (§5.2). A username containing spaces (seen in the wild) is re-joined."""
    fields = value.split()
    if len(fields) < 6:
        raise SdpError(f"bad o= line: {value[:80]!r}")
    username = " ".join(fields[:-5])
    return Origin(username, *fields[-5:])


def _connection(value: str) -> Connection:
    """``c=`` (§5.7); the ``/ttl`` and ``/number of addresses`` suffixes are dropped."""
    fields = value.split()
    if len(fields) != 3:
        raise SdpError(f"bad c= line: {value[:80]!r}")
    return Connection(fields[0], fields[1], fields[2].split("/", 1)[0])


def _media(value: str) -> Media:
    """``m=<media> <port>[/<number of ports>] <proto> <fmt> ...`` (§5.14)."""
    fields = value.split()
    if len(fields) < 3:
        raise SdpError(f"bad m= line: {value[:80]!r}")
    port_text, _, count_text = fields[1].partition("/")
    port = _port(port_text, value)
    num_ports = _port(count_text, value) if count_text else None
    return Media(fields[0], port, num_ports, fields[2], fields[3:])


def _port(text: str, line: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5 or int(text) > 65535:
        raise SdpError(f"bad port in m= line: {line[:80]!r}")
    return int(text)


def _attribute(value: str) -> Attribute:
    """``a=<name>[:<value>]`` (§5.13); the value is kept verbatim."""
    name, colon, rest = value.partition(":")
    return (name.strip(), rest if colon else None)


def _attribute_line(attribute: Attribute) -> str:
    name, value = attribute
    return f"a={name}" if value is None else f"a={name}:{value}"


def _connection_line(c: Connection) -> str:
    return f"c={c.nettype} {c.addrtype} {c.address}"
