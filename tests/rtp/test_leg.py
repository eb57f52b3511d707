"""rtp.leg: scenario files (vectors/jitter/*.txt) plus generated streams and fuzzing.

Scenario language (one command per line, ``#`` starts a comment, numbers may be hex)::

    leg NAME [pt=PT:CODEC ...] [dtmf=PT] [out=8000] [delay=60] [host=IP] [max_buffer=2000]
    P NAME TIME SEQ TS [ssrc=1] [pt=PT] [n=160] [from=IP:PORT] [label=SEQ] [m]
    X NAME TIME HEX [from=IP:PORT]          a raw datagram
    end TIME                                 read every frame due by TIME
    G NAME INDEX TOKEN...                    expected content of frame INDEX
    S NAME FIELD=VALUE...                    expected LegStats fields (and last_index)

All legs of a file share one Timeline (20 ms frames). A fake ticker reads every leg's frames,
from index 0, as soon as they are due (``Leg.frame_due``), before each P/X and at ``end``.
``P`` sends ``n`` identical PCMU octets ``0x80 + label % 127``; the default source of the i-th
leg is ``10.0.0.<i+1>:4000``. A ``G`` token is ``LABEL`` or ``_`` (silence) for the whole
frame, or ``LABEL*COUNT`` / ``_*COUNT`` for a run of samples. ``G`` and ``S`` are checked at the
end.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtp.codecs import decoder_for, encoder_for, ulaw_decode, ulaw_encode
from rtp.errors import RtpError
from rtp.leg import Leg, Timeline
from rtp.packet import build_packet, parse_header

UdpPacket = tuple[float, tuple[str, int], bytes]
SCENARIOS = sorted((Path(__file__).parent / "vectors" / "jitter").glob("*.txt"))
SOURCE = ("10.0.0.1", 4000)


def _code(label: int) -> int:
    return 0x80 + label % 127


@dataclass
class _LegState:
    leg: Leg
    source: tuple[str, int]
    default_pt: int
    next_index: int = 0
    frames: dict[int, npt.NDArray[np.int16]] = field(default_factory=dict)


class Scenario:
    """Runs one scenario file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.timeline = Timeline()
        self.legs: dict[str, _LegState] = {}
        self.frame_checks: list[tuple[int, str, int, list[str]]] = []
        self.stat_checks: list[tuple[int, str, dict[str, str]]] = []

    def run(self) -> None:
        for number, raw in enumerate(self.path.read_text().splitlines(), 1):
            words = raw.split("#", 1)[0].split()
            if words:
                self._command(number, words)
        for number, name, index, tokens in self.frame_checks:
            self._check_frame(number, name, index, tokens)
        for number, name, expected in self.stat_checks:
            state = self.legs[name]
            stats = state.leg.stats
            actual = {key: str(getattr(stats, key, None)) for key in expected}
            if "last_index" in expected:
                actual["last_index"] = str(state.leg.last_index)
            assert actual == expected, f"{self.path.name}:{number}"

    def _command(self, number: int, words: list[str]) -> None:
        command, args = words[0], words[1:]
        options = dict(w.split("=", 1) for w in args if "=" in w)
        plain = [w for w in args if "=" not in w]
        if command == "leg":
            self._leg(plain[0], args[1:])
        elif command in ("P", "X"):
            state = self.legs[plain[0]]
            now = float(plain[1])
            self._tick(now)
            source = state.source
            if "from" in options:
                host, port = options["from"].rsplit(":", 1)
                source = (host, int(port))
            if command == "X":
                data = bytes.fromhex(plain[2])
            else:
                seq, ts = int(plain[2], 0), int(plain[3], 0)
                label = int(options.get("label", str(seq)), 0)
                data = build_packet(
                    payload_type=int(options.get("pt", str(state.default_pt))),
                    sequence=seq,
                    timestamp=ts,
                    ssrc=int(options.get("ssrc", "1"), 0),
                    payload=bytes([_code(label)]) * int(options.get("n", "160")),
                    marker="m" in plain[4:],
                )
            state.leg.feed(data, source, now)
        elif command == "end":
            self._tick(float(plain[0]))
        elif command == "G":
            self.frame_checks.append((number, plain[0], int(plain[1]), plain[2:]))
        elif command == "S":
            self.stat_checks.append((number, plain[0], options))
        else:
            raise AssertionError(f"{self.path.name}:{number}: unknown command {command}")

    def _leg(self, name: str, args: list[str]) -> None:
        options: dict[str, str] = {}
        payload_types: dict[int, str] = {}
        for arg in args:
            key, value = arg.split("=", 1)
            if key == "pt":
                pt, codec = value.split(":")
                payload_types[int(pt)] = codec
            else:
                options[key] = value
        leg = Leg(
            self.timeline,
            payload_types=payload_types,
            out_rate=int(options.get("out", "8000")),
            dtmf_payload_type=int(options["dtmf"]) if "dtmf" in options else None,
            target_delay_ms=int(options.get("delay", "60")),
            expected_host=options.get("host"),
            max_buffer_ms=int(options.get("max_buffer", "2000")),
        )
        source = (f"10.0.0.{len(self.legs) + 1}", 4000)
        self.legs[name] = _LegState(leg, source, next(iter(payload_types)))

    def _tick(self, now: float) -> None:
        for state in self.legs.values():
            while (due := state.leg.frame_due(state.next_index)) is not None and due <= now:
                state.frames[state.next_index] = state.leg.read_frame(state.next_index).copy()
                state.next_index += 1

    def _check_frame(self, number: int, name: str, index: int, tokens: list[str]) -> None:
        where = f"{self.path.name}:{number}"
        frames = self.legs[name].frames
        assert index in frames, f"{where}: frame {index} of {name} was never read"
        frame = frames[index]
        expected: list[int] = []
        for token in tokens:
            label, _, count = token.partition("*")
            run = int(count) if count else len(frame)
            value = 0 if label == "_" else int(ulaw_decode(bytes([_code(int(label))]))[0])
            expected.extend([value] * run)
        assert frame.tolist() == expected, f"{where}: frame {index} of {name}"


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    Scenario(path).run()


# --- generated streams ---------------------------------------------------------------------------


def _pcmu(seq: int, ts: int, label: int, *, ssrc: int = 7, n: int = 160) -> bytes:
    return build_packet(
        payload_type=0,
        sequence=seq & 0xFFFF,
        timestamp=ts & 0xFFFFFFFF,
        ssrc=ssrc,
        payload=bytes([_code(label)]) * n,
    )


class Ticker:
    """Reads a leg's frames as they fall due, like the application's 20 ms ticker."""

    def __init__(self, leg: Leg) -> None:
        self.leg = leg
        self.frames: list[npt.NDArray[np.int16]] = []

    def until(self, now: float) -> None:
        while (due := self.leg.frame_due(len(self.frames))) is not None and due <= now:
            self.frames.append(self.leg.read_frame(len(self.frames)).copy())

    def labels(self) -> list[int | None]:
        """Per frame: the label of a frame filled by one packet, None for silence."""
        table = {int(ulaw_decode(bytes([_code(i)]))[0]): i for i in range(127)}
        out: list[int | None] = []
        for frame in self.frames:
            first = int(frame[0])
            assert (frame == first).all(), "frame mixes packets"
            out.append(None if first == 0 else table[first])
        return out


def test_five_percent_loss_keeps_frame_count() -> None:
    rng = random.Random(5)
    leg = Leg(Timeline(), payload_types={0: "PCMU"}, out_rate=8000)
    ticker = Ticker(leg)
    sent = 500
    lost = set(rng.sample(range(1, sent - 1), sent // 20))
    for i in range(sent):
        now = 10.0 + i * 0.02 + rng.uniform(0, 0.03)  # jitter below the 60 ms delay
        ticker.until(now)
        if i not in lost:
            leg.feed(_pcmu(40000 + i, 123456 + 160 * i, i), SOURCE, now)
    assert leg.last_index == sent - 1
    ticker.until(10.0 + sent * 0.02 + 0.1)
    labels = ticker.labels()[:sent]
    assert len(labels) == sent
    assert labels == [None if i in lost else i % 127 for i in range(sent)]
    stats = leg.stats
    assert stats.lost == len(lost) and stats.late == 0 and stats.packets == sent - len(lost)
    assert stats.concealed_frames >= len(lost) and stats.resyncs == 0
    assert 0 < stats.jitter_ms < 30


@pytest.mark.parametrize("ppm", [-2000, 2000])
def test_clock_drift_is_corrected(ppm: int) -> None:
    """A sender clock 0.2 % slow (packets arrive ever later) or fast (ever earlier)."""
    leg = Leg(Timeline(), payload_types={0: "PCMU"}, out_rate=8000)
    ticker = Ticker(leg)
    period = 0.02 * (1 + ppm / 1e6)
    sent = 3000  # 60 s: 120 ms of drift
    for i in range(sent):
        now = i * period
        ticker.until(now)
        leg.feed(_pcmu(i, 160 * i, i), SOURCE, now)
    stats = leg.stats
    assert stats.resyncs >= 1 and stats.timestamp_jumps == 0
    # Without correction a slow sender would lose everything after 60 ms of drift (30 s).
    assert stats.late < 20 and stats.overflow == 0
    if ppm < 0:  # fast sender: nothing waits longer than ~2 delays + a frame in the buffer
        ahead = (leg.last_index or 0) - len(ticker.frames)
        assert ahead <= 10


def test_network_stall_then_burst_does_not_move_audio() -> None:
    """1 s without packets, then the backlog in a burst (QUIRKS #42): the burst is late, the
    packets after it play at their RTP position; no re-anchoring, no resync."""
    leg = Leg(Timeline(), payload_types={0: "PCMU"}, out_rate=8000)
    ticker = Ticker(leg)
    arrivals = [(i * 0.02, i) for i in range(100)]
    arrivals += [(3.0 + i * 0.0001, i) for i in range(100, 150)]  # sent 2.0-2.98 s
    arrivals += [(i * 0.02, i) for i in range(150, 300)]
    for now, i in arrivals:
        ticker.until(now)
        leg.feed(_pcmu(i, 160 * i, i), SOURCE, now)
    ticker.until(6.2)
    labels = ticker.labels()
    assert labels[:100] == [i % 127 for i in range(100)]
    assert labels[150:300] == [i % 127 for i in range(150, 300)]
    stats = leg.stats
    assert stats.resyncs == 0 and stats.timestamp_jumps == 0 and stats.late > 40


def test_hold_without_timestamp_advance_is_re_anchored() -> None:
    """The sender pauses 30 s and resumes with the next sequence number and timestamp."""
    leg = Leg(Timeline(), payload_types={0: "PCMU"}, out_rate=8000)
    ticker = Ticker(leg)
    for i in range(100):
        now = i * 0.02 if i < 50 else 30 + i * 0.02
        ticker.until(now)
        leg.feed(_pcmu(i, 160 * i, i), SOURCE, now)
    ticker.until(32.2)
    labels = ticker.labels()
    resumed = round(30 / 0.02) + 50
    assert labels[resumed : resumed + 50] == [i % 127 for i in range(50, 100)]
    assert leg.stats.timestamp_jumps == 1 and leg.stats.late == 0


def _tone(freq: float, rate: int, seconds: float) -> npt.NDArray[np.int16]:
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _dominant_hz(pcm: npt.NDArray[np.int16], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize(
    ("codec", "pt", "out_rate"),
    [("PCMU", 0, 16000), ("PCMA", 8, 16000), ("G722", 9, 16000), ("G722", 9, 8000)],
)
def test_decode_and_resample_tone(codec: str, pt: int, out_rate: int) -> None:
    encoder = encoder_for(codec)
    rate = encoder.spec.sample_rate
    tone = _tone(1000, rate, 1.0)
    per_packet = rate // 50
    leg = Leg(Timeline(), payload_types={pt: codec}, out_rate=out_rate)
    ticker = Ticker(leg)
    for i in range(50):
        now = i * 0.02
        ticker.until(now)
        payload = encoder.encode(tone[i * per_packet : (i + 1) * per_packet])
        leg.feed(
            build_packet(payload_type=pt, sequence=i, timestamp=160 * i, ssrc=1, payload=payload),
            SOURCE,
            now,
        )
    ticker.until(1.065)
    assert len(ticker.frames) == 50
    pcm = np.concatenate(ticker.frames)
    assert all(len(f) == out_rate // 50 for f in ticker.frames)
    steady = pcm[out_rate // 10 : -out_rate // 10]
    assert abs(_dominant_hz(steady, out_rate) - 1000) < 20
    rms = float(np.sqrt(np.mean(steady.astype(np.float64) ** 2)))
    assert 4500 < rms < 6500
    assert leg.stats.concealed_frames == 0


def test_g722_decoding_is_in_order_despite_reordering() -> None:
    """Reordered G.722 packets give exactly the output of an in-order decode."""
    encoder = encoder_for("G722")
    tone = _tone(700, 16000, 0.4)
    payloads = [encoder.encode(tone[i * 320 : (i + 1) * 320]) for i in range(20)]
    reference = decoder_for("G722")
    expected = np.concatenate([reference.decode(p) for p in payloads])
    leg = Leg(Timeline(), payload_types={9: "G722"}, out_rate=16000)
    ticker = Ticker(leg)
    order = list(range(20))
    for i in range(0, 20, 2):
        order[i], order[i + 1] = order[i + 1], order[i]
    for n, i in enumerate(order):
        now = n * 0.02
        ticker.until(now)
        leg.feed(
            build_packet(
                payload_type=9, sequence=i, timestamp=160 * i, ssrc=1, payload=payloads[i]
            ),
            SOURCE,
            now,
        )
    ticker.until(0.6)
    # The first packet to arrive (seq 1) anchors at 0; seq 0 lands one frame before the start.
    got = np.concatenate(ticker.frames[:19])
    assert np.array_equal(got, expected[320:])


def test_frame_due_and_buffer_reuse() -> None:
    timeline = Timeline(frame_ms=10)
    leg = Leg(timeline, payload_types={0: "PCMU"}, out_rate=16000, target_delay_ms=40)
    assert leg.frame_due(0) is None and leg.last_index is None
    leg.feed(_pcmu(1, 80, 1, n=80), SOURCE, 5.0)  # anchored at call tick 0
    assert timeline.epoch == 5.0
    assert leg.frame_due(0) == pytest.approx(5.05)
    assert leg.frame_due(9) == pytest.approx(5.14)
    assert leg.last_index == 0
    frame = leg.read_frame(0)
    assert len(frame) == 160 and frame[40:].all()  # 80 ticks of PCMU at 16 kHz (2 ms delay)
    assert leg.read_frame(1) is frame  # one buffer, reused
    assert not frame[40:].any()
    other = Leg(timeline, payload_types={0: "PCMU"}, out_rate=8000)
    assert not other.read_frame(0).any() and other.last_index is None  # nothing received yet


def test_invalid_configuration() -> None:
    timeline = Timeline()
    with pytest.raises(RtpError):
        Leg(timeline, payload_types={0: "PCMU"}, out_rate=44100)
    with pytest.raises(RtpError):
        Leg(timeline, payload_types={18: "G729"}, out_rate=8000)
    with pytest.raises(RtpError):
        Leg(timeline, payload_types={}, out_rate=8000)
    with pytest.raises(RtpError):
        Leg(timeline, payload_types={0: "PCMU"}, out_rate=8000, dtmf_payload_type=0)
    with pytest.raises(RtpError):
        Leg(timeline, payload_types={0: "PCMU"}, out_rate=8000, target_delay_ms=3000)
    with pytest.raises(RtpError):
        Timeline(frame_ms=0)


def test_ipv4_mapped_source_matches_expected_host() -> None:
    leg = Leg(Timeline(), payload_types={0: "PCMU"}, out_rate=8000, expected_host="192.0.2.7")
    leg.feed(_pcmu(1, 0, 1), ("::ffff:192.0.2.7", 5000), 1.0)
    leg.feed(_pcmu(2, 160, 2), ("192.0.2.8", 5000), 1.02)
    assert leg.stats.packets == 1 and leg.stats.wrong_source == 1


def test_wildcard_expected_host_accepts_any() -> None:
    leg = Leg(Timeline(), payload_types={0: "PCMU"}, out_rate=8000, expected_host="0.0.0.0")
    leg.feed(_pcmu(1, 0, 1), ("198.51.100.1", 5000), 1.0)
    assert leg.stats.packets == 1


@pytest.mark.parametrize(
    ("capture", "payload_types"),
    [
        ("pcap/sipp/g711a.pcap", {8: "PCMA"}),  # 30 ms packets
        ("pcap/miarec/10a_g722.pcap", {9: "G722"}),
        ("pcap/miarec/g711a.pcap", {8: "PCMA"}),
    ],
)
def test_replay_captures(
    read_udp: Callable[[str], list[UdpPacket]], capture: str, payload_types: dict[int, str]
) -> None:
    """Real captures (one RTP stream each) replayed at capture time: nothing lost or concealed,
    and the output is exactly as long as the RTP timestamps say."""
    packets = [p for p in read_udp(capture) if len(p[2]) >= 12 and p[2][0] >> 6 == 2]
    leg = Leg(Timeline(), payload_types=payload_types, out_rate=16000)
    ticker = Ticker(leg)
    for now, addr, data in packets:
        ticker.until(now)
        leg.feed(data, addr, now)
    first, last = parse_header(packets[0][2]), parse_header(packets[-1][2])
    ticks = last.timestamp - first.timestamp + last.payload_end - last.payload_offset
    assert leg.last_index == (ticks - 1) // 160
    ticker.until(packets[-1][0] + 0.1)
    stats = leg.stats
    assert stats.packets == len(packets) and stats.lost == 0 and stats.late == 0
    assert stats.concealed_frames == len(ticker.frames) - ticks // 160
    assert stats.timestamp_jumps == 0 and stats.resyncs == 0


def test_payload_type_switch_mid_stream() -> None:
    """PCMU then PCMA on the same SSRC (e.g. after a re-INVITE): both decode in place."""
    leg = Leg(Timeline(), payload_types={0: "PCMU", 8: "PCMA"}, out_rate=8000)
    ticker = Ticker(leg)
    for i in range(6):
        pt, payload = (0, b"\x80" * 160) if i < 3 else (8, b"\xaa" * 160)
        ticker.until(i * 0.02)
        packet = build_packet(
            payload_type=pt, sequence=i, timestamp=160 * i, ssrc=3, payload=payload
        )
        leg.feed(packet, SOURCE, i * 0.02)
    ticker.until(0.185)
    assert [int(f[0]) for f in ticker.frames] == [32124] * 3 + [32256] * 3
    assert leg.stats.concealed_frames == 0


def test_dtmf_on_its_own_ssrc_does_not_disturb_audio() -> None:
    """Some gateways send RFC 4733 events with their own SSRC and timestamp base."""
    leg = Leg(Timeline(), payload_types={0: "PCMU"}, out_rate=8000, dtmf_payload_type=101)
    ticker = Ticker(leg)
    for i in range(30):
        now = i * 0.02
        ticker.until(now)
        leg.feed(_pcmu(i, 160 * i, i, ssrc=1), SOURCE, now)
        if 10 <= i < 15:  # event "7" starting at 200 ms, 100 ms long
            event = bytes([7, 0x8A if i == 14 else 0x0A]) + ((i - 9) * 160).to_bytes(2, "big")
            packet = build_packet(
                payload_type=101, sequence=500 + i, timestamp=99999, ssrc=2, payload=event
            )
            leg.feed(packet, SOURCE, now)
    ticker.until(0.665)
    assert [(index, e.digit, e.duration_ms) for index, e in leg.pop_dtmf()] == [(9, "7", 100)]
    stats = leg.stats
    assert stats.ssrc_changes == 0 and stats.lost == 0 and stats.timestamp_jumps == 0
    assert ticker.labels()[:30] == list(range(30))


# --- fuzzing ---------------------------------------------------------------------------------

_VALID_PACKETS = st.builds(
    lambda pt, seq, ts, ssrc, payload, marker: build_packet(
        payload_type=pt, sequence=seq, timestamp=ts, ssrc=ssrc, payload=payload, marker=marker
    ),
    st.sampled_from([0, 9, 13, 101, 96]),
    st.one_of(st.integers(0, 65535), st.integers(0, 20)),
    st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 4000)),
    st.sampled_from([1, 2, 3]),
    st.binary(max_size=330),
    st.booleans(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.binary(max_size=80),
                st.builds(
                    lambda head, body: bytes([0x80 | (head & 0x3F)]) + body,
                    st.integers(0, 255),
                    st.binary(min_size=11, max_size=400),
                ),
                _VALID_PACKETS,
            ),
            st.sampled_from([SOURCE, ("10.0.0.1", 4001), ("10.0.0.2", 4000)]),
            st.one_of(st.floats(0, 0.05), st.floats(0, 5)),
        ),
        max_size=60,
    )
)
def test_feed_never_raises(datagrams: list[tuple[bytes, tuple[str, int], float]]) -> None:
    timeline = Timeline()
    leg = Leg(
        timeline,
        payload_types={0: "PCMU", 9: "G722"},
        out_rate=16000,
        dtmf_payload_type=101,
        expected_host="10.0.0.1",
    )
    now = 100.0
    index = 0
    for data, addr, step in datagrams:
        now += step
        leg.feed(data, addr, now)
        while (due := leg.frame_due(index)) is not None and due <= now:
            assert len(leg.read_frame(index)) == 320
            index += 1
    stats = leg.stats
    assert stats.packets + stats.bad + stats.wrong_payload_type + stats.wrong_source + (
        stats.rtcp
    ) == len(datagrams)
    leg.pop_dtmf()


def test_pcmu_payload_helper_is_ulaw() -> None:
    """The scenario payload octets decode to distinct non-zero levels (checks the DSL itself)."""
    levels = {int(ulaw_decode(bytes([_code(i)]))[0]) for i in range(127)}
    assert len(levels) == 127 and 0 not in levels
    assert ulaw_encode(np.array([32124], dtype=np.int16)) == bytes([_code(0)])


# --- RTCP: mux, reports, alignment by sender reports (RFC 3550 §6.4.1) -------------------------

T0 = 3_900_000_000.25
"""A sender wallclock reading (NTP seconds since 1900)."""
TS0 = (1000, 70000)
"""First RTP timestamps of legs A and B."""
SIGNAL = random.Random(5).randbytes(600 * 160)
"""12 s of PCMU: every sample differs from its neighbours, so any misalignment shows."""

Sr = tuple[float, float, int]
"""(sender seconds since the first packet, NTP seconds, RTP timestamp) of a sender report."""


def _sr(ssrc: int, ntp: float, rtp_ts: int, *, blocks: bytes = b"", count: int = 0) -> bytes:
    body = struct.pack("!IQIII", ssrc, round(ntp * 2**32), rtp_ts & 0xFFFFFFFF, 10, 1600)
    return struct.pack("!BBH", 0x80 | count, 200, 6 + 6 * count) + body + blocks


def _truthful(leg: int, *seconds: int) -> list[Sr]:
    """SRs that tell the truth: sample n of either leg is sent at NTP T0 + n/8000."""
    return [(s, T0 + s, TS0[leg] + 8000 * s) for s in seconds]


def _two_legs(
    srs_a: list[Sr],
    srs_b: list[Sr],
    *,
    count: int = 200,
    rate: float = 1.0,
    max_ntp_skew_ms: int = 500,
) -> tuple[Timeline, list[Leg], list[list[npt.NDArray[np.int16]]]]:
    """Two legs carrying the same signal (sample n sent at the same instant on both), B arriving
    300 ms after A; the sender's clock runs ``rate`` times slower than ours. Returns the frames
    read for each leg, as the application's ticker would."""
    timeline = Timeline(max_ntp_skew_ms=max_ntp_skew_ms)
    legs = [Leg(timeline, payload_types={0: "PCMU"}, out_rate=8000) for _ in range(2)]
    events: list[tuple[float, int, bytes, bool]] = []
    for k, delay in enumerate((0.0, 0.3)):
        for i in range(count):
            data = build_packet(
                payload_type=0,
                sequence=i,
                timestamp=TS0[k] + 160 * i,
                ssrc=11 + k,
                payload=SIGNAL[160 * i : 160 * (i + 1)],
            )
            events.append((100.0 + delay + 0.02 * i * rate, k, data, False))
        for sent, ntp, rtp_ts in (srs_a, srs_b)[k]:
            events.append((100.0 + delay + sent * rate + 0.001, k, _sr(11 + k, ntp, rtp_ts), True))
    events.sort(key=lambda e: e[0])
    frames: list[list[npt.NDArray[np.int16]]] = [[], []]
    for now, k, data, rtcp in [*events, (101.5 + 0.02 * count * rate, 0, b"", False)]:
        while (due := legs[0].frame_due(len(frames[0]))) is not None and due <= now:
            for leg, out in zip(legs, frames, strict=True):
                out.append(leg.read_frame(len(out)).copy())
        if rtcp:
            legs[k].feed_rtcp(data, (f"10.0.0.{k + 1}", 4001), now)
        elif data:
            legs[k].feed(data, (f"10.0.0.{k + 1}", 4000), now)
    return timeline, legs, frames


def test_sender_reports_align_legs_that_arrive_300ms_apart() -> None:
    timeline, (a, b), (frames_a, frames_b) = _two_legs(_truthful(0, 1), _truthful(1, 1))
    assert a.stats.ntp_lead_ms == 300.0 and b.stats.ntp_lead_ms == 0.0
    assert timeline.ntp_epoch == pytest.approx(T0 - 0.3, abs=1e-6)
    # Before the SRs, arrival time: B is 300 ms behind. After: identical sample for sample.
    assert all(not np.array_equal(frames_a[k], frames_b[k]) for k in range(20, 60))
    assert all(np.array_equal(frames_a[k], frames_b[k]) for k in range(80, 215))
    assert np.count_nonzero(np.concatenate(frames_a[80:215])) > 0.95 * 135 * 160  # audio
    for leg in (a, b):
        stats = leg.stats
        assert stats.sender_reports == 1 and stats.sender_packet_count == 10
        assert stats.lost == 0 and stats.late == 0 and stats.resyncs == 0
    # A got 300 ms of silence once, when B's SR came in, and no audio was dropped.
    played = np.concatenate(frames_a[:216])
    gap = next(k for k in range(20, 80) if not frames_a[k].any()) * 160
    assert not played[gap : gap + 2400].any()
    without_gap = np.concatenate((played[:gap], played[gap + 2400 : 32000 + 2400]))
    assert np.array_equal(without_gap, ulaw_decode(SIGNAL[: 200 * 160]))


@pytest.mark.parametrize("rate", [1.01, 0.99])
def test_alignment_survives_clock_drift(rate: float) -> None:
    """The sender's clock is 1 % slow (fast): both legs resynchronise on their own, and
    every frame where both legs have audio stays identical."""
    seconds = range(1, 12)
    _, legs, (frames_a, frames_b) = _two_legs(
        _truthful(0, *seconds), _truthful(1, *seconds), count=600, rate=rate
    )
    assert all(leg.stats.resyncs >= 1 for leg in legs)
    assert legs[0].stats.ntp_lead_ms == 300.0 and legs[1].stats.ntp_lead_ms == 0.0
    full = [
        k
        for k, (fa, fb) in enumerate(zip(frames_a, frames_b, strict=True))
        if k >= 80 and np.count_nonzero(fa) > 150 and np.count_nonzero(fb) > 150
    ]
    assert len(full) > 400
    assert all(np.array_equal(frames_a[k], frames_b[k]) for k in full)


def test_sender_reports_agreeing_with_arrival_change_nothing() -> None:
    srs_b = [(1.0, T0 + 1.3, TS0[1] + 8000)]  # B's samples are sent 300 ms after A's
    timeline, (a, b), (frames_a, frames_b) = _two_legs(_truthful(0, 1), srs_b)
    assert timeline.ntp_epoch == pytest.approx(T0, abs=1e-6)
    assert a.stats.ntp_lead_ms == 0.0 and b.stats.ntp_lead_ms == 0.0
    assert np.array_equal(frames_a[40], frames_b[55])  # still 300 ms apart, as sent


@pytest.mark.parametrize(
    ("srs_b", "skew_ms"),
    [
        ([(1.0, T0 + 4, TS0[1] + 8000)], 500),  # wallclocks 3 s apart: not one clock
        (_truthful(1, 1), 0),  # alignment by SRs disabled
        ([], 500),  # only one leg has SRs
        ([(1.0, T0 + 1, TS0[1] + 8000 * 10)], 500),  # SR timestamp 9 s off B's arrival time
        ([(1.0, 0.0, TS0[1] + 8000)], 500),  # no wallclock (NTP 0)
    ],
)
def test_fallback_to_arrival_time(srs_b: list[Sr], skew_ms: int) -> None:
    _, (a, b), (frames_a, frames_b) = _two_legs(_truthful(0, 1), srs_b, max_ntp_skew_ms=skew_ms)
    assert a.stats.ntp_lead_ms == 0.0 and b.stats.ntp_lead_ms == 0.0
    assert np.array_equal(frames_a[100], frames_b[115])
    assert a.stats.resyncs == 0 and b.stats.resyncs == 0


def test_sender_report_before_first_rtp_is_used_when_rtp_starts() -> None:
    timeline = Timeline()
    a = Leg(timeline, payload_types={0: "PCMU"}, out_rate=8000)
    b = Leg(timeline, payload_types={0: "PCMU"}, out_rate=8000)
    a.feed_rtcp(_sr(1, T0, 500), ("10.0.0.1", 4001), 99.9)
    b.feed_rtcp(_sr(2, T0, 9000), ("10.0.0.2", 4001), 99.95)
    assert timeline.ntp_epoch is None  # nothing to anchor to yet
    a.feed(_pcmu(1, 500, 1, ssrc=1), ("10.0.0.1", 4000), 100.0)
    b.feed(_pcmu(1, 9000, 1, ssrc=2), ("10.0.0.2", 4000), 100.1)  # 100 ms later
    a.read_frame(0)
    assert a.stats.ntp_lead_ms == 100.0 and timeline.ntp_epoch == pytest.approx(T0 - 0.1)


def test_sender_report_of_another_ssrc_is_not_used() -> None:
    timeline = Timeline()
    leg = Leg(timeline, payload_types={0: "PCMU"}, out_rate=8000)
    leg.feed(_pcmu(1, 0, 1, ssrc=7), SOURCE, 100.0)
    leg.feed_rtcp(_sr(8, T0, 0), SOURCE, 100.01)
    assert leg.stats.sender_reports == 1 and leg.stats.sender_packet_count == 0
    assert timeline.ntp_epoch is None


def test_rtcp_mux_and_rtcp_port_are_handled_alike() -> None:
    leg = Leg(Timeline(), payload_types={0: "PCMU"}, out_rate=8000, expected_host="10.0.0.1")
    block = struct.pack("!IIIIII", 7, 0x40000005, 100, 80, 0, 0)
    leg.feed(_pcmu(1, 0, 1, ssrc=7), SOURCE, 100.0)
    leg.feed(_sr(7, T0, 0, blocks=block, count=1), SOURCE, 100.01)  # RFC 5761 mux
    rr = struct.pack("!BBHI", 0x80, 201, 1, 7)
    leg.feed_rtcp(rr, ("10.0.0.1", 4001), 100.02)  # RTCP port: any port of the host
    leg.feed_rtcp(rr, ("10.0.0.9", 4001), 100.03)  # a stranger
    leg.feed(b"\x80\xc8\x00\x09" + bytes(8), SOURCE, 100.04)  # SR that runs past the end
    stats = leg.stats
    assert stats.packets == 1 and stats.rtcp == 3 and stats.rtcp_bad == 1
    assert stats.sender_reports == 1 and stats.receiver_reports == 1
    assert stats.wrong_source == 1
    assert stats.reported_fraction_lost == 0.25 and stats.reported_lost == 5
    assert stats.reported_jitter_ms == 10.0


def test_timeline_skew_range() -> None:
    with pytest.raises(RtpError):
        Timeline(max_ntp_skew_ms=-1)
    with pytest.raises(RtpError):
        Timeline(max_ntp_skew_ms=10_001)


def test_relatch_follows_a_moved_stream_and_keeps_the_counters() -> None:
    """A re-offer moved the SRC's media (RFC 3264 §8.3.1): the new source is accepted once,
    the old one is a stranger from then on, and nothing is reset."""
    leg = Leg(Timeline(), payload_types={0: "PCMU"}, out_rate=8000, expected_host="192.0.2.1")
    payload = bytes(160)
    for seq in range(3):
        leg.feed(
            build_packet(
                payload_type=0, sequence=seq, timestamp=160 * seq, ssrc=1, payload=payload
            ),
            ("192.0.2.1", 4000),
            0.02 * seq,
        )
    leg.relatch("192.0.2.9")
    for seq in range(3, 6):
        packet = build_packet(
            payload_type=0, sequence=seq, timestamp=160 * seq, ssrc=1, payload=payload
        )
        leg.feed(packet, ("192.0.2.9", 5000), 0.02 * seq)
        leg.feed(packet, ("192.0.2.1", 4000), 0.02 * seq)  # the old source: now a stranger
    stats = leg.stats
    assert stats.packets == 6 and stats.wrong_source == 3 and stats.lost == 0


def test_a_new_ssrc_is_followed_only_once_it_persists() -> None:
    """Issue 5 latching: a stray packet of another SSRC is dropped and counted; a stream that
    really changed SSRC is followed after ``ssrc_switch_packets`` packets in a row."""
    leg = Leg(Timeline(), payload_types={0: "PCMU"}, out_rate=8000, ssrc_switch_packets=3)
    payload = bytes(160)

    def feed(ssrc: int, seq: int, at: float) -> None:
        packet = build_packet(
            payload_type=0, sequence=seq, timestamp=160 * seq, ssrc=ssrc, payload=payload
        )
        leg.feed(packet, SOURCE, at)

    for seq in range(5):
        feed(1, seq, 0.02 * seq)
    feed(2, 900, 0.1)  # a stray packet of another SSRC
    feed(1, 5, 0.1)  # the stream goes on: the stray one's count starts over
    feed(2, 901, 0.12)
    stats = leg.stats
    assert (stats.packets, stats.foreign_ssrc, stats.ssrc_changes) == (6, 2, 0)
    for i in range(3):  # the SRC really switched
        feed(3, 100 + i, 0.14 + 0.02 * i)
    stats = leg.stats
    assert (stats.packets, stats.foreign_ssrc, stats.ssrc_changes) == (7, 4, 1)
    feed(3, 103, 0.2)
    assert leg.stats.packets == 8
