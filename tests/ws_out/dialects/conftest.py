"""Shared pieces of the dialect tests: a fake call, a settable clock and golden transcripts.

Tests get them through fixtures (``kit``, ``clock``, ``golden``): test modules cannot import
each other in importlib mode.

A *transcript* is what an encoder emitted, one message per line: ``T <text>`` for a text
frame (the exact JSON text) and ``B <hex>`` for a binary frame. Golden transcripts live in
``vectors/<name>.txt``; ``SIPREC_UPDATE_GOLDEN=1 pytest tests/ws_out/dialects`` rewrites them
(review the diff).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rtp.codecs import alaw_encode, ulaw_encode
from ws_out.dialects.base import (
    AudioFormat,
    AudioFrame,
    CallInfo,
    CloseInfo,
    DialectBase,
    DtmfInfo,
    Message,
    Mode,
    Participant,
    StreamStats,
    group_legs,
    order_legs,
)

VECTORS = Path(__file__).parent / "vectors"
SID = "3f2b8c1e-9d4a-4e5b-8f6c-7a1d2e3f4a5b"
CALL_ID = "a84b4c76e66710@pc33.example.com"
ALICE = "srfBElmCRp2QB23b7Mpk0w=="
BOB = "zSfPoSvdSDCmU3A3TRDxAw=="
T0 = 1_700_000_000.25
PARTICIPANTS = (
    Participant(ALICE, "sip:alice@example.com", "Zoë Müller"),
    Participant(BOB, "sip:bob@example.net"),
)
# SDP order: the callee's stream first, so caller-first ordering has something to do.
STREAMS = (("2", BOB), ("1", ALICE))
STATS = (
    StreamStats("1", 1500, 3, 1, 0, 2.125, {"ssrc": 0x12345678, "codec": "PCMU"}),
    StreamStats("2", 1497, 0, 0, 2, 0.0),
)


class Clock:
    """A wall clock the test sets (POSIX seconds)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_call(
    mode: Mode = "mux",
    fmt: AudioFormat | None = None,
    *,
    connection: int = 0,
    custom: dict[str, str] | None = None,
) -> CallInfo:
    """The test call as connection ``connection`` of a target in ``mode`` sees it."""
    legs = group_legs(mode, order_legs(STREAMS, PARTICIPANTS))[connection]
    channels = 1 if mode in ("mixed", "per-leg") else len(legs)
    return CallInfo(
        session_id=SID,
        call_id=CALL_ID,
        started_at=T0,
        legs=legs,
        format=fmt or AudioFormat(8000, channels, 10),
        mode=mode,
        participants=PARTICIPANTS,
        custom_parameters=custom if custom is not None else {"tenant": "acme"},
        sip={"request_uri": "sip:srs@192.0.2.10"},
    )


def make_frame(index: int, fmt: AudioFormat) -> AudioFrame:
    """A deterministic frame: a distinct ramp per channel and index."""
    n = np.arange(fmt.samples_per_frame)
    columns = [((n * 97 + 1000 * c + 13 * index) % 4001 - 2000) * 4 for c in range(fmt.channels)]
    pcm = np.column_stack(columns).astype(np.int16)
    if fmt.encoding == "L16":
        return AudioFrame(index, pcm)
    encode = ulaw_encode if fmt.encoding == "PCMU" else alaw_encode
    payload = np.frombuffer(encode(pcm), dtype=np.uint8).reshape(pcm.shape)
    return AudioFrame(index, pcm, payload)


def fake_call(
    encoder: DialectBase,
    call: CallInfo,
    clock: Clock,
    *,
    frames: int = 2,
    digits: Sequence[tuple[str, str]] = (("5", "1"),),
    between: Callable[[DialectBase, Clock], list[Message]] | None = None,
) -> list[Message]:
    """open, ``frames`` frames (20 ms apart on the clock), digits, ``between``, close."""
    out = encoder.open(call)
    for k in range(frames):
        clock.now = T0 + 0.02 * (k + 1)
        out += encoder.audio(make_frame(k, call.format))
    clock.now = T0 + 1.5
    for digit, label in digits:
        if any(leg.label == label for leg in call.legs):
            out += encoder.dtmf(DtmfInfo(digit, 120, label, 10))
    if between is not None:
        out += between(encoder, clock)
    clock.now = T0 + 2.0
    stats = tuple(s for s in STATS if any(leg.label == s.label for leg in call.legs))
    return out + encoder.close(CloseInfo("bye", stats))


def transcript(messages: Sequence[Message]) -> str:
    lines = [f"T {m}" if isinstance(m, str) else f"B {m.hex()}" for m in messages]
    return "\n".join(lines) + "\n"


@pytest.fixture
def golden() -> Callable[[str, Sequence[Message]], None]:
    """Compare messages with ``vectors/<name>.txt`` (or rewrite it, see the module doc)."""

    def check(name: str, messages: Sequence[Message]) -> None:
        path = VECTORS / f"{name}.txt"
        text = transcript(messages)
        if os.environ.get("SIPREC_UPDATE_GOLDEN") == "1":
            path.write_text(text, encoding="utf-8")
        assert text == path.read_text(encoding="utf-8"), f"{path.name} differs"

    return check


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers and constants of this module."""
    return SimpleNamespace(
        SID=SID,
        CALL_ID=CALL_ID,
        ALICE=ALICE,
        BOB=BOB,
        T0=T0,
        PARTICIPANTS=PARTICIPANTS,
        STREAMS=STREAMS,
        STATS=STATS,
        make_call=make_call,
        make_frame=make_frame,
        fake_call=fake_call,
        transcript=transcript,
    )
