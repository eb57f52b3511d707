"""Delivery end to end (``docs/delivery.md``): nothing recorded is lost on the way.

* a consumer killed and restarted mid-call gets, after de-duplication, exactly the audio of the
  same call streamed without interruption;
* a consumer that reads slowly delays no other call, and every frame it did not take is
  accounted for (spooled or counted as dropped);
* a target that refuses connections gets the call spooled to disk, whole: listed by
  ``siprec-bridge spool --dir``, with every frame and every event.

The calls of a test run concurrently through one bridge; routes pick each call's consumer by
its Call-ID suffix.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from testkit.audio import read_wav
from testkit.bridge import bridge_settings
from testkit.calls import (
    DURATION_SLACK_MS,
    PCAPS,
    body_hz,
    digits_of,
    legs_of,
    quiet_gc,  # noqa: F401 (a fixture, used by pytestmark)
    route_by_suffix,
    sent_duration_ms,
    wait_until,
)

from siprec_bridge.app import Bridge
from siprec_bridge.consumer import CallSummary, ConsumerServer
from siprec_bridge.replay import ReplayResult, replay
from ws_out.sender import WsSender
from ws_out.spool import Spool, SpoolEntry

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("quiet_gc")]

PCAP = "siprec_dtmf.pcap"
SENT_MS = sent_duration_ms(PCAP)
FRAME = 160  # samples per channel of a 20 ms frame at 8 kHz


def target(consumer: ConsumerServer, **shape: Any) -> dict[str, Any]:
    return {"url": f"ws://127.0.0.1:{consumer.port}/"} | shape


async def consumer_at(
    stack: AsyncExitStack, folder: Path, port: int = 0, **options: Any
) -> ConsumerServer:
    """A demo consumer writing under ``folder``, closed when ``stack`` closes."""
    consumer = ConsumerServer("127.0.0.1", port, folder, **options)
    await consumer.start()
    stack.push_async_callback(consumer.close)
    return consumer


async def bridge_for(
    stack: AsyncExitStack, tmp_path: Path, rtp_low: int, routes: list[dict[str, Any]], **extra: Any
) -> Bridge:
    """A running bridge, stopped when ``stack`` closes (its senders flushed or spooled).
    Every call of these tests is routed; ``[output]`` (port 1) is never used."""
    settings = bridge_settings(
        1, rtp_low=rtp_low, routes=routes, output__spool_dir=str(tmp_path / "spool"), **extra
    )
    bridge = Bridge(settings)
    await bridge.start()
    stack.push_async_callback(bridge.stop)
    return bridge


class closed_port:
    """A TCP port bound but not listening: connections to it are refused while it is held."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))

    def __enter__(self) -> int:
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def call(bridge: Bridge, suffix: str) -> asyncio.Task[ReplayResult]:
    return asyncio.create_task(
        replay(PCAPS / PCAP, ("127.0.0.1", bridge.sip_port), call_id_suffix=suffix)
    )


def senders_of(bridge: Bridge, suffix: str) -> list[WsSender]:
    """The senders of the call replayed with ``suffix`` while it is in progress."""
    return [
        sender
        for active in bridge.calls.values()
        if active.session.call_id.endswith(suffix)
        for sender in active.senders
    ]


async def sender_of(bridge: Bridge, suffix: str) -> WsSender:
    await wait_until(lambda: senders_of(bridge, suffix), timeout=5)
    (sender,) = senders_of(bridge, suffix)
    return sender


def check_audio(samples: npt.NDArray[np.int16], rate: int, what: str) -> None:
    """Both tones in their channels, and as long as what was sent."""
    assert abs(1000 * samples.shape[0] / rate - SENT_MS) <= DURATION_SLACK_MS, (what, samples.shape)
    for channel, leg in enumerate(legs_of(PCAP)):
        assert abs(body_hz(samples[:, channel], rate) - leg["tone_hz"]) < 15, (what, channel)


def events_of(summary: CallSummary) -> list[dict[str, Any]]:
    return list(json.loads(summary.events_path.read_text()))


async def test_consumer_restarted_mid_call_gets_every_sample(tmp_path: Path) -> None:
    """One call to two consumers at once; one is aborted (TCP reset, no close) and restarted
    on the same port while the call goes on. The bridge reconnects and resumes (``start``
    with ``resumed: true``), the consumer skips what it already had, and its WAV equals,
    sample for sample, the WAV of the consumer that was never interrupted."""
    async with AsyncExitStack() as stack:
        steady = await consumer_at(stack, tmp_path / "steady")
        flaky = await consumer_at(stack, tmp_path / "flaky")
        route = route_by_suffix("both", "-both", [target(steady), target(flaky)])
        bridge = await bridge_for(stack, tmp_path, 51600, [route])
        calls = call(bridge, "-both")
        await wait_until(lambda: len(senders_of(bridge, "-both")) == 2, timeout=5)
        sender = next(s for s in senders_of(bridge, "-both") if str(flaky.port) in s.url)
        await wait_until(lambda: sender.stats.sent_frames >= 75, timeout=5)  # 1.5 s: after '1'
        await flaky.abort()
        restarted = await consumer_at(stack, tmp_path / "flaky", flaky.port)
        await calls
        await steady.wait_for(1, timeout=10)
        await restarted.wait_for(1, timeout=10)
    assert sender.stats.reconnects == 1 and sender.stats.replayed_frames > 0
    assert sender.stats.dropped_frames == 0 and not sender.stats.spooled
    (before,) = flaky.summaries
    assert before.stop_reason == "disconnected"
    (after,) = restarted.summaries
    assert after.resumed and after.stop_reason == "bye"
    assert after.duplicate_frames > 0 and after.gap_frames == 0
    assert after.wav_path == before.wav_path  # the stream continued in the same file
    (reference,) = steady.summaries
    assert reference.stop_reason == "bye" and not reference.resumed

    assert after.wav_path is not None and reference.wav_path is not None
    resumed, rate = read_wav(after.wav_path)
    uninterrupted, _ = read_wav(reference.wav_path)
    check_audio(resumed, rate, "resumed")
    assert resumed.shape == uninterrupted.shape
    assert np.array_equal(resumed, uninterrupted)

    events = [e["message"] for e in events_of(after) if not e.get("duplicate")]
    starts = [m for m in events if m["type"] == "start"]
    assert [m.get("resumed", False) for m in starts] == [False, True]
    assert starts[1]["resume_from_frame"] <= before.frames  # a replay from there: no gap
    assert "".join(m["digit"] for m in events if m["type"] == "dtmf") == digits_of(PCAP)
    (stop,) = [m for m in events if m["type"] == "stop"]
    assert stop is events[-1] and stop["duration_ms"] == resumed.shape[0] * 1000 // rate
    steady_events = [e["message"] for e in events_of(reference)]
    assert [m for m in events if m["type"] != "start"] == steady_events[1:]


def unaccounted(consumer: ConsumerServer, spooled: Sequence[SpoolEntry], total: int) -> int:
    """Frames of a stream that reached neither the consumer nor the spool.

    The consumer fills a resume gap with silence (``gap_frames``: frames it never received,
    ``resume_from_frame - gap_frames`` up to ``resume_from_frame``); a stream whose last
    connection ended without ``stop`` also misses its tail.
    """
    final = consumer.summaries[-1]
    resumed = [
        e["message"]
        for e in events_of(final)
        if e["message"]["type"] == "start" and e["message"].get("resumed")
    ]
    connections = [s for s in consumer.summaries if s.resumed]
    missing: set[int] = set()
    for start, summary in zip(resumed, connections, strict=True):
        end = int(start["resume_from_frame"])
        missing.update(range(end - summary.gap_frames, end))
    if final.stop_reason != "bye":
        missing.update(range(final.frames, total))
    for entry in spooled:
        missing.difference_update(range(entry.from_frame, entry.from_frame + entry.frames))
    return len(missing)


async def slow_and_healthy(
    tmp_path: Path, rtp_low: int, **delivery: Any
) -> tuple[ConsumerServer, WsSender, ConsumerServer, WsSender]:
    """Two calls through one bridge: one to a healthy consumer, one to a consumer that
    pauses after every message and is sent 48 kHz stereo (192 kB/s it cannot take)."""
    async with AsyncExitStack() as stack:
        healthy = await consumer_at(stack, tmp_path / "healthy")
        slow = await consumer_at(stack, tmp_path / "slow", read_delay_s=0.05)
        # Once the bridge has stopped (delivered or spooled the slow stream), what the slow
        # consumer has not read yet is its own loss, not the bridge's: drop it.
        stack.push_async_callback(slow.abort)
        routes = [
            route_by_suffix("healthy", "-healthy", [target(healthy)]),
            route_by_suffix("slow", "-slow", [target(slow, rate=48000)]),
        ]
        bridge = await bridge_for(stack, tmp_path, rtp_low, routes, **delivery)
        calls = [call(bridge, "-healthy"), call(bridge, "-slow")]
        good, bad = await sender_of(bridge, "-healthy"), await sender_of(bridge, "-slow")
        await asyncio.gather(*calls)
        await healthy.wait_for(1, timeout=10)
    return healthy, good, slow, bad


async def test_slow_consumer_does_not_disturb_another_call(tmp_path: Path) -> None:
    """The slow stream backs up (TCP, then the sender's buffer) while the healthy call of the
    same bridge streams on time, whole; the slow one loses nothing either."""
    healthy, good, slow, bad = await slow_and_healthy(tmp_path, 51800)
    (summary,) = healthy.summaries
    assert summary.stop_reason == "bye" and summary.wav_path is not None
    samples, rate = read_wav(summary.wav_path)
    check_audio(samples, rate, "healthy call")
    assert good.stats.sent_frames == summary.frames == samples.shape[0] // FRAME
    assert good.stats.dropped_frames == 0 and not good.stats.spooled and good.stats.reconnects == 0
    stop = events_of(summary)[-1]["message"]
    assert stop["type"] == "stop"
    # RTP reception never waited for the slow consumer (that would make dozens of packets
    # late); a garbage collection of the test process may still hold the loop past the
    # 60 ms jitter buffer once.
    assert sum(s["late"] for s in stop["streams"]) <= 2, stop["streams"]
    assert [s["packets"] for s in stop["streams"]] == [leg["packets"] for leg in legs_of(PCAP)]

    assert bad.stats.queue_depth == 0 and bad.stats.dropped_frames == 0
    final = slow.summaries[-1]
    assert final.wav_path is not None
    audio, slow_rate = read_wav(final.wav_path)
    assert slow_rate == 48000
    spooled = Spool(tmp_path / "spool").list()
    assert all(entry.call_id.endswith("-slow") for entry in spooled)
    total = max([final.frames] + [e.from_frame + e.frames for e in spooled])
    assert abs(total * 20 - SENT_MS) <= DURATION_SLACK_MS
    assert unaccounted(slow, spooled, total) == 0
    if final.stop_reason == "bye":  # the consumer got it all, in the end
        check_audio(audio, slow_rate, "slow call")


@pytest.mark.xfail(
    strict=True,
    reason="frames sent on a connection whose closing handshake times out are forgotten once"
    " they fall out of the replay window: the sender reconnects, the consumer takes the stream"
    " over and fills the gap with silence; the frames are neither spooled nor counted",
)
async def test_slow_consumer_frames_beyond_the_replay_window_are_accounted(tmp_path: Path) -> None:
    """With a replay window (``buffer_s`` = 1 s) smaller than what TCP holds in flight toward
    the slow consumer, every frame must still reach it, the spool, or the drop counter."""
    _, _, slow, bad = await slow_and_healthy(
        tmp_path, 52000, output__buffer_s=1.0, output__ping_interval_s=0
    )
    spooled = Spool(tmp_path / "spool").list()
    final = slow.summaries[-1]
    total = max([final.frames] + [e.from_frame + e.frames for e in spooled])
    assert unaccounted(slow, spooled, total) <= bad.stats.dropped_frames


async def test_refused_target_spools_the_whole_call(tmp_path: Path) -> None:
    """Nobody listens: after ``buffer_s`` of trying, the call goes to the spool — every frame
    from the first, every event — and ``siprec-bridge spool --dir`` lists it."""
    with closed_port() as refused:
        route = route_by_suffix("refused", "-refused", [{"url": f"ws://127.0.0.1:{refused}/"}])
        async with AsyncExitStack() as stack:
            bridge = await bridge_for(
                stack, tmp_path, 52200, [route], output__buffer_s=1.0, output__ping_interval_s=0
            )
            calls = call(bridge, "-refused")
            sender = await sender_of(bridge, "-refused")
            result = await calls
    call_id = result.calls[0].call_id
    assert sender.stats.connect_failures > 1 and sender.stats.sent_frames == 0
    assert sender.stats.dropped_frames == 0 and sender.stats.dropped_events == 0

    listing = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "siprec_bridge.cli",
        "spool",
        "--dir",
        str(tmp_path / "spool"),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await listing.communicate()
    lines = out.decode().splitlines()
    assert listing.returncode == 0
    assert lines[-1].startswith("1 spooled stream(s)"), lines
    assert f"call {call_id} " in lines[0] and "from frame 0 (target down" in lines[0], lines
    assert "complete" in lines[0]

    (entry,) = Spool(tmp_path / "spool").list()
    assert entry.from_frame == 0 and entry.frames == sender.stats.spooled_frames
    samples, rate = read_wav(entry.path / "audio.wav")
    check_audio(samples, rate, "spooled call")
    manifest = json.loads((entry.path / "spool.json").read_text())
    (opening,) = manifest["opening"]
    assert json.loads(opening)["call_id"] == call_id
    records = [json.loads(line) for line in (entry.path / "events.jsonl").read_text().splitlines()]
    messages = [json.loads(m) for r in records for m in r["event"]["messages"]]
    assert [m["type"] for m in messages] == ["dtmf", "dtmf", "dtmf", "stop"]
    assert "".join(m["digit"] for m in messages[:3]) == digits_of(PCAP)
    assert [m["position_ms"] for m in messages[:3]] == [1000, 2000, 3000]
    assert all(
        r["position"] * 20 > m["position_ms"]
        for r, m in zip(records[:3], messages[:3], strict=True)
    )
    assert messages[-1]["reason"] == "bye" and messages[-1]["duration_ms"] == entry.frames * 20
    assert records[-1]["position"] == entry.frames
