"""Cost of the output audio path: OutputShaper per internal frame, dialect encoders per frame.

Run: ``python bench/bench_audio.py``. Prints CPU time of this process (``process_time``, so that
other load on the machine does not count), no assertions:

* the shaper: µs per ``push`` of one 20 ms internal frame of a two-leg call, for each output
  shape (mode, rate, encoding, frame length);
* the encoders: µs per ``audio()`` of one 20 ms output frame, per dialect, in its default
  encoding.
"""

from __future__ import annotations

import time

import numpy as np

from siprec_bridge.audio import OutputShaper
from ws_out.dialects import get_dialect
from ws_out.dialects.base import AudioFormat, CallInfo, Participant, group_legs, order_legs

SECONDS = 10
SID = "3f2b8c1e-9d4a-4e5b-8f6c-7a1d2e3f4a5b"

SHAPES = [
    # (mode, in_rate, out_rate, encoding, frame_ms)
    ("stereo", 8000, 8000, "L16", 20),
    ("stereo", 8000, 8000, "L16", 100),
    ("stereo", 8000, 16000, "L16", 20),
    ("stereo", 8000, 24000, "L16", 20),
    ("stereo", 8000, 48000, "L16", 20),
    ("stereo", 16000, 8000, "L16", 20),
    ("stereo", 16000, 24000, "L16", 20),
    ("mixed", 8000, 8000, "L16", 20),
    ("mixed", 8000, 16000, "L16", 20),
    ("mux", 8000, 8000, "PCMU", 20),
    ("mux", 16000, 8000, "PCMU", 20),
]
DIALECTS = [
    ("native", {}, "stereo"),
    ("twilio", {}, "mux"),
    ("wavix", {}, "mux"),
    ("voxology", {}, "mux"),
    ("voipbin", {"encapsulation": "rtp"}, "mixed"),
    ("audiosocket", {}, "mixed"),
    ("rcms", {}, "mux"),
]


def _legs(rate: int, frames: int) -> list[np.ndarray]:
    t = np.arange(rate * 20 // 1000 * frames) / rate
    return [
        (8000 * np.sin(2 * np.pi * f * t)).astype(np.int16).reshape(frames, -1) for f in (440, 1000)
    ]


def bench_shaper(mode: str, in_rate: int, out_rate: int, encoding: str, frame_ms: int) -> float:
    """µs per push of one 20 ms internal frame (two legs)."""
    frames = SECONDS * 50
    left, right = _legs(in_rate, frames)
    shaper = OutputShaper(
        mode=mode,  # type: ignore[arg-type]
        channels=2,
        in_rate=in_rate,
        in_frame_ms=20,
        encoding=encoding,  # type: ignore[arg-type]
        sample_rate=out_rate,
        frame_ms=frame_ms,
    )
    started = time.process_time()
    for k in range(frames):
        shaper.push([left[k], right[k]])
    return (time.process_time() - started) / frames * 1e6


def bench_dialect(name: str, options: dict[str, str], mode: str) -> float:
    """µs per audio() of one 20 ms output frame in the dialect's default encoding."""
    encoder = get_dialect(name, **options)  # type: ignore[arg-type]
    people = (Participant("a", "sip:a@example.com"), Participant("b", "sip:b@example.com"))
    legs = group_legs(mode, order_legs([("1", "a"), ("2", "b")], people))[0]  # type: ignore[arg-type]
    fmt = AudioFormat(
        encoder.default_sample_rate, 1 if mode == "mixed" else 2, 20, encoder.default_encoding
    )
    encoder.open(CallInfo(SID, "bench", 0.0, legs, fmt, mode, people))  # type: ignore[arg-type]
    shaper = OutputShaper(
        mode=mode,  # type: ignore[arg-type]
        channels=2,
        in_rate=8000,
        in_frame_ms=20,
        encoding=fmt.encoding,
        sample_rate=fmt.sample_rate,
    )
    left, right = _legs(8000, 50)
    frames = [f for k in range(50) for f in shaper.push([left[k], right[k]])]
    rounds = SECONDS * 50 // len(frames)
    started = time.process_time()
    for _ in range(rounds):
        for frame in frames:
            encoder.audio(frame)
    return (time.process_time() - started) / (rounds * len(frames)) * 1e6


def main() -> None:
    print(f"{'mode':7} {'in Hz':>6} {'out Hz':>6} {'enc':5} {'frame':>5} {'µs/push (20 ms)':>16}")
    for shape in SHAPES:
        mode, in_rate, out_rate, encoding, frame_ms = shape
        cost = bench_shaper(*shape)
        print(f"{mode:7} {in_rate:6} {out_rate:6} {encoding:5} {frame_ms:5} {cost:16.1f}")
    print()
    print(f"{'dialect':12} {'mode':6} {'µs/frame (20 ms)':>17}")
    for name, options, mode in DIALECTS:
        print(f"{name:12} {mode:6} {bench_dialect(name, options, mode):17.1f}")


if __name__ == "__main__":
    main()
