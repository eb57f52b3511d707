"""SipServer over real UDP and TCP sockets on 127.0.0.1 (INVITE / ACK / BYE exchanges)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from testkit.sip_app import SDP
from testkit.sip_app import SipApp as App

from siprec_bridge.sip.events import (
    AckReceived,
    ByeReceived,
    ByeResult,
    DialogTerminated,
)
from siprec_bridge.sip.message import (
    KEEPALIVE_PING,
    KEEPALIVE_PONG,
    SipRequest,
    SipResponse,
    StreamFramer,
    build_response,
    parse_message,
)

# Real sockets on 127.0.0.1: the integration marker also runs these on uvloop (conftest).
pytestmark = pytest.mark.integration

GUARD = 5.0  # seconds; only a guard against hangs, nothing is timed


def request(
    method: str,
    transport: str,
    port: int,
    cseq: int,
    branch: str,
    to_tag: str | None = None,
    body: bytes = b"",
    call_id: str = "t-1",
) -> bytes:
    to = "<sip:srs@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    head = (
        f"{method} sip:srs@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{port};branch={branch};rport\r\n"
        f"From: <sip:src@127.0.0.1>;tag=src1\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\nContact: <sip:src@127.0.0.1:{port}>;+sip.src\r\n"
        "Max-Forwards: 70\r\n"
        + ("Content-Type: application/sdp\r\n" if body else "")
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@pytest.fixture
async def app() -> AsyncIterator[App]:
    application = App(guard=GUARD)
    await application.start()
    yield application
    await application.server.close()


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.queue.put_nowait(data)

    async def next(self) -> SipRequest | SipResponse:
        return parse_message(await asyncio.wait_for(self.queue.get(), GUARD))


async def test_server_binds_udp_and_tcp_on_one_port(app: App) -> None:
    assert app.server.port > 0
    reader, writer = await asyncio.open_connection("127.0.0.1", app.server.port)
    writer.write(KEEPALIVE_PING)  # RFC 5626 §3.5.1 ping → pong
    assert await asyncio.wait_for(reader.readexactly(2), GUARD) == KEEPALIVE_PONG
    writer.close()
    await writer.wait_closed()


async def test_invite_ack_bye_over_udp(app: App) -> None:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(UdpClient, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        transport.sendto(
            request("INVITE", "UDP", port, 1, "z9hG4bKu1", body=SDP), ("127.0.0.1", app.server.port)
        )
        trying = await client.next()
        ok = await client.next()
        assert isinstance(trying, SipResponse) and trying.status == 100
        assert isinstance(ok, SipResponse) and ok.status == 200 and ok.body == SDP
        assert ok.top_via.rport == port
        tag = ok.to_tag
        assert tag is not None
        transport.sendto(
            request("ACK", "UDP", port, 1, "z9hG4bKu2", to_tag=tag), ("127.0.0.1", app.server.port)
        )
        ack = await app.wait_for(AckReceived)
        assert isinstance(ack, AckReceived) and ack.dialog_id.local_tag == tag
        transport.sendto(
            request("BYE", "UDP", port, 2, "z9hG4bKu3", to_tag=tag), ("127.0.0.1", app.server.port)
        )
        bye_ok = await client.next()
        assert isinstance(bye_ok, SipResponse) and (bye_ok.status, bye_ok.cseq[1]) == (200, "BYE")
        terminated = await app.wait_for(DialogTerminated)
        assert terminated == DialogTerminated(ack.dialog_id, "bye")
        assert any(isinstance(e, ByeReceived) for e in app.events)
    finally:
        transport.close()


async def read_message(
    reader: asyncio.StreamReader, framer: StreamFramer, backlog: list[bytes]
) -> SipRequest | SipResponse:
    while not backlog:
        data = await asyncio.wait_for(reader.read(4096), GUARD)
        assert data, "connection closed"
        backlog.extend(framer.feed(data))
    return parse_message(backlog.pop(0))


async def test_invite_ack_and_our_bye_over_tcp(app: App) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", app.server.port)
    port = writer.get_extra_info("sockname")[1]
    framer = StreamFramer()
    backlog: list[bytes] = []
    try:
        invite = request("INVITE", "TCP", port, 1, "z9hG4bKt1", body=SDP, call_id="t-2")
        writer.write(invite[:50])  # split across segments
        await writer.drain()
        writer.write(invite[50:] + request("OPTIONS", "TCP", port, 1, "z9hG4bKt0"))
        statuses = [(await read_message(reader, framer, backlog)) for _ in range(3)]
        by_method = {
            m.cseq[1]: m for m in statuses if isinstance(m, SipResponse) and m.status > 100
        }
        ok = by_method["INVITE"]
        assert isinstance(ok, SipResponse) and ok.status == 200
        assert ok.headers.get("Contact") == f"<sip:127.0.0.1:{app.server.port};transport=tcp>"
        assert by_method["OPTIONS"].status == 200
        tag = ok.to_tag
        assert tag is not None
        writer.write(request("ACK", "TCP", port, 1, "z9hG4bKt2", to_tag=tag, call_id="t-2"))
        ack = await app.wait_for(AckReceived)
        assert isinstance(ack, AckReceived)

        # The application hangs up outside the callback, then flushes.
        app.ua.send_bye(ack.dialog_id, app.server.now())
        app.server.flush()
        bye = await read_message(reader, framer, backlog)
        assert isinstance(bye, SipRequest) and bye.method == "BYE"
        assert bye.uri == f"sip:src@127.0.0.1:{port}"
        writer.write(build_response(bye, 200).to_bytes())
        result = await app.wait_for(ByeResult)
        assert result == ByeResult(ack.dialog_id, 200, result.response)  # type: ignore[attr-defined]
        assert await app.wait_for(DialogTerminated) == DialogTerminated(ack.dialog_id, "bye-sent")
    finally:
        writer.close()
        await writer.wait_closed()


async def test_tcp_framing_error_closes_connection(app: App) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", app.server.port)
    writer.write(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: many\r\n\r\n")
    assert await asyncio.wait_for(reader.read(), GUARD) == b""  # closed by the server
    writer.close()
    await writer.wait_closed()
    # the listener is still serving
    reader2, writer2 = await asyncio.open_connection("127.0.0.1", app.server.port)
    writer2.write(KEEPALIVE_PING)
    assert await asyncio.wait_for(reader2.readexactly(2), GUARD) == KEEPALIVE_PONG
    writer2.close()
    await writer2.wait_closed()
