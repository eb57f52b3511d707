"""MediaWatchdog: media timeouts lenient on hold, stalled streams reported once."""

from __future__ import annotations

from siprec_bridge.watchdog import LegSample, MediaWatchdog


def dog() -> MediaWatchdog:
    return MediaWatchdog(timeout=30, hold_timeout=600, stall=5)


def both(a: int, b: int, *, paused: bool = False) -> list[LegSample]:
    return [LegSample("label:1", a, paused), LegSample("label:2", b, paused)]


def test_flowing_media_never_times_out_or_stalls() -> None:
    w = dog()
    for second in range(100):
        verdict = w.observe("call", both(50 * second, 50 * second), float(second))
        assert not verdict.timed_out and verdict.stalled == []


def test_a_silent_stream_is_reported_once_and_again_after_it_recovered() -> None:
    w = dog()
    for second in range(12):
        verdict = w.observe("call", both(50 * second, 7), float(second))
        assert verdict.stalled == ([("label:2", 5.0)] if second == 5 else []), second
    w.observe("call", both(600, 8), 12.0)  # it recovered
    stalls = [w.observe("call", both(650 + s, 8), 13.0 + s).stalled for s in range(5)]
    assert stalls[-1] == [("label:2", 5.0)] and not any(stalls[:-1])


def test_no_media_at_all_times_out_after_the_timeout() -> None:
    w = dog()
    w.observe("call", both(10, 10), 0.0)
    assert not w.observe("call", both(10, 10), 29.0).timed_out
    assert w.observe("call", both(10, 10), 30.0).timed_out


def test_hold_is_lenient_and_resuming_the_stream_counts_as_media() -> None:
    w = dog()
    w.observe("call", both(10, 10, paused=True), 0.0)
    verdict = w.observe("call", both(10, 10, paused=True), 300.0)
    assert not verdict.timed_out and verdict.stalled == []  # paused streams do not stall
    assert not w.observe("call", both(11, 10, paused=False), 301.0).timed_out
    assert w.observe("call", both(11, 10, paused=False), 331.0).timed_out


def test_forget_starts_over() -> None:
    w = dog()
    w.observe("call", both(1, 1), 0.0)
    w.forget("call")
    assert not w.observe("call", both(1, 1), 100.0).timed_out


def test_a_zero_timeout_never_ends_a_call() -> None:
    w = MediaWatchdog(timeout=0, hold_timeout=0, stall=5)
    w.observe("call", both(1, 1), 0.0)
    assert not w.observe("call", both(1, 1), 10_000.0).timed_out
