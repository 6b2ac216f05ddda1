"""The sliding-window rule every limiter of ours keeps, as properties over any interleaving."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.domain.ratelimit import RateLimit, next_turn, promised_turn, window_margin_s
from orchestrator.testing import FakeClock, InMemoryRateLimiter

LIMITS = st.builds(RateLimit, count=st.integers(1, 60),
                   period_s=st.sampled_from([0.5, 1.0, 6.0, 60.0]))


def most_in_any_window(times: list[float], period: float) -> int:
    """The largest number of times in any half-open window of ``period``."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - period:
            start += 1
        best = max(best, end - start + 1)
    return best


@settings(max_examples=300, deadline=None)
@given(limit=LIMITS, gaps=st.lists(st.floats(0, 2.0), min_size=1, max_size=400))
def test_never_more_than_the_limit_in_any_window(limit: RateLimit, gaps: list[float]) -> None:
    granted: list[float] = []
    now = 1_000.0
    for gap in gaps:
        now += gap * limit.period_s / max(1, limit.count)
        if next_turn(granted, now, limit) == 0.0:
            granted.append(now)
    assert most_in_any_window(granted, limit.period_s + window_margin_s(limit)) <= limit.count


@settings(max_examples=100, deadline=None)
@given(limit=LIMITS, callers=st.integers(1, 8), order=st.randoms(use_true_random=False))
def test_callers_coming_back_at_their_turn_use_the_whole_limit(limit: RateLimit, callers: int,
                                                              order: object) -> None:
    """Every caller asks again exactly when told: over many windows the grants come within
    the margin of the limit (the margin is what keeps requests that travel unevenly inside
    it), and no window ever holds more."""
    clock = FakeClock(0.0)
    limiter = InMemoryRateLimiter(clock)
    due = [0.0] * callers
    horizon = 20 * limit.period_s
    while clock.now() < horizon:
        clock.t = min(due)
        caller = due.index(clock.t)
        wait = limiter.acquire("key", "trigger", limit)
        due[caller] = clock.now() + wait if wait else clock.now()
    granted = limiter.granted[("key", "trigger")]
    rate = len(granted) / horizon
    assert rate >= 0.97 * limit.count / limit.period_s
    assert most_in_any_window(granted, limit.period_s) <= limit.count


def test_a_full_window_says_when_the_next_turn_comes() -> None:
    limit = RateLimit(2, 10.0)
    margin = window_margin_s(limit)
    assert next_turn([], 0.0, limit) == 0.0
    assert next_turn([0.0], 1.0, limit) == 0.0
    assert next_turn([0.0, 1.0], 2.0, limit) == 10.0 + margin - 2.0
    assert next_turn([0.0, 1.0], 10.0 + margin + 0.001, limit) == 0.0


def test_refused_callers_are_promised_turns_one_after_another() -> None:
    limit = RateLimit(2, 10.0)
    window = 10.0 + window_margin_s(limit)
    granted = [0.0, 1.0]
    promised: list[float] = []
    for _ in range(5):
        promised.append(promised_turn(granted, promised, 2.0, limit))
    # The turns the two grants free, then the turns those promises free a window later.
    assert promised == [window, 1.0 + window, 2 * window, 1.0 + 2 * window, 3 * window]
