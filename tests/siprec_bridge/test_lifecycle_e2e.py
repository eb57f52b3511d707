"""A recording session's lifecycle through the real bridge (RFC 7866 §8.1.6, §9.2).

INVITE → RTP → re-INVITE ``a=inactive`` (pause) → silence → re-INVITE ``a=sendonly``
(resume) → RTP → metadata-only UPDATE adding a participant (a transfer) → RTP → BYE with
final metadata. The consumer must see ``pause``, ``resume`` and ``update`` at the right call
time, participants appended (never re-indexed), and one continuous audio timeline.
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
from testkit.sip_client import SipClient, in_dialog

from rtp.codecs import encoder_for
from rtp.packet import build_packet
from siprec_bridge.app import Bridge
from siprec_bridge.consumer import ConsumerServer

pytestmark = pytest.mark.integration

CALL_ID = "lifecycle-1"
BOUNDARY = "lifecycle-boundary"
ALICE, BOB, CAROL = "YWxpY2U=", "Ym9i", "Y2Fyb2w="
S1, S2 = "c3RyZWFtMQ==", "c3RyZWFtMg=="


def sdp_offer(ports: tuple[int, int], direction: str, version: int) -> str:
    lines = ["v=0", f"o=src 1 {version} IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
    for label, port in zip(("1", "2"), ports, strict=True):
        lines += [
            f"m=audio {port} RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000",
            f"a={direction}",
            f"a=label:{label}",
        ]
    return "\r\n".join(lines) + "\r\n"


def participant(pid: str, aor: str) -> str:
    return f'<participant participant_id="{pid}"><nameID aor="{aor}"/></participant>'


def sends(pid: str, stream: str) -> str:
    tag = "participantstreamassoc"
    return f'<{tag} participant_id="{pid}"><send>{stream}</send></{tag}>'


def metadata(*, carol: bool) -> str:
    """RFC 7865 metadata; with ``carol`` she replaced Bob as the sender of stream 2."""
    second = CAROL if carol else BOB
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<recording xmlns="urn:ietf:params:xml:ns:recording:1"><datamode>complete</datamode>',
        '<group group_id="Z3JvdXAx"><associate-time>2026-01-01T00:00:00Z</associate-time></group>',
        '<session session_id="c2Vzc2lvbg=="><group-ref>Z3JvdXAx</group-ref></session>',
        participant(ALICE, "sip:alice@example.com"),
        participant(BOB, "sip:bob@example.com"),
    ]
    if carol:
        parts.append(participant(CAROL, "sip:carol@example.com"))
    parts += [
        f'<stream stream_id="{S1}" session_id="c2Vzc2lvbg=="><label>1</label></stream>',
        f'<stream stream_id="{S2}" session_id="c2Vzc2lvbg=="><label>2</label></stream>',
        sends(ALICE, S1),
        sends(second, S2),
        "</recording>",
    ]
    return "\r\n".join(parts) + "\r\n"


def multipart(*parts: tuple[str, str]) -> bytes:
    body = "".join(f"--{BOUNDARY}\r\nContent-Type: {ct}\r\n\r\n{text}\r\n" for ct, text in parts)
    return (body + f"--{BOUNDARY}--\r\n").encode()


CONTENT_TYPE = f"multipart/mixed;boundary={BOUNDARY}"
METADATA_TYPE = "application/rs-metadata+xml"


def initial_invite(port: int, local_port: int, rtp: tuple[int, int]) -> bytes:
    body = multipart(
        ("application/sdp", sdp_offer(rtp, "sendonly", 1)), (METADATA_TYPE, metadata(carol=False))
    )
    return (
        f"INVITE sip:srs@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};rport;branch=z9hG4bKinvite1\r\n"
        "From: <sip:src@127.0.0.1>;tag=src1\r\nTo: <sip:srs@127.0.0.1>\r\n"
        f"Call-ID: {CALL_ID}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:src@127.0.0.1:{local_port}>;+sip.src\r\n"
        f"Require: siprec\r\nMax-Forwards: 70\r\nContent-Type: {CONTENT_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class TwoLegs:
    """PCMU at 20 ms pace on two sockets: 440 Hz (label 1) and 1000 Hz (label 2)."""

    def __init__(self) -> None:
        self.socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        for sock in self.socks:
            sock.bind(("127.0.0.1", 0))
        self.ports = tuple(int(s.getsockname()[1]) for s in self.socks)
        self.frame = 0
        encoder = encoder_for("PCMU")
        t = np.arange(160 * 400) / 8000
        self.payloads = [
            [
                encoder.encode(
                    (8000 * np.sin(2 * np.pi * hz * t[i * 160 : (i + 1) * 160])).astype(np.int16)
                )
                for i in range(400)
            ]
            for hz in (440, 1000)
        ]

    async def play(self, dests: tuple[int, int], frames: int, *, send: bool = True) -> None:
        """``frames`` of 20 ms; silent (no packets, RTP time still advancing) unless ``send``."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(frames):
            if send:
                for leg, (sock, port) in enumerate(zip(self.socks, dests, strict=True)):
                    packet = build_packet(
                        payload_type=0,
                        sequence=self.frame & 0xFFFF,
                        timestamp=160 * self.frame,
                        ssrc=0x100 + leg,
                        payload=self.payloads[leg][self.frame % 400],
                    )
                    sock.sendto(packet, ("127.0.0.1", port))
            self.frame += 1
            await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - loop.time()))

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


async def test_pause_resume_update_and_final_metadata(consumer: ConsumerServer) -> None:
    bridge = Bridge(bridge_settings(consumer.port, rtp_low=46000))
    await bridge.start()
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        SipClient, local_addr=("127.0.0.1", 0), remote_addr=("127.0.0.1", bridge.sip_port)
    )
    legs = TwoLegs()
    try:
        client.send(initial_invite(bridge.sip_port, client.local_port, legs.ports))
        ok = await client.final(CALL_ID)
        assert ok.status == 200
        ids = {
            "port": bridge.sip_port,
            "local_port": client.local_port,
            "to": ok.headers.get("To") or "",
            "call_id": CALL_ID,
        }
        client.send(in_dialog("ACK", 1, **ids))
        answer = ok.body.decode()
        dests = tuple(
            int(line.split()[1]) for line in answer.splitlines() if line.startswith("m=audio")
        )
        assert len(dests) == 2

        def reinvite(cseq: int, direction: str) -> bytes:
            body = multipart(
                ("application/sdp", sdp_offer(legs.ports, direction, cseq)),
                (METADATA_TYPE, metadata(carol=False)),
            )
            return in_dialog("INVITE", cseq, body=body, content_type=CONTENT_TYPE, **ids)

        await legs.play(dests, 50)  # 1.0 s of both tones
        client.send(reinvite(2, "inactive"))
        assert (await client.final(CALL_ID)).status == 200
        client.send(in_dialog("ACK", 2, **ids))
        await legs.play(dests, 30, send=False)  # 0.6 s on hold: no RTP at all
        client.send(reinvite(3, "sendonly"))
        assert (await client.final(CALL_ID)).status == 200
        client.send(in_dialog("ACK", 3, **ids))
        await legs.play(dests, 50)
        update = in_dialog(
            "UPDATE", 4, body=metadata(carol=True).encode(), content_type=METADATA_TYPE, **ids
        )
        client.send(update)
        assert (await client.final(CALL_ID)).status == 200
        await legs.play(dests, 20)
        bye = in_dialog(
            "BYE", 5, body=metadata(carol=True).encode(), content_type=METADATA_TYPE, **ids
        )
        client.send(bye)
        assert (await client.final(CALL_ID)).status == 200
        await consumer.wait_for(1, timeout=10)
    finally:
        legs.close()
        transport.close()
        await bridge.stop()

    (summary,) = consumer.summaries
    messages = [e["message"] for e in json.loads(Path(summary.events_path).read_text())]
    kinds = [m["type"] for m in messages]
    assert kinds == ["start", "pause", "resume", "update", "stop"], kinds
    start, pause, resume, update, stop = messages
    assert start["group_id"] == "Z3JvdXAx" and start["correlation"] == {}
    assert [p["id"] for p in start["participants"]] == [ALICE, BOB]
    assert pause["labels"] == ["1", "2"] and resume["labels"] == ["1", "2"]
    assert 900 <= pause["position_ms"] <= 1200 and 1500 <= resume["position_ms"] <= 1800
    assert [p["id"] for p in update["participants"]] == [ALICE, BOB, CAROL]  # appended
    assert {s["label"]: s["participant_id"] for s in update["streams"]} == {"1": ALICE, "2": CAROL}
    assert stop["reason"] == "bye"
    samples, rate = read_wav(Path(summary.wav_path))
    # One continuous timeline: 1.0 s + 0.6 s hold + 1.0 s + 0.4 s.
    assert abs(samples.shape[0] / rate - 3.0) < 0.1, samples.shape[0] / rate
    held = samples[int(1.15 * rate) : int(1.55 * rate)]
    assert rms(held) < 50  # silence while paused
    for channel, hz in ((0, 440), (1, 1000)):
        assert abs(dominant_hz(samples[int(0.2 * rate) : int(0.9 * rate), channel], rate) - hz) < 15
        assert abs(dominant_hz(samples[int(1.8 * rate) : int(2.5 * rate), channel], rate) - hz) < 15
