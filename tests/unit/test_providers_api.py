"""``GET /v1/providers``: limits with what is left of them, embargoes, jobs in flight and
queued; over a real Redis server (the limiter's and embargoes' state live there)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from orchestrator.adapters.embedded import EmbeddedRedis
from orchestrator.api.app import create_app
from orchestrator.bootstrap import Container
from orchestrator.services.submit import JobSpec, submit_job
from tests.unit.api_support import api_client, error_of, make_container


@pytest.fixture
def container(tmp_path: Path, redis_server: EmbeddedRedis) -> Iterator[Container]:
    redis.Redis.from_url(redis_server.url).flushdb()
    container = make_container(tmp_path, redis={"url": redis_server.url}, providers={
        "cordage": {"type": "cordage", "base_url": "http://127.0.0.1:1", "api_key": "k",
                    "max_in_flight": 5, "rate_limits": {"trigger": "10/6s"}},
        "cw": {"type": "codewords", "base_url": "http://127.0.0.1:1", "api_key": "k"}})
    yield container
    container.close()


@pytest.fixture
def api(container: Container) -> Iterator[TestClient]:
    with api_client(container) as client:
        yield client


def test_providers_show_limits_left_waits_and_jobs(api: TestClient,
                                                  container: Container) -> None:
    for n in range(3):
        submit_job(JobSpec("cordage/enrich", {"n": n}), container.deps)
    adapter = container.providers.get("cordage")
    key_id = adapter.key_id  # type: ignore[attr-defined]
    trigger = container.settings.providers["cordage"].rate_limits.trigger
    assert trigger is not None
    for _ in range(4):
        assert container.limiter.acquire(key_id, "trigger", trigger) == 0.0
    container.embargoes.impose(key_id, "read", time.time() + 30)

    response = api.get("/v1/providers")
    assert response.status_code == 200, response.text
    by_name = {p["name"]: p for p in response.json()["items"]}
    cordage = by_name["cordage"]
    assert (cordage["type"], cordage["max_in_flight"]) == ("cordage", 5)
    assert (cordage["queued"], cordage["in_flight"]) == (3, 0)
    limits = {limit["operation"]: limit for limit in cordage["limits"]}
    # Cordage's documented limits are the defaults; the file lowered trigger to 10/6s.
    assert limits["trigger"]["limit"] == "10/6s"
    assert (limits["trigger"]["used"], limits["trigger"]["remaining"]) == (4, 6)
    assert limits["read"]["limit"] == "120/60s" and 25 < limits["read"]["embargo_s"] <= 30
    assert limits["cancel"]["limit"] == "30/60s"
    codewords = by_name["cw"]
    assert {limit["limit"] for limit in codewords["limits"]} == {None}  # none published


def test_providers_need_a_token(container: Container) -> None:
    with TestClient(create_app(container.settings, container)) as client:
        response = client.get("/v1/providers")
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
