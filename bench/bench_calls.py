"""N concurrent replayed SIPREC calls through a real bridge process; prints CPU per call.

    python bench/bench_calls.py [--calls 100] [--pcap pcaps/siprec_pcmu.pcap] [--mode stereo]

Three processes on 127.0.0.1: the demo consumer, ``siprec-bridge serve`` and this script
(replaying the pcap ``--calls`` times concurrently). The bridge's CPU time is read from
/proc while the calls run; frames missing = frames sent (per stream) that the consumer did
not write; a stream may hold one extra frame when its second leg starts a fraction of a frame
after the first. Prints figures only; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import sys
import tempfile
import time
from pathlib import Path

from siprec_bridge.replay import replay

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_tcp(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise RuntimeError(f"nothing listening on {port}")


async def main(args: argparse.Namespace) -> None:
    manifest = json.loads((ROOT / "pcaps" / "manifest.json").read_text())
    entry = manifest[args.pcap.name]
    frames_per_call = entry["duration_ms"] // 20
    streams_per_call = len(entry["legs"]) if args.mode == "per-leg" else 1
    out = Path(tempfile.mkdtemp(prefix="bench-calls-"))
    ws_port, sip_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    exe = [sys.executable, "-m", "siprec_bridge.cli", "--log-level", "warning"]
    consumer = await asyncio.create_subprocess_exec(
        *exe,
        "consumer",
        "--listen",
        f"127.0.0.1:{ws_port}",
        "--out",
        str(out),
        stdout=asyncio.subprocess.PIPE,
    )
    bridge = await asyncio.create_subprocess_exec(
        *exe,
        "serve",
        "--sip-listen",
        f"127.0.0.1:{sip_port}",
        "--rtp-ports",
        "20000-29999",
        "--ws-url",
        f"ws://127.0.0.1:{ws_port}/",
        "--mode",
        args.mode,
        "--metrics-listen",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.DEVNULL,
        # Every replayed call comes from 127.0.0.1: no per-source INVITE rate limit here.
        env=dict(
            os.environ,
            SIPREC_BRIDGE_LIMITS_INVITE_RATE="0",
            SIPREC_BRIDGE_OUTPUT_SPOOL_DIR=str(out / "spool"),
        ),
    )
    try:
        await wait_tcp(ws_port)
        await wait_tcp(sip_port)
        cpu0, wall0 = cpu_seconds(bridge.pid), time.monotonic()
        await replay(args.pcap, ("127.0.0.1", sip_port), calls=args.calls)
        cpu1, wall1 = cpu_seconds(bridge.pid), time.monotonic()
        expected = args.calls * streams_per_call
        lines: list[str] = []
        assert consumer.stdout is not None
        deadline = time.monotonic() + 30
        while len(lines) < expected and time.monotonic() < deadline:
            try:
                raw = await asyncio.wait_for(consumer.stdout.readline(), 1)
            except TimeoutError:
                continue
            if raw.startswith(b"call "):
                lines.append(raw.decode())
    finally:
        bridge.terminate()
        consumer.terminate()
        await bridge.wait()
        await consumer.wait()
    per_stream = [int(m.group(1)) for line in lines if (m := re.search(r"frames=(\d+)", line))]
    received = sum(per_stream)
    cpu, wall = cpu1 - cpu0, wall1 - wall0
    print(
        f"calls={args.calls} mode={args.mode} pcap={args.pcap.name} "
        f"({entry['duration_ms']} ms, {len(entry['legs'])} legs, {entry['codec']})"
    )
    print(
        f"bridge CPU {cpu:.2f} s over {wall:.2f} s wall = {100 * cpu / wall:.1f} % of a core; "
        f"{100 * cpu / wall / args.calls:.3f} % of a core per call"
    )
    short = sum(max(0, frames_per_call - n) for n in per_stream)
    short += (expected - len(lines)) * frames_per_call
    spooled = len(list((out / "spool").glob("*"))) if (out / "spool").is_dir() else 0
    print(f"streams spooled (consumer too slow or gone): {spooled}")
    print(
        f"streams finished {len(lines)}/{expected}; frames received {received} for "
        f"{expected * frames_per_call} sent; per stream min {min(per_stream, default=0)} "
        f"max {max(per_stream, default=0)}; frames missing {short}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--pcap", type=Path, default=ROOT / "pcaps" / "siprec_pcmu.pcap")
    parser.add_argument("--mode", choices=("stereo", "per-leg"), default="stereo")
    asyncio.run(main(parser.parse_args()))
