"""Every dialect and audio shape end to end: pcap replay → bridge → a raw WebSocket consumer.

One replayed call fans out (``[[routes]]``) to many targets at once, each on its own path of a
:class:`~testkit.recorder.RecordingServer`; the consumer side decodes what arrived with the
framing of ``docs/dialects.md`` (:mod:`testkit.wire`) and checks the opening messages, each
track's tone (``siprec_dtmf.pcap``: the caller Alice sends 440 Hz and the digits 1 5 #, the
callee Bob 1000 Hz), the audio duration against what was sent and the closing messages. Since
every target of a call is fed the same frames, the targets are also compared sample for sample
(a μ-law track equals the μ-law of the native PCM, a mixed stream the clipped sum...).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
from testkit.bridge import bridge_settings
from testkit.calls import (
    DURATION_SLACK_MS,
    PCAPS,
    body_hz,
    digits_of,
    high_band_db,
    legs_of,
    quiet_gc,  # noqa: F401 (a fixture, used by pytestmark)
    route_by_suffix,
    sent_duration_ms,
    spectrum_peaks,
    wait_until,
)
from testkit.recorder import Message, RecordedConnection, RecordingServer
from testkit.wire import (
    Decoded,
    decode_audiosocket,
    decode_native,
    decode_rcms,
    decode_twilio,
    decode_voipbin,
    decode_voxology,
)

from rtp.codecs import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from siprec_bridge.app import Bridge
from siprec_bridge.replay import ReplayResult, replay
from ws_out.dialects import DIALECTS
from ws_out.dialects.twilio import WavixDialect
from ws_out.dialects.voipbin import VoipbinDialect

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("quiet_gc")]

PCAP = "siprec_dtmf.pcap"
CALLER_HZ, CALLEE_HZ = (float(leg["tone_hz"]) for leg in legs_of(PCAP))
SENT_MS = sent_duration_ms(PCAP)
MARK_AFTER = 10  # the consumer sends a Twilio mark (and a clear) after this many media messages


def check_duration(decoded: Decoded, what: str) -> None:
    assert abs(decoded.duration_ms - SENT_MS) <= DURATION_SLACK_MS, (what, decoded.duration_ms)


def check_tracks(decoded: Decoded, what: str) -> None:
    """Column 0 is the caller (440 Hz), column 1 the callee (1000 Hz)."""
    assert decoded.pcm.shape[1] == 2, what
    assert abs(body_hz(decoded.pcm[:, 0], decoded.rate) - CALLER_HZ) < 15, what
    assert abs(body_hz(decoded.pcm[:, 1], decoded.rate) - CALLEE_HZ) < 15, what


def check_mixed(decoded: Decoded, what: str) -> None:
    """One mono stream carrying both parties: both tones stand out of the spectrum."""
    assert decoded.pcm.shape[1] == 1, what
    caller, callee = spectrum_peaks(decoded.pcm[:, 0], decoded.rate, (CALLER_HZ, CALLEE_HZ))
    assert caller > -6 and callee > -6, (what, caller, callee)


def mixed_of(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """The sum of the legs, saturated (docs/dialects.md, mode ``mixed``)."""
    total = pcm.astype(np.int32).sum(axis=1)
    mixed: npt.NDArray[np.int16] = np.clip(total, -32768, 32767).astype(np.int16)
    return mixed


async def twilio_consumer(conn: RecordedConnection, message: Message) -> None:
    """The consumer side of Twilio Media Streams: after MARK_AFTER media messages, a ``mark``
    then a ``clear`` (Twilio and Wavix spell the stream id differently)."""
    if conn.sent or not isinstance(message, str) or '"media"' not in message:
        return
    if sum(isinstance(m, str) and '"event":"media"' in m for m in conn.messages) < MARK_AFTER:
        return
    start = json.loads(conn.messages[1])
    if "streamSid" in start:
        ids: dict[str, str] = {"streamSid": start["streamSid"]}
    else:
        ids = {"stream_id": start["stream_id"]}
    await conn.send(json.dumps({"event": "mark", **ids, "mark": {"name": "after-10"}}))
    await conn.send(json.dumps({"event": "clear", **ids}))


@contextmanager
def registered(**factories: Any) -> Iterator[None]:
    """Dialect variants under a configurable name while a bridge is built and its call starts.

    The settings name the six dialects (``output.dialect``) without options, so ``wavix`` and
    the VoIPBIN encapsulations ``rtp`` and ``audiosocket`` are reached by registering them under
    ``twilio`` / ``voipbin`` in ``ws_out.dialects.DIALECTS`` (read by ``get_dialect`` when the
    bridge checks its targets and when a call opens its connections).
    """
    registry = cast(dict[str, Any], DIALECTS)
    saved = {name: registry[name] for name in factories}
    registry.update(factories)
    try:
        yield
    finally:
        registry.update(saved)


async def start_call(
    stack: AsyncExitStack,
    server: RecordingServer,
    spool: Path,
    rtp_low: int,
    suffix: str,
    targets: list[dict[str, Any]],
) -> asyncio.Task[ReplayResult]:
    """A bridge (stopped by ``stack``) routing the ``suffix`` call to ``targets``, and the
    replay of that call, once its connections are open. Unrouted calls go to ``/``."""
    routes = [route_by_suffix(suffix.strip("-"), suffix, targets)]
    settings = bridge_settings(
        server.port, rtp_low=rtp_low, routes=routes, output__spool_dir=str(spool)
    )
    bridge = Bridge(settings)
    await bridge.start()
    stack.push_async_callback(bridge.stop)
    call = asyncio.create_task(
        replay(PCAPS / PCAP, ("127.0.0.1", bridge.sip_port), call_id_suffix=suffix)
    )
    await wait_until(lambda: bridge.calls or call.done(), timeout=5)
    return call


def only(server: RecordingServer, path: str) -> RecordedConnection:
    (conn,) = server.on(path)
    assert conn.close_code == 1000, (path, conn.close_code)
    return conn


def sequence(values: list[Any]) -> list[int]:
    return [int(v) for v in values]


async def test_every_dialect_end_to_end(tmp_path: Path) -> None:
    """native, twilio, voxology, voipbin (sln), audiosocket and rcms on one call; wavix with
    voipbin (rtp) and voipbin (audiosocket) on two more calls, each in its own bridge, at the
    same time (see :func:`registered`)."""
    server = RecordingServer(respond=twilio_consumer)
    await server.start()
    standard: list[dict[str, Any]] = [
        {"url": server.url("/native")},  # [output] defaults: native, stereo, L16, 8 kHz, 20 ms
        {"url": server.url("/twilio"), "dialect": "twilio", "mode": "mux", "encoding": "PCMU"},
        {"url": server.url("/voxology"), "dialect": "voxology", "mode": "mux", "encoding": "PCMU"},
        {"url": server.url("/voipbin-sln"), "dialect": "voipbin", "mode": "mixed"},
        {
            "url": server.url("/audiosocket"),
            "dialect": "audiosocket",
            "mode": "mixed",
            "rate": 16000,
        },
        {"url": server.url("/rcms"), "dialect": "rcms", "mode": "mux", "encoding": "PCMU"},
    ]
    wavix_rtp: list[dict[str, Any]] = [
        {"url": server.url("/wavix"), "dialect": "twilio", "mode": "mux", "rate": 24000},
        {
            "url": server.url("/voipbin-rtp"),
            "dialect": "voipbin",
            "mode": "mixed",
            "encoding": "PCMU",
        },
    ]
    voipbin_socket: list[dict[str, Any]] = [
        {"url": server.url("/voipbin-audiosocket"), "dialect": "voipbin", "mode": "mixed"}
    ]
    async with AsyncExitStack() as stack:
        stack.push_async_callback(server.close)
        with registered(twilio=WavixDialect, voipbin=partial(VoipbinDialect, encapsulation="rtp")):
            call2 = await start_call(stack, server, tmp_path, 50200, "-wavix", wavix_rtp)
        with registered(voipbin=partial(VoipbinDialect, encapsulation="audiosocket")):
            call3 = await start_call(stack, server, tmp_path, 50400, "-socket", voipbin_socket)
        call1 = await start_call(stack, server, tmp_path, 50000, "-std", standard)
        results = await asyncio.gather(call1, call2, call3)
        assert server.on("/") == [], "routes were not applied: the calls went to [output]"
        await server.wait_closed(len(standard) + len(wavix_rtp) + len(voipbin_socket), timeout=10)
    call_id = dict(
        zip(("std", "wavix", "socket"), (r.calls[0].call_id for r in results), strict=True)
    )

    native = decode_native(only(server, "/native").messages)
    start = native.texts[0]
    assert start["protocol"] == "siprec-bridge/1" and start["call_id"].endswith("-std")
    assert start["format"] == {
        "encoding": "L16",
        "sample_rate": 8000,
        "channels": 2,
        "frame_ms": 20,
    }
    assert [p["name"] for p in start["participants"]] == ["Alice", "Bob"]
    assert [(s["label"], s["channel"]) for s in start["streams"]] == [("1", 0), ("2", 1)]
    check_tracks(native, "native")
    check_duration(native, "native")
    assert native.digits == digits_of(PCAP)
    stop = native.texts[-1]
    assert stop["type"] == "stop" and stop["reason"] == "bye"
    assert stop["duration_ms"] == native.frames * 20
    assert [m["seq"] for m in native.texts] == list(range(len(native.texts)))
    session = uuid.UUID(start["session_id"])
    reference = native.pcm

    # -- twilio: μ-law per track, sequence numbers, chunk/timestamp, dtmf, mark → mark
    conn = only(server, "/twilio")
    twilio = decode_twilio(conn.messages)
    assert twilio.texts[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    body = twilio.texts[1]["start"]
    assert body["callSid"] == "CA" + session.hex and body["streamSid"] == "MZ" + session.hex
    assert body["tracks"] == ["inbound", "outbound"]
    assert body["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert body["customParameters"]["call_id"] == call_id["std"]
    assert body["customParameters"]["inbound_aor"] == legs_of(PCAP)[0]["aor"]
    assert twilio.payload_sizes == {160}
    check_tracks(twilio, "twilio")
    check_duration(twilio, "twilio")
    assert np.array_equal(twilio.pcm, ulaw_decode(ulaw_encode(reference.ravel())).reshape(-1, 2))
    numbered = twilio.texts[1:]
    assert sequence([m["sequenceNumber"] for m in numbered]) == list(range(1, len(numbered) + 1))
    inbound = [
        m["media"] for m in twilio.of_type("event", "media") if m["media"]["track"] == "inbound"
    ]
    assert sequence([m["chunk"] for m in inbound]) == list(range(1, twilio.frames + 1))
    assert sequence([m["timestamp"] for m in inbound]) == list(range(0, 20 * twilio.frames, 20))
    assert twilio.digits == digits_of(PCAP)
    assert {m["dtmf"]["track"] for m in twilio.of_type("event", "dtmf")} == {"inbound_track"}
    check_mark_answered(conn, twilio)
    assert twilio.texts[-1]["event"] == "stop"
    assert twilio.texts[-1]["stop"]["callSid"] == body["callSid"]

    # -- wavix: the same messages in snake_case, L16 at 24 kHz, event_time on each
    conn = only(server, "/wavix")
    wavix = decode_twilio(conn.messages)
    connected, start = wavix.texts[0], wavix.texts[1]
    assert connected["sequence_number"] == 0 and "event_time" in connected
    assert start["call_id"] == call_id["wavix"] and start["stream_type"] == "oneway"
    assert start["channel"] == "both" and start["tracks"] == ["inbound", "outbound"]
    assert start["media_format"] == {"encoding": "audio/x-l16", "sample_rate": 24000, "channels": 1}
    assert all(
        "event_time" in m and m.get("stream_id", start["stream_id"]) == start["stream_id"]
        for m in wavix.texts
    )
    numbered = wavix.texts[1:]
    assert [m["sequence_number"] for m in numbered] == list(range(1, len(numbered) + 1))
    assert wavix.payload_sizes == {24000 * 20 // 1000 * 2}
    check_tracks(wavix, "wavix")
    check_duration(wavix, "wavix")
    assert wavix.digits == digits_of(PCAP)
    check_mark_answered(conn, wavix)
    assert wavix.texts[-1]["event"] == "stop"

    # -- voxology: init_stream, start_track per track, live_track, stop_track, end_stream
    voxology = decode_voxology(only(server, "/voxology").messages)
    init = voxology.texts[0]
    assert init["stream_id"] == str(session) and init["call_id"] == call_id["std"]
    assert init["tracks"] == ["inbound", "outbound"] and init["stream_data"] == {}
    starts = voxology.of_type("event", "start_track")
    assert [(m["name"], m["track_sequence_number"]) for m in starts] == [
        ("inbound", 1),
        ("outbound", 1),
    ]
    assert starts[0]["media_format"] == {"encoding": "audio/x-mulaw", "sample_rate": 8000}
    assert [m["stream_sequence_number"] for m in voxology.texts] == list(
        range(1, len(voxology.texts) + 1)
    )
    live = [m for m in voxology.of_type("event", "live_track") if m["name"] == "outbound"]
    assert [m["track_sequence_number"] for m in live] == list(range(2, voxology.frames + 2))
    assert np.array_equal(voxology.pcm, twilio.pcm)
    stops = voxology.of_type("event", "stop_track")
    assert [m["name"] for m in stops] == ["inbound", "outbound"]
    assert all(
        m["duration"] == voxology.frames * 20 and m["end_time"] > m["start_time"] for m in stops
    )
    assert voxology.texts[-1] == {
        "event": "end_stream",
        "stream_sequence_number": len(voxology.texts),
        "stream_id": str(session),
    }

    # -- voipbin: both parties mixed into one 8 kHz mono stream, three encapsulations
    sln = decode_voipbin(only(server, "/voipbin-sln").messages, "sln")
    assert sln.payload_sizes == {320}
    check_mixed(sln, "voipbin sln")
    assert np.array_equal(sln.pcm[:, 0], mixed_of(reference))
    rtp = decode_voipbin(only(server, "/voipbin-rtp").messages, "rtp")
    assert rtp.payload_sizes == {160}
    check_mixed(rtp, "voipbin rtp")
    check_duration(rtp, "voipbin rtp")
    first = rtp.rtp[0]
    assert [(h[0], h[1]) for h in rtp.rtp] == [(0x80, 0x80)] + [(0x80, 0)] * (rtp.frames - 1)
    assert [h[2] for h in rtp.rtp] == [(first[2] + i) & 0xFFFF for i in range(rtp.frames)]
    assert [h[3] for h in rtp.rtp] == [(first[3] + 160 * i) & 0xFFFFFFFF for i in range(rtp.frames)]
    assert {h[4] for h in rtp.rtp} == {first[4]}
    socket = decode_voipbin(only(server, "/voipbin-audiosocket").messages, "audiosocket")
    assert socket.kinds[0] == 0x01 and socket.kinds[-1] == 0x00
    assert set(socket.kinds[1:-1]) == {0x10, 0x03} and socket.rate == 8000
    assert socket.digits == digits_of(PCAP)
    check_mixed(socket, "voipbin audiosocket")
    check_duration(socket, "voipbin audiosocket")

    # -- audiosocket: UUID, slin at 16 kHz (kind 0x12), DTMF, hangup
    conn = only(server, "/audiosocket")
    audiosocket = decode_audiosocket(conn.messages)
    assert conn.messages[0] == b"\x01\x00\x10" + session.bytes
    assert audiosocket.kinds[-1] == 0x00 and conn.messages[-1] == b"\x00\x00\x00"
    assert set(audiosocket.kinds[1:-1]) == {0x12, 0x03} and audiosocket.rate == 16000
    assert audiosocket.payload_sizes == {640}
    assert audiosocket.digits == digits_of(PCAP)
    check_mixed(audiosocket, "audiosocket")
    check_duration(audiosocket, "audiosocket")

    # -- rcms: one socket, endpoints tagged in binary frames, JSON envelope
    rcms = decode_rcms(only(server, "/rcms").messages)
    start = rcms.texts[0]
    assert (start["version"], start["sessionId"], start["sequenceNumber"]) == (
        "1.0",
        str(session),
        1,
    )
    params = start["parameters"]
    assert params["callId"] == call_id["std"] and params["resumed"] is False
    assert params["positionMs"] == 0
    assert params["mediaFormat"] == {"encoding": "PCMU", "sampleRate": 8000, "frameMs": 20}
    endpoints = [(e["endpointId"], e["label"], e["role"], e["name"]) for e in params["endpoints"]]
    assert endpoints == [(1, "1", "caller", "Alice"), (2, "2", "callee", "Bob")]
    assert [m["sequenceNumber"] for m in rcms.texts] == list(range(1, len(rcms.texts) + 1))
    assert rcms.payload_sizes == {160}
    assert np.array_equal(rcms.pcm, twilio.pcm)
    assert rcms.digits == digits_of(PCAP)
    end = rcms.texts[-1]
    assert end["type"] == "session.end" and end["parameters"]["reason"] == "bye"
    assert end["parameters"]["durationMs"] == rcms.frames * 20
    assert [e["packets"] for e in end["parameters"]["endpoints"]] == [
        leg["packets"] for leg in legs_of(PCAP)
    ]


def check_mark_answered(conn: RecordedConnection, decoded: Decoded) -> None:
    """The consumer's ``mark`` is answered once, after the media it had received; ``clear``
    gets no answer and the stream goes on."""
    (sent_after, _), _ = conn.sent
    marks = [i for i, m in enumerate(conn.messages) if isinstance(m, str) and '"mark"' in m]
    assert len(marks) == 1, marks
    assert marks[0] >= sent_after
    assert decoded.of_type("event", "mark")[0]["mark"] == {"name": "after-10"}
    assert not decoded.of_type("event", "clear")
    check_duration(decoded, "after mark and clear")


async def test_modes_and_formats(tmp_path: Path) -> None:
    """One call to every audio shape at once: modes, rates, encodings and frame lengths."""
    server = RecordingServer()
    await server.start()
    shapes: Mapping[str, dict[str, Any]] = {
        "/stereo": {},
        "/per-leg": {"mode": "per-leg"},
        "/mixed": {"mode": "mixed"},
        "/mux": {"dialect": "rcms", "mode": "mux"},
        "/16k": {"rate": 16000},
        "/24k": {"rate": 24000},
        "/48k": {"rate": 48000, "mode": "per-leg"},
        "/pcmu": {"encoding": "PCMU"},
        "/pcma": {"encoding": "PCMA"},
        "/10ms": {"frame_ms": 10},
        "/100ms": {"frame_ms": 100},
    }
    targets = [{"url": server.url(path)} | shape for path, shape in shapes.items()]
    async with AsyncExitStack() as stack:
        stack.push_async_callback(server.close)
        call = await start_call(stack, server, tmp_path, 50600, "-shapes", targets)
        await call
        assert server.on("/") == [], "routes were not applied: the call went to [output]"
        await server.wait_closed(len(targets) + 2, timeout=10)  # per-leg: two connections each

    stereo = decode_native(only(server, "/stereo").messages)
    check_tracks(stereo, "stereo")
    check_duration(stereo, "stereo")
    reference = stereo.pcm
    samples = reference.shape[0]

    legs = sorted((decode_native(c.messages) for c in server.on("/per-leg")), key=label_of)
    assert [label_of(d) for d in legs] == ["1", "2"]
    for channel, leg in enumerate(legs):
        assert leg.texts[0]["mode"] == "per-leg" and leg.texts[0]["format"]["channels"] == 1
        assert np.array_equal(leg.pcm[:, 0], reference[:, channel])
    assert legs[0].digits == digits_of(PCAP) and legs[1].digits == ""

    mixed = decode_native(only(server, "/mixed").messages)
    assert [s["channel"] for s in mixed.texts[0]["streams"]] == [0, 0]
    check_mixed(mixed, "mixed")
    assert np.array_equal(mixed.pcm[:, 0], mixed_of(reference))

    mux = decode_rcms(only(server, "/mux").messages)
    assert mux.tracks == ["1", "2"] and mux.encoding == "L16"
    assert np.array_equal(mux.pcm, reference)

    for path, rate in (("/16k", 16000), ("/24k", 24000)):
        resampled = decode_native(only(server, path).messages)
        assert resampled.rate == rate and resampled.payload_sizes == {rate // 50 * 2 * 2}
        check_tracks(resampled, path)
        assert resampled.frames == stereo.frames, path
        for channel in (0, 1):
            assert high_band_db(resampled.pcm[:, channel], rate, 4600) < -60, (path, channel)
    for conn in server.on("/48k"):
        leg = decode_native(conn.messages)
        assert leg.rate == 48000 and leg.payload_sizes == {960 * 2}
        assert leg.frames == stereo.frames
        tone = CALLER_HZ if label_of(leg) == "1" else CALLEE_HZ
        assert abs(body_hz(leg.pcm[:, 0], 48000) - tone) < 15
        assert high_band_db(leg.pcm[:, 0], 48000, 4600) < -60

    for path, encode, decode in (
        ("/pcmu", ulaw_encode, ulaw_decode),
        ("/pcma", alaw_encode, alaw_decode),
    ):
        g711 = decode_native(only(server, path).messages)
        assert g711.texts[0]["format"]["encoding"] == path[1:].upper()
        assert g711.payload_sizes == {320}
        expected = decode(encode(reference.ravel())).reshape(-1, 2)
        assert np.array_equal(g711.pcm, expected), path

    for path, frame_ms in (("/10ms", 10), ("/100ms", 100)):
        rechunked = decode_native(only(server, path).messages)
        per_frame = 8 * frame_ms
        assert rechunked.payload_sizes == {per_frame * 2 * 2}
        assert rechunked.frames == -(-samples // per_frame), path  # the last frame is completed
        assert np.array_equal(rechunked.pcm[:samples], reference), path
        assert not rechunked.pcm[samples:].any(), path  # ...with silence
        assert rechunked.texts[-1]["duration_ms"] == rechunked.frames * frame_ms
        positions = [m["position_ms"] for m in rechunked.texts if m["type"] == "dtmf"]
        assert positions == [m["position_ms"] for m in stereo.texts if m["type"] == "dtmf"]


def label_of(decoded: Decoded) -> str:
    (stream,) = decoded.texts[0]["streams"]
    return str(stream["label"])
