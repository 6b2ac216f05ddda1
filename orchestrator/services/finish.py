"""Ending an attempt: the terminal move and its callback, written in one transaction.

The terminal event's body is built from the job as it will be after the move, and the
delivery row is inserted with the move (an outbox): if the process dies right after the
commit, the sweep still finds the delivery and sends it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from orchestrator.domain.ids import new_id
from orchestrator.domain.job import Event, apply
from orchestrator.domain.records import Deliver, Job, JobChange, NewDelivery
from orchestrator.domain.resource import TERMINAL_EVENT_TYPES, job_resource
from orchestrator.domain.webhook import event_body
from orchestrator.services.deps import Deps


def finish(
    job: Job,
    event: Event,
    deps: Deps,
    *,
    outputs: object = None,
    error: tuple[str, str] | None = None,
    guard: Mapping[str, object] | None = None,
    values: Mapping[str, object] | None = None,
) -> Job | None:
    """Move ``job`` to the terminal state of ``event``; ``None`` if another process moved
    it first (then nothing is sent either)."""
    now = deps.clock.now()
    target = apply(job.status, event)
    changes: dict[str, object] = {"finished_at": now, "next_action_at": None,
                                  "lease_until": None, "dispatched_at": None,
                                  **(values or {})}
    if outputs is not None:
        changes["outputs"] = outputs
    if error is not None:
        changes["error_code"], changes["error_message"] = error[0], error[1][:2000]
    after = dataclasses.replace(job, status=target, updated_at=now, **changes)  # type: ignore[arg-type]
    outbox = _terminal_deliveries(after, now)
    moved = deps.store.move(JobChange(
        job.id, event, values=changes, guard=guard or {}, deliveries=outbox,
        detail=error[1][:500] if error else None), now)
    if moved is not None and outbox:
        deps.scheduler.schedule([Deliver(d.id) for d in outbox])
    return moved


def _terminal_deliveries(job: Job, now: float) -> tuple[NewDelivery, ...]:
    if not job.callback_url:
        return ()
    event_type = TERMINAL_EVENT_TYPES[job.status.value]
    body = event_body(event_type, now, job_resource(job))
    return (NewDelivery(id=new_id("msg", now), job_id=job.id, event_type=event_type,
                        url=job.callback_url, endpoint_id=None, payload=body,
                        next_attempt_at=now),)
