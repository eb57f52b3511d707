"""The bridge process: asyncio adapters around the sans-I/O SRS core.

:class:`Bridge` owns the SIP server (UDP, TCP, TLS), the admission screen, the RTP socket
pool, the media ticker, the operations endpoint and one
:class:`~siprec_bridge.call.RecordingCall` per recording session. SIP events go through
:class:`~siprec_bridge.srs.SessionRecordingServer`, which answers them and reports session
events; this module turns those into media: legs bound to RTP sockets and consumer outputs.
RTP sockets are bound before the answer goes out, so no early packet is lost.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rtp.leg import Leg, Timeline
from rtp.srtp import SUPPORTED_SUITES, SrtpReceiver
from ws_out.native import (
    Participant,
    StopReason,
    StreamStats,
)
from ws_out.sender import WsSender

from .admission import Admission, admission_from_settings
from .call import Connection, LegInfo, RecordingCall
from .logs import call_context
from .media import MediaTicker, RtpSocketPool
from .metrics import Endpoints, HttpServer, Metrics
from .outputs import OutputFactory, check_targets
from .routing import route_call
from .settings import ResolvedTarget, Settings, split_host_port
from .sip.events import Event, MalformedMessage
from .sip.transport import SipServer
from .sip.ua import DialogId, UserAgent
from .srs import (
    RecordedLeg,
    RecordingSession,
    SessionEnded,
    SessionRecordingServer,
    SessionRejected,
    SessionStarted,
    SessionUpdated,
    SrsEvent,
)
from .watchdog import LegSample, MediaWatchdog

log = logging.getLogger(__name__)

#: How long a call keeps receiving after it ended, beyond the jitter buffer's delay.
LINGER_MARGIN_MS = 150
#: Seconds between two media watchdog checks.
WATCH_INTERVAL = 1.0


@dataclass
class ActiveCall:
    """The media side of one session."""

    session: RecordingSession
    call: RecordingCall

    @property
    def senders(self) -> list[WsSender]:
        return [conn.sink for conn in self.call.connections if isinstance(conn.sink, WsSender)]


class Bridge:
    """SIPREC Session Recording Server (RFC 7866) streaming audio to WebSocket consumers."""

    def __init__(self, settings: Settings) -> None:
        check_targets(settings)
        self.settings = settings
        self.outputs = OutputFactory(settings)
        low, high = settings.rtp_range
        self.linger = (settings.rtp.target_delay_ms + LINGER_MARGIN_MS) / 1000
        self.pool = RtpSocketPool(
            settings.rtp_bind_host,
            low,
            high,
            rtcp=settings.rtp.rtcp,
            linger=self.linger,
            cooldown=settings.rtp.port_cooldown_s,
        )
        self.admission: Admission = admission_from_settings(settings, lambda: len(self.calls))
        self.metrics = Metrics(
            active_calls=lambda: len(self.calls),
            draining=lambda: self.admission.draining,
            refusals=lambda: self.admission.counts,
        )
        self._http: HttpServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sip: SipServer | None = None
        self._srs: SessionRecordingServer | None = None
        self._ticker: MediaTicker | None = None
        self.calls: dict[DialogId, ActiveCall] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        media = settings.media
        self.watchdog = MediaWatchdog(
            timeout=media.timeout_s, hold_timeout=media.hold_timeout_s, stall=media.stall_s
        )
        self._watch: asyncio.TimerHandle | None = None
        # Ended calls still receiving (linger), finished when their timer fires or at stop().
        self._lingering: dict[DialogId, tuple[asyncio.TimerHandle, ActiveCall, str]] = {}

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self._loop = asyncio.get_running_loop()
        clock = self._loop.time
        self._ticker = MediaTicker(s.media.frame_ms / 1000, clock)
        self._ticker.start()
        ua = UserAgent(
            local_host=s.advertise_host,
            local_port=s.sip_port,
            user_agent=s.sip.user_agent,
            screen=self.admission.screen,
            max_message_size=s.sip.max_message_size,
        )
        self._srs = SessionRecordingServer(
            ua,
            self.pool,
            media_host=s.media_host,
            srtp=s.rtp.srtp,
            srtp_suites=SUPPORTED_SUITES,
            router=functools.partial(route_call, s),  # [[routes]]: targets and SRTP policy
        )
        self._watch = self._loop.call_later(WATCH_INTERVAL, self._check_media)
        self._sip = SipServer(ua, self.on_sip_events, clock=clock)
        await self._sip.start(s.sip_host, s.sip_port, udp=s.sip.udp, tcp=s.sip.tcp)
        ua.local_port = self._sip.port  # port 0 binds an ephemeral port
        context = s.tls_context()
        if context is not None:
            host, port = split_host_port(s.sip.tls.listen)
            await self._sip.start_tls(
                host, port, context, handshake_timeout=s.sip.tls.handshake_timeout_s
            )
        if s.metrics.enabled:
            self._http = HttpServer(
                Endpoints(self.metrics, ready=self.ready, calls=self.call_reports)
            )
            await self._http.start(*split_host_port(s.metrics.listen))
        target = s.default_target()
        log.info(
            "SIP on %s:%d%s%s, RTP %s, streaming to %s (%s)%s",
            s.sip_host,
            self.sip_port,
            "".join(f" {t}" for t, on in (("udp", s.sip.udp), ("tcp", s.sip.tcp)) if on),
            f" tls:{self._sip.tls_port}" if context is not None else "",
            s.rtp.ports,
            target.url,
            target.mode,
            f", metrics on {s.metrics.listen}" if self._http else "",
        )

    @property
    def sip_port(self) -> int:
        assert self._sip is not None, "start() first"
        return self._sip.port

    @property
    def sip_tls_port(self) -> int | None:
        assert self._sip is not None, "start() first"
        return self._sip.tls_port

    @property
    def http_port(self) -> int | None:
        return self._http.port if self._http is not None else None

    @property
    def sessions(self) -> dict[DialogId, RecordingSession]:
        assert self._srs is not None, "start() first"
        return self._srs.sessions

    def ready(self) -> bool:
        return self._srs is not None and not self.admission.draining

    async def drain(self, timeout: float) -> None:
        """Refuse new INVITEs and OPTIONS with 503 (so an SBC fails over), let running calls
        finish for up to ``timeout`` seconds, then end the rest with BYE and stop."""
        self.admission.draining = True
        log.info("draining: %d call(s) in progress, waiting up to %.0f s", len(self.calls), timeout)
        assert self._loop is not None
        deadline = self._loop.time() + timeout
        while (self.calls or self._lingering) and self._loop.time() < deadline:
            await asyncio.sleep(0.1)
        await self.stop()

    async def stop(self) -> None:
        """End every session (``stop`` reason ``shutdown``), flush outputs, close sockets."""
        assert self._srs is not None and self._sip is not None and self._ticker is not None
        self.admission.draining = True
        self._stopping = True
        self.pool.linger = self.pool.cooldown = 0.0
        self._apply(self._srs.end_all(self._now()))
        for handle, active, reason in list(self._lingering.values()):
            handle.cancel()  # the loop ends: finish now, or the consumer never gets `stop`
            self._finish(active, reason)
        self._sip.flush()
        await asyncio.sleep(0.05)  # let BYEs deferred until an ACK leave before closing
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._ticker.stop()
        if self._watch is not None:
            self._watch.cancel()
        await self._sip.close()
        if self._http is not None:
            await self._http.close()

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
        for event in events:
            if isinstance(event, MalformedMessage):
                self.metrics.sip_malformed()
            request = getattr(event, "request", None)
            call_id = request.call_id if request is not None else None
            with call_context(call_id):
                try:
                    srs_events = self._srs.handle([event], self._now())
                except Exception:  # a bug for one call must not take the service down
                    log.exception("failed handling %s", type(event).__name__)
                    continue
                self._apply(srs_events)

    def _apply(self, events: Sequence[SrsEvent]) -> None:
        for event in events:
            try:
                if isinstance(event, SessionRejected):
                    self.metrics.call_rejected(event.status)
                    continue
                with call_context(event.session.call_id, event.session.session_id):
                    if isinstance(event, SessionStarted):
                        self._started(event.session)
                    elif isinstance(event, SessionUpdated):
                        self._updated(event)
                    elif isinstance(event, SessionEnded):
                        self._ended(event.session, event.reason)
            except Exception:
                log.exception("failed applying %s", type(event).__name__)

    def _started(self, session: RecordingSession) -> None:
        call = self._build_call(session)
        active = ActiveCall(session, call)
        self.calls[session.dialog_id] = active
        self.metrics.track(legs=[info.leg for info in call.legs], senders=active.senders)
        self._spawn(self._attach(active, call.legs))

    def _updated(self, update: SessionUpdated) -> None:
        active = self.calls.get(update.session.dialog_id)
        if active is None:
            return
        call = active.call
        for leg in update.changed:  # new codecs: a fresh Leg (decoders) on the same timeline
            info = call.leg_for(leg.key)
            if info is not None:
                self.metrics.retire(legs=[info.leg])
                info.carried.append(info.leg.stats)
                info.leg = self._new_leg(call.timeline, leg, call.sample_rate)
                info.codec = leg.codec
                self.metrics.track(legs=[info.leg])
                self._spawn(self._attach(active, [info]))
        for leg in update.moved:  # same media from elsewhere, or a new SRTP key
            info = call.leg_for(leg.key)
            if info is not None:
                info.leg.relatch(self._expected_host(leg))
                info.leg.srtp = _srtp_receiver(leg)
        for leg in update.removed:
            call.remove_leg(leg.key)
        if update.paused:
            call.pause([leg.label for leg in update.paused])
        if update.resumed:
            call.pause([leg.label for leg in update.resumed], resumed=True)
        if update.participants_changed:
            session = update.session
            call.update(
                _participants(session),
                {key: leg.participant_id for key, leg in session.legs.items()},
                session.group_id,
            )
        added = [self._leg_info(call, leg, channel=-1) for leg in update.added]
        placed = call.add_legs(added)
        self.metrics.track(legs=[info.leg for info in placed], senders=active.senders)
        if placed:
            self._spawn(self._attach(active, placed))
        log.info(
            "updated (+%d -%d ~%d, paused %s, resumed %s%s)",
            len(update.added),
            len(update.removed),
            len(update.changed),
            [leg.label for leg in update.paused],
            [leg.label for leg in update.resumed],
            ", participants changed" if update.participants_changed else "",
        )

    def _check_media(self) -> None:
        """Once a second: dialect keep-alives, stalled streams reported, calls without media
        ended (RFC 3261 BYE)."""
        assert self._loop is not None and self._srs is not None and self._sip is not None
        now, wall = self._now(), time.time()
        for dialog_id, active in list(self.calls.items()):
            session, call = active.session, active.call
            call.keepalive(wall)
            samples = [
                LegSample(info.key, info.leg.stats.packets, _paused(session, info.key))
                for info in call.legs
                if not info.removed
            ]
            verdict = self.watchdog.observe(dialog_id, samples, now)
            with call_context(session.call_id, session.session_id):
                for key, silent in verdict.stalled:
                    info = call.leg_for(key)
                    if info is not None:
                        log.info("stream %s: no RTP for %.1f s", info.label, silent)
                        call.stall(info, int(silent * 1000))
                if verdict.timed_out:
                    log.info("no media for the media timeout: ending the call")
                    self._apply(self._srs.end_session(dialog_id, now, "timeout"))
        self._sip.flush()
        self._watch = self._loop.call_later(WATCH_INTERVAL, self._check_media)

    def _ended(self, session: RecordingSession, reason: str) -> None:
        """Keep receiving for :attr:`linger` seconds, then flush and stop the outputs."""
        active = self.calls.pop(session.dialog_id, None)
        if active is None:
            return
        assert self._loop is not None
        self.watchdog.forget(session.dialog_id)
        active.call.ending = True
        if self.linger > 0 and not self._stopping:
            handle = self._loop.call_later(self.linger, self._finish, active, reason)
            self._lingering[session.dialog_id] = (handle, active, reason)
        else:
            self._finish(active, reason)

    def _finish(self, active: ActiveCall, reason: str) -> None:
        assert self._ticker is not None
        session = active.session
        self._lingering.pop(session.dialog_id, None)
        self._ticker.remove(active.call)
        active.call.finish(_stop_reason(reason))
        self.metrics.retire(legs=[info.leg for info in active.call.legs])
        self.metrics.call_ended(reason)
        with call_context(session.call_id, session.session_id):
            log.info("ended (%s) after %d frames", reason, active.call.frames_sent)
        self._spawn(self._close_senders(active))

    def call_reports(self) -> list[dict[str, Any]]:
        """``/calls``: active calls with per-leg statistics."""
        return [
            {
                "call_id": a.session.call_id,
                "session_id": a.session.session_id,
                "started_at": a.session.created_at,
                "frames_sent": a.call.frames_sent,
                "legs": [
                    {"label": info.label, "codec": info.codec, "port": info.port}
                    | _stats_dict(a.call.leg_stats(info))
                    for info in a.call.legs
                ],
            }
            for a in self.calls.values()
        ]

    # -- media construction ----------------------------------------------------------------
    def _new_leg(self, timeline: Timeline, leg: RecordedLeg, out_rate: int) -> Leg:
        stream = leg.stream
        return Leg(
            timeline,
            payload_types={c.payload_type: c.encoding for c in stream.codecs},
            out_rate=out_rate,
            dtmf_payload_type=stream.dtmf_payload_type,
            cn_payload_types=stream.cn_payload_types,
            target_delay_ms=self.settings.rtp.target_delay_ms,
            expected_host=self._expected_host(leg),
            srtp=_srtp_receiver(leg),
            ssrc_switch_packets=self.settings.rtp.ssrc_switch_packets,
        )

    def _expected_host(self, leg: RecordedLeg) -> str | None:
        """Media is accepted from the SDP address (``rtp.latching = "sdp"``), or from the first
        source that sends (``"first"``, for SRCs behind NAT)."""
        host = leg.stream.remote_address
        if self.settings.rtp.latching != "sdp" or host in (None, "0.0.0.0", "::"):
            return None
        return host

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

    def _build_call(self, session: RecordingSession) -> RecordingCall:
        recorded = list(session.legs.values())
        g722 = any(c.encoding == "G722" for leg in recorded for c in leg.stream.codecs)
        out_rate = 16000 if g722 else 8000
        frame_ms = self.settings.media.frame_ms
        timeline = Timeline(frame_ms=frame_ms)
        legs = [
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
            for channel, leg in enumerate(recorded)
        ]
        targets = session.route.targets if session.route else (self.settings.default_target(),)
        started_at = time.time()
        participants = _participants(session)

        def open_for(target: ResolvedTarget, infos: list[LegInfo]) -> list[Connection]:
            return self.outputs.connections(
                session,
                target,
                infos,
                in_rate=out_rate,
                in_frame_ms=frame_ms,
                started_at=started_at,
                participants=participants,
            )

        connections = [conn for target in targets for conn in open_for(target, legs)]
        per_leg = [t for t in targets if t.mode == "per-leg"]

        def connect_leg(info: LegInfo) -> list[Connection]:
            return [conn for target in per_leg for conn in open_for(target, [info])]

        log.info(
            "%d leg(s) %s to %d connection(s), metadata problems: %s",
            len(legs),
            ", ".join(f"{i.label}:{i.codec}@{i.port}" for i in legs),
            len(connections),
            session.problems or "none",
        )
        return RecordingCall(
            session_id=session.session_id,
            call_id=session.call_id,
            timeline=timeline,
            legs=legs,
            connections=connections,
            sample_rate=out_rate,
            connect_leg=connect_leg,
        )

    async def _attach(self, active: ActiveCall, legs: Sequence[LegInfo]) -> None:
        """Point the RTP sockets at their legs and put the call on the ticker."""
        assert self._loop is not None and self._ticker is not None
        for info in legs:
            await self.pool.attach(info.port, info.leg, self._loop.time)
        if active.session.dialog_id in self.calls:
            self._ticker.add(active.call)

    async def _close_senders(self, active: ActiveCall) -> None:
        senders = active.senders
        await asyncio.gather(*(s.close() for s in senders), return_exceptions=True)
        self.metrics.retire(senders=senders)
        for sender in senders:
            if sender.spool_path is not None:
                self.metrics.call_spooled()


def _srtp_receiver(leg: RecordedLeg) -> SrtpReceiver | None:
    crypto = leg.stream.remote_crypto
    if crypto is None:
        return None
    key = crypto.key
    return SrtpReceiver(crypto.suite, key.key_b64, mki=key.mki, mki_length=key.mki_length)


def _paused(session: RecordingSession, key: str) -> bool:
    leg = session.legs.get(key)
    return leg is None or leg.paused


def _participants(session: RecordingSession) -> list[Participant]:
    return [Participant(p.participant_id, p.aor, p.name) for p in session.participants]


def _stats_dict(stats: StreamStats) -> dict[str, Any]:
    fields = {k: v for k, v in asdict(stats).items() if k not in ("label", "extra")}
    return fields | dict(stats.extra)


def _stop_reason(reason: str) -> StopReason:
    allowed: dict[str, StopReason] = {
        "bye": "bye",
        "cancel": "cancel",
        "timeout": "timeout",
        "shutdown": "shutdown",
    }
    return allowed.get(reason, "error")
