"""``siprec-bridge`` command line: serve, consumer, replay, demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from . import conformance as conformance_mod
from . import replay as replay_mod
from .config import MODES, ConfigError, build_config, parse_host_port, parse_port_range


def _run(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on uvloop when it is installed (DEPENDENCIES.md: 3-5x cheaper per datagram)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return int(uvloop.run(main))


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def _serve(args: argparse.Namespace) -> int:
    from .app import Bridge

    overrides: dict[str, Any] = {
        "mode": args.mode,
        "ws_url": args.ws_url,
        "advertise_host": args.advertise,
        "target_delay_ms": args.target_delay_ms,
        "frame_ms": args.frame_ms,
    }
    if args.sip_listen:
        overrides["sip_host"], overrides["sip_port"] = parse_host_port(
            args.sip_listen, key="--sip-listen"
        )
    if args.rtp_ports:
        overrides["rtp_low"], overrides["rtp_high"] = parse_port_range(
            args.rtp_ports, key="--rtp-ports"
        )
    config = build_config(args.config, **overrides)
    bridge = Bridge(config)
    await bridge.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(f"siprec-bridge listening on {config.sip_host}:{bridge.sip_port}", flush=True)
    await stop.wait()
    await bridge.stop()
    return 0


async def _consumer(args: argparse.Namespace) -> int:
    from .consumer import run_consumer

    host, port = parse_host_port(args.listen, key="--listen")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await run_consumer(host, port, Path(args.out), stop=stop)
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return await run_demo(
        Path(args.out), pcaps=[Path(p) for p in args.pcap] or None, mode=args.mode
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siprec-bridge",
        description="SIPREC Session Recording Server that streams call audio over WebSocket.",
    )
    parser.add_argument(
        "--log-level", help="debug, info, warning, error (default: info; warning for demo)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the SIPREC recording server")
    serve.add_argument(
        "--sip-listen",
        metavar="HOST:PORT",
        help="SIP address for UDP and TCP (default 127.0.0.1:5060)",
    )
    serve.add_argument(
        "--rtp-ports", metavar="LOW-HIGH", help="RTP port range (default 40000-40999)"
    )
    serve.add_argument("--ws-url", metavar="URL", help="WebSocket consumer URL")
    serve.add_argument(
        "--mode",
        choices=MODES,
        help="stereo: one interleaved stream per call; per-leg: one connection per recorded stream",
    )
    serve.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    serve.add_argument("--advertise", metavar="HOST", help="address put in SDP answers")
    serve.add_argument("--target-delay-ms", type=int, metavar="MS", help="jitter buffer delay")
    serve.add_argument("--frame-ms", type=int, metavar="MS", help="output frame length")

    consumer = sub.add_parser("consumer", help="run the demo WebSocket consumer")
    consumer.add_argument("--listen", default="127.0.0.1:8765", metavar="HOST:PORT")
    consumer.add_argument(
        "--out", default="out/consumer", metavar="DIR", help="folder for the WAV and events files"
    )

    replay = sub.add_parser("replay", help="replay a SIPREC pcap against a running bridge")
    replay_mod.add_arguments(replay)

    check = sub.add_parser(
        "conformance",
        help="play captured SIPREC messages through the SRS offline and print what it would record",
    )
    conformance_mod.add_arguments(check)

    demo = sub.add_parser("demo", help="consumer + bridge + replay of the bundled pcaps")
    demo.add_argument("--out", default="out/demo", metavar="DIR")
    demo.add_argument("--mode", choices=MODES, default="stereo")
    demo.add_argument(
        "--pcap",
        action="append",
        default=[],
        metavar="FILE",
        help="pcap to replay (repeatable; default: the bundled fixtures)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = {"demo": "warning", "conformance": "error"}
    _setup_logging(args.log_level or quiet.get(args.command, "info"))
    try:
        if args.command == "serve":
            return _run(_serve(args))
        if args.command == "consumer":
            return _run(_consumer(args))
        if args.command == "replay":
            return replay_mod.main_from_args(args)
        if args.command == "conformance":
            return conformance_mod.main_from_args(args)
        return _run(_demo(args))
    except ConfigError as exc:
        print(f"siprec-bridge: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
