"""The Session Recording Server: composes SIP, SIPREC, SDP, RTP and WebSocket output.

:class:`Bridge` owns the SIP server, the RTP port pool, the media ticker and the active
recording sessions. SIP events are handled synchronously (``on_events``), so an INVITE is
answered in the same loop iteration it arrived in; RTP sockets are bound before the 200 OK goes
out, so no early packet is lost.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import sdp
from rtp.leg import Leg, Timeline
from rtp.ports import PortAllocator, PortsExhausted
from sdp.answer import NegotiatedStream, acceptable, build_answer
from ws_out.native import NativeEncoder, Participant, StopReason, select_sip_headers
from ws_out.sender import WsSender

from .call import LegInfo, Output, RecordingCall, Sink
from .config import BridgeConfig
from .media import MediaTicker, RtpProtocol, open_rtp_sockets, release_sockets
from .sip.errors import LocalProtocolError
from .sip.message import SipRequest, warning_header
from .sip.transport import SipServer
from .sip.ua import (
    ByeReceived,
    DialogId,
    DialogTerminated,
    Event,
    IncomingRequest,
    InviteReceived,
    MalformedMessage,
    UpdateReceived,
    UserAgent,
)
from .siprec.metadata import MetadataError, RecordingMetadata, parse_metadata
from .siprec.multipart import BodyError, RecordingBody, extract_recording_body
from .siprec.session import RecordingView, join

log = logging.getLogger(__name__)

SinkFactory = Callable[[str, str], "SenderLike"]


class SenderLike(Sink, Protocol):
    """What the bridge needs of an output connection (``ws_out.sender.WsSender``)."""

    def start(self) -> None: ...
    async def close(self, timeout: float = 5.0) -> None: ...


class Reject(Exception):
    """An INVITE we refuse: carries the SIP status and the Warning text (RFC 3261 §20.43)."""

    def __init__(self, status: int, warning: str, *, retry_after: int | None = None) -> None:
        super().__init__(warning)
        self.status = status
        self.warning = warning
        self.retry_after = retry_after


@dataclass
class Session:
    """Everything the bridge holds for one recording session (one SIP dialog)."""

    dialog_id: DialogId
    call: RecordingCall
    sockets: list[socket.socket]
    transports: list[asyncio.BaseTransport] = field(default_factory=list)
    senders: list[SenderLike] = field(default_factory=list)
    offer: sdp.SessionDescription | None = None
    negotiated: list[NegotiatedStream] = field(default_factory=list)
    sdp_version: int = 0
    sdp_session_id: int = 0


class Bridge:
    """SIPREC SRS (RFC 7866 §5 to §8) streaming recorded audio to WebSocket consumers."""

    def __init__(
        self,
        config: BridgeConfig,
        *,
        sink_factory: SinkFactory | None = None,
    ) -> None:
        self.config = config
        self._sink_factory = sink_factory or self._ws_sender
        self._allocator = PortAllocator(config.rtp_low, config.rtp_high)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sip: SipServer | None = None
        self._ticker: MediaTicker | None = None
        self.sessions: dict[DialogId, Session] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.calls_total = 0
        self.calls_rejected = 0
        self.draining = False

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        clock = self._loop.time
        self._ticker = MediaTicker(self.config.frame_ms / 1000, clock)
        self._ticker.start()
        ua = UserAgent(
            local_host=self.config.media_host,
            local_port=self.config.sip_port,
            user_agent=self.config.user_agent,
        )
        self._sip = SipServer(ua, self.on_events, clock=clock)
        await self._sip.start(
            self.config.sip_host,
            self.config.sip_port,
            udp=self.config.sip_udp,
            tcp=self.config.sip_tcp,
        )
        ua.local_port = self._sip.port  # port 0 binds an ephemeral port
        log.info(
            "listening for SIP on %s:%d (%s), RTP %d-%d, streaming to %s (%s)",
            self.config.sip_host,
            self.sip_port,
            "/".join(
                t for t, on in (("udp", self.config.sip_udp), ("tcp", self.config.sip_tcp)) if on
            ),
            self.config.rtp_low,
            self.config.rtp_high,
            self.config.ws_url,
            self.config.mode,
        )

    @property
    def sip_port(self) -> int:
        assert self._sip is not None, "start() first"
        return self._sip.port

    async def stop(self) -> None:
        """End every session (``stop`` reason ``shutdown``), flush outputs, close sockets."""
        self.draining = True
        for dialog_id in list(self.sessions):
            if self._sip is not None:
                try:
                    self._sip.ua.send_bye(dialog_id, self._now())
                except LocalProtocolError as exc:  # already terminating
                    log.debug("no BYE for %s: %s", dialog_id, exc)
            self._end(dialog_id, "shutdown")
        if self._sip is not None:
            self._sip.flush()
            await asyncio.sleep(0.05)  # let BYEs deferred until an ACK leave before closing
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self._ticker is not None:
            self._ticker.stop()
        if self._sip is not None:
            await self._sip.close()

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # -- SIP events ------------------------------------------------------------------------
    def on_events(self, events: Sequence[Event]) -> None:
        for event in events:
            try:
                self._dispatch(event)
            except Exception:  # a bug for one call must not take the service down
                log.exception("failed handling %s", type(event).__name__)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, InviteReceived):
            if event.is_reinvite:
                self._on_reoffer(event)
            else:
                self._on_invite(event)
        elif isinstance(event, UpdateReceived):
            self._on_reoffer(event)
        elif isinstance(event, ByeReceived):
            self._end(event.dialog_id, "bye")
        elif isinstance(event, DialogTerminated):
            self._end(event.dialog_id, _reason(event.reason))
        elif isinstance(event, MalformedMessage):
            log.warning("malformed SIP from %s: %s", event.source.addr, event.error)

    def _respond(self, event: IncomingRequest, status: int, **kwargs: Any) -> None:
        assert self._sip is not None
        try:
            self._sip.ua.respond(event, status, **kwargs)
        except LocalProtocolError as exc:  # answered meanwhile by the UA (CANCEL, BYE, timeout)
            log.info("call %s: %d not sent: %s", event.request.call_id, status, exc)

    def _reject(self, event: IncomingRequest, reject: Reject) -> None:
        headers = [("Warning", warning_header(reject.warning, self.config.media_host))]
        if reject.retry_after is not None:
            headers.append(("Retry-After", str(reject.retry_after)))
        log.info("call %s: rejected %d %s", event.request.call_id, reject.status, reject.warning)
        self.calls_rejected += 1
        self._respond(event, reject.status, headers=headers)

    def _on_invite(self, event: InviteReceived) -> None:
        try:
            session, answer = self._setup(event)
        except Reject as reject:
            self._reject(event, reject)
            return
        self.sessions[event.dialog_id] = session
        self.calls_total += 1
        self._respond(event, 200, body=answer, content_type="application/sdp")
        assert self._loop is not None
        task = self._loop.create_task(self._attach(session))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _setup(self, event: InviteReceived) -> tuple[Session, bytes]:
        """Validate the offer (pjsip ``sip_siprec.c`` order), bind RTP, build call and answer."""
        if self.draining:
            raise Reject(503, "service is draining", retry_after=30)
        if len(self.sessions) >= self.config.max_calls:
            raise Reject(503, "too many calls", retry_after=5)
        request = event.request
        body, offer = _offer_of(request)
        if offer is None:
            raise Reject(488, "INVITE without SDP offer (delayed offer) is not supported")
        metadata, problems = _metadata_of(body)
        view = join(offer, metadata)
        problems.extend(view.problems)
        usable = acceptable(offer)
        if not any(usable):
            raise Reject(488, "no acceptable audio stream (PCMU, PCMA or G722 over RTP/AVP)")
        try:
            socks = open_rtp_sockets(self._allocator, self.config.media_host, sum(usable))
        except PortsExhausted:
            raise Reject(503, "RTP port range exhausted", retry_after=5) from None
        ports_iter = iter(s.getsockname()[1] for s in socks)
        ports = [next(ports_iter) if ok else 0 for ok in usable]
        sdp_session_id = random.getrandbits(48)
        answer, negotiated = build_answer(
            offer,
            local_address=self.config.media_host,
            ports=ports,
            session_id=sdp_session_id,
            session_version=1,
            fallback_address=event.source.addr[0],
        )
        call = self._build_call(request, negotiated, view, metadata, problems)
        session = Session(
            dialog_id=event.dialog_id,
            call=call,
            sockets=socks,
            offer=offer,
            negotiated=negotiated,
            sdp_version=1,
            sdp_session_id=sdp_session_id,
        )
        session.senders = [out.sink for out in call.outputs]  # type: ignore[misc]
        return session, sdp.serialize(answer)

    def _build_call(
        self,
        request: SipRequest,
        negotiated: list[NegotiatedStream],
        view: RecordingView,
        metadata: RecordingMetadata | None,
        problems: list[str],
    ) -> RecordingCall:
        accepted = [n for n in negotiated if n.accepted and n.codec is not None]
        out_rate = 16000 if any(n.codec and n.codec.encoding == "G722" for n in accepted) else 8000
        timeline = Timeline(frame_ms=self.config.frame_ms)
        senders = {s.index: s.participant_id for s in view.streams}
        legs: list[LegInfo] = []
        for channel, n in enumerate(accepted):
            assert n.codec is not None
            host = n.remote_address if n.remote_address not in (None, "0.0.0.0", "::") else None
            leg = Leg(
                timeline,
                payload_types={n.codec.payload_type: n.codec.encoding},
                out_rate=out_rate,
                dtmf_payload_type=n.dtmf_payload_type,
                cn_payload_types=n.cn_payload_types,
                target_delay_ms=self.config.target_delay_ms,
                expected_host=host,
            )
            legs.append(
                LegInfo(
                    index=n.index,
                    label=n.label if n.label is not None else str(n.index),
                    participant_id=senders.get(n.index),
                    channel=channel,
                    port=n.local_port,
                    codec=n.codec.encoding,
                    leg=leg,
                )
            )
        session_id = str(uuid.uuid4())
        participants = [Participant(p.participant_id, p.aor, p.name) for p in view.participants]
        start_fields: dict[str, Any] = {
            "call_id": request.call_id,
            "participants": participants,
            "mode": self.config.mode,
            "metadata_problems": problems,
            "sip": select_sip_headers(request.headers.items(), request_uri=request.uri),
            "started_at": time.time(),
        }
        groups = [legs] if self.config.mode == "stereo" else [[leg] for leg in legs]
        outputs = []
        for group in groups:
            name = request.call_id if len(groups) == 1 else f"{request.call_id}/{group[0].label}"
            sink = self._sink_factory(self.config.ws_url, name)
            sink.start()
            outputs.append(Output(sink=sink, encoder=NativeEncoder(session_id), legs=group))
        log.info(
            "call %s session %s: %d leg(s) %s, metadata problems: %s",
            request.call_id,
            session_id,
            len(legs),
            ", ".join(f"{i.label}:{i.codec}@{i.port}" for i in legs),
            problems or "none",
        )
        return RecordingCall(
            session_id=session_id,
            call_id=request.call_id,
            timeline=timeline,
            legs=legs,
            outputs=outputs,
            sample_rate=out_rate,
            start_fields=start_fields,
        )

    def _ws_sender(self, url: str, name: str) -> SenderLike:
        return WsSender(
            url,
            headers=self.config.ws_headers or None,
            max_queue=self.config.ws_queue_frames,
            name=name,
        )

    async def _attach(self, session: Session) -> None:
        """Hand the bound RTP sockets to the event loop and put the call on the ticker."""
        assert self._loop is not None and self._ticker is not None
        clock = self._loop.time
        by_port = {s.getsockname()[1]: s for s in session.sockets}
        for info in session.call.legs:
            transport, _ = await self._loop.create_datagram_endpoint(
                lambda info=info: RtpProtocol(info.leg, clock),  # type: ignore[misc]
                sock=by_port[info.port],
            )
            session.transports.append(transport)
        if session.dialog_id in self.sessions:
            self._ticker.add(session.call)
        else:  # ended while attaching
            self._close_transports(session)

    def _on_reoffer(self, event: IncomingRequest) -> None:
        """re-INVITE / UPDATE (RFC 3261 §14, RFC 3311): answer with SDP, keep ports by m-line."""
        session = self.sessions.get(event.dialog_id)
        if session is None:
            self._respond(event, 481)
            return
        try:
            _, offer = _offer_of(event.request)
        except Reject as reject:
            self._reject(event, reject)
            return
        if offer is None:
            if isinstance(event, InviteReceived) and session.offer is not None:
                offer = session.offer  # offer-less re-INVITE: we offer what we answered before
            else:
                self._respond(event, 200)  # e.g. metadata-only UPDATE
                return
        ports_by_index = {n.index: n.local_port for n in session.negotiated if n.accepted}
        ports = [ports_by_index.get(i, 0) for i in range(len(offer.media))]
        session.sdp_version += 1
        answer, negotiated = build_answer(
            offer,
            local_address=self.config.media_host,
            ports=ports,
            session_id=session.sdp_session_id,
            session_version=session.sdp_version,
            fallback_address=event.source.addr[0],
        )
        session.offer, session.negotiated = offer, negotiated
        self._respond(event, 200, body=sdp.serialize(answer), content_type="application/sdp")

    def _end(self, dialog_id: DialogId, reason: StopReason) -> None:
        session = self.sessions.pop(dialog_id, None)
        if session is None:
            return
        assert self._ticker is not None and self._loop is not None
        self._ticker.remove(session.call)
        session.call.finish(reason)
        self._close_transports(session)
        log.info(
            "call %s session %s: ended (%s) after %d frames",
            session.call.call_id,
            session.call.session_id,
            reason,
            session.call.frames_sent,
        )
        task = self._loop.create_task(self._close_senders(session))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _close_transports(self, session: Session) -> None:
        for transport in session.transports:
            transport.close()
        session.transports.clear()
        release_sockets(self._allocator, session.sockets)
        session.sockets = []

    @staticmethod
    async def _close_senders(session: Session) -> None:
        await asyncio.gather(*(s.close() for s in session.senders), return_exceptions=True)


def _offer_of(request: SipRequest) -> tuple[RecordingBody, sdp.SessionDescription | None]:
    try:
        body = extract_recording_body(request.headers.get("Content-Type"), request.body)
    except BodyError as exc:
        raise Reject(400, f"bad body: {exc}") from None
    if body.sdp is None:
        return body, None
    try:
        return body, sdp.parse(body.sdp)
    except sdp.SdpError as exc:
        raise Reject(400, f"bad SDP: {exc}") from None


def _metadata_of(body: RecordingBody) -> tuple[RecordingMetadata | None, list[str]]:
    """RFC 7866 §9: metadata is advisory. Bad metadata is reported, never fatal."""
    problems = list(body.problems)
    if body.metadata is None:
        problems.append("no recording metadata in the INVITE")
        return None, problems
    try:
        return parse_metadata(body.metadata), problems
    except MetadataError as exc:
        problems.append(f"unparseable metadata: {exc}")
        return None, problems


#: ``DialogTerminated.reason`` of the UA → ``stop.reason`` of the native protocol.
_STOP_REASONS: dict[str, StopReason] = {
    "bye": "bye",
    "bye-sent": "shutdown",
    "cancelled": "cancel",
    "ack-timeout": "timeout",
    "session-timeout": "timeout",
}


def _reason(ua_reason: str) -> StopReason:
    return _STOP_REASONS.get(ua_reason, "error")

