"""SIP over TLS (RFC 3261 §26.3.1) end to end: a ``siprec-bridge serve`` process with a TLS
listener records calls whose signalling arrives over TLS (RTP stays plain RTP over UDP).

- A Python TLS client is the SRC: OPTIONS, the SIPREC INVITE, ACK, RTP from its own sockets,
  BYE; the consumer gets the call.
- SIPp (Debian's is built without TLS) runs ``sipp/siprec_uac.xml`` over TCP into ``stunnel4``
  as the TLS client, presenting a client certificate to a bridge that requires one (mutual TLS,
  ``sip.tls.client_ca`` set through the environment); a client without a certificate is
  refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from testkit.audio import dominant_hz, read_wav, rms
from testkit.certs import CertAuthority, Issued
from testkit.sipp import SIPP, free_port, run_siprec_src
from testkit.stunnel import STUNNEL, start_stunnel

import sdp
from rtp.codecs import encoder_for
from rtp.packet import build_packet
from siprec_bridge.consumer import CallSummary, ConsumerServer
from siprec_bridge.replay import load_call
from siprec_bridge.sip.message import SipRequest, SipResponse, StreamFramer, parse_message

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GUARD = 15.0  # seconds; a guard against hangs, nothing is timed
TONES = (440, 1000)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return CertAuthority(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server_cert(ca: CertAuthority) -> Issued:
    return ca.issue("localhost")


@contextlib.asynccontextmanager
async def serve(
    tmp_path: Path,
    consumer: ConsumerServer,
    server: Issued,
    rtp_ports: str,
    env: dict[str, str] | None = None,
) -> AsyncIterator[int]:
    """``siprec-bridge serve`` with a TLS listener; yields its TLS port."""
    tls_port = free_port()
    log = tmp_path / "bridge.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SIPREC_BRIDGE_")}
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "siprec_bridge.cli",
            "serve",
            "--sip-listen",
            f"127.0.0.1:{free_port()}",
            "--sip-tls-listen",
            f"127.0.0.1:{tls_port}",
            "--sip-tls-cert",
            str(server.cert),
            "--sip-tls-key",
            str(server.key),
            "--rtp-ports",
            rtp_ports,
            "--ws-url",
            f"ws://127.0.0.1:{consumer.port}/",
            "--metrics-listen",
            f"127.0.0.1:{free_port()}",
            env=dict(clean, PYTHONUNBUFFERED="1", **(env or {})),
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), GUARD)
        assert b"listening" in line, log.read_text()
        yield tls_port
    finally:
        if process.returncode is None:
            process.terminate()
        assert await asyncio.wait_for(process.wait(), GUARD) == 0, log.read_text()


def check_call(summary: CallSummary, seconds: float) -> None:
    """Both legs' tones, ``seconds`` of audio or more (SIPp pauses before its BYE)."""
    assert summary.stop_reason == "bye"
    assert summary.labels == ["1", "2"]
    samples, rate = read_wav(Path(summary.wav_path or ""))
    assert samples.shape[1] == 2 and rate == 8000
    assert samples.shape[0] / rate >= seconds - 0.1
    for channel, hz in enumerate(TONES):
        body = samples[rate // 4 : int((seconds - 0.25) * rate), channel]
        assert rms(body) > 1000, channel
        assert abs(dominant_hz(body, rate) - hz) < 15, channel


# -- (a) a Python TLS client -------------------------------------------------------------------


class TlsSrc:
    """A SIPREC SRC over one TLS connection (RFC 3261 §18: framed by Content-Length)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = StreamFramer()
        self.pending: list[bytes] = []
        self.port = int(writer.get_extra_info("sockname")[1])

    def send(self, method: str, cseq: int, *, to_tag: str = "", body: bytes = b"") -> None:
        lines = [
            f"{method} sip:srs@127.0.0.1;transport=tls SIP/2.0",
            f"Via: SIP/2.0/TLS 127.0.0.1:{self.port};branch=z9hG4bK-tls-{method}-{cseq}",
            "Max-Forwards: 70",
            "From: <sip:src@127.0.0.1>;tag=tls-src",
            "To: <sip:srs@127.0.0.1>" + (f";tag={to_tag}" if to_tag else ""),
            "Call-ID: tls-call",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:src@127.0.0.1:{self.port};transport=tls>;+sip.src",
        ]
        if body:
            content_type, _ = OFFER
            lines += ["Require: siprec", f"Content-Type: {content_type}"]
        lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    async def final(self) -> SipResponse:
        while True:
            while not self.pending:
                data = await asyncio.wait_for(self.reader.read(65536), GUARD)
                if not data:
                    raise ConnectionResetError("the bridge closed the TLS connection")
                self.pending += self.framer.feed(data)
            message = parse_message(self.pending.pop(0))
            assert not isinstance(message, SipRequest), message
            if message.status >= 200:
                return message


def _offer() -> tuple[str, bytes]:
    invite = load_call(ROOT / "pcaps" / "siprec_pcmu.pcap").invite
    return invite.headers.get("Content-Type") or "", invite.body.replace(
        b"192.0.2.10", b"127.0.0.1"
    )


OFFER = _offer()


async def send_rtp(ports: list[int], seconds: float) -> None:
    """PCMU tones (``TONES``) to the answered ports, 20 ms packets, from 127.0.0.1."""
    encoder = encoder_for("PCMU")
    count = int(seconds * 50)
    t = np.arange(160 * count) / 8000
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in ports]
    try:
        pcm = [(8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16) for hz in TONES]
        for i in range(count):
            for leg, (sock, port) in enumerate(zip(socks, ports, strict=True)):
                payload = encoder.encode(pcm[leg][160 * i : 160 * (i + 1)])
                packet = build_packet(
                    payload_type=0, sequence=i, timestamp=160 * i, ssrc=leg + 1, payload=payload
                )
                sock.sendto(packet, ("127.0.0.1", port))
            await asyncio.sleep(0.02)
    finally:
        for sock in socks:
            sock.close()


async def test_python_tls_client_records_a_call(
    consumer: ConsumerServer, tmp_path: Path, ca: CertAuthority, server_cert: Issued
) -> None:
    async with serve(tmp_path, consumer, server_cert, "49400-49499") as tls_port:
        context = ssl.create_default_context(cafile=str(ca.cert))
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", tls_port, ssl=context, server_hostname="localhost"
        )
        src = TlsSrc(reader, writer)
        try:
            assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
            src.send("OPTIONS", 1)
            assert (await src.final()).status == 200
            src.send("INVITE", 2, body=OFFER[1])
            ok = await src.final()
            assert ok.status == 200, ok.headers.get("Warning")
            assert f"127.0.0.1:{tls_port};transport=tls" in (ok.headers.get("Contact") or "")
            assert ok.to_tag is not None
            src.send("ACK", 2, to_tag=ok.to_tag)
            await send_rtp([m.port for m in sdp.parse(ok.body).media], 2.0)
            src.send("BYE", 3, to_tag=ok.to_tag)
            bye = await src.final()
            assert (bye.status, bye.cseq) == (200, (3, "BYE"))
        finally:
            writer.close()
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                await writer.wait_closed()
        (summary,) = await consumer.wait_for(1, timeout=GUARD)
    assert summary.call_id == "tls-call"
    check_call(summary, 2.0)


# -- (b) SIPp → stunnel4 (TLS client with a certificate) → the bridge (mutual TLS) -------------


async def refused_without_certificate(tls_port: int, ca: CertAuthority) -> bool:
    """A client without a certificate gets no SIP answer (handshake refused or aborted)."""
    context = ssl.create_default_context(cafile=str(ca.cert))
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", tls_port, ssl=context, server_hostname="localhost"
        )
    except (ssl.SSLError, ConnectionError):
        return True
    try:
        src = TlsSrc(reader, writer)
        src.send("OPTIONS", 1)
        await src.final()
    except (ssl.SSLError, ConnectionError):
        return True
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()
    return False


@pytest.mark.skipif(SIPP is None, reason="SIPp not installed (apt install sip-tester)")
@pytest.mark.skipif(STUNNEL is None, reason="stunnel4 not installed (apt install stunnel4)")
async def test_sipp_through_stunnel_over_mutual_tls(
    consumer: ConsumerServer, tmp_path: Path, ca: CertAuthority, server_cert: Issued
) -> None:
    assert SIPP is not None
    seconds = 2
    client = ca.issue("sbc.example", server=False)
    env = {"SIPREC_BRIDGE_SIP_TLS_CLIENT_CA": str(ca.cert)}
    async with serve(tmp_path, consumer, server_cert, "49500-49599", env) as tls_port:
        assert await refused_without_certificate(tls_port, ca)
        stunnel, accept = await start_stunnel(tmp_path, ca.cert, client, tls_port, guard=GUARD)
        try:
            await run_siprec_src(
                f"127.0.0.1:{accept}",
                transport="t1",
                seconds=seconds,
                workdir=tmp_path,
                timeout=30,
            )
            (summary,) = await consumer.wait_for(1, timeout=GUARD)
        finally:
            stunnel.terminate()
            await stunnel.wait()
    check_call(summary, seconds)
