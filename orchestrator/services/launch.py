"""Launch: start a queued job's run on its provider, at most once.

1. Claim: ``queued → starting`` as a compare-and-set with a lease. One worker wins; a
   duplicate message finds the job ``starting`` under a live lease and does nothing.
2. Reserve (where the runtime offers it, CodeWords' provisioned id) and store the
   reservation *before* the start request, so a repeated start is recognised remotely.
3. Start, then ``starting → running`` with the run id and the first poll's time.

A worker that dies in between leaves the job ``starting`` with a lease that runs out; the
sweep hands the launch out again, and ``recover`` decides: a runtime with idempotent starts
gets the same request again (same reservation, same run); on one without, a start that may
have been sent is never sent twice: the job fails with ``launch_unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.domain.errors import Permanent, ProviderError, RateLimited, Transient
from orchestrator.domain.job import Event, JobStatus, LaunchRequest
from orchestrator.domain.records import Job, JobChange, Launch, Poll
from orchestrator.ports import Provider
from orchestrator.services.deps import Deps
from orchestrator.services.finish import finish

# Messages that arrive this much before their job's due time are early duplicates.
EARLY_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class LaunchOutcome:
    result: str  # started | deferred | failed | skipped
    job: Job | None = None
    reason: str = ""


def launch_job(job_id: str, deps: Deps) -> LaunchOutcome:
    job = deps.store.get_job(job_id)
    now = deps.clock.now()
    if job is None:
        return LaunchOutcome("skipped", reason="no such job")
    if job.status is JobStatus.QUEUED:
        if job.next_action_at is not None and job.next_action_at > now + EARLY_TOLERANCE_S:
            return LaunchOutcome("skipped", job, "not due yet")
        claimed = deps.store.move(JobChange(
            job.id, Event.CLAIM, guard={"attempt": job.attempt},
            values={"lease_until": now + deps.limits.launch_lease_s}), now)
        if claimed is None:
            return LaunchOutcome("skipped", job, "claimed by another worker")
        return _start(claimed, deps)
    if job.status is JobStatus.STARTING:
        return _recover(job, deps, now)
    return LaunchOutcome("skipped", job, f"job is {job.status}")


def _recover(job: Job, deps: Deps, now: float) -> LaunchOutcome:
    if job.lease_until is not None and job.lease_until > now:
        return LaunchOutcome("skipped", job, "another worker holds the launch")
    taken = deps.store.update_job(
        job.id, guard={"status": JobStatus.STARTING.value, "lease_until": job.lease_until},
        values={"lease_until": now + deps.limits.launch_lease_s})
    if not taken:
        return LaunchOutcome("skipped", job, "taken over by another worker")
    provider = deps.providers.get(job.provider)
    if provider.idempotent_start:
        return _start(job, deps)
    return _fail(job, deps, "launch_unknown",
                 f"a worker stopped while starting this job on '{job.provider}', which has no "
                 "idempotent start: the run may or may not exist, so it is not started again "
                 "to avoid a duplicate. Check the provider's runs, then retry the job")


def _start(job: Job, deps: Deps) -> LaunchOutcome:
    provider = deps.providers.get(job.provider)
    try:
        reservation = _reserve(job, provider, deps)
        run_id = provider.start(LaunchRequest(
            job_id=job.id, workflow=job.workflow_name, inputs=job.inputs, path=job.path,
            reservation=reservation))
    except ProviderError as error:
        return _launch_error(job, provider, error, deps)
    return _started(job, run_id, deps)


def _reserve(job: Job, provider: Provider, deps: Deps) -> str | None:
    if job.reservation is not None:
        return job.reservation
    reservation = provider.reserve(job.workflow_name)
    if reservation is not None:
        deps.store.update_job(job.id, guard={"status": JobStatus.STARTING.value,
                                             "attempt": job.attempt},
                              values={"reservation": reservation})
    return reservation


def _started(job: Job, run_id: str, deps: Deps) -> LaunchOutcome:
    now = deps.clock.now()
    policy = deps.policy(job.provider)
    timeout = job.timeout_s or policy.run_timeout_s
    first_poll = now + policy.backoff.delay(0, deps.rng)
    moved = deps.store.move(JobChange(
        job.id, Event.STARTED, guard={"attempt": job.attempt},
        values={"run_id": run_id, "remote_status": "running", "started_at": now,
                "deadline_at": now + timeout, "next_action_at": min(first_poll, now + timeout),
                "lease_until": None}, detail=f"run {run_id}"), now)
    if moved is None:
        return LaunchOutcome("skipped", job, "moved by another worker after start")
    deps.scheduler.schedule([Poll(moved.id, moved.polls, moved.next_action_at)])
    return LaunchOutcome("started", moved)


def _launch_error(
    job: Job, provider: Provider, error: ProviderError, deps: Deps
) -> LaunchOutcome:
    if isinstance(error, RateLimited):
        return _defer(job, deps, error.retry_after, error.message)
    if isinstance(error, Transient):
        if not error.request_sent or provider.idempotent_start:
            return _defer(job, deps, error.retry_after, error.message)
        return _fail(job, deps, "launch_unknown",
                     f"the start request to '{job.provider}' failed after it was sent "
                     f"({error.message}); the run may exist, so it is not sent again to avoid "
                     "a duplicate. Check the provider's runs, then retry the job")
    code = error.code if isinstance(error, Permanent) else "provider_error"
    return _fail(job, deps, code, error.message)


def _defer(job: Job, deps: Deps, retry_after: float | None, why: str) -> LaunchOutcome:
    """Back to the queue until the launch may be tried again (the start did not happen,
    or will be recognised as the same run)."""
    now = deps.clock.now()
    delay = deps.policy(job.provider).backoff.delay(job.launch_tries, deps.rng, retry_after)
    moved = deps.store.move(JobChange(
        job.id, Event.DEFER, guard={"attempt": job.attempt},
        values={"next_action_at": now + delay, "lease_until": None,
                "launch_tries": job.launch_tries + 1}, detail=why[:500]), now)
    if moved is None:
        return LaunchOutcome("skipped", job, "moved by another worker")
    deps.scheduler.schedule([Launch(job.id, now + delay)])
    return LaunchOutcome("deferred", moved, why)


def _fail(job: Job, deps: Deps, code: str, message: str) -> LaunchOutcome:
    moved = finish(job, Event.FAIL, deps, error=(code, message),
                   guard={"attempt": job.attempt})
    return LaunchOutcome("failed" if moved else "skipped", moved or job, message)
