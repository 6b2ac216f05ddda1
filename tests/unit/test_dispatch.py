"""The dispatcher over fakes: paced providers' launches handed out as slots and turns free,
by priority, with batches, schedules and single jobs taking turns."""

from __future__ import annotations

from typing import Any

from orchestrator.domain.errors import RateLimited, Throttled
from orchestrator.domain.job import JobStatus
from orchestrator.domain.ratelimit import RateLimit
from orchestrator.domain.records import Launch
from orchestrator.services.cancel import cancel_job
from orchestrator.services.deps import Deps, ProviderPolicy
from orchestrator.services.dispatch import dispatch
from orchestrator.services.launch import launch_job
from orchestrator.services.retry import retry_job
from orchestrator.services.submit import JobSpec, new_job, submit_job
from orchestrator.services.sweep import sweep
from orchestrator.testing import FakeProvider, InMemoryStore, RecordingScheduler, make_deps


def paced(**policy: Any) -> Deps:
    return make_deps(FakeProvider("fake", polls_to_finish=99),
                     policies={"fake": ProviderPolicy(**policy)})


def handed(deps: Deps) -> list[str]:
    assert isinstance(deps.scheduler, RecordingScheduler)
    return [a.job_id for a in deps.scheduler.take() if isinstance(a, Launch)]


def add_batch(deps: Deps, batch: str, n: int, **spec: Any) -> list[str]:
    store = deps.store
    assert isinstance(store, InMemoryStore)
    ids = []
    for i in range(n):
        job = new_job(JobSpec("fake/echo", {"batch": batch, "i": i}, **spec), deps,
                      deps.clock.now(), batch_id=batch)
        ids.append(store.add_job(job, deps.clock.now()).id)
        deps.clock.advance(0.01)  # type: ignore[attr-defined]
    return ids


def test_a_paced_providers_jobs_wait_for_the_dispatcher() -> None:
    deps = paced(max_in_flight=2)
    job = submit_job(JobSpec("fake/echo", {}), deps).job
    assert handed(deps) == []  # nothing sent at submit
    dispatch(deps)
    assert handed(deps) == [job.id]


def test_at_most_the_free_slots_are_handed_out() -> None:
    deps = paced(max_in_flight=3)
    ids = add_batch(deps, "bat_a", 10)
    dispatch(deps)
    first = handed(deps)
    assert first == ids[:3]
    dispatch(deps)  # handed out, not yet claimed: they hold their slots
    assert handed(deps) == []
    for job_id in first:
        assert launch_job(job_id, deps).result == "started"
    dispatch(deps)
    assert handed(deps) == []  # three running: no slot free
    assert deps.store.provider_load("fake") == (3, 0)


def test_the_claim_keeps_the_cap_even_for_launches_handed_out_elsewhere() -> None:
    deps = paced(max_in_flight=1)
    a, b = add_batch(deps, "bat_a", 2)
    assert launch_job(a, deps).result == "started"
    outcome = launch_job(b, deps)  # a sweep or a retry sent it: the cap still holds
    assert outcome.result == "waiting" and "in-flight slots" in outcome.reason
    job = deps.store.get_job(b)
    assert job is not None and job.status is JobStatus.QUEUED and job.dispatched_at is None


def test_batches_take_turns_so_a_small_one_is_not_stuck_behind_a_big_one() -> None:
    deps = paced(max_in_flight=6)
    big = add_batch(deps, "bat_big", 100)
    small = add_batch(deps, "bat_small", 3)
    dispatch(deps)
    assert handed(deps) == [big[0], small[0], big[1], small[1], big[2], small[2]]


def test_higher_priority_goes_first() -> None:
    deps = paced(max_in_flight=2)
    add_batch(deps, "bat_low", 5)
    urgent = add_batch(deps, "bat_urgent", 2, priority=5)
    dispatch(deps)
    assert handed(deps) == urgent


def test_a_trigger_limit_hands_out_about_a_second_of_turns() -> None:
    deps = paced(trigger_limit=RateLimit(60, 6.0))  # ten a second
    add_batch(deps, "bat_a", 100)
    dispatch(deps)
    assert len(handed(deps)) == 10
    dispatch(deps)
    assert handed(deps) == []  # those ten hold the turns until they are claimed


def test_the_sweep_leaves_jobs_waiting_for_the_dispatcher_alone() -> None:
    deps = paced(max_in_flight=1)
    ids = add_batch(deps, "bat_a", 5)
    deps.clock.advance(3600)  # type: ignore[attr-defined]
    sweep(deps)
    assert handed(deps) == []  # waiting for a slot is not lost
    dispatch(deps)
    [sent] = handed(deps)
    deps.clock.advance(3600)  # type: ignore[attr-defined]
    sweep(deps)  # its message was lost: the sweep sends it again
    assert handed(deps) == [sent] == ids[:1]


def test_a_batch_submitted_later_gets_turns_while_the_first_one_runs() -> None:
    deps = paced(max_in_flight=3)
    big = add_batch(deps, "bat_big", 50)
    dispatch(deps)
    for job_id in handed(deps):
        launch_job(job_id, deps)
    small = add_batch(deps, "bat_small", 2)
    store = deps.store
    assert isinstance(store, InMemoryStore)
    first = store.dispatch_candidates("fake", deps.clock.now(), 5)
    # The big batch has three running; the small one none: the small one goes first.
    assert [j.id for j in first][:3] == [small[0], small[1], big[3]]


def test_a_launch_waiting_for_its_turn_keeps_its_place() -> None:
    """A throttled launch is back in queued with its launch in the delay queue: it holds
    one of the turns handed out, so the dispatcher does not hand out more behind it."""
    provider = FakeProvider("fake", polls_to_finish=99)
    deps = make_deps(provider, policies={"fake": ProviderPolicy(
        trigger_limit=RateLimit(1, 1.0))})
    add_batch(deps, "bat_a", 5)
    dispatch(deps)
    [first] = handed(deps)
    provider.errors["start"] = [Throttled("at its limit", retry_after=0.5)]
    assert launch_job(first, deps).result == "throttled"
    assert handed(deps) == [first]  # its own launch again, at its turn
    assert deps.store.provider_load("fake") == (0, 1)
    dispatch(deps)
    assert handed(deps) == []  # its place is taken by the one waiting for its turn


def test_a_launch_waiting_out_a_long_backoff_does_not_hold_the_others_back() -> None:
    provider = FakeProvider("fake", polls_to_finish=99)
    deps = make_deps(provider, policies={"fake": ProviderPolicy(
        trigger_limit=RateLimit(1, 1.0))})
    first, second = add_batch(deps, "bat_a", 2)
    dispatch(deps)
    assert handed(deps) == [first]
    provider.errors["start"] = [RateLimited("runtime says wait", retry_after=120.0)]
    assert launch_job(first, deps).result == "deferred"
    handed(deps)
    dispatch(deps)
    assert handed(deps) == [second]  # the other job's turn is not lost to the wait


def test_a_retried_job_holds_no_place_from_its_earlier_attempt() -> None:
    deps = paced(max_in_flight=1)
    [job_id] = add_batch(deps, "bat_a", 1)
    dispatch(deps)
    handed(deps)
    cancel_job(job_id, deps)  # cancelled while handed out
    retry_job(job_id, deps)
    assert deps.store.provider_load("fake") == (0, 0)
