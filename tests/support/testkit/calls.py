"""Replayed calls for end-to-end tests: the bundled pcaps, their manifest, routes, tones.

Several calls share one bridge in a test: each gets a Call-ID suffix (``replay(...,
call_id_suffix=...)``) and a route that matches it (:func:`route_by_suffix`), so one bridge
serves every target of a test at once.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from testkit.audio import dominant_hz

ROOT = Path(__file__).resolve().parents[3]
PCAPS = ROOT / "pcaps"
MANIFEST: dict[str, Any] = json.loads((PCAPS / "manifest.json").read_text())

DURATION_SLACK_MS = 40
"""A call's audio may differ from what was sent by up to a frame at each end: the second leg
can start a fraction of a frame after the first, and the last frame is completed."""


def legs_of(pcap: str) -> list[dict[str, Any]]:
    return list(MANIFEST[pcap]["legs"])


def sent_duration_ms(pcap: str) -> int:
    """Call time covered by the pcap's RTP (the first leg's start to the last leg's end)."""
    return max(int(leg["start_ms"]) + int(leg["duration_ms"]) for leg in legs_of(pcap))


def digits_of(pcap: str) -> str:
    return "".join(MANIFEST[pcap].get("dtmf", []))


def route_by_suffix(name: str, suffix: str, targets: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A ``[[routes]]`` entry for the calls replayed with ``call_id_suffix=suffix``."""
    return {
        "name": name,
        "match": {"headers": {"Call-ID": f"{suffix}$"}},
        "targets": list(targets),
    }


def body_hz(column: npt.NDArray[np.int16], rate: int) -> float:
    """Dominant frequency of a track without its first and last quarter second."""
    return dominant_hz(column[rate // 4 : -rate // 4], rate)


def spectrum_peaks(column: npt.NDArray[np.int16], rate: int, tones: Sequence[float]) -> list[float]:
    """Level of each tone relative to the strongest bin, in dB (0 = the strongest)."""
    x = column[rate // 4 : -rate // 4].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    spectrum[0] = 0.0
    top = float(spectrum.max())
    levels = []
    for hz in tones:
        k = round(hz * len(x) / rate)
        levels.append(20 * float(np.log10(spectrum[k - 2 : k + 3].max() / top)))
    return levels


def high_band_db(column: npt.NDArray[np.int16], rate: int, above_hz: float) -> float:
    """Energy above ``above_hz`` relative to the total, in dB (images, aliasing)."""
    x = column[rate // 4 : -rate // 4].astype(np.float64)
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    cut = int(above_hz * len(x) / rate)
    return 10 * float(np.log10(power[cut:].sum() / power.sum()))


async def wait_until(predicate: Callable[[], object], *, timeout: float) -> None:
    """Poll ``predicate`` every 20 ms until it is true; ``TimeoutError`` after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


@pytest.fixture
def quiet_gc() -> Iterator[None]:
    """Keep the test process's garbage collections short while calls are replayed.

    A full collection walks every object of the test session (thousands of collected tests):
    tens of milliseconds, or more, during which neither the replayer nor the bridge runs. A
    pause longer than the bridge's jitter buffer (60 ms) makes RTP packets late and, at the
    start of a call, shifts a leg's anchoring, which the bridge later corrects by skipping
    audio. The objects that exist before the test are frozen (``gc.freeze``: never scanned
    again) for its duration.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
