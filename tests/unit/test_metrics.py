"""Metrics: what the edges record, and ``/metrics`` in Prometheus' text format, parsed back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.adapters.providers.codewords import CodeWordsProvider
from orchestrator.adapters.providers.cordage import CordageProvider
from orchestrator.adapters.store.migrate import upgrade
from orchestrator.api.app import create_app
from orchestrator.api.metrics import Scrape, render
from orchestrator.bootstrap import Container, SystemClock
from orchestrator.config import Settings
from orchestrator.domain.errors import RateLimited
from orchestrator.domain.webhook import new_secret
from orchestrator.metrics import (
    DELIVERY_LATENCY,
    LAUNCHES,
    POLL_LATENCY,
    POLLS,
    RATE_LIMIT_WAITS,
    RESPONSES_429,
    MeasuredSender,
    count_outcome,
    histogram_of,
    series,
)
from orchestrator.ports import SendResult
from orchestrator.services.tokens import create_token
from orchestrator.testing import FakeSender, InMemoryEmbargoes, InMemoryMetrics, RecordingScheduler

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """Each family's type, and every sample by name and sorted labels."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return types, samples


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def test_the_exposition_parses_back_with_every_family_and_value() -> None:
    recorded = InMemoryMetrics({"orchestrator.jobs": 4})
    recorded.count(LAUNCHES, {"provider": "sandbox", "outcome": "started"}, 3)
    recorded.count(RATE_LIMIT_WAITS, {"provider": "sandbox", "operation": "trigger"})
    for seconds in (0.004, 0.2, 7.0):
        recorded.observe(POLL_LATENCY, {"provider": "sandbox"}, seconds)
    scrape = Scrape(
        jobs={("completed", "sandbox/echo"): 5, ("running", "sandbox/sleep"): 2},
        in_flight={"sandbox": 2}, deliveries={"succeeded": 4},
        queue_depths=recorded.queue_depths(["orchestrator.jobs", "orchestrator.callbacks"]),
        counters=recorded.counters(), histograms=recorded.histograms(),
        providers=("sandbox", "idle"))
    types, samples = parse(render(scrape).decode())

    assert types["orchestrator_jobs"] == "gauge" and types["orchestrator_launches"] == "counter"
    assert types["orchestrator_poll_latency_seconds"] == "histogram"
    assert samples[key("orchestrator_jobs", status="completed", workflow="sandbox/echo")] == 5
    assert samples[key("orchestrator_jobs", status="failed", workflow="sandbox/echo")] == 0
    assert samples[key("orchestrator_jobs", status="running", workflow="sandbox/sleep")] == 2
    assert samples[key("orchestrator_in_flight", provider="idle")] == 0
    assert samples[key("orchestrator_deliveries", status="pending")] == 0
    assert samples[key("orchestrator_queue_depth", queue="orchestrator.jobs")] == 4
    assert samples[key("orchestrator_launches_total", provider="sandbox",
                       outcome="started")] == 3
    assert samples[key("orchestrator_rate_limit_waits_total", provider="sandbox",
                       operation="trigger")] == 1
    latency = "orchestrator_poll_latency_seconds"
    assert samples[key(latency + "_count", provider="sandbox")] == 3
    assert samples[key(latency + "_sum", provider="sandbox")] == pytest.approx(7.204)
    assert samples[key(latency + "_bucket", provider="sandbox", le="0.005")] == 1
    assert samples[key(latency + "_bucket", provider="sandbox", le="0.25")] == 2
    assert samples[key(latency + "_bucket", provider="sandbox", le="+Inf")] == 3
    assert "orchestrator_delivery_latency_seconds" in types  # shown even with no value yet


def test_a_series_with_unexpected_labels_is_left_out() -> None:
    scrape = Scrape({}, {}, {}, counters={series(LAUNCHES, {"job_id": "job_1"}): 1.0},
                    histograms={series(DELIVERY_LATENCY): histogram_of([0.1])})
    text = render(scrape).decode()
    assert "job_1" not in text
    _, samples = parse(text)
    assert samples[key("orchestrator_delivery_latency_seconds_count")] == 1


def test_outcomes_are_counted_under_the_jobs_provider() -> None:
    metrics = InMemoryMetrics()

    class Job:
        provider = "cw"

    count_outcome(metrics, POLLS, Job(), "completed")  # type: ignore[arg-type]
    count_outcome(metrics, LAUNCHES, None, "skipped")
    assert metrics.value(POLLS, provider="cw", outcome="completed") == 1
    assert metrics.value(LAUNCHES, provider="unknown", outcome="skipped") == 1


def test_the_measured_sender_records_each_posts_latency() -> None:
    metrics = InMemoryMetrics()
    sender = MeasuredSender(FakeSender(lambda n: SendResult(500, 0.3, error="x")), metrics)
    assert sender.send("http://r", {}, b"{}").status_code == 500
    assert metrics.histograms()[series(DELIVERY_LATENCY)].total == pytest.approx(0.3)


def test_a_provider_counts_429s_embargo_waits_and_poll_latency() -> None:
    def runtime(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/trigger"):
            return httpx.Response(429, headers={"Retry-After": "30"}, json={"error": "slow"})
        return httpx.Response(200, json={"run_id": "r1", "status": "running"})

    metrics = InMemoryMetrics()
    with httpx.Client(transport=httpx.MockTransport(runtime)) as client:
        provider = CordageProvider("cg", "http://runtime", "key-123456", client,
                                   embargoes=InMemoryEmbargoes(), metrics=metrics)
        for _ in range(3):  # one 429, then two held back without being sent
            with pytest.raises(RateLimited):
                provider.send("POST", "/echo/trigger", operation="trigger", body={})
        provider.poll("echo", "r1")
        provider.poll("echo", "r1")
    assert metrics.value(RESPONSES_429, provider="cg", operation="trigger") == 1
    assert metrics.value(RATE_LIMIT_WAITS, provider="cg", operation="trigger") == 2
    assert metrics.histograms()[series(POLL_LATENCY, {"provider": "cg"})].count == 2


def test_a_provider_without_a_sink_records_nothing_and_still_works() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"request_id": "q"}))
    with httpx.Client(transport=transport) as client:
        assert CodeWordsProvider("cw", "http://runtime", "key-123456",
                                 client).reserve("echo") == "q"


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    settings = Settings.model_validate({
        "database": {"url": f"sqlite:///{tmp_path}/metrics.db"},
        "providers": {"sandbox": {"type": "sandbox", "base_url": "http://127.0.0.1:1",
                                  "api_key": "key-123456"}},
        "callbacks": {"signing_secret": new_secret()}})
    container = Container(settings, scheduler=RecordingScheduler())
    container.__dict__["metrics"] = InMemoryMetrics({"orchestrator.callbacks": 2})
    upgrade(container.engine)
    yield container
    container.close()


def test_get_metrics_needs_no_token_and_counts_the_database(container: Container) -> None:
    token, _ = create_token("t", container.store, SystemClock())
    with TestClient(create_app(container.settings, container)) as api:
        for tag in range(3):
            created = api.post("/v1/jobs", json={"workflow": "sandbox/echo", "inputs": {"t": tag}},
                               headers={"Authorization": f"Bearer {token}"})
            assert created.status_code == 201
        response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    _, samples = parse(response.text)
    assert samples[key("orchestrator_jobs", status="queued", workflow="sandbox/echo")] == 3
    assert samples[key("orchestrator_in_flight", provider="sandbox")] == 0
    assert samples[key("orchestrator_queue_depth", queue="orchestrator.callbacks")] == 2
    assert token not in response.text


def test_get_metrics_still_shows_the_database_while_redis_is_away(
        container: Container) -> None:
    class Broken(InMemoryMetrics):
        def counters(self) -> dict:  # type: ignore[type-arg]
            raise ConnectionError("redis is away")

    container.__dict__["metrics"] = Broken()
    with TestClient(create_app(container.settings, container)) as api:
        response = api.get("/metrics")
    assert response.status_code == 200
    types, _ = parse(response.text)
    assert "orchestrator_in_flight" in types and "orchestrator_queue_depth" in types
