"""The RateLimiter contract, over the in-memory fake and a real Redis server, plus the
properties only a shared server can show: many clients (as many processes would be) racing
for turns never get more than the limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from orchestrator.adapters.embedded import EmbeddedRedis
from orchestrator.adapters.redis.limiter import RedisRateLimiter
from orchestrator.domain.ratelimit import RateLimit, window_margin_s
from orchestrator.testing import InMemoryRateLimiter


class SystemClock:
    def now(self) -> float:
        return time.time()


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemoryRateLimiter(SystemClock())
        return
    server: EmbeddedRedis = request.getfixturevalue("redis_server")
    client = redis.Redis.from_url(server.url)
    client.flushdb()
    yield RedisRateLimiter(client)
    client.close()


def test_grants_up_to_the_limit_then_says_when(limiter: Any) -> None:
    limit = RateLimit(3, 30.0)
    assert [limiter.acquire("k", "trigger", limit) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("k", "trigger", limit)
    assert 29.0 < wait <= 30.0 + window_margin_s(limit)
    state = limiter.state("k", "trigger", limit)
    assert (state.used, state.remaining) == (3, 0) and state.next_turn_s > 29.0
    # A refused request takes nothing: still three.
    assert limiter.state("k", "trigger", limit).used == 3


def test_keys_and_operations_are_counted_apart(limiter: Any) -> None:
    limit = RateLimit(1, 30.0)
    assert limiter.acquire("k", "trigger", limit) == 0.0
    assert limiter.acquire("k", "read", limit) == 0.0
    assert limiter.acquire("other", "trigger", limit) == 0.0
    assert limiter.acquire("k", "trigger", limit) > 0


def test_the_turn_comes_when_it_said(limiter: Any) -> None:
    limit = RateLimit(2, 0.3)
    assert limiter.acquire("k", "read", limit) == 0.0
    assert limiter.acquire("k", "read", limit) == 0.0
    wait = limiter.acquire("k", "read", limit)
    assert 0 < wait <= 0.3 + window_margin_s(limit)
    time.sleep(wait + 0.01)
    assert limiter.acquire("k", "read", limit) == 0.0


def test_a_fresh_limiter_reports_the_whole_budget(limiter: Any) -> None:
    state = limiter.state("k", "cancel", RateLimit(30, 60.0))
    assert (state.used, state.remaining, state.next_turn_s) == (0, 30, 0.0)


def test_many_clients_racing_get_exactly_the_limit(redis_server: EmbeddedRedis) -> None:
    """Eight connections (as eight processes would have), 400 requests at once against a
    limit of 50 per 30 s: exactly 50 granted, every other one told to wait."""
    clients = [redis.Redis.from_url(redis_server.url) for _ in range(8)]
    clients[0].flushdb()
    limit = RateLimit(50, 30.0)
    granted: list[int] = []
    waits: list[float] = []
    barrier = threading.Barrier(8)

    def hammer(client: redis.Redis) -> None:
        limiter = RedisRateLimiter(client)
        barrier.wait()
        for _ in range(50):
            wait = limiter.acquire("shared-key", "trigger", limit)
            (granted.append(1) if wait == 0 else waits.append(wait))

    threads = [threading.Thread(target=hammer, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 50
    # Every refused caller was promised its own turn, in order: the first fifty the turns
    # the grants free, the next fifty a window later, and so on; never all the same one.
    window = 30.0 + window_margin_s(limit)
    assert len(waits) == 350
    for i, wait in enumerate(sorted(waits)):
        assert (i // 50) * window < wait <= (i // 50 + 1) * window + 0.5, (i, wait)
    for client in clients:
        client.close()


def test_turns_taken_by_racing_clients_never_crowd_a_window(redis_server: EmbeddedRedis) -> None:
    """Six clients asking again at their turn for a little over two windows: the grants, as
    the clients saw them, never hold more than the limit in any window, and they use it."""
    redis.Redis.from_url(redis_server.url).flushdb()
    limit = RateLimit(10, 0.5)
    stop = time.monotonic() + 1.2
    granted: list[float] = []

    def ask() -> None:
        limiter = RedisRateLimiter(redis.Redis.from_url(redis_server.url))
        while time.monotonic() < stop:
            wait = limiter.acquire("k", "trigger", limit)
            if wait == 0:
                granted.append(time.time())
            time.sleep(wait)  # the test stands in for a worker rescheduling itself

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times = sorted(granted)
    # The margin (20 ms here) is far wider than the jitter between a grant and its stamp.
    for i, t in enumerate(times):
        assert sum(1 for u in times[i:] if u < t + limit.period_s) <= limit.count
    assert len(times) >= 2 * limit.count  # two full windows were used
