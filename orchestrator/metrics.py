"""The metrics port: counters and latency histograms that every process adds to and the API
reads back at scrape time.

Workers, beat and the API are separate processes (in production, separate hosts), so an
in-process registry in the API would never see what a worker did. Counters and histograms
therefore live in a shared store (``adapters/redis/metrics.py``); the gauges (jobs by state,
in flight, deliveries) are not counted at all but read from the database when scraped, so
they agree with it exactly.

Labels are bounded on purpose: provider, workflow, operation, outcome, status, queue.
Never a job id or anything else that grows with traffic.

A metrics sink never raises: recording is best effort and must not fail a task.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from orchestrator.domain.records import Job
from orchestrator.ports import CallbackSender, Outgoing, SendResult

# Counters: recorded where things happen (the Celery tasks, the provider adapters).
LAUNCHES = "orchestrator_launches_total"  # provider, outcome
POLLS = "orchestrator_polls_total"  # provider, outcome
RATE_LIMIT_WAITS = "orchestrator_rate_limit_waits_total"  # provider, operation
RESPONSES_429 = "orchestrator_provider_responses_429_total"  # provider, operation
THROTTLED = "orchestrator_throttled_total"  # provider, operation
DELIVERIES = "orchestrator_callback_deliveries_total"  # outcome
SCHEDULE_SLOTS = "orchestrator_schedule_slots_total"  # status (fired, skipped, missed…)
# Histograms, in seconds.
POLL_LATENCY = "orchestrator_poll_latency_seconds"  # provider
DELIVERY_LATENCY = "orchestrator_delivery_latency_seconds"  # (none)

# Each counter and histogram's label names, in order; a series with others is not shown.
LABEL_NAMES: dict[str, tuple[str, ...]] = {
    LAUNCHES: ("provider", "outcome"),
    POLLS: ("provider", "outcome"),
    RATE_LIMIT_WAITS: ("provider", "operation"),
    RESPONSES_429: ("provider", "operation"),
    THROTTLED: ("provider", "operation"),
    DELIVERIES: ("outcome",),
    SCHEDULE_SLOTS: ("status",),
    POLL_LATENCY: ("provider",),
    DELIVERY_LATENCY: (),
}
COUNTERS = (LAUNCHES, POLLS, RATE_LIMIT_WAITS, RESPONSES_429, THROTTLED, DELIVERIES,
            SCHEDULE_SLOTS)
HISTOGRAMS = (POLL_LATENCY, DELIVERY_LATENCY)

HELP = {
    LAUNCHES: "Launch attempts by the job's provider and what they came to.",
    POLLS: "Polls by the job's provider and what they came to.",
    RATE_LIMIT_WAITS: "Provider requests held back because the runtime asked us to wait.",
    RESPONSES_429: "HTTP 429 answers from a provider, by operation.",
    THROTTLED: "Provider requests held back by our own rate limit until their turn.",
    DELIVERIES: "Callback delivery attempts by outcome.",
    SCHEDULE_SLOTS: "Schedule slots recorded by beat, by what became of them.",
    POLL_LATENCY: "Duration of one provider poll (read) request.",
    DELIVERY_LATENCY: "Duration of one callback POST.",
}

# Upper bounds, seconds: from a local sandbox's milliseconds to a CodeWords long-poll.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# The label value when the job is unknown (a message for a deleted job, say).
UNKNOWN = "unknown"

Labels = tuple[tuple[str, str], ...]
Series = tuple[str, Labels]  # a metric name and its sorted label pairs


def series(name: str, labels: Mapping[str, str] | None = None) -> Series:
    return name, tuple(sorted((labels or {}).items()))


def bucket_index(seconds: float) -> int:
    """The first bucket that holds ``seconds``; ``len(LATENCY_BUCKETS)`` means +Inf."""
    for index, bound in enumerate(LATENCY_BUCKETS):
        if seconds <= bound:
            return index
    return len(LATENCY_BUCKETS)


@dataclass(frozen=True)
class Histogram:
    """One histogram series as stored: per-bucket counts (not cumulative; the last is
    +Inf) and the sum of the observed values."""

    counts: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count)`` pairs as Prometheus wants them, ending with ``+Inf``."""
        bounds = [repr(b) for b in LATENCY_BUCKETS] + ["+Inf"]
        running, pairs = 0, []
        for bound, count in zip(bounds, self.counts, strict=True):
            running += count
            pairs.append((bound, running))
        return pairs


class Metrics(Protocol):
    """Where the edges record what happened. Implementations swallow their own failures."""

    def count(self, name: str, labels: Mapping[str, str] | None = None,
              amount: int = 1) -> None:
        """Add ``amount`` to a counter."""
        ...

    def observe(self, name: str, labels: Mapping[str, str] | None, seconds: float) -> None:
        """Add one value to a histogram."""
        ...

    def observe_many(self, name: str, labels: Mapping[str, str] | None,
                     values: Sequence[float]) -> None:
        """Add several values to a histogram, in one write."""
        ...


class MetricsReader(Protocol):
    """What the scrape reads back: everything every process recorded."""

    def counters(self) -> dict[Series, float]: ...

    def histograms(self) -> dict[Series, Histogram]: ...

    def queue_depths(self, queues: Sequence[str]) -> dict[str, int]:
        """Messages waiting in each broker queue."""
        ...


class NullMetrics:
    """Records nothing: the default where no sink is given."""

    def count(self, name: str, labels: Mapping[str, str] | None = None,
              amount: int = 1) -> None:
        return None

    def observe(self, name: str, labels: Mapping[str, str] | None, seconds: float) -> None:
        return None

    def observe_many(self, name: str, labels: Mapping[str, str] | None,
                     values: Sequence[float]) -> None:
        return None


def count_outcome(metrics: Metrics, name: str, job: Job | None, result: str) -> None:
    """Count a launch or poll outcome under the job's provider."""
    provider = job.provider if job is not None else UNKNOWN
    metrics.count(name, {"provider": provider, "outcome": result})


class MeasuredSender:
    """A ``CallbackSender`` that records each POST's latency; the wrapped sender measures
    it already (``SendResult.latency_s``), so nothing is timed twice."""

    def __init__(self, sender: CallbackSender, metrics: Metrics) -> None:
        self._sender = sender
        self._metrics = metrics

    def send(self, url: str, headers: Mapping[str, str], body: bytes) -> SendResult:
        result = self._sender.send(url, headers, body)
        self._metrics.observe(DELIVERY_LATENCY, None, result.latency_s)
        return result

    def send_many(self, requests: Sequence[Outgoing], *,
                  within_s: float | None = None) -> list[SendResult]:
        results = self._sender.send_many(requests, within_s=within_s)
        self._metrics.observe_many(DELIVERY_LATENCY, None, [r.latency_s for r in results])
        return results


def histogram_of(values: Iterable[float]) -> Histogram:
    """A histogram of these values (for fakes and tests)."""
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    total = 0.0
    for value in values:
        counts[bucket_index(value)] += 1
        total += value
    return Histogram(tuple(counts), total)
