"""Metrics and the operations endpoint: values scraped match what the media path counted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rtp.leg import Leg, Timeline
from rtp.packet import build_packet
from siprec_bridge.metrics import (
    Endpoints,
    HttpRequestError,
    HttpServer,
    Metrics,
    parse_request_head,
)
from ws_out.sender import SenderStats

SBC = ("192.0.2.5", 30000)


@dataclass
class FakeSender:
    """A ``ws_out`` sender as far as metrics are concerned: its real counters, a queue."""

    stats: SenderStats = field(default_factory=SenderStats)
    queued: int = 0


def pcmu(seq: int, ssrc: int = 7) -> bytes:
    return build_packet(
        payload_type=0, sequence=seq, timestamp=seq * 160, ssrc=ssrc, payload=b"\xff" * 160
    )


def leg_with(sequences: list[int], *, strangers: int = 0, bad_pt: int = 0) -> Leg:
    """A real leg fed with PCMU packets (gaps in ``sequences`` are losses)."""
    leg = Leg(Timeline(), payload_types={0: "PCMU"}, out_rate=8000, expected_host=SBC[0])
    for i, seq in enumerate(sequences):
        leg.feed(pcmu(seq), SBC, i * 0.02)
    for _ in range(strangers):
        leg.feed(pcmu(999), ("203.0.113.9", 1), 1.0)
    for _ in range(bad_pt):
        packet = build_packet(payload_type=8, sequence=50, timestamp=0, ssrc=7, payload=b"x")
        leg.feed(packet, SBC, 1.0)
    return leg


def scrape(metrics: Metrics, accept: str = "") -> dict[str, float]:
    """Every sample as ``name{label="v"}`` → value."""
    endpoints = Endpoints(metrics, ready=lambda: True, calls=list)
    response = endpoints.handle("GET", "/metrics", {"accept": accept})
    assert response.status == 200
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def test_rtp_and_websocket_counters_follow_the_legs_and_stay_monotonic() -> None:
    refusals = {"rate-limited": 2, "source-denied": 1}
    calls = 1
    metrics = Metrics(active_calls=lambda: calls, refusals=lambda: refusals)
    first = leg_with([1, 2, 3, 5, 6], strangers=2, bad_pt=1)  # 5 packets, 1 lost
    second = leg_with([1, 2, 3])
    stats = SenderStats(sent_frames=40, sent_messages=43, sent_bytes=12800, connected=True)
    stats.reconnects, stats.replayed_frames, stats.dropped_events = 1, 5, 2
    sender = FakeSender(stats, 3)
    metrics.track(legs=[first, second], senders=[sender])
    values = scrape(metrics)
    assert values["siprec_bridge_calls_active"] == 1
    assert values["siprec_bridge_rtp_packets_total"] == 8
    assert values["siprec_bridge_rtp_bytes_total"] == 8 * 172
    assert values["siprec_bridge_rtp_lost_packets_total"] == 1
    assert values['siprec_bridge_rtp_dropped_packets_total{reason="wrong_source"}'] == 2
    assert values['siprec_bridge_rtp_dropped_packets_total{reason="wrong_payload_type"}'] == 1
    assert values['siprec_bridge_rtp_dropped_packets_total{reason="late"}'] == 0
    assert values["siprec_bridge_rtp_streams_active"] == 2
    assert values["siprec_bridge_ws_frames_sent_total"] == 40
    assert values["siprec_bridge_ws_messages_sent_total"] == 43
    assert values["siprec_bridge_ws_reconnects_total"] == 1
    assert values["siprec_bridge_ws_frames_replayed_total"] == 5
    assert values['siprec_bridge_ws_dropped_total{kind="event"}'] == 2
    assert values['siprec_bridge_ws_dropped_total{kind="frame"}'] == 0
    assert values["siprec_bridge_ws_outputs_total"] == 1
    assert values["siprec_bridge_ws_connected"] == 1
    assert values["siprec_bridge_ws_queue_depth"] == 3
    assert values['siprec_bridge_sip_refusals_total{cause="rate-limited"}'] == 2
    assert values['siprec_bridge_sip_refusals_total{cause="source-denied"}'] == 1

    first.feed(pcmu(7), SBC, 0.2)  # live counters move between scrapes
    assert scrape(metrics)["siprec_bridge_rtp_packets_total"] == 9

    metrics.retire(legs=[first, second], senders=[sender])
    metrics.retire(legs=[first])  # twice is harmless
    metrics.call_ended("bye")
    calls = 0
    after = scrape(metrics)
    assert after["siprec_bridge_rtp_packets_total"] == 9  # folded into the totals
    assert after["siprec_bridge_ws_frames_sent_total"] == 40
    assert after["siprec_bridge_rtp_streams_active"] == 0
    assert after["siprec_bridge_ws_connected"] == after["siprec_bridge_ws_queue_depth"] == 0
    assert after["siprec_bridge_rtp_jitter_seconds_count"] == 2
    assert after['siprec_bridge_calls_total{result="bye"}'] == 1
    assert after["siprec_bridge_calls_active"] == 0


def test_event_counters() -> None:
    metrics = Metrics(draining=lambda: True)
    metrics.call_ended("cancel")
    metrics.call_ended("something new")
    metrics.call_rejected(488)
    metrics.call_rejected(488)
    metrics.call_spooled()
    metrics.sip_malformed()
    values = scrape(metrics)
    assert values['siprec_bridge_calls_total{result="cancel"}'] == 1
    assert values['siprec_bridge_calls_total{result="other"}'] == 1
    assert values['siprec_bridge_calls_total{result="rejected"}'] == 2
    assert values['siprec_bridge_calls_total{result="timeout"}'] == 0  # pre-bound: present at 0
    assert values['siprec_bridge_calls_rejected_total{status="488"}'] == 2
    assert values["siprec_bridge_calls_spooled_total"] == 1
    assert values["siprec_bridge_sip_malformed_total"] == 1
    assert values["siprec_bridge_draining"] == 1


def test_openmetrics_on_request() -> None:
    endpoints = Endpoints(Metrics(), ready=lambda: True, calls=list)
    response = endpoints.handle("GET", "/metrics", {"accept": "application/openmetrics-text"})
    assert response.content_type.startswith("application/openmetrics-text")
    assert response.body.endswith(b"# EOF\n")


def test_endpoint_routes() -> None:
    ready = True
    calls = [{"call_id": "c-1", "legs": [{"label": "1", "packets": 10}]}]
    endpoints = Endpoints(Metrics(), ready=lambda: ready, calls=lambda: calls)
    assert endpoints.handle("GET", "/healthz", {}).status == 200
    assert endpoints.handle("GET", "/readyz", {}).status == 200
    ready = False
    draining = endpoints.handle("GET", "/readyz", {})
    assert (draining.status, draining.body) == (503, b"draining\n")
    listing = endpoints.handle("GET", "/calls", {})
    assert listing.content_type == "application/json"
    assert json.loads(listing.body) == {"calls": calls}
    assert endpoints.handle("GET", "/nope", {}).status == 404
    assert endpoints.handle("POST", "/metrics", {}).status == 405
    unhealthy = Endpoints(Metrics(), ready=lambda: True, calls=list, healthy=lambda: False)
    assert unhealthy.handle("GET", "/healthz", {}).status == 503


def test_parse_request_head() -> None:
    method, path, headers = parse_request_head(
        b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/plain"
    )
    assert (method, path, headers) == ("GET", "/metrics", {"host": "a", "accept": "text/plain"})
    for bad in (b"GET /metrics", b"GET metrics HTTP/1.1", b"GET / HTTP/1.1\r\nNoColon", b"\xff"):
        with pytest.raises(HttpRequestError) as info:
            parse_request_head(bad)
        assert info.value.status == 400
    with pytest.raises(HttpRequestError) as info:
        parse_request_head(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 2000)
    assert info.value.status == 431


# -- over a socket -----------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    metrics = Metrics(active_calls=lambda: 3)

    def boom() -> list[dict[str, object]]:
        raise RuntimeError("callback failed")

    http = HttpServer(Endpoints(metrics, ready=lambda: True, calls=boom))
    await http.start("127.0.0.1", 0)
    yield http
    await http.close()


async def get(port: int, raw: bytes) -> tuple[int, bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    data = await asyncio.wait_for(reader.read(), 5.0)
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head, body


@pytest.mark.integration
async def test_http_server(server: HttpServer) -> None:
    status, head, body = await get(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and b"siprec_bridge_calls_active 3.0" in body
    assert f"Content-Length: {len(body)}".encode() in head
    status, head, body = await get(server.port, b"HEAD /readyz HTTP/1.1\r\n\r\n")
    assert status == 200 and body == b"" and b"Content-Length: 6" in head
    status, _, _ = await get(server.port, b"GET /calls HTTP/1.1\r\n\r\n")
    assert status == 500  # the failing callback is reported, the server keeps serving
    status, _, _ = await get(server.port, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 2000 + b"\r\n")
    assert status == 431
    status, _, body = await get(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")
    assert (status, body) == (200, b"ok\n")
