"""``siprec-bridge`` command line: serve, check-config, consumer, replay, conformance, spool,
demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from . import conformance as conformance_mod
from . import replay as replay_mod
from .logs import setup_logging
from .settings import Settings, SettingsError, check_config, load_settings, split_host_port

MODES = ("stereo", "per-leg", "mixed", "mux")


def _run(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on uvloop when it is installed (DEPENDENCIES.md: 3-5x cheaper per datagram)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return int(uvloop.run(main))


def serve_settings(args: argparse.Namespace) -> Settings:
    """Defaults ← ``--config`` file ← ``SIPREC_BRIDGE_*`` environment ← flags."""
    return load_settings(
        args.config,
        overrides={
            "sip.listen": args.sip_listen,
            "sip.advertise": args.advertise,
            "sip.tls.listen": args.sip_tls_listen,
            "sip.tls.enabled": True if args.sip_tls_listen else None,
            "sip.tls.cert": args.sip_tls_cert,
            "sip.tls.key": args.sip_tls_key,
            "rtp.ports": args.rtp_ports,
            "rtp.target_delay_ms": args.target_delay_ms,
            "media.frame_ms": args.frame_ms,
            "output.url": args.ws_url,
            "output.mode": args.mode,
            "metrics.listen": args.metrics_listen,
            "log.level": args.log_level,
            "log.format": args.log_format,
        },
    )


async def _serve(settings: Settings) -> int:
    from .app import Bridge

    bridge = Bridge(settings)
    await bridge.start()
    loop = asyncio.get_running_loop()
    signalled: asyncio.Queue[signal.Signals] = asyncio.Queue()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, signalled.put_nowait, sig)
    print(f"siprec-bridge listening on {settings.sip_host}:{bridge.sip_port}", flush=True)
    sig = await signalled.get()
    # SIGTERM drains (503 to new INVITEs, running calls finish); SIGINT the same, faster.
    drain = settings.drain.time_s if sig == signal.SIGTERM else settings.drain.sigint_time_s
    draining = asyncio.create_task(bridge.drain(drain))
    second = asyncio.create_task(signalled.get())
    await asyncio.wait({draining, second}, return_when=asyncio.FIRST_COMPLETED)
    second.cancel()
    if not draining.done():  # a second signal: stop now
        draining.cancel()
        await bridge.stop()
    return 0


async def _consumer(args: argparse.Namespace) -> int:
    from ws_out.tls import server_context

    from .consumer import run_consumer

    host, port = split_host_port(args.listen)
    context = None
    if args.tls_cert:
        context = server_context(args.tls_cert, args.tls_key, client_ca_file=args.tls_client_ca)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await run_consumer(host, port, Path(args.out), stop=stop, ssl=context, read_delay_s=args.slow)
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return await run_demo(
        Path(args.out), pcaps=[Path(p) for p in args.pcap] or None, mode=args.mode
    )


def _spool(args: argparse.Namespace) -> int:
    """List the streams spooled to disk because their consumer could not be reached."""
    from ws_out.spool import Spool

    folder = Path(args.dir) if args.dir else load_settings(args.config).output.spool_dir
    entries = Spool(folder).list()
    for e in entries:
        state = "complete" if e.complete else "partial"
        seconds = e.frames * e.format.frame_ms / 1000
        print(
            f"{e.spooled_at} call {e.call_id} session {e.session_id} target {e.target} "
            f"{seconds:.1f}s from frame {e.from_frame} ({e.reason}, {state}) -> {e.path}"
        )
    print(f"{len(entries)} spooled stream(s) in {folder}")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from .outputs import check_targets

    problems = check_config(Path(args.file))
    if not problems:  # the keys are valid: can every target carry its dialect, mode, format?
        try:
            check_targets(load_settings(Path(args.file)))
        except SettingsError as exc:
            problems = exc.problems
    for problem in problems:
        print(f"{args.file}: {problem}")
    if not problems:
        print(f"{args.file}: OK")
    return 1 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siprec-bridge",
        description="SIPREC Session Recording Server that streams call audio over WebSocket.",
    )
    parser.add_argument(
        "--log-level", help="debug, info, warning, error (default: info; warning for demo)"
    )
    parser.add_argument("--log-format", choices=("text", "json"), help="log line format")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the SIPREC recording server")
    serve.add_argument(
        "--sip-listen",
        metavar="HOST:PORT",
        help="SIP address for UDP and TCP (default 127.0.0.1:5060)",
    )
    serve.add_argument("--sip-tls-listen", metavar="HOST:PORT", help="SIP over TLS address")
    serve.add_argument("--sip-tls-cert", metavar="FILE", help="TLS certificate chain (PEM)")
    serve.add_argument("--sip-tls-key", metavar="FILE", help="TLS private key (PEM)")
    serve.add_argument(
        "--rtp-ports", metavar="LOW-HIGH", help="RTP port range (default 40000-40999)"
    )
    serve.add_argument("--ws-url", metavar="URL", help="WebSocket consumer URL")
    serve.add_argument(
        "--mode",
        choices=MODES,
        help="stereo: one interleaved stream per call; per-leg: one connection per stream",
    )
    serve.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    serve.add_argument("--advertise", metavar="HOST", help="address put in SDP answers")
    serve.add_argument("--target-delay-ms", type=int, metavar="MS", help="jitter buffer delay")
    serve.add_argument("--frame-ms", type=int, metavar="MS", help="internal frame length")
    serve.add_argument(
        "--metrics-listen", metavar="HOST:PORT", help="/metrics, /healthz, /readyz, /calls"
    )

    check_cfg = sub.add_parser("check-config", help="validate a TOML configuration file")
    check_cfg.add_argument("file", metavar="FILE")

    consumer = sub.add_parser("consumer", help="run the demo WebSocket consumer")
    consumer.add_argument("--listen", default="127.0.0.1:8765", metavar="HOST:PORT")
    consumer.add_argument(
        "--out", default="out/consumer", metavar="DIR", help="folder for the WAV and events files"
    )
    consumer.add_argument(
        "--slow", type=float, default=0.0, metavar="S", help="wait S seconds per message (tests)"
    )
    consumer.add_argument("--tls-cert", metavar="FILE", help="serve wss:// with this certificate")
    consumer.add_argument("--tls-key", metavar="FILE", help="its private key")
    consumer.add_argument("--tls-client-ca", metavar="FILE", help="require client certificates")

    spool = sub.add_parser("spool", help="list calls spooled to disk (consumer unreachable)")
    spool.add_argument("--dir", metavar="DIR", help="spool folder (default: output.spool_dir)")
    spool.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")

    replay = sub.add_parser("replay", help="replay a SIPREC pcap against a running bridge")
    replay_mod.add_arguments(replay)

    check = sub.add_parser(
        "conformance",
        help="play captured SIPREC messages through the SRS offline and print what it would record",
    )
    conformance_mod.add_arguments(check)

    demo = sub.add_parser("demo", help="consumer + bridge + replay of the bundled pcaps")
    demo.add_argument("--out", default="out/demo", metavar="DIR")
    demo.add_argument("--mode", choices=("stereo", "per-leg"), default="stereo")
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
    try:
        if args.command == "serve":
            settings = serve_settings(args)
            setup_logging(settings.log.format, settings.log.level)
            return _run(_serve(settings))
        setup_logging(args.log_format or "text", args.log_level or quiet.get(args.command, "info"))
        if args.command == "check-config":
            return _check_config(args)
        if args.command == "spool":
            return _spool(args)
        if args.command == "consumer":
            return _run(_consumer(args))
        if args.command == "replay":
            return replay_mod.main_from_args(args)
        if args.command == "conformance":
            return conformance_mod.main_from_args(args)
        return _run(_demo(args))
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"siprec-bridge: configuration error: {problem}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a malformed HOST:PORT
        print(f"siprec-bridge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
