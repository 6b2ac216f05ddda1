"""Batches over the in-memory fakes: merging, checking every job, all or nothing,
idempotency, launches, and the batch resource."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.domain.ids import new_ids
from orchestrator.domain.job import Event, JobStatus
from orchestrator.domain.records import JobChange, Launch
from orchestrator.domain.resource import batch_resource
from orchestrator.domain.webhook import rfc3339
from orchestrator.services.batches import MAX_BATCH_JOBS, BatchSpec, submit_batch
from orchestrator.services.deps import Deps, Limits
from orchestrator.services.submit import JobSpec, SubmitRejected, submit_job
from orchestrator.testing import (
    FakeProvider,
    InMemoryStore,
    RecordingScheduler,
    drain,
    make_deps,
)

ECHO = {"workflow": "fake/echo"}


def store_of(deps: Deps) -> InMemoryStore:
    assert isinstance(deps.store, InMemoryStore)
    return deps.store


def sched(deps: Deps) -> RecordingScheduler:
    assert isinstance(deps.scheduler, RecordingScheduler)
    return deps.scheduler


def rows(n: int, **fields: Any) -> list[dict[str, Any]]:
    return [{**ECHO, "inputs": {"row": i}, **fields} for i in range(n)]


def rejected(spec: BatchSpec, deps: Deps, owner: str | None = "tok_1") -> SubmitRejected:
    before = store_of(deps).count_by_status()
    with pytest.raises(SubmitRejected) as caught:
        submit_batch(spec, deps, owner=owner)
    # Nothing written, nothing launched.
    assert store_of(deps).count_by_status() == before
    assert sched(deps).actions == []
    return caught.value


def test_a_batch_queues_every_job_in_input_order_and_launches_them_in_one_call() -> None:
    deps = make_deps()
    done = submit_batch(BatchSpec(rows(5)), deps, owner="tok_1")
    assert done.created and len(done.job_ids) == 5 and done.batch.total == 5
    assert done.job_ids == sorted(done.job_ids)  # ids sort in input order
    jobs = [deps.store.get_job(job_id) for job_id in done.job_ids]
    assert [j.inputs for j in jobs if j] == [{"row": i} for i in range(5)]
    assert all(j is not None and j.batch_id == done.batch.id and j.owner == "tok_1"
               and j.status is JobStatus.QUEUED for j in jobs)
    assert sched(deps).actions == [Launch(job_id) for job_id in done.job_ids]
    assert deps.store.get_batch(done.batch.id) == done.batch
    assert deps.store.list_jobs(batch_id=done.batch.id, limit=10)[0].id == done.job_ids[-1]


def test_defaults_labels_and_callback_url_apply_under_each_jobs_own() -> None:
    deps = make_deps()
    spec = BatchSpec(
        jobs=[{"inputs": {"a": 1}},
              {"inputs": {"a": 2}, "priority": 5, "labels": {"team": "b", "own": "x"},
               "callback_url": "https://own.example/hook"},
              {"workflow": "fake/other"}],
        defaults={"workflow": "fake/echo", "priority": 1, "labels": {"team": "a"},
                  "inputs": {"default": True}},
        labels={"run": "r1", "team": "batch"}, callback_url="https://batch.example/hook")
    done = submit_batch(spec, deps, owner="tok_1")
    first, second, third = (deps.store.get_job(i) for i in done.job_ids)
    assert first is not None and second is not None and third is not None
    assert (first.workflow, first.inputs, first.priority) == ("fake/echo", {"a": 1}, 1)
    assert first.labels == {"run": "r1", "team": "a"}
    assert first.callback_url == "https://batch.example/hook"
    assert second.priority == 5 and second.labels == {"run": "r1", "team": "b", "own": "x"}
    assert second.callback_url == "https://own.example/hook"
    assert third.workflow == "fake/other" and third.inputs == {"default": True}
    assert done.batch.labels == {"run": "r1", "team": "batch"}
    assert done.batch.callback_url == "https://batch.example/hook"


def test_every_bad_job_is_named_by_its_index_and_nothing_is_written() -> None:
    deps = make_deps()
    jobs: list[Any] = rows(6)
    jobs[1] = {"workflow": "nope/echo"}
    jobs[3] = {"workflow": "fake/echo", "priority": 11}
    jobs[4] = "not an object"
    jobs[5] = {"workflow": "fake/echo", "colour": "red"}
    error = rejected(BatchSpec(jobs), deps)
    assert error.status == 422 and error.code == "invalid_jobs"
    message = error.message
    assert message.startswith("4 of 6 jobs cannot be accepted, so none was submitted")
    assert "jobs[1]: workflow 'nope/echo' names provider 'nope'" in message
    assert "configured providers: fake" in message
    assert "jobs[3]: priority must be an integer from -10 to 10" in message
    assert "jobs[4]: must be an object" in message
    assert "jobs[5]: unknown field(s) colour" in message
    assert "jobs[0]" not in message and "jobs[2]" not in message
    assert sched(deps).actions == []


def test_the_same_problem_of_many_jobs_is_said_once() -> None:
    deps = make_deps()
    error = rejected(BatchSpec([{"workflow": "nope/echo"}] * 50), deps)
    assert error.code == "unknown_provider"
    assert "50 of 50 jobs" in error.message
    assert "jobs[0], jobs[1], jobs[2] and 47 more: workflow 'nope/echo'" in error.message


def test_problems_are_named_up_to_twenty() -> None:
    deps = make_deps(limits=Limits(max_input_bytes=10))
    jobs = [{"workflow": "fake/echo", "inputs": "x" * (20 + i)} for i in range(30)]
    error = rejected(BatchSpec(jobs), deps)  # each "inputs are N bytes" is its own
    assert error.message.count("jobs[") == 20
    assert "and 10 other problems" in error.message


def test_inputs_too_large_in_every_bad_job_is_a_413() -> None:
    deps = make_deps(limits=Limits(max_input_bytes=100))
    jobs = rows(3)
    jobs[2]["inputs"] = {"x": "y" * 200}
    error = rejected(BatchSpec(jobs), deps)
    assert (error.status, error.code) == (413, "inputs_too_large")
    assert "jobs[2]: inputs are" in error.message


def test_a_batch_must_hold_1_to_10000_jobs() -> None:
    deps = make_deps()
    empty = rejected(BatchSpec([]), deps)
    assert (empty.status, empty.code) == (422, "empty_batch")
    huge = rejected(BatchSpec([ECHO] * (MAX_BATCH_JOBS + 1)), deps)
    assert (huge.status, huge.code) == (413, "batch_too_large")
    assert "10,001 jobs; at most 10,000" in huge.message
    assert len(submit_batch(BatchSpec([ECHO] * MAX_BATCH_JOBS), deps).job_ids) == MAX_BATCH_JOBS


@pytest.mark.parametrize(("spec", "says"), [
    (BatchSpec([ECHO], defaults={"idempotency_key": "k"}),
     "defaults: unknown field(s) idempotency_key"),
    (BatchSpec([{}], defaults={"workflow": "nope/echo"}),
     "defaults: workflow 'nope/echo' names provider 'nope'"),
    (BatchSpec([ECHO], defaults={"retries": 11}), "defaults: retries must be"),
    (BatchSpec([ECHO], labels={"a": 1}), "labels must be an object of strings"),  # type: ignore[dict-item]
    (BatchSpec([ECHO], callback_url="ftp://x"), "must be an http:// or https:// URL"),
    (BatchSpec([{"inputs": {}}]), "workflow is missing: give it in the job or in defaults"),
    (BatchSpec([{**ECHO, "labels": {f"k{i}": "v" for i in range(30)}}],
               labels={f"b{i}": "v" for i in range(30)}), "come to 60; a job takes at most 50"),
    (BatchSpec([{**ECHO, "timeout_s": float("nan")}]), "timeout_s must be"),
    (BatchSpec([{**ECHO, "path": 5}]), "path must be a string"),
    (BatchSpec([ECHO], idempotency_key="a\x00b"), "idempotency_key holds a NUL"),
    (BatchSpec([ECHO], idempotency_key="\ud800"), "idempotency_key is not valid Unicode"),
    (BatchSpec([{**ECHO, "idempotency_key": "\ud800"}]), "not valid Unicode"),
])
def test_a_problem_of_the_whole_batch_is_said_once(spec: BatchSpec, says: str) -> None:
    error = rejected(spec, make_deps())
    assert error.status == 422 and says in error.message, error.message


def test_a_batch_callback_url_needs_a_signing_secret() -> None:
    error = rejected(BatchSpec([ECHO], callback_url="https://x.example/"),
                     make_deps(signing_secrets=()))
    assert "signing secret" in error.message


def test_same_key_same_jobs_returns_the_first_batch_in_order() -> None:
    deps = make_deps()
    first = submit_batch(BatchSpec(rows(4), idempotency_key="k"), deps, owner="tok_1")
    sched(deps).take()
    again = submit_batch(BatchSpec(rows(4), idempotency_key="k"), deps, owner="tok_1")
    assert not again.created and again.batch == first.batch
    assert again.job_ids == first.job_ids and again.jobs == []
    assert sched(deps).actions == []  # nothing launched twice
    assert sum(store_of(deps).count_by_status().values()) == 4


def test_the_same_jobs_written_with_defaults_are_the_same_request() -> None:
    deps = make_deps()
    inline = [{"workflow": "fake/echo", "inputs": {"i": i}, "priority": 2} for i in range(3)]
    first = submit_batch(BatchSpec(inline, idempotency_key="k"), deps, owner="tok_1")
    spelled = BatchSpec([{"inputs": {"i": i}} for i in range(3)],
                        defaults={"workflow": "fake/echo", "priority": 2}, idempotency_key="k")
    assert submit_batch(spelled, deps, owner="tok_1").job_ids == first.job_ids


def test_same_key_other_jobs_is_a_conflict_and_keys_are_per_owner() -> None:
    deps = make_deps()
    first = submit_batch(BatchSpec(rows(2), idempotency_key="k"), deps, owner="tok_1")
    sched(deps).take()
    error = rejected(BatchSpec(rows(3), idempotency_key="k"), deps)
    assert (error.status, error.code) == (409, "idempotency_conflict")
    assert first.batch.id in error.message and "use a new key" in error.message
    relabelled = BatchSpec(rows(2), idempotency_key="k", labels={"x": "y"})
    assert rejected(relabelled, deps).status == 409
    other = submit_batch(BatchSpec(rows(2), idempotency_key="k"), deps, owner="tok_2")
    assert other.created and other.batch.id != first.batch.id


def test_jobs_own_keys_must_be_new_and_distinct() -> None:
    deps = make_deps()
    earlier = submit_job(JobSpec("fake/echo", idempotency_key="taken"), deps, owner="tok_1")
    sched(deps).take()
    repeated = rejected(BatchSpec([{**ECHO, "idempotency_key": "a"},
                                   {**ECHO, "idempotency_key": "a"}]), deps)
    assert "jobs[1]: idempotency_key 'a' is also that of jobs[0]" in repeated.message
    taken = rejected(BatchSpec([{**ECHO, "idempotency_key": "fresh"},
                                {**ECHO, "idempotency_key": "taken"}]), deps)
    assert (taken.status, taken.code) == (409, "idempotency_conflict")
    assert f"jobs[1]: idempotency_key 'taken' is job {earlier.job.id}'s" in taken.message
    assert sum(store_of(deps).count_by_status().values()) == 1  # only the earlier job
    assert deps.store.find_by_idempotency_key("tok_1", "fresh") is None
    assert sched(deps).actions == []


def test_without_hand_out_the_caller_launches() -> None:
    deps = make_deps()
    done = submit_batch(BatchSpec(rows(2)), deps, owner="tok_1", hand_out=False)
    assert sched(deps).actions == [] and [j.id for j in done.jobs] == done.job_ids


def test_an_unreachable_broker_still_accepts_the_batch() -> None:
    class Down:
        def schedule(self, actions: object) -> None:
            raise ConnectionError("broker down")

    deps = make_deps(scheduler=Down())
    done = submit_batch(BatchSpec(rows(3)), deps, owner="tok_1")
    assert store_of(deps).count_by_status() == {"queued": 3} and done.created


def test_the_batch_resource_counts_by_state_until_all_have_ended() -> None:
    deps = make_deps(FakeProvider(polls_to_finish=2))
    done = submit_batch(BatchSpec(rows(3)), deps, owner="tok_1", hand_out=False)
    batch = deps.store.get_batch(done.batch.id)
    assert batch is not None
    resource = batch_resource(batch, deps.store.batch_progress(batch.id))
    assert resource["counts"] == {"queued": 3, "starting": 0, "running": 0, "completed": 0,
                                  "failed": 0, "cancelled": 0, "timed_out": 0}
    assert resource["done"] is False and resource["finished_at"] is None
    assert resource["total"] == 3 and resource["created_at"].endswith("Z")
    deps.store.move(JobChange(done.job_ids[2], Event.CANCEL,
                              values={"finished_at": 1_700_000_005.0}), 1_700_000_005.0)
    sched(deps).schedule([Launch(job_id) for job_id in done.job_ids[:2]])
    drain(deps)
    resource = batch_resource(batch, deps.store.batch_progress(batch.id))
    assert resource["counts"]["completed"] == 2 and resource["counts"]["cancelled"] == 1
    assert resource["done"] is True
    ended = [job.finished_at for job in map(deps.store.get_job, done.job_ids) if job]
    assert resource["finished_at"] == rfc3339(max(t for t in ended if t is not None))
    assert max(t for t in ended if t is not None) > 1_700_000_005.0


def test_ids_of_one_instant_sort_in_the_order_they_were_made() -> None:
    ids = new_ids("job", 5000, 1_700_000_000.0)
    assert ids == sorted(ids) and len(set(ids)) == 5000
    assert all(i.startswith("job_") and len(i) == len(ids[0]) for i in ids)


def test_a_racing_submission_with_the_same_key_returns_the_winners_batch() -> None:
    deps = make_deps()
    winner = submit_batch(BatchSpec(rows(2), idempotency_key="k"), deps, owner="tok_1")
    store = store_of(deps)
    found = store.find_batch_by_idempotency_key
    calls = []

    def late(owner: str, key: str) -> Any:  # the first look misses the winner's batch
        calls.append(key)
        return None if len(calls) == 1 else found(owner, key)

    store.find_batch_by_idempotency_key = late  # type: ignore[method-assign]
    loser = submit_batch(BatchSpec(rows(2), idempotency_key="k"), deps, owner="tok_1")
    assert not loser.created and loser.job_ids == winner.job_ids and len(calls) == 2
    assert sum(store.count_by_status().values()) == 2
