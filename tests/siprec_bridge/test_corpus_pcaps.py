"""Every corpus pcap replayed through one running bridge into the demo consumer (issue 3).

The cases live in ``vectors/corpus_expectations.json`` (section ``pcaps``). RTP-only captures
are wrapped in a synthesised SIPREC INVITE (``replay(wrap=True)``); long captures are cut to a
few seconds (``max_duration``, ``start``) because the bridge paces audio by wall clock. All
replays run at once against one bridge on 127.0.0.1 (and one on ::1 for the IPv6 cases), in a
module fixture; the tests then check each recording against the packets that were sent:

* the call was answered (or refused with the expected status), ended by our BYE;
* streams and labels, packets per stream sent == expected == received by the bridge, no
  loss, no undecodable packets;
* the WAV lasts as long as the RTP sent (by RTP time), at the expected sample rate;
* its samples match an independent decode of the payloads sent (G.711 from the ITU-T G.711
  segment rules written out below, G.722 with libg722 directly), placed by RTP timestamp:
  normalised correlation ≥ 0.98 and the same level, so neither silence nor noise passes; the
  G.722 high band (> 4 kHz) survives at 16 kHz;
* RFC 4733 digits, durations and positions equal those in the file.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import G722
import numpy as np
import numpy.typing as npt
import pytest
import uvloop
from testkit.audio import read_wav, rms
from testkit.bridge import bridge_settings

import sdp
from siprec_bridge.app import Bridge
from siprec_bridge.consumer import CallSummary, ConsumerServer
from siprec_bridge.replay import (
    RecordedCall,
    ReplayError,
    ReplayResult,
    load_call,
    prepare_call,
    replay,
    wrap_rtp,
)
from siprec_bridge.siprec.metadata import RecordingMetadata, parse_metadata
from siprec_bridge.siprec.multipart import extract_recording_body
from siprec_bridge.siprec.session import join

HERE = Path(__file__).resolve().parent
CORPUS = (HERE.parents[1] / ".." / "shared" / "siprec-corpus" / "pcap").resolve()
SPEC: dict[str, Any] = json.loads((HERE / "vectors" / "corpus_expectations.json").read_text())[
    "pcaps"
]
CASES: dict[str, dict[str, Any]] = {case["id"]: case for case in SPEC["cases"]}

RTP_V4 = 47000  # RTP port ranges of the two bridges (other suites use 43000-44999)
RTP_V6 = 47600
MIN_CORRELATION = 0.99  # per 0.5 s chunk: bit-exact gives 1.0, A-law read as μ-law ~0.9
MIN_MATCHING_CHUNKS = 0.75  # late packets concealed on a loaded machine spoil a few chunks
MAX_LAG_S = 0.1  # the drift correction may shift a leg on a loaded machine
LATE_BYE_S = 0.4  # frames fall due by wall clock until the bridge handles the BYE
IDLE_RMS = 16  # twice the level of G.711 A-law idle code 0xD5 (±8)

needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not present at {CORPUS}")


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = ipv6_loopback()


# --------------------------------------------------------------------------------------------
# Independent reference decoding


def ulaw_reference(payload: bytes) -> npt.NDArray[np.int16]:
    """ITU-T G.711 §2 μ-law expansion: bias 0x84, sign in bit 7, bits inverted."""
    u = ~np.frombuffer(payload, np.uint8).astype(np.int32) & 0xFF
    magnitude = (((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 7)
    return np.where(u & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


def alaw_reference(payload: bytes) -> npt.NDArray[np.int16]:
    """ITU-T G.711 §2 A-law expansion: even bits inverted, sign bit set for positive."""
    a = np.frombuffer(payload, np.uint8).astype(np.int32) ^ 0x55
    exponent, mantissa = (a >> 4) & 7, a & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


@dataclass
class Sent:
    """What the replayer sent on one stream, reconstructed from the packets."""

    audio: npt.NDArray[np.int16]
    """Decoded payloads placed by RTP timestamp from the first packet (zeros between)."""
    span_s: float
    """RTP time from the first packet to the end of the last audio or event."""
    digits: list[tuple[str, int, int]] = field(default_factory=list)
    """RFC 4733 events: (digit, onset ms after the first packet, duration ms)."""


DIGITS = "0123456789*#ABCD"


def sent_on(call: RecordedCall, stream: int, rate: int) -> Sent:
    """Decode stream ``stream`` of ``call`` (PCMU, PCMA, G.722; PT 101 = RFC 4733)."""
    pieces: list[tuple[int, npt.NDArray[np.int16]]] = []
    events: dict[int, tuple[int, int]] = {}
    g722 = G722.G722(rate, 64000)
    ts0: int | None = None
    end = 0
    for packet in call.packets:
        if packet.stream != stream:
            continue
        data = packet.data
        payload_type, (timestamp,) = data[1] & 0x7F, struct.unpack("!I", data[4:8])
        ts0 = timestamp if ts0 is None else ts0
        offset = (timestamp - ts0) & 0xFFFFFFFF
        payload = data[12:]
        if payload_type == 101:
            event, duration = payload[0], struct.unpack("!H", payload[2:4])[0]
            events[offset] = (event, max(duration, events.get(offset, (0, 0))[1]))
            end = max(end, offset + duration)
            continue
        if payload_type == 0:
            pcm = ulaw_reference(payload)
        elif payload_type == 8:
            pcm = alaw_reference(payload)
        elif payload_type == 9:
            pcm = np.frombuffer(g722.decode(bytes(payload)), np.int16)
        else:
            continue  # comfort noise: no reference
        pieces.append((offset * rate // 8000, pcm))
        end = max(end, offset + len(payload))  # one octet per 8 kHz tick for all three
    audio = np.zeros(max((o + len(p) for o, p in pieces), default=0), np.int16)
    for start, pcm in pieces:
        audio[start : start + len(pcm)] = pcm
    digits = [
        (DIGITS[event], offset // 8, duration // 8)
        for offset, (event, duration) in sorted(events.items())
    ]
    return Sent(audio, end / 8000, digits)


def chunk_correlations(
    reference: npt.NDArray[np.int16], output: npt.NDArray[np.int16], rate: int
) -> list[float]:
    """Per 0.5 s chunk of ``reference`` that is not silence: the highest normalised correlation
    with ``output`` within ``±MAX_LAG_S`` of the same position. Chunks, not the whole signal:
    one drift correction of the bridge (a short skip or silence) moves only the audio after it.
    """
    size, max_lag = rate // 2, int(MAX_LAG_S * rate)
    y_all = output.astype(np.float64)
    result = []
    for start in range(0, len(reference) - size + 1, size):
        x = reference[start : start + size].astype(np.float64)
        if rms(x) <= IDLE_RMS:
            continue
        low = max(0, start - max_lag)
        y = y_all[low : start + size + max_lag]
        if len(y) < size:
            result.append(0.0)
            continue
        dots = np.correlate(y, x, mode="valid")
        energy = np.convolve(y * y, np.ones(size), mode="valid")
        result.append(float(np.max(dots / np.sqrt(np.dot(x, x) * np.maximum(energy, 1.0)))))
    return result


def high_band_fraction(samples: npt.NDArray[np.int16], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    frequencies = np.fft.rfftfreq(len(samples), 1 / rate)
    return float(spectrum[frequencies > 4000].sum() / (spectrum.sum() or 1.0))


# --------------------------------------------------------------------------------------------
# The run: every case at once


@dataclass
class Outcome:
    result: ReplayResult | None
    error: str | None
    summary: CallSummary | None
    events: list[dict[str, Any]]


async def start_bridge(consumer: ConsumerServer, host: str, rtp_low: int) -> Bridge:
    listen = f"[{host}]:0" if ":" in host else f"{host}:0"
    bridge = Bridge(bridge_settings(consumer.port, rtp_low=rtp_low, sip__listen=listen))
    await bridge.start()
    return bridge


def load(case: Mapping[str, Any]) -> RecordedCall:
    """The call a case replays: read before any replay starts (parsing a 1 MB capture holds
    the interpreter for a while, which would delay the packets of calls already running)."""
    options = case["replay"]
    return prepare_call(
        CORPUS / case["pcap"],
        options.get("wrap", False),
        options.get("start", 0.0),
        options.get("max_duration"),
    )


async def replay_case(
    case: Mapping[str, Any], call: RecordedCall, bridges: Mapping[str, Bridge]
) -> Outcome:
    options = case["replay"]
    host = "::1" if options.get("ipv6") else "127.0.0.1"
    try:
        result = await replay(
            call,
            (host, bridges[host].sip_port),
            transport=options.get("transport", "udp"),
            tcp_segment=options.get("tcp_segment"),
            local_host=host,
            call_id_suffix=f"-{case['id']}",
        )
    except ReplayError as exc:
        return Outcome(exc.result, str(exc), None, [])
    return Outcome(result, None, None, [])


async def replay_all(out: Path, calls: Mapping[str, RecordedCall]) -> dict[str, Outcome]:
    cases = [CASES[case_id] for case_id in calls]
    consumer = ConsumerServer("127.0.0.1", 0, out)
    await consumer.start()
    bridges: dict[str, Bridge] = {}
    try:
        bridges["127.0.0.1"] = await start_bridge(consumer, "127.0.0.1", RTP_V4)
        if HAS_IPV6:
            bridges["::1"] = await start_bridge(consumer, "::1", RTP_V6)
        outcomes = await asyncio.gather(*(replay_case(c, calls[c["id"]], bridges) for c in cases))
        recorded = sum(1 for o in outcomes if o.error is None)
        await consumer.wait_for(recorded, timeout=15)
    finally:
        for bridge in bridges.values():
            await bridge.stop()
        await consumer.close()
    by_call = {s.call_id: s for s in consumer.summaries}
    for outcome in outcomes:
        if outcome.result is not None:
            outcome.summary = by_call.get(outcome.result.calls[0].call_id)
        if outcome.summary is not None:
            entries = json.loads(outcome.summary.events_path.read_text())
            outcome.events = [e["message"] for e in entries if e.get("message")]
    return {c["id"]: o for c, o in zip(cases, outcomes, strict=True)}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """All cases replayed concurrently, once per module (a few seconds of wall time)."""
    calls = {
        case_id: load(case)
        for case_id, case in CASES.items()
        if HAS_IPV6 or not case["replay"].get("ipv6")
    }
    return uvloop.run(replay_all(tmp_path_factory.mktemp("corpus-pcaps"), calls))


# --------------------------------------------------------------------------------------------
# What the replayer makes of the captures (pure)


def offer_of(call: RecordedCall) -> tuple[sdp.SessionDescription, RecordingMetadata]:
    body = extract_recording_body(call.invite.headers.get("Content-Type"), call.invite.body)
    assert body.sdp is not None and body.metadata is not None
    return sdp.parse(body.sdp), parse_metadata(body.metadata)


@needs_corpus
@pytest.mark.parametrize(
    ("pcap", "formats", "ptime"),
    [
        ("miarec/09a_2833_dtmf.pcap", ["0", "101"], 20),
        ("miarec/10a_g722.pcap", ["9"], 20),
        ("sipp/g711a.pcap", ["8"], 30),
        ("sipp/dtmf_2833_star.pcap", ["0", "101"], None),  # events need an audio format
    ],
)
def test_wrapped_capture_offers_what_its_rtp_carries(
    pcap: str, formats: list[str], ptime: int | None
) -> None:
    call = wrap_rtp(CORPUS / pcap)
    offer, metadata = offer_of(call)
    (media,) = offer.media
    assert media.formats == formats
    assert media.ptime == ptime
    assert media.direction == "sendonly" and media.label == "1"
    if "101" in formats:
        assert media.rtpmaps()[101] == sdp.RtpMap(101, "telephone-event", 8000)
    (stream,) = call.streams
    assert stream.packets == len(call.packets) > 0
    ((label, sender),) = [(s.label, s.participant_id) for s in join(offer, metadata).streams]
    assert label == "1" and sender == metadata.participants[0].participant_id
    assert call.requests[0].request is call.invite and call.answer_time is None


@needs_corpus
def test_wrapped_capture_with_both_directions_has_two_streams() -> None:
    call = wrap_rtp(CORPUS / "heplify" / "sip_ipv4_tcp.pcap")  # its SIP is ignored
    offer, metadata = offer_of(call)
    assert [(m.port, m.formats, m.label) for m in offer.media] == [
        (6050, ["8", "13"], "1"),
        (6000, ["8", "13"], "2"),
    ]
    assert [s.packets for s in call.streams] == [42, 24]
    assert len(metadata.participants) == 2


def test_excerpt_keeps_the_window_and_hangs_up_at_its_end() -> None:
    call = load_call(HERE.parents[1] / "pcaps" / "siprec_pcmu.pcap")
    assert call.answer_time is not None
    cut = call.excerpt(1.0, 2.0)
    assert [s.packets for s in cut.streams] == [100, 100]
    assert [r.request.method for r in cut.requests] == ["INVITE"]  # the BYE was later
    low = call.answer_time + 1.0
    kept = [p for p in call.packets if low <= p.time < low + 2.0]
    assert [(p.time - 1.0, p.data) for p in kept] == [(p.time, p.data) for p in cut.packets]
    assert cut.end_time == pytest.approx(call.answer_time + 2.0)
    assert call.excerpt(0.0, 60.0).end_time == call.end_time
    with pytest.raises(ReplayError):
        call.excerpt(-1.0)
    with pytest.raises(ReplayError):
        call.excerpt(0.0, 0.0)


@needs_corpus
def test_unbracketed_ipv6_via_of_the_corpus_parses() -> None:
    call = load_call(CORPUS / "heplify" / "sip_ipv6_udp.pcap")
    via = call.invite.top_via
    assert (via.host, via.port) == ("fe80:0:0:0:21a:a0ff:fe07:32e0", 5060)


# --------------------------------------------------------------------------------------------
# The checks


@needs_corpus
def test_every_corpus_pcap_is_replayed_or_excused() -> None:
    found = {str(p.relative_to(CORPUS)) for p in CORPUS.glob("*/*.pcap")}
    covered = {c["pcap"] for c in CASES.values()} | set(SPEC["not_replayed"])
    assert found == covered


@needs_corpus
@pytest.mark.integration
@pytest.mark.parametrize("case_id", sorted(CASES))
def test_corpus_pcap_through_the_bridge(case_id: str, outcomes: dict[str, Outcome]) -> None:
    case = CASES[case_id]
    if case_id not in outcomes:
        pytest.skip("no IPv6 loopback on this machine")
    expect, outcome = case["expect"], outcomes[case_id]
    assert outcome.result is not None, outcome.error
    (report,) = outcome.result.calls
    if expect["status"] != 200:
        assert report.statuses == (("INVITE", expect["status"]),)
        assert outcome.summary is None
        return
    assert outcome.error is None
    assert report.statuses == (("INVITE", 200), ("BYE", 200))
    assert report.packets_sent == expect["packets"]
    summary = outcome.summary
    assert summary is not None, "no recording reached the consumer"
    assert summary.stop_reason == "bye"
    assert summary.labels == expect["labels"]
    assert summary.sample_rate == expect["sample_rate"]
    (stop,) = [m for m in outcome.events if m["type"] == "stop"]
    for channel, stats in enumerate(stop["streams"]):
        assert stats["packets"] == list(expect["packets"].values())[channel]
        assert stats["lost"] == 0
        assert stats.get("bad", 0) == stats.get("wrong_payload_type", 0) == 0
    check_audio(case, outcome.result.call, summary, outcome.events)


def check_audio(
    case: Mapping[str, Any], call: RecordedCall, summary: CallSummary, events: list[dict[str, Any]]
) -> None:
    expect = case["expect"]
    assert summary.wav_path is not None
    samples, rate = read_wav(summary.wav_path)
    duration = len(samples) / rate
    dtmf = [m for m in events if m["type"] == "dtmf"]
    assert "".join(m["digit"] for m in dtmf) == expect["dtmf"]
    for channel in range(len(call.streams)):
        sent = sent_on(call, channel, rate)
        if not call.packets:
            assert summary.frames == 0  # call time starts at the first RTP packet
            continue
        # Audio runs from the first packet to the end of the last one in RTP time, and on
        # (silence) until the BYE: the replayer hangs up call.end_time after the answer.
        first = min(p.time for p in call.packets)
        origin = call.answer_time if call.answer_time is not None else 0.0
        bye_s = call.end_time - max(origin, first)
        assert sent.span_s - 0.04 <= duration <= max(sent.span_s, bye_s) + LATE_BYE_S, (
            duration,
            sent.span_s,
            bye_s,
        )
        on_stream = [m for m in dtmf if m["label"] == summary.labels[channel]]
        assert [(d, ms) for d, _, ms in sent.digits] == [
            (m["digit"], m["duration_ms"]) for m in on_stream
        ]
        for (_, onset, _), message in zip(sent.digits, on_stream, strict=True):
            assert abs(message["position_ms"] - onset) <= 20
        if not expect["audio"]:
            continue
        output = samples[:, channel]
        assert rms(sent.audio) > IDLE_RMS  # the window is not silence
        correlations = chunk_correlations(sent.audio, output, rate)
        matching = sum(c >= MIN_CORRELATION for c in correlations)
        assert correlations and matching >= MIN_MATCHING_CHUNKS * len(correlations), [
            round(c, 3) for c in correlations
        ]
        assert 0.8 < rms(output) / rms(sent.audio) < 1.2
        if expect.get("wideband"):
            sent_high = high_band_fraction(sent.audio, rate)
            assert sent_high > 1e-3
            assert 0.5 < high_band_fraction(output, rate) / sent_high < 2
