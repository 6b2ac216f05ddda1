"""The JobStore contract, run against the in-memory fake and SqlStore on migrated SQLite
(and PostgreSQL once the durability work adds it), so the fake cannot drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect
from sqlmodel import SQLModel

from orchestrator.adapters.store.engine import make_engine
from orchestrator.adapters.store.migrate import current_revision, head_revision, upgrade
from orchestrator.domain.job import Event, JobStatus
from orchestrator.domain.records import DeliveryAttempt, JobChange, NewDelivery, NewJob
from orchestrator.ports import AlreadyExists, JobStore

T0 = 1_700_000_000.0


def new_job(n: int = 1, **kw: Any) -> NewJob:
    fields: dict[str, Any] = {"id": f"job_{n:04d}", "workflow": "p/echo", "provider": "p",
                              "inputs": {"n": n}, "labels": {"team": "a"}, **kw}
    return NewJob(**fields)


def test_add_and_get(store: JobStore) -> None:
    job = store.add_job(new_job(callback_url="https://x/y", priority=3), T0)
    assert job.status is JobStatus.QUEUED and job.attempt == 1 and job.polls == 0
    again = store.get_job(job.id)
    assert again == job
    assert again is not None and again.inputs == {"n": 1} and again.labels == {"team": "a"}
    assert store.get_job("job_none") is None


def test_idempotency_keys_are_unique_per_owner(store: JobStore) -> None:
    store.add_job(new_job(1, owner="t1", idempotency_key="k"), T0)
    with pytest.raises(AlreadyExists):
        store.add_job(new_job(2, owner="t1", idempotency_key="k"), T0)
    store.add_job(new_job(3, owner="t2", idempotency_key="k"), T0)
    found = store.find_by_idempotency_key("t1", "k")
    assert found is not None and found.id == "job_0001"


def test_move_is_a_compare_and_set(store: JobStore) -> None:
    store.add_job(new_job(), T0)
    claimed = store.move(JobChange("job_0001", Event.CLAIM, values={"lease_until": T0 + 60}),
                         T0 + 1)
    assert claimed is not None and claimed.status is JobStatus.STARTING
    assert claimed.lease_until == T0 + 60 and claimed.updated_at == T0 + 1
    # The same move again: the job is no longer queued, zero rows, nothing done.
    assert store.move(JobChange("job_0001", Event.CLAIM), T0 + 2) is None
    # A guard that no longer holds stops a move the table allows.
    assert store.move(JobChange("job_0001", Event.STARTED, guard={"attempt": 7}), T0) is None
    started = store.move(JobChange("job_0001", Event.STARTED, values={"run_id": "r1"}), T0 + 3)
    assert started is not None and started.run_id == "r1"
    events = [(e["event"], e["status"]) for e in store.job_events("job_0001")]
    assert events == [("submit", "queued"), ("claim", "starting"), ("started", "running")]


def test_a_new_attempt_counts_up(store: JobStore) -> None:
    store.add_job(new_job(), T0)
    store.move(JobChange("job_0001", Event.FAIL), T0)
    retried = store.move(JobChange("job_0001", Event.RETRY), T0)
    assert retried is not None and retried.attempt == 2 and retried.status is JobStatus.QUEUED


def test_terminal_moves_write_their_outbox_in_the_same_change(store: JobStore) -> None:
    store.add_job(new_job(), T0)
    store.move(JobChange("job_0001", Event.CLAIM), T0)
    store.move(JobChange("job_0001", Event.STARTED), T0)
    delivery = NewDelivery(id="msg_1", job_id="job_0001", event_type="job.completed",
                           url="https://x/y", endpoint_id=None, payload=b'{"a":1}',
                           next_attempt_at=T0)
    done = store.move(JobChange("job_0001", Event.COMPLETE, values={"outputs": [1, 2]},
                                deliveries=(delivery,)), T0)
    assert done is not None and done.outputs == [1, 2]
    stored = store.get_delivery("msg_1")
    assert stored is not None and stored.payload == b'{"a":1}' and stored.status == "pending"
    # A losing move writes no outbox.
    late = NewDelivery(**{**delivery.__dict__, "id": "msg_2"})
    assert store.move(JobChange("job_0001", Event.FAIL, deliveries=(late,)), T0) is None
    assert store.get_delivery("msg_2") is None


def test_update_job_is_guarded(store: JobStore) -> None:
    store.add_job(new_job(), T0)
    assert store.update_job("job_0001", {"polls": 0}, {"polls": 1})
    assert not store.update_job("job_0001", {"polls": 0}, {"polls": 2})
    assert store.update_job("job_0001", {"reservation": None}, {"reservation": "res_1"})
    job = store.get_job("job_0001")
    assert job is not None and job.polls == 1 and job.reservation == "res_1"


def test_delivery_attempts_are_recorded_once(store: JobStore) -> None:
    store.add_deliveries([NewDelivery("msg_1", None, "job.completed", "https://x", None,
                                      b"{}", T0)], T0)
    attempt = DeliveryAttempt("msg_1", 1, T0, 503, 0.01, "busy")
    assert store.record_delivery_attempt(attempt, status="pending", next_attempt_at=T0 + 5)
    assert not store.record_delivery_attempt(attempt, status="pending", next_attempt_at=T0 + 5)
    ok = DeliveryAttempt("msg_1", 2, T0 + 5, 200, 0.01, None)
    assert store.record_delivery_attempt(ok, status="succeeded", next_attempt_at=None)
    delivery = store.get_delivery("msg_1")
    assert delivery is not None and delivery.status == "succeeded" and delivery.attempts == 2
    assert delivery.delivered_at == T0 + 5


def test_overdue_and_touch(store: JobStore) -> None:
    for n in range(3):
        store.add_job(new_job(n), T0 + n)
    store.move(JobChange("job_0002", Event.CANCEL), T0)
    overdue = store.overdue_jobs(T0 + 10, limit=10)
    assert [j.id for j in overdue] == ["job_0000", "job_0001"]  # not the cancelled one
    store.touch_jobs(["job_0000"], T0 + 20, before=T0 + 10)
    assert [j.id for j in store.overdue_jobs(T0 + 10, limit=10)] == ["job_0001"]
    # A due time pushed later meanwhile (a retry_after) is not pulled back.
    store.update_job("job_0001", {}, {"next_action_at": T0 + 600})
    store.touch_jobs(["job_0001"], T0 + 20, before=T0 + 10)
    job = store.get_job("job_0001")
    assert job is not None and job.next_action_at == T0 + 600


def test_list_filters_and_pages_newest_first(store: JobStore) -> None:
    for n in range(5):
        store.add_job(new_job(n, labels={"team": "a" if n % 2 else "b"}), T0)
    page = store.list_jobs(limit=2)
    assert [j.id for j in page] == ["job_0004", "job_0003"]
    rest = store.list_jobs(after=page[-1].id, limit=10)
    assert [j.id for j in rest] == ["job_0002", "job_0001", "job_0000"]
    assert [j.id for j in store.list_jobs(label=("team", "a"))] == ["job_0003", "job_0001"]
    assert store.count_by_status() == {"queued": 5}


def test_tokens(store: JobStore) -> None:
    token = store.add_token("ci", "orch_abc", "hash1", T0)
    with pytest.raises(AlreadyExists):
        store.add_token("ci", "orch_abd", "hash2", T0)
    assert store.token_by_hash("hash1") == token
    assert store.revoke_token("ci", T0 + 1)
    assert not store.revoke_token("ci", T0 + 2)
    revoked = store.token_by_hash("hash1")
    assert revoked is not None and revoked.revoked_at == T0 + 1


def test_the_migration_builds_the_schema_the_tables_describe(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/m.db")
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    inspector = inspect(engine)
    for table in SQLModel.metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


# dispatching -------------------------------------------------------------------------------

def test_dispatch_order_is_priority_then_groups_taking_turns(store: Any) -> None:
    for n, batch in enumerate(["bat_big"] * 4 + ["bat_small"] * 2, start=1):
        store.add_job(new_job(n, batch_id=batch), T0)
    store.add_job(new_job(7, priority=3), T0)  # a single job, more urgent
    store.add_job(new_job(8, provider="other", workflow="other/echo"), T0)
    order = [j.id for j in store.dispatch_candidates("p", T0, 10)]
    assert order == ["job_0007", "job_0001", "job_0005", "job_0002", "job_0006", "job_0003",
                     "job_0004"]
    assert [j.id for j in store.dispatch_candidates("p", T0, 2)] == ["job_0007", "job_0001"]
    store.mark_dispatched(["job_0007", "job_0001"], T0 + 1)
    assert store.provider_load("p") == (0, 2)
    assert "job_0007" not in [j.id for j in store.dispatch_candidates("p", T0, 10)]


def test_a_claim_with_an_in_flight_cap_waits_for_a_free_slot(store: Any) -> None:
    for n in (1, 2):
        store.add_job(new_job(n), T0)
    assert store.move(JobChange("job_0001", Event.CLAIM, in_flight_cap=1), T0) is not None
    assert store.move(JobChange("job_0002", Event.CLAIM, in_flight_cap=1), T0) is None
    assert store.provider_load("p") == (1, 0)
    store.move(JobChange("job_0001", Event.CANCEL), T0)
    assert store.move(JobChange("job_0002", Event.CLAIM, in_flight_cap=1), T0) is not None


def test_jobs_waiting_for_the_dispatcher_are_not_overdue(store: Any) -> None:
    store.add_job(new_job(1), T0)
    store.add_job(new_job(2), T0)
    store.mark_dispatched(["job_0002"], T0)
    overdue = store.overdue_jobs(T0 + 100, 10, dispatched_by=["p"])
    assert [j.id for j in overdue] == ["job_0002"]
    assert len(store.overdue_jobs(T0 + 100, 10)) == 2


def test_a_group_with_jobs_going_waits_behind_one_with_none(store: Any) -> None:
    for n in range(1, 5):
        store.add_job(new_job(n, batch_id="bat_big"), T0)
    for n in (1, 2):
        store.move(JobChange(f"job_{n:04d}", Event.CLAIM), T0)
    store.add_job(new_job(5, batch_id="bat_small"), T0)
    order = [j.id for j in store.dispatch_candidates("p", T0, 10)]
    assert order == ["job_0005", "job_0003", "job_0004"]
