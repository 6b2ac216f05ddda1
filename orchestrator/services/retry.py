"""Retry: a new attempt of a failed, cancelled or timed-out job, its history kept.

The job goes back to ``queued`` with ``attempt`` one higher and everything of the last
attempt's run cleared; its launch is handed to the workers as for a new job. The poll
count is not reset: it orders poll messages, and a stale one from the old attempt must
not match the new attempt's count.
"""

from __future__ import annotations

from orchestrator.domain.job import RETRYABLE, Event
from orchestrator.domain.records import Job, JobChange, Launch
from orchestrator.services.deps import Deps

_CLEARED: dict[str, object] = {
    "run_id": None, "reservation": None, "remote_status": None, "outputs": None,
    "error_code": None, "error_message": None, "started_at": None, "finished_at": None,
    "deadline_at": None, "lease_until": None, "launch_sent_at": None, "launch_tries": 0,
    "dispatched_at": None, "artifacts": None,
}


class RetryRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def retry_job(job_id: str, deps: Deps) -> Job:
    job = deps.store.get_job(job_id)
    if job is None:
        raise RetryRefused(404, "not_found", f"no job with id '{job_id}'")
    if job.status not in RETRYABLE:
        kinds = ", ".join(sorted(s.value for s in RETRYABLE))
        raise RetryRefused(409, "not_retryable",
                           f"job {job_id} is {job.status}; only a job that is {kinds} "
                           "can be retried")
    now = deps.clock.now()
    moved = deps.store.move(JobChange(
        job.id, Event.RETRY, guard={"attempt": job.attempt},
        values={**_CLEARED, "next_action_at": now},
        detail=f"retry of attempt {job.attempt} ({job.status})"), now)
    if moved is None:
        raise RetryRefused(409, "conflict", f"job {job_id} changed meanwhile; look and retry")
    deps.scheduler.schedule([Launch(moved.id)])
    return moved
