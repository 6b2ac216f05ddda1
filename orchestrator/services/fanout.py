"""Fan-out: the deliveries one event makes, built before the change that causes it and
written in the same transaction (an outbox), so an event is never lost nor sent twice.

Each (event, endpoint) pair is one delivery, its id the ``webhook-id`` of every attempt and
its body fixed now. A job's own ``callback_url`` (and a batch's) gets the terminal event
(``batch.completed``), signed with ``[callbacks].signing_secret``; registered endpoints get
what they subscribe to, filtered by workflow and labels.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.domain.events import BATCH_COMPLETED, wants
from orchestrator.domain.ids import new_id
from orchestrator.domain.records import (
    Batch,
    BatchProgress,
    Deliver,
    Job,
    NewDelivery,
    Subscription,
)
from orchestrator.domain.resource import batch_resource, job_resource
from orchestrator.domain.webhook import event_body
from orchestrator.services.deps import Deps


def subscribed(deps: Deps) -> list[Subscription]:
    """The enabled endpoints' URLs and filters (no secrets), read once per event."""
    return [] if deps.endpoints is None else deps.endpoints.subscriptions()


def job_event(job: Job, event_type: str, now: float, deps: Deps, *,
              own_url: bool) -> tuple[NewDelivery, ...]:
    """The deliveries of ``event_type`` for ``job`` as it will be after the change.
    ``own_url``: the job's callback_url gets this one (its terminal event)."""
    targets = [e for e in subscribed(deps)
               if wants(event_types=e.event_types, workflows=e.workflows, labels=e.labels,
                        event_type=event_type, workflow=job.workflow,
                        event_labels=job.labels)]
    urls: list[tuple[str, str | None]] = [(e.url, e.id) for e in targets]
    if own_url and job.callback_url:
        urls.append((job.callback_url, None))
    if not urls:
        return ()
    body = event_body(event_type, now, job_resource(job))
    return _deliveries(urls, event_type, body, now, job_id=job.id)


def batch_event(batch: Batch, progress: BatchProgress, now: float,
                endpoints: Sequence[Subscription]) -> tuple[NewDelivery, ...]:
    """``batch.completed`` with the batch's counts, to its callback_url and subscribers."""
    urls: list[tuple[str, str | None]] = [
        (e.url, e.id) for e in endpoints
        if wants(event_types=e.event_types, workflows=e.workflows, labels=e.labels,
                 event_type=BATCH_COMPLETED, workflow=None, event_labels=batch.labels)]
    if batch.callback_url:
        urls.append((batch.callback_url, None))
    if not urls:
        return ()
    body = event_body(BATCH_COMPLETED, now, batch_resource(batch, progress))
    return _deliveries(urls, BATCH_COMPLETED, body, now, job_id=None)


def complete_batch(batch_id: str, deps: Deps) -> bool:
    """Emit ``batch.completed`` if the batch's last job has just ended (exactly once,
    however many processes end its last jobs together); whether this call did."""
    now = deps.clock.now()
    # The endpoints are read only by the call that completes the batch: every other job
    # end of a 10,000-job batch costs one cheap read, not a read of every endpoint.
    sent = deps.store.complete_batch(
        batch_id, now,
        lambda batch, progress: batch_event(batch, progress, now, subscribed(deps)))
    if sent is None:
        return False
    schedule(sent, deps)
    return True


def schedule(deliveries: Sequence[NewDelivery], deps: Deps) -> None:
    if deliveries:
        deps.scheduler.schedule([Deliver(d.id) for d in deliveries])


def _deliveries(urls: Sequence[tuple[str, str | None]], event_type: str, body: bytes,
                now: float, *, job_id: str | None) -> tuple[NewDelivery, ...]:
    return tuple(NewDelivery(id=new_id("msg", now), job_id=job_id, event_type=event_type,
                             url=url, endpoint_id=endpoint_id, payload=body,
                             next_attempt_at=now)
                 for url, endpoint_id in urls)
