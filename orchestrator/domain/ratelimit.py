"""Rate limits as values (``"60/minute"`` parsed into a count per period of seconds), and the
sliding-window rule every limiter of ours keeps.

The rule is the strictest reading of a published limit: at most ``count`` requests in *any*
window of ``period_s``. A client that keeps it stays under a server enforcing the same
numbers with a fixed window, a token bucket or a sliding window alike, so we can promise
"not one request over" rather than "about the limit". (A token bucket or GCRA with a burst
allowance does not keep it: a full bucket plus the refill makes up to twice the count in
one window.) The window is counted ``margin`` longer than the period, so requests that
travel to the runtime at slightly different speeds still arrive inside the limit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")


@dataclass(frozen=True)
class RateLimit:
    count: int
    period_s: float

    @property
    def interval_s(self) -> float:
        """The spacing between requests at exactly the limit."""
        return self.period_s / self.count

    def __str__(self) -> str:
        return f"{self.count}/{self.period_s:g}s"


def window_margin_s(limit: RateLimit) -> float:
    """How much longer than its period a window is counted: 1% of it, between 20 ms and 1 s
    (the spread of delays between taking a turn and the request reaching the runtime)."""
    return min(1.0, max(0.02, limit.period_s / 100))


def next_turn(granted: Sequence[float], now: float, limit: RateLimit) -> float:
    """Given the times of the requests granted so far (oldest first), 0.0 if one more may
    go at ``now``, else the seconds until one may."""
    window = limit.period_s + window_margin_s(limit)
    recent = [t for t in granted if t > now - window]
    if len(recent) < limit.count:
        return 0.0
    return recent[-limit.count] + window - now


def promised_turn(granted: Sequence[float], promised: Sequence[float], now: float,
                  limit: RateLimit) -> float:
    """When a request refused at ``now`` gets its turn, after the ones already promised.

    Every refused caller is told a different time: the k-th waiter gets the turn freed when
    the k-th of the granted (or promised) requests leaves the window. So a thousand waiting
    jobs come back one turn apart, not all at the next turn (where one would win and the
    rest be refused again). A promise grants nothing: at its time the caller asks again."""
    window = limit.period_s + window_margin_s(limit)
    turns = sorted(t for t in granted if t > now - window)
    future = sorted(t for t in promised if t > now)
    index = len(turns) - limit.count + len(future)
    return (turns + future)[index] + window


def parse_rate_limit(text: str) -> RateLimit:
    """``"60/minute"``, ``"10/second"``, ``"60/6s"`` → ``RateLimit``; ValueError if not."""
    count_text, sep, period_text = text.strip().partition("/")
    expected = f"expected '<count>/<period>' such as '60/minute' or '60/6s', got '{text}'"
    if not sep or not count_text.strip().isdigit() or int(count_text) <= 0:
        raise ValueError(expected)
    period = parse_duration(period_text.strip(), named=True)
    if period is None or period <= 0:
        raise ValueError(expected)
    return RateLimit(int(count_text), period)


def parse_duration(text: str, *, named: bool = False) -> float | None:
    """``"30s"``, ``"1.5m"``, ``"250ms"`` (and, if ``named``, ``"minute"``) → seconds."""
    if named and text in _PERIODS:
        return _PERIODS[text]
    match = _DURATION.match(text)
    if not match:
        return None
    return float(match.group(1)) * _UNITS[match.group(2)]
