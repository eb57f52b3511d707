"""rtp.srtp: SRTP/SRTCP unprotect (RFC 3711) on the corpus captures and on our own fixtures.

Our fixtures are protected with pylibsrtp as an independent sender; the receiver must give back
exactly what was sent, sample for sample once decoded by a Leg.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pylibsrtp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtp.codecs import alaw_decode, encoder_for
from rtp.errors import RtpError
from rtp.leg import Leg, Timeline
from rtp.packet import build_packet
from rtp.rtcp import NTP_UNIX_OFFSET
from rtp.srtp import SUPPORTED_SUITES, SrtpError, SrtpReceiver

UdpPacket = tuple[float, tuple[str, int], bytes]
UdpFlowPacket = tuple[float, tuple[str, int], tuple[str, int], bytes]

# pcap/srtp/marseillaise-srtp.pcap: key from SOURCES.md (srtp-decrypt's Makefile check target).
MARSEILLAISE_KEY = "aSBrbm93IGFsbCB5b3VyIGxpdHRsZSBzZWNyZXRz"
WEBRTC = "pcap/srtp/WebRTC_PCMA_p2p_SDES_Call_1"
SUITE_80 = "AES_CM_128_HMAC_SHA1_80"

# Independent of rtp.srtp: pylibsrtp profile, master key+salt octets, SRTP and SRTCP octets
# after the MKI (RFC 3711 §3.1: the HMAC tag; RFC 7714 §8.1, §9.1: nothing for AEAD).
PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30, 10, 10),
    "AES_CM_128_HMAC_SHA1_32": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 30, 4, 10),
    "AEAD_AES_128_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 28, 0, 0),
    "AEAD_AES_256_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44, 0, 0),
}
SOURCE = ("192.0.2.1", 4000)


def _key(suite: str) -> bytes:
    return bytes((7 * i + 3) & 0xFF for i in range(PROFILES[suite][1]))


def _sender(suite: str) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=_key(suite),
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=PROFILES[suite][0],
    )
    return pylibsrtp.Session(policy)


def _receiver(suite: str, **mki: int) -> SrtpReceiver:
    return SrtpReceiver(suite, base64.b64encode(_key(suite)).decode(), **mki)


def _tone_packets(count: int, *, ssrc: int = 0x1234) -> list[bytes]:
    """PCMU packets of a 440 Hz tone, 20 ms each."""
    t = np.arange(count * 160) / 8000
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    payload = encoder_for("PCMU").encode(pcm)
    return [
        build_packet(
            payload_type=0,
            sequence=100 + i,
            timestamp=5000 + 160 * i,
            ssrc=ssrc,
            payload=payload[160 * i : 160 * (i + 1)],
        )
        for i in range(count)
    ]


def _sender_report(ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHIQIII", 0x80, 200, 6, ssrc, 0xE0000000 << 32, 5000, 1, 160)


def _play(leg: Leg, packets: Sequence[tuple[float, bytes]], end: float) -> npt.NDArray[np.int16]:
    """Feed (arrival, datagram) pairs from SOURCE, reading frames as they become due."""
    frames: list[npt.NDArray[np.int16]] = []

    def read_due(now: float) -> None:
        while (due := leg.frame_due(len(frames))) is not None and due <= now:
            frames.append(leg.read_frame(len(frames)).copy())

    for now, data in packets:
        read_due(now)
        leg.feed(data, SOURCE, now)
    read_due(end)
    return np.concatenate(frames)


def _new_leg(srtp: SrtpReceiver | None = None, **kwargs: str) -> Leg:
    return Leg(Timeline(), payload_types={0: "PCMU"}, out_rate=8000, srtp=srtp, **kwargs)


# --- what makes audio "not noise" ---------------------------------------------------------


def _seconds(pcm: npt.NDArray[np.int16], min_rms: float = 100.0) -> list[tuple[float, float]]:
    """(spectral flatness, share of power below 1 kHz) per active second of 8 kHz audio."""
    result = []
    window = np.hanning(8000)
    freqs = np.fft.rfftfreq(8000, 1 / 8000)
    for start in range(0, len(pcm) - 7999, 8000):
        second = pcm[start : start + 8000].astype(np.float64)
        if np.sqrt(np.mean(second**2)) < min_rms:
            continue
        power = np.abs(np.fft.rfft(second * window)) ** 2 + 1e-9
        flatness = float(np.exp(np.mean(np.log(power))) / np.mean(power))
        result.append((flatness, float(power[freqs < 1000].sum() / power.sum())))
    return result


def _is_audio(pcm: npt.NDArray[np.int16], min_seconds: int) -> bool:
    """Music and speech: tonal (flatness well below white noise's ~0.56) and mostly < 1 kHz."""
    seconds = _seconds(pcm)
    if len(seconds) < min_seconds:
        return False
    flatness = float(np.median([f for f, _ in seconds]))
    low = float(np.median([share for _, share in seconds]))
    return flatness < 0.25 and low > 0.5


# --- corpus captures ------------------------------------------------------------------------


def test_marseillaise_every_packet_authenticates(
    read_udp: Callable[[str], list[UdpPacket]],
) -> None:
    packets = read_udp("pcap/srtp/marseillaise-srtp.pcap")
    receiver = SrtpReceiver(SUITE_80, MARSEILLAISE_KEY)
    plain = [receiver.unprotect(data) for _, _, data in packets]
    assert len(plain) == 11888
    assert all(len(p) == len(d) - 10 for p, (_, _, d) in zip(plain, packets, strict=True))
    assert {p[1] & 0x7F for p in plain} == {8}  # PCMA
    assert {p[8:12] for p in plain} == {bytes.fromhex("deadbeef")}
    music = alaw_decode(b"".join(p[12:] for p in plain))
    assert _is_audio(music, min_seconds=200)
    # The check has teeth: the ciphertext read as A-law is noise.
    noise = alaw_decode(b"".join(d[12:-10] for _, _, d in packets))
    assert not _is_audio(noise, min_seconds=1)
    # With another key nothing authenticates.
    wrong = SrtpReceiver(SUITE_80, base64.b64encode(bytes(30)).decode())
    with pytest.raises(SrtpError, match="authentication") as info:
        wrong.unprotect(packets[0][2])
    assert not info.value.replay


def test_marseillaise_through_a_leg(read_udp: Callable[[str], list[UdpPacket]]) -> None:
    packets = read_udp("pcap/srtp/marseillaise-srtp.pcap")[:1500]  # 30 s
    leg = Leg(
        Timeline(),
        payload_types={8: "PCMA"},
        out_rate=8000,
        srtp=SrtpReceiver(SUITE_80, MARSEILLAISE_KEY),
        expected_host="10.1.1.1",
    )
    frames: list[npt.NDArray[np.int16]] = []
    for now, addr, data in packets:
        leg.feed(data, addr, now)
        while (due := leg.frame_due(len(frames))) is not None and due <= now:
            frames.append(leg.read_frame(len(frames)).copy())
    stats = leg.stats
    assert stats.packets == 1500 and stats.srtp_errors == 0 and stats.bad == 0
    assert stats.lost == 0 and stats.late == 0
    assert _is_audio(np.concatenate(frames), min_seconds=25)


def _webrtc_keys(corpus: Path) -> dict[int, str]:
    keys = {}
    for line in (corpus / f"{WEBRTC}.keys.txt").read_text().splitlines():
        if line.startswith("ssrc="):
            ssrc, inline = (field.split("=", 1)[1] for field in line.split())
            keys[int(ssrc, 16)] = inline
    return keys


def test_webrtc_call_both_directions_with_rtcp_mux(
    corpus: Path, read_udp_flows: Callable[[str], list[UdpFlowPacket]]
) -> None:
    """A real SDES call: PCMA + CN, RTCP multiplexed on the RTP port, STUN on the same port."""
    keys = _webrtc_keys(corpus)
    peers = {
        ("192.168.1.142", 56185): keys[0xD092D296],
        ("192.168.1.130", 60644): keys[0x522B93AB],
    }
    timeline = Timeline()
    legs = {
        peer: Leg(
            timeline,
            payload_types={8: "PCMA"},
            cn_payload_types=(13,),
            out_rate=8000,
            expected_host=peer[0],
            srtp=SrtpReceiver(SUITE_80, key),
        )
        for peer, key in peers.items()
    }
    packets = [p for p in read_udp_flows(f"{WEBRTC}.pcap") if p[1] in peers and p[2] in peers]
    frames: dict[tuple[str, int], list[npt.NDArray[np.int16]]] = {peer: [] for peer in peers}
    first = next(iter(legs.values()))
    index = 0
    for now, src, _, data in packets:
        legs[src].feed(data, src, now)
        while (due := first.frame_due(index)) is not None and due <= now:
            for peer, leg in legs.items():
                frames[peer].append(leg.read_frame(index).copy())
            index += 1
    for peer, leg in legs.items():
        sent = [d for _, src, _, d in packets if src == peer]
        stun = sum(1 for d in sent if d[0] < 0x80)
        rtcp = sum(1 for d in sent if d[0] >= 0x80 and 192 <= d[1] <= 223)
        stats = leg.stats
        assert stun > 0 and rtcp == 4
        assert stats.srtp_errors == 0 and stats.srtp_replays == 0
        assert stats.bad == stun  # STUN is not RTP
        assert stats.packets == len(sent) - stun - rtcp
        assert stats.rtcp == rtcp and stats.rtcp_bad == 0 and stats.rtcp_byes == 1
        assert stats.sender_reports >= 1 and stats.sender_packet_count > 100
        assert stats.lost == 0
        assert _is_audio(np.concatenate(frames[peer]), min_seconds=4)
    # Both endpoints' wallclocks are NTP-synchronised: their SRs agree with arrival time to a
    # few ms, and call time 0 is the capture time of the first packet on their clock.
    assert timeline.ntp_epoch is not None
    assert max(leg.stats.ntp_lead_ms for leg in legs.values()) < 5
    first_rtp = min(now for now, _, _, d in packets if d[0] >= 0x80 and d[1] < 192)
    assert timeline.ntp_epoch - NTP_UNIX_OFFSET == pytest.approx(first_rtp, abs=0.05)


# --- our own fixtures -----------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUPPORTED_SUITES)
def test_round_trip_sample_for_sample(suite: str) -> None:
    packets = _tone_packets(50)
    sender = _sender(suite)
    protected = [sender.protect(p) for p in packets]
    assert all(p not in s for p, s in zip(packets, protected, strict=True))
    times = [100.0 + 0.02 * i for i in range(50)]
    srtp_leg = _new_leg(_receiver(suite))
    plain_leg = _new_leg()
    decrypted = _play(srtp_leg, list(zip(times, protected, strict=True)), 101.065)
    reference = _play(plain_leg, list(zip(times, packets, strict=True)), 101.065)
    assert np.array_equal(decrypted, reference)
    assert np.abs(decrypted).max() > 7000
    stats = srtp_leg.stats
    assert stats.packets == 50 and stats.srtp_errors == 0 and stats.concealed_frames == 0
    assert stats.bytes == sum(len(p) for p in protected)  # on the wire
    # SRTCP, multiplexed on the RTP port and on the RTCP port.
    srtp_leg.feed(sender.protect_rtcp(_sender_report()), SOURCE, 102.0)
    srtp_leg.feed_rtcp(sender.protect_rtcp(_sender_report()), ("192.0.2.1", 4001), 102.1)
    assert srtp_leg.stats.sender_reports == 2 and srtp_leg.stats.srtp_errors == 0


def test_tampered_forged_and_replayed_packets_are_counted() -> None:
    packets = _tone_packets(50)
    sender = _sender(SUITE_80)
    protected = [sender.protect(p) for p in packets]
    stream: list[tuple[float, bytes]] = []
    for i, data in enumerate(protected):
        now = 100.0 + 0.02 * i
        if 10 <= i < 15:
            tampered = bytearray(data)
            tampered[20] ^= 0x01  # one payload bit
            data = bytes(tampered)
        stream.append((now, data))
        if i == 20:
            stream.append((now + 0.001, data))  # replayed
    leg = _new_leg(_receiver(SUITE_80))
    pcm = _play(leg, stream, 101.065)
    stats = leg.stats
    assert stats.srtp_errors == 5 and stats.srtp_replays == 1
    assert stats.packets == 45 and stats.duplicates == 0 and stats.lost == 5
    assert stats.concealed_frames == 5
    assert not pcm[10 * 160 : 15 * 160].any() and pcm[15 * 160 : 16 * 160].any()
    # A tampered SRTCP packet is counted too, and not parsed.
    rtcp = bytearray(sender.protect_rtcp(_sender_report()))
    rtcp[10] ^= 0x80
    leg.feed_rtcp(bytes(rtcp), SOURCE, 102.0)
    assert leg.stats.srtp_errors == 6 and leg.stats.sender_reports == 0


def test_forged_packet_does_not_latch_the_source() -> None:
    packets = [_sender(SUITE_80).protect(p) for p in _tone_packets(3)]
    leg = _new_leg(_receiver(SUITE_80))
    forged = _sender("AES_CM_128_HMAC_SHA1_32").protect(_tone_packets(1)[0])
    leg.feed(forged, ("203.0.113.9", 5000), 100.0)
    for i, data in enumerate(packets):
        leg.feed(data, SOURCE, 100.02 + 0.02 * i)
    stats = leg.stats
    assert stats.srtp_errors == 1 and stats.packets == 3 and stats.wrong_source == 0
    assert leg.frame_due(0) == pytest.approx(100.02 + 0.02 + 0.06)  # epoch: first real packet


def _with_mki(packet: bytes, mki: bytes, tail: int) -> bytes:
    cut = len(packet) - tail
    return packet[:cut] + mki + packet[cut:]


@pytest.mark.parametrize("suite", SUPPORTED_SUITES)
def test_mki_is_checked_and_stripped(suite: str) -> None:
    _, _, rtp_tail, rtcp_tail = PROFILES[suite]
    sender = _sender(suite)
    packet = _tone_packets(1)[0]
    receiver = _receiver(suite, mki=258, mki_length=2)
    assert receiver.unprotect(_with_mki(sender.protect(packet), b"\x01\x02", rtp_tail)) == packet
    report = _sender_report()
    protected = _with_mki(sender.protect_rtcp(report), b"\x01\x02", rtcp_tail)
    assert receiver.unprotect_rtcp(protected) == report
    other = _with_mki(sender.protect(_tone_packets(2)[1]), b"\x01\x03", rtp_tail)
    with pytest.raises(SrtpError, match="unknown MKI"):
        receiver.unprotect(other)
    with pytest.raises(SrtpError, match="too short"):
        receiver.unprotect(packet[:12])


@pytest.mark.parametrize(
    ("suite", "key", "mki", "message"),
    [
        ("AES_256_CM_HMAC_SHA1_80", "A" * 64, {}, "unsupported SRTP suite"),
        (SUITE_80, "not base64!", {}, "not base64"),
        (SUITE_80, base64.b64encode(bytes(29)).decode(), {}, "needs 30"),
        ("AEAD_AES_128_GCM", base64.b64encode(bytes(30)).decode(), {}, "needs 28"),
        (SUITE_80, MARSEILLAISE_KEY, {"mki": 1}, "needs a length"),
        (SUITE_80, MARSEILLAISE_KEY, {"mki": 256, "mki_length": 1}, "does not fit"),
    ],
)
def test_bad_receiver_arguments(suite: str, key: str, mki: dict[str, int], message: str) -> None:
    with pytest.raises(SrtpError, match=message):
        SrtpReceiver(suite, key, **mki)


def test_gcm_key_without_base64_padding() -> None:
    key = base64.b64encode(_key("AEAD_AES_128_GCM")).decode()
    assert key.endswith("=")
    receiver = SrtpReceiver("AEAD_AES_128_GCM", key.rstrip("="))
    packet = _tone_packets(1)[0]
    assert receiver.unprotect(_sender("AEAD_AES_128_GCM").protect(packet)) == packet


def test_oversized_packet() -> None:
    with pytest.raises(SrtpError, match="1500"):
        _receiver(SUITE_80).unprotect(_tone_packets(1)[0] + bytes(1400))


def test_srtp_error_is_an_rtp_error() -> None:
    assert issubclass(SrtpError, RtpError)


@given(st.binary(max_size=300), st.booleans())
def test_fuzz_raises_only_srtp_error(data: bytes, rtcp: bool) -> None:
    receiver = _receiver(SUITE_80, mki=1, mki_length=1) if rtcp else _receiver(SUITE_80)
    with pytest.raises(SrtpError):
        if rtcp:
            receiver.unprotect_rtcp(data)
        else:
            receiver.unprotect(data)
