"""audiosocket: Asterisk AudioSocket packets, one per binary WebSocket frame."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from ws_out.dialects import get_dialect
from ws_out.dialects.audiosocket import AUDIO_KINDS, packet
from ws_out.dialects.base import AudioFormat, CloseInfo, DtmfInfo, Message
from ws_out.errors import UsageError

Golden = Callable[[str, list[Message]], None]


def split(message: Message) -> tuple[int, bytes]:
    """Parse one AudioSocket packet: (kind, payload); the length must match exactly."""
    assert isinstance(message, bytes)
    kind, length = struct.unpack(">BH", message[:3])
    assert len(message) == 3 + length
    return kind, message[3:]


def test_full_call_golden(kit: SimpleNamespace, clock: Any, golden: Golden) -> None:
    encoder = get_dialect("audiosocket", clock=clock)
    call = kit.make_call("mixed", AudioFormat(8000, 1, 10))
    messages = kit.fake_call(encoder, call, clock, digits=[("5", "1"), ("flash", "2"), ("#", "2")])
    golden("audiosocket_mixed_8k", messages)
    packets = [split(m) for m in messages]
    assert [kind for kind, _ in packets] == [0x01, 0x10, 0x10, 0x03, 0x03, 0x00]
    assert packets[0][1] == uuid.UUID(kit.SID).bytes
    assert packets[1][1] == kit.make_frame(0, call.format).pcm_bytes()  # little-endian L16
    assert len(packets[2][1]) == 160
    assert [p for _, p in packets[3:5]] == [b"5", b"#"]  # flash has no AudioSocket form
    assert packets[5] == (0x00, b"")


@pytest.mark.parametrize(
    ("rate", "kind"), [(8000, 0x10), (16000, 0x12), (24000, 0x13), (48000, 0x16)]
)
def test_audio_kind_follows_the_rate(kit: SimpleNamespace, rate: int, kind: int) -> None:
    encoder = get_dialect("audiosocket")
    call = kit.make_call("per-leg", AudioFormat(rate, 1, 20), connection=1)
    (uuid_packet,) = encoder.open(call)
    assert split(uuid_packet) == (0x01, call.stream_uuid.bytes)
    (audio,) = encoder.audio(kit.make_frame(0, call.format))
    assert split(audio) == (kind, kit.make_frame(0, call.format).pcm_bytes())
    assert AUDIO_KINDS[rate] == kind


def test_error_close_and_limits(kit: SimpleNamespace) -> None:
    encoder = get_dialect("audiosocket")
    encoder.open(kit.make_call("mixed", AudioFormat(8000, 1, 20)))
    assert encoder.dtmf(DtmfInfo("flash", 100, "1", 0)) == []
    assert encoder.close(CloseInfo("error")) == [b"\xff\x00\x00", b"\x00\x00\x00"]
    assert encoder.receive(b"\x10\x00\x02\x00\x00", 0) == [] and encoder.ignored == 1
    with pytest.raises(UsageError):
        packet(0x10, bytes(70_000))
    for mode, fmt in [
        ("stereo", AudioFormat(8000, 2)),
        ("mixed", AudioFormat(8000, 1, 20, "PCMU")),
        ("mixed", AudioFormat(22050, 1, 20)),
    ]:
        with pytest.raises(UsageError):
            get_dialect("audiosocket").check(mode, fmt)  # type: ignore[arg-type]
