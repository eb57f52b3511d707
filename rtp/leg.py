"""One received RTP stream of a call ("leg"), placed on the call's shared :class:`Timeline`.

Calling protocol (sans-I/O; ``now`` is a monotonic clock reading in seconds)::

    timeline = Timeline()                      # one per call
    leg = Leg(timeline, payload_types={0: "PCMU"}, out_rate=16000, dtmf_payload_type=101,
              srtp=SrtpReceiver(suite, key_b64))   # srtp: optional (rtp.srtp)
    leg.feed(datagram, addr, now)              # per datagram on the RTP port; never raises
    leg.feed_rtcp(datagram, addr, now)         # per datagram on the RTCP port; never raises
    due = leg.frame_due(k)                     # when frame k may be read (None before any RTP)
    pcm = leg.read_frame(k)                    # k = 0, 1, 2, ... once each, at or after ``due``
    for index, event in leg.pop_dtmf(): ...

Time base. ``timeline.epoch`` is the arrival time of the first RTP packet of any leg of the call.
Call frame *k* covers call time ``[k·F, (k+1)·F)``. Positions are kept in RTP clock ticks since
the epoch ("call ticks"). The first audio/CN packet of a leg (arrival *a*, timestamp *ts0*)
anchors it: call tick *n* ↔ RTP timestamp ``ts0 + n - round((a - epoch)·clock)``. After that the
leg follows RTP time (RFC 3550 §5.1): reordering, jitter and loss do not move audio on the
timeline; loss becomes silence. Timestamps are extended across the 2^32 wrap.

Re-anchoring from the arrival time of a packet (the packet is placed at its arrival tick):

* a new SSRC (counted in ``ssrc_changes``), once it has sent ``ssrc_switch_packets`` packets in
  a row (its earlier packets are dropped and counted in ``foreign_ssrc``; a packet of the
  current SSRC in between starts the count again). Packets of the previous SSRC that arrive within
  ``target_delay + 4·F`` of the change are stragglers, dropped as late; later, the previous SSRC
  coming back (e.g. after music on hold) is one more change;
* a timestamp jump (``timestamp_jumps``): a newest packet that RTP time would place more than
  ``max_buffer_ms`` after its arrival, more than ``max_buffer_ms`` too late, or too late with a
  timestamp step that does not match its sequence step (RFC 3550 §5.1: timestamps advance with
  the sampling clock). A jump that RTP time places in time (silence suppression, RFC 3551 §4.1)
  is followed, not re-anchored.

Clock drift (``resyncs``). A packet arriving on time at its nominal position (like the anchoring
packet) reaches the buffer between ``target_delay`` and ``target_delay + F`` before its frame is
due. For every second of arrivals (at least 10 packets) the least-delayed packet is found; if its
lead differs from the middle of that band by more than ``(target_delay + F) / 2`` (the sender
clock is slower than ours and the lead is being used up, or faster and audio piles up), the leg's
time base is shifted to put that packet back in the middle: a short silence, or a short skip.
One burst of late packets (a network stall) does not trigger this because the packets after the
burst are on time again.

RFC 4733 events (``dtmf_payload_type``) on the audio SSRC are placed in RTP time; on an SSRC of
their own (some gateways) they are anchored at the arrival of their first packet minus its
duration field. :meth:`Leg.pop_dtmf` gives the frame index of each event's onset.

Decoding happens in :meth:`Leg.read_frame`, in timestamp order (G.722 is stateful). G.711 at
16 kHz output goes through :class:`rtp.resample.Upsampler2` (≈ 2 ms constant delay); G.722 at
8 kHz output uses libg722's lower sub-band mode.

SRTP (RFC 3711). With ``srtp`` set, every RTP datagram is authenticated and decrypted by the
:class:`rtp.srtp.SrtpReceiver` before its header is parsed, and every RTCP datagram as SRTCP;
failures are counted (``srtp_errors``, ``srtp_replays``) and dropped, and a packet that fails
does not latch the source. :attr:`Leg.srtp` may be replaced (re-keying by re-INVITE).

RTCP (RFC 3550 §6). :meth:`Leg.feed_rtcp` takes the datagrams of the RTCP port; :meth:`Leg.feed`
hands RTCP multiplexed on the RTP port (RFC 5761 §4) to the same handling. Sender and receiver
reports fill the ``sender_*`` and ``reported_*`` statistics.

Alignment by sender reports. An SR of the leg's SSRC maps an RTP timestamp to the sender's
wallclock (NTP). For each leg with an SR the leg computes its delay ``D = (arrival-anchored
position of the SR's timestamp) - (SR NTP time)``, in seconds, and registers it with the
:class:`Timeline`. The leg with the largest ``D`` (its media reaches us latest) keeps its
arrival anchoring; every other leg is placed ``lead = D_max - D`` later, so that on all of them
call time = NTP time - ``timeline.ntp_epoch`` sample for sample (a leg that is ahead gets a short
silence once; no audio is dropped). The drift correction then keeps each leg at its lead.
Legs without SRs stay on arrival anchoring. The delays are used only when they lie within
``max_ntp_skew_ms`` of each other (senders on one wallclock, e.g. one SBC); otherwise, and with
``max_ntp_skew_ms=0``, every leg falls back to arrival time. An SR whose timestamp is more than
``max_buffer_ms`` away from the leg's arrival time, or whose NTP time is zero, is ignored. A
re-anchored leg (new SSRC, timestamp jump) keeps its lead until the next SR of its new timing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from .codecs import CODECS, CodecSpec, Decoder, decoder_for
from .dtmf import DtmfDetector, DtmfEvent
from .errors import RtpError
from .jitter import JitterBuffer, Put, SequenceTracker
from .packet import parse_header
from .resample import Upsampler2
from .rtcp import Bye, ReportBlock, SenderReport, parse_compound
from .srtp import SrtpError, SrtpReceiver

__all__ = ["Leg", "LegStats", "Timeline"]

_CN: Final = -1
_DTMF: Final = -2
_WINDOW_SECONDS: Final = 1
_WINDOW_MIN_PACKETS: Final = 10
_HALF: Final = 0x80000000
_MASK32: Final = 0xFFFFFFFF
_WILDCARD_HOSTS: Final = frozenset({"0.0.0.0", "::"})
_EVENT_SIZE: Final = 4


class Timeline:
    """The time base shared by all legs of one call.

    ``epoch`` is the arrival time of the first RTP packet of any leg (set by :meth:`Leg.feed`);
    frame *k* covers call time ``[k·frame_ms, (k+1)·frame_ms)``. Legs with RTCP sender reports
    register their delays here to be aligned by NTP time (see the module docstring);
    ``max_ntp_skew_ms`` (0 disables this) bounds how far apart those delays may be.
    """

    __slots__ = (
        "_aligned",
        "_delays",
        "_max_delay",
        "epoch",
        "frame_ms",
        "max_ntp_skew",
        "version",
    )

    def __init__(self, frame_ms: int = 20, *, max_ntp_skew_ms: int = 500) -> None:
        """Raises :class:`RtpError` unless ``1 <= frame_ms <= 1000`` and
        ``0 <= max_ntp_skew_ms <= 10000``."""
        if not 1 <= frame_ms <= 1000:
            raise RtpError(f"frame_ms out of range: {frame_ms}")
        if not 0 <= max_ntp_skew_ms <= 10_000:
            raise RtpError(f"max_ntp_skew_ms out of range: {max_ntp_skew_ms}")
        self.frame_ms = frame_ms
        self.max_ntp_skew = max_ntp_skew_ms / 1000
        self.epoch: float | None = None
        self.version = 0
        """Incremented whenever the NTP alignment changes (legs then re-place themselves)."""
        self._delays: dict[object, float] = {}
        self._aligned = False
        self._max_delay = 0.0

    @property
    def ntp_epoch(self) -> float | None:
        """The sender NTP time (seconds since 1900) of call time 0 while legs are aligned by
        sender reports, else ``None`` (arrival-time alignment)."""
        return -self._max_delay if self._aligned else None

    def _set_delay(self, leg: object, delay: float) -> None:
        """Register a leg's delay D = position - NTP time (seconds); a leg keeps its last D
        until it registers a new one."""
        if self._delays.get(leg) == delay:
            return
        self._delays[leg] = delay
        delays = self._delays.values()
        self._max_delay = max(delays)
        self._aligned = self._max_delay - min(delays) <= self.max_ntp_skew
        self.version += 1

    def _lead(self, leg: object) -> float:
        """Seconds by which ``leg`` is to be placed after its arrival anchoring."""
        delay = self._delays.get(leg)
        if delay is None or not self._aligned:
            return 0.0
        return self._max_delay - delay


@dataclass(slots=True)
class LegStats:
    """Counters of one leg. ``lost`` is RFC 3550 A.3, ``jitter_ms`` RFC 3550 A.8."""

    packets: int = 0
    """RTP packets accepted (right source, known payload type, not ``bad``), duplicates and late
    ones included. Each datagram is counted once in packets, bad, wrong_payload_type,
    wrong_source, foreign_ssrc, rtcp, srtp_errors or srtp_replays."""
    bytes: int = 0
    """Size of those datagrams."""
    lost: int = 0
    late: int = 0
    """Arrived after their frame was read (or from a replaced SSRC)."""
    duplicates: int = 0
    bad: int = 0
    """Unparseable (RFC 3550 §5.1, RFC 4733 §2.3), or an unconfirmed sequence jump (A.1)."""
    wrong_payload_type: int = 0
    wrong_source: int = 0
    jitter_ms: float = 0.0
    ssrc_changes: int = 0
    dtmf_events: int = 0
    concealed_frames: int = 0
    """Frames (or parts of frames) after the leg started with no audio and no comfort noise."""
    rtcp: int = 0
    """RTCP datagrams from the right source (RTCP port, or RFC 5761 §4 mux on the RTP port),
    after SRTCP authentication; ``rtcp_bad`` of them could not be parsed."""
    rtcp_bad: int = 0
    srtp_errors: int = 0
    """SRTP/SRTCP datagrams that failed authentication or decryption (RFC 3711 §3.3)."""
    srtp_replays: int = 0
    """SRTP/SRTCP datagrams rejected by the replay check (RFC 3711 §3.3.2)."""
    sender_reports: int = 0
    receiver_reports: int = 0
    rtcp_byes: int = 0
    foreign_ssrc: int = 0
    """Packets of a new SSRC dropped while it had not yet persisted for
    ``ssrc_switch_packets`` packets (a stray or spoofed stream is not followed)."""
    sender_packet_count: int = 0
    """The sender's packet count from its latest SR (RFC 3550 §6.4.1)."""
    sender_octet_count: int = 0
    reported_fraction_lost: float = 0.0
    """From the first report block of the sender's latest SR/RR (what *it* receives)."""
    reported_lost: int = 0
    reported_jitter_ms: float = 0.0
    ntp_lead_ms: float = 0.0
    """How much later than its arrival anchoring the leg is placed (alignment by SRs)."""
    overflow: int = 0
    """Packets dropped because the jitter buffer was full."""
    timestamp_jumps: int = 0
    resyncs: int = 0
    """Clock drift corrections."""


class _Item(NamedTuple):
    data: bytes
    start: int
    end: int
    kind: int
    generation: int


class _Slot(NamedTuple):
    spec: CodecSpec
    decode_rate: int


class Leg:
    """One received RTP stream (see the module docstring for the timing rules)."""

    def __init__(
        self,
        timeline: Timeline,
        *,
        payload_types: Mapping[int, str],
        out_rate: int,
        dtmf_payload_type: int | None = None,
        cn_payload_types: Collection[int] = (13, 19),
        target_delay_ms: int = 60,
        expected_host: str | None = None,
        max_buffer_ms: int = 2000,
        srtp: SrtpReceiver | None = None,
        ssrc_switch_packets: int = 1,
    ) -> None:
        """``payload_types`` maps audio payload types to codec names (keys of
        :data:`rtp.codecs.CODECS`); ``out_rate`` is 8000 or 16000. ``expected_host`` ``None``,
        ``"0.0.0.0"`` or ``"::"`` accepts any source host. ``srtp`` decrypts SRTP/SRTCP.
        Raises :class:`RtpError` for an invalid configuration."""
        if out_rate not in (8000, 16000):
            raise RtpError(f"out_rate must be 8000 or 16000, not {out_rate}")
        if not payload_types:
            raise RtpError("no audio payload type")
        if not 0 <= target_delay_ms < max_buffer_ms:
            raise RtpError("need 0 <= target_delay_ms < max_buffer_ms")
        if ssrc_switch_packets < 1:
            raise RtpError("ssrc_switch_packets must be at least 1")
        self._switch_packets = ssrc_switch_packets
        self._candidate: int | None = None  # a new SSRC not yet followed, and its packet count
        self._candidate_count = 0
        self._timeline = timeline
        slots: list[_Slot] = []
        kinds: dict[int, int] = {}
        for pt, name in payload_types.items():
            spec = CODECS.get(name.upper())  # encoding names are case-insensitive (RFC 4855 §3)
            if spec is None:
                raise RtpError(f"unsupported codec {name!r}")
            decode_rate = out_rate if spec.name == "G722" else spec.sample_rate
            kinds[pt] = len(slots)
            slots.append(_Slot(spec, decode_rate))
        clocks = {slot.spec.rtp_clock for slot in slots}
        if len(clocks) != 1:
            raise RtpError("audio payload types with different RTP clock rates")
        for pt in cn_payload_types:
            kinds.setdefault(pt, _CN)
        if dtmf_payload_type is not None:
            if dtmf_payload_type in kinds:
                raise RtpError(f"payload type {dtmf_payload_type} is both audio and DTMF")
            kinds[dtmf_payload_type] = _DTMF
        if any(not 0 <= pt <= 127 for pt in kinds):
            raise RtpError("payload types must be 0-127")
        self._kinds = kinds
        self._slots = slots
        self._bits = [slot.spec.bits_per_sample for slot in slots]
        self._upsample = [slot.decode_rate < out_rate for slot in slots]
        self._clock = clock = clocks.pop()
        frame_ms = timeline.frame_ms
        self._frame_ticks = clock * frame_ms // 1000
        self._ratio = out_rate // clock
        self._delay_ticks = clock * target_delay_ms // 1000
        self._delay_seconds = target_delay_ms / 1000
        self._max_ticks = clock * max_buffer_ms // 1000
        self._max_lead = max(0, self._max_ticks - self._delay_ticks - 2 * self._frame_ticks)
        self.srtp = srtp
        """Decrypts the leg's SRTP and SRTCP (``None``: plain RTP); may be replaced."""
        self._frame = np.zeros(out_rate * frame_ms // 1000, dtype=np.int16)
        self._expected_host = None if expected_host in _WILDCARD_HOSTS else expected_host
        self._source: tuple[str, int] | None = None
        self._stats = LegStats()
        self._buffer: JitterBuffer[_Item] = JitterBuffer(max(16, max_buffer_ms // 5))
        # Stream state (set by the first audio/CN packet).
        self._ssrc: int | None = None
        self._previous_ssrc: int | None = None
        self._switch_tick = 0
        self._grace_ticks = self._delay_ticks + 4 * self._frame_ticks
        self._stale = 0
        self._seq: SequenceTracker | None = None
        self._head_seq = 0
        self._head_duration = 0
        self._ref_ts = 0
        self._ref_pos = 0
        self._start_pos: int | None = None
        self._last_end: int | None = None
        self._generation = 0
        # RFC 3550 A.8 interarrival jitter, in ticks.
        self._transit: float | None = None
        self._jitter = 0.0
        # Drift window.
        self._window_start = 0
        self._window_min = 0
        self._window_count = 0
        # DTMF.
        self._detector = DtmfDetector(clock)
        self._dtmf: list[tuple[int, DtmfEvent]] = []
        self._dtmf_ssrc: int | None = None
        self._dtmf_ref_ts = 0
        self._dtmf_ref_pos = 0
        # RTCP: the latest usable SR (ssrc, NTP seconds, RTP timestamp) and the NTP lead.
        self._sr: tuple[int, float, int] | None = None
        self._lead = 0
        self._timeline_version = 0
        # Playout state (read_frame).
        self._decoders: list[Decoder] = []
        self._decoder_generation = -1
        self._upsampler = Upsampler2()
        self._upsampler_next: int | None = None
        self._cursor = 0
        self._carry: npt.NDArray[np.int16] | None = None
        self._carry_pos = 0
        self._comfort = False

    # --- public API ---------------------------------------------------------------------------

    @property
    def stats(self) -> LegStats:
        """The leg's counters (the same object each time, refreshed on access)."""
        stats = self._stats
        buffer = self._buffer
        stats.lost = 0 if self._seq is None else self._seq.lost
        stats.late = buffer.late + self._stale
        stats.duplicates = buffer.duplicates
        stats.overflow = buffer.overflow
        stats.jitter_ms = self._jitter * 1000 / self._clock
        stats.ntp_lead_ms = self._lead * 1000 / self._clock
        return stats

    def relatch(self, expected_host: str | None) -> None:
        """The SRC moved the stream (a re-offer with a new address or port, RFC 3264 §8.3.1):
        accept the next packet from ``expected_host`` as the new source. Counters, the
        timeline position and the jitter buffer are kept."""
        self._expected_host = None if expected_host in _WILDCARD_HOSTS else expected_host
        self._source = None

    @property
    def last_index(self) -> int | None:
        """Highest frame index containing received audio (``None`` before any)."""
        if self._last_end is None:
            return None
        return (self._last_end - 1) // self._frame_ticks

    def frame_due(self, index: int) -> float | None:
        """Wall time at which frame ``index`` may be read: epoch + (index+1)·F + target delay."""
        epoch = self._timeline.epoch
        if epoch is None:
            return None
        return epoch + (index + 1) * self._timeline.frame_ms / 1000 + self._delay_seconds

    def pop_dtmf(self) -> list[tuple[int, DtmfEvent]]:
        """Return and forget the completed DTMF events as (frame index of onset, event)."""
        events, self._dtmf = self._dtmf, []
        return events

    def feed(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        """Take one datagram received from ``addr`` at ``now``. Never raises.

        ``data`` is kept by reference until its frame is read: pass immutable ``bytes``.
        """
        stats = self._stats
        source = self._source
        if source is None:
            expected = self._expected_host
            if expected is not None and _plain_host(addr[0]) != expected:
                stats.wrong_source += 1
                return
        elif addr[0] != source[0] or addr[1] != source[1]:
            stats.wrong_source += 1
            return
        if len(data) > 1 and 192 <= data[1] <= 223:  # rtp.packet.is_rtcp, inlined
            self._rtcp(data, now)
            return
        size = len(data)
        srtp = self.srtp
        if srtp is not None:
            if size < 12 or data[0] >> 6 != 2:  # not even an RTP header (STUN, junk)
                stats.bad += 1
                return
            try:
                data = srtp.unprotect(data)
            except SrtpError as exc:
                if exc.replay:
                    stats.srtp_replays += 1
                else:
                    stats.srtp_errors += 1
                return
        try:
            header = parse_header(data)
        except RtpError:
            stats.bad += 1
            return
        kind = self._kinds.get(header.payload_type)
        if kind is None:
            stats.wrong_payload_type += 1
            return
        if kind == _DTMF and header.payload_end - header.payload_offset < _EVENT_SIZE:
            stats.bad += 1  # shorter than one RFC 4733 §2.3 event
            return
        if source is None:
            self._source = (addr[0], addr[1])
        epoch = self._timeline.epoch
        if epoch is None:
            epoch = self._timeline.epoch = now
        arrival = (now - epoch) * self._clock
        now_tick = round(arrival)
        if kind == _DTMF:
            stats.packets += 1
            stats.bytes += size
            self._feed_dtmf(
                header.ssrc,
                header.sequence,
                header.timestamp,
                data[header.payload_offset : header.payload_end],
                now_tick,
            )
            return
        ssrc = header.ssrc
        seq = self._seq
        if ssrc == self._ssrc and seq is not None:
            self._candidate = None
            ext_seq = seq.extend(header.sequence)
            if ext_seq is None:
                stats.bad += 1  # RFC 3550 A.1: unconfirmed sequence jump
                return
            pos = self._ref_pos + ((header.timestamp - self._ref_ts + _HALF) & _MASK32) - _HALF
            if ext_seq > self._head_seq:
                pos = self._check_jump(pos, ext_seq - self._head_seq, header.timestamp, now_tick)
                self._head_seq = ext_seq
                self._ref_ts = header.timestamp
                self._ref_pos = pos
        elif ssrc == self._previous_ssrc and now_tick - self._switch_tick < self._grace_ticks:
            stats.packets += 1
            stats.bytes += size
            self._stale += 1
            return
        else:
            if self._ssrc is not None and self._switch_packets > 1:
                if ssrc != self._candidate:
                    self._candidate, self._candidate_count = ssrc, 0
                self._candidate_count += 1
                if self._candidate_count < self._switch_packets:
                    stats.foreign_ssrc += 1
                    return
                self._candidate = None
            ext_seq = self._new_source(ssrc, header.sequence, header.timestamp, now_tick)
            pos = self._ref_pos
        stats.packets += 1
        stats.bytes += size
        duration = 0
        if kind >= 0:
            duration = (header.payload_end - header.payload_offset) * 8 // self._bits[kind]
        if ext_seq == self._head_seq:
            self._head_duration = duration
        pos = self._observe(pos, arrival, now_tick)
        item = _Item(data, header.payload_offset, header.payload_end, kind, self._generation)
        result = self._buffer.put(ext_seq, pos, item)
        if kind >= 0 and result in (Put.ACCEPTED, Put.OVERFLOW):
            end = pos + duration
            if self._last_end is None or end > self._last_end:
                self._last_end = end

    def feed_rtcp(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        """Take one RTCP datagram (RFC 3550 §6; SRTCP with ``srtp``) received from ``addr`` at
        ``now`` on the RTCP port. Never raises.

        Accepted from the host the leg's RTP comes from (any port), or before any RTP from
        ``expected_host``; otherwise counted in ``wrong_source``.
        """
        host = _plain_host(addr[0])
        source = self._source
        expected = _plain_host(source[0]) if source is not None else self._expected_host
        if expected is not None and host != expected:
            self._stats.wrong_source += 1
            return
        self._rtcp(data, now)

    def read_frame(self, index: int) -> npt.NDArray[np.int16]:
        """Return frame ``index``: ``out_rate·frame_ms/1000`` int16 samples.

        Call once per index with consecutive indexes. Decodes, in timestamp order, the buffered
        packets that start before the end of the frame; samples past its end are kept for the
        next frame. Anything not received is silence. The returned array is a buffer owned by
        the leg and overwritten by the next call: copy or consume it before then.
        """
        if self._timeline.version != self._timeline_version:
            self._follow_timeline()
        frame = self._frame
        frame.fill(0)
        ticks = self._frame_ticks
        start = index * ticks
        end = start + ticks
        covered = 0
        carry = self._carry
        if carry is not None:
            covered = self._take_carry(carry, start, end)
        buffer = self._buffer
        while (entry := buffer.pop(end)) is not None:
            pos, _, item = entry
            if item.generation != self._decoder_generation:
                self._decoders = [
                    decoder_for(s.spec.name, sample_rate=s.decode_rate) for s in self._slots
                ]
                self._decoder_generation = item.generation
                self._upsampler_next = None
            if item.kind < 0:
                self._comfort = True
                continue
            self._comfort = False
            pcm = self._decoders[item.kind].decode(item.data[item.start : item.end])
            if self._upsample[item.kind]:
                if pos != self._upsampler_next:
                    self._upsampler.reset()
                self._upsampler_next = pos + len(pcm)
                pcm = self._upsampler.process(pcm)
            covered += self._place(pos, pcm, start, end)
        start_pos = self._start_pos
        if (
            start_pos is not None
            and start_pos < end
            and not self._comfort
            and covered < (end - max(start, start_pos)) * self._ratio
        ):
            self._stats.concealed_frames += 1
        return frame

    # --- feed helpers -------------------------------------------------------------------------

    def _new_source(self, ssrc: int, sequence: int, timestamp: int, now_tick: int) -> int:
        """Anchor a new SSRC at its arrival; return the packet's extended sequence number."""
        pos = now_tick + self._lead
        if self._seq is None:
            self._seq = SequenceTracker(sequence)
            ext_seq = self._seq.max_extended
            self._start_pos = pos
        else:
            ext_seq = self._seq.restart(sequence)
            self._stats.ssrc_changes += 1
            self._previous_ssrc = self._ssrc
            self._switch_tick = now_tick
            self._generation += 1
        self._ssrc = ssrc
        self._head_seq = ext_seq
        self._anchor(timestamp, pos, now_tick)
        if self._sr is not None:
            if self._sr[0] == ssrc:
                self._register_delay(now_tick)
            else:
                self._sr = None
        return ext_seq

    def _anchor(self, timestamp: int, pos: int, now_tick: int) -> None:
        self._ref_ts = timestamp
        self._ref_pos = pos
        self._transit = None
        self._window_start = now_tick
        self._window_count = 0

    def _check_jump(self, pos: int, seq_step: int, timestamp: int, now_tick: int) -> int:
        """Return the position of a new newest packet, re-anchoring on a timestamp jump."""
        max_ticks = self._max_ticks
        lateness = now_tick - (
            (pos // self._frame_ticks + 1) * self._frame_ticks + self._delay_ticks
        )
        if (
            pos - now_tick > max_ticks
            or lateness > max_ticks
            or (
                lateness > 0
                and abs(pos - self._ref_pos - seq_step * self._head_duration)
                > max(self._head_duration, self._frame_ticks)
            )
        ):
            self._stats.timestamp_jumps += 1
            self._sr = None  # maps timestamps of before the jump
            pos = now_tick + self._lead
            self._anchor(timestamp, pos, now_tick)
        return pos

    def _observe(self, pos: int, arrival: float, now_tick: int) -> int:
        """Interarrival jitter (RFC 3550 A.8) and the drift window; return the (shifted) pos."""
        transit = arrival - pos
        if self._transit is not None:
            self._jitter += (abs(transit - self._transit) - self._jitter) / 16
        self._transit = transit
        ticks = self._frame_ticks
        lateness = now_tick - ((pos // ticks + 1) * ticks + self._delay_ticks)
        if self._window_count == 0 or lateness < self._window_min:
            self._window_min = lateness
        self._window_count += 1
        if now_tick - self._window_start < self._clock * _WINDOW_SECONDS:
            return pos
        least = self._window_min
        enough = self._window_count >= _WINDOW_MIN_PACKETS
        self._window_start = now_tick
        self._window_count = 0
        shift = least + self._delay_ticks + ticks // 2 + self._lead
        if enough and abs(shift) > (self._delay_ticks + ticks) // 2:
            self._shift(shift)
            self._stats.resyncs += 1
            if self._sr is not None:
                self._register_delay(None)
            return pos + shift
        return pos

    def _shift(self, delta: int) -> None:
        """Move the leg's time base (and everything buffered) ``delta`` ticks later."""
        self._ref_pos += delta
        self._dtmf_ref_pos += delta
        self._buffer.shift(delta)
        if self._last_end is not None:
            self._last_end += delta
        self._transit = None
        self._window_count = 0

    # --- RTCP and NTP alignment -----------------------------------------------------------

    def _rtcp(self, data: bytes, now: float) -> None:
        """One RTCP datagram from the right source (RFC 3550 §6.4; SRTCP, RFC 3711 §3.4)."""
        stats = self._stats
        srtp = self.srtp
        if srtp is not None:
            try:
                data = srtp.unprotect_rtcp(data)
            except SrtpError as exc:
                if exc.replay:
                    stats.srtp_replays += 1
                else:
                    stats.srtp_errors += 1
                return
        stats.rtcp += 1
        try:
            packets = parse_compound(data)
        except RtpError:
            stats.rtcp_bad += 1
            return
        for packet in packets:
            if isinstance(packet, SenderReport):
                stats.sender_reports += 1
                self._sender_report(packet, now)
            elif isinstance(packet, Bye):
                stats.rtcp_byes += 1
                continue
            else:
                stats.receiver_reports += 1
            if packet.reports:
                self._report(packet.reports[0])

    def _report(self, block: ReportBlock) -> None:
        stats = self._stats
        stats.reported_fraction_lost = block.fraction_lost
        stats.reported_lost = block.cumulative_lost
        stats.reported_jitter_ms = block.jitter * 1000 / self._clock

    def _sender_report(self, report: SenderReport, now: float) -> None:
        """Keep the SR of the leg's SSRC (RFC 3550 §6.4.1) and register the leg's delay."""
        if self._ssrc is not None and report.ssrc != self._ssrc:
            return
        stats = self._stats
        stats.sender_packet_count = report.packet_count
        stats.sender_octet_count = report.octet_count
        if report.ntp_timestamp == 0:  # no wallclock (RFC 3550 §6.4.1)
            return
        self._sr = (report.ssrc, report.ntp_seconds, report.rtp_timestamp)
        epoch = self._timeline.epoch
        if self._ssrc is not None and epoch is not None:  # else: registered when RTP starts
            self._register_delay(round((now - epoch) * self._clock))

    def _register_delay(self, now_tick: int | None) -> None:
        """Register D = position - NTP time for the current SR with the timeline. With
        ``now_tick`` (the SR just arrived) an SR more than ``max_buffer_ms`` away from arrival
        time is dropped instead."""
        assert self._sr is not None
        _, ntp, timestamp = self._sr
        base = self._ref_pos + ((timestamp - self._ref_ts + _HALF) & _MASK32) - _HALF - self._lead
        if now_tick is not None and abs(base - now_tick) > self._max_ticks:
            self._sr = None
            return
        if self._timeline.max_ntp_skew > 0:
            self._timeline._set_delay(self, base / self._clock - ntp)

    def _follow_timeline(self) -> None:
        """Re-place the leg after the timeline's NTP alignment changed."""
        self._timeline_version = self._timeline.version
        lead = min(self._max_lead, max(0, round(self._timeline._lead(self) * self._clock)))
        if lead != self._lead:
            self._shift(lead - self._lead)
            self._lead = lead

    def _feed_dtmf(
        self, ssrc: int, sequence: int, timestamp: int, payload: bytes, now_tick: int
    ) -> None:
        """RFC 4733 packet (at least 4 octets). Same SSRC as the audio: placed in RTP time;
        another SSRC: anchored at the arrival of its first packet minus its duration field."""
        if ssrc == self._ssrc and self._seq is not None:
            self._seq.extend(sequence)
        elif ssrc != self._dtmf_ssrc:
            self._dtmf_ssrc = ssrc
            self._dtmf_ref_ts = timestamp
            self._dtmf_ref_pos = now_tick + self._lead - int.from_bytes(payload[2:4], "big")
        for event in self._detector.feed(timestamp, payload):
            self._emit_dtmf(event, self._dtmf_position(event.timestamp, ssrc))

    def _dtmf_position(self, timestamp: int, ssrc: int) -> int:
        if ssrc == self._ssrc:
            ref_ts, ref_pos = self._ref_ts, self._ref_pos
        else:
            ref_ts, ref_pos = self._dtmf_ref_ts, self._dtmf_ref_pos
        return ref_pos + ((timestamp - ref_ts + _HALF) & _MASK32) - _HALF

    def _emit_dtmf(self, event: DtmfEvent, pos: int) -> None:
        self._dtmf.append((max(0, pos // self._frame_ticks), event))
        self._stats.dtmf_events += 1

    # --- read helpers -------------------------------------------------------------------------

    def _take_carry(self, carry: npt.NDArray[np.int16], start: int, end: int) -> int:
        """Write the decoded remainder of the previous frame's last packet; return samples."""
        ratio = self._ratio
        begin = max(self._carry_pos, start)
        carry = carry[(begin - self._carry_pos) * ratio :]
        offset = (begin - start) * ratio
        count = max(0, min(len(carry), len(self._frame) - offset))
        self._frame[offset : offset + count] = carry[:count]
        self._carry = carry[count:] if count < len(carry) else None
        self._carry_pos = begin + count // ratio
        return count

    def _place(self, pos: int, pcm: npt.NDArray[np.int16], start: int, end: int) -> int:
        """Write decoded samples at call tick ``pos``; return how many fell into this frame."""
        ratio = self._ratio
        stop = pos + len(pcm) // ratio
        first = max(pos, self._cursor, start)
        if first >= stop:
            return 0
        pcm = pcm[(first - pos) * ratio :]
        self._cursor = stop
        if first >= end:  # entirely after this frame: continues the carried remainder
            if self._carry is None:
                self._carry = pcm
                self._carry_pos = first
            else:
                self._carry = np.concatenate((self._carry, pcm))
            return 0
        offset = (first - start) * ratio
        count = min(len(pcm), len(self._frame) - offset)
        self._frame[offset : offset + count] = pcm[:count]
        if count < len(pcm):
            self._carry = pcm[count:]
            self._carry_pos = end
        return count


def _plain_host(host: str) -> str:
    """Strip the IPv4-mapped IPv6 prefix that a dual-stack socket reports."""
    return host[7:] if host.startswith("::ffff:") else host
