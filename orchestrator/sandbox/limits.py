"""The sandbox's rate limiter: an exact sliding window per operation class.

"60/minute" here means at most 60 admitted requests in *any* 60-second window, the
strictest reading of a published limit. A client that stays under it here stays under any
fixed-window or token-bucket server enforcing the same numbers, so the sandbox can prove
"never a request over the limit" rather than merely fail to notice one.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from orchestrator.domain.ratelimit import RateLimit


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_s: float  # until the oldest counted request leaves the window (a slot frees)

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_s)),
        }


class SlidingWindowLimiter:
    """Admitted-request timestamps per bucket; refused requests are not counted, so a
    client hammering through a 429 is not locked out beyond the window."""

    def __init__(self) -> None:
        self._log: dict[str, deque[float]] = {}

    def reset(self) -> None:
        self._log.clear()

    def check(self, bucket: str, rate: RateLimit, now: float, *, consume: bool = True) -> Verdict:
        """Admit (and with ``consume`` count) one request at ``now`` if the window has room."""
        log = self._log.setdefault(bucket, deque())
        while log and log[0] <= now - rate.period_s:
            log.popleft()
        allowed = len(log) < rate.count
        if allowed and consume:
            log.append(now)
        reset = log[0] + rate.period_s - now if log else 0.0
        return Verdict(allowed, rate.count, max(0, rate.count - len(log)), max(0.0, reset))
