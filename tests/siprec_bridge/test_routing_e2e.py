"""Routing and fan-out end to end: ``[[routes]]`` choose the targets of a replayed call.

A call matched by a route goes to every target of that route at once, each in its own dialect;
a call no route matches goes to ``[output]`` (``routing.unmatched = "output"``) or is rejected
with ``routing.reject_status`` (the replayer then raises ``ReplayError`` with the status).
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from testkit.bridge import bridge_settings
from testkit.calls import (
    DURATION_SLACK_MS,
    PCAPS,
    body_hz,
    legs_of,
    quiet_gc,  # noqa: F401 (a fixture, used by pytestmark)
    route_by_suffix,
    sent_duration_ms,
)
from testkit.recorder import RecordingServer
from testkit.wire import Decoded, decode_native, decode_twilio

from rtp.codecs import ulaw_decode, ulaw_encode
from siprec_bridge.app import Bridge
from siprec_bridge.replay import ReplayError, ReplayResult, replay

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("quiet_gc")]

PCAP = "siprec_pcmu.pcap"
ALICE, BOB = legs_of(PCAP)


async def started(
    stack: AsyncExitStack, spool: Path, ws_port: int, rtp_low: int, **extra: Any
) -> Bridge:
    """A running bridge, stopped when ``stack`` closes."""
    bridge = Bridge(
        bridge_settings(ws_port, rtp_low=rtp_low, output__spool_dir=str(spool), **extra)
    )
    await bridge.start()
    stack.push_async_callback(bridge.stop)
    return bridge


def call_to(bridge: Bridge, suffix: str) -> asyncio.Task[ReplayResult]:
    target = ("127.0.0.1", bridge.sip_port)
    return asyncio.create_task(replay(PCAPS / PCAP, target, call_id_suffix=suffix))


async def rejected_with(call: asyncio.Task[ReplayResult]) -> tuple[tuple[str, int], ...]:
    with pytest.raises(ReplayError) as failure:
        await call
    assert failure.value.result is not None
    (report,) = failure.value.result.calls
    return report.statuses


def check_call(decoded: Decoded, what: str) -> None:
    """Caller 440 Hz in column 0, callee 1000 Hz in column 1, as long as what was sent."""
    assert abs(decoded.duration_ms - sent_duration_ms(PCAP)) <= DURATION_SLACK_MS, what
    for column, leg in enumerate((ALICE, BOB)):
        assert abs(body_hz(decoded.pcm[:, column], decoded.rate) - leg["tone_hz"]) < 15, what


async def test_route_fans_out_and_unmatched_calls_go_to_output_or_are_rejected(
    tmp_path: Path,
) -> None:
    archive, transcribe, default = RecordingServer(), RecordingServer(), RecordingServer()
    async with AsyncExitStack() as stack:
        for server in (archive, transcribe, default):
            await server.start()
            stack.push_async_callback(server.close)
        routes = [
            # Routes are tried in order: "bob" (last) matches every fixture call, Bob is in each.
            route_by_suffix("elsewhere", "-elsewhere", [{"url": archive.url("/elsewhere")}]),
            {
                "name": "sales",
                "match": {
                    "headers": {"Call-ID": "-sales$"},
                    "metadata": {"participant_aor": r"^sip:\+15551230001@"},  # Alice takes part
                },
                "targets": [
                    {"url": archive.url("/archive")},  # [output] defaults: native stereo L16
                    {  # its own dialect, format, headers and credentials
                        "url": transcribe.url("/twilio"),
                        "dialect": "twilio",
                        "mode": "mux",
                        "encoding": "PCMU",
                        "headers": {"X-Tenant": "sales"},
                        "auth": {"type": "bearer", "token": "s3cret"},
                    },
                ],
            },
            {
                "name": "bob",
                "match": {"metadata": {"participant_aor": "15551230002"}},
                "targets": [
                    {"url": archive.url("/bob")},
                ],
            },
        ]
        strict = await started(
            stack,
            tmp_path / "strict",
            default.port,
            50800,
            routes=routes[:2],
            routing__unmatched="reject",
        )
        lenient = await started(
            stack,
            tmp_path / "lenient",
            default.port,
            51000,
            routes=routes[:1],
            routing__unmatched="output",
        )
        not_found = await started(
            stack,
            tmp_path / "not-found",
            default.port,
            51200,
            routes=routes[:1],
            routing__unmatched="reject",
            routing__reject_status=404,
        )
        first_match = await started(stack, tmp_path / "first", default.port, 51400, routes=routes)
        fan_out = call_to(strict, "-sales")
        to_output = call_to(lenient, "-plain")
        by_order = call_to(first_match, "-elsewhere")
        assert await rejected_with(call_to(strict, "-plain")) == (("INVITE", 480),)
        assert await rejected_with(call_to(not_found, "-plain")) == (("INVITE", 404),)
        await asyncio.gather(fan_out, to_output, by_order)
        await archive.wait_closed(2, timeout=10)
        await transcribe.wait_closed(1, timeout=10)
        await default.wait_closed(1, timeout=10)

    # -- one call, two targets, two dialects, the same audio
    (archived,) = archive.on("/archive")
    (streamed,) = transcribe.on("/twilio")
    assert streamed.headers["X-Tenant"] == "sales"
    assert streamed.headers["Authorization"] == "Bearer s3cret"
    assert "Authorization" not in archived.headers
    native = decode_native(archived.messages)
    twilio = decode_twilio(streamed.messages)
    start = native.texts[0]
    assert start["call_id"] == fan_out.result().calls[0].call_id
    assert twilio.texts[1]["start"]["callSid"] == "CA" + uuid.UUID(start["session_id"]).hex
    check_call(native, "native target")
    check_call(twilio, "twilio target")
    assert np.array_equal(twilio.pcm, ulaw_decode(ulaw_encode(native.pcm.ravel())).reshape(-1, 2))

    # -- no route matched: [output]; routes are tried in order
    (output,) = default.connections
    assert output.path == "/"
    plain = decode_native(output.messages)
    assert plain.texts[0]["call_id"] == to_output.result().calls[0].call_id
    check_call(plain, "[output] target")
    assert sorted(c.path for c in archive.connections) == ["/archive", "/elsewhere"]
    ordered = decode_native(archive.on("/elsewhere")[0].messages)
    assert ordered.texts[0]["call_id"] == by_order.result().calls[0].call_id
