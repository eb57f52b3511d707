"""Bad input never crashes the bridge nor touches another call (real UDP on 127.0.0.1).

A healthy replayed call runs while a raw SIP client sends malformed INVITEs, an INVITE with
garbage metadata, and RTP from a stranger and with a wrong payload type.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import numpy as np
import pytest
from testkit.audio import dominant_hz, read_wav, rms
from testkit.bridge import bridge_settings
from testkit.sip_client import SipClient, in_dialog, render

from rtp.codecs import encoder_for
from rtp.packet import build_packet
from sdp import parse as parse_sdp
from siprec_bridge.app import Bridge
from siprec_bridge.consumer import ConsumerServer
from siprec_bridge.replay import replay

ROOT = Path(__file__).resolve().parents[2]
VECTORS = Path(__file__).resolve().parent / "vectors"

pytestmark = pytest.mark.integration


async def test_bad_input_is_answered_counted_and_isolated(consumer: ConsumerServer) -> None:
    config = bridge_settings(consumer.port, rtp_low=45000)
    bridge = Bridge(config)
    await bridge.start()
    loop = asyncio.get_running_loop()
    target = ("127.0.0.1", bridge.sip_port)
    transport, client = await loop.create_datagram_endpoint(
        SipClient, local_addr=("127.0.0.1", 0), remote_addr=target
    )
    healthy = asyncio.create_task(replay(ROOT / "pcaps" / "siprec_pcmu.pcap", target))
    try:
        await asyncio.sleep(0.5)  # the healthy call is streaming
        # 1. Malformed INVITEs: 400 with a Warning naming the problem, no dialog.
        #    Without CSeq no response can be built (RFC 3261 §8.2.6.2): dropped.
        text = (VECTORS / "invite_missing_cseq.sip").read_text()
        transport.sendto(render(text, bridge.sip_port, "bad-nocseq"))
        with pytest.raises(TimeoutError):
            await client.final("bad-nocseq", timeout=0.3)
        for name, needle in (
            ("invite_cseq_mismatch.sip", "cseq"),
            ("invite_bad_sdp.sip", "sdp"),
            ("invite_no_boundary.sip", "boundary"),
        ):
            text = (VECTORS / name).read_text()
            transport.sendto(render(text, bridge.sip_port, f"bad-{name}"))
            response = await client.final(f"bad-{name}")
            assert response.status == 400, name
            warning = response.headers.get("Warning") or ""
            assert warning.startswith("399 ") and needle in warning.lower(), (name, warning)
        assert len(bridge.sessions) == 1  # only the healthy call

        # 2. Garbage metadata: the call is recorded anyway, the problem reported in `start`.
        template = (VECTORS / "invite_garbage_metadata.sip").read_text()
        transport.sendto(render(template, bridge.sip_port, "garbage-meta"))
        ok = await client.final("garbage-meta")
        assert ok.status == 200
        answer = parse_sdp(ok.body)
        port = answer.media[0].port
        assert port != 0
        local_port = transport.get_extra_info("sockname")[1]
        to = ok.headers.get("To") or ""
        ids = {
            "port": bridge.sip_port,
            "local_port": local_port,
            "to": to,
            "call_id": "garbage-meta",
        }
        transport.sendto(in_dialog("ACK", 1, **ids))

        # 3. RTP: good packets from the SDP source, then a stranger and a wrong payload type.
        encoder = encoder_for("PCMU")
        tone = (8000 * np.sin(2 * np.pi * 700 * np.arange(160 * 50) / 8000)).astype(np.int16)
        good = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        good.bind(("127.0.0.1", 0))
        stranger.bind(("127.0.0.1", 0))
        try:
            for i in range(50):
                payload = encoder.encode(tone[i * 160 : (i + 1) * 160])
                packet = build_packet(
                    payload_type=0, sequence=i, timestamp=160 * i, ssrc=7, payload=payload
                )
                good.sendto(packet, ("127.0.0.1", port))
                if i % 10 == 5:
                    stranger.sendto(packet, ("127.0.0.1", port))
                    wrong_pt = build_packet(
                        payload_type=96, sequence=i, timestamp=160 * i, ssrc=7, payload=payload
                    )
                    good.sendto(wrong_pt, ("127.0.0.1", port))
                    good.sendto(b"\x00garbage", ("127.0.0.1", port))
                await asyncio.sleep(0.02)
        finally:
            good.close()
            stranger.close()
        transport.sendto(in_dialog("BYE", 2, **ids))
        assert (await client.final("garbage-meta")).status == 200
        await healthy
        await consumer.wait_for(2, timeout=10)
    finally:
        transport.close()
        await bridge.stop()

    by_call = {s.call_id: s for s in consumer.summaries}
    garbage = by_call["garbage-meta"]
    events = [e["message"] for e in json.loads(Path(garbage.events_path).read_text())]
    start = next(e for e in events if e["type"] == "start")
    assert any("metadata" in p for p in start["metadata_problems"])
    stop = next(e for e in events if e["type"] == "stop")
    (stats,) = stop["streams"]
    assert stats["packets"] == 50
    assert stats["wrong_source"] == 5
    assert stats["wrong_payload_type"] == 5
    assert stats["bad"] == 5
    samples, rate = read_wav(Path(garbage.wav_path))
    assert abs(dominant_hz(samples[:, 0], rate) - 700) < 15

    (other,) = [s for s in consumer.summaries if s.call_id != "garbage-meta"]
    samples, rate = read_wav(Path(other.wav_path))
    assert abs(samples.shape[0] / rate - 4.0) <= 0.04  # the healthy call lost nothing
    for channel, hz in ((0, 440), (1, 1000)):
        body = samples[rate // 4 : -rate // 4, channel]
        assert rms(body) > 1000
        assert abs(dominant_hz(body, rate) - hz) < 15
