"""Cost of rtp.Leg on the media path: µs per packet for feed() and µs per read_frame().

Run: ``python bench/bench_leg.py``. Prints timings only (no assertions): 20 ms packets, fed in
batches of 50 (one second of audio) then read back as 20 ms frames, for PCMU and G.722 at both
output rates.
"""

from __future__ import annotations

import time

import numpy as np

from rtp.codecs import encoder_for
from rtp.leg import Leg, Timeline
from rtp.packet import build_packet

CODECS = (("PCMU", 0), ("G722", 9))
SECONDS = 20
BATCH = 50
SOURCE = ("192.0.2.1", 40000)


def _packets(codec: str, pt: int, count: int) -> list[bytes]:
    encoder = encoder_for(codec)
    rate = encoder.spec.sample_rate
    t = np.arange(rate // 50) / rate
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    payload = encoder.encode(tone)
    return [
        build_packet(
            payload_type=pt, sequence=i & 0xFFFF, timestamp=160 * i, ssrc=1, payload=payload
        )
        for i in range(count)
    ]


def bench(codec: str, pt: int, out_rate: int) -> tuple[float, float]:
    """Return (µs per feed, µs per read_frame)."""
    count = SECONDS * 50
    packets = _packets(codec, pt, count)
    leg = Leg(Timeline(), payload_types={pt: codec}, out_rate=out_rate)
    feed_time = read_time = 0.0
    for batch in range(0, count, BATCH):
        started = time.perf_counter()
        for i in range(batch, batch + BATCH):
            leg.feed(packets[i], SOURCE, i * 0.02)
        feed_time += time.perf_counter() - started
        started = time.perf_counter()
        for i in range(batch, batch + BATCH):
            leg.read_frame(i)
        read_time += time.perf_counter() - started
    assert leg.stats.packets == count and leg.stats.concealed_frames == 0
    return feed_time / count * 1e6, read_time / count * 1e6


def main() -> None:
    print(f"{'codec':6} {'out Hz':>6} {'feed µs/pkt':>12} {'read_frame µs':>14}")
    for codec, pt in CODECS:
        for out_rate in (8000, 16000):
            bench(codec, pt, out_rate)  # warm-up
            feed_us, read_us = bench(codec, pt, out_rate)
            print(f"{codec:6} {out_rate:6} {feed_us:12.2f} {read_us:14.2f}")


if __name__ == "__main__":
    main()
