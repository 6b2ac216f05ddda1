from __future__ import annotations

import pytest

from orchestrator.domain.ratelimit import RateLimit, parse_duration, parse_rate_limit


@pytest.mark.parametrize(("text", "limit"), [
    ("60/minute", RateLimit(60, 60)),
    ("120/minute", RateLimit(120, 60)),
    ("10/second", RateLimit(10, 1)),
    ("60/6s", RateLimit(60, 6)),
    ("5/hour", RateLimit(5, 3600)),
    ("100/250ms", RateLimit(100, 0.25)),
])
def test_rate_limits_parse(text: str, limit: RateLimit) -> None:
    assert parse_rate_limit(text) == limit


@pytest.mark.parametrize("text", ["abc", "0/minute", "-1/minute", "60/", "/minute",
                                  "60/fortnight", "60/0s", "1.5/minute"])
def test_bad_rate_limits_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="<count>/<period>"):
        parse_rate_limit(text)


def test_durations() -> None:
    assert parse_duration("30s") == 30
    assert parse_duration("2m") == 120
    assert parse_duration("minute") is None
    assert parse_duration("minute", named=True) == 60
