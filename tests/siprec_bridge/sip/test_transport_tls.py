"""SIP over TLS (RFC 3261 §26.3.1): a Python TLS client, mutual TLS, and SIPp through stunnel.

Debian's SIPp is built without TLS, so the real-client test runs SIPp over TCP into
``stunnel4`` in client mode, which speaks TLS (with a client certificate) to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from testkit.certs import CertAuthority, Issued
from testkit.sip_app import SDP
from testkit.sip_app import SipApp as App
from testkit.sipp import free_port
from testkit.stunnel import STUNNEL, start_stunnel

from siprec_bridge.admission import Admission
from siprec_bridge.auth import DigestAuthenticator
from siprec_bridge.sip.events import (
    AckReceived,
    ByeReceived,
    ByeResult,
    InviteReceived,
    RequestRefused,
)
from siprec_bridge.sip.message import (
    SipRequest,
    SipResponse,
    StreamFramer,
    build_response,
    parse_message,
)
from siprec_bridge.sip.transport import SipServer, server_tls_context
from siprec_bridge.sip.ua import UserAgent

pytestmark = pytest.mark.integration

GUARD = 10.0  # seconds; a guard against hangs, nothing is timed
HERE = Path(__file__).resolve().parent
SIPP = shutil.which("sipp")


class Pki:
    def __init__(self, folder: Path) -> None:
        self.ca = CertAuthority(folder / "ca")
        self.server = self.ca.issue("localhost")
        self.client = self.ca.issue("src.example", server=False)
        self.stranger = CertAuthority(folder / "other", "other CA").issue("evil", server=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def app(pki: Pki) -> AsyncIterator[App]:
    application = App(guard=GUARD)
    await application.start(server_tls_context(pki.server.cert, pki.server.key))
    yield application
    await application.server.close()


@pytest.fixture
async def mtls_app(pki: Pki) -> AsyncIterator[App]:
    application = App(guard=GUARD)
    context = server_tls_context(pki.server.cert, pki.server.key, client_ca=pki.ca.cert)
    await application.start(context)
    yield application
    await application.server.close()


def client_context(pki: Pki, identity: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    if identity is not None:
        context.load_cert_chain(str(identity.cert), str(identity.key))
    return context


class TlsClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = StreamFramer()
        self.pending: list[bytes] = []
        sockname = writer.get_extra_info("sockname")
        self.port = int(sockname[1])

    @classmethod
    async def connect(cls, port: int, context: ssl.SSLContext) -> TlsClient:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost"),
            GUARD,
        )
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def next(self) -> SipRequest | SipResponse:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), GUARD)
            if not data:
                raise ConnectionResetError("server closed the connection")
            self.pending += self.framer.feed(data)
        return parse_message(self.pending.pop(0))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await self.writer.wait_closed()


def request(
    method: str,
    port: int,
    cseq: int,
    branch: str,
    *,
    to_tag: str | None = None,
    body: bytes = b"",
    extra: str = "",
) -> bytes:
    to = "<sip:srs@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    head = (
        f"{method} sip:srs@127.0.0.1;transport=tls SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS 127.0.0.1:{port};branch={branch}\r\n"
        f"From: <sip:src@127.0.0.1>;tag=src1\r\nTo: {to}\r\nCall-ID: tls-1\r\n"
        f"CSeq: {cseq} {method}\r\nContact: <sip:src@127.0.0.1:{port};transport=tls>\r\n"
        f"Max-Forwards: 70\r\n{extra}"
        + ("Content-Type: application/sdp\r\n" if body else "")
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def test_options_and_a_whole_call_over_tls(app: App, pki: Pki) -> None:
    client = await TlsClient.connect(app.server.tls_port, client_context(pki))
    try:
        client.send(request("OPTIONS", client.port, 1, "z9hG4bK-o1"))
        options = await client.next()
        assert isinstance(options, SipResponse) and options.status == 200
        assert "INVITE" in (options.headers.get("Allow") or "")

        client.send(request("INVITE", client.port, 1, "z9hG4bK-i1", body=SDP))
        assert (trying := await client.next()) and isinstance(trying, SipResponse)
        assert trying.status == 100
        ok = await client.next()
        assert isinstance(ok, SipResponse) and ok.status == 200
        contact = ok.headers.get("Contact") or ""
        assert f"127.0.0.1:{app.server.tls_port};transport=tls" in contact
        invite = await app.wait_for(InviteReceived)
        assert isinstance(invite, InviteReceived) and invite.source.transport == "tls"
        assert ok.to_tag is not None

        client.send(request("ACK", client.port, 1, "z9hG4bK-a1", to_tag=ok.to_tag))
        await app.wait_for(AckReceived)
        client.send(request("BYE", client.port, 2, "z9hG4bK-b1", to_tag=ok.to_tag))
        bye_ok = await client.next()
        assert isinstance(bye_ok, SipResponse) and bye_ok.status == 200
        assert bye_ok.cseq == (2, "BYE")
        await app.wait_for(ByeReceived)
    finally:
        await client.close()


async def test_server_bye_goes_out_on_the_tls_connection_with_a_tls_via(app: App, pki: Pki) -> None:
    client = await TlsClient.connect(app.server.tls_port, client_context(pki))
    try:
        client.send(request("INVITE", client.port, 1, "z9hG4bK-i2", body=SDP))
        ok = await client.next()
        if isinstance(ok, SipResponse) and ok.status == 100:
            ok = await client.next()
        assert isinstance(ok, SipResponse) and ok.status == 200 and ok.to_tag is not None
        client.send(request("ACK", client.port, 1, "z9hG4bK-a2", to_tag=ok.to_tag))
        ack = await app.wait_for(AckReceived)
        assert isinstance(ack, AckReceived)
        app.ua.send_bye(ack.dialog_id, app.server.now())
        app.server.flush()
        bye = await client.next()
        assert isinstance(bye, SipRequest) and bye.method == "BYE"
        via = bye.top_via
        assert via.transport == "TLS" and via.port == app.server.tls_port
        client.send(build_response(bye, 200).to_bytes())
        result = await app.wait_for(ByeResult)
        assert isinstance(result, ByeResult) and result.status == 200
    finally:
        await client.close()


async def expect_refused(port: int, context: ssl.SSLContext) -> None:
    """The handshake fails, or the server aborts before answering anything."""
    try:
        client = await TlsClient.connect(port, context)
    except (ssl.SSLError, ConnectionError):
        return
    try:
        client.send(request("OPTIONS", client.port, 1, "z9hG4bK-x"))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await client.next()
    finally:
        await client.close()


async def test_mutual_tls_rejects_a_client_without_certificate(mtls_app: App, pki: Pki) -> None:
    await expect_refused(mtls_app.server.tls_port, client_context(pki))
    assert mtls_app.events == []


async def test_mutual_tls_rejects_a_certificate_from_another_ca(mtls_app: App, pki: Pki) -> None:
    await expect_refused(mtls_app.server.tls_port, client_context(pki, pki.stranger))
    assert mtls_app.events == []


async def test_mutual_tls_accepts_a_client_certificate_of_the_ca(mtls_app: App, pki: Pki) -> None:
    client = await TlsClient.connect(mtls_app.server.tls_port, client_context(pki, pki.client))
    try:
        client.send(request("OPTIONS", client.port, 1, "z9hG4bK-m1"))
        response = await client.next()
        assert isinstance(response, SipResponse) and response.status == 200
    finally:
        await client.close()


async def test_tls_below_1_2_is_refused(pki: Pki) -> None:
    context = server_tls_context(pki.server.cert, pki.server.key)
    with warnings.catch_warnings():  # setting TLS 1.1 is itself deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
    server = SipServer(UserAgent(local_host="127.0.0.1", local_port=0), lambda events: None)
    with pytest.raises(ValueError, match=r"TLS 1\.2"):
        await server.start_tls("127.0.0.1", 0, context)
    await server.close()


def test_server_context_settings(pki: Pki) -> None:
    plain = server_tls_context(pki.server.cert, pki.server.key, min_version="1.3")
    assert plain.minimum_version is ssl.TLSVersion.TLSv1_3
    assert plain.verify_mode is ssl.CERT_NONE
    optional = server_tls_context(
        pki.server.cert, pki.server.key, client_ca=pki.ca.cert, require_client_cert=False
    )
    assert optional.verify_mode is ssl.CERT_OPTIONAL
    with pytest.raises(ssl.SSLError):
        server_tls_context(pki.server.cert, pki.client.key)  # key of another certificate


# -- SIPp (TCP) → stunnel4 (TLS client with a certificate) → SipServer (mutual TLS) ------------


async def run_sipp(scenario: str, port: int, folder: Path, *extra: str) -> None:
    assert SIPP is not None
    proc = await asyncio.create_subprocess_exec(
        SIPP,
        f"127.0.0.1:{port}",
        "-sf",
        str(HERE / "vectors" / "tls" / scenario),
        "-t",
        "t1",
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port(socket.SOCK_STREAM)),
        "-m",
        "1",
        "-timeout",
        "10",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(folder / "sipp_errors.log"),
        *extra,
        cwd=folder,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    errors = folder / "sipp_errors.log"
    assert proc.returncode == 0, errors.read_text() if errors.exists() else err.decode()


@pytest.mark.skipif(SIPP is None, reason="SIPp not installed (apt install sip-tester)")
@pytest.mark.skipif(STUNNEL is None, reason="stunnel not installed (apt install stunnel4)")
@pytest.mark.parametrize("with_auth", [False, True], ids=["call", "digest-auth-call"])
async def test_sipp_through_stunnel_over_mutual_tls(
    pki: Pki, tmp_path: Path, with_auth: bool
) -> None:
    admission = None
    if with_auth:  # SIPp 3.6 computes MD5 digests only
        authenticator = DigestAuthenticator("srs.example", {"sbc": "s3cret"}, algorithms=["MD5"])
        admission = Admission(authenticator=authenticator)
    app = App(admission, guard=GUARD)
    await app.start(server_tls_context(pki.server.cert, pki.server.key, client_ca=pki.ca.cert))
    stunnel, accept = await start_stunnel(
        tmp_path, pki.ca.cert, pki.client, app.server.tls_port, guard=GUARD
    )
    try:
        if with_auth:
            await run_sipp("sipp_auth_call.xml", accept, tmp_path, "-au", "sbc", "-ap", "s3cret")
        else:
            await run_sipp("sipp_call.xml", accept, tmp_path)
        invite = await app.wait_for(InviteReceived)
        await app.wait_for(ByeReceived)
    finally:
        stunnel.terminate()
        await stunnel.wait()
        await app.server.close()
    assert isinstance(invite, InviteReceived) and invite.source.transport == "tls"
    refused = [e for e in app.events if isinstance(e, RequestRefused)]
    if with_auth:
        assert [r.refusal.status for r in refused] == [401]
        assert (invite.request.headers.get("Authorization") or "").startswith("Digest")
    else:
        assert refused == []
