"""The committed fixture pcaps: reproducible, and holding what ``manifest.json`` says."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pylibsrtp
import pytest
from testkit.audio import dominant_hz

import sdp
from rtp.codecs import decoder_for
from rtp.packet import parse_header
from siprec_bridge.fixtures import FIXTURES, MANIFEST_NAME, generate_all, main
from siprec_bridge.replay import RecordedCall, load_call
from siprec_bridge.siprec.multipart import extract_recording_body

ROOT = Path(__file__).resolve().parents[2]
PCAPS = ROOT / "pcaps"
MANIFEST: dict[str, Any] = json.loads((PCAPS / MANIFEST_NAME).read_text())
NAMES = [spec.name for spec in FIXTURES]
DTMF_PT = 101
# Independent of rtp.srtp: pylibsrtp profile and the SRTP tag octets of each suite used.
SRTP_PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 10),
    "AEAD_AES_128_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16),
}


@pytest.fixture(scope="module")
def calls() -> dict[str, RecordedCall]:
    return {name: load_call(PCAPS / name) for name in NAMES}


def leg_packets(call: RecordedCall, index: int) -> list[bytes]:
    return [p.data for p in call.packets if p.stream == index]


def srtp_receiver(suite: str, key_b64: str) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=base64.b64decode(key_b64),
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
        srtp_profile=SRTP_PROFILES[suite][0],
    )
    return pylibsrtp.Session(policy)


def rtp_of(call: RecordedCall, index: int, leg: dict[str, Any]) -> list[bytes]:
    """The leg's RTP packets, unprotected with the manifest's key for an SRTP leg."""
    packets = leg_packets(call, index)
    if "srtp" not in leg:
        return packets
    receiver = srtp_receiver(leg["srtp"]["suite"], leg["srtp"]["key"])
    return [receiver.unprotect(data) for data in packets]


def test_regenerating_gives_the_committed_bytes(tmp_path: Path) -> None:
    written = generate_all(tmp_path)
    assert sorted(p.name for p in written) == sorted([*NAMES, MANIFEST_NAME])
    for path in written:
        assert path.read_bytes() == (PCAPS / path.name).read_bytes(), path.name


def test_command_line_writes_the_same_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in printed) == sorted([*NAMES, MANIFEST_NAME])
    assert (tmp_path / "siprec_g722.pcap").read_bytes() == (PCAPS / "siprec_g722.pcap").read_bytes()


def test_manifest_describes_every_fixture() -> None:
    assert sorted(MANIFEST) == sorted(NAMES)
    for entry in MANIFEST.values():
        assert [leg["label"] for leg in entry["legs"]] == ["1", "2"]
        assert [leg["tone_hz"] for leg in entry["legs"]] == [440.0, 1000.0]


@pytest.mark.parametrize("name", NAMES)
def test_signalling_is_a_complete_siprec_call(name: str, calls: dict[str, RecordedCall]) -> None:
    call = calls[name]
    entry = MANIFEST[name]
    assert call.call_id == entry["call_id"]
    assert [r.request.method for r in call.requests] == ["INVITE", "ACK", "BYE"]
    assert call.src == (entry["src"]["ip"], entry["src"]["sip_port"])
    assert call.srs == (entry["srs"]["ip"], entry["srs"]["sip_port"])
    invite = call.invite
    assert invite.headers.get("Require") == "siprec"
    assert "+sip.src" in (invite.headers.get("Contact") or "")
    body = extract_recording_body(invite.headers.get("Content-Type"), invite.body)
    assert body.problems == []
    assert body.metadata_content_type == "application/rs-metadata+xml"
    assert body.metadata is not None
    for leg in entry["legs"]:
        assert leg["aor"].encode() in body.metadata
    assert body.sdp is not None
    offer = sdp.parse(body.sdp)
    assert [m.label for m in offer.media] == ["1", "2"]
    assert [offer.direction_of(m) for m in offer.media] == ["sendonly", "sendonly"]
    assert [m.proto for m in offer.media] == [leg.get("proto", "RTP/AVP") for leg in entry["legs"]]
    assert [m.ptime for m in offer.media] == [20, 20]
    assert all(m.rtpmaps()[DTMF_PT].encoding == "telephone-event" for m in offer.media)
    assert all(m.rtpmaps()[entry["payload_type"]].encoding == entry["codec"] for m in offer.media)
    assert call.answer is not None
    assert [call.answer.direction_of(m) for m in call.answer.media] == ["recvonly", "recvonly"]
    assert [m.label for m in call.answer.media] == ["1", "2"]


@pytest.mark.parametrize("name", NAMES)
def test_legs_match_the_manifest(name: str, calls: dict[str, RecordedCall]) -> None:
    call = calls[name]
    entry = MANIFEST[name]
    assert len(call.streams) == len(entry["legs"])
    for stream, leg in zip(call.streams, entry["legs"], strict=True):
        assert stream.label == leg["label"]
        assert stream.offered_port == leg["src_port"]
        assert stream.answered_port == leg["dst_port"]
        assert stream.packets == leg["packets"]
        assert stream.ssrcs == (leg["ssrc"],)
        headers = [parse_header(data) for data in leg_packets(call, stream.index)]
        audio = [h for h in headers if h.payload_type == leg["payload_type"]]
        assert len(audio) == leg["audio_packets"]
        assert headers[0].sequence == leg["first_sequence"]
        assert headers[0].timestamp == leg["first_timestamp"]
        assert headers[0].marker
        seen = {h.sequence for h in headers}
        assert seen.isdisjoint(leg["lost_sequences"])
        assert len(leg["lost_sequences"]) == leg["lost"]
    assert call.ignored_datagrams == 0


@pytest.mark.parametrize("name", NAMES)
def test_each_leg_carries_its_tone(name: str, calls: dict[str, RecordedCall]) -> None:
    call = calls[name]
    entry = MANIFEST[name]
    for index, leg in enumerate(entry["legs"]):
        decoder = decoder_for(entry["codec"])
        packets = sorted(
            (h.sequence, data[h.payload_offset : h.payload_end])
            for data in rtp_of(call, index, leg)
            if (h := parse_header(data)).payload_type == leg["payload_type"]
        )
        pcm = np.concatenate([decoder.decode(payload) for _, payload in packets])
        rate = entry["sample_rate"]
        assert len(pcm) == leg["audio_packets"] * rate * entry["ptime_ms"] // 1000
        body = pcm[rate // 10 :]  # skip the codec's start-up
        assert abs(dominant_hz(body, rate) - leg["tone_hz"]) < 5
        peak = 32767 * 10 ** (leg["level_dbfs"] / 20)
        assert abs(float(np.max(np.abs(body))) - peak) < 0.06 * peak


def test_dtmf_events(calls: dict[str, RecordedCall]) -> None:
    name = "siprec_dtmf.pcap"
    entry = MANIFEST[name]
    events = [
        (h, data[h.payload_offset : h.payload_end])
        for data in leg_packets(calls[name], 0)
        if (h := parse_header(data)).payload_type == entry["dtmf_payload_type"]
    ]
    assert len(events) == entry["legs"][0]["dtmf_packets"]
    assert not any(parse_header(d).payload_type == DTMF_PT for d in leg_packets(calls[name], 1))
    digits = "0123456789*#"
    for expected in entry["dtmf_events"]:
        mine = [(h, p) for h, p in events if h.timestamp == expected["timestamp"]]
        assert {digits[p[0]] for _, p in mine} == {expected["digit"]}
        assert mine[0][0].marker
        ends = [(h, p) for h, p in mine if p[1] & 0x80]
        assert len(ends) == expected["end_packets"]
        assert len({h.sequence for h, _ in ends}) == 1  # same sequence number, RFC 4733 §2.5.1.4
        assert int.from_bytes(ends[0][1][2:4], "big") == expected["duration_ms"] * 8
    assert [e["digit"] for e in entry["dtmf_events"]] == entry["dtmf"] == ["1", "5", "#"]


def test_loss_and_reordering(calls: dict[str, RecordedCall]) -> None:
    name = "siprec_loss_reorder.pcap"
    entry = MANIFEST[name]
    assert entry["lost_packets"] == sum(len(leg["lost_sequences"]) for leg in entry["legs"])
    for index, leg in enumerate(entry["legs"]):
        total = leg["packets"] + leg["lost"]
        assert leg["lost"] == round(0.05 * total)
        assert len(leg["reordered_sequences"]) * 2 == round(0.05 * total)
        order = [parse_header(d).sequence for d in leg_packets(calls[name], index)]
        for first, second in leg["reordered_sequences"]:
            assert order.index(second) == order.index(first) - 1
        swapped = {s for pair in leg["reordered_sequences"] for s in pair}
        in_order = [s for s in order if s not in swapped]
        assert in_order == sorted(in_order)


def test_leg2_starts_late_but_its_rtp_clock_started_with_leg1(
    calls: dict[str, RecordedCall],
) -> None:
    name = "siprec_leg2_late.pcap"
    entry = MANIFEST[name]
    call = calls[name]
    first = [next(p for p in call.packets if p.stream == i) for i in (0, 1)]
    assert abs((first[1].time - first[0].time) - 0.5) < 0.005
    leg1, leg2 = entry["legs"]
    assert (leg2["start_ms"], leg2["duration_ms"]) == (500, 3500)
    assert leg2["first_timestamp"] - leg2["timestamp_origin"] == 500 * 8
    assert parse_header(first[1].data).timestamp == leg2["first_timestamp"]
    assert leg1["packets"] - leg2["packets"] == 25


@pytest.mark.parametrize("name", NAMES)
def test_pcap_times_are_paced_and_jittered(name: str, calls: dict[str, RecordedCall]) -> None:
    times = np.array([p.time for p in calls[name].packets if p.stream == 1])
    gaps = np.diff(times)
    assert 0.019 < float(np.median(gaps)) < 0.021
    assert float(np.std(gaps[(gaps > 0.01) & (gaps < 0.03)])) > 0.0002  # not a perfect clock
    span = calls[name].end_time
    assert abs(span * 1000 - MANIFEST[name]["pcap_duration_ms"]) < 1


def test_srtp_offer_answer_and_protection(calls: dict[str, RecordedCall]) -> None:
    """SDES (RFC 4568): the offered crypto lines and the answer's are the manifest's; every
    packet authenticates with the key of the accepted line (RFC 3711 §3.3) and no other."""
    name = "siprec_srtp.pcap"
    entry = MANIFEST[name]
    call = calls[name]
    body = extract_recording_body(call.invite.headers.get("Content-Type"), call.invite.body)
    assert body.sdp is not None and call.answer is not None
    offer = sdp.parse(body.sdp)
    for index, (offered, answered, leg) in enumerate(
        zip(offer.media, call.answer.media, entry["legs"], strict=True)
    ):
        keys = leg["srtp"]
        assert offered.proto == answered.proto == "RTP/SAVP"
        assert offered.attributes_named("crypto") == [
            f"{c['tag']} {c['suite']} inline:{c['key']}" for c in keys["offered"]
        ]
        assert answered.attributes_named("crypto") == [
            f"{keys['tag']} {keys['suite']} inline:{keys['srs_key']}"
        ]
        chosen = keys["offered"][keys["tag"] - 1]
        assert (chosen["suite"], chosen["key"]) == (keys["suite"], keys["key"])
        packets = leg_packets(call, index)
        tag_octets = SRTP_PROFILES[keys["suite"]][1]
        assert {len(p) for p in packets} == {12 + 160 + tag_octets}
        assert len(rtp_of(call, index, leg)) == leg["packets"]
        wrong = srtp_receiver(keys["suite"], keys["srs_key"])
        with pytest.raises(pylibsrtp.Error):
            wrong.unprotect(packets[0])
    assert [leg["srtp"]["suite"] for leg in entry["legs"]] == [
        "AES_CM_128_HMAC_SHA1_80",
        "AEAD_AES_128_GCM",
    ]
    assert entry["legs"][0]["srtp"]["offered"][0]["suite"] == "AES_256_CM_HMAC_SHA1_80"
