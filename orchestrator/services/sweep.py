"""Sweep: hand out again every step whose message was lost.

The database records each job's next step (launch or poll, with its due time) and each
delivery's next attempt. Messages can be lost (a worker killed, Redis restarted) or parked
(a delay too long to hold in a worker). The sweep, run on a timer by beat, finds steps
overdue by more than the grace period and schedules them again. Every task is idempotent,
so a message that was merely slow, not lost, costs nothing but a skipped duplicate. Several
sweeps at once are safe for the same reason. A batch whose last job ended in a process
that died before emitting ``batch.completed`` is completed here (once: a compare-and-set).
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.domain.job import JobStatus
from orchestrator.domain.records import Action, Deliver, Launch, Poll
from orchestrator.services.deps import Deps
from orchestrator.services.dispatch import paced_providers
from orchestrator.services.fanout import complete_batch


@dataclass(frozen=True)
class SweepOutcome:
    launches: int = 0
    polls: int = 0
    deliveries: int = 0
    batches: int = 0


def sweep(deps: Deps, *, limit: int = 1000) -> SweepOutcome:
    now = deps.clock.now()
    cutoff = now - deps.limits.sweep_grace_s
    actions: list[Action] = []
    # A paced provider's queued job not handed out yet waits for the dispatcher: not lost.
    jobs = deps.store.overdue_jobs(cutoff, limit, dispatched_by=paced_providers(deps))
    for job in jobs:
        if job.status is JobStatus.RUNNING:
            actions.append(Poll(job.id, job.polls))
        elif job.status is JobStatus.STARTING and (job.lease_until or 0) > now:
            continue  # a live launch: its worker is still on it
        else:
            actions.append(Launch(job.id))
    overdue = deps.store.overdue_deliveries(cutoff, limit)
    actions.extend(Deliver(d.id) for d in overdue)
    # Mark what was handed out as due now, so the next sweep waits a full grace period.
    deps.store.touch_jobs([job.id for job in jobs], now, before=cutoff)
    deps.store.touch_deliveries([d.id for d in overdue], now, before=cutoff)
    deps.scheduler.schedule(actions)
    completed = sum(complete_batch(batch_id, deps) for batch_id in deps.store.ended_batches(100))
    return SweepOutcome(
        launches=sum(isinstance(a, Launch) for a in actions),
        polls=sum(isinstance(a, Poll) for a in actions),
        deliveries=sum(isinstance(a, Deliver) for a in actions),
        batches=completed)
