"""The Metrics contract, over the in-memory fake and a real Redis server; then what only
the Redis adapter does: share counts between processes, read queue depths, survive Redis
being away."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from orchestrator.adapters.embedded import EmbeddedRedis, free_port
from orchestrator.adapters.redis.metrics import PRIORITY_SEPARATOR, RedisMetrics
from orchestrator.metrics import (
    DELIVERIES,
    DELIVERY_LATENCY,
    LATENCY_BUCKETS,
    LAUNCHES,
    POLL_LATENCY,
    series,
)
from orchestrator.testing import InMemoryMetrics

_prefixes = itertools.count()


@pytest.fixture
def redis_client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def fresh_prefix() -> str:
    return f"test:metrics:{time.monotonic_ns()}:{next(_prefixes)}"


@pytest.fixture(params=["memory", "redis"])
def metrics(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return InMemoryMetrics()
    client = request.getfixturevalue("redis_client")
    return RedisMetrics(client, prefix=fresh_prefix())


def test_counters_add_up_per_series(metrics: Any) -> None:
    started = {"provider": "sandbox", "outcome": "started"}
    metrics.count(LAUNCHES, started)
    metrics.count(LAUNCHES, started, 2)
    metrics.count(LAUNCHES, {"outcome": "deferred", "provider": "sandbox"})
    metrics.count(DELIVERIES, {"outcome": "succeeded"})
    assert metrics.counters() == {
        series(LAUNCHES, started): 3.0,
        series(LAUNCHES, {"provider": "sandbox", "outcome": "deferred"}): 1.0,
        series(DELIVERIES, {"outcome": "succeeded"}): 1.0,
    }


def test_a_histogram_keeps_each_value_in_its_bucket_and_the_sum(metrics: Any) -> None:
    labels = {"provider": "cw"}
    for seconds in (0.001, 0.005, 0.02, 0.3, 0.3, 500.0):
        metrics.observe(POLL_LATENCY, labels, seconds)
    metrics.observe(DELIVERY_LATENCY, None, 0.07)
    stored = metrics.histograms()
    poll = stored[series(POLL_LATENCY, labels)]
    assert poll.count == 6 and poll.total == pytest.approx(500.626)
    cumulative = dict(poll.cumulative())
    assert cumulative["0.005"] == 2  # le is inclusive: 0.005 falls in the 0.005 bucket
    assert cumulative["0.025"] == 3 and cumulative["0.5"] == 5
    assert cumulative[repr(LATENCY_BUCKETS[-1])] == 5 and cumulative["+Inf"] == 6
    assert stored[series(DELIVERY_LATENCY)].count == 1


def test_nothing_recorded_reads_back_empty(metrics: Any) -> None:
    assert metrics.counters() == {} and metrics.histograms() == {}


def test_processes_sharing_redis_add_to_the_same_counts(redis_server: EmbeddedRedis) -> None:
    prefix = fresh_prefix()
    workers = [RedisMetrics.from_url(redis_server.url, prefix=prefix) for _ in range(3)]
    for worker in workers:
        for _ in range(10):
            worker.count(LAUNCHES, {"provider": "p", "outcome": "started"})
            worker.observe(POLL_LATENCY, {"provider": "p"}, 0.01)
    reader = RedisMetrics.from_url(redis_server.url, prefix=prefix)
    assert reader.counters()[series(LAUNCHES, {"provider": "p", "outcome": "started"})] == 30
    assert reader.histograms()[series(POLL_LATENCY, {"provider": "p"})].count == 30
    for each in [*workers, reader]:
        each.close()


def test_queue_depths_count_every_priority_list(redis_client: redis.Redis) -> None:
    queue = f"queue-{time.monotonic_ns()}"
    redis_client.rpush(queue, "a", "b")
    redis_client.rpush(f"{queue}{PRIORITY_SEPARATOR}6", "c")
    depths = RedisMetrics(redis_client).queue_depths([queue, f"{queue}-empty"])
    assert depths == {queue: 3, f"{queue}-empty": 0}


def test_redis_away_fails_nothing_and_pauses_recording() -> None:
    gone = RedisMetrics.from_url(f"redis://127.0.0.1:{free_port()}/0",
                                 pause_after_failure_s=60)
    started = time.monotonic()
    gone.count(LAUNCHES, {"provider": "p", "outcome": "started"})  # fails, swallowed
    first = time.monotonic() - started
    for _ in range(100):  # paused: no connection attempts, so no waiting
        gone.count(LAUNCHES, {"provider": "p", "outcome": "started"})
        gone.observe(POLL_LATENCY, {"provider": "p"}, 0.1)
    assert time.monotonic() - started < first + 0.5
    gone.close()
