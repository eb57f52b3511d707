"""Operations end to end, through the whole bridge on 127.0.0.1 (issue 5).

- Drain: a real ``siprec-bridge serve`` process with a call in progress gets SIGTERM (or SIGINT):
  new INVITEs and OPTIONS get 503 + Retry-After, ``/readyz`` turns 503 while ``/healthz`` stays
  200, the running call keeps all its audio (or, past the drain time, is ended with BYE and
  ``stop`` reason ``shutdown``), and the process exits 0.
- Limits: ``max_calls``, the per-source INVITE rate and the source allow-list refuse new
  INVITEs statelessly, holding no RTP port and no session.
- Media: RTP from a stranger is dropped and counted in ``/calls``; a stalled stream is reported
  as ``media_stall``; a call without media for ``media.timeout_s`` is ended with BYE (``stop``
  reason ``timeout``).
- Metrics scraped during and after replayed calls match what was sent (``pcaps/manifest.json``).
- ``docker-compose.yml`` and the bridge configuration it mounts are valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from testkit.audio import dominant_hz, read_wav, rms
from testkit.bridge import bridge_settings

import sdp
from rtp.codecs import encoder_for
from rtp.packet import build_packet
from siprec_bridge.app import Bridge
from siprec_bridge.consumer import CallSummary, ConsumerServer
from siprec_bridge.replay import load_call, replay
from siprec_bridge.settings import check_config, load_settings
from siprec_bridge.sip.message import SipRequest, SipResponse, build_response, parse_message

ROOT = Path(__file__).resolve().parents[2]
PCAPS = ROOT / "pcaps"
MANIFEST: dict[str, Any] = json.loads((PCAPS / "manifest.json").read_text())
GUARD = 15.0  # seconds; a guard against hangs, nothing is timed
COMPOSE = shutil.which("docker-compose")

pytestmark = pytest.mark.integration


# -- a bare SRC over UDP -----------------------------------------------------------------------


class SipPeer(asyncio.DatagramProtocol):
    """Sends raw requests to the bridge, queues its responses and answers its BYEs with 200."""

    def __init__(self) -> None:
        self.responses: asyncio.Queue[SipResponse] = asyncio.Queue()
        self.requests: asyncio.Queue[SipRequest] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.bridge_port = 0

    @classmethod
    async def open(cls, bridge_port: int) -> SipPeer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(
            cls, local_addr=("127.0.0.1", 0), remote_addr=("127.0.0.1", bridge_port)
        )
        peer.bridge_port = bridge_port
        return peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = int(transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse_message(data)
        if isinstance(message, SipRequest):
            self.send(build_response(message, 200).to_bytes())
            self.requests.put_nowait(message)
        else:
            self.responses.put_nowait(message)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def request(
        self,
        method: str,
        call_id: str,
        *,
        cseq: int = 1,
        to_tag: str | None = None,
        offer: tuple[str, bytes] | None = None,
    ) -> None:
        """Send an out-of-dialog request, or an in-dialog one with ``to_tag``."""
        to = "<sip:srs@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
        lines = [
            f"{method} sip:srs@127.0.0.1:{self.bridge_port} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK-{call_id}-{method}-{cseq}",
            "Max-Forwards: 70",
            f"From: <sip:src@127.0.0.1>;tag=src-{call_id}",
            f"To: {to}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:src@127.0.0.1:{self.port}>;+sip.src",
        ]
        body = b""
        if offer is not None:
            content_type, body = offer
            lines += ["Require: siprec", f"Content-Type: {content_type}"]
        lines.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    async def final(self, call_id: str, method: str = "INVITE") -> SipResponse:
        """The final response to ``method`` of ``call_id``; a non-2xx INVITE response is ACKed
        (RFC 3261 §17.1.1.3: same branch, the response's To)."""
        while True:
            response = await asyncio.wait_for(self.responses.get(), GUARD)
            if response.status < 200 or response.call_id != call_id:
                continue
            if response.cseq[1] != method:
                continue
            if method == "INVITE" and response.status >= 300:
                h = response.headers
                self.send(
                    (
                        f"ACK sip:srs@127.0.0.1:{self.bridge_port} SIP/2.0\r\n"
                        f"Via: {h.get('Via')}\r\nFrom: {h.get('From')}\r\nTo: {h.get('To')}\r\n"
                        f"Call-ID: {call_id}\r\nCSeq: {response.cseq[0]} ACK\r\n"
                        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                    ).encode()
                )
            return response

    async def establish(self, call_id: str, offer: tuple[str, bytes]) -> SipResponse:
        """INVITE → 200 → ACK."""
        self.request("INVITE", call_id, offer=offer)
        ok = await self.final(call_id)
        assert ok.status == 200, (ok.status, ok.headers.get("Warning"))
        self.request("ACK", call_id, to_tag=ok.to_tag)
        return ok

    async def hang_up(self, call_id: str, ok: SipResponse) -> None:
        self.request("BYE", call_id, cseq=2, to_tag=ok.to_tag)
        assert (await self.final(call_id, "BYE")).status == 200


@functools.cache
def fixture_offer(name: str) -> tuple[str, bytes]:
    """The SIPREC body (SDP + metadata) of a fixture's INVITE, its media on 127.0.0.1."""
    invite = load_call(PCAPS / name).invite
    content_type = invite.headers.get("Content-Type")
    assert content_type is not None
    return content_type, invite.body.replace(b"192.0.2.10", b"127.0.0.1")


UNACCEPTABLE_OFFER = (
    "application/sdp",
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 30000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\na=sendonly\r\na=label:1\r\n",
)


def answered_ports(ok: SipResponse) -> list[int]:
    return [m.port for m in sdp.parse(ok.body).media]


def expect_busy(response: SipResponse, retry_after: int | None, warning: str) -> None:
    """503 with Retry-After (RFC 3261 §21.5.4, §20.33) and a Warning naming the cause."""
    assert response.status == 503, response.status
    retry = response.headers.get("Retry-After")
    assert retry is not None and int(retry) >= 1
    if retry_after is not None:
        assert int(retry) == retry_after
    assert warning in (response.headers.get("Warning") or "")


# -- HTTP and metrics --------------------------------------------------------------------------


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), GUARD)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode()


async def calls_of(port: int) -> list[dict[str, Any]]:
    status, body = await http_get(port, "/calls")
    assert status == 200
    calls: list[dict[str, Any]] = json.loads(body)["calls"]
    return calls


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(port: int) -> Samples:
    status, text = await http_get(port, "/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: Samples, name: str, **labels: str) -> float:
    return samples[(f"siprec_bridge_{name}", tuple(sorted(labels.items())))]


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + GUARD
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- checks on what the consumer received ------------------------------------------------------


def stop_message(summary: CallSummary) -> dict[str, Any]:
    events = [e["message"] for e in json.loads(Path(summary.events_path).read_text())]
    stop: dict[str, Any] = next(e for e in events if e.get("type") == "stop")
    return stop


def check_tones(summary: CallSummary, name: str, *, full: bool) -> float:
    """Each channel carries its leg's tone; with ``full`` the call lasts as long as what was
    sent. Returns the duration in seconds."""
    samples, rate = read_wav(Path(summary.wav_path or ""))
    legs = MANIFEST[name]["legs"]
    seconds = float(samples.shape[0] / rate)
    if full:
        sent = max(leg["start_ms"] + leg["duration_ms"] for leg in legs) / 1000
        assert abs(seconds - sent) <= 0.04, (seconds, stop_message(summary))
    for channel, leg in enumerate(legs):
        body = samples[rate // 4 : -rate // 4, channel]
        assert rms(body) > 1000, channel
        assert abs(dominant_hz(body, rate) - leg["tone_hz"]) < 15, channel
    return seconds


# -- drain: a real `siprec-bridge serve` process -----------------------------------------------


@dataclass
class Served:
    process: asyncio.subprocess.Process
    sip_port: int
    http_port: int
    log: Path

    async def exit_code(self) -> int:
        code = await asyncio.wait_for(self.process.wait(), GUARD)
        return code


@contextlib.asynccontextmanager
async def serve(
    tmp_path: Path, consumer: ConsumerServer, rtp_ports: str, config: str
) -> AsyncIterator[Served]:
    """``siprec-bridge serve`` with ``config`` (TOML) in a child process; killed if still
    running at the end."""
    sip_port, http_port = free_port(), free_port()
    path = tmp_path / "bridge.toml"
    path.write_text(config)
    log = tmp_path / "bridge.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPREC_BRIDGE_")}
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "siprec_bridge.cli",
            "serve",
            "--config",
            str(path),
            "--sip-listen",
            f"127.0.0.1:{sip_port}",
            "--rtp-ports",
            rtp_ports,
            "--ws-url",
            f"ws://127.0.0.1:{consumer.port}/",
            "--metrics-listen",
            f"127.0.0.1:{http_port}",
            env=dict(env, PYTHONUNBUFFERED="1"),
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), GUARD)
        assert b"listening" in line, log.read_text()
        yield Served(process, sip_port, http_port, log)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


DRAIN_CONFIG = """
[drain]
time_s = 30
sigint_time_s = 1.0
retry_after_s = 7
"""


async def test_sigterm_drains_the_running_call_to_its_end(
    consumer: ConsumerServer, tmp_path: Path
) -> None:
    name = "siprec_pcmu.pcap"
    async with serve(tmp_path, consumer, "49000-49099", DRAIN_CONFIG) as bridge:
        call = asyncio.create_task(replay(PCAPS / name, ("127.0.0.1", bridge.sip_port)))

        async def one_call() -> bool:
            return len(await calls_of(bridge.http_port)) == 1

        await eventually(one_call, "the call is up")
        assert (await http_get(bridge.http_port, "/readyz"))[0] == 200
        bridge.process.send_signal(signal.SIGTERM)

        async def not_ready() -> bool:
            return (await http_get(bridge.http_port, "/readyz"))[0] == 503

        await eventually(not_ready, "/readyz turns 503")
        assert await http_get(bridge.http_port, "/healthz") == (200, "ok\n")
        peer = await SipPeer.open(bridge.sip_port)
        try:
            peer.request("OPTIONS", "drain-options")
            expect_busy(await peer.final("drain-options", "OPTIONS"), 7, "draining")
            peer.request("INVITE", "drain-invite", offer=fixture_offer(name))
            expect_busy(await peer.final("drain-invite"), 7, "draining")
        finally:
            peer.close()
        samples = await scrape(bridge.http_port)
        assert metric(samples, "draining") == 1
        assert metric(samples, "calls_active") == 1
        assert metric(samples, "sip_refusals_total", cause="draining") == 2
        assert not call.done()  # the call goes on while the bridge drains

        (report,) = (await asyncio.wait_for(call, GUARD)).calls
        assert report.statuses == (("INVITE", 200), ("BYE", 200))
        assert not report.remote_bye
        assert await bridge.exit_code() == 0, bridge.log.read_text()
    (summary,) = await consumer.wait_for(1, timeout=GUARD)
    assert summary.stop_reason == "bye"
    check_tones(summary, name, full=True)  # no audio lost
    assert "draining" in bridge.log.read_text()


async def test_sigint_drains_faster_and_ends_the_call_with_bye(
    consumer: ConsumerServer, tmp_path: Path
) -> None:
    name = "siprec_pcma.pcap"
    loop = asyncio.get_running_loop()
    async with serve(tmp_path, consumer, "49100-49199", DRAIN_CONFIG) as bridge:
        call = asyncio.create_task(replay(PCAPS / name, ("127.0.0.1", bridge.sip_port)))

        async def one_call() -> bool:
            return len(await calls_of(bridge.http_port)) == 1

        await eventually(one_call, "the call is up")
        signalled = loop.time()
        bridge.process.send_signal(signal.SIGINT)
        peer = await SipPeer.open(bridge.sip_port)
        try:
            peer.request("INVITE", "drain-int", offer=fixture_offer(name))
            expect_busy(await peer.final("drain-int"), 7, "draining")
        finally:
            peer.close()
        (report,) = (await asyncio.wait_for(call, GUARD)).calls
        assert report.remote_bye  # drain.sigint_time_s passed: the bridge hung up
        assert report.statuses == (("INVITE", 200),)
        assert await bridge.exit_code() == 0, bridge.log.read_text()
        drained = loop.time() - signalled
    assert 1.0 <= drained < 5.0
    (summary,) = await consumer.wait_for(1, timeout=GUARD)
    assert summary.stop_reason == "shutdown"
    seconds = check_tones(summary, name, full=False)
    sent = MANIFEST[name]["duration_ms"] / 1000
    assert 1.0 <= seconds < sent - 0.5  # cut by the drain, not by the SRC
    packets = sum(s["packets"] for s in stop_message(summary)["streams"])
    assert packets < sum(leg["packets"] for leg in MANIFEST[name]["legs"])


# -- limits: in-process bridges ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(consumer: ConsumerServer, rtp_low: int, **extra: Any) -> AsyncIterator[Bridge]:
    """A bridge with its operations endpoint on an ephemeral port."""
    settings = bridge_settings(
        consumer.port,
        rtp_low=rtp_low,
        metrics__enabled=True,
        metrics__listen="127.0.0.1:0",
        **extra,
    )
    bridge = Bridge(settings)
    await bridge.start()
    try:
        yield bridge
    finally:
        await bridge.stop()


async def test_max_calls_refuses_the_next_invite_and_holds_nothing(
    consumer: ConsumerServer,
) -> None:
    offer = fixture_offer("siprec_pcmu.pcap")
    async with running(consumer, 46000, limits__max_calls=1) as bridge:
        assert bridge.http_port is not None
        peer = await SipPeer.open(bridge.sip_port)
        try:
            first = await peer.establish("max-1", offer)
            held = bridge.pool.in_use
            assert held == 2
            peer.request("INVITE", "max-2", offer=offer)
            expect_busy(await peer.final("max-2"), 5, "too many calls")
            assert bridge.pool.in_use == held  # no RTP port for the refused INVITE
            assert [s.call_id for s in bridge.sessions.values()] == ["max-1"]
            assert [c["call_id"] for c in await calls_of(bridge.http_port)] == ["max-1"]
            samples = await scrape(bridge.http_port)
            assert metric(samples, "sip_refusals_total", cause="max-calls") == 1
            assert metric(samples, "calls_active") == 1
            await peer.hang_up("max-1", first)
            third = await peer.establish("max-3", offer)  # room again
            await peer.hang_up("max-3", third)
        finally:
            peer.close()
        await consumer.wait_for(2, timeout=GUARD)
    assert sorted(s.call_id for s in consumer.summaries) == ["max-1", "max-3"]


async def test_invite_rate_per_source(consumer: ConsumerServer) -> None:
    async with running(consumer, 46200, limits__invite_rate=0.2, limits__invite_burst=1) as bridge:
        assert bridge.http_port is not None
        peer = await SipPeer.open(bridge.sip_port)
        try:
            peer.request("INVITE", "rate-1", offer=UNACCEPTABLE_OFFER)  # spends the token
            assert (await peer.final("rate-1")).status == 488
            peer.request("INVITE", "rate-2", offer=fixture_offer("siprec_pcmu.pcap"))
            expect_busy(await peer.final("rate-2"), None, "rate limit")
            peer.request("OPTIONS", "rate-options")  # only INVITEs are rate-limited
            assert (await peer.final("rate-options", "OPTIONS")).status == 200
        finally:
            peer.close()
        assert bridge.pool.in_use == 0 and not bridge.sessions
        samples = await scrape(bridge.http_port)
        assert metric(samples, "sip_refusals_total", cause="rate-limited") == 1
        assert metric(samples, "calls_rejected_total", status="488") == 1


@pytest.mark.parametrize("action", ["reject", "drop"])
async def test_allow_list_refuses_other_sources(consumer: ConsumerServer, action: str) -> None:
    rtp_low = 46400 if action == "reject" else 46600
    async with running(
        consumer,
        rtp_low,
        limits__allow_sources=["192.0.2.0/24", "10.0.0.0/8"],
        limits__deny_action=action,
    ) as bridge:
        peer = await SipPeer.open(bridge.sip_port)
        try:
            peer.request("INVITE", "denied", offer=fixture_offer("siprec_pcmu.pcap"))
            peer.request("OPTIONS", "denied-options")
            if action == "reject":
                invite = await peer.final("denied")
                assert invite.status == 403
                assert "127.0.0.1 is not allowed" in (invite.headers.get("Warning") or "")
                assert (await peer.final("denied-options", "OPTIONS")).status == 403
            else:  # no answer at all: nothing for a scanner to work with
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(peer.responses.get(), 0.5)
        finally:
            peer.close()
        assert bridge.admission.counts == {"source-denied": 2}
        assert bridge.pool.in_use == 0 and not bridge.sessions


# -- media: stranger, stall, timeout -----------------------------------------------------------


def tone_packets(hz: float, count: int, ssrc: int) -> list[bytes]:
    encoder = encoder_for("PCMU")
    pcm = (8000 * np.sin(2 * np.pi * hz * np.arange(160 * count) / 8000)).astype(np.int16)
    return [
        build_packet(
            payload_type=0,
            sequence=i,
            timestamp=160 * i,
            ssrc=ssrc,
            payload=encoder.encode(pcm[160 * i : 160 * (i + 1)]),
            marker=i == 0,
        )
        for i in range(count)
    ]


async def test_stranger_dropped_stall_reported_silent_call_ended(
    consumer: ConsumerServer,
) -> None:
    """Leg 1 sends 2 s, leg 2 0.5 s, a stranger 5 packets to leg 1's port; then silence."""
    async with running(consumer, 46800, media__timeout_s=1.0, media__stall_s=0.5) as bridge:
        assert bridge.http_port is not None
        peer = await SipPeer.open(bridge.sip_port)
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
        try:
            ok = await peer.establish("quiet", fixture_offer("siprec_pcmu.pcap"))
            port1, port2 = answered_ports(ok)
            for sock in socks:
                sock.bind(("127.0.0.1", 0))
            leg1, leg2, stranger = socks
            packets1 = tone_packets(440, 100, 0x1111)
            packets2 = tone_packets(1000, 25, 0x2222)
            strange = tone_packets(3000, 25, 0x3333)
            stranger_slots = (5, 10, 15, 20, 24)
            for i, packet in enumerate(packets1):
                leg1.sendto(packet, ("127.0.0.1", port1))
                if i < len(packets2):
                    leg2.sendto(packets2[i], ("127.0.0.1", port2))
                if i in stranger_slots:
                    stranger.sendto(strange[i], ("127.0.0.1", port1))
                if i == 50:  # mid-call: /calls shows the stranger's packets dropped
                    (call,) = await calls_of(bridge.http_port)
                    legs = {leg["label"]: leg for leg in call["legs"]}
                    assert legs["1"]["wrong_source"] == len(stranger_slots)
                    assert legs["1"]["packets"] > 0 and legs["2"]["packets"] == len(packets2)
                    assert legs["2"]["wrong_source"] == 0
                await asyncio.sleep(0.02)
            bye = await asyncio.wait_for(peer.requests.get(), GUARD)  # answered 200 by peer
            assert bye.method == "BYE" and bye.call_id == "quiet"
            (summary,) = await consumer.wait_for(1, timeout=GUARD)
            samples = await scrape(bridge.http_port)
        finally:
            for sock in socks:
                sock.close()
            peer.close()
    assert summary.stop_reason == "timeout"
    events = [e["message"] for e in json.loads(Path(summary.events_path).read_text())]
    stalls = [e for e in events if e["type"] == "media_stall"]
    assert stalls and stalls[0]["label"] == "2" and stalls[0]["silent_ms"] >= 500
    assert [e["type"] for e in events].index("media_stall") < [e["type"] for e in events].index(
        "stop"
    )
    streams = {s["label"]: s for s in stop_message(summary)["streams"]}
    assert streams["1"]["packets"] == 100 and streams["1"]["wrong_source"] == 5
    audio, rate = read_wav(Path(summary.wav_path or ""))
    assert abs(dominant_hz(audio[rate // 4 : 2 * rate, 0], rate) - 440) < 15  # not the stranger
    assert metric(samples, "calls_total", result="timeout") == 1
    assert metric(samples, "rtp_dropped_packets_total", reason="wrong_source") == 5


# -- metrics against what was sent -------------------------------------------------------------


async def test_metrics_during_and_after_replayed_calls(consumer: ConsumerServer) -> None:
    names = ["siprec_pcmu.pcap", "siprec_pcma.pcap"]
    calls = [load_call(PCAPS / name) for name in names]
    async with running(consumer, 49200) as bridge:
        port = bridge.http_port
        assert port is not None
        replays = asyncio.gather(*(replay(call, ("127.0.0.1", bridge.sip_port)) for call in calls))
        during: Samples = {}

        async def both_streaming() -> bool:
            nonlocal during
            during = await scrape(port)
            return metric(during, "ws_connected") == 2 and metric(during, "rtp_packets_total") > 0

        await eventually(both_streaming, "both calls stream")
        active = await calls_of(port)
        results = await asyncio.wait_for(replays, GUARD)
        await consumer.wait_for(2, timeout=GUARD)

        async def senders_closed() -> bool:
            return metric(await scrape(port), "ws_connected") == 0

        await eventually(senders_closed, "the consumer connections are closed")
        after = await scrape(port)
    sent_packets = sum(leg["packets"] for name in names for leg in MANIFEST[name]["legs"])
    sent_bytes = sum(len(p.data) for call in calls for p in call.packets)
    assert metric(during, "calls_active") == 2
    assert metric(during, "rtp_streams_active") == 4
    assert metric(during, "ws_connected") == 2
    assert 0 < metric(during, "rtp_packets_total") < sent_packets
    assert sorted(leg["codec"] for call in active for leg in call["legs"]) == [
        "PCMA",
        "PCMA",
        "PCMU",
        "PCMU",
    ]
    assert all(leg["packets"] > 0 for call in active for leg in call["legs"])
    assert {c["call_id"] for c in active} == {r.calls[0].call_id for r in results}

    assert metric(after, "calls_active") == 0
    assert metric(after, "rtp_streams_active") == 0
    assert metric(after, "calls_total", result="bye") == 2
    assert metric(after, "ws_outputs_total") == 2
    assert metric(after, "rtp_packets_total") == sent_packets
    assert metric(after, "rtp_bytes_total") == sent_bytes
    assert metric(after, "rtp_lost_packets_total") == 0
    for reason in ("late", "duplicate", "overflow", "wrong_source", "wrong_payload_type"):
        assert metric(after, "rtp_dropped_packets_total", reason=reason) == 0, reason
    frames = sum(s.frames for s in consumer.summaries)
    assert metric(after, "ws_frames_sent_total") == frames
    assert abs(frames - sum(MANIFEST[n]["duration_ms"] // 20 for n in names)) <= 2 * len(names)
    assert metric(after, "ws_dropped_total", kind="frame") == 0
    assert metric(after, "rtp_jitter_seconds_count") == 4


# -- docker-compose ----------------------------------------------------------------------------


def test_the_compose_bridge_config_is_valid() -> None:
    config = ROOT / "docker" / "bridge.toml"
    assert check_config(config, env={}) == []
    settings = load_settings(config, env={})
    compose = (ROOT / "docker-compose.yml").read_text()
    low, high = settings.rtp_range
    assert f'"{low}-{high}:{low}-{high}/udp"' in compose  # the RTP range is published
    metrics_port = settings.metrics.listen.rpartition(":")[2]
    assert f"127.0.0.1:{metrics_port}/readyz" in compose  # the healthcheck asks the bridge


@pytest.mark.skipif(COMPOSE is None, reason="docker-compose not installed")
def test_docker_compose_config_passes() -> None:
    assert COMPOSE is not None
    check = subprocess.run(
        [COMPOSE, "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
    services = subprocess.run(
        [COMPOSE, "config", "--services"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert sorted(services.stdout.split()) == ["bridge", "consumer", "replayer"]
