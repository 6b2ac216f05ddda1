"""Launch races the review found: a worker that outlives its lease, a database error right
after a start. The lease is a fencing token, so the old worker's writes do nothing."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.domain.errors import Permanent
from orchestrator.domain.job import Event, JobStatus, LaunchRequest
from orchestrator.domain.records import JobChange
from orchestrator.services.deps import Deps
from orchestrator.services.launch import launch_job
from orchestrator.services.submit import JobSpec, submit_job
from orchestrator.testing import FakeClock, FakeProvider, InMemoryStore, drain, make_deps


def _submit(deps: Deps, workflow: str = "fake/echo") -> str:
    return submit_job(JobSpec(workflow, {"n": 1}), deps).job.id


def _expire_and_take_over(deps: Deps, job_id: str) -> None:
    """The lease runs out while the first worker is still busy; a second worker takes the
    launch over and carries it through."""
    assert isinstance(deps.clock, FakeClock)
    deps.clock.advance(deps.limits.launch_lease_s + 1)
    assert launch_job(job_id, deps).result == "started"


def test_a_worker_that_lost_its_lease_during_reserve_starts_nothing() -> None:
    provider = FakeProvider(idempotent_start=True)
    deps = make_deps(provider)
    job_id = _submit(deps)
    original = provider.reserve
    calls = []

    def slow_reserve(workflow: str) -> str | None:
        calls.append(workflow)
        if len(calls) == 1:  # worker A, slow: B does the whole launch meanwhile
            _expire_and_take_over(deps, job_id)
        return original(workflow)

    provider.reserve = slow_reserve  # type: ignore[method-assign]
    outcome = launch_job(job_id, deps)
    assert outcome.result == "skipped" and "lost the launch" in outcome.reason
    assert provider.starts == 1 and len(provider.runs) == 1


def test_a_worker_that_lost_its_lease_cannot_fail_a_running_job() -> None:
    provider = FakeProvider(idempotent_start=True)
    deps = make_deps(provider)
    job_id = _submit(deps)
    original = provider.start

    def start_then_refused(launch: LaunchRequest) -> str:
        if provider.starts == 0:  # worker A's start: B takes over before A hears back
            provider.starts += 1
            _expire_and_take_over(deps, job_id)
            raise Permanent("request in progress", code="provider_error")
        return original(launch)

    provider.start = start_then_refused  # type: ignore[method-assign]
    assert launch_job(job_id, deps).result == "skipped"
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.RUNNING
    assert [e["event"] for e in deps.store.job_events(job_id)] == [
        "submit", "claim", "started"]


def test_a_run_started_by_a_worker_that_lost_its_lease_is_stopped() -> None:
    provider = FakeProvider("cord", idempotent_start=False)
    deps = make_deps(provider)
    job_id = _submit(deps, "cord/echo")
    # Worker A claims, then stalls inside the trigger; meanwhile worker B, finding the
    # lease run out, fails the job (this runtime cannot list runs to reconcile).
    original = provider.start

    def slow_trigger(launch: LaunchRequest) -> str:
        assert isinstance(deps.clock, FakeClock)
        deps.clock.advance(deps.limits.launch_lease_s + 1)
        assert launch_job(job_id, deps).result == "failed"
        return original(launch)

    provider.start = slow_trigger  # type: ignore[method-assign]
    outcome = launch_job(job_id, deps)
    assert outcome.result == "skipped" and "stopped" in outcome.reason
    assert provider.cancelled == list(provider.runs)


class FlakyStore(InMemoryStore):
    """Fails the first write that stores a run id, as a database outage would."""

    failed = False

    def move(self, change: JobChange, now: float):  # type: ignore[no-untyped-def]
        if change.event is Event.STARTED and not self.failed:
            self.failed = True
            raise ConnectionError("database unreachable")
        return super().move(change, now)


def test_a_run_id_that_could_not_be_stored_is_stored_on_the_next_try() -> None:
    provider = FakeProvider("cord", idempotent_start=False)
    deps = make_deps(provider, store=FlakyStore())
    job_id = _submit(deps, "cord/echo")
    with pytest.raises(ConnectionError):
        launch_job(job_id, deps)
    drain(deps)
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED
    assert provider.starts == 1 and job.run_id in provider.runs


def test_a_start_refused_again_and_again_fails_in_the_end() -> None:
    from orchestrator.domain.errors import Transient
    from orchestrator.services.deps import Limits

    provider = FakeProvider()
    provider.errors["reserve"] = [Transient("503", request_sent=False)] * 10
    deps = make_deps(provider, limits=dataclasses.replace(Limits(), max_launch_tries=5))
    job_id = _submit(deps)
    drain(deps)
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED
    assert job.error_code == "launch_failed" and "after 5 tries" in (job.error_message or "")


def test_a_failed_start_is_handled_under_the_renewed_lease_at_once() -> None:
    provider = FakeProvider()
    provider.errors["start"] = [Permanent("provider 'fake' refused the API key",
                                          code="provider_auth")]
    deps = make_deps(provider)
    job_id = _submit(deps)
    assert launch_job(job_id, deps).result == "failed"
    job = deps.store.get_job(job_id)
    assert job is not None and job.error_code == "provider_auth"


def test_settling_counts_from_the_last_start_sent() -> None:
    from orchestrator.domain.errors import Transient
    from orchestrator.testing import ListingProvider

    provider = ListingProvider("cord")
    deps = make_deps(provider)
    assert isinstance(deps.clock, FakeClock)
    provider.clock = deps.clock
    job_id = _submit(deps, "cord/echo")
    clock = deps.clock

    def slow_reserve(workflow: str) -> None:
        clock.advance(60)  # a slow step between the claim and the send

    provider.reserve = slow_reserve  # type: ignore[method-assign,assignment]
    provider.errors["start"] = [Transient("read timed out", request_sent=True)]
    # Counted from the claim, the start would look long settled and be sent again at once;
    # counted from the send, it has just gone out, so the runs are looked at again later.
    assert launch_job(job_id, deps).result == "reconciling"
    assert provider.starts == 1
