"""The ScheduleStore contract, run against the in-memory fake and SqlScheduleStore on
migrated SQLite, so the fake cannot drift from the real thing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.adapters.store.engine import make_engine
from orchestrator.adapters.store.repository import SqlStore
from orchestrator.adapters.store.schedules import SqlScheduleStore
from orchestrator.domain.job import Event
from orchestrator.domain.records import JobChange, NewJob
from orchestrator.domain.schedule import NewSlot, Schedule
from orchestrator.ports import AlreadyExists
from orchestrator.testing import InMemoryScheduleStore, InMemoryStore

T0 = 1_700_000_000.0


@dataclass
class Stores:
    jobs: Any
    schedules: Any


@pytest.fixture(params=["memory", "sqlite"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    if request.param == "memory":
        jobs = InMemoryStore()
        yield Stores(jobs, InMemoryScheduleStore(jobs))
        return
    from orchestrator.adapters.store.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path}/store.db")
    upgrade(engine)
    yield Stores(SqlStore(engine), SqlScheduleStore(engine))
    engine.dispose()


def a_schedule(name: str = "nightly", **kw: Any) -> Schedule:
    fields: dict[str, Any] = {
        "id": f"sch_{name}", "name": name, "cron": "0 2 * * *", "every": None,
        "timezone": "Europe/Berlin", "job": {"workflow": "p/echo", "inputs": {"a": [1, 2]}},
        "labels": {"team": "data"}, "created_at": T0, "updated_at": T0, "cursor_at": T0,
        "next_fire_at": T0 + 60, **kw}
    return Schedule(**fields)


def a_job(n: int, schedule_id: str = "sch_nightly") -> NewJob:
    return NewJob(id=f"job_{n:04d}", workflow="p/echo", provider="p", inputs={"n": n},
                  schedule_id=schedule_id)


def test_add_get_list_update_delete(stores: Stores) -> None:
    s = stores.schedules
    added = s.add_schedule(a_schedule())
    assert s.get_schedule("nightly") == added
    with pytest.raises(AlreadyExists):
        s.add_schedule(a_schedule(id="sch_other"))
    s.add_schedule(a_schedule("alpha", id="sch_alpha"))
    assert [x.name for x in s.list_schedules()] == ["alpha", "nightly"]
    updated = s.update_schedule("nightly", {"paused": True, "note": "why"}, T0 + 5)
    assert updated is not None and updated.paused and updated.note == "why"
    assert updated.updated_at == T0 + 5 and updated.job == added.job
    assert s.update_schedule("missing", {"paused": True}, T0) is None
    assert s.delete_schedule("nightly") and not s.delete_schedule("nightly")
    assert s.get_schedule("nightly") is None


def test_due_schedules_leave_out_paused_and_future_ones(stores: Stores) -> None:
    s = stores.schedules
    s.add_schedule(a_schedule("due", id="sch_due", next_fire_at=T0))
    s.add_schedule(a_schedule("later", id="sch_later", next_fire_at=T0 + 1))
    s.add_schedule(a_schedule("paused", id="sch_paused", next_fire_at=T0, paused=True))
    assert [x.name for x in s.due_schedules(T0)] == ["due"]
    assert s.soonest_fire_at() == T0


def test_advance_moves_only_the_cursor_it_planned_from(stores: Stores) -> None:
    s = stores.schedules
    s.add_schedule(a_schedule())
    s.advance("sch_nightly", read=T0, cursor_at=T0 + 10, next_fire_at=T0 + 20)
    s.advance("sch_nightly", read=T0, cursor_at=T0 + 5, next_fire_at=T0 + 7)  # a slower beat
    found = s.get_schedule("nightly")
    assert found is not None and (found.cursor_at, found.next_fire_at) == (T0 + 10, T0 + 20)
    # A change of rule restarts the cursor while a beat is mid-tick: the beat's advance,
    # planned from the old cursor, must not put the old rule's next slot back.
    s.update_schedule("nightly", {"cursor_at": T0 + 11, "next_fire_at": T0 + 12}, T0 + 11)
    s.advance("sch_nightly", read=T0 + 10, cursor_at=T0 + 15, next_fire_at=T0 + 86400)
    found = s.get_schedule("nightly")
    assert found is not None and (found.cursor_at, found.next_fire_at) == (T0 + 11, T0 + 12)


def test_a_slot_is_recorded_once_and_its_job_with_it(stores: Stores) -> None:
    s = stores.schedules
    s.add_schedule(a_schedule())
    job = s.record_slot(NewSlot("sch_nightly", T0, "fired"), a_job(1), T0)
    assert job is not None and job.schedule_id == "sch_nightly"
    with pytest.raises(AlreadyExists):
        s.record_slot(NewSlot("sch_nightly", T0, "skipped"), None, T0)
    with pytest.raises(AlreadyExists):
        s.record_slot(NewSlot("sch_nightly", T0, "fired"), a_job(2), T0)
    assert stores.jobs.get_job("job_0002") is None  # the loser's job was never made
    manual = s.record_slot(NewSlot("sch_nightly", T0, "fired", trigger="manual"), a_job(3), T0)
    assert manual is not None  # a manual slot at the same instant is another slot
    [latest, first] = s.recent_slots("sch_nightly", 10)
    assert (first.status, first.job_id, first.job_status) == ("fired", "job_0001", "queued")
    assert latest.trigger == "manual"


def test_recent_slots_are_newest_first_with_their_jobs_state(stores: Stores) -> None:
    s = stores.schedules
    s.add_schedule(a_schedule())
    s.record_slot(NewSlot("sch_nightly", T0, "fired"), a_job(1), T0)
    s.record_slot(NewSlot("sch_nightly", T0 + 1, "missed", reason="down"), None, T0 + 2)
    stores.jobs.move(JobChange("job_0001", Event.CANCEL), T0 + 3)
    slots = s.recent_slots("sch_nightly", 10)
    assert [x.slot_at for x in slots] == [T0 + 1, T0]
    assert (slots[0].status, slots[0].reason, slots[0].job_status) == ("missed", "down", None)
    assert slots[1].job_status == "cancelled"
    assert len(s.recent_slots("sch_nightly", 1)) == 1


def test_active_jobs_are_the_schedules_jobs_not_yet_ended(stores: Stores) -> None:
    s = stores.schedules
    s.add_schedule(a_schedule())
    s.record_slot(NewSlot("sch_nightly", T0, "fired"), a_job(1), T0)
    s.record_slot(NewSlot("sch_nightly", T0 + 1, "fired"), a_job(2), T0)
    stores.jobs.add_job(a_job(3, schedule_id="sch_other"), T0)
    stores.jobs.move(JobChange("job_0001", Event.CANCEL), T0 + 3)
    assert [j.id for j in s.active_jobs("sch_nightly")] == ["job_0002"]


def test_a_buffered_slot_is_released_once(stores: Stores) -> None:
    s = stores.schedules
    s.add_schedule(a_schedule())
    s.record_slot(NewSlot("sch_nightly", T0, "buffered"), None, T0)
    [(schedule, slot)] = s.buffered_slots()
    assert schedule.name == "nightly" and slot.status == "buffered"
    released = s.release_slot(slot.id, a_job(1), T0 + 5)
    assert released is not None and released.id == "job_0001"
    assert s.release_slot(slot.id, a_job(2), T0 + 6) is None
    assert stores.jobs.get_job("job_0002") is None
    assert s.buffered_slots() == []
    [fired] = s.recent_slots("sch_nightly", 10)
    assert (fired.status, fired.job_id) == ("fired", "job_0001")


def test_deleting_a_schedule_keeps_the_jobs_it_made(stores: Stores) -> None:
    s = stores.schedules
    s.add_schedule(a_schedule())
    s.record_slot(NewSlot("sch_nightly", T0, "fired"), a_job(1), T0)
    assert s.delete_schedule("nightly")
    assert s.recent_slots("sch_nightly", 10) == []
    assert stores.jobs.get_job("job_0001") is not None


def test_racing_writers_record_a_slot_once(stores: Stores) -> None:
    s = stores.schedules
    s.add_schedule(a_schedule())
    won: list[str] = []
    barrier = threading.Barrier(8)

    def fire(n: int) -> None:
        barrier.wait()
        try:
            s.record_slot(NewSlot("sch_nightly", T0, "fired"), a_job(n), T0)
            won.append(f"job_{n:04d}")
        except AlreadyExists:
            pass

    threads = [threading.Thread(target=fire, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert [j.id for j in s.active_jobs("sch_nightly")] == won
