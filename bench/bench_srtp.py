"""Cost of SRTP on the media path: µs per packet for SrtpReceiver.unprotect and for Leg.feed.

Run: ``python bench/bench_srtp.py``. Prints timings only: 20 ms PCMU packets (172 octets of
RTP) protected by pylibsrtp as the sender, for every suite of ``rtp.srtp.SUPPORTED_SUITES``;
``Leg.feed`` with the same packets in plain RTP for comparison, and SRTCP unprotect. Each
figure is the best of ``REPEAT`` runs (the machine may be shared).
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Callable

import pylibsrtp

from rtp.leg import Leg, Timeline
from rtp.packet import build_packet
from rtp.srtp import SUPPORTED_SUITES, SrtpReceiver

COUNT = 5_000
REPEAT = 5
SOURCE = ("192.0.2.1", 40000)
PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
    "AES_CM_128_HMAC_SHA1_32": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 30),
    "AEAD_AES_128_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 28),
    "AEAD_AES_256_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44),
}


def _plain(count: int) -> list[bytes]:
    return [
        build_packet(
            payload_type=0, sequence=i & 0xFFFF, timestamp=160 * i, ssrc=1, payload=b"\xd5" * 160
        )
        for i in range(count)
    ]


def _protect(suite: str, key: bytes, packets: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    profile, _ = PROFILES[suite]
    policy = pylibsrtp.Policy(
        key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile
    )
    sender = pylibsrtp.Session(policy)
    report = struct.pack("!BBHIQIII", 0x80, 200, 6, 1, 0, 0, 0, 0)
    rtcp = [sender.protect_rtcp(report) for _ in range(len(packets) // 10)]
    return [sender.protect(p) for p in packets], rtcp


def _per_packet(run: list[bytes], unprotect: Callable[[bytes], bytes]) -> float:
    started = time.perf_counter()
    for data in run:
        unprotect(data)
    return (time.perf_counter() - started) / len(run) * 1e6


def _feed(leg: Leg, packets: list[bytes]) -> float:
    started = time.perf_counter()
    for i, data in enumerate(packets):
        leg.feed(data, SOURCE, i * 0.02)
        if i % 50 == 49:  # read what is due, as the ticker would
            for index in range(i - 49, i + 1):
                leg.read_frame(index)
    return (time.perf_counter() - started) / len(packets) * 1e6


def _srtp_feed(suite: str, key_b64: str, protected: list[bytes]) -> float:
    srtp = SrtpReceiver(suite, key_b64)
    leg = Leg(Timeline(), payload_types={0: "PCMU"}, out_rate=8000, srtp=srtp)
    us = _feed(leg, protected)
    assert leg.stats.packets == COUNT and leg.stats.srtp_errors == 0
    return us


def main() -> None:
    packets = _plain(COUNT)

    def plain_run() -> float:
        return _feed(Leg(Timeline(), payload_types={0: "PCMU"}, out_rate=8000), packets)

    plain_us = min(plain_run() for _ in range(REPEAT))
    print(f"{'suite':24} {'unprotect':>10} {'srtcp':>8} {'Leg.feed+read':>14} {'plain':>8}  µs/pkt")
    for suite in SUPPORTED_SUITES:
        key = bytes(range(PROFILES[suite][1]))
        key_b64 = base64.b64encode(key).decode()
        protected, rtcp = _protect(suite, key, packets)

        unprotect_us = min(
            _per_packet(protected, SrtpReceiver(suite, key_b64).unprotect) for _ in range(REPEAT)
        )
        rtcp_us = min(
            _per_packet(rtcp, SrtpReceiver(suite, key_b64).unprotect_rtcp) for _ in range(REPEAT)
        )
        leg_us = min(_srtp_feed(suite, key_b64, protected) for _ in range(REPEAT))
        print(f"{suite:24} {unprotect_us:10.2f} {rtcp_us:8.2f} {leg_us:14.2f} {plain_us:8.2f}")


if __name__ == "__main__":
    main()
