"""SIPREC request bodies: ``multipart/mixed`` splitting (RFC 2046 §5.1) and part selection
(RFC 7866 §9: an ``application/sdp`` part plus an ``application/rs-metadata+xml`` part).

Delimiter rule (RFC 2046 §5.1.1): a delimiter line is ``--<boundary>`` at the start of a line
followed only by optional linear whitespace (transport padding), or ``--<boundary>--`` (close
delimiter). The line break before a delimiter belongs to the delimiter. Anything else - a line
with a different boundary, a ``--`` line inside SDP - is content.

Tolerated (corpus QUIRKS.md #8-#17): any boundary, quoted or not, ``boundary =`` with spaces;
preamble and blank lines before the first delimiter; padding after delimiters and header
values; a missing close delimiter; parts in any order; part ``Content-Length`` headers (ignored:
vendors get them wrong); unknown parts (kept); missing ``Content-Disposition``; both
``application/rs-metadata+xml`` and ``application/rs-metadata``, with parameters; bare LF (or CR)
line ends.

Errors: :class:`BodyError` (a ``ValueError``) with ``status`` (SIP response code to send) and
``text`` (for a ``Warning`` header) is the only exception raised by this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

MAX_BODY_SIZE: Final = 256 * 1024
MAX_BOUNDARY_LENGTH: Final = 200  # RFC 2046 allows 70; some SRCs are generous
MAX_PART_HEADERS: Final = 32

SDP_TYPE: Final = "application/sdp"
METADATA_TYPES: Final = frozenset({"application/rs-metadata+xml", "application/rs-metadata"})
METADATA_DISPOSITION: Final = "recording-session"
# Parts seen next to SIPREC bodies that are expected and simply kept (QUIRKS #14).
_KNOWN_OTHER: Final = frozenset({"application/gtd", "application/isup", "application/qsig"})

_LINE: Final = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n|$)")
# RFC 5322 §2.2 field name (printable US-ASCII except colon), optional whitespace, colon.
_HEADER: Final = re.compile(rb"([!-9;-~]+)[ \t]*:(.*)", re.DOTALL)
_PARAM: Final = re.compile(
    r"""\s*([^\s=;"]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"?|[^;]*))?\s*(?:;|$)""", re.DOTALL
)


class BodyError(ValueError):
    """The body cannot be used. ``status``: SIP status to answer; ``text``: Warning text."""

    def __init__(self, text: str, status: int = 400) -> None:
        super().__init__(text)
        self.text = text
        self.status = status


@dataclass(slots=True)
class BodyPart:
    """One MIME body part (RFC 2046 §5.1).

    ``content_type`` is the lowercased media type without parameters ("" when absent),
    ``params`` its parameters (names lowercased), ``disposition`` the lowercased
    ``Content-Disposition`` token (``session``, ``recording-session``...) or ``None``,
    ``headers`` the part headers as received, ``body`` the raw content.
    """

    content_type: str
    params: dict[str, str]
    disposition: str | None
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """First value of part header ``name`` (case-insensitive), ``None`` if absent."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)


@dataclass(slots=True)
class RecordingBody:
    """What a SIPREC request body carries: SDP offer, metadata, anything else, and problems."""

    sdp: bytes | None = None
    metadata: bytes | None = None
    metadata_content_type: str | None = None
    other_parts: list[BodyPart] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """``type/subtype; name=value; name="quoted"`` → (lowercased type, params) (RFC 2045 §5.1).

    Lenient: spaces anywhere, empty or unparsable parameters (skipped), unquoted values with odd
    characters, an unterminated quote. The first occurrence of a parameter wins.
    """
    mime, _, rest = value.partition(";")
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        if rest[position] in "; \t\r\n":  # empty parameters: "a/b;;x=1"
            position += 1
            continue
        match = _PARAM.match(rest, position)
        if match is None:  # unparsable parameter: skip to the next one
            position = rest.find(";", position) + 1 or len(rest)
            continue
        position = match.end()
        name, raw = match.group(1).lower(), (match.group(2) or "").strip()
        if raw.startswith('"'):
            raw = re.sub(
                r"\\(.)", r"\1", raw[1:-1] if raw.endswith('"') and len(raw) > 1 else raw[1:]
            )
        params.setdefault(name, raw)
    return mime.strip().lower(), params


def _disposition(value: str | None) -> str | None:
    if value is None:
        return None
    token = value.split(";", 1)[0].strip().lower()
    return token or None


def _parse_part(raw: bytes) -> BodyPart:
    """Part headers up to the first empty line (RFC 2046 §5.1.1), then the content.

    A first line that is not a header starts the content directly (tolerance: no separator).
    """
    headers: list[tuple[str, str]] = []
    position = 0
    while position < len(raw):
        match = _LINE.match(raw, position)
        assert match is not None  # the pattern matches at any position
        line = match.group().rstrip(b"\r\n")
        if not line:
            position = match.end()
            break
        if line[:1] in (b" ", b"\t") and headers:  # folded header line (RFC 5322 §2.2.3)
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip().decode('latin-1')}")
        else:
            header = _HEADER.fullmatch(line)
            if header is None or len(headers) >= MAX_PART_HEADERS:
                break  # content starts without the empty separator line
            name = header.group(1).decode("ascii")
            headers.append((name, header.group(2).strip().decode("latin-1")))
        position = match.end()
    lookup = {name.lower(): value for name, value in reversed(headers)}
    content_type, params = parse_content_type(lookup.get("content-type", ""))
    disposition = _disposition(lookup.get("content-disposition"))
    return BodyPart(content_type, params, disposition, headers, raw[position:])


def _delimiter(line: bytes, dash_boundary: bytes) -> int:
    """0: not a delimiter, 1: delimiter, 2: close delimiter."""
    if not line.startswith(dash_boundary):
        return 0
    rest = line[len(dash_boundary) :].rstrip(b"\r\n")
    if rest.startswith(b"--"):
        rest = rest[2:]
        kind = 2
    else:
        kind = 1
    return kind if not rest.strip(b" \t") else 0


def split_multipart(
    content_type_header: str, body: bytes, *, max_parts: int = 16
) -> list[BodyPart]:
    """Split a ``multipart/*`` body into its parts (RFC 2046 §5.1.1).

    Raises :class:`BodyError` when the body exceeds :data:`MAX_BODY_SIZE`, the header has no
    usable ``boundary``, no delimiter is found, or there are more than ``max_parts`` parts.
    """
    if len(body) > MAX_BODY_SIZE:
        raise BodyError(f"body larger than {MAX_BODY_SIZE} bytes", status=413)
    _, params = parse_content_type(content_type_header)
    boundary = params.get("boundary", "")
    if not boundary:
        raise BodyError("multipart body without boundary parameter")
    if len(boundary) > MAX_BOUNDARY_LENGTH or not boundary.isprintable():
        raise BodyError("unusable multipart boundary")
    dash_boundary = b"--" + boundary.encode("utf-8", "replace")

    parts: list[BodyPart] = []
    start: int | None = None  # offset where the current part starts (after its delimiter line)
    position, previous_break, closed = 0, 0, False
    while position < len(body) and not closed:
        match = _LINE.match(body, position)
        assert match is not None  # the pattern matches at any position
        line = match.group()
        kind = _delimiter(line, dash_boundary) if line.startswith(b"--") else 0
        if kind:
            if start is not None:
                # The line break before a delimiter belongs to the delimiter (RFC 2046 §5.1.1).
                parts.append(_parse_part(body[start : max(start, position - previous_break)]))
                if len(parts) > max_parts:
                    raise BodyError(f"more than {max_parts} body parts")
            closed = kind == 2
            start = match.end()
        previous_break = len(line) - len(line.rstrip(b"\r\n"))
        position = match.end()
    if start is None:
        raise BodyError("multipart boundary not found in body")
    if not closed and body[start:].strip():
        parts.append(_parse_part(body[start:]))  # missing close delimiter (QUIRKS #11)
        if len(parts) > max_parts:
            raise BodyError(f"more than {max_parts} body parts")
    return parts


def _is_metadata(part: BodyPart) -> bool:
    return part.content_type in METADATA_TYPES or part.disposition == METADATA_DISPOSITION


def extract_recording_body(content_type_header: str | None, body: bytes) -> RecordingBody:
    """Pick the SDP offer and the recording metadata out of a request body (RFC 7866 §9).

    - ``multipart/*``: the first ``application/sdp`` part is the offer; the first part typed
      ``application/rs-metadata[+xml]`` *or* with disposition ``recording-session`` is the
      metadata (a mangled type with the right disposition is accepted and reported); other
      parts go to ``other_parts``.
    - ``application/sdp`` alone: offer only (re-INVITE, non-SIPREC SDP).
    - ``application/rs-metadata[+xml]`` alone: metadata only (UPDATE, BYE; QUIRKS #38).
    - no body: everything ``None``; any other type: kept in ``other_parts`` and reported.

    Anomalies go to ``problems``. Raises :class:`BodyError` for an oversized body, a body
    without ``Content-Type`` (RFC 3261 §20.15) or a multipart body that cannot be split.
    """
    if len(body) > MAX_BODY_SIZE:
        raise BodyError(f"body larger than {MAX_BODY_SIZE} bytes", status=413)
    result = RecordingBody()
    if not body.strip():
        return result
    if not content_type_header or not content_type_header.strip():
        raise BodyError("message body without Content-Type")
    mime, params = parse_content_type(content_type_header)
    if not mime.startswith("multipart/"):
        part = BodyPart(mime, params, None, [("Content-Type", content_type_header)], body)
        _assign(result, part)
        return result
    parts = split_multipart(content_type_header, body)
    if not parts:
        result.problems.append("multipart body without parts")
    for part in parts:
        _assign(result, part)
    return result


def _assign(result: RecordingBody, part: BodyPart) -> None:
    if part.content_type == SDP_TYPE and result.sdp is None:
        result.sdp = part.body
    elif _is_metadata(part) and result.metadata is None:
        if part.content_type not in METADATA_TYPES:
            result.problems.append(
                f"metadata part has Content-Type {part.content_type!r} "
                f"(taken for its disposition {METADATA_DISPOSITION})"
            )
        result.metadata = part.body
        result.metadata_content_type = part.content_type
    else:
        if part.content_type == SDP_TYPE:
            result.problems.append("more than one application/sdp part; extra ignored")
        elif _is_metadata(part):
            result.problems.append("more than one metadata part; extra ignored")
        elif part.content_type not in _KNOWN_OTHER:
            result.problems.append(f"unexpected body part {part.content_type or '(no type)'}")
        result.other_parts.append(part)
