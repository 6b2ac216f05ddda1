"""Callback endpoints and the delivery log, on the in-memory fake and on SQLite: batch
completion once, deliveries listed and replayed, endpoint secrets sealed at rest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from orchestrator.adapters.crypto import SecretBox
from orchestrator.adapters.store.endpoints import SqlEndpointStore
from orchestrator.adapters.store.engine import make_engine
from orchestrator.adapters.store.migrate import upgrade
from orchestrator.adapters.store.tables import callback_endpoints
from orchestrator.domain.ids import new_id, new_ids
from orchestrator.domain.job import Event
from orchestrator.domain.records import (
    Batch,
    BatchProgress,
    CallbackEndpoint,
    DeliveryAttempt,
    JobChange,
    NewDelivery,
    NewJob,
)
from orchestrator.domain.webhook import new_secret
from orchestrator.ports import EndpointStore, JobStore
from orchestrator.testing import InMemoryEndpointStore

T0 = 1_700_000_000.0
KEY = new_secret()


@pytest.fixture(params=["memory", "sqlite"])
def endpoints(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemoryEndpointStore()
        return
    engine = make_engine(f"sqlite:///{tmp_path}/endpoints.db")
    upgrade(engine)
    yield SqlEndpointStore(engine, SecretBox([KEY]))
    engine.dispose()


def an_endpoint(**kw: Any) -> CallbackEndpoint:
    values: dict[str, Any] = {
        "id": new_id("ep", T0), "url": "https://hooks.example.com/", "secret": new_secret(),
        "event_types": ("job.completed",), "created_at": T0, "updated_at": T0, **kw}
    return CallbackEndpoint(**values)


def test_endpoints_round_trip_and_change(endpoints: EndpointStore) -> None:
    made = endpoints.add_endpoint(an_endpoint(workflows=("p/echo",), labels={"t": "x"},
                                              description="ours"))
    assert endpoints.get_endpoint(made.id) == made
    assert endpoints.list_endpoints() == [made]
    changed = endpoints.update_endpoint(made.id, {
        "event_types": ["job.failed"], "enabled": False, "disabled_reason": "why",
        "previous_secret": made.secret, "secret": new_secret(), "previous_until": T0 + 9},
        T0 + 1)
    assert changed is not None and changed.event_types == ("job.failed",)
    assert changed.previous_secret == made.secret and not changed.enabled
    assert changed.updated_at == T0 + 1 and endpoints.get_endpoint(made.id) == changed
    assert endpoints.update_endpoint("ep_none", {"enabled": True}, T0) is None
    assert endpoints.delete_endpoint(made.id) and not endpoints.delete_endpoint(made.id)
    assert endpoints.get_endpoint(made.id) is None


def test_sql_keeps_endpoint_secrets_sealed(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/sealed.db")
    upgrade(engine)
    store = SqlEndpointStore(engine, SecretBox([KEY]))
    made = store.add_endpoint(an_endpoint())
    store.update_endpoint(made.id, {"previous_secret": made.secret, "secret": new_secret()},
                          T0)
    with engine.connect() as conn:
        row = conn.execute(select(callback_endpoints)).one()._mapping
    assert made.secret not in str(dict(row)) and made.secret.removeprefix("whsec_") not in str(
        dict(row))
    # Under another key the endpoint is still there, its secrets unreadable (never a
    # crash: it can be listed and rotated, and its deliveries say why they fail).
    other = SqlEndpointStore(engine, SecretBox([new_secret()]))
    unreadable = other.get_endpoint(made.id)
    assert unreadable is not None and unreadable.secret is None
    assert unreadable.signing_secrets(T0) == ()
    assert [s.id for s in other.subscriptions()] == [made.id]
    # Old values stay readable while the new key is tried first.
    assert SqlEndpointStore(engine, SecretBox([new_secret(), KEY])).get_endpoint(made.id)
    engine.dispose()


def batch_of(store: JobStore, n: int) -> list[str]:
    ids = new_ids("job", n, T0)
    store.add_batch(Batch(id="bat_1", total=n, created_at=T0, labels={"r": "1"}),
                    [NewJob(id=i, workflow="p/echo", provider="p", inputs={}, batch_id="bat_1")
                     for i in ids], T0)
    return ids


def delivery(delivery_id: str, endpoint_id: str | None = "ep_1") -> NewDelivery:
    return NewDelivery(id=delivery_id, job_id=None, event_type="batch.completed",
                       url="https://hooks.example.com/", endpoint_id=endpoint_id,
                       payload=b"{}", next_attempt_at=T0)


def test_a_batch_is_completed_once_when_its_last_job_ends(store: JobStore) -> None:
    ids = batch_of(store, 2)
    seen: list[BatchProgress] = []

    def outbox(batch: Batch, progress: BatchProgress) -> list[NewDelivery]:
        seen.append(progress)
        assert batch.completed_at == T0 + 2
        return [delivery(new_id("msg", T0))]

    store.move(JobChange(ids[0], Event.CANCEL, values={"finished_at": T0 + 1}), T0 + 1)
    assert store.complete_batch("bat_1", T0 + 1, outbox) is None
    assert store.ended_batches(10) == []
    store.move(JobChange(ids[1], Event.CANCEL, values={"finished_at": T0 + 2}), T0 + 2)
    assert store.ended_batches(10) == ["bat_1"]
    sent = store.complete_batch("bat_1", T0 + 2, outbox)
    assert sent is not None and len(sent) == 1
    assert store.get_delivery(sent[0].id) is not None
    assert seen[0].counts == {"cancelled": 2}
    assert store.complete_batch("bat_1", T0 + 3, outbox) is None  # once
    assert store.ended_batches(10) == [] and len(seen) == 1
    batch = store.get_batch("bat_1")
    assert batch is not None and batch.completed_at == T0 + 2
    assert store.complete_batch("bat_none", T0, outbox) is None


def test_deliveries_listed_newest_first_by_page_and_replayed(store: JobStore) -> None:
    ids = new_ids("msg", 5, T0)
    store.add_deliveries([delivery(i) for i in ids] + [delivery("msg_zz", "ep_2")], T0)
    for i in ids[:3]:
        store.record_delivery_attempt(DeliveryAttempt(i, 1, T0 + 1, 500, 0.01, "HTTP 500"),
                                      status="failed", next_attempt_at=None)
    page = store.list_deliveries(endpoint_id="ep_1", limit=2)
    assert [d.id for d in page] == ids[::-1][:2]
    rest = store.list_deliveries(endpoint_id="ep_1", before=page[-1].id, limit=10)
    assert [d.id for d in rest] == ids[::-1][2:]
    failed = store.list_deliveries(endpoint_id="ep_1", status="failed", since=T0)
    assert sorted(d.id for d in failed) == sorted(ids[:3])
    assert store.list_deliveries(endpoint_id="ep_1", since=T0 + 1) == []
    assert store.replay_deliveries([ids[0], "msg_none"], T0 + 5) == [ids[0]]
    again = store.get_delivery(ids[0])
    assert again is not None and again.status == "pending" and again.next_attempt_at == T0 + 5
    assert again.attempts == 1  # the log is kept: the next attempt is number 2
    assert [a["number"] for a in store.delivery_attempts(ids[0])] == [1]


def test_batches_that_ended_before_the_upgrade_are_complete_already(tmp_path: Path) -> None:
    """Else the first sweeps after the upgrade would send each a batch.completed."""
    from alembic import command
    from sqlalchemy import text

    from orchestrator.adapters.store.migrate import alembic_config

    engine = make_engine(f"sqlite:///{tmp_path}/old.db")
    config = alembic_config(str(engine.url))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0005")
    with engine.begin() as conn:
        for batch_id, statuses in (("bat_done", ("completed", "failed")),
                                   ("bat_going", ("completed", "running"))):
            conn.execute(text("INSERT INTO batches (id, total, created_at) VALUES "
                              "(:id, 2, 1.0)"), {"id": batch_id})
            for n, status in enumerate(statuses):
                conn.execute(text(
                    "INSERT INTO jobs (id, workflow, provider, status, path, attempt, polls, "
                    "launch_tries, priority, retries, created_at, updated_at, finished_at, "
                    "batch_id) VALUES (:id, 'p/echo', 'p', :status, '', 1, 0, 0, 0, 0, 1.0, "
                    ":t, :t, :batch)"),
                    {"id": f"{batch_id}-{n}", "status": status, "t": 10.0 + n,
                     "batch": batch_id})
    upgrade(engine)
    with engine.connect() as conn:
        done = dict(conn.execute(text("SELECT id, completed_at FROM batches")).all())
    assert done == {"bat_done": 11.0, "bat_going": None}
    engine.dispose()


def test_deliveries_are_claimed_once_when_due_and_released_when_recorded(
        store: JobStore) -> None:
    from orchestrator.domain.records import AttemptRecord

    ids = new_ids("msg", 4, T0)
    later = NewDelivery(id=ids[3], job_id=None, event_type="job.completed",
                        url="https://hooks.example.com/", endpoint_id="ep_1", payload=b"{}",
                        next_attempt_at=T0 + 60)
    store.add_deliveries([delivery(i) for i in ids[:3]] + [later], T0)
    first = store.claim_deliveries(T0 + 1, T0 + 31, 2)
    assert [d.id for d in first] == ids[:2] and all(d.claimed_until == T0 + 31 for d in first)
    # Held: another sender gets only what is left and due; nothing before it is due.
    assert [d.id for d in store.claim_deliveries(T0 + 2, T0 + 32, 10)] == [ids[2]]
    assert store.claim_deliveries(T0 + 3, T0 + 33, 10) == []
    assert store.claim_deliveries(T0 + 3, T0 + 33, 10, only=[ids[3]]) == []
    # Recorded in one go: released, and guarded as one attempt each.
    records = [AttemptRecord(DeliveryAttempt(ids[0], 1, T0 + 4, 200, 0.01, None),
                             "succeeded", None),
               AttemptRecord(DeliveryAttempt(ids[1], 1, T0 + 4, 503, 0.01, "HTTP 503"),
                             "pending", T0 + 9),
               AttemptRecord(DeliveryAttempt(ids[1], 1, T0 + 4, 503, 0.01, "again"),
                             "pending", T0 + 9)]
    assert store.record_delivery_attempts(records) == [True, True, False]
    retried = store.get_delivery(ids[1])
    assert retried is not None and retried.claimed_until is None and retried.attempts == 1
    assert [a["error"] for a in store.delivery_attempts(ids[1])] == ["HTTP 503"]
    # A dead sender's claim runs out: claimed again, with the retry now due (soonest first).
    assert [d.id for d in store.claim_deliveries(T0 + 40, T0 + 70, 10)] == [ids[2], ids[1]]
    assert [d.id for d in store.claim_deliveries(T0 + 60, T0 + 90, 10, only=[ids[3]])] == [
        ids[3]]


def test_the_sweep_leaves_held_deliveries_alone_and_a_release_frees_them(
        store: JobStore) -> None:
    store.add_deliveries([delivery("msg_a"), delivery("msg_b")], T0)
    [held] = store.claim_deliveries(T0 + 1, T0 + 61, 1)
    overdue = [d.id for d in store.overdue_deliveries(T0 + 30, 10)]
    assert held.id not in overdue and len(overdue) == 1
    store.touch_deliveries([held.id], T0 + 30, before=T0 + 30)
    touched = store.get_delivery(held.id)
    assert touched is not None and touched.next_attempt_at == T0  # not moved while held
    store.release_deliveries([held.id], T0 + 99)  # not our claim: nothing happens
    assert store.claim_deliveries(T0 + 2, T0 + 62, 5, only=[held.id]) == []
    store.release_deliveries([held.id], T0 + 61)
    assert [d.id for d in store.claim_deliveries(T0 + 2, T0 + 62, 5, only=[held.id])] == [
        held.id]
    # A dead sender's claim, run out a grace ago, is the sweep's again.
    assert held.id in [d.id for d in store.overdue_deliveries(T0 + 100, 10)]
