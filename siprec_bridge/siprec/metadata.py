"""SIPREC recording metadata (RFC 7865) and the pre-RFC dialects SRCs still send.

Dialects, by root namespace (QUIRKS.md #30):

- ``rfc7865`` - ``urn:ietf:params:xml:ns:recording:1``, root ``<recording>`` (RFC 7865 §6):
  ``<participant participant_id>``, ``<stream stream_id session_id>``,
  ``<participantstreamassoc participant_id>`` with ``<send>``/``<recv>``.
- ``draft`` - ``urn:ietf:params:xml:ns:recording`` (draft-ietf-siprec-metadata; Oracle/Acme,
  Metaswitch, AudioCodes, Sonus): ``id=``/``session=`` attributes, ``<send>``/``<recv>``
  directly inside ``<participant>``. A root without namespace is read as this dialect.
- ``siprec-draft`` - ``urn:ietf:params:xml:ns:siprec``, root ``<recording_metadata>``
  (BroadWorks, Webex Calling): ``<aor>`` child, ``<send><id>...</id></send>``.

Elements are matched by local name (any prefix) in any of these namespaces, and all spellings
are accepted in every dialect (QUIRKS #31-#36). Extension data (``<extensiondata>`` and
elements in foreign namespaces) is flattened into ``{local-name: text}`` (QUIRKS #35).

Security (DEPENDENCIES.md): one hardened lxml parser (no entity resolution, no network, no
DTD loading, no huge trees), any DOCTYPE rejected, input capped at :data:`MAX_METADATA_SIZE`.

Errors: :class:`MetadataError` (a ``ValueError``, ``str()`` is a short reason) is the only
exception raised by this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from lxml import etree

MAX_METADATA_SIZE: Final = 256 * 1024

Dialect = Literal["rfc7865", "draft", "siprec-draft"]

NAMESPACES: Final[dict[str, Dialect]] = {
    "urn:ietf:params:xml:ns:recording:1": "rfc7865",
    "urn:ietf:params:xml:ns:recording": "draft",
    "urn:ietf:params:xml:ns:siprec": "siprec-draft",
}
_ROOTS: Final = frozenset({"recording", "recording_metadata"})

_PARSER: Final = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_blank_text=False,
)

# Participant children that are not extension data.
_PARTICIPANT_FIELDS: Final = frozenset(
    {"nameid", "aor", "name", "send", "recv", "associate-time", "disassociate-time"}
)


class MetadataError(ValueError):
    """The metadata document cannot be read (not XML, DOCTYPE, too large, wrong root)."""


@dataclass(slots=True)
class Participant:
    """A participant (RFC 7865 §6.4) and the stream ids it sends/receives (§6.11).

    ``aor``/``name`` come from ``<nameID aor=><name>`` or direct ``<aor>``/``<name>`` children;
    ``extension`` flattens its ``<extensiondata>``, foreign-namespace children and unknown
    children (Intrado ``<channel>``, ``<role>``) into ``{local name: text}``.
    """

    participant_id: str
    aor: str | None = None
    name: str | None = None
    send: list[str] = field(default_factory=list)
    recv: list[str] = field(default_factory=list)
    extension: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Stream:
    """A media stream (RFC 7865 §6.5); ``label`` matches an SDP ``a=label``."""

    stream_id: str
    label: str | None = None
    session_id: str | None = None
    mode: str | None = None


@dataclass(slots=True)
class RecordingSessionInfo:
    """A communication session (RFC 7865 §6.3)."""

    session_id: str
    sip_session_ids: list[str] = field(default_factory=list)
    group_id: str | None = None
    start_time: str | None = None
    stop_time: str | None = None


@dataclass(slots=True)
class RecordingMetadata:
    """A parsed metadata document.

    ``extensions`` flattens extension data outside participants (``<extensiondata>`` anywhere
    else, foreign-namespace elements such as Sonus ``<callData>``): ``{local name: text}``,
    first occurrence wins. ``raw`` is the input as given. ``problems`` lists associations that
    could not be applied (dangling participant ids).
    """

    datamode: str | None
    dialect: Dialect
    sessions: list[RecordingSessionInfo] = field(default_factory=list)
    participants: list[Participant] = field(default_factory=list)
    streams: list[Stream] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    extensions: dict[str, str] = field(default_factory=dict)
    raw: bytes = b""
    problems: list[str] = field(default_factory=list)

    def participant_sending(self, label: str) -> Participant | None:
        """The first participant that sends the stream labelled ``label``."""
        ids = {s.stream_id for s in self.streams if s.label == label}
        return next((p for p in self.participants if ids.intersection(p.send)), None)


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _is_ours(el: etree._Element) -> bool:
    """In a recording namespace, or in none (Metaswitch, namespace-less roots)."""
    namespace = etree.QName(el).namespace
    return namespace is None or namespace in NAMESPACES


def _elements(el: etree._Element) -> list[etree._Element]:
    """Element children (comments and processing instructions skipped)."""
    return [child for child in el if isinstance(child.tag, str)]


def _text(el: etree._Element) -> str | None:
    """Stripped text content; ``None`` when empty (``<name xml:lang="en"> </name>``)."""
    text = "".join(t for t in el.itertext() if isinstance(t, str)).strip()
    return text or None


def _attr(el: etree._Element, *names: str) -> str | None:
    for name in names:
        value = el.get(name)
        if value is not None:
            return value.strip()
    return None


def _child_text(el: etree._Element, *names: str) -> str | None:
    for child in _elements(el):
        if _is_ours(child) and _local(child).lower() in names:
            text = _text(child)
            if text is not None:
                return text
    return None


def _flatten(el: etree._Element, out: dict[str, str], *, include_self: bool) -> None:
    """Leaf elements → ``out[local name] = text`` (first wins). A leaf whose parent has a
    ``label`` attribute (Acme ``<apkt:header label="Call-ID"><value>``) is keyed by the label."""
    candidates = el.iter() if include_self else el.iterdescendants()
    for leaf in candidates:
        if not isinstance(leaf.tag, str) or _elements(leaf):
            continue
        parent = leaf.getparent()
        label = parent.get("label") if leaf is not el and parent is not None else None
        key = label.strip() if label else _local(leaf)
        out.setdefault(key, (leaf.text or "").strip())


def _stream_refs(el: etree._Element) -> list[str]:
    """``<send>id</send>`` or BroadWorks ``<send><id>id</id></send>`` (QUIRKS #32)."""
    children = _elements(el)
    if not children:
        text = _text(el)
        return [text] if text is not None else []
    return [text for child in children if (text := _text(child)) is not None]


def _add_unique(target: list[str], values: list[str]) -> None:
    for value in values:
        if value not in target:
            target.append(value)


class _Reader:
    """Walks one document; keeps the partial result and the pending stream associations."""

    def __init__(self, dialect: Dialect, raw: bytes) -> None:
        self.result = RecordingMetadata(datamode=None, dialect=dialect, raw=raw)
        self.participants: dict[str, Participant] = {}
        self.streams: dict[str, Stream] = {}
        self.assocs: list[tuple[str, list[str], list[str]]] = []

    def container(self, el: etree._Element) -> None:
        """Root, ``<session>``, ``<group>`` or an unknown recording element: dispatch children."""
        for child in _elements(el):
            if not _is_ours(child):
                _flatten(child, self.result.extensions, include_self=True)
                continue
            name = _local(child).lower()
            if name == "datamode":
                self.result.datamode = _text(child)
            elif name == "group":
                self.group(child)
            elif name == "session":
                self.session(child)
            elif name == "participant":
                self.participant(child)
            elif name == "stream":
                self.stream(child)
            elif name == "participantstreamassoc":
                pid = _attr(child, "participant_id", "id") or ""
                send, recv = self.send_recv(child)
                self.assocs.append((pid, send, recv))
            elif name == "extensiondata":
                _flatten(child, self.result.extensions, include_self=False)
            elif _elements(child) and name not in _ASSOCIATIONS:
                self.container(child)

    def group(self, el: etree._Element) -> None:
        group_id = _attr(el, "group_id", "id")
        if group_id and group_id not in self.result.groups:
            self.result.groups.append(group_id)
        self.container(el)

    def session(self, el: etree._Element) -> None:
        session_id = _attr(el, "session_id", "id") or ""
        sip_ids = [
            text
            for child in _elements(el)
            if _is_ours(child) and _local(child).lower() == "sipsessionid"
            if (text := _text(child)) is not None
        ]
        self.result.sessions.append(
            RecordingSessionInfo(
                session_id=session_id,
                sip_session_ids=sip_ids,
                group_id=_attr(el, "group", "group_id") or _child_text(el, "group-ref"),
                start_time=_child_text(el, "start-time", "associate-time"),
                stop_time=_child_text(el, "end-time", "stop-time", "disassociate-time"),
            )
        )
        self.container(el)

    def participant(self, el: etree._Element) -> None:
        pid = _attr(el, "participant_id", "id") or ""
        participant = self.participants.get(pid)
        if participant is None:
            participant = Participant(pid)
            self.participants[pid] = participant
            self.result.participants.append(participant)
        for child in _elements(el):
            if not _is_ours(child):
                _flatten(child, participant.extension, include_self=True)
                continue
            name = _local(child).lower()
            if name == "nameid":
                participant.aor = (
                    participant.aor or _attr(child, "aor") or _child_text(child, "aor")
                )
                participant.name = participant.name or _child_text(child, "name")
            elif name == "aor":
                participant.aor = participant.aor or _text(child)
            elif name == "name":
                participant.name = participant.name or _text(child)
            elif name in ("send", "recv"):
                _add_unique(
                    participant.send if name == "send" else participant.recv, _stream_refs(child)
                )
            elif name == "extensiondata":
                _flatten(child, participant.extension, include_self=False)
            elif name not in _PARTICIPANT_FIELDS:
                _flatten(child, participant.extension, include_self=True)

    def stream(self, el: etree._Element) -> None:
        sid = _attr(el, "stream_id", "id") or ""
        label = _child_text(el, "label")
        session_id = _attr(el, "session_id", "session")
        mode = _child_text(el, "mode")
        known = self.streams.get(sid)
        if known is None:
            stream = Stream(sid, label, session_id, mode)
            self.streams[sid] = stream
            self.result.streams.append(stream)
        else:
            known.label = known.label or label
            known.session_id = known.session_id or session_id
            known.mode = known.mode or mode

    @staticmethod
    def send_recv(el: etree._Element) -> tuple[list[str], list[str]]:
        send: list[str] = []
        recv: list[str] = []
        for child in _elements(el):
            if _is_ours(child):
                name = _local(child).lower()
                if name == "send":
                    _add_unique(send, _stream_refs(child))
                elif name == "recv":
                    _add_unique(recv, _stream_refs(child))
        return send, recv

    def finish(self) -> RecordingMetadata:
        """Apply ``<participantstreamassoc>`` once every participant is known (any order)."""
        for pid, send, recv in self.assocs:
            participant = self.participants.get(pid)
            if participant is None:
                if send or recv:
                    self.result.problems.append(
                        f"participantstreamassoc for unknown participant {pid!r} ignored"
                    )
                continue
            _add_unique(participant.send, send)
            _add_unique(participant.recv, recv)
        return self.result


_ASSOCIATIONS: Final = frozenset({"sessionrecordingassoc", "participantsessionassoc"})


def _prepare(data: bytes) -> bytes:
    if len(data) > MAX_METADATA_SIZE:
        raise MetadataError(f"metadata larger than {MAX_METADATA_SIZE} bytes")
    # QUIRKS #36: whitespace before "<?xml", trailing NULs from C buffers.
    data = data.lstrip(b" \t\r\n").rstrip(b" \t\r\n\x00")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:].lstrip(b" \t\r\n")
    if b"<!doctype" in data.lower():
        raise MetadataError("DOCTYPE not allowed in metadata")
    if not data:
        raise MetadataError("empty metadata")
    return data


def parse_metadata(data: bytes) -> RecordingMetadata:
    """Parse a recording metadata document (RFC 7865 §6 or a pre-RFC dialect).

    Raises :class:`MetadataError` for oversized input, a DOCTYPE, XML that is not well formed,
    a root that is not ``recording``/``recording_metadata`` in a recording namespace, or a root
    without child elements.
    """
    raw = data
    data = _prepare(data)
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        reason = str(exc.msg or "syntax error").splitlines()[0][:120]
        raise MetadataError(f"metadata is not well-formed XML: {reason}") from None
    except (etree.LxmlError, ValueError) as exc:
        raise MetadataError(f"metadata is not readable XML: {str(exc)[:120]}") from None
    # Catches a DOCTYPE the byte check cannot see (UTF-16). lxml-stubs lack DocInfo.doctype.
    if getattr(root.getroottree().docinfo, "doctype", ""):
        raise MetadataError("DOCTYPE not allowed in metadata")
    qname = etree.QName(root)
    if qname.localname not in _ROOTS:
        raise MetadataError(f"unexpected metadata root <{qname.localname[:40]}>")
    if qname.namespace is None:
        dialect: Dialect = "siprec-draft" if qname.localname == "recording_metadata" else "draft"
    elif qname.namespace in NAMESPACES:
        dialect = NAMESPACES[qname.namespace]
    else:
        raise MetadataError(f"unexpected metadata namespace {qname.namespace[:80]!r}")
    if not _elements(root):  # e.g. markup stripped by copy/paste (QUIRKS #37)
        raise MetadataError(f"metadata root <{qname.localname}> has no child elements")
    reader = _Reader(dialect, raw)
    reader.container(root)
    return reader.finish()
