"""The use cases over in-memory fakes: every decision, no network, broker or clock."""

from __future__ import annotations

import json

import pytest

from orchestrator.domain.errors import Permanent, RateLimited, Transient
from orchestrator.domain.job import Event, JobStatus, LaunchRequest, RemoteState, RunStatus
from orchestrator.domain.records import JobChange, Launch, Poll
from orchestrator.ports import SendResult
from orchestrator.services.callbacks import deliver_callback
from orchestrator.services.cancel import CancelRefused, cancel_job
from orchestrator.services.deps import Deps, Limits
from orchestrator.services.launch import launch_job
from orchestrator.services.poll import poll_job
from orchestrator.services.submit import JobSpec, SubmitRejected, submit_job
from orchestrator.services.sweep import sweep
from orchestrator.testing import (
    FakeClock,
    FakeProvider,
    FakeSender,
    InMemoryStore,
    RecordingScheduler,
    drain,
    make_deps,
)


def store_of(deps: Deps) -> InMemoryStore:
    assert isinstance(deps.store, InMemoryStore)
    return deps.store


def clock_of(deps: Deps) -> FakeClock:
    assert isinstance(deps.clock, FakeClock)
    return deps.clock


def sched(deps: Deps) -> RecordingScheduler:
    assert isinstance(deps.scheduler, RecordingScheduler)
    return deps.scheduler


def submit(deps: Deps, **spec: object) -> str:
    fields: dict[str, object] = {"workflow": "fake/echo", "inputs": {"n": 1}, **spec}
    return submit_job(JobSpec(**fields), deps, owner="tok_1").job.id  # type: ignore[arg-type]


# submit ----------------------------------------------------------------------------------

def test_submit_queues_the_job_and_schedules_its_launch() -> None:
    deps = make_deps()
    job_id = submit(deps)
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.QUEUED
    assert sched(deps).actions == [Launch(job_id)]


def test_unknown_provider_is_refused_naming_the_configured_ones() -> None:
    deps = make_deps()
    with pytest.raises(SubmitRejected, match=r"'nope'.*configured providers: fake") as caught:
        submit(deps, workflow="nope/echo")
    assert caught.value.status == 422
    assert store_of(deps).count_by_status() == {}


def test_malformed_workflow_is_refused() -> None:
    with pytest.raises(SubmitRejected, match="<provider>/<name>"):
        submit(make_deps(), workflow="echo")


def test_oversized_inputs_are_a_413_and_write_nothing() -> None:
    deps = make_deps(limits=Limits(max_input_bytes=100))
    with pytest.raises(SubmitRejected, match="limit is 100 bytes") as caught:
        submit(deps, inputs={"blob": "x" * 200})
    assert caught.value.status == 413
    assert store_of(deps).count_by_status() == {}


def test_same_key_same_body_returns_the_first_job() -> None:
    deps = make_deps()
    first = submit(deps, idempotency_key="k1")
    again = submit_job(JobSpec("fake/echo", {"n": 1}, idempotency_key="k1"), deps, owner="tok_1")
    assert again.job.id == first and not again.created
    assert len(sched(deps).actions) == 1  # launched once


def test_same_key_other_body_is_a_conflict() -> None:
    deps = make_deps()
    submit(deps, idempotency_key="k1")
    with pytest.raises(SubmitRejected) as caught:
        submit(deps, idempotency_key="k1", inputs={"n": 2})
    assert caught.value.status == 409


def test_keys_are_scoped_to_their_owner() -> None:
    deps = make_deps()
    first = submit(deps, idempotency_key="k1")
    other = submit_job(JobSpec("fake/echo", {"n": 1}, idempotency_key="k1"), deps, owner="tok_2")
    assert other.created and other.job.id != first


# the whole path --------------------------------------------------------------------------

def test_a_job_runs_to_completion_and_its_callback_is_signed_and_sent() -> None:
    provider = FakeProvider(polls_to_finish=3)
    deps = make_deps(provider)
    job_id = submit(deps, callback_url="https://example.com/hook")
    steps = drain(deps)
    assert steps == ["launch:started", "poll:running", "poll:running", "poll:completed",
                     "deliver:succeeded"]
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED
    assert job.outputs == {"ok": True} and job.polls == 3
    assert provider.starts == 1
    sender = deps.sender
    assert isinstance(sender, FakeSender)
    url, headers, body = sender.sent[0]
    assert url == "https://example.com/hook"
    assert headers["webhook-signature"].startswith("v1,")
    event = json.loads(body)
    assert event["type"] == "job.completed" and event["data"]["status"] == "completed"
    events = [e["event"] for e in deps.store.job_events(job_id)]
    assert events == ["submit", "claim", "started", "complete"]


def test_polls_back_off_by_the_providers_policy() -> None:
    deps = make_deps(FakeProvider(polls_to_finish=5))
    submit(deps)
    drain(deps)
    # started at t0; each poll later than the one before, by at least the initial delay
    # (the default policy: 2 s growing by 1.5 up to 30 s, ±20%)
    times = [e["at"] for e in store_of(deps)._events]
    assert times == sorted(times)


def test_a_failed_run_fails_the_job_with_the_workflows_error() -> None:
    provider = FakeProvider(result=RunStatus(RemoteState.FAILED, error="boom",
                                             raw_status="failed"))
    deps = make_deps(provider)
    job_id = submit(deps, callback_url="https://example.com/hook")
    assert drain(deps)[-2:] == ["poll:failed", "deliver:succeeded"]
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED
    assert (job.error_code, job.error_message) == ("run_failed", "boom")


def test_retries_relaunch_a_failed_run_as_a_new_attempt() -> None:
    provider = FakeProvider(result=RunStatus(RemoteState.FAILED, error="boom"))
    deps = make_deps(provider)
    job_id = submit(deps, retries=2)
    drain(deps)
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.attempt == 3
    assert provider.starts == 3


def test_a_deadline_times_the_job_out_and_kills_the_run() -> None:
    provider = FakeProvider(polls_to_finish=10**6)
    deps = make_deps(provider)
    job_id = submit(deps, timeout_s=20)
    assert drain(deps)[-1] == "poll:timed_out"
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.TIMED_OUT
    assert provider.cancelled == [job.run_id]
    assert job.finished_at is not None and job.started_at is not None
    assert job.finished_at - job.started_at == pytest.approx(20, abs=0.01)


# idempotency of every task ---------------------------------------------------------------

def test_a_duplicated_launch_message_starts_one_run() -> None:
    provider = FakeProvider()
    deps = make_deps(provider)
    job_id = submit(deps)
    assert launch_job(job_id, deps).result == "started"
    assert launch_job(job_id, deps).result == "skipped"
    assert provider.starts == 1


def test_a_duplicated_poll_message_changes_nothing() -> None:
    deps = make_deps(FakeProvider(polls_to_finish=3))
    job_id = submit(deps)
    launch_job(job_id, deps)
    assert poll_job(job_id, 0, deps).result == "running"
    before = deps.store.get_job(job_id)
    assert poll_job(job_id, 0, deps).result == "skipped"
    assert deps.store.get_job(job_id) == before


def test_a_duplicated_delivery_message_sends_once() -> None:
    deps = make_deps()
    submit(deps, callback_url="https://example.com/hook")
    drain(deps)
    delivery = next(iter(store_of(deps)._deliveries.values()))
    assert deliver_callback(delivery.id, deps).result == "skipped"
    assert isinstance(deps.sender, FakeSender) and len(deps.sender.sent) == 1


# launch safety ---------------------------------------------------------------------------

def test_a_rate_limited_launch_waits_for_retry_after() -> None:
    provider = FakeProvider()
    provider.errors["start"] = [RateLimited("slow down", retry_after=42)]
    deps = make_deps(provider)
    job_id = submit(deps)
    t0 = clock_of(deps).t
    assert launch_job(job_id, deps).result == "deferred"
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.QUEUED
    assert job.next_action_at is not None and job.next_action_at >= t0 + 42
    assert sched(deps).actions[-1] == Launch(job_id, job.next_action_at)
    # A stale copy of the launch that arrives early does nothing.
    assert launch_job(job_id, deps).result == "skipped"
    clock_of(deps).t = job.next_action_at
    assert launch_job(job_id, deps).result == "started"


def test_a_start_that_never_left_is_retried() -> None:
    provider = FakeProvider(idempotent_start=False)
    provider.errors["start"] = [Transient("connection refused", request_sent=False)]
    deps = make_deps(provider)
    job_id = submit(deps)
    drain(deps)
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and provider.starts == 2


def test_an_ambiguous_start_is_resent_only_where_starts_are_idempotent() -> None:
    idempotent = FakeProvider("cw", idempotent_start=True)
    once_only = FakeProvider("cord", idempotent_start=False)
    for provider in (idempotent, once_only):
        provider.errors["start"] = [Transient("read timed out", request_sent=True)]
    deps = make_deps(idempotent, once_only)
    cw = submit(deps, workflow="cw/echo")
    cord = submit(deps, workflow="cord/echo")
    drain(deps)
    cw_job, cord_job = deps.store.get_job(cw), deps.store.get_job(cord)
    assert cw_job is not None and cw_job.status is JobStatus.COMPLETED
    assert len(idempotent.runs) == 1  # the second start reused the reservation
    assert cord_job is not None and cord_job.status is JobStatus.FAILED
    assert cord_job.error_code == "launch_unknown" and once_only.starts == 1


def test_a_refused_key_fails_the_job_at_once() -> None:
    provider = FakeProvider()
    provider.errors["reserve"] = [Permanent("provider 'fake' refused the API key",
                                            code="provider_auth")]
    deps = make_deps(provider)
    job_id = submit(deps)
    assert drain(deps) == ["launch:failed"]
    job = deps.store.get_job(job_id)
    assert job is not None and job.error_code == "provider_auth"


def _crash_mid_launch(deps: Deps, job_id: str) -> None:
    """A worker claimed the job and died before storing the run id."""
    moved = deps.store.move(JobChange(job_id, Event.CLAIM, values={
        "lease_until": clock_of(deps).t + deps.limits.launch_lease_s}), clock_of(deps).t)
    assert moved is not None


def test_a_live_lease_keeps_other_workers_off() -> None:
    deps = make_deps()
    job_id = submit(deps)
    _crash_mid_launch(deps, job_id)
    assert launch_job(job_id, deps).result == "skipped"


def test_an_expired_lease_is_recovered_without_a_second_run() -> None:
    idempotent = FakeProvider("cw", idempotent_start=True)
    deps = make_deps(idempotent)
    job_id = submit(deps, workflow="cw/echo")
    _crash_mid_launch(deps, job_id)
    clock_of(deps).advance(deps.limits.launch_lease_s + 1)
    sched(deps).take()
    assert sweep(deps).launches == 1
    drain(deps)
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED
    assert len(idempotent.runs) == 1


def test_an_expired_lease_on_a_runtime_without_idempotency_fails_safe() -> None:
    once_only = FakeProvider("cord", idempotent_start=False)
    deps = make_deps(once_only)
    job_id = submit(deps, workflow="cord/echo")
    _crash_mid_launch(deps, job_id)
    clock_of(deps).advance(deps.limits.launch_lease_s + 1)
    assert launch_job(job_id, deps).result == "failed"
    job = deps.store.get_job(job_id)
    assert job is not None and job.error_code == "launch_unknown" and once_only.starts == 0


# polls under pressure --------------------------------------------------------------------

def wait_after_a_poll_error(error: Exception) -> float:
    """How long after a poll that met ``error`` the next poll is planned."""
    provider = FakeProvider(polls_to_finish=2)
    provider.errors["poll"] = [error]  # type: ignore[list-item]
    deps = make_deps(provider)
    job_id = submit(deps)
    launch_job(job_id, deps)
    poll = sched(deps).actions[-1]
    assert isinstance(poll, Poll)
    clock_of(deps).t = poll.at or 0
    assert poll_job(job_id, poll.seq, deps).result == "running"
    again = sched(deps).actions[-1]
    assert isinstance(again, Poll) and again.at is not None
    return again.at - clock_of(deps).t


def test_a_rate_limited_poll_waits_at_least_retry_after() -> None:
    assert wait_after_a_poll_error(RateLimited("429", retry_after=120)) >= 120


def test_a_5xx_with_retry_after_is_honoured_too() -> None:
    assert wait_after_a_poll_error(Transient("503", retry_after=90)) >= 90


def test_transient_poll_errors_are_retried() -> None:
    provider = FakeProvider(polls_to_finish=1)
    provider.errors["poll"] = [Transient("503"), Transient("reset")]
    deps = make_deps(provider)
    job_id = submit(deps)
    drain(deps)
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.polls == 3


# callbacks -------------------------------------------------------------------------------

def test_callbacks_retry_until_2xx_honouring_retry_after() -> None:
    answers = [SendResult(503, 0.01, "busy", retry_after=50), SendResult(None, 5, "timeout"),
               SendResult(204, 0.01)]
    deps = make_deps(sender=FakeSender(lambda n: answers[n - 1]),
                     limits=Limits(callback_retry_s=(1, 2, 3)))
    submit(deps, callback_url="https://example.com/hook")
    steps = drain(deps)
    assert steps[-3:] == ["deliver:retrying", "deliver:retrying", "deliver:succeeded"]
    delivery = next(iter(store_of(deps)._deliveries.values()))
    attempts = [a for a in store_of(deps)._attempts if a.delivery_id == delivery.id]
    assert [a.status_code for a in attempts] == [503, None, 204]
    assert attempts[1].at - attempts[0].at >= 50
    # The same webhook-id on every attempt.
    assert isinstance(deps.sender, FakeSender)
    assert {h["webhook-id"] for _, h, _ in deps.sender.sent} == {delivery.id}


def test_a_410_stops_retrying() -> None:
    deps = make_deps(sender=FakeSender(lambda n: SendResult(410, 0.01, "gone")))
    submit(deps, callback_url="https://example.com/hook")
    assert drain(deps)[-1] == "deliver:failed"


def test_retries_run_out_and_the_delivery_stays_failed_in_the_log() -> None:
    deps = make_deps(sender=FakeSender(lambda n: SendResult(500, 0.01, "err")),
                     limits=Limits(callback_retry_s=(1, 1)))
    submit(deps, callback_url="https://example.com/hook")
    assert drain(deps)[-3:] == ["deliver:retrying", "deliver:retrying", "deliver:failed"]
    delivery = next(iter(store_of(deps)._deliveries.values()))
    assert delivery.status == "failed" and delivery.attempts == 3


# the sweep -------------------------------------------------------------------------------

def test_sweep_finds_lost_messages_and_hands_them_out_once_per_grace() -> None:
    deps = make_deps(FakeProvider(polls_to_finish=2), limits=Limits(sweep_grace_s=10))
    job_id = submit(deps)
    launch_job(job_id, deps)
    sched(deps).take()  # the poll message is lost
    assert sweep(deps).polls == 0  # not overdue yet
    clock_of(deps).advance(60)
    assert sweep(deps).polls == 1
    assert sweep(deps).polls == 0  # handed out: not again until another grace passes
    drain(deps)
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED



# cancel ----------------------------------------------------------------------------------

def test_cancel_kills_a_running_run_where_the_runtime_can() -> None:
    provider = FakeProvider(polls_to_finish=10)
    deps = make_deps(provider)
    job_id = submit(deps, callback_url="https://example.com/hook")
    launch_job(job_id, deps)
    outcome = cancel_job(job_id, deps)
    assert outcome.remote == "stopped" and outcome.job.status is JobStatus.CANCELLED
    assert provider.cancelled == [outcome.job.run_id]
    assert [d.event_type for d in deps.store.deliveries_for_job(job_id)] == ["job.cancelled"]
    with pytest.raises(CancelRefused) as again:
        cancel_job(job_id, deps)
    assert again.value.status == 409


def test_cancel_where_the_runtime_cannot_stop_runs_says_so() -> None:
    deps = make_deps(FakeProvider(supports_cancel=False, polls_to_finish=10))
    job_id = submit(deps)
    launch_job(job_id, deps)
    outcome = cancel_job(job_id, deps)
    assert outcome.remote == "not_supported" and "goes on" in outcome.message
    assert outcome.job.status is JobStatus.CANCELLED


def test_cancel_while_starting_stops_the_run_once_it_appears() -> None:
    provider = FakeProvider()
    deps = make_deps(provider)
    job_id = submit(deps)
    # The job is cancelled between the claim and the run id being stored.
    original = provider.start

    def start_then_cancelled(launch: LaunchRequest) -> str:
        run_id = original(launch)
        assert cancel_job(job_id, deps).remote == "not_started"
        return run_id

    provider.start = start_then_cancelled  # type: ignore[method-assign]
    assert launch_job(job_id, deps).result == "skipped"
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED
    assert provider.cancelled == list(provider.runs)


def test_cancel_of_an_unknown_job_is_404() -> None:
    with pytest.raises(CancelRefused) as refused:
        cancel_job("job_nope", make_deps())
    assert refused.value.status == 404


def test_a_run_that_finishes_just_before_its_deadline_keeps_its_outputs() -> None:
    provider = FakeProvider(polls_to_finish=10**6)
    deps = make_deps(provider)
    job_id = submit(deps, timeout_s=20)
    launch_job(job_id, deps)
    job = deps.store.get_job(job_id)
    assert job is not None and job.deadline_at is not None
    clock_of(deps).t = job.deadline_at  # the poll planned for the deadline...
    provider.polls_to_finish = 0  # ...finds the run finished
    assert poll_job(job_id, job.polls, deps).result == "completed"


def test_a_job_is_accepted_even_when_the_broker_is_down() -> None:
    class DownScheduler(RecordingScheduler):
        def schedule(self, actions: object) -> None:
            raise ConnectionError("broker unreachable")

    deps = make_deps(scheduler=DownScheduler(), limits=Limits(sweep_grace_s=5))
    job_id = submit(deps)
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.QUEUED
    # Once the broker is back, the sweep hands the launch out.
    deps.scheduler = RecordingScheduler()
    clock_of(deps).advance(10)
    assert sweep(deps).launches == 1


def test_the_signing_secret_is_not_in_the_dependencies_repr() -> None:
    deps = make_deps()
    assert deps.signing_secrets[0] not in repr(deps)


def test_a_retry_after_never_carries_a_poll_past_the_deadline() -> None:
    provider = FakeProvider(polls_to_finish=10**6)
    provider.errors["poll"] = [RateLimited("429", retry_after=3600)]
    deps = make_deps(provider)
    job_id = submit(deps, timeout_s=60)
    assert drain(deps)[-1] == "poll:timed_out"
    job = deps.store.get_job(job_id)
    assert job is not None and job.started_at is not None and job.finished_at is not None
    assert job.finished_at - job.started_at == pytest.approx(60, abs=0.01)
