"""SDES-SRTP end to end through the bridge on 127.0.0.1 (RFC 4568, RFC 3711, issue 5).

- ``pcaps/siprec_srtp.pcap`` (RTP/SAVP, several ``a=crypto`` lines per m-line, packets protected
  with pylibsrtp) replayed into a bridge with ``rtp.srtp = "require"``: the consumer gets the
  tones, as plain PCM; the answer carries our own key for the offered line we chose.
- The policy, globally and per route: ``require`` answers a plain RTP/AVP offer with 488 and a
  Warning, ``off`` answers an SAVP-only offer with 488.
- A corpus capture (real SDES-SRTP from a WebRTC call) replayed inside a SIPREC offer that
  carries its keys: every packet is authenticated and decrypted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from testkit.audio import dominant_hz, read_wav, rms
from testkit.bridge import bridge_settings

import sdp
from sdp.crypto import Crypto, parse_crypto
from siprec_bridge.app import Bridge
from siprec_bridge.consumer import CallSummary, ConsumerServer
from siprec_bridge.replay import CallReport, RecordedCall, load_call, prepare_call, replay
from siprec_bridge.sip.message import SipRequest, SipResponse, parse_message

ROOT = Path(__file__).resolve().parents[2]
PCAPS = ROOT / "pcaps"
MANIFEST: dict[str, Any] = json.loads((PCAPS / "manifest.json").read_text())
CORPUS = (ROOT / ".." / "shared" / "siprec-corpus").resolve()
WEBRTC = CORPUS / "pcap" / "srtp" / "WebRTC_PCMA_p2p_SDES_Call_1.pcap"
# SDES keys of that capture per SSRC (its .keys.txt; SOURCES.md), AES_CM_128_HMAC_SHA1_80.
WEBRTC_KEYS = {
    0xD092D296: "7SYMKhu8sVMhCr4VXh+ZqkteB01QgqDSgLr4L9iU",
    0x522B93AB: "bhn3DDDcf7GhHEnFkGLW9V223XncT60nJrTQK06x",
}
KEY_SALT_OCTETS = {"AES_CM_128_HMAC_SHA1_80": 30, "AEAD_AES_128_GCM": 28}  # RFC 4568, 7714
SRTP = "siprec_srtp.pcap"
PLAIN = "siprec_pcmu.pcap"
GUARD = 10.0  # seconds; a guard against hangs, nothing is timed

pytestmark = pytest.mark.integration


class Peer(asyncio.DatagramProtocol):
    """A bare SRC over UDP: raw requests out, final responses in (non-2xx ACKed)."""

    def __init__(self, bridge_port: int) -> None:
        self.bridge_port = bridge_port
        self.port = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.responses: asyncio.Queue[SipResponse] = asyncio.Queue()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = int(transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse_message(data)
        if isinstance(message, SipResponse) and message.status >= 200:
            self.responses.put_nowait(message)

    def send(self, method: str, call_id: str, *, user: str = "srs", **kw: Any) -> None:
        to_tag: str | None = kw.get("to_tag")
        offer: tuple[str, bytes] | None = kw.get("offer")
        cseq: int = kw.get("cseq", 1)
        via = kw.get("via") or (
            f"SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK-{call_id}-{method}-{cseq}"
        )
        lines = [
            f"{method} sip:{user}@127.0.0.1:{self.bridge_port} SIP/2.0",
            f"Via: {via}",
            "Max-Forwards: 70",
            f"From: <sip:src@127.0.0.1>;tag=src-{call_id}",
            f"To: <sip:{user}@127.0.0.1>" + (f";tag={to_tag}" if to_tag else ""),
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:src@127.0.0.1:{self.port}>;+sip.src",
        ]
        body = b""
        if offer is not None:
            lines += ["Require: siprec", f"Content-Type: {offer[0]}"]
            body = offer[1]
        lines.append(f"Content-Length: {len(body)}")
        assert self.transport is not None
        self.transport.sendto(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    async def invite(
        self, call_id: str, offer: tuple[str, bytes], user: str = "srs"
    ) -> SipResponse:
        """INVITE → final response, then ACK (RFC 3261 §17.1.1.3 for a non-2xx, §13.2.2.4)."""
        self.send("INVITE", call_id, user=user, offer=offer)
        while True:
            response = await asyncio.wait_for(self.responses.get(), GUARD)
            if response.call_id == call_id and response.cseq[1] == "INVITE":
                break
        failed = response.status >= 300
        via = response.headers.get("Via") if failed else None  # non-2xx: same branch
        self.send("ACK", call_id, user=user, to_tag=response.to_tag, via=via)
        return response

    async def bye(self, call_id: str, ok: SipResponse, user: str = "srs") -> None:
        self.send("BYE", call_id, user=user, to_tag=ok.to_tag, cseq=2)
        response = await asyncio.wait_for(self.responses.get(), GUARD)
        assert (response.call_id, response.cseq[1], response.status) == (call_id, "BYE", 200)


@contextlib.asynccontextmanager
async def running(
    consumer: ConsumerServer, rtp_low: int, **extra: Any
) -> AsyncIterator[tuple[Bridge, Peer]]:
    """A bridge with ``extra`` settings (``bridge_settings``) and a raw SIP peer."""
    bridge = Bridge(bridge_settings(consumer.port, rtp_low=rtp_low, **extra))
    await bridge.start()
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(
        lambda: Peer(bridge.sip_port),
        local_addr=("127.0.0.1", 0),
        remote_addr=("127.0.0.1", bridge.sip_port),
    )
    try:
        yield bridge, peer
    finally:
        transport.close()
        await bridge.stop()


def offer_of(call: RecordedCall) -> tuple[str, bytes]:
    """The SIPREC body of a capture's INVITE with its media addresses on 127.0.0.1."""
    content_type = call.invite.headers.get("Content-Type")
    assert content_type is not None
    return content_type, call.invite.body.replace(b"192.0.2.10", b"127.0.0.1")


def expect_488(response: SipResponse, needle: str) -> None:
    """488 Not Acceptable Here (RFC 3261 §21.4.26) with a Warning naming the problem."""
    assert response.status == 488, response.status
    warning = response.headers.get("Warning") or ""
    assert warning.startswith("399 ") and needle in warning, warning


def answered_cryptos(ok: SipResponse) -> list[tuple[str, list[Crypto]]]:
    answer = sdp.parse(ok.body)
    return [
        (m.proto, [parse_crypto(v) for v in m.attributes_named("crypto")]) for m in answer.media
    ]


def events_of(summary: CallSummary) -> list[dict[str, Any]]:
    return [e["message"] for e in json.loads(Path(summary.events_path).read_text())]


async def test_srtp_fixture_recorded_under_require(consumer: ConsumerServer) -> None:
    """The SRTP fixture through the bridge while a plain offer is refused and an SAVP offer's
    answer is checked (RFC 4568 §7.1.2: the first usable line, its tag, a key of our own)."""
    async with running(consumer, 49600, rtp__srtp="require") as (bridge, peer):
        report = await srtp_fixture_and_offers(bridge, peer)
        await consumer.wait_for(2, timeout=GUARD)
    legs = MANIFEST[SRTP]["legs"]
    (summary,) = [s for s in consumer.summaries if s.call_id == report.call_id]
    assert summary.stop_reason == "bye"
    samples, rate = read_wav(Path(summary.wav_path or ""))
    assert abs(samples.shape[0] / rate - MANIFEST[SRTP]["duration_ms"] / 1000) <= 0.04
    for channel, leg in enumerate(legs):
        body = samples[rate // 4 : -rate // 4, channel]
        assert rms(body) > 1000, channel
        assert abs(dominant_hz(body, rate) - leg["tone_hz"]) < 15, channel
    stop = next(e for e in events_of(summary) if e["type"] == "stop")
    for stats, leg in zip(stop["streams"], legs, strict=True):
        assert (stats["packets"], stats["srtp_errors"], stats["lost"]) == (leg["packets"], 0, 0)


async def srtp_fixture_and_offers(bridge: Bridge, peer: Peer) -> CallReport:
    srtp_call = load_call(PCAPS / SRTP)
    recording = asyncio.create_task(replay(srtp_call, ("127.0.0.1", bridge.sip_port)))

    expect_488(await peer.invite("plain", offer_of(load_call(PCAPS / PLAIN))), "SRTP required")
    ok = await peer.invite("savp", offer_of(srtp_call))
    assert ok.status == 200
    legs = MANIFEST[SRTP]["legs"]
    for (proto, cryptos), leg in zip(answered_cryptos(ok), legs, strict=True):
        keys = leg["srtp"]
        assert proto == "RTP/SAVP"
        (crypto,) = cryptos
        assert (crypto.tag, crypto.suite) == (keys["tag"], keys["suite"])
        ours = crypto.key.key_b64
        assert ours not in (keys["key"], keys["srs_key"])  # a fresh key of the bridge's
        assert len(base64.b64decode(ours)) == KEY_SALT_OCTETS[keys["suite"]]
    await peer.bye("savp", ok)
    (report,) = (await asyncio.wait_for(recording, GUARD)).calls
    assert report.statuses == (("INVITE", 200), ("BYE", 200))
    return report


SECURE_ROUTE = {
    "name": "secure",
    "match": {"request_user": "^secure$"},
    "targets": [{}],
    "srtp": "require",
}


async def test_policy_off_and_per_route_require(consumer: ConsumerServer) -> None:
    savp = offer_of(load_call(PCAPS / SRTP))
    plain = offer_of(load_call(PCAPS / PLAIN))
    async with running(consumer, 49800, rtp__srtp="off", routes=[SECURE_ROUTE]) as (
        bridge,
        peer,
    ):
        expect_488(await peer.invite("off-savp", savp), "no acceptable audio stream")
        expect_488(await peer.invite("route-plain", plain, user="secure"), "SRTP required")
        assert bridge.pool.in_use == 0 and not bridge.sessions  # a 488 holds nothing
        ok = await peer.invite("route-savp", savp, user="secure")
        assert ok.status == 200
        assert [len(cryptos) for _, cryptos in answered_cryptos(ok)] == [1, 1]
        await peer.bye("route-savp", ok, user="secure")


def with_sdes_keys(call: RecordedCall) -> RecordedCall:
    """``call`` (a wrapped capture) offered as RTP/SAVP with each stream's SDES key."""
    body = call.invite.body
    for stream in call.streams:
        (ssrc,) = stream.ssrcs
        label = f"a=label:{stream.label}\r\n".encode()
        crypto = f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{WEBRTC_KEYS[ssrc]}\r\n".encode()
        assert body.count(label) == 1
        body = body.replace(label, label + crypto)
    body = body.replace(b" RTP/AVP ", b" RTP/SAVP ")
    invite = SipRequest(call.invite.method, call.invite.uri, call.invite.headers.copy(), body)
    invite.headers.set("Content-Length", str(len(body)))
    return dataclasses.replace(call, invite=invite)


@pytest.mark.skipif(not WEBRTC.exists(), reason=f"SRTP corpus capture absent: {WEBRTC}")
async def test_corpus_srtp_capture_is_decrypted(consumer: ConsumerServer) -> None:
    call = with_sdes_keys(prepare_call(WEBRTC, wrap=True, max_duration=2.0))
    async with running(consumer, 49800, rtp__srtp="require") as (bridge, _):
        (report,) = (await replay(call, ("127.0.0.1", bridge.sip_port))).calls
        assert report.statuses == (("INVITE", 200), ("BYE", 200))
        (summary,) = await consumer.wait_for(1, timeout=GUARD)
    stop = next(e for e in events_of(summary) if e["type"] == "stop")
    for stats in stop["streams"]:
        assert stats["srtp_errors"] == 0, stats
        assert stats["packets"] == report.packets_sent[stats["label"]] > 0
    samples, _ = read_wav(Path(summary.wav_path or ""))
    assert all(rms(samples[:, channel]) > 50 for channel in range(samples.shape[1]))
