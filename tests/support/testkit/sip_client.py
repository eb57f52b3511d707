"""A bare UDP SIP client for end-to-end tests: raw requests out, parsed responses in."""

from __future__ import annotations

import asyncio

from siprec_bridge.sip.message import SipResponse, parse_message


class SipClient(asyncio.DatagramProtocol):
    """Sends raw bytes (connect it to the bridge with ``remote_addr``), collects responses."""

    def __init__(self) -> None:
        self.responses: asyncio.Queue[SipResponse] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse_message(data)
        if isinstance(message, SipResponse):
            self.responses.put_nowait(message)

    @property
    def local_port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data)

    async def final(self, call_id: str, timeout: float = 3.0) -> SipResponse:
        """The final response for ``call_id``; a non-2xx one is ACKed (RFC 3261 §17.1.1.3)."""
        while True:
            response = await asyncio.wait_for(self.responses.get(), timeout)
            if response.status < 200 or response.call_id != call_id:
                continue  # provisional, or a retransmission for an earlier request
            if response.status >= 300:
                self.send(ack_for(response))
            return response


def ack_for(response: SipResponse) -> bytes:
    """ACK for a non-2xx final response: same Via branch, To with the response's tag."""
    h = response.headers
    return (
        f"ACK sip:srs@127.0.0.1 SIP/2.0\r\nVia: {h.get('Via')}\r\nFrom: {h.get('From')}\r\n"
        f"To: {h.get('To')}\r\nCall-ID: {response.call_id}\r\n"
        f"CSeq: {response.cseq[0]} ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def render(template: str, port: int, call_id: str, rtp_port: int = 9) -> bytes:
    """Fill a vector file: CRLF line ends and a correct Content-Length for the body."""
    text = template.replace("{port}", str(port)).replace("{call_id}", call_id)
    text = text.replace("{rtp_port}", str(rtp_port))
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    raw_body = body.replace("\n", "\r\n").encode()
    head = head.replace("{length}", str(len(raw_body)))
    return head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + raw_body


def in_dialog(
    method: str,
    cseq: int,
    *,
    port: int,
    local_port: int,
    to: str,
    call_id: str,
    body: bytes = b"",
    content_type: str | None = None,
) -> bytes:
    """A request of the SRC (From tag ``src1``) in an established dialog."""
    head = (
        f"{method} sip:srs@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};rport;branch=z9hG4bK{method.lower()}{cseq}\r\n"
        f"From: <sip:src@127.0.0.1>;tag=src1\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
    )
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
