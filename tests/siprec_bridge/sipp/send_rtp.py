"""RTP for the SIPp scenario: two PCMU legs (440 Hz to port 1, 1000 Hz to port 2), 20 ms pace.

Usage: send_rtp.py HOST PORT1 PORT2 SECONDS
"""

from __future__ import annotations

import socket
import sys
import time

import numpy as np

from rtp.codecs import encoder_for
from rtp.packet import build_packet


def main() -> None:
    host, port1, port2, seconds = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        float(sys.argv[4]),
    )
    encoder = encoder_for("PCMU")
    frames = int(seconds * 50)
    t = np.arange(160 * frames) / 8000
    legs = []
    for port, hz, ssrc in ((port1, 440, 0x1111), (port2, 1000, 0x2222)):
        pcm = (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        legs.append((sock, (host, port), ssrc, pcm))
    start = time.monotonic()
    for i in range(frames):
        for sock, dest, ssrc, pcm in legs:
            payload = encoder.encode(pcm[i * 160 : (i + 1) * 160])
            packet = build_packet(
                payload_type=0,
                sequence=(1000 + i) & 0xFFFF,
                timestamp=(5000 + 160 * i) & 0xFFFFFFFF,
                ssrc=ssrc,
                payload=payload,
                marker=i == 0,
            )
            sock.sendto(packet, dest)
        delay = start + (i + 1) * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)


if __name__ == "__main__":
    main()
