"""Structured logs: text or JSON lines, with the call id and session id on every line of a call.

The ids live in :mod:`contextvars`, so they follow the code that handles a call without being
passed around: set them with :func:`call_context` around the handling of a SIP event (the
context is copied into tasks created inside, so a call's own tasks keep its ids), or bind them
to a logger with :class:`CallLogger` for objects that outlive one event (the media ticker).
An explicit ``extra={"call_id": ...}`` on a record wins over both.

:class:`CallContextFilter` (installed on the handler by :func:`setup_logging`) copies the ids
onto every record; :class:`JsonFormatter` writes one JSON object per line (``ts``, ``level``,
``logger``, ``msg``, ``call_id``, ``session_id``, any other ``extra`` fields, ``exc``);
:class:`TextFormatter` writes ``time LEVEL logger [call=… session=…] message``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from typing import IO, Any, Final, Literal

__all__ = [
    "CallContextFilter",
    "CallLogger",
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "call_context",
    "setup_logging",
]

LogFormat = Literal["text", "json"]

_call_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_id", default=None)
_session_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("session_id", default=None)

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "call_id",
    "session_id",
    "taskName",
}


@contextlib.contextmanager
def call_context(call_id: str | None, session_id: str | None = None) -> Iterator[None]:
    """Log lines emitted inside the block carry ``call_id`` and ``session_id``."""
    call_token = _call_id.set(call_id)
    session_token = _session_id.set(session_id)
    try:
        yield
    finally:
        _session_id.reset(session_token)
        _call_id.reset(call_token)


class CallLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger bound to one call: ``CallLogger(log, call_id, session_id).info(...)``."""

    def __init__(self, logger: logging.Logger, call_id: str, session_id: str | None) -> None:
        super().__init__(logger, {"call_id": call_id, "session_id": session_id})

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


class CallContextFilter(logging.Filter):
    """Sets ``record.call_id`` / ``record.session_id`` (``None`` outside a call)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "call_id", None) is None:
            record.call_id = _call_id.get()
        if getattr(record, "session_id", None) is None:
            record.session_id = _session_id.get()
        return True


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``call_id``/``session_id`` present only inside a call."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("call_id", "session_id"):
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``2024-05-01T12:00:00.123Z INFO siprec_bridge.app [call=… session=…] message``."""

    def format(self, record: logging.LogRecord) -> str:
        call_id = getattr(record, "call_id", None)
        session_id = getattr(record, "session_id", None)
        ids = ""
        if call_id is not None or session_id is not None:
            ids = f"[call={call_id or '-'} session={session_id or '-'}] "
        line = f"{_timestamp(record)} {record.levelname} {record.name} {ids}{record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def setup_logging(
    fmt: LogFormat = "text", level: str = "info", stream: IO[str] | None = None
) -> logging.Handler:
    """Replace the root logger's handlers by one writing ``fmt`` lines to ``stream``
    (stderr by default) at ``level``; returns the handler."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(CallContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
