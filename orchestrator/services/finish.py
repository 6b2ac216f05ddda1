"""Ending an attempt: the terminal move and its callbacks, written in one transaction.

The terminal event's body is built from the job as it will be after the move, and the
delivery rows are inserted with the move (an outbox): if the process dies right after the
commit, the sweep still finds the deliveries and sends them. The end of a batch's last
job then emits ``batch.completed`` (once; the sweep finishes it if this process dies).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from orchestrator.domain.events import TERMINAL_EVENT_TYPES
from orchestrator.domain.job import Event, apply
from orchestrator.domain.records import Job, JobChange
from orchestrator.services.deps import Deps
from orchestrator.services.fanout import complete_batch, job_event, schedule


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
    outbox = job_event(after, TERMINAL_EVENT_TYPES[target.value], now, deps, own_url=True)
    moved = deps.store.move(JobChange(
        job.id, event, values=changes, guard=guard or {}, deliveries=outbox,
        detail=error[1][:500] if error else None), now)
    if moved is not None:
        schedule(outbox, deps)
        if moved.batch_id is not None:
            complete_batch(moved.batch_id, deps)
    return moved
