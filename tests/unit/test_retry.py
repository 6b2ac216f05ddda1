"""Retry: a new attempt of the same job, history kept; only ended, unsuccessful jobs."""

from __future__ import annotations

import pytest

from orchestrator.domain.job import JobStatus, RemoteState, RunStatus
from orchestrator.domain.records import Launch
from orchestrator.services.retry import RetryRefused, retry_job
from orchestrator.services.submit import JobSpec, submit_job
from orchestrator.testing import FakeProvider, RecordingScheduler, drain, make_deps


def test_a_failed_job_runs_again_as_attempt_two_with_its_history_kept() -> None:
    provider = FakeProvider(result=RunStatus(RemoteState.FAILED, error="boom"))
    deps = make_deps(provider)
    job_id = submit_job(JobSpec("fake/echo", {"n": 1}), deps).job.id
    drain(deps)
    first_run = deps.store.get_job(job_id).run_id  # type: ignore[union-attr]
    provider.result = RunStatus(RemoteState.COMPLETED, outputs={"ok": 1})
    retried = retry_job(job_id, deps)
    assert retried.status is JobStatus.QUEUED and retried.attempt == 2
    assert retried.run_id is None and retried.error_code is None and retried.outputs is None
    assert isinstance(deps.scheduler, RecordingScheduler)
    assert deps.scheduler.actions == [Launch(job_id)]
    drain(deps)
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.outputs == {"ok": 1}
    assert job.run_id != first_run and provider.starts == 2
    history = [(e["event"], e["attempt"]) for e in deps.store.job_events(job_id)]
    assert history == [("submit", 1), ("claim", 1), ("started", 1), ("fail", 1),
                       ("retry", 2), ("claim", 2), ("started", 2), ("complete", 2)]


@pytest.mark.parametrize("ended", ["completed", "active"])
def test_only_an_unsuccessful_ended_job_can_be_retried(ended: str) -> None:
    deps = make_deps()
    job_id = submit_job(JobSpec("fake/echo", {}), deps).job.id
    if ended == "completed":
        drain(deps)
    with pytest.raises(RetryRefused) as refused:
        retry_job(job_id, deps)
    assert refused.value.status == 409 and "can be retried" in refused.value.message


def test_retry_of_an_unknown_job_is_404() -> None:
    with pytest.raises(RetryRefused) as refused:
        retry_job("job_nope", make_deps())
    assert refused.value.status == 404
