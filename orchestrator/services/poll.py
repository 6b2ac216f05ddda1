"""Poll once: ask the runtime how a run is doing, and act on the answer.

Each poll message carries ``seq``, the job's poll count when it was planned. The job's
``polls`` column is advanced by a compare-and-set on that count, so a duplicated message
finds the count moved on and does nothing. The next poll's time comes from the provider's
backoff policy, floored by any ``retry_after``, and never later than the job's deadline.

A run that completed with output files stays ``running`` while they are kept
(``services/artifacts.py``): its ``outputs`` are saved on the job, so later polls keep the
rest of its files without asking the runtime again, and the job completes (its terminal
event carrying the artifacts) once every file is kept or given up on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.domain.errors import Permanent, ProviderError, Throttled
from orchestrator.domain.job import Event, JobStatus, RemoteState, RunStatus
from orchestrator.domain.records import Job, JobChange, Launch, Poll
from orchestrator.services.artifacts import keep_artifacts, record_artifacts
from orchestrator.services.deps import Deps
from orchestrator.services.finish import finish

# How long past its deadline a job's last read may wait for a turn of the read limit.
DEADLINE_READ_GRACE_S = 60.0


@dataclass(frozen=True)
class PollOutcome:
    # running | keeping (output files still to keep) | throttled | completed | failed |
    # cancelled | timed_out | relaunched | skipped
    result: str
    job: Job | None = None
    next_at: float | None = None


def poll_job(job_id: str, seq: int, deps: Deps) -> PollOutcome:
    job = deps.store.get_job(job_id)
    if job is None or job.status is not JobStatus.RUNNING or job.polls != seq:
        return PollOutcome("skipped", job)
    if job.outputs is not None:
        # Only a run that completed has outputs on a running job: its files are being
        # kept. The runtime has nothing more to say, and the deadline no longer applies.
        status = RunStatus(RemoteState.COMPLETED, outputs=job.outputs,
                           raw_status=job.remote_status or RemoteState.COMPLETED.value)
        return _completed(job, status, deps)
    now = deps.clock.now()
    # At the deadline the run is asked once more: a run that finished in its last second
    # keeps its outputs instead of being timed out.
    past_deadline = job.deadline_at is not None and now >= job.deadline_at
    provider = deps.providers.get(job.provider)
    try:
        status = provider.poll(job.workflow_name, job.run_id or "")
    except Permanent as error:
        moved = finish(job, Event.FAIL, deps, error=(error.code, error.message),
                       guard={"polls": seq}, values={"polls": seq + 1})
        return PollOutcome("failed" if moved else "skipped", moved or job)
    except Throttled as error:
        if past_deadline and now - (job.deadline_at or now) > DEADLINE_READ_GRACE_S:
            return _time_out(job, deps)
        return _wait_turn(job, deps, error.retry_after, past_deadline=past_deadline)
    except ProviderError as error:
        if past_deadline:
            return _time_out(job, deps)
        return _poll_again(job, deps, retry_after=error.retry_after,
                           remote_status=job.remote_status)
    if status.state.finished:
        return _finished(job, status, deps)
    if past_deadline:
        return _time_out(job, deps)
    return _poll_again(job, deps, retry_after=None, remote_status=status.raw_status)


def _poll_again(
    job: Job, deps: Deps, *, retry_after: float | None, remote_status: str | None,
    values: Mapping[str, object] | None = None, until: float | None = None,
    result: str = "running",
) -> PollOutcome:
    """The next poll, by the backoff; ``values`` are saved with it, and ``until`` (the
    job's deadline by default) is the latest it may be."""
    now = deps.clock.now()
    delay = deps.policy(job.provider).backoff.delay(job.polls + 1, deps.rng, retry_after)
    # Never past the deadline, even for a retry_after: at the deadline the poll's request
    # is held back by the embargo if the wait still runs, and the job times out.
    due = now + delay
    latest = until if until is not None else job.deadline_at
    if latest is not None:
        due = min(due, max(latest, now))
    advanced = deps.store.update_job(
        job.id, guard={"status": JobStatus.RUNNING.value, "polls": job.polls},
        values={**(values or {}), "polls": job.polls + 1, "next_action_at": due,
                "remote_status": remote_status, "updated_at": now})
    if not advanced:
        return PollOutcome("skipped", job)
    deps.scheduler.schedule([Poll(job.id, job.polls + 1, due)])
    return PollOutcome(result, job, due)


def _wait_turn(job: Job, deps: Deps, wait: float, *, past_deadline: bool = False) -> PollOutcome:
    """Our own read limit held the poll back (nothing was sent): the same poll again when
    its turn comes, neither counted nor growing the backoff. The last read, at the
    deadline, may wait up to ``DEADLINE_READ_GRACE_S`` past it for its turn: a run that
    finished in time keeps its outputs even when reads are scarce."""
    due = deps.clock.now() + wait
    if job.deadline_at is not None and not past_deadline:
        due = min(due, max(job.deadline_at, deps.clock.now()))
    if not deps.store.update_job(
            job.id, guard={"status": JobStatus.RUNNING.value, "polls": job.polls},
            values={"next_action_at": due}):
        return PollOutcome("skipped", job)
    deps.scheduler.schedule([Poll(job.id, job.polls, due)])
    return PollOutcome("throttled", job, due)


def _finished(job: Job, status: RunStatus, deps: Deps) -> PollOutcome:
    if status.state is RemoteState.COMPLETED:
        return _completed(job, status, deps)
    guard = {"polls": job.polls}
    values = {"polls": job.polls + 1, "remote_status": status.raw_status or status.state.value}
    if status.state is RemoteState.CANCELLED:
        moved = finish(job, Event.CANCEL, deps, error=("run_cancelled",
                       status.error or "the run was cancelled on the provider"),
                       guard=guard, values=values)
        return PollOutcome("cancelled" if moved else "skipped", moved or job)
    if job.attempt <= job.retries:
        return _relaunch(job, status, deps)
    message = status.error or "the workflow run failed"
    moved = finish(job, Event.FAIL, deps, outputs=status.outputs,
                   error=("run_failed", message), guard=guard, values=values)
    return PollOutcome("failed" if moved else "skipped", moved or job)


def _completed(job: Job, status: RunStatus, deps: Deps) -> PollOutcome:
    """Complete the job, once the run's output files are kept (or given up on)."""
    remote_status = status.raw_status or status.state.value
    error = None
    files = (deps.providers.get(job.provider).output_files(status.outputs)
             if deps.artifacts is not None else [])
    if files:
        keeping = keep_artifacts(job, files, deps)
        if keeping.job is None:
            return PollOutcome("skipped", job)
        # The round took the job (its poll count moved on, so a second copy of this poll
        # is skipped): what follows guards on the new count.
        job = keeping.job
        if keeping.again:
            return _poll_again(job, deps, retry_after=keeping.retry_after,
                               remote_status=remote_status, until=keeping.retry_until,
                               values={"outputs": status.outputs, **keeping.values},
                               result="keeping")
        recorded = record_artifacts(job, keeping, deps)
        if recorded is None:
            return PollOutcome("skipped", job)
        job, error = recorded, keeping.error
    moved = finish(job, Event.COMPLETE, deps, outputs=status.outputs, error=error,
                   guard={"polls": job.polls},
                   values={"polls": job.polls + 1, "remote_status": remote_status})
    return PollOutcome("completed" if moved else "skipped", moved or job)


def _relaunch(job: Job, status: RunStatus, deps: Deps) -> PollOutcome:
    """A failed run with retries left: a new attempt of the same job, history kept."""
    now = deps.clock.now()
    moved = deps.store.move(JobChange(
        job.id, Event.RELAUNCH, guard={"polls": job.polls},
        values={"polls": job.polls + 1, "run_id": None, "reservation": None,
                "remote_status": None, "next_action_at": now, "deadline_at": None,
                "launch_tries": 0, "outputs": None},
        detail=(status.error or "run failed")[:500]), now)
    if moved is None:
        return PollOutcome("skipped", job)
    deps.scheduler.schedule([Launch(job.id)])
    return PollOutcome("relaunched", moved)


def _time_out(job: Job, deps: Deps) -> PollOutcome:
    provider = deps.providers.get(job.provider)
    killed = False
    if provider.supports_cancel and job.run_id:
        try:
            killed = provider.cancel(job.workflow_name, job.run_id)
        except ProviderError:
            killed = False
    note = "the remote run was stopped" if killed else "the remote run could not be stopped"
    moved = finish(job, Event.TIME_OUT, deps, guard={"polls": job.polls},
                   error=("timed_out", f"the job ran past its time-out; {note}"),
                   values={"polls": job.polls + 1})
    return PollOutcome("timed_out" if moved else "skipped", moved or job)
