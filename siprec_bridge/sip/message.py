"""SIP messages: header multi-map, tolerant parser, stream framing, response builder.

Implements the message format of RFC 3261 §7 and the grammar of §25 the way real SRCs use it
(RFC 4475 torture cases, vendor quirks in ``siprec-corpus/QUIRKS.md``):

* CRLF or bare LF line endings, header folding (§7.3.1), leading CRLFs (§7.5), compact header
  forms (§7.3.3), empty header values, whitespace around the colon;
* UDP bodies end at the end of the datagram, truncated to ``Content-Length`` (§18.3);
* streams are framed strictly by ``Content-Length`` (:class:`StreamFramer`, §18.3) and
  answer RFC 5626 §3.5.1 ``CRLFCRLF`` keep-alive pings.

Everything here is pure: bytes in, objects out.  The only exception raised for bad input is
:class:`~siprec_bridge.sip.errors.SipParseError` (:class:`SipFramingError` for streams).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from .errors import LocalProtocolError, SipFramingError, SipParseError

MAX_MESSAGE_SIZE: Final = 65535
MAX_HEADERS: Final = 128
MAX_HEADER_LINE: Final = 8192

SIP_VERSION: Final = "SIP/2.0"
BRANCH_MAGIC_COOKIE: Final = "z9hG4bK"  # RFC 3261 §8.1.1.7
KEEPALIVE_PING: Final = b"\r\n\r\n"  # RFC 5626 §3.5.1; the answer (pong) is a single CRLF
KEEPALIVE_PONG: Final = b"\r\n"

# RFC 3261 §7.3.3 plus the compact forms registered later (RFC 3265, 3515, 3891, 4028, 4538).
COMPACT_FORMS: Final[dict[str, str]] = {
    "i": "Call-ID",
    "f": "From",
    "t": "To",
    "v": "Via",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "u": "Allow-Events",
}
_COMPACT_KEYS: Final[dict[str, str]] = {k: v.lower() for k, v in COMPACT_FORMS.items()}

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1); get_all() splits them.
# From/To/Contact/Date/Call-ID/... are NOT split: commas may appear inside their values.
LIST_HEADERS: Final[frozenset[str]] = frozenset(
    {
        "via",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "allow",
        "accept",
        "accept-encoding",
        "accept-language",
        "content-encoding",
        "content-language",
        "allow-events",
        "record-route",
        "route",
        "path",
        "reason",
        "warning",
        "in-reply-to",
        "call-info",
        "alert-info",
        "error-info",
        "recv-info",
    }
)

# RFC 3261 §21 and the codes a SIPREC SRS may meet (RFC 3262, 3311, 4028, 5079, 6228).
REASON_PHRASES: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# Request-URI: any absolute URI (RFC 3261 §25.1 Request-URI = SIP-URI / SIPS-URI / absoluteURI)
_URI_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")
_BLANK_LINE_RE: Final = re.compile(rb"\r?\n\r?\n")
# sent-protocol LWS sent-by (RFC 3261 §20.42 / §25.1 Via), LWS allowed around "/" and ":".
_VIA_RE: Final = re.compile(
    r"\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._]+)(?:\s*:\s*([0-9]{1,5}))?\s*(.*)",
    re.IGNORECASE | re.DOTALL,
)
# The same with an unbracketed IPv6 sent-by, as some UAs send (heplify's sip_ipv6_udp.pcap:
# "SIP/2.0/UDP fe80:0:0:0:21a:a0ff:fe07:32e0:5060"); RFC 3261 §25.1 wants "[...]".
_BARE_IPV6_VIA_RE: Final = re.compile(
    r"\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+([0-9A-Fa-f]*:[0-9A-Fa-f:.]*)\s*(.*)",
    re.IGNORECASE | re.DOTALL,
)
# CSeq = 1*DIGIT LWS Method (RFC 3261 §20.16), number < 2**31.
_CSEQ_RE: Final = re.compile(r"\s*([0-9]{1,10})\s+([A-Za-z0-9\-.!%*_+`'~]+)\s*")
_STREAM_CL_RE: Final = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)")
_MAX_CSEQ: Final = 2**31 - 1


def _is_digits(text: str) -> bool:
    """ASCII decimal digits only (``str.isdigit`` also accepts "²" and other scripts)."""
    return text.isascii() and text.isdigit()


def _header_key(name: str) -> str:
    lowered = name.strip().lower()
    return _COMPACT_KEYS.get(lowered, lowered)


def split_quoted(value: str, sep: str = ",") -> list[str]:
    """Split ``value`` on ``sep`` outside double quotes and ``<...>`` (RFC 3261 §7.3.1).

    Elements are stripped; empty elements are dropped.
    """
    parts: list[str] = []
    start = 0
    in_quotes = False
    angle = 0
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if in_quotes:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif ch == "<":
            angle += 1
        elif ch == ">" and angle:
            angle -= 1
        elif ch == sep and not angle:
            parts.append(value[start:i])
            start = i + 1
        i += 1
    parts.append(value[start:])
    return [p.strip() for p in parts if p.strip()]


class Headers:
    """Ordered multi-map of SIP header fields (RFC 3261 §7.3).

    Order and duplicates are preserved.  Lookup is case-insensitive and understands compact
    forms (``i`` = ``Call-ID``, ...); compact names are stored and serialized in their long
    canonical form, other names as given.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []  # (key, name, value)
        for name, value in items:
            self.add(name, value)

    @staticmethod
    def _entry(name: str, value: str) -> tuple[str, str, str]:
        if any(c in name or c in value for c in "\r\n") or not _TOKEN_RE.fullmatch(name):
            raise LocalProtocolError(f"invalid header field {name!r}")
        key = _header_key(name)
        canonical = COMPACT_FORMS.get(name.lower(), name)
        return key, canonical, value

    def add(self, name: str, value: str) -> None:
        """Append a field (``value`` must not contain CR or LF)."""
        self._items.append(self._entry(name, value))

    def set(self, name: str, value: str) -> None:
        """Replace all fields called ``name`` by one, at the position of the first one."""
        entry = self._entry(name, value)
        for i, (key, _, _) in enumerate(self._items):
            if key == entry[0]:
                self._items[i] = entry
                self._items[i + 1 :] = [it for it in self._items[i + 1 :] if it[0] != entry[0]]
                return
        self._items.append(entry)

    def remove(self, name: str) -> None:
        """Remove every field called ``name`` (no error if absent)."""
        key = _header_key(name)
        self._items = [it for it in self._items if it[0] != key]

    def get(self, name: str) -> str | None:
        """Value of the first field called ``name``, or ``None``."""
        key = _header_key(name)
        for k, _, value in self._items:
            if k == key:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Values of all fields called ``name``, in order.

        For list-valued headers (:data:`LIST_HEADERS`: Via, Supported, Require, Allow,
        Record-Route, ...) comma-separated values are split (quote- and ``<>``-aware) and empty
        elements dropped; other headers are returned as received, one value per field line.
        """
        key = _header_key(name)
        values = [value for k, _, value in self._items if k == key]
        if key not in LIST_HEADERS:
            return values
        return [part for value in values for part in split_quoted(value)]

    def items(self) -> list[tuple[str, str]]:
        """All fields as ``(name, value)`` in order."""
        return [(name, value) for _, name, value in self._items]

    def copy(self) -> Headers:
        clone = Headers()
        clone._items = list(self._items)
        return clone

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


@dataclass(frozen=True)
class Via:
    """One Via header value (RFC 3261 §20.42, rport per RFC 3581)."""

    transport: str  # upper case: UDP, TCP, TLS, WS, ...
    host: str  # without IPv6 brackets
    port: int | None
    branch: str | None
    rport: bool | int | None  # None: absent; True: present without value; int: filled in
    received: str | None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def sent_by(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


@dataclass(frozen=True)
class NameAddr:
    """``[display-name] <URI> *(;param)`` or ``URI *(;param)`` (RFC 3261 §20.10, §20.20)."""

    display: str | None
    uri: str
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        display = ""
        if self.display is not None:
            escaped = self.display.replace("\\", "\\\\").replace('"', '\\"')
            display = f'"{escaped}" '
        return f"{display}<{self.uri}>{_format_params(self.params)}"


def _format_params(params: dict[str, str | None]) -> str:
    out = []
    for name, value in params.items():
        if value is None:
            out.append(f";{name}")
        elif _TOKEN_RE.fullmatch(value):
            out.append(f";{name}={value}")
        else:
            out.append(f';{name}="{value}"')
    return "".join(out)


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read the quoted-string starting at ``text[start] == '"'``; return (content, end)."""
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            chars.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(chars), i + 1
        chars.append(ch)
        i += 1
    raise SipParseError("unterminated quoted string")


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` generic parameters (RFC 3261 §25.1 generic-param).

    Names are lower-cased; quoted values are unquoted; a leading ``;`` is optional.
    """
    params: dict[str, str | None] = {}
    for item in split_quoted(text, ";"):
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not _TOKEN_RE.fullmatch(name):
            raise SipParseError(f"invalid parameter name {name[:40]!r}")
        if not sep:
            params[name] = None
            continue
        value = value.strip()
        if value.startswith('"'):
            value, _ = _read_quoted(value, 0)
        params[name] = value
    return params


def _split_bare_ipv6(text: str) -> tuple[str, str | None] | None:
    """``fe80::1`` → (``fe80::1``, None); ``fe80:0:0:0:0:0:0:1:5060`` → (..., ``5060``).

    The whole text is taken as the address when it is one, else its last group as the port;
    ``None`` when neither reading is an IPv6 address (RFC 4291 §2.2).
    """
    if _is_ipv6(text):
        return text, None
    address, _, port = text.rpartition(":")
    valid = _is_digits(port) and len(port) <= 5 and _is_ipv6(address)
    return (address, port) if valid else None


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def parse_via(value: str) -> Via:
    """Parse one Via value ``SIP/2.0/UDP host[:port];params`` (RFC 3261 §20.42, RFC 3581)."""
    bare = _BARE_IPV6_VIA_RE.fullmatch(value)
    split = _split_bare_ipv6(bare[2]) if bare is not None else None
    if bare is not None and split is not None:
        transport, rest = bare[1], bare[3]
        host, port_text = split
    else:
        m = _VIA_RE.fullmatch(value)
        if m is None:
            raise SipParseError(f"malformed Via header {value[:60]!r}")
        transport, host, port_text, rest = m.groups()
    rest = rest.strip()
    if rest.startswith("("):  # trailing comment, RFC 3261 §25.1 allows none but some UAs do
        rest = ""
    if rest and not rest.startswith(";"):
        raise SipParseError(f"malformed Via parameters {rest[:40]!r}")
    params = parse_params(rest)
    port = int(port_text) if port_text else None
    if port is not None and port > 65535:
        raise SipParseError(f"Via port {port} out of range")
    rport: bool | int | None = None
    if "rport" in params:
        rport_value = params["rport"]
        if rport_value is None:
            rport = True
        elif _is_digits(rport_value) and len(rport_value) <= 5:
            rport = int(rport_value)
        else:
            raise SipParseError(f"malformed Via rport {rport_value[:20]!r}")
    return Via(
        transport=transport.upper(),
        host=host.strip("[]"),
        port=port,
        branch=params.get("branch"),
        rport=rport,
        received=params.get("received"),
        params=params,
    )


def parse_name_addr(value: str) -> NameAddr:
    """Parse a From/To/Contact/Route value (RFC 3261 §20.10, §20.20, §20.39).

    Handles ``"Name" <uri>;tag=x``, ``Name <uri>``, ``<sip:...;+sip.src>;+sip.src`` (the URI
    keeps its own parameters) and the bare form ``sip:x;tag=y`` where, per §20, the
    parameters belong to the header.  Tolerates a missing closing ``>`` (seen in the wild).
    """
    text = value.strip()
    if not text:
        raise SipParseError("empty address")
    display: str | None = None
    if text.startswith('"'):
        display, end = _read_quoted(text, 0)
        text = text[end:].lstrip()
        if not text.startswith("<"):
            raise SipParseError("display name not followed by <URI>")
    elif "<" in text:
        lt = text.index("<")
        display = text[:lt].strip() or None
        text = text[lt:]
    if text.startswith("<"):
        gt = text.find(">")
        if gt < 0:
            uri, params = text[1:].strip(), {}
        else:
            uri, rest = text[1:gt].strip(), text[gt + 1 :].strip()
            if rest and not rest.startswith(";"):
                raise SipParseError(f"unexpected text after URI {rest[:40]!r}")
            params = parse_params(rest)
    else:
        uri, _, rest = text.partition(";")
        uri = uri.strip()
        if any(c.isspace() for c in uri):
            raise SipParseError(f"malformed address {value[:60]!r}")
        params = parse_params(rest)
    if not uri:
        raise SipParseError("empty URI in address")
    return NameAddr(display, uri, params)


def parse_cseq(value: str) -> tuple[int, str]:
    """Parse ``CSeq: <number> <method>`` (RFC 3261 §20.16); the number must be < 2**31."""
    m = _CSEQ_RE.fullmatch(value)
    if m is None:
        raise SipParseError(f"malformed CSeq {value[:40]!r}")
    number = int(m.group(1))
    if number > _MAX_CSEQ:
        raise SipParseError(f"CSeq number {number} too large")
    return number, m.group(2)


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Parse ``type/subtype;params`` (RFC 3261 §20.15, RFC 2045 §5.1).

    The media type is lower-cased; parameter names are lower-cased and values unquoted
    (``boundary="X"`` → ``X``); tolerates missing spaces and trailing whitespace.
    """
    mime, _, rest = value.partition(";")
    mime = mime.strip().lower()
    kind, slash, sub = mime.partition("/")
    if not slash or not _TOKEN_RE.fullmatch(kind) or not _TOKEN_RE.fullmatch(sub):
        raise SipParseError(f"malformed Content-Type {value[:60]!r}")
    params = {name: (v if v is not None else "") for name, v in parse_params(rest).items()}
    return mime, params


class _Message:
    """Accessors shared by requests and responses (the fields every message carries)."""

    headers: Headers
    body: bytes

    def _start_line(self) -> str:
        raise NotImplementedError

    def _require(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    @property
    def call_id(self) -> str:
        return self._require("Call-ID").strip()

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self._require("CSeq"))

    @property
    def from_tag(self) -> str | None:
        return parse_name_addr(self._require("From")).tag

    @property
    def to_tag(self) -> str | None:
        return parse_name_addr(self._require("To")).tag

    @property
    def top_via(self) -> Via:
        vias = self.headers.get_all("Via")
        if not vias:
            raise SipParseError("missing Via header")
        return parse_via(vias[0])

    def to_bytes(self) -> bytes:
        """Serialize with CRLF line ends and a correct ``Content-Length`` (RFC 3261 §20.14)."""
        lines = [self._start_line()]
        lines.extend(
            f"{name}: {value}"
            for name, value in self.headers.items()
            if name.lower() != "content-length"
        )
        lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + self.body


@dataclass
class SipRequest(_Message):
    """A request: ``method uri SIP/2.0`` (RFC 3261 §7.1)."""

    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {SIP_VERSION}"


@dataclass
class SipResponse(_Message):
    """A response: ``SIP/2.0 status reason`` (RFC 3261 §7.2)."""

    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def _start_line(self) -> str:
        return f"{SIP_VERSION} {self.status} {self.reason}"


def _sanitize(text: str, limit: int = 40) -> str:
    """Short printable excerpt of peer input for error messages."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return cleaned + ("..." if len(text) > limit else "")


def _parse_start_line(line: str) -> tuple[SipRequest | SipResponse, SipParseError | None]:
    """RFC 3261 §7.1 Request-Line / §7.2 Status-Line.

    Returns the message and a deferred error: a request with a bad Request-URI or version is
    still returned so that the UAS can answer it (400 / 505).
    """
    if line[:4].upper() == "SIP/":
        parts = line.split(None, 2)
        if parts[0].upper() != SIP_VERSION:
            raise SipParseError(f"unsupported SIP version {_sanitize(parts[0])!r}", 505)
        code = parts[1] if len(parts) > 1 else ""
        if not (len(code) == 3 and _is_digits(code) and 100 <= int(code) <= 699):
            raise SipParseError(f"malformed status code {_sanitize(code)!r}")
        return SipResponse(int(code), parts[2].strip() if len(parts) > 2 else ""), None
    parts = line.split()
    if len(parts) != 3 or not _TOKEN_RE.fullmatch(parts[0]):
        raise SipParseError(f"malformed request line {_sanitize(line)!r}")
    method, uri, version = parts
    error = None
    if not _URI_RE.fullmatch(uri):
        error = SipParseError(f"malformed Request-URI {_sanitize(uri)!r}")
    elif version.upper() != SIP_VERSION:
        error = SipParseError(f"unsupported SIP version {_sanitize(version)!r}", 505)
    return SipRequest(method, uri), error


def _parse_header_lines(lines: Sequence[str], headers: Headers) -> list[SipParseError]:
    """Fill ``headers`` from the header lines (§7.3, folding §7.3.1); collect all errors.

    Well-formed lines are kept even when others are broken, so that a ``400`` can still be
    built from the partial request.
    """
    errors: list[SipParseError] = []
    pending: tuple[str, list[str]] | None = None

    def flush() -> None:
        if pending is None:
            return
        name, chunks = pending
        value = " ".join(chunks)
        if len(value) > MAX_HEADER_LINE:
            errors.append(SipParseError(f"{name} header too long"))
        elif len(headers) >= MAX_HEADERS:
            errors.append(SipParseError(f"more than {MAX_HEADERS} header fields", 513))
        else:
            headers.add(name, value)

    for number, line in enumerate(lines, start=2):
        if not line:
            continue
        if len(line) > MAX_HEADER_LINE:
            errors.append(SipParseError(f"header line {number} longer than {MAX_HEADER_LINE}"))
            continue
        if "\r" in line:
            errors.append(SipParseError(f"bare CR in header line {number}"))
            continue
        if line[0] in " \t":
            if pending is None:
                errors.append(SipParseError(f"continuation line {number} without a header"))
            else:
                pending[1].append(line.strip(" \t"))
            continue
        flush()
        pending = None
        name, colon, value = line.partition(":")
        name = name.strip(" \t")
        if not colon or not _TOKEN_RE.fullmatch(name):
            errors.append(SipParseError(f"malformed header line {number}: {_sanitize(line)!r}"))
            continue
        pending = (name, [value.strip(" \t")])
    flush()
    return errors


def _single(headers: Headers, name: str) -> str:
    values = headers.get_all(name)
    if not values:
        raise SipParseError(f"missing {name} header")
    if len(values) > 1 and len(set(values)) > 1:
        raise SipParseError(f"conflicting {name} headers")
    return values[0]


def _validate(message: SipRequest | SipResponse) -> None:
    """Mandatory header checks of RFC 3261 §8.1.1 / §8.2 for a parsed message."""
    headers = message.headers
    vias = headers.get_all("Via")
    if not vias:
        raise SipParseError("missing Via header")
    parse_via(vias[0])
    for name in ("From", "To"):
        try:
            parse_name_addr(_single(headers, name))
        except SipParseError as exc:
            raise SipParseError(f"malformed {name} header: {exc}") from None
    if not _single(headers, "Call-ID").strip():
        raise SipParseError("empty Call-ID header")
    _, cseq_method = parse_cseq(_single(headers, "CSeq"))
    if isinstance(message, SipRequest) and cseq_method != message.method:
        raise SipParseError(
            f"CSeq method {cseq_method} does not match request method {message.method}"
        )
    max_forwards = headers.get_all("Max-Forwards")
    if max_forwards:
        value = max_forwards[0].strip()
        if not (_is_digits(value) and len(value) <= 3 and int(value) <= 255):
            raise SipParseError(f"malformed Max-Forwards {_sanitize(value)!r}")


def _content_length(headers: Headers) -> int | None:
    values = {v.strip() for v in headers.get_all("Content-Length")}
    if not values:
        return None
    if len(values) > 1:
        raise SipParseError("conflicting Content-Length headers")
    value = values.pop()
    if not (_is_digits(value) and len(value) <= 10):
        raise SipParseError(f"malformed Content-Length {_sanitize(value)!r}")
    return int(value)


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one SIP message from a datagram or a framed stream message (RFC 3261 §7, §25).

    The body is everything after the blank line, truncated to ``Content-Length`` if longer; a
    shorter body is an error (§18.3).  Requests must carry Via, From, To, Call-ID and a CSeq
    whose method matches the request line (§8.1.1).  Raises :class:`SipParseError` (and
    nothing else) with ``status`` 400, 505 (version) or 513 (too large) and, for requests, the
    ``partial`` request parsed so far.
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_SIZE}", 513)
    start = 0
    while start < len(data) and data[start] in (10, 13):  # §7.5: ignore leading CRLFs
        start += 1
    blank = _BLANK_LINE_RE.search(data, start)
    head = data[start : blank.start()] if blank else data[start:]
    body = data[blank.end() :] if blank else b""
    lines = head.decode("utf-8", "surrogateescape").split("\n")
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if not lines[0].strip():
        raise SipParseError("empty message")
    if len(lines[0]) > MAX_HEADER_LINE:
        raise SipParseError("start line too long")
    message, start_error = _parse_start_line(lines[0])
    partial = message if isinstance(message, SipRequest) else None
    errors = _parse_header_lines(lines[1:], message.headers)
    if start_error is not None:
        errors.insert(0, start_error)
    try:
        if errors:
            raise errors[0]
        _validate(message)
        length = _content_length(message.headers)
    except SipParseError as exc:
        raise SipParseError(str(exc), exc.status, partial) from None
    if length is not None:
        if length > len(body):
            raise SipParseError(
                f"Content-Length {length} exceeds body length {len(body)}", 400, partial
            )
        body = body[:length]
    message.body = body
    return message


class StreamFramer:
    """Split a TCP/TLS byte stream into SIP messages by ``Content-Length`` (RFC 3261 §18.3).

    ``feed(data)`` returns the complete messages (bytes) in order.  A RFC 5626 §3.5.1
    keep-alive ping (``CRLFCRLF`` between messages) is returned as :data:`KEEPALIVE_PING` so
    that the transport can answer :data:`KEEPALIVE_PONG`; single CRLFs (pongs) are dropped.
    A missing ``Content-Length`` counts as 0.  Raises :class:`SipFramingError` when the
    header block or the announced message exceeds ``max_message_size`` or ``Content-Length``
    is unreadable; the connection must then be closed.
    """

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self._max = max_message_size
        self._buf = bytearray()
        self._scan = 0  # where to resume the search for the blank line
        self._need: int | None = None  # total size of the message being read

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        try:
            while self._next(out):
                pass
        except SipFramingError as exc:
            exc.messages = out
            raise
        return out

    def _skip_line_ends(self, out: list[bytes]) -> bool:
        """Consume CRLFs between messages; False if more data is needed to decide."""
        buf = self._buf
        while buf and buf[0] in (10, 13):
            if buf.startswith(KEEPALIVE_PING):
                out.append(KEEPALIVE_PING)
                del buf[:4]
            elif len(buf) < 4 and KEEPALIVE_PING.startswith(buf):
                return False
            else:
                del buf[: 2 if buf.startswith(b"\r\n") else 1]
        return bool(buf)

    def _next(self, out: list[bytes]) -> bool:
        """Frame one message into ``out``; return False when more data is needed."""
        if self._need is None:
            if not self._skip_line_ends(out):
                return False
            blank = _BLANK_LINE_RE.search(self._buf, self._scan)
            if blank is None:
                if len(self._buf) > self._max:
                    raise SipFramingError(f"header block exceeds {self._max} bytes")
                self._scan = max(0, len(self._buf) - 3)
                return False
            length = self._stream_content_length(bytes(self._buf[: blank.start()]))
            self._need = blank.end() + length
            if self._need > self._max:
                raise SipFramingError(f"message of {self._need} bytes exceeds {self._max}")
        if len(self._buf) < self._need:
            return False
        out.append(bytes(self._buf[: self._need]))
        del self._buf[: self._need]
        self._need = None
        self._scan = 0
        return True

    @staticmethod
    def _stream_content_length(head: bytes) -> int:
        values = {v.strip() for v in _STREAM_CL_RE.findall(head)}
        if not values:
            return 0
        if len(values) > 1:
            raise SipFramingError("conflicting Content-Length headers on a stream")
        value = values.pop()
        if not (value.isdigit() and len(value) <= 10):
            raise SipFramingError(f"malformed Content-Length {value[:20]!r} on a stream")
        return int(value)


def _has_tag(value: str) -> bool:
    try:
        return parse_name_addr(value).tag is not None
    except SipParseError:
        return re.search(r";\s*tag\s*=", value, re.IGNORECASE) is not None


def build_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """Build a response to ``request`` per RFC 3261 §8.2.6.

    Copies all Via values in order, From, To (adding ``;tag=to_tag`` if given and the To has
    no tag yet), Call-ID and CSeq; Timestamp for ``100`` (§8.2.6.1); Record-Route for
    responses that establish a dialog, i.e. 101-299 to INVITE (§12.1.1).  ``headers`` are
    appended, then ``Content-Type`` if given.  Raises :class:`SipParseError` if the request
    lacks one of the copied headers and :class:`LocalProtocolError` for a bad status.
    """
    if not 100 <= status <= 699:
        raise LocalProtocolError(f"invalid status code {status}")
    if reason is None:
        reason = REASON_PHRASES.get(status, REASON_PHRASES[status // 100 * 100])
    out = Headers()
    vias = request.headers.get_all("Via")
    if not vias:
        raise SipParseError("cannot answer a request without Via")
    for via in vias:
        out.add("Via", via)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is None:
            raise SipParseError(f"cannot answer a request without {name}")
        if name == "To" and to_tag is not None and status > 100 and not _has_tag(value):
            value = f"{value};tag={to_tag}"
        out.add(name, value)
    if status == 100:
        timestamp = request.headers.get("Timestamp")
        if timestamp is not None:
            out.add("Timestamp", timestamp)
    if request.method == "INVITE" and 100 < status < 300:
        for route in request.headers.get_all("Record-Route"):
            out.add("Record-Route", route)
    for name, value in headers:
        out.add(name, value)
    if content_type is not None:
        out.set("Content-Type", content_type)
    return SipResponse(status, reason, out, body)


def warning_header(text: str, agent: str) -> str:
    """``Warning`` value ``399 agent "text"`` (RFC 3261 §20.43) with quotes escaped."""
    cleaned = " ".join(text.split())
    escaped = cleaned.replace("\\", "\\\\").replace('"', '\\"')
    return f'399 {agent} "{escaped}"'
