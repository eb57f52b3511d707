"""The corpus SIPp scenarios (MiaRec, drachtio) as SRCs against ``siprec-bridge serve`` (issue 3).

``vectors/corpus_expectations.json`` (section ``sipp``) places every scenario file of
``../shared/siprec-corpus/sipp-scenarios/`` either in a *run* (one SIPp process, or 3PCC twins
that coordinate two or three recorded calls) with what the consumer must receive, or under
``not_run`` with the reason it cannot run stand-alone.

Each run gets a directory with what its scenarios reference relative to themselves: the
injection files (``-inf tenant-users.csv -inf callee.csv``), the captures played with
``play_pcap_audio`` (from ``pcap/``; drachtio's absolute ``/tmp/pcap/g711a.pcap`` is pointed at
the local copy), and ``audio_alaw.wav`` / ``audio_alaw_2h.wav`` for ``rtp_stream``, which the
corpus lacks: an A-law WAV of a 1 kHz tone written here (SIPp sends its data chunk as raw
payload). The scenario text is used as published except that every ``<pause>`` is capped at
``pause_cap_ms`` (the published pauses add up to minutes; the signalling is unchanged). Runs
go at once (``parallel_runs`` at a time) against one bridge process; each SIPp gets its own
SIP port, media ports, error log and a Call-ID prefix naming its run, by which the
recordings are matched.

Checked per run: every SIPp process exits 0 (each scripted response arrived), the consumer
received the expected recording sessions (streams, stop reason), and what SIPp streams (the
tone, a capture's sound, RFC 4733 digits) is in the recording. Expected failures are
``xfail(strict=True)`` with their reason in the JSON: scenario bugs, and the bridge answering
a single codec while SIPp sends another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvloop
from testkit.audio import dominant_hz, read_wav, rms

from rtp.codecs import alaw_encode
from siprec_bridge.consumer import CallSummary, ConsumerServer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = (ROOT / ".." / "shared" / "siprec-corpus").resolve()
SCENARIOS = CORPUS / "sipp-scenarios"
SIPP = shutil.which("sipp")
SPEC: dict[str, Any] = json.loads((HERE / "vectors" / "corpus_expectations.json").read_text())[
    "sipp"
]
RUNS: dict[str, dict[str, Any]] = {run["id"]: run for run in SPEC["runs"]}

TONE_HZ = 1000
TONE_SECONDS = 30  # longer than any capped scenario: rtp_stream without a loop count plays once
RTP_PORTS = "48000-48999"
MEDIA_BASE = 30000  # SIPp -mp per process: MEDIA_BASE + 20 * n (below the ephemeral range)
SIPP_TIMEOUT_S = 60

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not SCENARIOS.is_dir(), reason=f"corpus not present at {CORPUS}"),
    pytest.mark.skipif(SIPP is None, reason="SIPp not installed (apt install sip-tester)"),
]


# --------------------------------------------------------------------------------------------
# Preparing a run directory


def patch_scenario(text: str, pause_cap_ms: int, media: Mapping[str, str]) -> str:
    """Cap pauses at ``pause_cap_ms``; point ``play_pcap_audio`` paths in ``media`` at the
    files of the same name in the run directory."""
    text = re.sub(
        r'<pause\s+milliseconds="(\d+)"',
        lambda m: f'<pause milliseconds="{min(int(m[1]), pause_cap_ms)}"',
        text,
    )
    text = re.sub(
        r"<pause\s+distribution=[^>]*?/>", f'<pause milliseconds="{pause_cap_ms}"/>', text
    )
    for original in media:
        local = Path(original).name
        text = text.replace(f'play_pcap_audio="{original}"', f'play_pcap_audio="{local}"')
    return text


def write_tone_wav(path: Path) -> None:
    """An A-law (WAVE format 6) file of a 1 kHz tone at 8 kHz: what ``rtp_stream`` plays."""
    t = np.arange(8000 * TONE_SECONDS) / 8000
    data = alaw_encode((8000 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16))
    fmt = struct.pack("<HHIIHH", 6, 1, 8000, 8000, 1, 8)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data))
    path.write_bytes(
        b"RIFF" + struct.pack("<I", 4 + len(chunks) + len(data)) + b"WAVE" + chunks + data
    )


def prepare(run: Mapping[str, Any], directory: Path, tone: Path) -> list[Path]:
    """Write the run's files into ``directory``; return its scenario files in start order."""
    directory.mkdir(parents=True)
    media: dict[str, str] = run.get("media", {})
    for name in ("audio_alaw.wav", "audio_alaw_2h.wav"):
        shutil.copy(tone, directory / name)
    for name in SPEC["injection_files"]:
        shutil.copy(SCENARIOS / "miarec" / name, directory / name)
    for original, corpus_path in media.items():
        shutil.copy(CORPUS / corpus_path, directory / Path(original).name)
    files = []
    for scenario in run["scenarios"]:
        target = directory / Path(scenario["file"]).name
        text = (SCENARIOS / scenario["file"]).read_text(encoding="iso-8859-1")
        pause_cap = run.get("pause_cap_ms", SPEC["pause_cap_ms"])
        target.write_text(patch_scenario(text, pause_cap, media), encoding="iso-8859-1")
        files.append(target)
    return files


# --------------------------------------------------------------------------------------------
# Running


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_listening(port: int, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)
        else:
            writer.close()
            await writer.wait_closed()
            return


def tcp_listening(port: int) -> bool:
    """Whether a socket listens on TCP ``port`` (Linux ``/proc/net/tcp``, state 0A)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


async def wait_tcp_listen(port: int, timeout: float = 10.0) -> None:
    """Wait for a SIPp twin to listen without connecting to it: a 3PCC twin takes the first
    connection for its partner's and exits when it closes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not tcp_listening(port):
        if loop.time() > deadline:
            raise TimeoutError(f"nothing listens on TCP port {port}")
        await asyncio.sleep(0.05)


@dataclass
class Process:
    scenario: str
    returncode: int | None = None
    seconds: float = 0.0
    errors: str = ""


@dataclass
class RunOutcome:
    processes: list[Process] = field(default_factory=list)
    sessions: list[CallSummary] = field(default_factory=list)


def sipp_arguments(run: Mapping[str, Any], path: Path, sip_port: int, n: int) -> list[str]:
    """Command line of process ``n`` (SIP port, media ports and error file of its own)."""
    transport = run.get("transport", "u1")
    kind = socket.SOCK_STREAM if transport == "t1" else socket.SOCK_DGRAM
    inject = [arg for name in SPEC["injection_files"] for arg in ("-inf", name)]
    return [
        f"127.0.0.1:{sip_port}", "-sf", path.name, "-m", "1", "-t", transport,
        "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(free_port(kind)),
        "-mp", str(MEDIA_BASE + 20 * n), "-cid_str", f"{call_id_prefix(run['id'])}-%u-%p@%s",
        "-timeout", str(SIPP_TIMEOUT_S), "-timeout_error", "-nostdin",
        "-trace_err", "-error_file", f"errors-{n}.log", *inject,
    ]  # fmt: skip


async def run_sipp(
    run: Mapping[str, Any],
    files: Sequence[Path],
    sip_port: int,
    outcome: RunOutcome,
    slots: asyncio.Semaphore,
    first: int,
) -> None:
    """Start the run's SIPp processes (listening twins first) and wait for all of them.

    SIPp 3PCC: role ``b`` listens on the twin port and ``a`` connects to it (``-3pcc``);
    extended 3PCC names every twin in ``slaves.cfg`` and the master connects to the slaves
    (``-master``/``-slave``).
    """
    directory = files[0].parent
    roles = [s.get("role") for s in run["scenarios"]]
    twins = {role: free_port(socket.SOCK_STREAM) for role in roles if role is not None}
    if any(role not in (None, "a", "b") for role in roles):
        (directory / "slaves.cfg").write_text(
            "".join(f"{role};127.0.0.1:{port}\n" for role, port in twins.items())
        )
    async with slots:
        loop = asyncio.get_running_loop()
        started = []
        for n, (scenario, path) in enumerate(zip(run["scenarios"], files, strict=True), first):
            role = scenario.get("role")
            args = sipp_arguments(run, path, sip_port, n)
            if role in ("a", "b"):
                args += ["-3pcc", f"127.0.0.1:{twins['b']}"]
            elif role == "master":
                args += ["-master", role, "-slave_cfg", "slaves.cfg"]
            elif role is not None:
                args += ["-slave", role, "-slave_cfg", "slaves.cfg"]
            assert SIPP is not None
            process = await asyncio.create_subprocess_exec(
                SIPP, *args, cwd=directory, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            record = Process(scenario["file"], seconds=loop.time())
            outcome.processes.append(record)
            started.append((record, process, directory / f"errors-{n}.log"))
            if role not in (None, "a", "master"):
                await wait_tcp_listen(twins[role])  # before the twin that connects to it
        for record, process, log in started:
            _, err = await process.communicate()
            record.returncode = process.returncode
            record.seconds = loop.time() - record.seconds
            text = log.read_text(errors="replace") if log.exists() else ""
            record.errors = (err.decode(errors="replace") + text)[-3000:]


def prepare_all(work: Path) -> dict[str, list[Path]]:
    """Every run directory, written before anything starts (the consumer shares the loop)."""
    tone = work / "tone.wav"
    write_tone_wav(tone)
    return {run_id: prepare(run, work / run_id, tone) for run_id, run in RUNS.items()}


async def run_all(work: Path, files: Mapping[str, Sequence[Path]]) -> dict[str, RunOutcome]:
    """One bridge process, the consumer in this loop, every run (at most ``parallel_runs`` at
    a time: each SIPp binds one of 60 remote-control ports, 8888-8947)."""
    consumer = ConsumerServer("127.0.0.1", 0, work / "consumer")
    await consumer.start()
    sip_port = free_port()
    config = work / "bridge.toml"
    # Calls a broken scenario leaves open are ended 1 s after SIGINT (docs/config.example.toml).
    config.write_text("[drain]\nsigint_time_s = 1.0\n\n[metrics]\nenabled = false\n")
    bridge = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "siprec_bridge.cli", "serve", "--config", str(config),
        "--sip-listen", f"127.0.0.1:{sip_port}", "--rtp-ports", RTP_PORTS,
        "--ws-url", f"ws://127.0.0.1:{consumer.port}/",
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    outcomes = {run_id: RunOutcome() for run_id in RUNS}
    slots = asyncio.Semaphore(SPEC["parallel_runs"])
    try:
        await wait_listening(sip_port)
        await asyncio.gather(
            *(
                run_sipp(run, files[run_id], sip_port, outcomes[run_id], slots, first)
                for (run_id, run), first in zip(RUNS.items(), first_process_numbers(), strict=True)
            )
        )
        ending = sum(1 for run in RUNS.values() for s in run["sessions"] if s.get("stop") == "bye")
        with contextlib.suppress(TimeoutError):  # the per-run tests say what is missing
            await consumer.wait_for(ending, timeout=15)
    finally:
        if bridge.returncode is None:  # calls still open: BYE after [drain] sigint_time_s
            bridge.send_signal(signal.SIGINT)
        bridge_log, _ = await asyncio.wait_for(bridge.communicate(), timeout=30)
        await consumer.close()
    (work / "bridge.log").write_bytes(bridge_log)
    assert bridge.returncode == 0, bridge_log.decode(errors="replace")[-3000:]
    run_ids = list(RUNS)
    for summary in consumer.summaries:
        found = _RUN_OF_CALL_ID.search(summary.call_id)
        assert found is not None, f"recording of no run: {summary.call_id}"
        outcomes[run_ids[int(found[1])]].sessions.append(summary)
    return outcomes


def first_process_numbers() -> list[int]:
    """Per run, the number of its first SIPp process (processes are numbered across runs)."""
    counts = [len(run["scenarios"]) for run in RUNS.values()]
    return [sum(counts[:i]) for i in range(len(counts))]


# SIPp Call-IDs are "<prefix>-<call number>-<pid>@<ip>"; 3PCC twins prepend "new_".
_RUN_OF_CALL_ID = re.compile(r"(?:^|_)r(\d+)x-")


def call_id_prefix(run_id: str) -> str:
    return f"r{list(RUNS).index(run_id)}x"


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunOutcome]:
    """Every run, once per module."""
    work = tmp_path_factory.mktemp("corpus-sipp")
    files = prepare_all(work)
    return uvloop.run(run_all(work, files))


# --------------------------------------------------------------------------------------------
# The checks


def with_xfail(run_ids: Sequence[str], key: str) -> list[Any]:
    """Parameters, strictly expected to fail where the run says why under ``key``."""
    return [
        pytest.param(run_id, marks=pytest.mark.xfail(strict=True, reason=RUNS[run_id][key]))
        if key in RUNS[run_id]
        else run_id
        for run_id in run_ids
    ]


def test_every_scenario_is_run_or_excused() -> None:
    found = {str(p.relative_to(SCENARIOS)) for p in SCENARIOS.rglob("*.xml")}
    run = [s["file"] for r in RUNS.values() for s in r["scenarios"]]
    assert len(run) == len(set(run))
    assert found == set(run) | set(SPEC["not_run"])
    assert not set(run) & set(SPEC["not_run"])


def test_patch_scenario_changes_pauses_and_media_paths_only() -> None:
    text = (
        '<pause milliseconds="10000"/><pause milliseconds="20"/>'
        '<pause distribution="normal" mean="180000" stdev="60000"/>'
        '<exec play_pcap_audio="/tmp/pcap/g711a.pcap"/><send>pause</send>'
    )
    assert patch_scenario(text, 2000, {"/tmp/pcap/g711a.pcap": "pcap/sipp/g711a.pcap"}) == (
        '<pause milliseconds="2000"/><pause milliseconds="20"/><pause milliseconds="2000"/>'
        '<exec play_pcap_audio="g711a.pcap"/><send>pause</send>'
    )


@pytest.mark.parametrize("run_id", with_xfail(list(RUNS), "xfail"))
def test_sipp_run_completes(run_id: str, outcomes: dict[str, RunOutcome]) -> None:
    """Every SIPp process of the run exits 0: all its messages were answered as scripted."""
    processes = outcomes[run_id].processes
    assert len(processes) == len(RUNS[run_id]["scenarios"])
    for process in processes:
        assert process.returncode == 0, f"{process.scenario}: {process.errors}"


@pytest.mark.parametrize("run_id", list(RUNS))
def test_sipp_run_is_recorded(run_id: str, outcomes: dict[str, RunOutcome]) -> None:
    """The consumer received one recording per SIPREC session of the run, with its streams
    and, where the run ends cleanly, the stop reason."""
    expected = RUNS[run_id]["sessions"]
    sessions = outcomes[run_id].sessions
    got = sorted((len(s.labels), s.stop_reason) for s in sessions)
    want = sorted((e["streams"], e.get("stop")) for e in expected)
    assert [n for n, _ in got] == [n for n, _ in want], got
    for (_, reason), (_, wanted) in zip(got, want, strict=True):
        assert wanted is None or reason == wanted, got


AUDIO_RUNS = [run_id for run_id, run in RUNS.items() if "audio" in run]


@pytest.mark.parametrize("run_id", with_xfail(AUDIO_RUNS, "audio_xfail"))
def test_sipp_run_audio(run_id: str, outcomes: dict[str, RunOutcome]) -> None:
    """What SIPp streams reaches the WAV: ``tone`` the 1 kHz of audio_alaw.wav, ``sound``
    anything above the A-law idle level, ``dtmf:<digits>`` RFC 4733 digits from a capture."""
    audio: str = RUNS[run_id]["audio"]
    sessions = outcomes[run_id].sessions
    if audio.startswith("dtmf:"):
        assert [s.dtmf for s in sessions] == [audio.removeprefix("dtmf:")]
        return
    channels = []
    for summary in sessions:
        if summary.wav_path is None or not summary.frames:
            continue
        samples, rate = read_wav(summary.wav_path)
        channels += [(samples[:, c], rate) for c in range(samples.shape[1])]
    assert channels, "no audio frames recorded"
    if audio == "tone":
        assert any(
            rms(x) > 1000 and abs(dominant_hz(x, rate) - TONE_HZ) < 10 for x, rate in channels
        ), [(round(rms(x)), round(dominant_hz(x, rate))) for x, rate in channels]
    else:
        assert audio == "sound"
        assert any(rms(x) > 100 for x, _ in channels)
