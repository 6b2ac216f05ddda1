"""Work our own limiter holds back waits for its turn: nothing sent, no try counted, no
backoff grown, and the step comes back exactly when the turn does."""

from __future__ import annotations

import pytest

from orchestrator.domain.errors import Throttled
from orchestrator.domain.job import JobStatus
from orchestrator.domain.records import Launch, Poll
from orchestrator.services.cancel import CancelRefused, cancel_job
from orchestrator.services.deps import Deps
from orchestrator.services.launch import launch_job
from orchestrator.services.poll import DEADLINE_READ_GRACE_S, poll_job
from orchestrator.services.submit import JobSpec, submit_job
from orchestrator.testing import FakeProvider, RecordingScheduler, drain, make_deps


def recorded(deps: Deps) -> RecordingScheduler:
    assert isinstance(deps.scheduler, RecordingScheduler)
    return deps.scheduler


def queued_job(deps: Deps) -> str:
    job_id = submit_job(JobSpec("fake/echo", {"n": 1}), deps).job.id
    recorded(deps).take()
    return job_id


def test_a_throttled_start_waits_for_its_turn_without_counting_a_try() -> None:
    provider = FakeProvider("fake")
    provider.errors["start"] = [Throttled("at its limit", retry_after=0.4)] * 50
    deps = make_deps(provider)
    job_id = queued_job(deps)
    now = deps.clock.now()
    for _ in range(50):  # far more than max_launch_tries (30): none of them counts
        outcome = launch_job(job_id, deps)
        assert outcome.result == "throttled"
        [action] = recorded(deps).take()
        assert action == Launch(job_id, pytest.approx(deps.clock.now() + 0.4))
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.QUEUED and job.launch_tries == 0
    assert job.next_action_at == pytest.approx(now + 0.4)
    assert launch_job(job_id, deps).result == "started"  # its turn came
    drain(deps)
    done = deps.store.get_job(job_id)
    assert done is not None and done.status is JobStatus.COMPLETED
    assert provider.starts == 51


def test_a_throttled_poll_is_the_same_poll_again_at_its_turn() -> None:
    provider = FakeProvider("fake", polls_to_finish=1)
    deps = make_deps(provider)
    job_id = queued_job(deps)
    launch_job(job_id, deps)
    [first] = recorded(deps).take()
    assert isinstance(first, Poll)
    provider.errors["poll"] = [Throttled("reads at their limit", retry_after=1.5)]
    outcome = poll_job(job_id, first.seq, deps)
    assert outcome.result == "throttled"
    [again] = recorded(deps).take()
    assert again == Poll(job_id, first.seq, pytest.approx(deps.clock.now() + 1.5))
    job = deps.store.get_job(job_id)
    assert job is not None and job.polls == first.seq  # not counted
    assert poll_job(job_id, again.seq, deps).result == "completed"


def test_the_last_read_waits_a_little_for_its_turn_then_the_job_times_out() -> None:
    provider = FakeProvider("fake", polls_to_finish=99)
    deps = make_deps(provider)
    job_id = submit_job(JobSpec("fake/echo", {}, timeout_s=5), deps).job.id
    launch_job(job_id, deps)
    job = deps.store.get_job(job_id)
    assert job is not None and job.deadline_at is not None
    deps.clock.advance(6)  # type: ignore[attr-defined]
    provider.errors["poll"] = [Throttled("reads at their limit", retry_after=1.0)] * 2
    # Just past the deadline: the last read waits for its turn, past the deadline.
    assert poll_job(job_id, job.polls, deps).result == "throttled"
    [again] = recorded(deps).take()[-1:]
    assert isinstance(again, Poll) and again.at == pytest.approx(deps.clock.now() + 1.0)
    # Long past it (more than the grace): no more waiting.
    deps.clock.advance(DEADLINE_READ_GRACE_S)  # type: ignore[attr-defined]
    assert poll_job(job_id, job.polls, deps).result == "timed_out"


def test_a_throttled_kill_refuses_the_cancel_with_the_wait() -> None:
    provider = FakeProvider("fake", polls_to_finish=99)
    deps = make_deps(provider)
    job_id = queued_job(deps)
    launch_job(job_id, deps)
    provider.errors["cancel"] = [Throttled("kills at their limit", retry_after=7.0)]
    with pytest.raises(CancelRefused) as refused:
        cancel_job(job_id, deps)
    assert (refused.value.status, refused.value.retry_after) == (429, 7.0)
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.RUNNING  # nothing moved
    assert cancel_job(job_id, deps).remote == "stopped"  # at its turn
