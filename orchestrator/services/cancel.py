"""Cancel: end a job as ``cancelled`` and stop its remote run where the runtime can.

The remote kill is sent before the job moves, so a kill that the runtime refuses is
reported. The job is cancelled either way: a runtime that cannot stop runs (CodeWords) keeps
running it, and its result is no longer wanted. A run whose start was still in flight is
stopped by the launch when it sees the job cancelled (``launch._orphaned``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from orchestrator.domain.errors import ProviderError, Throttled
from orchestrator.domain.job import Event, JobStatus
from orchestrator.domain.records import Job
from orchestrator.services.deps import Deps
from orchestrator.services.finish import finish

Remote = Literal["stopped", "not_supported", "not_started", "failed"]


class CancelRefused(Exception):
    def __init__(self, status: int, code: str, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Cancelled:
    job: Job
    remote: Remote
    message: str


def cancel_job(job_id: str, deps: Deps) -> Cancelled:
    for _ in range(3):  # the job may move under us; each round reads it afresh
        job = deps.store.get_job(job_id)
        if job is None:
            raise CancelRefused(404, "not_found", f"no job with id '{job_id}'")
        if job.status.terminal:
            raise CancelRefused(409, "already_finished",
                                f"job {job_id} already ended as {job.status}; nothing to cancel")
        remote, message = _stop_remote(job, deps)
        values = {"remote_status": "cancelled"} if remote == "stopped" else {}
        moved = finish(job, Event.CANCEL, deps, guard={"attempt": job.attempt},
                       error=("cancelled", "cancelled on request"), values=values)
        if moved is not None:
            return Cancelled(moved, remote, message)
    raise CancelRefused(409, "conflict", f"job {job_id} kept changing; try again")


def _stop_remote(job: Job, deps: Deps) -> tuple[Remote, str]:
    if job.status is JobStatus.QUEUED:
        return "not_started", "cancelled before its remote run was started"
    if job.status is not JobStatus.RUNNING or not job.run_id:
        # Mid-launch: a start request may have reached the runtime. A run found to exist
        # later is stopped by the launch where the runtime can (launch._orphaned); one
        # whose answer was lost may not be found.
        return ("not_started", "cancelled while its start was in progress: if the start "
                "reached the provider, a run may exist there and go on")
    provider = deps.providers.get(job.provider)
    if not provider.supports_cancel:
        return ("not_supported", f"provider '{job.provider}' has no way to stop a run: the "
                f"remote run {job.run_id} goes on, and its result will be ignored")
    try:
        provider.cancel(job.workflow_name, job.run_id)
    except Throttled as error:
        # Nothing was sent and the job has not moved: the caller asks again at the turn,
        # rather than the run going on unstopped.
        raise CancelRefused(429, "rate_limited",
                            f"stopping run {job.run_id} must wait for a turn of "
                            f"'{job.provider}''s cancel limit; try again in "
                            f"{error.retry_after:.0f} s", retry_after=error.retry_after) from None
    except ProviderError as error:
        return ("failed", f"the kill request for run {job.run_id} failed ({error.message}); "
                "the remote run may go on, and its result will be ignored")
    return "stopped", f"remote run {job.run_id} was stopped"
