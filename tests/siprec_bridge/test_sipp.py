"""SIPp (``sip-tester``) as the SRC against a real ``siprec-bridge serve`` process.

SIPp sends the SIPREC INVITE (two labelled m-lines + RFC 7865 metadata), parses the bridge's
SDP answer, starts RTP on both answered ports (``sipp/send_rtp.py``) and hangs up with BYE.
The demo consumer (in this process) must receive one stereo call with each leg's tone.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from testkit.audio import dominant_hz, read_wav, rms
from testkit.sipp import SIPP, free_port, run_siprec_src

from siprec_bridge.consumer import ConsumerServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(SIPP is None, reason="SIPp not installed (apt install sip-tester)"),
]


async def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)
        else:
            writer.close()
            await writer.wait_closed()
            return


@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_sipp_src_records_both_legs(
    consumer: ConsumerServer, tmp_path: Path, transport: str
) -> None:
    sip_port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    bridge = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "siprec_bridge.cli",
        "serve",
        "--sip-listen",
        f"127.0.0.1:{sip_port}",
        "--rtp-ports",
        "44000-44099",
        "--ws-url",
        f"ws://127.0.0.1:{consumer.port}/",
        "--metrics-listen",
        "127.0.0.1:0",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await wait_listening(sip_port)
        seconds = 3
        assert SIPP is not None
        await run_siprec_src(
            f"127.0.0.1:{sip_port}", transport=transport, seconds=seconds, workdir=tmp_path
        )
        await consumer.wait_for(1, timeout=10)
    finally:
        bridge.terminate()
        out, _ = await asyncio.wait_for(bridge.communicate(), timeout=20)
    assert bridge.returncode == 0, out.decode()
    (summary,) = consumer.summaries
    assert summary.stop_reason == "bye"
    assert summary.labels == ["1", "2"]
    samples, rate = read_wav(Path(summary.wav_path))
    assert samples.shape[1] == 2 and rate == 8000
    # The session lasts until SIPp's BYE: after the RTP ends, time goes on as silence.
    assert seconds - 0.1 < samples.shape[0] / rate < seconds + 2.5
    for channel, hz in ((0, 440), (1, 1000)):
        body = samples[rate // 4 : seconds * rate - rate // 4, channel]
        assert rms(body) > 1000
        assert abs(dominant_hz(body, rate) - hz) < 15
