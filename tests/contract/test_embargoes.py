"""The Embargoes contract, over the in-memory fake and a real Redis server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from orchestrator.adapters.embedded import EmbeddedRedis
from orchestrator.adapters.redis.embargo import RedisEmbargoes
from orchestrator.testing import InMemoryEmbargoes


@pytest.fixture(params=["memory", "redis"])
def embargoes(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemoryEmbargoes()
        return
    server: EmbeddedRedis = request.getfixturevalue("redis_server")
    client = redis.Redis.from_url(server.url)
    client.flushdb()
    yield RedisEmbargoes(client)
    client.close()


def test_nothing_is_embargoed_at_first(embargoes: Any) -> None:
    assert embargoes.until("key1", "trigger") is None


def test_a_longer_wait_is_never_shortened(embargoes: Any) -> None:
    now = time.time()
    embargoes.impose("key1", "trigger", now + 30)
    embargoes.impose("key1", "trigger", now + 5)
    assert embargoes.until("key1", "trigger") == pytest.approx(now + 30)
    embargoes.impose("key1", "trigger", now + 60)
    assert embargoes.until("key1", "trigger") == pytest.approx(now + 60)


def test_keys_and_operations_are_separate(embargoes: Any) -> None:
    embargoes.impose("key1", "trigger", time.time() + 30)
    assert embargoes.until("key1", "read") is None
    assert embargoes.until("key2", "trigger") is None
