"""rtp: the media library of siprec-bridge (standalone: stdlib, numpy, G722, pylibsrtp).

Modules:

- :mod:`rtp.packet` - RTP header parse/build (RFC 3550 §5.1), RTP/RTCP demux (RFC 5761 §4);
- :mod:`rtp.codecs` - codec table, G.711 (numpy tables) and G.722 (libg722) decoders/encoders;
- :mod:`rtp.dtmf` - RFC 4733 telephone events and a per-stream :class:`DtmfDetector`;
- :mod:`rtp.jitter` - RFC 3550 A.1 sequence extension and a pure :class:`JitterBuffer`;
- :mod:`rtp.resample` - stateful 8 kHz → 16 kHz polyphase resampler;
- :mod:`rtp.srtp` - :class:`SrtpReceiver`, SRTP/SRTCP unprotect (RFC 3711) over pylibsrtp;
- :mod:`rtp.rtcp` - RTCP compound packets: SR, RR, BYE (RFC 3550 §6);
- :mod:`rtp.leg` - :class:`Leg`, one received stream placed on a call's :class:`Timeline`;
- :mod:`rtp.ports` - :class:`PortAllocator` for even RTP ports.

Exceptions (:mod:`rtp.errors`)::

    RtpError (ValueError)      unparseable packet or payload, invalid argument
     ├── PortsExhausted        no free RTP/RTCP port pair
     └── SrtpError             SRTP/SRTCP authentication, replay or decryption failure; bad key

:func:`rtp.codecs.decoder_for` / :func:`rtp.codecs.encoder_for` also raise :class:`KeyError` for an
unknown codec name. :meth:`Leg.feed` and :meth:`Leg.feed_rtcp` never raise.
"""

from .codecs import (
    CODECS,
    CodecSpec,
    Decoder,
    Encoder,
    alaw_decode,
    alaw_encode,
    decoder_for,
    encoder_for,
    ulaw_decode,
    ulaw_encode,
)
from .dtmf import DtmfDetector, DtmfEvent, parse_event
from .errors import PortsExhausted, RtpError
from .jitter import JitterBuffer, Put, SequenceTracker
from .leg import Leg, LegStats, Timeline
from .packet import MAX_PACKET_SIZE, RtpHeader, build_packet, is_rtcp, parse_header
from .ports import PortAllocator
from .rtcp import Bye, ReceiverReport, ReportBlock, RtcpPacket, SenderReport, parse_compound
from .srtp import SUPPORTED_SUITES, SrtpError, SrtpReceiver

__all__ = [
    "CODECS",
    "MAX_PACKET_SIZE",
    "SUPPORTED_SUITES",
    "Bye",
    "CodecSpec",
    "Decoder",
    "DtmfDetector",
    "DtmfEvent",
    "Encoder",
    "JitterBuffer",
    "Leg",
    "LegStats",
    "PortAllocator",
    "PortsExhausted",
    "Put",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "RtpError",
    "RtpHeader",
    "SenderReport",
    "SequenceTracker",
    "SrtpError",
    "SrtpReceiver",
    "Timeline",
    "alaw_decode",
    "alaw_encode",
    "build_packet",
    "decoder_for",
    "encoder_for",
    "is_rtcp",
    "parse_compound",
    "parse_event",
    "parse_header",
    "ulaw_decode",
    "ulaw_encode",
]
