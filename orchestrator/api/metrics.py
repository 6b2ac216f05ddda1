"""``GET /metrics``: the Prometheus text format, computed when scraped.

Gauges of state (jobs by status and workflow, in flight per provider, deliveries by status)
are counted in the database at scrape time, so they agree with it exactly whichever process
made the changes. Counters and histograms are what every process recorded in Redis
(``orchestrator.metrics``); queue depths are the broker's list lengths. No authentication:
Prometheus scrapes it, and nothing in it names a job or holds a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TypeVar

from fastapi import APIRouter, Response
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from orchestrator.adapters.celery_app import CALLBACKS_QUEUE, JOBS_QUEUE
from orchestrator.adapters.store.repository import SqlStore
from orchestrator.api.deps import ContainerDep
from orchestrator.domain.job import JobStatus
from orchestrator.metrics import (
    COUNTERS,
    HELP,
    HISTOGRAMS,
    LABEL_NAMES,
    Histogram,
    MetricsReader,
    Series,
)

log = logging.getLogger(__name__)
V = TypeVar("V")
router = APIRouter()

QUEUES = (JOBS_QUEUE, CALLBACKS_QUEUE)
DELIVERY_STATUSES = ("pending", "succeeded", "failed")


@dataclass(frozen=True)
class Scrape:
    """Everything one scrape shows, read before any of it is rendered."""

    jobs: Mapping[tuple[str, str], int]  # (status, workflow) -> jobs
    in_flight: Mapping[str, int]  # provider -> jobs starting or running
    deliveries: Mapping[str, int]  # status -> deliveries
    queue_depths: Mapping[str, int] = field(default_factory=dict)
    counters: Mapping[Series, float] = field(default_factory=dict)
    histograms: Mapping[Series, Histogram] = field(default_factory=dict)
    providers: tuple[str, ...] = ()  # configured: shown in flight even at zero


def take_scrape(store: SqlStore, reader: MetricsReader, providers: Iterable[str]) -> Scrape:
    """The database's gauges, then what every process recorded and the broker's queues.
    While Redis cannot be read those are left out (with a warning), so the database's
    gauges are still scraped."""
    scrape = Scrape(*store.gauges(), providers=tuple(providers))
    try:
        return replace(scrape, counters=reader.counters(), histograms=reader.histograms(),
                       queue_depths=reader.queue_depths(QUEUES))
    except Exception as exc:  # noqa: BLE001 - a partial scrape beats none
        log.warning("metrics from Redis left out of this scrape: %s: %s",
                    type(exc).__name__, exc)
        return scrape


class ScrapeCollector:
    """A prometheus_client collector over one ``Scrape``."""

    def __init__(self, scrape: Scrape) -> None:
        self.scrape = scrape

    def collect(self) -> Iterator[Metric]:
        yield self._jobs()
        yield _gauge("orchestrator_in_flight", "Jobs starting or running, by provider.",
                     "provider", _with_zeros(self.scrape.in_flight, self.scrape.providers))
        yield _gauge("orchestrator_deliveries", "Callback deliveries by status.", "status",
                     _with_zeros(self.scrape.deliveries, DELIVERY_STATUSES))
        yield _gauge("orchestrator_queue_depth", "Messages waiting in a broker queue.",
                     "queue", self.scrape.queue_depths)
        for name in COUNTERS:
            yield self._counter(name)
        for name in HISTOGRAMS:
            yield self._histogram(name)

    def _jobs(self) -> Metric:
        family = GaugeMetricFamily("orchestrator_jobs", "Jobs by status and workflow.",
                                   labels=["status", "workflow"])
        workflows = sorted({workflow for _, workflow in self.scrape.jobs})
        for workflow in workflows:
            for status in JobStatus:
                count = self.scrape.jobs.get((status.value, workflow), 0)
                family.add_metric([status.value, workflow], count)
        return family

    def _counter(self, name: str) -> Metric:
        labels = LABEL_NAMES[name]
        family = CounterMetricFamily(name, HELP[name], labels=list(labels))
        for values, value in _series_of(self.scrape.counters, name, labels):
            family.add_metric(values, value)
        return family

    def _histogram(self, name: str) -> Metric:
        labels = LABEL_NAMES[name]
        family = HistogramMetricFamily(name, HELP[name], labels=list(labels))
        for values, histogram in _series_of(self.scrape.histograms, name, labels):
            family.add_metric(values, histogram.cumulative(), sum_value=histogram.total)
        return family


def _series_of(stored: Mapping[Series, V], name: str,
                  labels: tuple[str, ...]) -> Iterator[tuple[list[str], V]]:
    for (series_name, pairs), value in sorted(stored.items(), key=lambda item: item[0]):
        if series_name == name and tuple(k for k, _ in pairs) == tuple(sorted(labels)):
            given = dict(pairs)
            yield [given[label] for label in labels], value


def _with_zeros(values: Mapping[str, int], known: Iterable[str]) -> dict[str, int]:
    return {**dict.fromkeys(known, 0), **values}


def _gauge(name: str, doc: str, label: str, values: Mapping[str, int]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for value_label, value in sorted(values.items()):
        family.add_metric([value_label], value)
    return family


def render(scrape: Scrape) -> bytes:
    """The scrape in Prometheus' text format (0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector(scrape))
    return generate_latest(registry)


@router.get("/metrics", include_in_schema=False)
def metrics(container: ContainerDep) -> Response:
    """Prometheus scrapes this; see ``docs/operations.md`` for what each series means."""
    scrape = take_scrape(container.store, container.metrics, container.settings.providers)
    return Response(render(scrape), media_type=CONTENT_TYPE_PLAIN_0_0_4)
