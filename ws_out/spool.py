"""Disk spool for audio that could not be delivered live (sans-asyncio, blocking file I/O).

When a consumer stays unreachable, or the replay buffer of :class:`ws_out.sender.WsSender`
overflows, the sender moves the stream to the spool so that no recorded audio is lost. One
spooled stream is one folder under the spool root::

    <root>/<session_id>-<target>[-<n>]/
        spool.json     manifest (written at open and at close, atomically replaced)
        audio.wav      L16 audio from frame ``from_frame`` on, gap-free (ws_out.wav.WavWriter)
        events.jsonl   one JSON object per line: text events in order, with their position

``spool.json``::

    {"version": 1, "call_id": "...", "session_id": "...", "target": "...",
     "format": {"encoding": "L16", "sample_rate": 8000, "channels": 2, "frame_ms": 20},
     "from_frame": 0, "from_ms": 0, "reason": "target down", "spooled_at": "<ISO 8601 UTC>",
     "opening": ["<the stream's opening messages: text as is, binary as {\\"base64\\": ...}>"],
     "complete": false, "frames": 0, "closed_at": null}

``complete`` becomes ``true`` (with ``frames`` and ``closed_at``) when the stream ends; a
manifest that stays ``false`` belongs to a process that died while spooling, and its audio is
still valid up to the last flush (the WAV header is patched every ``flush_every`` frames, and
:meth:`Spool.list` measures the audio from the file size). ``events.jsonl`` lines are
``{"position": <frames before it>, "position_ms": <position x frame_ms>, "event": {...}}`` where
``event`` is what the caller gave, or ``{"messages": [...]}`` (the raw messages) when it gave
none. Frame *k* of the stream is sample frame ``(k - from_frame) x samples_per_frame`` of the WAV.

Calling protocol::

    spool = Spool("/var/spool/siprec-bridge")
    target = spool.stream(call_id=..., session_id=..., target="consumer:8765/calls")
    writer = target.open(format=fmt, from_frame=k, reason="target down", opening=[start])
    writer.write_frame(pcm) / writer.write_event(position=n, event={...})
    writer.close()
    spool.list(), spool.spooled_calls

Errors: ``OSError`` from the file system propagates; misuse raises
:exc:`ws_out.errors.UsageError`. :meth:`Spool.list` skips (and logs) folders whose manifest is
missing, larger than :data:`MAX_MANIFEST_BYTES` or malformed.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from ws_out.errors import UsageError
from ws_out.native import AudioFormat
from ws_out.wav import HEADER_BYTES, WavWriter

__all__ = [
    "AUDIO_FILE",
    "EVENTS_FILE",
    "MANIFEST_FILE",
    "MAX_MANIFEST_BYTES",
    "SPOOL_VERSION",
    "Spool",
    "SpoolEntry",
    "SpoolWriter",
    "StreamSpool",
]

logger = logging.getLogger(__name__)

SPOOL_VERSION: Final = 1
MANIFEST_FILE: Final = "spool.json"
AUDIO_FILE: Final = "audio.wav"
EVENTS_FILE: Final = "events.jsonl"
MAX_MANIFEST_BYTES: Final = 1 << 20
"""Largest manifest :meth:`Spool.list` reads."""

_MAX_NAME_CHARS: Final = 80
_UNSAFE_NAME_CHARS: Final = re.compile(r"[^A-Za-z0-9@._+-]")
_json_encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def _safe_name(text: str) -> str:
    name = _UNSAFE_NAME_CHARS.sub("_", text)[:_MAX_NAME_CHARS].lstrip(".")
    return name or "_"


def _iso(timestamp: float) -> str:
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _jsonable(messages: Sequence[str | bytes]) -> list[object]:
    return [
        m if isinstance(m, str) else {"base64": base64.b64encode(m).decode("ascii")}
        for m in messages
    ]


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="ascii")
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One spooled stream as found on disk by :meth:`Spool.list`.

    ``frames`` is measured from the WAV file size (so it is right even for a stream whose
    process died); ``complete`` tells whether the stream ended normally.
    """

    path: Path
    call_id: str
    session_id: str
    target: str
    format: AudioFormat
    from_frame: int
    frames: int
    reason: str
    spooled_at: str
    complete: bool

    @property
    def duration_s(self) -> float:
        return self.frames * self.format.frame_ms / 1000


class SpoolWriter:
    """Writes one spooled stream incrementally; get it from :meth:`StreamSpool.open`."""

    __slots__ = (
        "_clock",
        "_events",
        "_flush_every",
        "_manifest",
        "_on_close",
        "_unflushed",
        "_wav",
        "format",
        "frames",
        "path",
    )

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        format: AudioFormat,
        *,
        clock: Callable[[], float],
        flush_every: int,
    ) -> None:
        self.path = path
        self.format = format
        self.frames = 0
        self._manifest = manifest
        self._clock = clock
        self._flush_every = flush_every
        self._unflushed = 0
        _write_atomically(path / MANIFEST_FILE, _json_encode(manifest) + "\n")
        self._wav: WavWriter | None = WavWriter(
            path / AUDIO_FILE, format.sample_rate, format.channels
        )
        try:
            self._events = open(path / EVENTS_FILE, "w", encoding="ascii")  # noqa: SIM115
        except BaseException:
            self._wav.close()
            raise
        self._wav.flush()

    @property
    def closed(self) -> bool:
        return self._wav is None

    def write_frame(self, pcm: bytes) -> None:
        """Append one frame: exactly ``format.frame_bytes`` of interleaved L16 little-endian."""
        wav = self._wav
        if wav is None:
            raise UsageError(f"write_frame() on closed spool {self.path}")
        if len(pcm) != self.format.frame_bytes:
            raise UsageError(f"spooled frame of {len(pcm)} bytes, not {self.format.frame_bytes}")
        wav.write(pcm)
        self.frames += 1
        self._unflushed += 1
        if self._unflushed >= self._flush_every:
            self._unflushed = 0
            wav.flush()

    def write_event(
        self,
        *,
        position: int,
        event: Mapping[str, object] | None = None,
        messages: Sequence[str | bytes] = (),
    ) -> None:
        """Append a text event that came after ``position`` frames (flushed at once)."""
        if self._wav is None:
            raise UsageError(f"write_event() on closed spool {self.path}")
        record = {
            "position": position,
            "position_ms": position * self.format.frame_ms,
            "event": dict(event) if event is not None else {"messages": _jsonable(messages)},
        }
        try:
            line = _json_encode(record)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"spool event is not JSON-serialisable: {exc}") from None
        self._events.write(line + "\n")
        self._events.flush()

    def close(self) -> None:
        """Finalise the WAV, the events file and the manifest (``complete: true``); idempotent."""
        wav = self._wav
        if wav is None:
            return
        self._wav = None
        try:
            wav.close()
        finally:
            self._events.close()
        self._manifest.update(complete=True, frames=self.frames, closed_at=_iso(self._clock()))
        _write_atomically(self.path / MANIFEST_FILE, _json_encode(self._manifest) + "\n")


class StreamSpool:
    """The spool of one stream (a call toward one target); :meth:`open` creates its folder."""

    __slots__ = ("_spool", "call_id", "session_id", "target")

    def __init__(self, spool: Spool, call_id: str, session_id: str, target: str) -> None:
        self._spool = spool
        self.call_id = call_id
        self.session_id = session_id
        self.target = target

    def open(
        self,
        *,
        format: AudioFormat,
        from_frame: int,
        reason: str,
        opening: Sequence[str | bytes] = (),
    ) -> SpoolWriter:
        """Start spooling at frame ``from_frame``; ``opening`` is kept in the manifest."""
        if from_frame < 0:
            raise UsageError(f"from_frame must not be negative: {from_frame}")
        return self._spool._open(self, format, from_frame, reason, opening)


class Spool:
    """A spool root directory: creates per-stream folders, lists and counts spooled streams.

    ``clock`` gives the wall-clock times written to manifests; ``flush_every`` is how many
    frames may be written between two WAV header patches (50 = 1 s of 20 ms frames).
    """

    def __init__(
        self, root: Path | str, *, clock: Callable[[], float] = time.time, flush_every: int = 50
    ) -> None:
        if flush_every < 1:
            raise UsageError(f"flush_every must be at least 1, got {flush_every}")
        self.root = Path(root)
        self.spooled_calls = 0
        """Streams spooled by this process (folders created by :meth:`StreamSpool.open`)."""
        self._clock = clock
        self._flush_every = flush_every

    def stream(self, *, call_id: str, session_id: str, target: str) -> StreamSpool:
        """The spool of one stream; nothing is created on disk until it is opened."""
        return StreamSpool(self, call_id, session_id, target)

    def _open(
        self,
        stream: StreamSpool,
        format: AudioFormat,
        from_frame: int,
        reason: str,
        opening: Sequence[str | bytes],
    ) -> SpoolWriter:
        self.root.mkdir(parents=True, exist_ok=True)
        stem = f"{_safe_name(stream.session_id)}-{_safe_name(stream.target)}"
        path, n = self.root / stem, 1
        while True:
            try:
                path.mkdir()
                break
            except FileExistsError:
                n += 1
                path = self.root / f"{stem}-{n}"
        manifest: dict[str, Any] = {
            "version": SPOOL_VERSION,
            "call_id": stream.call_id,
            "session_id": stream.session_id,
            "target": stream.target,
            "format": {
                "encoding": "L16",
                "sample_rate": format.sample_rate,
                "channels": format.channels,
                "frame_ms": format.frame_ms,
            },
            "from_frame": from_frame,
            "from_ms": from_frame * format.frame_ms,
            "reason": reason,
            "spooled_at": _iso(self._clock()),
            "opening": _jsonable(opening),
            "complete": False,
            "frames": 0,
            "closed_at": None,
        }
        writer = SpoolWriter(
            path, manifest, format, clock=self._clock, flush_every=self._flush_every
        )
        self.spooled_calls += 1
        logger.warning(
            "spool: call %s session %s -> %s (%s, from frame %d)",
            stream.call_id,
            stream.session_id,
            path,
            reason,
            from_frame,
        )
        return writer

    def list(self) -> list[SpoolEntry]:
        """Every spooled stream under the root (also from earlier runs), oldest first."""
        if not self.root.is_dir():
            return []
        entries = []
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir():
                continue
            try:
                entries.append(_read_entry(folder))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.warning("spool: skipping %s: %s", folder, exc)
        entries.sort(key=lambda e: (e.spooled_at, e.path.name))
        return entries


def _read_entry(folder: Path) -> SpoolEntry:
    manifest_path = folder / MANIFEST_FILE
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ValueError(f"manifest larger than {MAX_MANIFEST_BYTES} bytes")
    manifest = json.loads(manifest_path.read_text(encoding="ascii"))
    if not isinstance(manifest, dict) or manifest.get("version") != SPOOL_VERSION:
        raise ValueError("not a version 1 spool manifest")
    fmt = manifest["format"]
    format = AudioFormat(int(fmt["sample_rate"]), int(fmt["channels"]), int(fmt["frame_ms"]))
    audio_bytes = max(0, (folder / AUDIO_FILE).stat().st_size - HEADER_BYTES)
    return SpoolEntry(
        path=folder,
        call_id=str(manifest["call_id"]),
        session_id=str(manifest["session_id"]),
        target=str(manifest["target"]),
        format=format,
        from_frame=int(manifest["from_frame"]),
        frames=audio_bytes // format.frame_bytes,
        reason=str(manifest["reason"]),
        spooled_at=str(manifest["spooled_at"]),
        complete=manifest["complete"] is True,
    )
