"""``SqlScheduleStore``: the ``ScheduleStore`` port on SQLAlchemy Core.

The unique (schedule_id, slot_at, trigger) key of ``schedule_slots`` is what makes a slot
fire once however many beats run: the insert of the slot row and of its job share one
transaction, so a slot is either recorded with its job or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from orchestrator.adapters.store.repository import (
    Transactions,
    insert_job,
    job_from_row,
    log_change,
)
from orchestrator.adapters.store.tables import jobs, schedule_slots, schedules
from orchestrator.domain.job import ACTIVE
from orchestrator.domain.records import Job, NewJob
from orchestrator.domain.schedule import NewSlot, Schedule, Slot
from orchestrator.ports import AlreadyExists

_SLOT_FIELDS = set(Slot.__dataclass_fields__)
_SCHEDULE_FIELDS = set(Schedule.__dataclass_fields__)


def _schedule(row: Row[Any]) -> Schedule:
    data = {k: v for k, v in row._mapping.items() if k in _SCHEDULE_FIELDS}
    data["labels"] = data.get("labels") or {}
    data["paused"] = bool(data["paused"])
    return Schedule(**data)


def _slot(row: Row[Any]) -> Slot:
    return Slot(**{k: v for k, v in row._mapping.items() if k in _SLOT_FIELDS})


class SqlScheduleStore(Transactions):
    def add_schedule(self, schedule: Schedule) -> Schedule:
        values = {**schedule.__dict__, "job": dict(schedule.job),
                  "labels": dict(schedule.labels)}
        try:
            with self._write() as conn:
                conn.execute(insert(schedules).values(**values))
        except IntegrityError:
            raise AlreadyExists(f"a schedule named '{schedule.name}' exists") from None
        return schedule

    def get_schedule(self, name: str) -> Schedule | None:
        with self._read() as conn:
            row = conn.execute(select(schedules).where(schedules.c.name == name)).one_or_none()
        return None if row is None else _schedule(row)

    def list_schedules(self) -> list[Schedule]:
        with self._read() as conn:
            return [_schedule(r) for r in conn.execute(select(schedules).order_by("name"))]

    def update_schedule(self, name: str, values: Mapping[str, object],
                        now: float) -> Schedule | None:
        statement = (update(schedules).where(schedules.c.name == name)
                     .values(**values, updated_at=now).returning(*schedules.c))
        with self._write() as conn:
            row = conn.execute(statement).one_or_none()
        return None if row is None else _schedule(row)

    def delete_schedule(self, name: str) -> bool:
        with self._write() as conn:
            found = conn.execute(select(schedules.c.id).where(schedules.c.name == name)).first()
            if found is None:
                return False
            conn.execute(delete(schedule_slots).where(schedule_slots.c.schedule_id == found.id))
            conn.execute(delete(schedules).where(schedules.c.id == found.id))
        return True

    def due_schedules(self, now: float) -> list[Schedule]:
        query = select(schedules).where(schedules.c.paused.is_(False),
                                        schedules.c.next_fire_at <= now)
        with self._read() as conn:
            return [_schedule(row) for row in conn.execute(query)]

    def soonest_fire_at(self) -> float | None:
        query = select(func.min(schedules.c.next_fire_at)).where(schedules.c.paused.is_(False))
        with self._read() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else float(found)

    def advance(self, schedule_id: str, *, read: float, cursor_at: float,
                next_fire_at: float) -> None:
        with self._write() as conn:
            conn.execute(update(schedules).where(schedules.c.id == schedule_id,
                                                 schedules.c.cursor_at == read)
                         .values(cursor_at=cursor_at, next_fire_at=next_fire_at))

    def record_slot(self, slot: NewSlot, job: NewJob | None, now: float) -> Job | None:
        made = None
        try:
            with self._write() as conn:
                conn.execute(insert(schedule_slots).values(
                    **slot.__dict__, job_id=job.id if job else None, recorded_at=now))
                if job is not None:
                    made = insert_job(conn, job, now)
        except IntegrityError:
            raise AlreadyExists(f"slot {slot.slot_at} of {slot.schedule_id} is recorded") from None
        if made is not None:
            log_change(made, "submit")
        return made

    def buffered_slots(self) -> list[tuple[Schedule, Slot]]:
        with self._read() as conn:
            slots = [_slot(row) for row in conn.execute(
                select(schedule_slots).where(schedule_slots.c.status == "buffered"))]
            ids = {slot.schedule_id for slot in slots}
            found = conn.execute(select(schedules).where(schedules.c.id.in_(ids)))
            by_id = {row.id: _schedule(row) for row in found}
        return [(by_id[slot.schedule_id], slot) for slot in slots if slot.schedule_id in by_id]

    def release_slot(self, slot_id: int, job: NewJob, now: float) -> Job | None:
        with self._write() as conn:
            claimed = conn.execute(update(schedule_slots).where(
                schedule_slots.c.id == slot_id, schedule_slots.c.status == "buffered")
                .values(status="fired", job_id=job.id, recorded_at=now))
            if claimed.rowcount != 1:
                return None
            made = insert_job(conn, job, now)
        log_change(made, "submit")
        return made

    def recent_slots(self, schedule_id: str, limit: int) -> list[Slot]:
        query = (select(schedule_slots, jobs.c.status.label("job_status"))
                 .outerjoin(jobs, jobs.c.id == schedule_slots.c.job_id)
                 .where(schedule_slots.c.schedule_id == schedule_id)
                 .order_by(schedule_slots.c.slot_at.desc(), schedule_slots.c.id.desc())
                 .limit(limit))
        with self._read() as conn:
            return [_slot(row) for row in conn.execute(query)]

    def active_jobs(self, schedule_id: str) -> list[Job]:
        query = select(jobs).where(jobs.c.schedule_id == schedule_id,
                                   jobs.c.status.in_([s.value for s in ACTIVE]))
        with self._read() as conn:
            return [job_from_row(row) for row in conn.execute(query.order_by(jobs.c.id))]

