"""The polling and retry backoff: exponential, capped, jittered, and floored by retry_after.

``delay`` is pure: the attempt number and an injected ``random.Random`` go in, seconds come
out. A ``retry_after`` the runtime gave is a floor that is never cut short, even when it is
longer than the cap: the cap bounds *our* patience, not the runtime's instructions.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    initial_s: float = 2.0
    factor: float = 1.5
    max_s: float = 30.0
    jitter: float = 0.2  # ± this share of the delay, so synchronised jobs spread out

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s <= 0:
            raise ValueError("initial_s and max_s must be positive")
        if self.factor < 1:
            raise ValueError("factor must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def base(self, attempt: int) -> float:
        """The un-jittered delay before retry ``attempt`` (0 for the first), capped."""
        attempt = max(0, attempt)
        if self.factor > 1:
            # Past this exponent the cap applies anyway; clamping avoids float overflow.
            ceiling = math.log(max(self.max_s / self.initial_s, 1.0)) / math.log(self.factor)
            attempt = min(attempt, math.ceil(ceiling) + 1)
        return min(self.max_s, self.initial_s * self.factor**attempt)

    def steps_within(self, elapsed: float) -> int:
        """How many retries this backoff makes in ``elapsed`` seconds (un-jittered): the
        attempt number of a wait that is paced by time passed rather than by a counter."""
        steps, spent = 0, 0.0
        while steps < 10_000:
            base = self.base(steps)
            if base >= self.max_s:  # past the cap each step is max_s: the rest in one go
                return steps + max(0, math.floor((elapsed - spent) / self.max_s))
            if spent + base > elapsed:
                return steps
            spent += base
            steps += 1
        return steps

    def delay(
        self, attempt: int, rng: random.Random, retry_after: float | None = None
    ) -> float:
        """Seconds to wait before retry ``attempt``: never above the cap unless a longer
        ``retry_after`` demands it, never below ``retry_after``."""
        base = self.base(attempt)
        jittered = base * (1.0 + rng.uniform(-self.jitter, self.jitter))
        wait = min(self.max_s, max(jittered, 0.0))
        if retry_after is not None and retry_after > wait:
            return float(retry_after)
        return wait
