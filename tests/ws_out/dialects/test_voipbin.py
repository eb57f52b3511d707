"""voipbin: sln, rtp and audiosocket encapsulations of the mixed call audio."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from ws_out.dialects import get_dialect
from ws_out.dialects.base import AudioFormat, Message
from ws_out.errors import UsageError

Golden = Callable[[str, list[Message]], None]
SLN = AudioFormat(8000, 1, 20)
PCMU = AudioFormat(8000, 1, 20, "PCMU")


def test_sln_is_raw_little_endian_pcm(kit: SimpleNamespace, clock: Any, golden: Golden) -> None:
    encoder = get_dialect("voipbin", clock=clock)
    assert (encoder.default_mode, encoder.default_encoding) == ("mixed", "L16")
    call = kit.make_call("mixed", SLN)
    messages = kit.fake_call(encoder, call, clock)
    golden("voipbin_sln", messages)
    assert messages == [kit.make_frame(k, SLN).pcm_bytes() for k in range(2)]  # no control
    assert all(len(m) == 320 for m in messages)


def test_rtp_packets(kit: SimpleNamespace, clock: Any, golden: Golden) -> None:
    encoder = get_dialect("voipbin", clock=clock, encapsulation="rtp")
    call = kit.make_call("mixed", PCMU)
    messages = kit.fake_call(encoder, call, clock, frames=3)
    golden("voipbin_rtp", messages)
    ids = uuid.UUID(kit.SID).bytes
    headers = [struct.unpack(">BBHII", m[:12]) for m in messages if isinstance(m, bytes)]
    assert len(headers) == len(messages) == 3
    seq0, ts0 = int.from_bytes(ids[4:6]), int.from_bytes(ids[12:16])
    for k, (first, second, seq, ts, ssrc) in enumerate(headers):
        assert first == 0x80  # V=2, no padding, extension or CSRC
        assert second == (0x80 if k == 0 else 0x00)  # marker on the first packet, PT 0
        assert seq == (seq0 + k) & 0xFFFF
        assert ts == (ts0 + 160 * k) & 0xFFFFFFFF
        assert ssrc == int.from_bytes(ids[:4])
        assert messages[k][12:] == kit.make_frame(k, PCMU).payload.tobytes()
        assert len(messages[k]) == 172


def test_rtp_timestamp_follows_call_time(kit: SimpleNamespace) -> None:
    encoder = get_dialect("voipbin", encapsulation="rtp")
    encoder.open(kit.make_call("mixed", PCMU))
    first = encoder.audio(kit.make_frame(50, PCMU))[0]
    second = encoder.audio(kit.make_frame(52, PCMU))[0]  # frames 51 dropped upstream
    seq = [struct.unpack(">H", m[2:4])[0] for m in (first, second)]
    ts = [struct.unpack(">I", m[4:8])[0] for m in (first, second)]
    assert (seq[1] - seq[0]) & 0xFFFF == 1 and (ts[1] - ts[0]) & 0xFFFFFFFF == 320


def test_audiosocket_encapsulation(kit: SimpleNamespace, clock: Any, golden: Golden) -> None:
    encoder = get_dialect("voipbin", clock=clock, encapsulation="audiosocket")
    call = kit.make_call("mixed", SLN)
    messages = kit.fake_call(encoder, call, clock)
    golden("voipbin_audiosocket", messages)
    assert messages[0] == b"\x01\x00\x10" + uuid.UUID(kit.SID).bytes
    assert messages[1] == b"\x10\x01\x40" + kit.make_frame(0, SLN).pcm_bytes()
    assert messages[3] == b"\x03\x00\x015"
    assert messages[-1] == b"\x00\x00\x00"


def test_constraints() -> None:
    with pytest.raises(UsageError):
        get_dialect("voipbin", encapsulation="webm")
    with pytest.raises(UsageError):
        get_dialect("voipbin", encapsulation="rtp").check("mixed", SLN)  # rtp carries μ-law
    with pytest.raises(UsageError):
        get_dialect("voipbin").check("mixed", PCMU)  # sln carries L16
    with pytest.raises(UsageError):
        get_dialect("voipbin").check("mixed", AudioFormat(16000, 1))
    with pytest.raises(UsageError):
        get_dialect("voipbin").check("stereo", AudioFormat(8000, 2))
    get_dialect("voipbin").check("per-leg", SLN)
    assert get_dialect("voipbin").receive(b"\x00", 0) == []
