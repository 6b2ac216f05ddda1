"""Thin tasks: each loads its arguments, calls one service, and logs and counts the outcome.

No business logic lives here. Every task is idempotent (the services guard each write with a
compare-and-set), so a message delivered twice changes nothing the second time. Database and
broker outages are retried with backoff; the job's next step is in the database either way,
so the sweep finds it if the retries run out.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter

from celery.signals import worker_process_init
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError

from orchestrator.adapters.celery_app import DELIVER, LAUNCH, POLL, SWEEP
from orchestrator.bootstrap import Container
from orchestrator.metrics import DELIVERIES, LAUNCHES, POLLS, count_outcome
from orchestrator.services.callbacks import (
    ROUND_MOST,
    DeliverOutcome,
    deliver_callback,
    deliver_due,
)
from orchestrator.services.launch import launch_job
from orchestrator.services.poll import poll_job
from orchestrator.services.sweep import sweep
from workers.app import app, settings

log = logging.getLogger("orchestrator.worker")

_container: Container | None = None
# A delivery task's rounds stop after this long (one wake-up never holds a process for
# long); if there is more, the wake-up it sent carries on.
DELIVER_BUDGET_S = 5.0

RETRY = {
    "autoretry_for": (OperationalError, RedisConnectionError, BrokerError),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 20,
}


def container() -> Container:
    """One container per process, built after the fork."""
    global _container
    if _container is None or _container.pid != os.getpid():
        _container = Container(settings, celery_app=app)
    return _container


@worker_process_init.connect
def _fresh_container(**_: object) -> None:
    global _container
    _container = None


@app.task(name=LAUNCH, **RETRY)
def launch(job_id: str, run_id: str | None = None) -> str:
    outcome = launch_job(job_id, container().deps, run_id=run_id)
    count_outcome(container().metrics, LAUNCHES, outcome.job, outcome.result)
    log.info("launch %s: %s %s", job_id, outcome.result, outcome.reason)
    return outcome.result


@app.task(name=POLL, **RETRY)
def poll(job_id: str, seq: int) -> str:
    outcome = poll_job(job_id, seq, container().deps)
    count_outcome(container().metrics, POLLS, outcome.job, outcome.result)
    log.debug("poll %s #%d: %s", job_id, seq, outcome.result)
    return outcome.result


@app.task(name=DELIVER, **RETRY)
def deliver(delivery_id: str | None = None) -> dict[str, int]:
    """A wake-up: rounds of every due delivery no one holds (``delivery_id`` among them
    when it is due), for up to ``DELIVER_BUDGET_S``; more left wakes another task."""
    deps, scheduler = container().deps, container().celery_scheduler
    scheduler.senders_awake()
    started = time.monotonic()
    outcomes: list[DeliverOutcome] = []
    while True:
        round_ = deliver_due(deps)
        outcomes += round_
        if len(round_) < ROUND_MOST:
            break
        scheduler.wake_senders()  # a full round: let an idle process help
        if time.monotonic() - started > DELIVER_BUDGET_S:
            break
    if delivery_id is not None and not any(
            o.delivery is not None and o.delivery.id == delivery_id for o in outcomes):
        outcomes.append(deliver_callback(delivery_id, deps))  # early, or someone else's
    return _count_deliveries(outcomes)


def _count_deliveries(outcomes: list[DeliverOutcome]) -> dict[str, int]:
    counts = Counter(outcome.result for outcome in outcomes)
    for result, n in counts.items():
        container().metrics.count(DELIVERIES, {"outcome": result}, n)
    for outcome in outcomes:
        if outcome.delivery is not None and outcome.result in ("retrying", "failed"):
            log.info("deliver %s: %s", outcome.delivery.id, outcome.result)
    if counts:
        log.info("delivered: %s", dict(counts))
    return dict(counts)


@app.task(name=SWEEP, **RETRY)
def sweep_overdue() -> dict[str, int]:
    outcome = sweep(container().deps)
    if outcome.launches or outcome.polls or outcome.deliveries or outcome.batches:
        log.info("sweep handed out again: %s", outcome)
    return {"launches": outcome.launches, "polls": outcome.polls,
            "deliveries": outcome.deliveries, "batches": outcome.batches}
