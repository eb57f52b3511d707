"""Fixtures shared by the rtp tests: the vendor corpus (skipped when absent) and a pcap reader."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import dpkt
import pytest

SHARED = (Path(__file__).resolve().parents[2] / ".." / "shared").resolve()
CORPUS = SHARED / "siprec-corpus"

UdpPacket = tuple[float, tuple[str, int], bytes]
"""(capture time, (source ip, source port), UDP payload)."""


def _udp_packets(path: Path) -> Iterator[UdpPacket]:
    with path.open("rb") as f:
        for ts, frame in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(frame).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.udp.UDP):
                udp = ip.data
                yield float(ts), (dpkt.utils.inet_to_str(ip.src), udp.sport), bytes(udp.data)


@pytest.fixture
def corpus() -> Path:
    """The SIPREC vendor corpus in /work/shared; the test is skipped without it."""
    if not CORPUS.is_dir():
        pytest.skip(f"vendor corpus not available at {CORPUS}")
    return CORPUS


@pytest.fixture
def read_udp(corpus: Path) -> Callable[[str], list[UdpPacket]]:
    """Read the UDP datagrams of a corpus pcap (path relative to the corpus)."""

    def read(relative: str) -> list[UdpPacket]:
        return list(_udp_packets(corpus / relative))

    return read


UdpFlowPacket = tuple[float, tuple[str, int], tuple[str, int], bytes]
"""(capture time, (source ip, port), (destination ip, port), UDP payload)."""


@pytest.fixture
def read_udp_flows(corpus: Path) -> Callable[[str], list[UdpFlowPacket]]:
    """Read the UDP datagrams of a corpus pcap with source and destination."""

    def read(relative: str) -> list[UdpFlowPacket]:
        packets: list[UdpFlowPacket] = []
        with (corpus / relative).open("rb") as f:
            for ts, frame in dpkt.pcap.Reader(f):
                ip = dpkt.ethernet.Ethernet(frame).data
                if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.udp.UDP):
                    udp = ip.data
                    src = (dpkt.utils.inet_to_str(ip.src), udp.sport)
                    dst = (dpkt.utils.inet_to_str(ip.dst), udp.dport)
                    packets.append((float(ts), src, dst, bytes(udp.data)))
        return packets

    return read
