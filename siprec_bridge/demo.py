"""``siprec-bridge demo``: the whole product on loopback with embedded defaults.

Starts the demo consumer and the bridge in one process, replays the bundled pcaps (real SIP
and RTP over 127.0.0.1) concurrently, waits for every call to reach the consumer and prints one
line per call plus where the WAV and events files are.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from .app import Bridge
from .consumer import ConsumerServer
from .replay import replay
from .settings import load_settings

log = logging.getLogger(__name__)

PCAP_DIR = Path(__file__).resolve().parent.parent / "pcaps"


def bundled_pcaps() -> list[Path]:
    return sorted(PCAP_DIR.glob("*.pcap"))


async def run_demo(out_dir: Path, *, pcaps: list[Path] | None = None, mode: str = "stereo") -> int:
    pcaps = pcaps or bundled_pcaps()
    if not pcaps:
        print(f"no pcaps found in {PCAP_DIR}")
        return 1
    out_dir.mkdir(parents=True, exist_ok=True)
    consumer = ConsumerServer("127.0.0.1", 0, out_dir)
    ws_port = await consumer.start()
    settings = load_settings(
        env={},
        overrides={
            "sip.listen": "127.0.0.1:0",
            "rtp.ports": "42000-42999",
            "output.url": f"ws://127.0.0.1:{ws_port}/",
            "output.mode": mode,
            "metrics.enabled": False,
        },
    )
    bridge = Bridge(settings)
    await bridge.start()
    print(
        f"demo: consumer ws://127.0.0.1:{ws_port}/, bridge sip:127.0.0.1:{bridge.sip_port} "
        f"({mode}), replaying {len(pcaps)} pcap(s)",
        flush=True,
    )
    try:
        results = await asyncio.gather(
            *(
                replay(p, ("127.0.0.1", bridge.sip_port), call_id_suffix=f"-demo{i}")
                for i, p in enumerate(pcaps)
            ),
            return_exceptions=True,
        )
        failures = [
            (p, r) for p, r in zip(pcaps, results, strict=True) if isinstance(r, BaseException)
        ]
        for pcap, exc in failures:
            print(f"demo: replay of {pcap.name} failed: {exc}")
        expected = sum(1 for r in results if not isinstance(r, BaseException))
        if mode == "per-leg":
            expected *= 2
        await consumer.wait_for(expected, timeout=15)
    finally:
        await bridge.stop()
        await consumer.close()
    print(f"demo: {len(consumer.summaries)} stream(s) written under {out_dir}/", flush=True)
    return 1 if failures else 0
