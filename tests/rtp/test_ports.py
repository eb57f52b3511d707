"""PortAllocator: even RTP ports with the RTCP pair (RFC 3550 §11), round-robin reuse."""

from __future__ import annotations

import pytest

from rtp.errors import PortsExhausted, RtpError
from rtp.ports import PortAllocator


def test_even_ports_with_room_for_rtcp() -> None:
    allocator = PortAllocator(10001, 10010)
    assert allocator.available == 4  # 10002, 10004, 10006, 10008 (10010 has no 10011)
    ports = allocator.allocate(4)
    assert ports == [10002, 10004, 10006, 10008]
    assert all(p % 2 == 0 and p + 1 <= 10010 for p in ports)
    assert allocator.in_use == frozenset(ports)


def test_exhaustion_takes_nothing() -> None:
    allocator = PortAllocator(20000, 20005)
    assert allocator.allocate(2) == [20000, 20002]
    with pytest.raises(PortsExhausted):
        allocator.allocate(2)
    assert allocator.available == 1
    assert allocator.allocate() == [20004]
    with pytest.raises(PortsExhausted):
        allocator.allocate()


def test_released_ports_go_to_the_back() -> None:
    allocator = PortAllocator(30000, 30007)
    first = allocator.allocate(2)
    allocator.release(first)
    assert allocator.allocate(2) == [30004, 30006]
    assert allocator.allocate(2) == first
    allocator.release([30000, 30000, 12345])  # repeated and unknown ports are ignored
    assert allocator.available == 1


def test_bad_arguments() -> None:
    with pytest.raises(RtpError):
        PortAllocator(0, 100)
    with pytest.raises(RtpError):
        PortAllocator(5000, 4000)
    with pytest.raises(RtpError):
        PortAllocator(5001, 5002)  # no even port with its odd neighbour
    with pytest.raises(RtpError):
        PortAllocator(5000, 5001).allocate(0)
    assert issubclass(PortsExhausted, RtpError) and issubclass(RtpError, ValueError)
