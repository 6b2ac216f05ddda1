"""The backoff policy: capped, jittered, and never shorter than a retry_after."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.domain.backoff import BackoffPolicy

policies = st.builds(
    BackoffPolicy,
    initial_s=st.floats(0.01, 60),
    factor=st.floats(1.0, 10),
    max_s=st.floats(0.01, 3600),
    jitter=st.floats(0, 0.99),
)
attempts = st.integers(0, 10_000)
retry_afters = st.none() | st.floats(0, 86_400)


@given(policies, attempts, st.integers(0, 2**32), retry_afters)
def test_never_above_the_cap_unless_the_runtime_asks(
    policy: BackoffPolicy, attempt: int, seed: int, retry_after: float | None
) -> None:
    delay = policy.delay(attempt, random.Random(seed), retry_after)
    assert delay <= max(policy.max_s, retry_after or 0.0)


@given(policies, attempts, st.integers(0, 2**32), st.floats(0, 86_400))
def test_a_retry_after_is_a_floor(
    policy: BackoffPolicy, attempt: int, seed: int, retry_after: float
) -> None:
    assert policy.delay(attempt, random.Random(seed), retry_after) >= retry_after


@given(policies, st.integers(0, 200))
def test_the_base_grows_until_the_cap(policy: BackoffPolicy, attempt: int) -> None:
    assert policy.base(attempt) <= policy.base(attempt + 1) <= policy.max_s


@given(policies, attempts, st.integers(0, 2**32))
def test_jitter_stays_within_its_share(policy: BackoffPolicy, attempt: int, seed: int) -> None:
    base = policy.base(attempt)
    delay = policy.delay(attempt, random.Random(seed))
    assert base * (1 - policy.jitter) - 1e-9 <= delay <= min(policy.max_s,
                                                              base * (1 + policy.jitter)) + 1e-9


def test_the_documented_sequence() -> None:
    policy = BackoffPolicy(initial_s=2, factor=1.5, max_s=30, jitter=0)
    assert [policy.delay(n, random.Random(0)) for n in range(9)] == [
        2, 3, 4.5, 6.75, 10.125, 15.1875, 22.78125, 30, 30]


def test_huge_attempt_numbers_do_not_overflow() -> None:
    policy = BackoffPolicy(initial_s=1, factor=10, max_s=5, jitter=0)
    assert policy.delay(10**9, random.Random(0)) == 5


@pytest.mark.parametrize("kwargs", [{"initial_s": 0}, {"factor": 0.5}, {"jitter": 1.0},
                                    {"max_s": -1}])
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(**kwargs)


@given(policies, st.floats(0, 1e6), st.floats(0, 1e6))
def test_steps_within_counts_the_retries_that_fit_and_only_grows(
    policy: BackoffPolicy, a: float, b: float
) -> None:
    short, long = sorted((a, b))
    steps = policy.steps_within(short)
    assert steps <= policy.steps_within(long)
    if steps < 10_000:
        assert sum(policy.base(n) for n in range(steps)) <= short * (1 + 1e-9) + 1e-9


def test_steps_within_follows_the_documented_sequence() -> None:
    policy = BackoffPolicy(initial_s=2, factor=1.5, max_s=30, jitter=0)
    # 2 + 3 + 4.5 = 9.5 fit in 10 s; 9.5 + 6.75 does not; the first seven make 64.34375,
    # after which each step is the 30 s cap
    assert [policy.steps_within(s) for s in (0, 1.9, 2, 10, 16.25, 64.34375 + 90)] == [
        0, 0, 1, 3, 4, 10]
