"""Rate limits as values: ``"60/minute"`` parsed into a count per period of seconds."""

from __future__ import annotations

import re
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
