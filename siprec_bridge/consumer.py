"""Demo consumer of the native WebSocket protocol v1 (``docs/protocol.md``).

A ``websockets`` server: every connection is one stream (a stereo call, or one leg in per-leg
mode). Per connection it writes ``<out_dir>/<call_id>/<session_id>[-<label>].wav`` (format from
``start``) and ``....events.json``, then prints one summary line. The events file is a JSON list
with one entry per text message received, in order::

    {"received_at": <POSIX seconds>, "frames_before": <binary frames received before it>,
     "message": <the parsed JSON, or null>, "error": "<only if the message was not usable>",
     "raw": "<only if it was not parseable: its first 1000 characters>"}

Robustness: a malformed message is logged and recorded in the events file, never raised; a
connection that ends without ``stop`` still gets a finalised WAV file (stop reason
``disconnected``). Path components taken from the peer are sanitised.

Resume (``docs/delivery.md``): a ``start`` with ``resumed: true`` continues the stream of the
same ``call_id``/``session_id`` (and label, per-leg) in the *same* files, also across a restart
of the consumer: the WAV is reopened for appending (its length on disk is what was received),
the first ``frames on disk - resume_from_frame`` binary frames are duplicates and are skipped,
text messages whose ``seq`` was already seen are recorded with ``"duplicate": true`` and not
acted on, and a gap (``resume_from_frame`` beyond what is on disk) is filled with silence so
that the frame index stays the clock. The events file then lists the events of every
connection of the stream.

Options for tests and demos: ``ssl`` serves ``wss://``; ``read_delay_s`` makes a slow consumer
(a pause after every message, so that TCP back-pressure reaches the sender).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from ssl import SSLContext
from typing import Any, Final

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosedError

from ws_out import PROTOCOL, UsageError, WavWriter

__all__ = ["CallSummary", "ConsumerServer", "run_consumer"]

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES: Final = 1 << 20
"""Largest WebSocket message accepted (websockets ``max_size``)."""
MAX_EVENTS: Final = 10_000
"""Text messages kept per connection in the events file; later ones are only counted."""
MAX_EVENTS_CHARS: Final = 8 << 20
"""Total size of the text messages kept per connection; later ones are only counted."""
MAX_DEPTH: Final = 32
"""Deepest JSON nesting accepted in a text message (protocol messages use 4)."""
MAX_GAP_S: Final = 3600
"""Longest gap (seconds) a resumed stream may ask to fill with silence."""
MAX_PREVIOUS_EVENTS_BYTES: Final = 4 * MAX_EVENTS_CHARS
"""Largest events file read back when a stream resumes."""
_MAX_RAW_CHARS: Final = 1_000  # of a malformed message, kept in the events file
_SILENCE_CHUNK: Final = 1 << 20
_MAX_NAME_CHARS: Final = 96
_MAX_CHANNELS: Final = 32
_MAX_SAMPLE_RATE: Final = 384_000
_UNSAFE_NAME_CHARS: Final = re.compile(r"[^A-Za-z0-9@._+-]")


@dataclass(frozen=True, slots=True)
class CallSummary:
    """What one consumer connection produced."""

    session_id: str
    call_id: str
    wav_path: Path | None
    events_path: Path
    duration_s: float
    channels: int
    sample_rate: int
    frames: int
    stop_reason: str
    labels: list[str]
    dtmf: str
    problems: list[str]
    resumed: bool = False
    """This connection continued an earlier one (``start.resumed``)."""
    duplicate_frames: int = 0
    """Binary frames skipped as already received (resume)."""
    gap_frames: int = 0
    """Frames of silence written for audio the consumer never received (resume)."""

    def line(self) -> str:
        """The one-line report printed when the connection ends."""
        return (
            f"call {self.call_id} session {self.session_id} {self.channels}ch"
            f" {self.sample_rate}Hz {self.duration_s:.2f}s frames={self.frames}"
            f" dtmf={self.dtmf} stop={self.stop_reason} -> {self.wav_path or '-'}"
        )


def _safe_name(text: str) -> str:
    name = _UNSAFE_NAME_CHARS.sub("_", text)[:_MAX_NAME_CHARS].lstrip(".")
    return name or "_"


def _latest_stem(directory: Path, stem: str) -> str | None:
    """The last file of ``stem`` that :func:`_unique_stem` created (``stem``, ``stem-2``...)."""
    found, n = None, 1
    while (directory / f"{stem if n == 1 else f'{stem}-{n}'}.wav").exists():
        found = stem if n == 1 else f"{stem}-{n}"
        n += 1
    return found


def _unique_stem(directory: Path, stem: str) -> str:
    candidate, n = stem, 1
    while (directory / f"{candidate}.wav").exists() or (
        directory / f"{candidate}.events.json"
    ).exists():
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


def _too_deep(value: object) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


#: Native session events (``docs/protocol.md``): kept in the events file, nothing else to do.
SESSION_EVENTS = frozenset({"pause", "resume", "update", "media_stall"})


class _BadMessage(ValueError):
    """A text message is not usable: unknown type, missing or mistyped field, duplicate."""


def _field(message: dict[str, Any], key: str, kind: type) -> Any:
    value = message.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _BadMessage(f"{key} missing or not {kind.__name__}")
    return value


class _Recording:
    """State of one connection; fed messages, then ``finish()``-ed exactly once.

    ``claim(path, recording)`` is called when the recording starts writing ``path`` (the
    server finishes any other live recording of the same file: a resumed stream takes over).
    """

    def __init__(
        self,
        out_dir: Path,
        conn_name: str,
        peer: str,
        now: float,
        *,
        claim: Callable[[Path, _Recording], None] | None = None,
    ) -> None:
        self._out_dir = out_dir
        self._conn_name = conn_name
        self._peer = peer
        self._connected_at = now
        self._claim = claim
        self._events: list[dict[str, Any]] = []
        self._events_dropped = 0
        self._events_chars = 0
        self._problems: list[str] = []
        self._session_id = ""
        self._call_id = ""
        self._labels: list[str] = []
        self._directory: Path | None = None
        self._stem = ""
        self._wav: WavWriter | None = None
        self._frame_bytes = 0
        self._sample_rate = 0
        self._channels = 0
        self._dtmf: list[str] = []
        self._stop_reason: str | None = None
        self._frames = 0
        self._frames_dropped = 0
        self._frames_odd = 0
        self._resumed = False
        self._last_seq = -1
        self._skip = 0
        self._duplicate_frames = 0
        self._duplicate_messages = 0
        self._gap_frames = 0
        self.claimed: list[Path] = []
        self.done = False

    def problem(self, text: str) -> None:
        logger.warning("< %s: %s", self._conn_name, text)
        self._problems.append(text)

    def on_binary(self, data: bytes) -> None:
        if self.done:
            return
        wav = self._wav
        if wav is None or len(data) % (2 * self._channels):
            self._frames_dropped += 1
            return
        if self._skip:
            self._skip -= 1
            self._duplicate_frames += 1
            return
        if len(data) != self._frame_bytes:
            self._frames_odd += 1
        wav.write(data)
        self._frames += 1

    def on_text(self, text: str, now: float) -> None:
        if self.done:
            return
        event: dict[str, Any] = {
            "received_at": round(now, 6),
            "frames_before": self._frames,
            "message": None,
        }
        self._events_chars += len(text)
        if len(self._events) < MAX_EVENTS and self._events_chars <= MAX_EVENTS_CHARS:
            self._events.append(event)
        else:
            self._events_dropped += 1
        try:
            message = json.loads(text)
        except (ValueError, RecursionError) as exc:
            event.update(error=f"not JSON: {exc}", raw=text[:_MAX_RAW_CHARS])
            self.problem(f"malformed message: not JSON ({exc})")
            return
        if _too_deep(message):
            event.update(error=f"nested deeper than {MAX_DEPTH}", raw=text[:_MAX_RAW_CHARS])
            self.problem(f"malformed message: nested deeper than {MAX_DEPTH}")
            return
        event["message"] = message
        kind = message.get("type") if isinstance(message, dict) else None
        if kind != "start" and self._is_duplicate(message):
            event["duplicate"] = True
            self._duplicate_messages += 1
            return
        try:
            if kind == "start":
                self._on_start(message)
            elif kind == "dtmf":
                self._on_dtmf(message)
            elif kind == "stop":
                self._on_stop(message)
            elif not (isinstance(kind, str) and kind in SESSION_EVENTS):  # those are only recorded
                raise _BadMessage(f"unknown message type {kind!r}")
        except (_BadMessage, OSError) as exc:
            event["error"] = str(exc)
            self.problem(f"malformed message: {exc}")

    def _is_duplicate(self, message: Any) -> bool:
        """After a resume: a message whose ``seq`` was already seen is a replayed duplicate."""
        seq = message.get("seq") if isinstance(message, dict) else None
        if not isinstance(seq, int) or isinstance(seq, bool):
            return False
        if self._resumed and seq <= self._last_seq:
            return True
        self._last_seq = max(self._last_seq, seq)
        return False

    def _on_start(self, message: dict[str, Any]) -> None:
        if self._wav is not None:
            raise _BadMessage("duplicate start ignored")
        if message.get("protocol") != PROTOCOL:
            self.problem(f"unexpected protocol {message.get('protocol')!r}")
        session_id = _field(message, "session_id", str)
        call_id = _field(message, "call_id", str)
        mode = _field(message, "mode", str)
        fmt = _field(message, "format", dict)
        if fmt.get("encoding") != "L16":
            raise _BadMessage(f"unsupported encoding {fmt.get('encoding')!r}")
        sample_rate = _field(fmt, "sample_rate", int)
        channels = _field(fmt, "channels", int)
        frame_ms = _field(fmt, "frame_ms", int)
        if not (
            0 < sample_rate <= _MAX_SAMPLE_RATE and 0 < channels <= _MAX_CHANNELS and frame_ms > 0
        ):
            raise _BadMessage(f"unsupported format {sample_rate} Hz x {channels}, {frame_ms} ms")
        streams = _field(message, "streams", list)
        resume_from: int | None = None
        if message.get("resumed") is True:
            resume_from = _field(message, "resume_from_frame", int)
            if resume_from < 0:
                raise _BadMessage(f"negative resume_from_frame {resume_from}")
        labels = [str(s.get("label")) for s in streams if isinstance(s, dict) and "label" in s]
        directory = self._out_dir / _safe_name(call_id)
        stem = _safe_name(session_id)
        if mode == "per-leg" and labels:
            stem = f"{stem}-{_safe_name(labels[0])}"
        directory.mkdir(parents=True, exist_ok=True)
        self._session_id, self._call_id, self._labels = session_id, call_id, labels
        self._sample_rate, self._channels = sample_rate, channels
        self._frame_bytes = sample_rate * frame_ms // 1000 * channels * 2
        self._directory = directory
        previous = _latest_stem(directory, stem) if resume_from is not None else None
        if previous is not None and self._continue(directory, previous):
            pass
        else:
            stem = _unique_stem(directory, stem)
            self._open(directory, stem, append=False)
        if resume_from is not None:
            self._resume_at(resume_from, sample_rate * frame_ms // 1000)

    def _open(self, directory: Path, stem: str, *, append: bool) -> None:
        path = directory / f"{stem}.wav"
        self._take(path)
        self._wav = WavWriter(path, self._sample_rate, self._channels, append=append)
        self._stem = stem

    def _take(self, path: Path) -> None:
        if self._claim is not None and path not in self.claimed:
            self._claim(path, self)
            self.claimed.append(path)

    def _continue(self, directory: Path, stem: str) -> bool:
        """Adopt the files of an earlier connection of this stream; ``False`` if unusable."""
        events_path = directory / f"{stem}.events.json"
        previous: list[dict[str, Any]] = []
        try:
            self._take(directory / f"{stem}.wav")  # a live writer of it finishes first
            if events_path.exists():
                if events_path.stat().st_size > MAX_PREVIOUS_EVENTS_BYTES:
                    raise ValueError(f"larger than {MAX_PREVIOUS_EVENTS_BYTES} bytes")
                loaded = json.loads(events_path.read_text(encoding="ascii"))
                if not isinstance(loaded, list) or not all(isinstance(e, dict) for e in loaded):
                    raise ValueError("not a list of events")
                previous = loaded
            self._open(directory, stem, append=True)
        except (OSError, ValueError, RecursionError) as exc:  # UsageError: format mismatch
            self.problem(f"cannot continue {stem}: {exc}")
            return False
        self._events[:0] = previous[: MAX_EVENTS - 1]
        for entry in previous:
            message = entry.get("message")
            if not isinstance(message, dict) or "error" in entry or entry.get("duplicate"):
                continue
            seq = message.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                self._last_seq = max(self._last_seq, seq)
            if message.get("type") == "dtmf" and isinstance(message.get("digit"), str):
                self._dtmf.append(message["digit"])
            elif message.get("type") == "stop" and isinstance(message.get("reason"), str):
                self._stop_reason = message["reason"]
        return True

    def _resume_at(self, frame: int, samples_per_frame: int) -> None:
        """Skip the duplicates of a replay starting at ``frame``, or fill the gap before it."""
        wav = self._wav
        assert wav is not None
        self._resumed = True
        have = wav.frames // samples_per_frame
        if wav.frames % samples_per_frame:
            self.problem("audio on disk is not a whole number of frames; resume is approximate")
        self._frames = have
        if frame <= have:
            self._skip = have - frame
            return
        gap = frame - have
        if gap * samples_per_frame > MAX_GAP_S * self._sample_rate:
            self.problem(f"resume gap of {gap} frames exceeds {MAX_GAP_S} s: not filled")
            return
        self.problem(f"resumed after a gap of {gap} frames: filled with silence")
        silence = gap * self._frame_bytes
        while silence:
            chunk = min(silence, _SILENCE_CHUNK - _SILENCE_CHUNK % self._frame_bytes)
            wav.write(bytes(chunk))
            silence -= chunk
        self._frames = frame
        self._gap_frames = gap

    def _on_dtmf(self, message: dict[str, Any]) -> None:
        digit = message.get("digit")
        if not isinstance(digit, str) or len(digit) != 1:
            raise _BadMessage(f"dtmf without a digit: {digit!r}")
        self._dtmf.append(digit)

    def _on_stop(self, message: dict[str, Any]) -> None:
        if self._stop_reason is not None:
            raise _BadMessage("duplicate stop")
        self._stop_reason = _field(message, "reason", str)

    def finish(self, now: float) -> CallSummary:
        """Close the WAV file, write the events file and summarise (OSError propagates)."""
        self.done = True
        if self._frames_dropped:
            self.problem(f"{self._frames_dropped} binary frames dropped (no usable start)")
        if self._frames_odd:
            self.problem(f"{self._frames_odd} binary frames of unexpected length")
        if self._duplicate_frames or self._duplicate_messages:
            self.problem(
                f"resume: {self._duplicate_frames} duplicate frames and"
                f" {self._duplicate_messages} duplicate messages skipped"
            )
        if self._events_dropped:
            self.problem(f"{self._events_dropped} text messages not kept (size limits)")
        if self._stop_reason is None:
            self.problem("connection ended without stop")
        wav = self._wav
        if wav is not None:
            wav.close()
        directory, stem = self._directory, self._stem
        if directory is None or not stem:
            directory = self._out_dir / "_unidentified"
            directory.mkdir(parents=True, exist_ok=True)
            stem = _unique_stem(directory, _safe_name(self._conn_name))
        events_path = directory / f"{stem}.events.json"
        events_path.write_text(json.dumps(self._events, indent=1) + "\n", encoding="ascii")
        logger.info(
            "< %s: %s closed after %.1f s", self._conn_name, self._peer, now - self._connected_at
        )
        return CallSummary(
            session_id=self._session_id,
            call_id=self._call_id,
            wav_path=wav.path if wav is not None else None,
            events_path=events_path,
            duration_s=wav.duration_s if wav is not None else 0.0,
            channels=self._channels,
            sample_rate=self._sample_rate,
            frames=self._frames,
            stop_reason=self._stop_reason or "disconnected",
            labels=self._labels,
            dtmf="".join(self._dtmf),
            problems=list(self._problems),
            resumed=self._resumed,
            duplicate_frames=self._duplicate_frames,
            gap_frames=self._gap_frames,
        )


class ConsumerServer:
    """The demo consumer as an object: ``await start()`` -> bound port, ``await close()``.

    ``clock`` gives the wall-clock receive times recorded in the events files; ``ssl`` serves
    ``wss://`` (see :func:`ws_out.tls.server_context`); ``read_delay_s`` pauses after every
    message received (a slow consumer, for tests).
    """

    def __init__(
        self,
        host: str,
        port: int,
        out_dir: Path,
        *,
        on_call_done: Callable[[CallSummary], None] | None = None,
        clock: Callable[[], float] = time.time,
        ssl: SSLContext | None = None,
        read_delay_s: float = 0.0,
    ) -> None:
        if read_delay_s < 0:
            raise ValueError(f"read_delay_s must not be negative, got {read_delay_s}")
        self.host = host
        self.port = port
        self.out_dir = out_dir
        self.summaries: list[CallSummary] = []
        self._on_call_done = on_call_done
        self._clock = clock
        self._ssl = ssl
        self._read_delay_s = read_delay_s
        self._server: Server | None = None
        self._finished = asyncio.Event()
        self._conn_ids = count(1)
        self._live: dict[Path, _Recording] = {}

    @property
    def scheme(self) -> str:
        return "wss" if self._ssl is not None else "ws"

    async def start(self) -> int:
        """Listen; return the bound port (useful with ``port=0``)."""
        if self._server is not None:
            raise RuntimeError("ConsumerServer already started")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            max_size=MAX_MESSAGE_BYTES,
            compression=None,
            ssl=self._ssl,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("consumer listening on %s://%s:%d", self.scheme, self.host, self.port)
        return self.port

    async def wait_for(self, calls: int, *, timeout: float | None = None) -> list[CallSummary]:
        """Wait until at least ``calls`` connections have finished; ``TimeoutError`` if not."""
        async with asyncio.timeout(timeout):
            while len(self.summaries) < calls:
                self._finished.clear()
                await self._finished.wait()
        return self.summaries

    async def close(self) -> None:
        """Stop listening, close open connections (1001) and wait for them to be finalised."""
        server = self._server
        if server is None:
            return
        server.close()
        await server.wait_closed()

    async def abort(self) -> None:
        """Like a crash, for tests: drop every connection without a closing handshake (the
        peers see 1006) and stop listening; the recordings are still finalised."""
        server = self._server
        if server is None:
            return
        for connection in list(server.connections):
            connection.transport.abort()
        server.close(close_connections=False)
        await server.wait_closed()

    def _claim(self, path: Path, recording: _Recording) -> None:
        """``recording`` writes ``path`` from now on: finish another live writer of it first."""
        other = self._live.get(path)
        if other is not None and other is not recording:
            other.problem("taken over by a resumed connection")
            self._finish(other)
        self._live[path] = recording

    async def _handle(self, ws: ServerConnection) -> None:
        clock = self._clock
        delay = self._read_delay_s
        peer = str(ws.remote_address)
        recording = _Recording(
            self.out_dir, f"conn-{next(self._conn_ids)}", peer, clock(), claim=self._claim
        )
        try:
            async for message in ws:
                try:
                    if isinstance(message, str):
                        recording.on_text(message, clock())
                    else:
                        recording.on_binary(message)
                except (OSError, UsageError) as exc:
                    recording.problem(f"cannot write recording: {exc}")
                except Exception as exc:  # a consumer bug must not lose the recording
                    logger.exception("%s: message handling failed", peer)
                    recording.problem(f"internal error on message: {exc!r}")
                if delay:
                    await asyncio.sleep(delay)
        except ConnectionClosedError as exc:
            recording.problem(f"connection closed abnormally: {exc}")
        finally:
            self._finish(recording)

    def _finish(self, recording: _Recording) -> None:
        if recording.done:
            return
        for path in recording.claimed:
            if self._live.get(path) is recording:
                del self._live[path]
        try:
            summary = recording.finish(self._clock())
        except Exception:  # OSError, or a consumer bug: keep serving other connections
            logger.exception("cannot finalise recording")
            return
        self.summaries.append(summary)
        self._finished.set()
        print(summary.line(), flush=True)
        if self._on_call_done is not None:
            try:
                self._on_call_done(summary)
            except Exception:
                logger.exception("on_call_done callback failed")


async def run_consumer(
    host: str,
    port: int,
    out_dir: Path,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    on_call_done: Callable[[CallSummary], None] | None = None,
    ssl: SSLContext | None = None,
    read_delay_s: float = 0.0,
) -> None:
    """Serve until ``stop`` is set (or forever, until cancelled); ``ready`` is set once bound."""
    server = ConsumerServer(
        host, port, out_dir, on_call_done=on_call_done, ssl=ssl, read_delay_s=read_delay_s
    )
    await server.start()
    try:
        if ready is not None:
            ready.set()
        if stop is None:
            await asyncio.get_running_loop().create_future()
        else:
            await stop.wait()
    finally:
        await server.close()
