"""Consumer connections for a recording session: one target → one or more connections.

For each target of the session's route (``siprec_bridge.routing``) the legs are put in
caller-first order, grouped by the target's mode (one connection in ``stereo``, ``mixed`` and
``mux``; one per leg in ``per-leg``), and each connection gets a dialect encoder, an output
shaper (rate, encoding, frame length) and a WebSocket sender with the target's delivery
policy, credentials, TLS settings and a spool for when the consumer cannot be reached.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from ws_out.auth import ConsumerAuth, JwtOptions
from ws_out.dialects import get_dialect
from ws_out.dialects.base import CallInfo, DialectBase, group_legs, order_legs
from ws_out.dialects.base import Leg as WireLeg
from ws_out.errors import UsageError
from ws_out.native import AudioFormat, Participant, select_sip_headers
from ws_out.sender import DeliveryPolicy, WsSender
from ws_out.spool import Spool
from ws_out.tls import client_context

from .audio import OutputShaper
from .call import Connection, LegInfo
from .settings import ResolvedTarget, Settings, SettingsError, TargetAuth, TargetTls
from .srs import RecordingSession


def check_targets(settings: Settings) -> None:
    """Every target's dialect can carry its mode and format: checked at start, not per call."""
    problems: list[str] = []
    try:
        delivery_policy(settings)
    except UsageError as exc:
        problems.append(f"output.buffer_s / output.ping_interval_s: {exc}")
    targets = [("output", settings.default_target())]
    for route in settings.routes:
        targets += [(f"routes.{route.name}", settings.resolve(t)) for t in route.targets]
    for where, target in targets:
        try:
            encoder = get_dialect(target.dialect, **target.dialect_options)
            channels = 1 if target.mode in ("per-leg", "mixed") else 2
            encoder.check(
                target.mode,
                AudioFormat(target.rate or 8000, channels, target.frame_ms, target.encoding),
            )
            _auth(target.auth)
            _ssl(target)
        except (UsageError, ValueError, OSError) as exc:
            problems.append(f"{where}: {exc}")
    if problems:
        raise SettingsError(problems)


def delivery_policy(settings: Settings) -> DeliveryPolicy:
    out = settings.output
    ping = out.ping_interval_s or None
    return DeliveryPolicy(
        buffer_s=out.buffer_s,
        open_timeout_s=out.connect_timeout_s,
        ping_interval_s=ping,
        ping_timeout_s=ping,
        reconnect_initial_s=out.reconnect_min_s,
        reconnect_max_s=out.reconnect_max_s,
        spool_after_s=out.buffer_s,
    )


def _auth(auth: TargetAuth) -> ConsumerAuth | None:
    if auth.type == "bearer":
        return ConsumerAuth(bearer_token=auth.token)
    if auth.type == "jwt":
        key: str | Path = auth.key_file if auth.key_file is not None else auth.secret
        return ConsumerAuth(
            jwt=JwtOptions(
                algorithm=auth.algorithm,
                key=key,
                ttl_s=auth.ttl_s,
                issuer=auth.issuer or None,
                audience=auth.audience or None,
            )
        )
    return None


def _spool_name(url: str, legs: Sequence[LegInfo]) -> str:
    """Host and path of the target (never its query: it may carry a token) and the leg."""
    parts = urlsplit(url)
    label = f"#{legs[0].label}" if len(legs) == 1 else ""
    return f"{parts.netloc}{parts.path}{label}"


def _ssl(target: ResolvedTarget) -> ssl.SSLContext | None:
    if not target.url.startswith("wss://"):
        return None
    tls: TargetTls = target.tls
    return client_context(
        verify=tls.verify, ca_file=tls.ca_file, cert_file=tls.cert, key_file=tls.key
    )


class OutputFactory:
    """Opens the connections of a session's targets (see the module docstring)."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.policy = delivery_policy(settings)
        self.spool = Spool(settings.output.spool_dir, clock=clock)
        # Credentials and TLS contexts read key files: build them once per target.
        self._auth: dict[str, ConsumerAuth | None] = {}
        self._ssl: dict[str, ssl.SSLContext | None] = {}

    def _credentials(
        self, target: ResolvedTarget
    ) -> tuple[ConsumerAuth | None, ssl.SSLContext | None]:
        key = repr((target.url, target.auth, target.tls))
        if key not in self._auth:
            self._auth[key] = _auth(target.auth)
            self._ssl[key] = _ssl(target)
        return self._auth[key], self._ssl[key]

    def connections(
        self,
        session: RecordingSession,
        target: ResolvedTarget,
        legs: Sequence[LegInfo],
        *,
        in_rate: int,
        in_frame_ms: int,
        started_at: float,
        participants: Sequence[Participant],
    ) -> list[Connection]:
        """Open ``target``'s connections for ``legs`` (each already sent its opening)."""
        by_label = {info.label: info for info in legs}
        ordered = order_legs(
            [(i.label, i.participant_id) for i in legs],
            participants,
            caller=target.caller or None,
        )
        for wire in ordered:  # stereo channels follow the caller-first order
            by_label[wire.label].channel = wire.channel
        out: list[Connection] = []
        for group in group_legs(target.mode, ordered):
            out.append(
                self._open(
                    session,
                    target,
                    group,
                    [by_label[w.label] for w in group],
                    in_rate=in_rate,
                    in_frame_ms=in_frame_ms,
                    started_at=started_at,
                    participants=participants,
                )
            )
        return out

    def _open(
        self,
        session: RecordingSession,
        target: ResolvedTarget,
        group: tuple[WireLeg, ...],
        legs: list[LegInfo],
        *,
        in_rate: int,
        in_frame_ms: int,
        started_at: float,
        participants: Sequence[Participant],
    ) -> Connection:
        encoder = get_dialect(target.dialect, **target.dialect_options)
        shaper = OutputShaper(
            mode=target.mode,
            channels=len(group) if target.mode != "per-leg" else 1,
            in_rate=in_rate,
            in_frame_ms=in_frame_ms,
            encoding=target.encoding,
            sample_rate=target.rate or in_rate,
            frame_ms=target.frame_ms,
        )
        fmt = shaper.format
        encoder.check(target.mode, fmt)
        info = CallInfo(
            session_id=session.session_id,
            call_id=session.call_id,
            started_at=started_at,
            legs=group,
            format=fmt,
            mode=target.mode,
            participants=tuple(participants),
            metadata_problems=tuple(session.problems),
            custom_parameters=target.custom_parameters,
            sip=_sip_headers(session),
            group_id=session.group_id,
            correlation=dict(session.correlation),
            metadata_xml=session.metadata_xml,
        )
        name = session.call_id if len(legs) > 1 else f"{session.call_id}/{legs[0].label}"
        auth, context = self._credentials(target)
        pcm_format = AudioFormat(fmt.sample_rate, fmt.channels, fmt.frame_ms)
        sender = WsSender(
            target.url,
            headers=target.headers or None,
            max_queue=self.settings.output.queue_frames,
            name=name,
            policy=self.policy,
            format=pcm_format,
            reopen=(lambda point: encoder.reopen(point.position_ms))
            if encoder.supports_resume
            else None,
            spool=self.spool.stream(
                call_id=session.call_id,
                session_id=session.session_id,
                target=_spool_name(target.url, legs),
            ),
            auth=auth.bind(call_id=session.call_id, session_id=session.session_id)
            if auth
            else None,
            ssl=context,
            on_message=lambda message: _answer(sender, encoder, message),
        )
        sender.start()
        sender.send_open(encoder.open(info))
        return Connection(sink=sender, encoder=encoder, shaper=shaper, legs=legs, spool_pcm=True)


def _answer(sender: WsSender, encoder: DialectBase, message: str | bytes) -> None:
    """A consumer message (Twilio ``mark``, RCMS keep-alive…): answer it on the stream."""
    replies = encoder.receive(message, time.time())
    if replies and encoder.is_open:
        sender.send_event(replies)


def _sip_headers(session: RecordingSession) -> dict[str, str]:
    request = session.request
    return select_sip_headers(request.headers.items(), request_uri=request.uri)
