"""Prometheus metrics and the operations HTTP endpoint (``/metrics``, ``/healthz``, ``/readyz``,
``/calls``).

Cost model: nothing here runs per RTP packet or per frame.  Event counters (calls by result,
spooled calls) are ``prometheus_client`` children bound once at start.  Per-packet and
per-frame figures are the counters the media path keeps anyway (``rtp.leg.LegStats``,
``ws_out.sender.SenderStats``): :meth:`Metrics.track` registers a call's legs and senders,
a collector sums them at scrape time, and :meth:`Metrics.retire` folds the final values of
an ended call into running totals, so every ``*_total`` stays monotonic.  No metric is
labelled by call id.

The HTTP side is a sans-I/O :class:`Endpoints` (request line and headers in, :class:`HttpResponse`
out; RFC 9110/9112, ``GET``/``HEAD`` only, one request per connection) behind a small asyncio
:class:`HttpServer` (stdlib streams; no web framework).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "CALL_RESULTS",
    "Endpoints",
    "HttpResponse",
    "HttpServer",
    "LegSource",
    "Metrics",
    "SenderSource",
    "parse_request_head",
]

log = logging.getLogger(__name__)

PREFIX: Final = "siprec_bridge"

CALL_RESULTS: Final[tuple[str, ...]] = (
    "bye",
    "cancel",
    "timeout",
    "media-timeout",
    "shutdown",
    "error",
    "rejected",
    "other",
)
"""Values of the ``result`` label of ``siprec_bridge_calls_total``; others count as ``other``."""

JITTER_BUCKETS: Final = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5)


class LegCounters(Protocol):
    """What is read of a leg's counters (``rtp.leg.LegStats``)."""

    packets: int
    bytes: int
    lost: int
    late: int
    duplicates: int
    bad: int
    wrong_payload_type: int
    wrong_source: int
    overflow: int
    concealed_frames: int
    jitter_ms: float


class LegSource(Protocol):
    """A recorded stream (``rtp.leg.Leg``)."""

    @property
    def stats(self) -> LegCounters: ...


class SenderCounters(Protocol):
    """What is read of an output connection's counters (``ws_out.sender.SenderStats``)."""

    sent_frames: int
    sent_messages: int
    sent_bytes: int
    replayed_frames: int
    dropped_frames: int
    dropped_events: int
    spooled_frames: int
    reconnects: int
    connect_failures: int
    connected: bool


class SenderSource(Protocol):
    """An output connection (``ws_out.sender.WsSender``)."""

    @property
    def stats(self) -> SenderCounters: ...

    @property
    def queued(self) -> int: ...


#: (metric name without prefix, help, LegCounters field)
_LEG_COUNTERS: Final = (
    ("rtp_packets", "RTP packets accepted (right source and payload type)", "packets"),
    ("rtp_bytes", "Bytes of the accepted RTP packets", "bytes"),
    ("rtp_lost_packets", "RTP packets lost (RFC 3550 A.3)", "lost"),
    ("rtp_decode_errors", "Unparseable RTP packets or DTMF payloads", "bad"),
    ("rtp_concealed_frames", "Frames filled with silence for missing audio", "concealed_frames"),
)
#: dropped-packet reason label → LegCounters field
_LEG_DROPS: Final = (
    ("late", "late"),
    ("duplicate", "duplicates"),
    ("overflow", "overflow"),
    ("wrong_source", "wrong_source"),
    ("wrong_payload_type", "wrong_payload_type"),
)
_SENDER_COUNTERS: Final = (
    ("ws_frames_sent", "Audio frames sent to consumers (replays included)", "sent_frames"),
    ("ws_messages_sent", "WebSocket messages sent to consumers", "sent_messages"),
    ("ws_bytes_sent", "Payload bytes sent to consumers", "sent_bytes"),
    ("ws_frames_replayed", "Audio frames sent again after a reconnect", "replayed_frames"),
    ("ws_frames_spooled", "Audio frames written to the spool instead", "spooled_frames"),
    ("ws_reconnects", "WebSocket reconnections after a drop", "reconnects"),
    ("ws_connect_failures", "Failed WebSocket connection attempts", "connect_failures"),
)
#: dropped-item kind label → SenderCounters field
_SENDER_DROPS: Final = (("frame", "dropped_frames"), ("event", "dropped_events"))


class Metrics:
    """The service's Prometheus metrics (see ``docs/operations.md`` for the list).

    ``active_calls``, ``draining`` and ``refusals`` are read at scrape time (the number of
    recording sessions, whether the service drains, and admission refusals by cause, e.g.
    ``Admission.counts``).
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        active_calls: Callable[[], int] = lambda: 0,
        draining: Callable[[], bool] = lambda: False,
        refusals: Callable[[], Mapping[str, int]] = dict,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        Gauge(f"{PREFIX}_calls_active", "Recording sessions in progress", registry=r).set_function(
            lambda: float(active_calls())
        )
        Gauge(f"{PREFIX}_draining", "1 while the service drains", registry=r).set_function(
            lambda: 1.0 if draining() else 0.0
        )
        calls = Counter(f"{PREFIX}_calls", "Recording sessions by result", ["result"], registry=r)
        self._calls = {result: calls.labels(result) for result in CALL_RESULTS}
        self._rejected = Counter(
            f"{PREFIX}_calls_rejected",
            "INVITEs the application rejected, by SIP status",
            ["status"],
            registry=r,
        )
        self._spooled = Counter(
            f"{PREFIX}_calls_spooled", "Calls spooled to disk (consumer unreachable)", registry=r
        )
        self._outputs = Counter(
            f"{PREFIX}_ws_outputs",
            "Consumer outputs opened (one per target and call, or per leg)",
            registry=r,
        )
        self._malformed = Counter(
            f"{PREFIX}_sip_malformed", "SIP messages that could not be parsed", registry=r
        )
        self._jitter = Histogram(
            f"{PREFIX}_rtp_jitter_seconds",
            "Interarrival jitter (RFC 3550 A.8) of each stream when it ended",
            buckets=JITTER_BUCKETS,
            registry=r,
        )
        self._legs: dict[int, LegSource] = {}
        self._senders: dict[int, SenderSource] = {}
        self._leg_totals: dict[str, int] = {}
        self._sender_totals: dict[str, int] = {}
        r.register(_LiveCollector(self, refusals))

    # -- events (cold path, pre-bound children)

    def call_ended(self, result: str) -> None:
        """A recording session ended (``stop`` reason: bye, cancel, timeout, ...)."""
        self._calls.get(result, self._calls["other"]).inc()

    def call_rejected(self, status: int) -> None:
        """The application refused an INVITE with ``status`` (admission refusals are counted
        separately, in ``siprec_bridge_sip_refusals_total``)."""
        self._calls["rejected"].inc()
        self._rejected.labels(str(status)).inc()

    def call_spooled(self) -> None:
        self._spooled.inc()

    def sip_malformed(self) -> None:
        self._malformed.inc()

    # -- per-call counters read at scrape time

    def track(
        self, *, legs: Iterable[LegSource] = (), senders: Iterable[SenderSource] = ()
    ) -> None:
        """Count these legs' and senders' counters from now on (call start)."""
        for leg in legs:
            self._legs[id(leg)] = leg
        for sender in senders:
            if id(sender) not in self._senders:
                self._senders[id(sender)] = sender
                self._outputs.inc()

    def retire(
        self, *, legs: Iterable[LegSource] = (), senders: Iterable[SenderSource] = ()
    ) -> None:
        """Fold the final counters into the totals and stop reading them (call end; for
        senders, once they are closed)."""
        for leg in legs:
            if self._legs.pop(id(leg), None) is None:
                continue
            stats = leg.stats
            _add(self._leg_totals, _leg_fields(stats))
            self._jitter.observe(stats.jitter_ms / 1000)
        for sender in senders:
            if self._senders.pop(id(sender), None) is not None:
                _add(self._sender_totals, _sender_fields(sender.stats))

    def _snapshot(self) -> tuple[dict[str, int], dict[str, int], int, int, int]:
        legs = dict(self._leg_totals)
        for leg in self._legs.values():
            _add(legs, _leg_fields(leg.stats))
        senders = dict(self._sender_totals)
        connected = queued = 0
        for sender in self._senders.values():
            stats = sender.stats
            _add(senders, _sender_fields(stats))
            connected += stats.connected
            queued += sender.queued
        return legs, senders, len(self._legs), connected, queued


def _leg_fields(stats: LegCounters) -> Iterator[tuple[str, int]]:
    for _, _, name in _LEG_COUNTERS:
        yield name, getattr(stats, name)
    for _, name in _LEG_DROPS:
        yield name, getattr(stats, name)


def _sender_fields(stats: SenderCounters) -> Iterator[tuple[str, int]]:
    for _, _, name in _SENDER_COUNTERS:
        yield name, getattr(stats, name)
    for _, name in _SENDER_DROPS:
        yield name, getattr(stats, name)


def _add(totals: dict[str, int], fields: Iterable[tuple[str, int]]) -> None:
    for name, value in fields:
        totals[name] = totals.get(name, 0) + value


class _LiveCollector(Collector):
    """Scrape-time totals: retired calls plus the calls in progress."""

    def __init__(self, metrics: Metrics, refusals: Callable[[], Mapping[str, int]]) -> None:
        self._metrics = metrics
        self._refusals = refusals

    def collect(self) -> Iterable[Metric]:
        legs, senders, streams, connected, queued = self._metrics._snapshot()
        for name, doc, field in _LEG_COUNTERS:
            yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=legs.get(field, 0))
        dropped = CounterMetricFamily(
            f"{PREFIX}_rtp_dropped_packets", "RTP packets dropped, by reason", labels=["reason"]
        )
        for reason, field in _LEG_DROPS:
            dropped.add_metric([reason], legs.get(field, 0))
        yield dropped
        for name, doc, field in _SENDER_COUNTERS:
            yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=senders.get(field, 0))
        ws_dropped = CounterMetricFamily(
            f"{PREFIX}_ws_dropped",
            "Frames and events neither sent nor spooled (slow or lost consumer), by kind",
            labels=["kind"],
        )
        for kind, field in _SENDER_DROPS:
            ws_dropped.add_metric([kind], senders.get(field, 0))
        yield ws_dropped
        yield GaugeMetricFamily(f"{PREFIX}_rtp_streams_active", "Streams recorded", value=streams)
        yield GaugeMetricFamily(
            f"{PREFIX}_ws_connected", "Consumer connections open", value=connected
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_ws_queue_depth", "Messages queued toward consumers", value=queued
        )
        refused = CounterMetricFamily(
            f"{PREFIX}_sip_refusals",
            "New SIP requests refused by admission control, by cause",
            labels=["cause"],
        )
        for cause, count in sorted(self._refusals().items()):
            refused.add_metric([cause], count)
        yield refused


# -- HTTP ----------------------------------------------------------------------------------

MAX_REQUEST_HEAD: Final = 8192
"""Longest request line + headers accepted, in bytes."""


class HttpRequestError(Exception):
    """A request the endpoint cannot serve; ``status`` is the answer (400, 405, 431, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class HttpResponse:
    status: int
    content_type: str
    body: bytes

    def to_bytes(self, *, head_only: bool = False) -> bytes:
        reason = _REASONS.get(self.status, "")
        head = (
            f"HTTP/1.1 {self.status} {reason}\r\n"
            f"Content-Type: {self.content_type}\r\n"
            f"Content-Length: {len(self.body)}\r\n"
            "Cache-Control: no-store\r\n"
            "Connection: close\r\n\r\n"
        )
        return head.encode("ascii") + (b"" if head_only else self.body)


def parse_request_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Parse ``METHOD target HTTP/1.x`` and the header fields (RFC 9112 §3, §5).

    Returns (method, path without query, lower-cased headers).  Raises
    :class:`HttpRequestError` (400, 431) for bad syntax or a head over :data:`MAX_REQUEST_HEAD`.
    """
    if len(head) > MAX_REQUEST_HEAD:
        raise HttpRequestError(431, "request head too large")
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise HttpRequestError(400, "non-ASCII request head") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        raise HttpRequestError(400, "bad request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpRequestError(400, "bad header field")
        headers[name.lower()] = value.strip()
    return parts[0], parts[1].split("?", 1)[0], headers


def _text(status: int, text: str) -> HttpResponse:
    return HttpResponse(status, "text/plain; charset=utf-8", text.encode())


class Endpoints:
    """The routes of the operations endpoint (sans-I/O).

    ``/metrics`` (Prometheus text, or OpenMetrics when asked for in ``Accept``), ``/healthz``
    (200 while ``healthy()``), ``/readyz`` (200 while ``ready()``, 503 while draining) and
    ``/calls`` (``{"calls": calls()}`` as JSON).
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        ready: Callable[[], bool],
        calls: Callable[[], Sequence[Mapping[str, Any]]],
        healthy: Callable[[], bool] = lambda: True,
    ) -> None:
        self.metrics = metrics
        self._ready = ready
        self._calls = calls
        self._healthy = healthy

    def handle(self, method: str, path: str, headers: Mapping[str, str]) -> HttpResponse:
        if method not in ("GET", "HEAD"):
            return _text(405, "only GET and HEAD\n")
        if path == "/metrics":
            encoder, content_type = choose_encoder(headers.get("accept", ""))
            return HttpResponse(200, content_type, encoder(self.metrics.registry))
        if path == "/healthz":
            return _text(200, "ok\n") if self._healthy() else _text(503, "unhealthy\n")
        if path == "/readyz":
            return _text(200, "ready\n") if self._ready() else _text(503, "draining\n")
        if path == "/calls":
            body = json.dumps({"calls": list(self._calls())}, default=str).encode()
            return HttpResponse(200, "application/json", body)
        return _text(404, "not found\n")


class HttpServer:
    """Serves :class:`Endpoints` over HTTP/1.1 with asyncio streams, one request per
    connection; a client gets ``read_timeout`` seconds to send its request head."""

    def __init__(self, endpoints: Endpoints, *, read_timeout: float = 5.0) -> None:
        self.endpoints = endpoints
        self._read_timeout = read_timeout
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_REQUEST_HEAD)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info(
            "operations endpoint on http://%s:%d/ (metrics, healthz, readyz, calls)",
            host,
            self.port,
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head_only = False
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._read_timeout)
                method, path, headers = parse_request_head(head[:-4])
                head_only = method == "HEAD"
                response = self.endpoints.handle(method, path, headers)
            except asyncio.LimitOverrunError:
                response = _text(431, "request head too large\n")
            except HttpRequestError as exc:
                response = _text(exc.status, f"{exc}\n")
            except Exception:  # a failing callback must not kill the endpoint
                log.exception("operations endpoint failed")
                response = _text(500, "internal error\n")
            writer.write(response.to_bytes(head_only=head_only))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away or was too slow: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
