"""End to end on loopback: pcap replay (real SIP + RTP over UDP) → bridge → demo consumer.

Expectations (tones, durations, labels) come from ``pcaps/manifest.json``, written by the same
generator that wrote the pcaps.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from testkit.audio import dominant_hz, read_wav, rms
from testkit.bridge import bridge_settings

from siprec_bridge.app import Bridge
from siprec_bridge.consumer import CallSummary, ConsumerServer
from siprec_bridge.replay import replay

ROOT = Path(__file__).resolve().parents[2]
PCAPS = ROOT / "pcaps"
MANIFEST: dict[str, Any] = json.loads((PCAPS / "manifest.json").read_text())

pytestmark = pytest.mark.integration


async def start_bridge(consumer: ConsumerServer, mode: str, rtp_low: int) -> Bridge:
    config = bridge_settings(consumer.port, rtp_low=rtp_low, mode=mode)
    bridge = Bridge(config)
    await bridge.start()
    return bridge


def legs_of(name: str) -> list[dict[str, Any]]:
    return list(MANIFEST[name]["legs"])


def sent_duration_ms(name: str) -> int:
    return max(int(leg["start_ms"]) + int(leg["duration_ms"]) for leg in legs_of(name))


def check_stereo_call(summary: CallSummary, name: str) -> None:
    """Each channel carries its leg's tone; the call lasts as long as what was sent."""
    samples, rate = read_wav(Path(summary.wav_path))
    legs = legs_of(name)
    assert samples.shape[1] == len(legs)
    duration_ms = 1000 * samples.shape[0] / rate
    # One frame of slack: the second leg may start a fraction of a frame after the first.
    events = json.loads(Path(summary.events_path).read_text())
    stop = [e["message"] for e in events if (e.get("message") or {}).get("type") == "stop"]
    assert abs(duration_ms - sent_duration_ms(name)) <= 40, (name, duration_ms, stop)
    for channel, leg in enumerate(legs):
        assert summary.labels[channel] == leg["label"]
        body = samples[rate // 4 : -rate // 4, channel]  # skip onsets and tails
        assert rms(body) > 1000, (name, channel)
        assert abs(dominant_hz(body, rate) - leg["tone_hz"]) < 15, (name, channel)
        onset = int(leg["start_ms"]) * rate // 1000
        if onset:  # a leg that starts late is silent until its first packet, then sounds
            assert rms(samples[: onset - rate // 20, channel]) < 50, (name, channel)
            assert rms(samples[onset + rate // 20 : onset + rate // 2, channel]) > 1000


async def test_all_fixtures_concurrently_in_stereo(consumer: ConsumerServer) -> None:
    """Every bundled pcap at once through one bridge: tones, channel order and durations."""
    bridge = await start_bridge(consumer, "stereo", 43000)
    names = sorted(MANIFEST)
    try:
        results = await asyncio.gather(
            *(
                replay(PCAPS / n, ("127.0.0.1", bridge.sip_port), call_id_suffix=f"-{i}")
                for i, n in enumerate(names)
            )
        )
        await consumer.wait_for(len(names), timeout=10)
    finally:
        await bridge.stop()
    by_call = {s.call_id: s for s in consumer.summaries}
    for name, result in zip(names, results, strict=True):
        (call,) = result.calls
        summary = by_call[call.call_id]
        assert summary.stop_reason == "bye"
        check_stereo_call(summary, name)
        events = json.loads(Path(summary.events_path).read_text())
        digits = "".join(
            e["message"]["digit"] for e in events if e["message"].get("type") == "dtmf"
        )
        assert digits == "".join(MANIFEST[name].get("dtmf", [])), name


async def test_loss_and_reordering_keep_duration(consumer: ConsumerServer) -> None:
    """5 % loss + reordering: gaps become silence, time stays continuous, stats count them."""
    name = "siprec_loss_reorder.pcap"
    bridge = await start_bridge(consumer, "stereo", 43400)
    try:
        await replay(PCAPS / name, ("127.0.0.1", bridge.sip_port))
        await consumer.wait_for(1, timeout=10)
    finally:
        await bridge.stop()
    (summary,) = consumer.summaries
    check_stereo_call(summary, name)
    events = json.loads(Path(summary.events_path).read_text())
    stop = next(e["message"] for e in events if e["message"]["type"] == "stop")
    lost = sum(s["lost"] for s in stop["streams"])
    assert lost == sum(int(leg.get("lost", 0)) for leg in legs_of(name))


async def test_per_leg_mode_opens_one_mono_stream_per_leg(consumer: ConsumerServer) -> None:
    name = "siprec_pcma.pcap"
    bridge = await start_bridge(consumer, "per-leg", 43600)
    try:
        await replay(PCAPS / name, ("127.0.0.1", bridge.sip_port))
        await consumer.wait_for(2, timeout=10)
    finally:
        await bridge.stop()
    assert len(consumer.summaries) == 2
    session_ids = {s.session_id for s in consumer.summaries}
    assert len(session_ids) == 1  # one recording session, two connections
    for leg in legs_of(name):
        (summary,) = [s for s in consumer.summaries if s.labels == [leg["label"]]]
        samples, rate = read_wav(Path(summary.wav_path))
        assert samples.shape[1] == 1
        assert abs(dominant_hz(samples[rate // 4 : -rate // 4, 0], rate) - leg["tone_hz"]) < 15


async def test_the_configured_caller_takes_the_first_channel(consumer: ConsumerServer) -> None:
    """``output.caller`` (a label, participant id or AoR part) decides the channel order."""
    name = "siprec_pcmu.pcap"
    bridge = Bridge(bridge_settings(consumer.port, rtp_low=43800, output__caller="2"))
    await bridge.start()
    try:
        await replay(PCAPS / name, ("127.0.0.1", bridge.sip_port))
        await consumer.wait_for(1, timeout=10)
    finally:
        await bridge.stop()
    (summary,) = consumer.summaries
    assert summary.labels == ["2", "1"]
    samples, rate = read_wav(Path(summary.wav_path))
    tones = {leg["label"]: leg["tone_hz"] for leg in legs_of(name)}
    for channel, label in enumerate(("2", "1")):
        body = samples[rate // 4 : -rate // 4, channel]
        assert abs(dominant_hz(body, rate) - tones[label]) < 15
