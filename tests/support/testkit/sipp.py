"""SIPp (``sip-tester``) as the SIPREC SRC of ``tests/siprec_bridge/sipp/siprec_uac.xml``."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCENARIO_DIR = ROOT / "tests" / "siprec_bridge" / "sipp"
SIPP = shutil.which("sipp")


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_siprec_src(
    target: str, *, transport: str, seconds: int, workdir: Path, timeout: float = 40.0
) -> None:
    """One recorded call: INVITE (two labelled m-lines + RFC 7865 metadata), ``seconds`` of RTP
    on both answered ports (``send_rtp.py``), BYE. Fails with SIPp's error log."""
    assert SIPP is not None, "SIPp not installed (apt install sip-tester)"
    errors = workdir / "sipp_errors.log"
    sipp = await asyncio.create_subprocess_exec(
        SIPP, target,
        "-sf", str(SCENARIO_DIR / "siprec_uac.xml"),
        "-t", transport, "-i", "127.0.0.1", "-p", str(free_port()),
        "-m", "1", "-timeout", str(int(timeout) - 10), "-timeout_error", "-nostdin",
        "-set", "py", sys.executable,
        "-set", "rtp", str(SCENARIO_DIR / "send_rtp.py"),
        "-set", "secs", str(seconds),
        # Pause before BYE: the RTP sender (a Python process) may start late.
        "-d", str(seconds * 1000 + 2000),
        "-trace_err", "-error_file", str(errors),
        cwd=workdir,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(sipp.communicate(), timeout)
    assert sipp.returncode == 0, errors.read_text() if errors.exists() else err.decode()
