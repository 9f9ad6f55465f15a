"""Two-bucket sliding-window maths: admission, remaining, Retry-After."""

from __future__ import annotations

import pytest

from ratelimit_service.windows import Decision, Window, WindowState

MINUTE = Window("minute", 60)


def state(prev: int, cur: int, elapsed_s: float, window: Window = MINUTE) -> WindowState:
    return WindowState(window, prev, cur, int(elapsed_s * 1000))


def test_previous_bucket_weight_decays_linearly() -> None:
    assert state(60, 0, 0).estimate() == 60
    assert state(60, 0, 30).estimate() == 30
    assert state(60, 10, 45).estimate() == pytest.approx(25)


def test_admission_and_remaining() -> None:
    assert state(0, 59, 10).admits(1)
    assert not state(0, 60, 10).admits(1)
    assert state(0, 59, 10).remaining() == 1
    assert state(30, 20, 30).remaining() == 25


def test_retry_after_waits_for_previous_bucket_to_decay() -> None:
    # prev=60, cur=0 at t=0: one slot frees when 60*(60-t)/60 <= 59 → t = 1 s.
    s = state(60, 0, 0)
    assert s.retry_after_ms(1) == 1000
    later = WindowState(MINUTE, 60, 0, 1000)
    assert later.admits(1)


def test_retry_after_when_current_bucket_is_full() -> None:
    # cur=60 at 20 s into the bucket: wait 40 s for the roll-over, then 1 s of decay.
    s = state(0, 60, 20)
    assert s.retry_after_ms(1) == 40_000 + 1000
    assert WindowState(MINUTE, 60, 0, 1000).admits(1)


def test_retry_after_is_zero_when_admitted_and_never_for_impossible_hits() -> None:
    assert state(0, 0, 0).retry_after_ms(1) == 0
    with pytest.raises(ValueError):
        state(0, 0, 0).retry_after_ms(61)


@pytest.mark.parametrize("prev,cur,elapsed", [(60, 0, 0), (40, 30, 12.5), (10, 60, 59.9), (59, 1, 0.001)])
def test_waiting_retry_after_admits_exactly_then(prev: int, cur: int, elapsed: float) -> None:
    s = state(prev, cur, elapsed)
    wait = s.retry_after_ms(1)
    assert wait > 0
    t = s.elapsed_ms + wait
    if t < s.window_ms:
        after, before = WindowState(MINUTE, prev, cur, t), WindowState(MINUTE, prev, cur, t - 1)
    else:  # rolled over: the current bucket became the previous one
        after = WindowState(MINUTE, cur, 0, t - s.window_ms)
        before = WindowState(MINUTE, cur, 0, t - s.window_ms - 1) if t - 1 >= s.window_ms else s
    assert after.admits(1)
    assert not before.admits(1)


def test_decision_reports_the_blocking_window() -> None:
    hour = Window("hour", 5)
    minute_ok = state(0, 1, 10)
    hour_full = WindowState(hour, 0, 5, 1_000_000)
    decision = Decision(False, (minute_ok, hour_full))
    assert decision.blocking() is hour_full
    assert decision.retry_after() == 3600 - 1000 + 720
    assert decision.tightest() is hour_full
    assert Decision(True, (minute_ok,)).blocking() is None
    assert Decision(True, (minute_ok,)).retry_after() == 0
