"""``RedisMetrics``: the ``Metrics`` sink and its reader in Redis, shared by every process.

Two hashes hold everything: one field per counter series (``HINCRBY``), and per histogram
series one field per bucket plus one for the sum (``HINCRBY`` on the one bucket the value
falls in, ``HINCRBYFLOAT`` on the sum: buckets are stored non-cumulative, so an observation
costs two commands in one round trip, not one per bucket). The scrape reads both hashes
whole; the label sets are small and bounded, so they stay small.

Recording is best effort. A failure (Redis down, a time-out) is logged at debug and then
recording pauses for a few seconds, so tasks do not each wait out a connect time-out while
Redis is away; it never raises into the caller.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis

from orchestrator.metrics import LATENCY_BUCKETS, Histogram, Series, bucket_index, series

log = logging.getLogger(__name__)

# Celery's Redis transport keeps messages sent with a priority in extra lists beside the
# queue's own, named queue + this separator + the priority step.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)
_BOUNDS = [repr(b) for b in LATENCY_BUCKETS] + ["+Inf"]
_SUM = "sum"


def _field(key: Series, *extra: str) -> str:
    name, labels = key
    return json.dumps([name, [list(pair) for pair in labels], *extra], separators=(",", ":"))


def _parse(field: bytes | str) -> tuple[Series, list[str]]:
    name, labels, *extra = json.loads(field)
    return (name, tuple((str(k), str(v)) for k, v in labels)), extra


class RedisMetrics:
    def __init__(self, client: redis.Redis, *, prefix: str = "orchestrator:metrics",
                 pause_after_failure_s: float = 5.0) -> None:
        self._client = client
        self._counters = f"{prefix}:counters"
        self._histograms = f"{prefix}:histograms"
        self._pause_s = pause_after_failure_s
        self._paused_until = 0.0

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisMetrics:
        """Its own connections with short time-outs: a slow Redis must not slow tasks."""
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        return cls(client, **kwargs)

    def close(self) -> None:
        self._client.close()

    # the sink ------------------------------------------------------------------------------

    def count(self, name: str, labels: Mapping[str, str] | None = None,
              amount: int = 1) -> None:
        field = _field(series(name, labels))
        self._write(lambda pipe: pipe.hincrby(self._counters, field, amount))

    def observe(self, name: str, labels: Mapping[str, str] | None, seconds: float) -> None:
        self.observe_many(name, labels, [seconds])

    def observe_many(self, name: str, labels: Mapping[str, str] | None,
                     values: Sequence[float]) -> None:
        if not values:
            return
        key = series(name, labels)
        buckets = Counter(_field(key, _BOUNDS[bucket_index(v)]) for v in values)

        def commands(pipe: Any) -> None:
            for bucket, n in buckets.items():
                pipe.hincrby(self._histograms, bucket, n)
            pipe.hincrbyfloat(self._histograms, _field(key, _SUM), sum(values))

        self._write(commands)

    def _write(self, commands: Callable[[Any], object]) -> None:
        if time.monotonic() < self._paused_until:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            commands(pipe)
            pipe.execute()
        except Exception as exc:  # noqa: BLE001 - metrics must never fail the caller
            self._paused_until = time.monotonic() + self._pause_s
            log.debug("metrics not recorded (paused %.0fs): %s: %s", self._pause_s,
                      type(exc).__name__, exc)

    # the reader ----------------------------------------------------------------------------

    def counters(self) -> dict[Series, float]:
        values: dict[Series, float] = {}
        for field, value in self._client.hgetall(self._counters).items():
            key, _ = _parse(field)
            values[key] = float(value)
        return values

    def histograms(self) -> dict[Series, Histogram]:
        counts: dict[Series, list[int]] = {}
        totals: dict[Series, float] = {}
        for field, value in self._client.hgetall(self._histograms).items():
            key, extra = _parse(field)
            slot = extra[0] if extra else ""
            if slot == _SUM:
                totals[key] = float(value)
            elif slot in _BOUNDS:  # a bound from another bucket layout is dropped
                counts.setdefault(key, [0] * len(_BOUNDS))[_BOUNDS.index(slot)] = int(value)
        return {key: Histogram(tuple(c), totals.get(key, 0.0)) for key, c in counts.items()}

    def queue_depths(self, queues: Sequence[str]) -> dict[str, int]:
        pipe = self._client.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(queue)
            for step in PRIORITY_STEPS:
                pipe.llen(f"{queue}{PRIORITY_SEPARATOR}{step}")
        lengths = pipe.execute()
        per_queue = 1 + len(PRIORITY_STEPS)
        return {queue: sum(int(n) for n in lengths[i * per_queue:(i + 1) * per_queue])
                for i, queue in enumerate(queues)}
