"""Sans-I/O Session Recording Server core (RFC 7866 §5 to §9).

Calling protocol::

    srs = SessionRecordingServer(ua, binder, media_host="198.51.100.7")
    ua.receive(data, source, now)
    for event in srs.handle(ua.events(), now):   # answers go out through the UA
        ...                                      # SessionStarted / SessionUpdated / SessionEnded
    send(ua.data_to_send())

The core decides every answer of the recording dialog and tells the media side what to run:
which streams exist (by label), their local ports, codecs, remote addresses, which are paused,
and who sends each of them. Port binding is injected (:class:`PortBinder`) so the core runs the
same against real sockets and in the conformance suite.

Checks on an initial INVITE follow pjsip's ``sip_siprec.c`` order, but every well-meant session
is recorded (QUIRKS.md): missing ``Require: siprec`` or metadata is reported, not rejected.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import sdp
from sdp.answer import NegotiatedStream, SrtpPolicy, acceptable, build_answer
from sdp.offer import build_offer

from .routing import RouteDecision, RouteRejection
from .sip.errors import LocalProtocolError
from .sip.events import (
    AckReceived,
    ByeReceived,
    DialogTerminated,
    Event,
    IncomingRequest,
    InviteReceived,
    MalformedMessage,
    UpdateReceived,
)
from .sip.message import SipRequest, warning_header
from .sip.transaction import Source
from .sip.ua import DialogId, UserAgent
from .siprec.merge import merge_metadata
from .siprec.metadata import MetadataError, Participant, RecordingMetadata, parse_metadata
from .siprec.multipart import BodyError, RecordingBody, extract_recording_body
from .siprec.session import RecordingView, is_siprec_request, join

#: Chooses a session's consumers (and SRTP policy) from the INVITE, its metadata and its
#: correlation ids; :func:`siprec_bridge.routing.route_call` bound to the settings.
Router = Callable[
    [SipRequest, RecordingMetadata | None, dict[str, str]], RouteDecision | RouteRejection
]

log = logging.getLogger(__name__)

#: ``DialogTerminated.reason`` of the UA → our stop reason.
STOP_REASONS: dict[str, str] = {
    "bye": "bye",
    "bye-sent": "shutdown",
    "cancelled": "cancel",
    "ack-timeout": "timeout",
    "session-timeout": "timeout",
}

#: SIP headers copied into the session's correlation data (QUIRKS.md #5), by our name.
CORRELATION_HEADERS: dict[str, str] = {
    "Cisco-Guid": "cisco_guid",
    "Session-ID": "session_id",
    "User-to-User": "user_to_user",
    "X-BroadWorks-Correlation-Info": "broadworks_correlation",
    "X-Cisco-Recording-Participant": "cisco_recording_participant",
    "x-audc-call-id": "audiocodes_call_id",
    "P-Asserted-Identity": "p_asserted_identity",
    "Diversion": "diversion",
}

#: Metadata extension elements (local names, lower case) that carry a correlation id.
CORRELATION_EXTENSIONS: dict[str, str] = {
    "ucid": "ucid",
    "avayaucid": "ucid",
    "genesysuuid": "genesys_uuid",
    "exttrackingid": "broadworks_tracking_id",
    "callid": "vendor_call_id",
    "gcid": "global_call_id",
}

#: Streams offered by default in a delayed-offer 2xx when metadata does not say how many.
DELAYED_OFFER_STREAMS = 2


class PortBinder(Protocol):
    """Local RTP ports: ``bind`` opens ``count`` (raises :class:`rtp.PortsExhausted`)."""

    def bind(self, count: int) -> list[int]: ...
    def release(self, ports: Sequence[int]) -> None: ...


class Reject(Exception):
    """An offer we refuse: the SIP status and the Warning text (RFC 3261 §20.43)."""

    def __init__(self, status: int, warning: str, *, retry_after: int | None = None) -> None:
        super().__init__(warning)
        self.status = status
        self.warning = warning
        self.retry_after = retry_after


@dataclass
class RecordedLeg:
    """One recorded stream (an accepted m-line), keyed by label across re-offers."""

    key: str
    index: int
    label: str
    port: int
    stream: NegotiatedStream
    participant_id: str | None
    paused: bool

    @property
    def codec(self) -> str:
        assert self.stream.codec is not None
        return self.stream.codec.encoding


@dataclass
class RecordingSession:
    """The signalling state of one recording session (one SIP dialog, RFC 7866 §6.1)."""

    dialog_id: DialogId
    session_id: str
    call_id: str
    request: SipRequest
    source: Source
    created_at: float
    sdp_session_id: int
    siprec: bool
    legs: dict[str, RecordedLeg] = field(default_factory=dict)
    metadata: RecordingMetadata | None = None
    problems: list[str] = field(default_factory=list)
    offer: sdp.SessionDescription | None = None
    sdp_version: int = 1
    answer: bytes = b""
    awaiting_answer: bool = False
    correlation: dict[str, str] = field(default_factory=dict)
    route: RouteDecision | None = None
    srtp: SrtpPolicy = "off"

    @property
    def participants(self) -> list[Participant]:
        return list(self.metadata.participants) if self.metadata else []

    @property
    def group_id(self) -> str | None:
        if self.metadata is None:
            return None
        for info in self.metadata.sessions:
            if info.group_id:
                return info.group_id
        return self.metadata.groups[0] if self.metadata.groups else None

    @property
    def metadata_xml(self) -> str | None:
        if self.metadata is None or not self.metadata.raw:
            return None
        return self.metadata.raw.decode("utf-8", "replace")


@dataclass
class SessionStarted:
    session: RecordingSession


@dataclass
class SessionUpdated:
    """What a re-INVITE/UPDATE/ACK changed; empty lists mean nothing of that kind."""

    session: RecordingSession
    added: list[RecordedLeg] = field(default_factory=list)
    removed: list[RecordedLeg] = field(default_factory=list)
    changed: list[RecordedLeg] = field(default_factory=list)
    """New codecs or DTMF payload type: the stream needs a new decoder."""
    moved: list[RecordedLeg] = field(default_factory=list)
    """Same media from a new address or port, or with a new SRTP key (RFC 3264 §8.3.1)."""
    paused: list[RecordedLeg] = field(default_factory=list)
    resumed: list[RecordedLeg] = field(default_factory=list)
    participants_changed: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.added
            or self.removed
            or self.changed
            or self.moved
            or self.paused
            or self.resumed
            or self.participants_changed
        )


@dataclass
class SessionEnded:
    session: RecordingSession
    reason: str


@dataclass
class SessionRejected:
    call_id: str
    status: int
    warning: str


SrsEvent = SessionStarted | SessionUpdated | SessionEnded | SessionRejected


class SessionRecordingServer:
    """Turns UA events into answers and session events; see the module docstring."""

    def __init__(
        self,
        ua: UserAgent,
        binder: PortBinder,
        *,
        media_host: str,
        srtp: SrtpPolicy = "off",
        srtp_suites: Sequence[str] = (),
        router: Router | None = None,
        session_ids: Callable[[], str] = lambda: str(uuid.uuid4()),
        rng: random.Random | None = None,
    ) -> None:
        self.ua = ua
        self.binder = binder
        self.media_host = media_host
        self.srtp: SrtpPolicy = srtp
        self.srtp_suites = tuple(srtp_suites)
        self.router = router
        self.sessions: dict[DialogId, RecordingSession] = {}
        self._session_ids = session_ids
        self._rng = rng or random.Random()

    # -- entry points ----------------------------------------------------------------------
    def handle(self, events: Sequence[Event], now: float) -> list[SrsEvent]:
        out: list[SrsEvent] = []
        for event in events:
            if isinstance(event, InviteReceived) and not event.is_reinvite:
                out.extend(self._initial_invite(event, now))
            elif isinstance(event, InviteReceived | UpdateReceived):
                out.extend(self._reoffer(event))
            elif isinstance(event, AckReceived):
                out.extend(self._ack(event, now))
            elif isinstance(event, ByeReceived):
                out.extend(self._bye(event))
            elif isinstance(event, DialogTerminated):
                out.extend(self._end(event.dialog_id, STOP_REASONS.get(event.reason, "error")))
            elif isinstance(event, MalformedMessage):
                log.warning("malformed SIP from %s: %s", event.source.addr, event.error)
        return out

    def end_all(self, now: float, reason: str = "shutdown") -> list[SrsEvent]:
        """Send BYE on every recording dialog and end its session (drain, shutdown)."""
        out: list[SrsEvent] = []
        for dialog_id in list(self.sessions):
            try:
                self.ua.send_bye(dialog_id, now)
            except LocalProtocolError as exc:  # already terminating, or not yet confirmed
                log.debug("no BYE for %s: %s", dialog_id, exc)
            out.extend(self._end(dialog_id, reason))
        return out

    # -- initial INVITE --------------------------------------------------------------------
    def _initial_invite(self, event: InviteReceived, now: float) -> list[SrsEvent]:
        try:
            session, answer = self._setup(event, now)
        except Reject as reject:
            self._reject(event, reject)
            return [SessionRejected(event.request.call_id, reject.status, reject.warning)]
        self.sessions[event.dialog_id] = session
        self._respond(event, 200, body=answer, content_type="application/sdp")
        return [] if session.awaiting_answer else [SessionStarted(session)]

    def _setup(self, event: InviteReceived, now: float) -> tuple[RecordingSession, bytes]:
        request = event.request
        body, offer = offer_of(request)
        metadata, problems = metadata_of(body)
        session = RecordingSession(
            dialog_id=event.dialog_id,
            session_id=self._session_ids(),
            call_id=request.call_id,
            request=request,
            source=event.source,
            created_at=now,
            sdp_session_id=self._rng.getrandbits(48),
            siprec=is_siprec_request(request.headers.get, body),
            metadata=metadata,
            problems=problems,
        )
        if not session.siprec:
            problems.append("not a SIPREC request (no Require: siprec, +sip.src or metadata)")
        session.correlation = correlation_of(request, metadata)
        session.srtp = self.srtp
        if self.router is not None:
            decision = self.router(request, metadata, session.correlation)
            if isinstance(decision, RouteRejection):
                raise Reject(decision.status, decision.reason)
            session.route = decision
            session.srtp = decision.srtp
        if offer is None:  # delayed offer (QUIRKS #19): we offer, the SRC answers in the ACK
            return session, self._delayed_offer(session)
        usable = self._acceptable(offer, session.srtp)
        if not any(usable):
            required = (
                " (SRTP required: RTP/SAVP with a=crypto)" if session.srtp == "require" else ""
            )
            raise Reject(488, f"no acceptable audio stream (PCMU, PCMA or G722){required}")
        ports = self._bind(sum(usable))
        ports_iter = iter(ports)
        answer = self._negotiate(
            session, offer, [next(ports_iter) if ok else 0 for ok in usable], event.source
        )
        return session, answer

    def _delayed_offer(self, session: RecordingSession) -> bytes:
        labels = [
            s.label for s in (session.metadata.streams if session.metadata else []) if s.label
        ]
        # A non-SIPREC delayed offer (Cisco CUCM built-in bridge) records one stream per call:
        # CUCM answers our offer with a single m-line (miarec cisco_bib_call_*.xml).
        count = DELAYED_OFFER_STREAMS if session.siprec else 1
        labels = labels or [str(i + 1) for i in range(count)]
        ports = self._bind(len(labels))
        offer = build_offer(
            local_address=self.media_host,
            ports=ports,
            labels=labels,
            session_id=session.sdp_session_id,
            session_version=session.sdp_version,
        )
        session.awaiting_answer = True
        session.answer = sdp.serialize(offer)
        session.offer = offer  # our own offer; the SRC's answer arrives in the ACK
        return session.answer

    def _bind(self, count: int) -> list[int]:
        from rtp.errors import PortsExhausted

        try:
            return self.binder.bind(count)
        except PortsExhausted:
            raise Reject(503, "RTP port range exhausted", retry_after=5) from None

    # -- offer/answer ----------------------------------------------------------------------
    def _acceptable(self, offer: sdp.SessionDescription, policy: SrtpPolicy) -> list[bool]:
        return acceptable(offer, srtp=policy, srtp_suites=self.srtp_suites)

    def _negotiate(
        self,
        session: RecordingSession,
        offer: sdp.SessionDescription,
        ports: Sequence[int],
        source: Source,
    ) -> bytes:
        """Answer ``offer`` with ``ports``; update the legs; return the answer body."""
        answer, negotiated = build_answer(
            offer,
            local_address=self.media_host,
            ports=ports,
            session_id=session.sdp_session_id,
            session_version=session.sdp_version,
            fallback_address=source.addr[0],
            srtp=session.srtp,
            srtp_suites=self.srtp_suites,
        )
        session.offer = offer
        session.answer = sdp.serialize(answer)
        view = join(offer, session.metadata)
        senders = {s.index: s.participant_id for s in view.streams}
        session.legs = {}
        for n in negotiated:
            if not n.accepted or n.codec is None:
                continue
            key = leg_key(n)
            session.legs[key] = RecordedLeg(
                key=key,
                index=n.index,
                label=n.label if n.label is not None else str(n.index),
                port=n.local_port,
                stream=n,
                participant_id=senders.get(n.index),
                paused=is_paused(n),
            )
        session.problems.extend(p for p in view.problems if p not in session.problems)
        return session.answer

    def _reoffer(self, event: IncomingRequest) -> list[SrsEvent]:
        """re-INVITE / UPDATE (RFC 3261 §14, RFC 3311): always answer an offer with SDP."""
        session = self.sessions.get(event.dialog_id)
        if session is None:
            self._respond(event, 481)
            return []
        try:
            body, offer = offer_of(event.request)
        except Reject as reject:
            self._reject(event, reject)
            return []
        update = SessionUpdated(session)
        if body.metadata is not None:
            update.participants_changed = self._merge(session, body)
        if offer is None:
            if isinstance(event, InviteReceived):  # offer-less re-INVITE: we offer (§14.1)
                session.sdp_version += 1
                session.awaiting_answer = True
                self._respond(
                    event, 200, body=self._reoffer_body(session), content_type="application/sdp"
                )
            else:
                self._respond(event, 200)  # metadata-only UPDATE (Avaya SBCE, BroadWorks)
            return [update] if update else []
        before = dict(session.legs)
        ports = self._ports_for(session, offer)
        session.sdp_version += 1
        answer = self._negotiate(session, offer, ports, event.source)
        self._diff(before, session, update)
        self._respond(event, 200, body=answer, content_type="application/sdp")
        return [update] if update else []

    def _reoffer_body(self, session: RecordingSession) -> bytes:
        """Our last SDP again with a new version (RFC 3264 §8: o= version +1)."""
        assert session.offer is not None
        ports = [leg.port for leg in session.legs.values()]
        labels = [leg.label for leg in session.legs.values()]
        offer = build_offer(
            local_address=self.media_host,
            ports=ports,
            labels=labels,
            session_id=session.sdp_session_id,
            session_version=session.sdp_version,
        )
        session.offer = offer  # our own offer again; the SRC's answer arrives in the ACK
        return sdp.serialize(offer)

    def _ports_for(self, session: RecordingSession, offer: sdp.SessionDescription) -> list[int]:
        """Keep each label's port; bind ports for new streams; 0 for unusable m-lines."""
        usable = self._acceptable(offer, session.srtp)
        keys = [leg_key_of(m.label, i) for i, m in enumerate(offer.media)]
        fresh = [i for i, ok in enumerate(usable) if ok and keys[i] not in session.legs]
        new_ports = iter(self._bind(len(fresh)) if fresh else [])
        ports: list[int] = []
        for i, ok in enumerate(usable):
            if not ok:
                ports.append(0)
            elif keys[i] in session.legs:
                ports.append(session.legs[keys[i]].port)
            else:
                ports.append(next(new_ports))
        return ports

    def _diff(
        self, before: dict[str, RecordedLeg], session: RecordingSession, update: SessionUpdated
    ) -> None:
        for key, leg in session.legs.items():
            old = before.get(key)
            if old is None:
                update.added.append(leg)
                continue
            before_media = (old.stream.codecs, old.stream.dtmf_payload_type)
            if before_media != (leg.stream.codecs, leg.stream.dtmf_payload_type):
                update.changed.append(leg)
            elif (old.stream.remote_address, old.stream.remote_port, old.stream.remote_crypto) != (
                leg.stream.remote_address,
                leg.stream.remote_port,
                leg.stream.remote_crypto,
            ):
                update.moved.append(leg)
            if leg.paused and not old.paused:
                update.paused.append(leg)
            elif old.paused and not leg.paused:
                update.resumed.append(leg)
            if old.participant_id != leg.participant_id:
                update.participants_changed = True
        removed = [old for key, old in before.items() if key not in session.legs]
        update.removed.extend(removed)
        self.binder.release([leg.port for leg in removed])

    def _merge(self, session: RecordingSession, body: RecordingBody) -> bool:
        """Merge metadata from a re-INVITE/UPDATE/BYE; True when participants changed."""
        assert body.metadata is not None
        try:
            newer = parse_metadata(body.metadata)
        except MetadataError as exc:
            session.problems.append(f"unparseable metadata in update: {exc}")
            return False
        before = [(p.participant_id, p.aor, p.name, tuple(p.send)) for p in session.participants]
        session.metadata = merge_metadata(session.metadata, newer)
        session.correlation.update(correlation_of(None, session.metadata))
        if session.offer is not None and not session.awaiting_answer:
            view = join(session.offer, session.metadata)
            senders = {s.index: s.participant_id for s in view.streams}
            for leg in session.legs.values():
                leg.participant_id = senders.get(leg.index)
        after = [(p.participant_id, p.aor, p.name, tuple(p.send)) for p in session.participants]
        return before != after

    # -- ACK, BYE, end ---------------------------------------------------------------------
    def _ack(self, event: AckReceived, now: float) -> list[SrsEvent]:
        """Delayed offer: the SRC's answer is in the ACK (RFC 3261 §13.2.1)."""
        session = self.sessions.get(event.dialog_id)
        if session is None or not session.awaiting_answer:
            return []
        session.awaiting_answer = False
        first = not session.legs
        try:
            _, answer = offer_of(event.request)
        except Reject as reject:
            answer = None
            session.problems.append(f"ACK answer: {reject.warning}")
        if answer is None or not any(self._acceptable(answer, session.srtp)):
            session.problems.append("no usable SDP answer in the ACK; ending the session")
            return self.end_session(event.dialog_id, now, "error")
        ours = [m.port for m in session.offer.media] if session.offer else []
        if len(ours) != len(answer.media):
            session.problems.append("ACK answer has a different number of m-lines; ending")
            return self.end_session(event.dialog_id, now, "error")
        offered = session.offer.media if session.offer else []
        for mine, theirs in zip(offered, answer.media, strict=True):
            if theirs.label is None and mine.label is not None:  # CUCM answers without labels
                theirs.attributes.append(("label", mine.label))
        before = dict(session.legs)
        self._negotiate(session, answer, ours, session.source)
        unused = [p for p in ours if p not in {leg.port for leg in session.legs.values()}]
        self.binder.release(unused)
        if first:
            return [SessionStarted(session)]
        update = SessionUpdated(session)
        self._diff(before, session, update)
        return [update] if update else []

    def _bye(self, event: ByeReceived) -> list[SrsEvent]:
        session = self.sessions.get(event.dialog_id)
        if session is not None:
            try:
                body = extract_recording_body(
                    event.request.headers.get("Content-Type"), event.request.body
                )
            except BodyError:
                body = RecordingBody()
            if body.metadata is not None:  # final metadata in BYE (Cisco, QUIRKS #38)
                self._merge(session, body)
        return self._end(event.dialog_id, "bye")

    def end_session(self, dialog_id: DialogId, now: float, reason: str) -> list[SrsEvent]:
        """End one session from our side: BYE, then :class:`SessionEnded`."""
        try:
            self.ua.send_bye(dialog_id, now)
        except LocalProtocolError as exc:
            log.debug("no BYE for %s: %s", dialog_id, exc)
        return self._end(dialog_id, reason)

    def _end(self, dialog_id: DialogId, reason: str) -> list[SrsEvent]:
        session = self.sessions.pop(dialog_id, None)
        if session is None:
            return []
        ports = [leg.port for leg in session.legs.values()]
        if session.awaiting_answer and session.offer is not None:
            ports = [m.port for m in session.offer.media if m.port]
        self.binder.release(ports)
        return [SessionEnded(session, reason)]

    # -- responses -------------------------------------------------------------------------
    def _respond(self, event: IncomingRequest, status: int, **kwargs: object) -> None:
        try:
            self.ua.respond(event, status, **kwargs)  # type: ignore[arg-type]
        except LocalProtocolError as exc:  # answered meanwhile by the UA (CANCEL, BYE, timeout)
            log.info("call %s: %d not sent: %s", event.request.call_id, status, exc)

    def _reject(self, event: IncomingRequest, reject: Reject) -> None:
        headers = [("Warning", warning_header(reject.warning, self.media_host))]
        if reject.retry_after is not None:
            headers.append(("Retry-After", str(reject.retry_after)))
        log.info("call %s: rejected %d %s", event.request.call_id, reject.status, reject.warning)
        self._respond(event, reject.status, headers=headers)


# -- pure helpers ----------------------------------------------------------------------------
def leg_key_of(label: str | None, index: int) -> str:
    """Streams are matched across re-offers by ``a=label`` (RFC 7866 §8.1.1), else position."""
    return f"label:{label}" if label is not None else f"m:{index}"


def leg_key(stream: NegotiatedStream) -> str:
    return leg_key_of(stream.label, stream.index)


def is_paused(stream: NegotiatedStream) -> bool:
    """RFC 7866 §8.1.6 pause: ``a=inactive`` (or recvonly), or ``c=0.0.0.0`` (RFC 3264 §8.4)."""
    return stream.direction in ("inactive", "recvonly") or stream.remote_address in (
        "0.0.0.0",
        "::",
    )


def offer_of(request: SipRequest) -> tuple[RecordingBody, sdp.SessionDescription | None]:
    """The body split into parts, and its SDP parsed (None when there is none)."""
    try:
        body = extract_recording_body(request.headers.get("Content-Type"), request.body)
    except BodyError as exc:
        raise Reject(exc.status, f"bad body: {exc}") from None
    if body.sdp is None:
        return body, None
    try:
        return body, sdp.parse(body.sdp)
    except sdp.SdpError as exc:
        raise Reject(400, f"bad SDP: {exc}") from None


def metadata_of(body: RecordingBody) -> tuple[RecordingMetadata | None, list[str]]:
    """RFC 7866 §9: metadata is advisory. Bad metadata is reported, never fatal."""
    problems = list(body.problems)
    if body.metadata is None:
        problems.append("no recording metadata in the INVITE")
        return None, problems
    try:
        metadata = parse_metadata(body.metadata)
    except MetadataError as exc:
        problems.append(f"unparseable metadata: {exc}")
        return None, problems
    problems.extend(metadata.problems)
    return metadata, problems


def correlation_of(
    request: SipRequest | None, metadata: RecordingMetadata | None
) -> dict[str, str]:
    """Vendor correlation ids from SIP headers and metadata extensions (QUIRKS #5, #35)."""
    out: dict[str, str] = {}
    if request is not None:
        for header, name in CORRELATION_HEADERS.items():
            value = request.headers.get(header)
            if value:
                out[name] = value
        uui = request.headers.get("User-to-User")
        if uui:
            out["ucid"] = uui.split(";", 1)[0].strip()
        for header, value in request.headers.items():
            if header.lower().startswith("x-") and header not in CORRELATION_HEADERS:
                out[f"x:{header.lower()}"] = value
    if metadata is not None:
        for key, value in metadata.extensions.items():
            alias = CORRELATION_EXTENSIONS.get(key.lower())
            if alias and value:
                out[alias] = value.split(";", 1)[0].strip()
    return out


def view_of(session: RecordingSession) -> RecordingView | None:
    """The current SDP ↔ metadata join of a session (None before the offer/answer)."""
    if session.offer is None:
        return None
    return join(session.offer, session.metadata)
