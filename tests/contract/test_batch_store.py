"""The batch part of the JobStore contract, against the in-memory fake and SqlStore on
migrated SQLite: one transaction for the batch and all its jobs, all or nothing."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.domain.ids import new_ids
from orchestrator.domain.job import Event, JobStatus
from orchestrator.domain.records import Batch, JobChange, NewJob
from orchestrator.ports import AlreadyExists, JobStore

T0 = 1_700_000_000.0


def batch(batch_id: str = "bat_1", total: int = 3, **kw: Any) -> Batch:
    return Batch(id=batch_id, total=total, created_at=T0, **kw)


def jobs_of(batch_id: str, n: int, **kw: Any) -> list[NewJob]:
    return [NewJob(id=job_id, workflow="p/echo", provider="p", inputs={"row": i},
                   batch_id=batch_id, labels={"b": batch_id}, **kw)
            for i, job_id in enumerate(new_ids("job", n, T0))]


def total_jobs(store: JobStore) -> int:
    return sum(store.count_by_status().values())


def test_a_batch_and_its_jobs_go_in_together(store: JobStore) -> None:
    made = batch(owner="tok_1", idempotency_key="k", request_hash="h" * 64,
                 labels={"run": "1"}, callback_url="https://x.example/")
    new = jobs_of("bat_1", 3, owner="tok_1")
    store.add_batch(made, new, T0)
    assert store.get_batch("bat_1") == made
    assert store.find_batch_by_idempotency_key("tok_1", "k") == made
    assert store.find_batch_by_idempotency_key("tok_2", "k") is None
    assert store.get_batch("bat_none") is None
    assert store.batch_job_ids("bat_1") == [j.id for j in new]
    job = store.get_job(new[1].id)
    assert job is not None and job.status is JobStatus.QUEUED and job.batch_id == "bat_1"
    assert job.inputs == {"row": 1} and job.labels == {"b": "bat_1"} and job.owner == "tok_1"
    assert job.created_at == T0 and job.next_action_at == T0 and job.attempt == 1
    assert [(e["event"], e["status"], e["attempt"]) for e in store.job_events(job.id)] == [
        ("submit", "queued", 1)]
    assert [j.id for j in store.list_jobs(batch_id="bat_1")] == [j.id for j in new][::-1]


def test_a_job_that_cannot_go_in_keeps_the_whole_batch_out(store: JobStore) -> None:
    store.add_job(NewJob("job_taken", "p/echo", "p", {}, owner="tok_1",
                         idempotency_key="taken"), T0)
    new = jobs_of("bat_1", 3, owner="tok_1")
    new.append(NewJob("job_z", "p/echo", "p", {}, batch_id="bat_1", owner="tok_1",
                      idempotency_key="taken"))
    with pytest.raises(AlreadyExists):
        store.add_batch(batch(total=4), new, T0)
    assert store.get_batch("bat_1") is None
    assert store.batch_job_ids("bat_1") == [] and total_jobs(store) == 1
    assert all(store.get_job(j.id) is None for j in new[:3])
    assert all(store.job_events(j.id) == [] for j in new[:3])


def test_a_taken_batch_key_keeps_the_second_batch_out(store: JobStore) -> None:
    store.add_batch(batch("bat_1", 2, owner="tok_1", idempotency_key="k"),
                    jobs_of("bat_1", 2), T0)
    with pytest.raises(AlreadyExists):
        store.add_batch(batch("bat_2", 2, owner="tok_1", idempotency_key="k"),
                        jobs_of("bat_2", 2), T0)
    assert store.get_batch("bat_2") is None and total_jobs(store) == 2
    # Another owner's key is its own; a batch without a key never collides.
    store.add_batch(batch("bat_3", 1, owner="tok_2", idempotency_key="k"),
                    jobs_of("bat_3", 1), T0)
    store.add_batch(batch("bat_4", 1), jobs_of("bat_4", 1), T0)
    store.add_batch(batch("bat_5", 1), jobs_of("bat_5", 1), T0)
    assert total_jobs(store) == 5


def test_progress_counts_by_state_and_the_last_end(store: JobStore) -> None:
    new = jobs_of("bat_1", 4)
    store.add_batch(batch(total=4), new, T0)
    store.add_batch(batch("bat_2", 1), jobs_of("bat_2", 1), T0)  # not counted in bat_1
    progress = store.batch_progress("bat_1")
    assert progress.counts == {"queued": 4} and progress.last_finished_at is None
    store.move(JobChange(new[0].id, Event.CLAIM), T0 + 1)
    store.move(JobChange(new[1].id, Event.CANCEL, values={"finished_at": T0 + 7}), T0 + 7)
    store.move(JobChange(new[2].id, Event.FAIL, values={"finished_at": T0 + 5}), T0 + 5)
    progress = store.batch_progress("bat_1")
    assert progress.counts == {"queued": 1, "starting": 1, "cancelled": 1, "failed": 1}
    assert progress.last_finished_at == T0 + 7
    assert store.batch_progress("bat_none").counts == {}


def test_ten_thousand_jobs_in_one_batch(store: JobStore) -> None:
    new = jobs_of("bat_1", 10_000)
    store.add_batch(batch(total=10_000), new, T0)
    assert store.batch_progress("bat_1").counts == {"queued": 10_000}
    assert store.batch_job_ids("bat_1") == [j.id for j in new]
