"""Media timeouts (sans-I/O): which calls have no media, which streams stalled.

The bridge samples each leg's packet counter about once a second and asks :class:`MediaWatchdog`
what to do. Nothing runs per packet. Timeouts are lenient on hold: while every stream of a call is
paused (RFC 7866 §8.1.6) the call may stay silent for ``hold_timeout`` (some SBCs stop RTP during
hold or mute: QUIRKS.md #42), otherwise for ``timeout``. A timeout of 0 never expires
(``media.timeout_s = 0``, as documented in ``docs/config.example.toml``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LegSample:
    """One leg at sampling time: its packet counter and whether the SRC paused it."""

    key: str
    packets: int
    paused: bool


@dataclass
class Verdict:
    timed_out: bool = False
    stalled: list[tuple[str, float]] = field(default_factory=list)  # (leg key, silent seconds)


@dataclass
class _LegState:
    packets: int
    since: float
    reported: bool = False


@dataclass
class _CallState:
    last_media: float
    legs: dict[str, _LegState] = field(default_factory=dict)


class MediaWatchdog:
    """Tracks per-call media activity; see the module docstring."""

    def __init__(self, *, timeout: float, hold_timeout: float, stall: float) -> None:
        self.timeout = timeout
        self.hold_timeout = hold_timeout
        self.stall = stall
        self._calls: dict[Hashable, _CallState] = {}

    def observe(self, call: Hashable, legs: Sequence[LegSample], now: float) -> Verdict:
        state = self._calls.get(call)
        if state is None:
            state = self._calls[call] = _CallState(last_media=now)
        verdict = Verdict()
        for sample in legs:
            leg = state.legs.get(sample.key)
            if leg is None or sample.packets != leg.packets:
                state.legs[sample.key] = _LegState(sample.packets, now)
                if leg is not None:
                    state.last_media = now
                continue
            silent = now - leg.since
            if not sample.paused and not leg.reported and silent >= self.stall:
                leg.reported = True
                verdict.stalled.append((sample.key, silent))
        all_paused = bool(legs) and all(sample.paused for sample in legs)
        limit = self.hold_timeout if all_paused else self.timeout
        verdict.timed_out = limit > 0 and now - state.last_media >= limit  # 0: never
        return verdict

    def forget(self, call: Hashable) -> None:
        self._calls.pop(call, None)
