"""The pcap replayer: load_call on fixtures and real captures, the UAC driver, and full replays
against a small fake SRS on 127.0.0.1 (UDP and TCP)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import socket
import struct
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sdp
from rtp.packet import parse_header
from siprec_bridge.replay import (
    CallDriver,
    ReplayError,
    _rewrite_sdp,
    add_arguments,
    load_call,
    main_from_args,
    replay,
)
from siprec_bridge.sip.message import (
    SipRequest,
    SipResponse,
    StreamFramer,
    build_response,
    parse_message,
)
from siprec_bridge.siprec.multipart import extract_recording_body

ROOT = Path(__file__).resolve().parents[2]
PCAPS = ROOT / "pcaps"
MANIFEST: dict[str, Any] = json.loads((PCAPS / "manifest.json").read_text())
CORPUS = (ROOT / ".." / "shared" / "siprec-corpus" / "pcap").resolve()
needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"shared SIPREC corpus not present at {CORPUS}"
)
LOCAL = "127.0.0.1"


# --------------------------------------------------------------------------------------------
# A tiny fake SRS


class RtpCounter(asyncio.DatagramProtocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.by_source: Counter[tuple[str, int]] = Counter()
        self.arrivals: list[float] = []
        self.sequences: list[int] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.by_source[addr] += 1
        self.arrivals.append(self.loop.time())
        self.sequences.append(parse_header(data).sequence)


@dataclass
class FakeSrs:
    """Answers INVITE with 100 + ``status`` (200 with a recvonly SDP answer echoing labels),
    absorbs ACK, answers BYE/UPDATE 200; can send its own BYE after the ACK."""

    rtp_ports: list[list[int]]
    """Answer ports per INVITE in a dialog: the initial INVITE uses [0], a re-INVITE [1]..."""
    status: int = 200
    bye_after_ack: float | None = None
    requests: list[SipRequest] = field(default_factory=list)
    responses: list[SipResponse] = field(default_factory=list)
    send: Callable[[bytes], None] = print
    invites: Counter[str] = field(default_factory=Counter)

    def answer(self, offer: bytes, ports: list[int]) -> bytes:
        lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=fake", "c=IN IP4 127.0.0.1", "t=0 0"]
        for media, port in zip(sdp.parse(offer).media, ports, strict=False):
            lines += [f"m=audio {port} RTP/AVP {media.formats[0]}", "a=recvonly"]
            if media.label is not None:
                lines.append(f"a=label:{media.label}")
        return ("\r\n".join(lines) + "\r\n").encode()

    def handle(self, data: bytes) -> None:
        message = parse_message(data)
        if isinstance(message, SipResponse):
            self.responses.append(message)
            return
        self.requests.append(message)
        if message.method == "ACK":
            if self.bye_after_ack is not None and self.methods().count("ACK") == 1:
                asyncio.get_running_loop().call_later(self.bye_after_ack, self.send_bye, message)
            return
        if message.method != "INVITE":
            self.send(build_response(message, 200, to_tag="srs").to_bytes())
            return
        self.send(build_response(message, 100).to_bytes())
        if self.status != 200:
            self.send(build_response(message, self.status, to_tag="srs").to_bytes())
            return
        offer = extract_recording_body(message.headers.get("Content-Type"), message.body).sdp
        assert offer is not None
        ports = self.rtp_ports[min(self.invites[message.call_id], len(self.rtp_ports) - 1)]
        self.invites[message.call_id] += 1
        self.send(
            build_response(
                message, 200, to_tag="srs", body=self.answer(offer, ports),
                headers=[("Contact", "<sip:srs@127.0.0.1>")], content_type="application/sdp",
            ).to_bytes()
        )

    def send_bye(self, ack: SipRequest) -> None:
        headers = [
            ("Via", "SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKfakebye"),
            ("From", ack.headers.get("To") or ""),
            ("To", ack.headers.get("From") or ""),
            ("Call-ID", ack.call_id),
            ("CSeq", "1 BYE"),
        ]
        bye = SipRequest("BYE", "sip:src@127.0.0.1")
        for name, value in headers:
            bye.headers.add(name, value)
        self.send(bye.to_bytes())

    def methods(self) -> list[str]:
        return [r.method for r in self.requests]


class UdpSrs(asyncio.DatagramProtocol):
    def __init__(self, srs: FakeSrs) -> None:
        self.srs = srs
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        transport = self.transport
        assert transport is not None
        self.srs.send = lambda out: transport.sendto(out, addr)
        self.srs.handle(data)


@dataclass
class Bridge:
    srs: FakeSrs
    sip_port: int
    counters: list[RtpCounter]


@contextlib.asynccontextmanager
async def fake_srs(
    transport: str = "udp", *, answers: int = 1, status: int = 200,
    bye_after_ack: float | None = None,
) -> AsyncIterator[Bridge]:
    loop = asyncio.get_running_loop()
    closers: list[Any] = []
    counters: list[RtpCounter] = []
    ports: list[list[int]] = []
    for _ in range(answers):
        pair = []
        for _ in range(2):
            rtp, counter = await loop.create_datagram_endpoint(
                lambda: RtpCounter(loop), local_addr=(LOCAL, 0)
            )
            closers.append(rtp)
            counters.append(counter)
            pair.append(rtp.get_extra_info("sockname")[1])
        ports.append(pair)
    srs = FakeSrs(ports, status=status, bye_after_ack=bye_after_ack)
    writers: list[asyncio.StreamWriter] = []
    if transport == "udp":
        sip, _ = await loop.create_datagram_endpoint(lambda: UdpSrs(srs), local_addr=(LOCAL, 0))
        closers.append(sip)
        port = sip.get_extra_info("sockname")[1]
    else:

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            srs.send = writer.write
            framer = StreamFramer()
            while data := await reader.read(65536):
                for message in framer.feed(data):
                    srs.handle(message)
            writer.close()

        server = await asyncio.start_server(serve, LOCAL, 0)
        closers.append(server)
        port = server.sockets[0].getsockname()[1]
    try:
        yield Bridge(srs, port, counters)
    finally:
        for closer in closers:
            closer.close()
        for writer in writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@pytest.fixture
async def fake() -> AsyncIterator[Bridge]:
    async with fake_srs() as bridge:
        yield bridge


async def eventually(condition: Callable[[], bool]) -> None:
    """Let in-flight loopback datagrams reach the fake (the replay may return first)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.01)


def sdp_ports(request: SipRequest) -> list[int]:
    body = extract_recording_body(request.headers.get("Content-Type"), request.body)
    assert body.sdp is not None
    return [m.port for m in sdp.parse(body.sdp).media]


# --------------------------------------------------------------------------------------------
# Full replays


@pytest.mark.integration
async def test_replay_sends_each_leg_to_its_answered_port_at_pcap_pace(fake: Bridge) -> None:
    name = "siprec_pcmu.pcap"
    entry = MANIFEST[name]
    speed = 4.0
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await replay(PCAPS / name, (LOCAL, fake.sip_port), speed=speed, call_id_suffix="-x")
    elapsed = loop.time() - started

    (report,) = result.calls
    assert report.statuses == (("INVITE", 200), ("BYE", 200))
    assert report.packets_sent == {leg["label"]: leg["packets"] for leg in entry["legs"]}
    assert report.call_id.endswith("-x") and report.call_id != entry["call_id"]
    assert not report.remote_bye and report.error is None
    assert fake.srs.methods() == ["INVITE", "ACK", "BYE"]

    invite, ack, bye = fake.srs.requests
    offered = sdp_ports(invite)
    for counter, leg, port in zip(fake.counters, entry["legs"], offered, strict=True):
        assert dict(counter.by_source) == {(LOCAL, port): leg["packets"]}
    # Pacing: the call and each leg last about the recording's time / speed.
    recorded = load_call(PCAPS / name)
    assert elapsed >= 0.8 * (recorded.end_time - (recorded.answer_time or 0)) / speed
    assert elapsed < recorded.end_time / speed + 2.0
    arrivals = fake.counters[0].arrivals
    assert arrivals[-1] - arrivals[0] >= 0.8 * (entry["legs"][0]["duration_ms"] / 1000) / speed
    assert report.duration >= 0.8 * recorded.end_time / speed

    # The INVITE is the recorded one, rewritten for this call.
    assert invite.call_id == report.call_id
    assert invite.from_tag != recorded.invite.from_tag and invite.to_tag is None
    assert invite.uri == f"sip:srs@{LOCAL}:{fake.sip_port}"
    via = invite.top_via
    assert (via.host, via.transport) == (LOCAL, "UDP")
    assert via.branch != recorded.invite.top_via.branch
    assert f"@{LOCAL}:{via.port}>" in (invite.headers.get("Contact") or "")
    assert "+sip.src" in (invite.headers.get("Contact") or "")
    assert invite.headers.get("Require") == "siprec"
    sent = extract_recording_body(invite.headers.get("Content-Type"), invite.body)
    original = extract_recording_body(
        recorded.invite.headers.get("Content-Type"), recorded.invite.body
    )
    assert sent.metadata == original.metadata  # the other parts travel byte for byte
    assert sent.sdp is not None and original.sdp is not None
    offer = sdp.parse(sent.sdp)
    assert [offer.connection_of(m) for m in offer.media] == [offer.connection] * 2
    assert offer.connection is not None and offer.connection.address == LOCAL
    assert sent.sdp.replace(b"127.0.0.1", b"192.0.2.10").replace(
        str(offered[0]).encode(), b"30000").replace(str(offered[1]).encode(), b"30002"
    ) == original.sdp
    # The dialog: ACK and BYE carry the SRS tag, CSeq grows, ACK matches the INVITE's CSeq.
    assert ack.to_tag == bye.to_tag == "srs"
    assert ack.from_tag == bye.from_tag == invite.from_tag
    assert ack.cseq == (invite.cseq[0], "ACK")
    assert bye.cseq[0] > invite.cseq[0]


@pytest.mark.integration
async def test_concurrent_calls_use_their_own_call_ids_and_sockets(fake: Bridge) -> None:
    name = "siprec_dtmf.pcap"
    result = await replay(PCAPS / name, (LOCAL, fake.sip_port), speed=8, calls=3)
    assert len({r.call_id for r in result.calls}) == 3
    invites = [r for r in fake.srs.requests if r.method == "INVITE"]
    assert sorted(r.call_id for r in invites) == sorted(r.call_id for r in result.calls)
    assert len({r.top_via.port for r in invites}) == 3
    for counter, leg in zip(fake.counters, MANIFEST[name]["legs"], strict=True):
        assert sorted(counter.by_source.values()) == [leg["packets"]] * 3
        assert len(counter.by_source) == 3
    for report in result.calls:
        assert report.statuses == (("INVITE", 200), ("BYE", 200))


@pytest.mark.integration
async def test_replay_over_tcp() -> None:
    name = "siprec_pcma.pcap"
    async with fake_srs("tcp") as bridge:
        result = await replay(PCAPS / name, (LOCAL, bridge.sip_port), transport="tcp", speed=8)
        (report,) = result.calls
        assert report.statuses == (("INVITE", 200), ("BYE", 200))
        assert not report.remote_bye and report.error is None
        assert bridge.srs.methods() == ["INVITE", "ACK", "BYE"]
        invite = bridge.srs.requests[0]
        assert invite.top_via.transport == "TCP"
        assert "transport=tcp" in (invite.headers.get("Contact") or "")
        for counter, leg in zip(bridge.counters, MANIFEST[name]["legs"], strict=True):
            assert sum(counter.by_source.values()) == leg["packets"]


@pytest.mark.integration
async def test_rejected_invite_raises_after_acking() -> None:
    async with fake_srs(status=488) as bridge:
        with pytest.raises(ReplayError, match="488") as caught:
            await replay(PCAPS / "siprec_pcmu.pcap", (LOCAL, bridge.sip_port))
        assert caught.value.result is not None
        (report,) = caught.value.result.calls
        assert report.statuses == (("INVITE", 488),)
        await eventually(lambda: len(bridge.srs.requests) == 2)
        invite, ack = bridge.srs.requests
        assert ack.method == "ACK" and ack.top_via.branch == invite.top_via.branch  # §17.1.1.3
        assert all(sum(c.by_source.values()) == 0 for c in bridge.counters)


@pytest.mark.integration
async def test_bye_from_the_bridge_ends_the_replay() -> None:
    name = "siprec_pcmu.pcap"
    async with fake_srs(bye_after_ack=0.2) as bridge:
        result = await replay(PCAPS / name, (LOCAL, bridge.sip_port))
        (report,) = result.calls
        assert report.remote_bye
        assert report.statuses == (("INVITE", 200),)
        assert 0 < report.packets_sent["1"] < MANIFEST[name]["legs"][0]["packets"] // 2
        assert report.duration < 2.0
        await eventually(lambda: bool(bridge.srs.responses))
        assert [r.status for r in bridge.srs.responses] == [200]  # our answer to its BYE
        assert "BYE" not in bridge.srs.methods()


def rewrite_capture(source: Path, target: Path,
                    edit: Callable[[float, bytes], list[tuple[float, bytes]]]) -> None:
    """Copy ``source`` to ``target``, letting ``edit`` replace each UDP payload by any list of
    (time, payload) datagrams with the same addresses."""
    with source.open("rb") as f:
        frames = list(dpkt.pcap.Reader(f))
    out: list[tuple[float, bytes]] = []
    for time, frame in frames:
        eth = dpkt.ethernet.Ethernet(frame)
        for new_time, payload in edit(time, bytes(eth.data.data.data)):
            udp = dpkt.udp.UDP(sport=eth.data.data.sport, dport=eth.data.data.dport, data=payload)
            udp.ulen = len(udp)
            ip = dpkt.ip.IP(src=eth.data.src, dst=eth.data.dst, p=17, ttl=64, data=udp)
            out.append((new_time, bytes(dpkt.ethernet.Ethernet(src=eth.src, dst=eth.dst, data=ip))))
    out.sort(key=lambda item: item[0])
    with target.open("wb") as f:
        writer = dpkt.pcap.Writer(f, snaplen=65535)
        for time, frame in out:
            writer.writepkt(frame, time)


@pytest.mark.integration
async def test_recorded_update_and_reinvite_are_replayed_in_the_dialog(tmp_path: Path) -> None:
    """A capture whose SRC sends UPDATE (metadata) and a re-INVITE (multipart with SDP) and no
    BYE: both go out within the dialog, the re-INVITE's answer moves the media, and the
    replayer hangs up itself at the end."""
    name = "siprec_pcmu.pcap"
    recorded = load_call(PCAPS / name)
    invite = recorded.invite
    start = 1_700_000_000.0

    def in_dialog(method: str, cseq: int, body: bytes, content_type: str) -> bytes:
        request = SipRequest(method, "sip:srs@192.0.2.20:5060", invite.headers.copy(), body)
        request.headers.set("To", f"{invite.headers.get('To')};tag=whatever")
        request.headers.set("CSeq", f"{cseq} {method}")
        request.headers.set("Content-Type", content_type)
        return request.to_bytes()

    metadata = extract_recording_body(invite.headers.get("Content-Type"), invite.body).metadata
    assert metadata is not None

    def edit(time: float, payload: bytes) -> list[tuple[float, bytes]]:
        if not payload[:1].isalpha():
            return [(time, payload)]  # RTP
        message = parse_message(payload)
        if message.cseq[1] == "BYE":
            return []
        if isinstance(message, SipRequest) and message.method == "ACK":
            update = in_dialog("UPDATE", 2, metadata, "application/rs-metadata+xml")
            reinvite = in_dialog("INVITE", 3, invite.body, invite.headers.get("Content-Type") or "")
            return [(time, payload), (start + 1.0, update), (start + 2.0, reinvite)]
        return [(time, payload)]

    edited = tmp_path / "update_reinvite.pcap"
    rewrite_capture(PCAPS / name, edited, edit)
    call = load_call(edited)
    assert [r.request.method for r in call.requests] == ["INVITE", "ACK", "UPDATE", "INVITE"]
    assert not call.has_bye

    async with fake_srs(answers=2) as bridge:
        result = await replay(edited, (LOCAL, bridge.sip_port), speed=4)
        (report,) = result.calls
        assert report.statuses == (("INVITE", 200), ("UPDATE", 200), ("INVITE", 200),
                                   ("BYE", 200))
        srs = bridge.srs
        assert srs.methods() == ["INVITE", "ACK", "UPDATE", "INVITE", "ACK", "BYE"]
        first, _, update, reinvite, ack2, bye = srs.requests
        cseqs = [r.cseq[0] for r in (first, update, reinvite, bye)]
        assert cseqs == sorted(cseqs) and len(set(cseqs)) == 4
        assert ack2.cseq == (reinvite.cseq[0], "ACK")
        assert all(r.to_tag == "srs" and r.from_tag == first.from_tag
                   for r in (update, reinvite, ack2, bye))
        assert update.body == metadata
        assert sdp_ports(reinvite) == sdp_ports(first)
        before = [sum(c.by_source.values()) for c in bridge.counters[:2]]
        after = [sum(c.by_source.values()) for c in bridge.counters[2:]]
        assert all(n > 0 for n in before + after)
        legs = MANIFEST[name]["legs"]
        assert [b + a for b, a in zip(before, after, strict=True)] == [
            leg["packets"] for leg in legs
        ]


def test_the_call_starts_with_the_invite_attempt_that_was_answered(tmp_path: Path) -> None:
    """INVITE → 407, ACK, INVITE again with CSeq 2 → 200: the second attempt is the call."""

    def renumbered(payload: bytes, cseq: int) -> bytes:
        message = parse_message(payload)
        message.headers.set("CSeq", f"{cseq} {message.cseq[1]}")
        return message.to_bytes()

    def edit(time: float, payload: bytes) -> list[tuple[float, bytes]]:
        if not payload[:1].isalpha():
            return [(time, payload)]
        message = parse_message(payload)
        if isinstance(message, SipRequest) and message.method == "INVITE":
            challenged = SipRequest("ACK", message.uri, message.headers.copy())
            challenged.headers.set("CSeq", "1 ACK")
            challenged.headers.set("Content-Type", "application/sdp")
            retry = renumbered(payload, 2)
            return [(time, payload), (time + 0.005, challenged.to_bytes()), (time + 0.006, retry)]
        if isinstance(message, SipResponse) and message.status == 100:
            message.status, message.reason = 407, "Proxy Authentication Required"
            return [(time, message.to_bytes())]
        number = {"INVITE": 2, "ACK": 2, "BYE": 3}[message.cseq[1]]
        return [(time, renumbered(payload, number))]

    edited = tmp_path / "challenged.pcap"
    rewrite_capture(PCAPS / "siprec_pcmu.pcap", edited, edit)
    call = load_call(edited)
    assert call.invite.cseq == (2, "INVITE")
    assert [r.request.cseq for r in call.requests] == [(2, "INVITE"), (2, "ACK"), (3, "BYE")]
    assert call.answer_time is not None and abs(call.answer_time - 0.012) < 1e-6
    assert [s.packets for s in call.streams] == [200, 200]


def test_ip_fragmented_invite_is_reassembled(tmp_path: Path) -> None:
    """Large UDP INVITEs arrive as IPv4 fragments (corpus QUIRKS #6), here out of order."""
    source = PCAPS / "siprec_pcmu.pcap"
    with source.open("rb") as f:
        frames = list(dpkt.pcap.Reader(f))
    out = tmp_path / "fragmented.pcap"
    with out.open("wb") as f:
        writer = dpkt.pcap.Writer(f, snaplen=65535)
        for time, frame in frames:
            eth = dpkt.ethernet.Ethernet(frame)
            if not bytes(eth.data.data.data).startswith(b"INVITE"):
                writer.writepkt(frame, time)
                continue
            ip = eth.data
            payload = bytes(ip.data)
            chunks = [payload[i : i + 1480] for i in range(0, len(payload), 1480)]
            assert len(chunks) == 2
            for index in reversed(range(len(chunks))):
                piece = dpkt.ip.IP(src=ip.src, dst=ip.dst, p=17, ttl=64, id=ip.id,
                                   data=chunks[index])
                piece.mf = int(index < len(chunks) - 1)
                piece.offset = index * 1480 // 8
                writer.writepkt(bytes(dpkt.ethernet.Ethernet(src=eth.src, dst=eth.dst,
                                                             data=piece)), time)
    call = load_call(out)
    whole = load_call(source)
    assert call.invite.body == whole.invite.body
    assert [s.packets for s in call.streams] == [s.packets for s in whole.streams]


def test_ipv6_capture_with_fragmented_invite(tmp_path: Path) -> None:
    """The fixture moved to IPv6 (RFC 8200), its INVITE split by a Fragment header (§4.5)."""
    hosts = {b"\xc0\x00\x02\x0a": "2001:db8::10", b"\xc0\x00\x02\x14": "2001:db8::20"}
    with (PCAPS / "siprec_pcmu.pcap").open("rb") as f:
        frames = list(dpkt.pcap.Reader(f))
    out = tmp_path / "ipv6.pcap"
    with out.open("wb") as f:
        writer = dpkt.pcap.Writer(f, snaplen=65535)
        for time, frame in frames:
            eth = dpkt.ethernet.Ethernet(frame)
            ip4, udp = eth.data, eth.data.data
            payload = bytes(udp.data)
            if payload[:1].isalpha():
                message = parse_message(payload)
                for name, value in message.headers.items():
                    for v4, v6 in hosts.items():
                        value = value.replace(socket.inet_ntoa(v4), f"[{v6}]")
                    message.headers.set(name, value)
                message.body = message.body.replace(b"IN IP4 192.0.2.10", b"IN IP6 2001:db8::10")
                message.body = message.body.replace(b"IN IP4 192.0.2.20", b"IN IP6 2001:db8::20")
                payload = message.to_bytes()
            src, dst = (socket.inet_pton(socket.AF_INET6, hosts[a]) for a in (ip4.src, ip4.dst))
            new_udp = dpkt.udp.UDP(sport=udp.sport, dport=udp.dport, data=payload)
            new_udp.ulen = len(new_udp)
            raw = bytes(new_udp)  # checksum 0: the reader does not verify it
            chunks = [raw] if len(raw) < 1400 else [raw[:1400], raw[1400:]]
            for index, chunk in enumerate(chunks):
                if len(chunks) == 1:
                    ip6 = dpkt.ip6.IP6(nxt=17, hlim=64, src=src, dst=dst, data=chunk)
                else:
                    more = int(index == 0)
                    header = struct.pack("!BBHI", 17, 0, (index * 1400 // 8) << 3 | more, 7)
                    ip6 = dpkt.ip6.IP6(nxt=44, hlim=64, src=src, dst=dst, data=header + chunk)
                ip6.plen = len(ip6.data)
                eth6 = dpkt.ethernet.Ethernet(src=eth.src, dst=eth.dst,
                                              type=dpkt.ethernet.ETH_TYPE_IP6, data=ip6)
                writer.writepkt(bytes(eth6), time)
    call = load_call(out)
    assert call.src == ("2001:db8::10", 5060) and call.srs == ("2001:db8::20", 5060)
    assert [r.request.method for r in call.requests] == ["INVITE", "ACK", "BYE"]
    assert b"c=IN IP6 2001:db8::10" in call.invite.body
    assert [s.packets for s in call.streams] == [200, 200]


def test_capture_without_invite_raises(tmp_path: Path) -> None:
    only_rtp = tmp_path / "rtp_only.pcap"
    rewrite_capture(PCAPS / "siprec_pcmu.pcap", only_rtp,
                    lambda t, p: [] if p[:1].isalpha() else [(t, p)])
    with pytest.raises(ReplayError, match=r"no initial SIP INVITE.*0 SIP messages"):
        load_call(only_rtp)


# --------------------------------------------------------------------------------------------
# The sans-I/O driver


def driver(transport: str = "udp") -> CallDriver:
    return CallDriver(
        load_call(PCAPS / "siprec_pcmu.pcap"), call_id="c1", local_sip=(LOCAL, 5070),
        local_rtp_ports=[7000, 7002], target=("192.0.2.99", 5060),
        transport="udp" if transport == "udp" else "tcp",
    )


def test_invite_is_retransmitted_per_t1_until_the_timeout() -> None:
    d = driver()
    d.start(0.0)
    (first,) = d.data_to_send()
    times = []
    now = 0.0
    while not d.finished:
        timer = d.next_timer()
        assert timer is not None
        now = timer
        d.handle_timer(now)
        if d.data_to_send() == [first]:
            times.append(now)
    assert times == [0.5, 1.5, 3.5]  # Timer A doubles from T1 (RFC 3261 §17.1.1.2)
    assert now == 5.0
    assert d.statuses == [("INVITE", 408)]
    assert d.error is not None and "no final response" in d.error


def test_provisional_response_stops_invite_retransmission() -> None:
    d = driver()
    d.start(0.0)
    invite = parse_message(d.data_to_send()[0])
    assert isinstance(invite, SipRequest)
    d.receive(build_response(invite, 100).to_bytes(), 0.1)
    assert d.next_timer() == 5.0
    d.handle_timer(1.0)
    assert d.data_to_send() == []


def test_tcp_never_retransmits() -> None:
    d = driver("tcp")
    d.start(0.0)
    assert parse_message(d.data_to_send()[0]).top_via.transport == "TCP"
    assert d.next_timer() == 5.0


def test_retransmitted_2xx_is_acked_again() -> None:
    d = driver()
    d.start(0.0)
    invite = parse_message(d.data_to_send()[0])
    assert isinstance(invite, SipRequest)
    answer = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n" \
        b"m=audio 4000 RTP/AVP 0\r\na=recvonly\r\nm=audio 0 RTP/AVP 0\r\n"
    ok = build_response(invite, 200, to_tag="t", body=answer, content_type="application/sdp")
    d.receive(ok.to_bytes(), 0.2)
    (ack,) = d.data_to_send()
    assert d.answered_at == 0.2 and d.established
    assert d.media_targets == [("10.0.0.1", 4000), None]  # port 0: rejected m-line
    d.receive(ok.to_bytes(), 0.7)
    assert d.data_to_send() == [ack]


def test_rewrite_sdp_keeps_everything_but_addresses_and_ports() -> None:
    offer = (b"v=0\no=x 1 1 IN IP4 10.1.1.1\ns=-\nt=0 0\n"
             b"m=audio 5004 RTP/AVP 0\nc=IN IP4 10.1.1.1/127\na=label:a_leg\n"
             b"m=audio 5006/2 RTP/AVP 8\nc=IN IP4 0.0.0.0\n"
             b"m=video 0 RTP/AVP 96\n"
             b"m=audio 5010 RTP/AVP 0\n")
    rewritten = _rewrite_sdp(offer, "::1", [7000, 7002, 7004])
    assert rewritten == (b"v=0\no=x 1 1 IN IP4 10.1.1.1\ns=-\nt=0 0\n"
                         b"m=audio 7000 RTP/AVP 0\nc=IN IP6 ::1\na=label:a_leg\n"
                         b"m=audio 7002/2 RTP/AVP 8\nc=IN IP4 0.0.0.0\n"
                         b"m=video 0 RTP/AVP 96\n"
                         b"m=audio 0 RTP/AVP 0\n")


# --------------------------------------------------------------------------------------------
# Real captures from the shared corpus


@needs_corpus
def test_sip_over_tcp_capture() -> None:
    call = load_call(CORPUS / "heplify" / "sip_ipv4_tcp.pcap")
    assert call.transport == "tcp" and call.invite.method == "INVITE"
    assert call.src == ("10.33.6.100", 64802)
    assert [r.request.method for r in call.requests] == ["INVITE", "ACK"]  # the callee hung up
    assert not call.has_bye
    (stream,) = call.streams
    assert (stream.offered_port, stream.answered_port) == (6000, 6050)
    assert stream.packets == 24  # 6000 → 6050 only; the 42 packets the other way are not ours


@needs_corpus
def test_fragmented_tcp_capture_with_many_calls() -> None:
    call = load_call(CORPUS / "heplify" / "sip_ipv4_tcp_fragmented.pcap")
    assert call.transport == "tcp" and call.invite.method == "INVITE"
    assert call.sip_messages > 300
    methods = [r.request.method for r in call.requests]
    assert methods[0] == "INVITE" and "BYE" in methods
    assert call.invite.body.startswith(b"v=0")
    assert len(call.streams) == 1 and call.answer is not None


@needs_corpus
def test_ipv6_capture() -> None:
    call = load_call(CORPUS / "heplify" / "sip_ipv6_udp.pcap")
    assert call.invite.method == "INVITE"
    assert call.src[0] == "fe80::21a:a0ff:fe07:32e0"
    assert [r.request.method for r in call.requests] == ["INVITE", "ACK", "BYE"]
    assert call.streams[0].offered_port == 5008


@needs_corpus
@pytest.mark.parametrize(
    "path",
    ["heplify/sip_ipv4_tcp_retrans.pcap",
     *sorted(str(p.relative_to(CORPUS)) for p in (CORPUS / "miarec").glob("*.pcap"))],
)
def test_captures_without_invite_are_reported(path: str) -> None:
    with pytest.raises(ReplayError, match="no initial SIP INVITE") as caught:
        load_call(CORPUS / path)
    assert "frames" in str(caught.value)


# --------------------------------------------------------------------------------------------
# Command line


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_command_line_arguments() -> None:
    args = parse(["x.pcap", "--target", "[::1]:5080", "--calls", "3", "--speed", "2",
                  "--transport", "tcp"])
    assert (args.target, args.calls, args.speed, args.transport) == (("::1", 5080), 3, 2.0, "tcp")
    with pytest.raises(SystemExit):
        parse(["x.pcap", "--target", "nohost"])
    with pytest.raises(SystemExit):
        parse(["x.pcap", "--target", "h:1", "--calls", "0"])


def test_command_line_show_and_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    show = parse([str(PCAPS / "siprec_g722.pcap"), "--show"])
    assert main_from_args(show) == 0
    out = capsys.readouterr().out
    assert "label=1" in out and "label=2" in out and "200 RTP packets" in out
    empty = tmp_path / "empty.pcap"
    with empty.open("wb") as f:
        dpkt.pcap.Writer(f)
    assert main_from_args(parse([str(empty), "--target", "127.0.0.1:9"])) == 1
    assert "no initial SIP INVITE" in capsys.readouterr().err
    assert main_from_args(parse([str(empty)])) == 2
    assert "--target" in capsys.readouterr().err


@pytest.mark.integration
async def test_siprec_bridge_replay_command() -> None:
    """``siprec-bridge replay`` in a child process against the fake SRS of this loop."""
    async with fake_srs() as bridge:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; from siprec_bridge.cli import main; "
            "sys.exit(main(sys.argv[1:]))", "replay", str(PCAPS / "siprec_pcmu.pcap"),
            "--target", f"{LOCAL}:{bridge.sip_port}", "--speed", "8", "--calls", "2",
            "--call-id-suffix=-cli", stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )
        out, _ = await child.communicate()
        assert child.returncode == 0
        lines = out.decode().splitlines()
        assert len(lines) == 2
        assert all("-cli: INVITE=200 BYE=200; RTP 1=200 2=200;" in line for line in lines)
        assert bridge.srs.methods().count("BYE") == 2


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_damaged_captures_raise_only_replay_error(data: st.DataObject) -> None:
    """Flipped bytes, truncated frames, other link types, a truncated file: ReplayError or a
    call, nothing else."""
    with (PCAPS / "siprec_pcmu.pcap").open("rb") as f:
        frames = list(dpkt.pcap.Reader(f))[:12]
    linktype = data.draw(st.sampled_from([1, 0, 101, 113, 276]))
    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out, snaplen=65535, linktype=linktype)
    for time, frame in frames:
        damaged = bytearray(frame)
        for _ in range(data.draw(st.integers(0, 4))):
            damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(damaged)))
        writer.writepkt(bytes(damaged[:cut]), time)
    raw = out.getvalue()
    raw = raw[: data.draw(st.integers(0, len(raw)))]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "damaged.pcap"
        path.write_bytes(raw)
        try:
            call = load_call(path)
        except ReplayError as exc:
            assert str(exc)
        else:
            assert call.invite.method == "INVITE"
