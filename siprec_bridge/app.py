"""The bridge process: asyncio adapters around the sans-I/O SRS core.

:class:`Bridge` owns the SIP server, the RTP socket pool, the media ticker and one
:class:`~siprec_bridge.call.RecordingCall` per recording session. SIP events go through
:class:`~siprec_bridge.srs.SessionRecordingServer`, which answers them and reports session
events; this module turns those into media: legs bound to RTP sockets and consumer outputs.
RTP sockets are bound before the answer goes out, so no early packet is lost.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rtp.leg import Leg, Timeline
from rtp.ports import PortAllocator
from ws_out.native import NativeEncoder, Participant, StopReason, select_sip_headers
from ws_out.sender import WsSender

from .call import LegInfo, Output, RecordingCall, Sink
from .config import BridgeConfig
from .media import MediaTicker, RtpProtocol, open_rtp_sockets
from .sip.events import Event
from .sip.transport import SipServer
from .sip.ua import DialogId, UserAgent
from .srs import (
    RecordedLeg,
    RecordingSession,
    SessionEnded,
    SessionRecordingServer,
    SessionStarted,
    SessionUpdated,
    SrsEvent,
)

log = logging.getLogger(__name__)


class SenderLike(Sink, Protocol):
    """What the bridge needs of an output connection (``ws_out.sender.WsSender``)."""

    def start(self) -> None: ...
    async def close(self, timeout: float = 5.0) -> None: ...


SinkFactory = Callable[[str, str], SenderLike]

#: How long a call keeps receiving after it ended, beyond the jitter buffer's delay.
LINGER_MARGIN_MS = 150


class RtpSocketPool:
    """RTP sockets from the port range (the SRS core's :class:`~siprec_bridge.srs.PortBinder`).

    Sockets are bound synchronously when an offer is answered; the asyncio datagram endpoint
    that feeds a leg is attached afterwards (packets that arrive meanwhile wait in the kernel).
    """

    def __init__(self, host: str, low: int, high: int, *, linger: float = 0.0) -> None:
        self.host = host
        self.linger = linger
        self._allocator = PortAllocator(low, high)
        self._sockets: dict[int, socket.socket] = {}
        self._transports: dict[int, asyncio.BaseTransport] = {}
        self._protocols: dict[int, RtpProtocol] = {}

    def bind(self, count: int) -> list[int]:
        socks = open_rtp_sockets(self._allocator, self.host, count)
        ports = [int(s.getsockname()[1]) for s in socks]
        self._sockets.update(zip(ports, socks, strict=True))
        return ports

    def release(self, ports: Sequence[int]) -> None:
        """Close ``ports`` after :attr:`linger` seconds: RTP still in flight when the SRC hangs
        up (or queued behind the BYE on another socket) still reaches its leg."""
        if self.linger > 0 and any(p in self._transports for p in ports):
            asyncio.get_running_loop().call_later(self.linger, self._close, list(ports))
        else:
            self._close(ports)

    def _close(self, ports: Sequence[int]) -> None:
        for port in ports:
            transport = self._transports.pop(port, None)
            self._protocols.pop(port, None)
            sock = self._sockets.pop(port, None)
            if transport is not None:
                transport.close()  # closes the socket too
            elif sock is not None:
                sock.close()
        self._allocator.release(list(ports))

    async def attach(self, port: int, leg: Leg, clock: Callable[[], float]) -> None:
        """Start feeding datagrams of ``port`` into ``leg`` (or re-point an attached port)."""
        protocol = self._protocols.get(port)
        if protocol is not None:
            protocol.leg = leg
            return
        sock = self._sockets.get(port)
        if sock is None:  # released while we were scheduled
            return
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: RtpProtocol(leg, clock), sock=sock
        )
        if port not in self._sockets:  # released during the await
            transport.close()
            return
        self._transports[port] = transport
        self._protocols[port] = protocol

    @property
    def in_use(self) -> int:
        return len(self._sockets)


@dataclass
class ActiveCall:
    """The media side of one session."""

    session: RecordingSession
    call: RecordingCall
    senders: list[SenderLike]


class Bridge:
    """SIPREC Session Recording Server (RFC 7866) streaming audio to WebSocket consumers."""

    def __init__(self, config: BridgeConfig, *, sink_factory: SinkFactory | None = None) -> None:
        self.config = config
        self._sink_factory = sink_factory or self._ws_sender
        self.linger = (config.target_delay_ms + LINGER_MARGIN_MS) / 1000
        self.pool = RtpSocketPool(
            config.media_host, config.rtp_low, config.rtp_high, linger=self.linger
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sip: SipServer | None = None
        self._srs: SessionRecordingServer | None = None
        self._ticker: MediaTicker | None = None
        self.calls: dict[DialogId, ActiveCall] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls_total = 0
        self.calls_rejected = 0
        self._stopping = False

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
        self._srs = SessionRecordingServer(
            ua, self.pool, media_host=self.config.media_host, max_calls=self.config.max_calls
        )
        self._sip = SipServer(ua, self.on_sip_events, clock=clock)
        await self._sip.start(
            self.config.sip_host,
            self.config.sip_port,
            udp=self.config.sip_udp,
            tcp=self.config.sip_tcp,
        )
        ua.local_port = self._sip.port  # port 0 binds an ephemeral port
        transports = [t for t, on in (("udp", self.config.sip_udp), ("tcp", self.config.sip_tcp))]
        log.info(
            "listening for SIP on %s:%d (%s), RTP %d-%d, streaming to %s (%s)",
            self.config.sip_host,
            self.sip_port,
            "/".join(t for t in transports if getattr(self.config, f"sip_{t}")),
            self.config.rtp_low,
            self.config.rtp_high,
            self.config.ws_url,
            self.config.mode,
        )

    @property
    def sip_port(self) -> int:
        assert self._sip is not None, "start() first"
        return self._sip.port

    @property
    def sessions(self) -> dict[DialogId, RecordingSession]:
        assert self._srs is not None, "start() first"
        return self._srs.sessions

    async def stop(self) -> None:
        """End every session (``stop`` reason ``shutdown``), flush outputs, close sockets."""
        assert self._srs is not None and self._sip is not None and self._ticker is not None
        self._srs.draining = True
        self._stopping = True
        self.pool.linger = 0.0
        self._apply(self._srs.end_all(self._now()))
        self._sip.flush()
        await asyncio.sleep(0.05)  # let BYEs deferred until an ACK leave before closing
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._ticker.stop()
        await self._sip.close()

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- SIP → SRS → media -----------------------------------------------------------------
    def on_sip_events(self, events: list[Event]) -> None:
        assert self._srs is not None
        try:
            srs_events = self._srs.handle(events, self._now())
        except Exception:  # a bug for one call must not take the service down
            log.exception("failed handling SIP events %s", [type(e).__name__ for e in events])
            return
        self._apply(srs_events)

    def _apply(self, events: Sequence[SrsEvent]) -> None:
        for event in events:
            try:
                if isinstance(event, SessionStarted):
                    self._started(event.session)
                elif isinstance(event, SessionUpdated):
                    self._updated(event)
                elif isinstance(event, SessionEnded):
                    self._ended(event.session, event.reason)
                else:
                    self.calls_rejected += 1
            except Exception:
                log.exception("failed applying %s", type(event).__name__)

    def _started(self, session: RecordingSession) -> None:
        self.calls_total += 1
        senders: list[SenderLike] = []
        call = self._build_call(session, senders)
        active = ActiveCall(session, call, senders)
        self.calls[session.dialog_id] = active
        self._spawn(self._attach(active, call.legs))

    def _updated(self, update: SessionUpdated) -> None:
        active = self.calls.get(update.session.dialog_id)
        if active is None:
            return
        call = active.call
        for leg in update.changed:  # new codec or source: a fresh Leg on the same timeline
            info = call.leg_for(leg.key)
            if info is not None:
                info.leg = self._new_leg(call.timeline, leg, call.sample_rate)
                info.codec = leg.codec
                self._spawn(self._attach(active, [info]))
        for leg in update.removed:
            call.remove_leg(leg.key)
        added = [self._leg_info(call, leg, channel=-1) for leg in update.added]
        for info in call.add_legs(added):
            self._spawn(self._attach(active, [info]))
        log.info(
            "call %s session %s: updated (+%d -%d ~%d, paused %s, resumed %s%s)",
            update.session.call_id,
            update.session.session_id,
            len(update.added),
            len(update.removed),
            len(update.changed),
            [leg.label for leg in update.paused],
            [leg.label for leg in update.resumed],
            ", participants changed" if update.participants_changed else "",
        )

    def _ended(self, session: RecordingSession, reason: str) -> None:
        """Keep receiving for :attr:`linger` seconds, then flush and stop the outputs."""
        active = self.calls.pop(session.dialog_id, None)
        if active is None:
            return
        assert self._loop is not None
        active.call.ending = True
        if self.linger > 0 and not self._stopping:
            self._loop.call_later(self.linger, self._finish, active, reason)
        else:
            self._finish(active, reason)

    def _finish(self, active: ActiveCall, reason: str) -> None:
        assert self._ticker is not None
        session = active.session
        self._ticker.remove(active.call)
        active.call.finish(_stop_reason(reason))
        log.info(
            "call %s session %s: ended (%s) after %d frames",
            session.call_id,
            session.session_id,
            reason,
            active.call.frames_sent,
        )
        self._spawn(self._close_senders(active))

    # -- media construction ----------------------------------------------------------------
    def _new_leg(self, timeline: Timeline, leg: RecordedLeg, out_rate: int) -> Leg:
        stream = leg.stream
        assert stream.codec is not None
        host = stream.remote_address
        return Leg(
            timeline,
            payload_types={stream.codec.payload_type: stream.codec.encoding},
            out_rate=out_rate,
            dtmf_payload_type=stream.dtmf_payload_type,
            cn_payload_types=stream.cn_payload_types,
            target_delay_ms=self.config.target_delay_ms,
            expected_host=None if host in (None, "0.0.0.0", "::") else host,
        )

    def _leg_info(self, call: RecordingCall, leg: RecordedLeg, channel: int) -> LegInfo:
        return LegInfo(
            key=leg.key,
            index=leg.index,
            label=leg.label,
            participant_id=leg.participant_id,
            channel=channel,
            port=leg.port,
            codec=leg.codec,
            leg=self._new_leg(call.timeline, leg, call.sample_rate),
        )

    def _output(
        self, name: str, session_id: str, legs: list[LegInfo], senders: list[SenderLike]
    ) -> Output:
        sink = self._sink_factory(self.config.ws_url, name)
        sink.start()
        senders.append(sink)
        return Output(sink=sink, encoder=NativeEncoder(session_id), legs=legs)

    def _build_call(self, session: RecordingSession, senders: list[SenderLike]) -> RecordingCall:
        recorded = list(session.legs.values())
        out_rate = 16000 if any(leg.codec == "G722" for leg in recorded) else 8000
        timeline = Timeline(frame_ms=self.config.frame_ms)
        legs: list[LegInfo] = []
        for channel, leg in enumerate(recorded):
            legs.append(
                LegInfo(
                    key=leg.key,
                    index=leg.index,
                    label=leg.label,
                    participant_id=leg.participant_id,
                    channel=channel,
                    port=leg.port,
                    codec=leg.codec,
                    leg=self._new_leg(timeline, leg, out_rate),
                )
            )
        request = session.request
        start_fields: dict[str, Any] = {
            "call_id": session.call_id,
            "participants": [
                Participant(p.participant_id, p.aor, p.name) for p in session.participants
            ],
            "mode": self.config.mode,
            "metadata_problems": session.problems,
            "sip": select_sip_headers(request.headers.items(), request_uri=request.uri),
            "started_at": time.time(),
        }
        per_leg = self.config.mode == "per-leg"

        def leg_output(info: LegInfo) -> Output:
            name = f"{session.call_id}/{info.label}"
            return self._output(name, session.session_id, [info], senders)

        if per_leg:
            outputs = [leg_output(info) for info in legs]
        else:
            outputs = [self._output(session.call_id, session.session_id, legs, senders)]
        log.info(
            "call %s session %s: %d leg(s) %s, metadata problems: %s",
            session.call_id,
            session.session_id,
            len(legs),
            ", ".join(f"{i.label}:{i.codec}@{i.port}" for i in legs),
            session.problems or "none",
        )
        return RecordingCall(
            session_id=session.session_id,
            call_id=session.call_id,
            timeline=timeline,
            legs=legs,
            outputs=outputs,
            sample_rate=out_rate,
            start_fields=start_fields,
            new_output=leg_output if per_leg else None,
        )

    def _ws_sender(self, url: str, name: str) -> SenderLike:
        return WsSender(
            url,
            headers=self.config.ws_headers or None,
            max_queue=self.config.ws_queue_frames,
            name=name,
        )

    async def _attach(self, active: ActiveCall, legs: Sequence[LegInfo]) -> None:
        """Point the RTP sockets at their legs and put the call on the ticker."""
        assert self._loop is not None and self._ticker is not None
        for info in legs:
            await self.pool.attach(info.port, info.leg, self._loop.time)
        if active.session.dialog_id in self.calls:
            self._ticker.add(active.call)

    @staticmethod
    async def _close_senders(active: ActiveCall) -> None:
        await asyncio.gather(*(s.close() for s in active.senders), return_exceptions=True)


def _stop_reason(reason: str) -> StopReason:
    allowed: dict[str, StopReason] = {
        "bye": "bye",
        "cancel": "cancel",
        "timeout": "timeout",
        "shutdown": "shutdown",
    }
    return allowed.get(reason, "error")
