"""``SqlStore``: the ``JobStore`` port on SQLAlchemy Core (SQLite or PostgreSQL).

Core statements rather than ORM sessions: per-job bookkeeping is what a busy orchestrator
runs out of first, and one ``UPDATE … WHERE id = ? AND status IN (…) RETURNING *`` is the
cheapest compare-and-set there is. Zero rows back means another process moved the job first.

Every state change (and every submit) is logged once, after its transaction committed, to
the ``orchestrator.jobs`` logger with the job id, workflow, provider, attempt, event and
status as fields of their own: this is the one place all of them pass through. A batch's
submit is the exception: one line on ``orchestrator.batches`` for all its jobs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, and_, func, insert, not_, or_, select, text, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from orchestrator.adapters.store.engine import IMMEDIATE
from orchestrator.adapters.store.tables import (
    api_tokens,
    batches,
    deliveries,
    delivery_attempts,
    job_events,
    jobs,
)
from orchestrator.domain.ids import new_id
from orchestrator.domain.job import ACTIVE, NEW_ATTEMPT, TERMINAL, JobStatus, transition
from orchestrator.domain.records import (
    Artifact,
    AttemptRecord,
    Batch,
    BatchProgress,
    Delivery,
    DeliveryAttempt,
    Job,
    JobChange,
    NewDelivery,
    NewJob,
    Token,
)
from orchestrator.ports import AlreadyExists

_JOB_FIELDS = set(Job.__dataclass_fields__)
changes = logging.getLogger("orchestrator.jobs")
batch_log = logging.getLogger("orchestrator.batches")


def job_from_row(row: Row[Any]) -> Job:
    data = {k: v for k, v in row._mapping.items() if k in _JOB_FIELDS}
    data["status"] = JobStatus(data["status"])
    data["labels"] = data.get("labels") or {}
    data["artifacts"] = tuple(Artifact(**a) for a in data.get("artifacts") or ())
    return Job(**data)


def _batch(row: Row[Any]) -> Batch:
    data = dict(row._mapping)
    data["labels"] = data.get("labels") or {}
    return Batch(**data)


def _delivery(row: Row[Any]) -> Delivery:
    return Delivery(**dict(row._mapping))


class Transactions:
    """Short transactions on one engine: writes take SQLite's write lock up front."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(**{IMMEDIATE: True}) as conn, conn.begin():
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn


def insert_job(conn: Connection, new: NewJob, now: float) -> Job:
    """Insert a queued job and its first history row, in the caller's transaction."""
    values = {**new.__dict__, "labels": dict(new.labels), "status": JobStatus.QUEUED.value,
              "created_at": now, "updated_at": now, "next_action_at": now}
    row = conn.execute(insert(jobs).values(**values).returning(*jobs.c)).one()
    conn.execute(insert(job_events).values(
        job_id=new.id, attempt=1, event="submit", status="queued", at=now))
    return job_from_row(row)


class SqlStore(Transactions):
    # jobs ---------------------------------------------------------------------------------

    def add_job(self, new: NewJob, now: float) -> Job:
        try:
            with self._write() as conn:
                job = insert_job(conn, new, now)
        except IntegrityError:
            raise AlreadyExists(f"idempotency key '{new.idempotency_key}' is taken") from None
        log_change(job, "submit")
        return job

    def get_job(self, job_id: str) -> Job | None:
        with self._read() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).one_or_none()
        return None if row is None else job_from_row(row)

    def find_by_idempotency_key(self, owner: str, key: str) -> Job | None:
        query = select(jobs).where(jobs.c.owner == owner, jobs.c.idempotency_key == key)
        with self._read() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else job_from_row(row)

    def move(self, change: JobChange, now: float) -> Job | None:
        step = transition(change.event)
        values: dict[str, Any] = {**change.values, "status": step.target.value,
                                  "updated_at": now}
        if change.event in NEW_ATTEMPT:
            values["attempt"] = jobs.c.attempt + 1
        conditions = [jobs.c.id == change.job_id,
                      jobs.c.status.in_([s.value for s in step.sources])]
        conditions += [_equals(name, value) for name, value in change.guard.items()]
        if change.in_flight_cap is not None:
            conditions.append(_in_flight(jobs.c.provider) < change.in_flight_cap)
        statement = update(jobs).where(*conditions).values(**values).returning(*jobs.c)
        with self._write() as conn:
            if change.in_flight_cap is not None:
                _lock_provider_claims(conn, change.job_id)
            row = conn.execute(statement).one_or_none()
            if row is None:
                return None
            conn.execute(insert(job_events).values(
                job_id=change.job_id, attempt=row.attempt, event=change.event.value,
                status=step.target.value, at=now, detail=change.detail))
            self._insert_deliveries(conn, change.deliveries, now)
        job = job_from_row(row)
        log_change(job, change.event.value)
        return job

    def update_job(
        self, job_id: str, guard: Mapping[str, object], values: Mapping[str, object]
    ) -> bool:
        conditions = [jobs.c.id == job_id] + [_equals(k, v) for k, v in guard.items()]
        with self._write() as conn:
            result = conn.execute(update(jobs).where(*conditions).values(**values))
        return result.rowcount == 1

    def touch_jobs(self, job_ids: Iterable[str], now: float, *, before: float) -> None:
        ids = list(job_ids)
        if ids:
            with self._write() as conn:
                conn.execute(update(jobs).where(jobs.c.id.in_(ids),
                                                jobs.c.next_action_at < before)
                             .values(next_action_at=now))

    def list_jobs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        batch_id: str | None = None,
        label: tuple[str, str] | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        # Ids are ULIDs: sorting by id is sorting by creation, so a cursor is just an id.
        query = select(jobs).order_by(jobs.c.id.desc()).limit(limit)
        for column, value in (("status", status), ("workflow", workflow),
                              ("batch_id", batch_id)):
            if value is not None:
                query = query.where(jobs.c[column] == value)
        if label is not None:
            query = query.where(jobs.c.labels[label[0]].as_string() == label[1])
        if after is not None:
            query = query.where(jobs.c.id < after)
        with self._read() as conn:
            return [job_from_row(row) for row in conn.execute(query)]

    def count_by_status(self, *, label: tuple[str, str] | None = None) -> dict[str, int]:
        query = select(jobs.c.status, func.count()).group_by(jobs.c.status)
        if label is not None:
            query = query.where(jobs.c.labels[label[0]].as_string() == label[1])
        with self._read() as conn:
            return {status: count for status, count in conn.execute(query)}

    def total_polls(self, *, label: tuple[str, str] | None = None) -> int:
        query = select(func.coalesce(func.sum(jobs.c.polls), 0))
        if label is not None:
            query = query.where(jobs.c.labels[label[0]].as_string() == label[1])
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    def overdue_jobs(self, now: float, limit: int, *,
                     dispatched_by: Sequence[str] = ()) -> list[Job]:
        query = (select(jobs)
                 .where(jobs.c.status.in_([s.value for s in ACTIVE]),
                        jobs.c.next_action_at < now)
                 .order_by(jobs.c.next_action_at).limit(limit))
        if dispatched_by:
            waiting = and_(jobs.c.status == JobStatus.QUEUED.value,
                           jobs.c.provider.in_(list(dispatched_by)),
                           jobs.c.dispatched_at.is_(None))
            query = query.where(not_(waiting))
        with self._read() as conn:
            return [job_from_row(row) for row in conn.execute(query)]

    def dispatch_candidates(self, provider: str, now: float, limit: int) -> list[Job]:
        # A job's turn in its group: its place among the group's waiting jobs, after the
        # group's jobs already handed out or in flight (so a big batch with many running
        # does not win every tie against a small one that has none).
        group = func.coalesce(jobs.c.batch_id, jobs.c.schedule_id, jobs.c.owner, "-")
        busy = or_(jobs.c.status.in_([JobStatus.STARTING.value, JobStatus.RUNNING.value]),
                   and_(jobs.c.status == JobStatus.QUEUED.value,
                        jobs.c.dispatched_at.is_not(None)))
        going = (select(group.label("grp"), func.count().label("n"))
                 .where(jobs.c.provider == provider, busy).group_by(group).subquery())
        place = func.row_number().over(partition_by=(group, jobs.c.priority),
                                       order_by=jobs.c.id)
        waiting = (select(jobs.c.id, jobs.c.priority, group.label("grp"), place.label("place"))
                   .where(jobs.c.provider == provider,
                          jobs.c.status == JobStatus.QUEUED.value,
                          jobs.c.dispatched_at.is_(None),
                          or_(jobs.c.next_action_at.is_(None), jobs.c.next_action_at <= now))
                   .subquery())
        turn = waiting.c.place + func.coalesce(going.c.n, 0)
        query = (select(jobs).join(waiting, waiting.c.id == jobs.c.id)
                 .outerjoin(going, going.c.grp == waiting.c.grp)
                 .order_by(waiting.c.priority.desc(), turn, waiting.c.id)
                 .limit(limit))
        with self._read() as conn:
            return [job_from_row(row) for row in conn.execute(query)]

    def mark_dispatched(self, job_ids: Sequence[str], now: float) -> None:
        if job_ids:
            with self._write() as conn:
                conn.execute(update(jobs).where(jobs.c.id.in_(list(job_ids)),
                                                jobs.c.status == JobStatus.QUEUED.value)
                             .values(dispatched_at=now))

    def provider_load(self, provider: str, *, due_by: float | None = None) -> tuple[int, int]:
        flying = [JobStatus.STARTING.value, JobStatus.RUNNING.value]
        in_flight = select(func.count()).where(jobs.c.provider == provider,
                                               jobs.c.status.in_(flying))
        handed_out = select(func.count()).where(jobs.c.provider == provider,
                                                jobs.c.status == JobStatus.QUEUED.value,
                                                jobs.c.dispatched_at.is_not(None))
        if due_by is not None:
            handed_out = handed_out.where(or_(jobs.c.next_action_at.is_(None),
                                              jobs.c.next_action_at <= due_by))
        with self._read() as conn:
            return (int(conn.execute(in_flight).scalar_one()),
                    int(conn.execute(handed_out).scalar_one()))

    def run_claimed(self, provider: str, run_id: str) -> bool:
        query = select(jobs.c.id).where(jobs.c.provider == provider, jobs.c.run_id == run_id)
        with self._read() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def job_events(self, job_id: str) -> list[Mapping[str, object]]:
        query = select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.id)
        with self._read() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    # batches ------------------------------------------------------------------------------

    def add_batch(self, batch: Batch, new_jobs: Sequence[NewJob], now: float) -> None:
        # Two executemany inserts (jobs, then their history rows) rather than a statement
        # per job: 10,000 jobs go in one short transaction.
        queued = JobStatus.QUEUED.value
        rows = [{**new.__dict__, "labels": dict(new.labels), "status": queued,
                 "created_at": now, "updated_at": now, "next_action_at": now}
                for new in new_jobs]
        history = [{"job_id": new.id, "attempt": 1, "event": "submit", "status": queued,
                    "at": now, "detail": None} for new in new_jobs]
        try:
            with self._write() as conn:
                conn.execute(insert(batches).values(**{**batch.__dict__,
                                                       "labels": dict(batch.labels)}))
                if rows:
                    conn.execute(insert(jobs), rows)
                    conn.execute(insert(job_events), history)
        except IntegrityError:
            raise AlreadyExists(f"batch {batch.id}: its idempotency key, or one of its jobs' "
                                "keys, is taken") from None
        # One line for the batch, not one per job: 10,000 log lines would take longer than
        # the inserts themselves.
        batch_log.info("batch %s submitted: %d jobs, %s … %s", batch.id, len(rows),
                       new_jobs[0].id if rows else "-", new_jobs[-1].id if rows else "-",
                       extra={"batch_id": batch.id, "event": "submit", "jobs": len(rows)})

    def get_batch(self, batch_id: str) -> Batch | None:
        with self._read() as conn:
            row = conn.execute(select(batches).where(batches.c.id == batch_id)).one_or_none()
        return None if row is None else _batch(row)

    def find_batch_by_idempotency_key(self, owner: str, key: str) -> Batch | None:
        query = select(batches).where(batches.c.owner == owner,
                                      batches.c.idempotency_key == key)
        with self._read() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else _batch(row)

    def batch_job_ids(self, batch_id: str) -> list[str]:
        query = select(jobs.c.id).where(jobs.c.batch_id == batch_id).order_by(jobs.c.id)
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    def batch_progress(self, batch_id: str) -> BatchProgress:
        with self._read() as conn:
            return _batch_progress(conn, batch_id)

    def complete_batch(
        self, batch_id: str, now: float,
        outbox: Callable[[Batch, BatchProgress], Sequence[NewDelivery]],
    ) -> Sequence[NewDelivery] | None:
        # A read first: every job of a batch but its last ends here, and a write
        # transaction each (SQLite's write lock) would be spent on nothing.
        with self._read() as conn:
            if not _batch_ended(conn, batch_id):
                return None
        with self._write() as conn:
            row = conn.execute(select(batches).where(
                batches.c.id == batch_id, batches.c.completed_at.is_(None))).one_or_none()
            if row is None or not _batch_ended(conn, batch_id):
                return None
            marked = conn.execute(update(batches).where(
                batches.c.id == batch_id, batches.c.completed_at.is_(None)
            ).values(completed_at=now)).rowcount
            if marked != 1:
                return None
            batch = dataclasses.replace(_batch(row), completed_at=now)
            sent = list(outbox(batch, _batch_progress(conn, batch_id)))
            self._insert_deliveries(conn, sent, now)
        batch_log.info("batch %s completed: %d callbacks", batch_id, len(sent))
        return sent

    def ended_batches(self, limit: int) -> list[str]:
        active = select(jobs.c.id).where(
            jobs.c.batch_id == batches.c.id,
            jobs.c.status.in_([s.value for s in ACTIVE])).exists()
        query = (select(batches.c.id).where(batches.c.completed_at.is_(None), not_(active))
                 .order_by(batches.c.id).limit(limit))
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    # deliveries ---------------------------------------------------------------------------

    def _insert_deliveries(
        self, conn: Connection, items: Iterable[NewDelivery], now: float
    ) -> None:
        rows = [{**item.__dict__, "status": "pending", "attempts": 0, "created_at": now}
                for item in items]
        if rows:
            conn.execute(insert(deliveries), rows)

    def add_deliveries(self, items: Iterable[NewDelivery], now: float) -> list[Delivery]:
        items = list(items)
        with self._write() as conn:
            self._insert_deliveries(conn, items, now)
        return [d for d in (self.get_delivery(item.id) for item in items) if d is not None]

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        with self._read() as conn:
            row = conn.execute(
                select(deliveries).where(deliveries.c.id == delivery_id)).one_or_none()
        return None if row is None else _delivery(row)

    def deliveries_for_job(self, job_id: str) -> list[Delivery]:
        query = select(deliveries).where(deliveries.c.job_id == job_id)
        with self._read() as conn:
            return [_delivery(row) for row in conn.execute(query)]

    def list_deliveries(self, *, endpoint_id: str, status: str | None = None,
                        since: float | None = None, before: str | None = None,
                        limit: int = 100) -> list[Delivery]:
        query = select(deliveries).where(deliveries.c.endpoint_id == endpoint_id)
        if status is not None:
            query = query.where(deliveries.c.status == status)
        if since is not None:
            query = query.where(deliveries.c.created_at >= since)
        if before is not None:
            query = query.where(deliveries.c.id < before)
        query = query.order_by(deliveries.c.id.desc()).limit(limit)
        with self._read() as conn:
            return [_delivery(row) for row in conn.execute(query)]

    def replay_deliveries(self, delivery_ids: Sequence[str], now: float) -> list[str]:
        ids = list(delivery_ids)
        if not ids:
            return []
        ended = and_(deliveries.c.id.in_(ids), deliveries.c.status != "pending")
        with self._write() as conn:
            found = list(conn.execute(select(deliveries.c.id).where(ended)).scalars())
            conn.execute(update(deliveries).where(deliveries.c.id.in_(found)).values(
                status="pending", next_attempt_at=now))
        return found

    def delivery_attempts(self, delivery_id: str) -> list[Mapping[str, object]]:
        query = (select(delivery_attempts)
                 .where(delivery_attempts.c.delivery_id == delivery_id)
                 .order_by(delivery_attempts.c.number))
        with self._read() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def count_deliveries(self, *, label: tuple[str, str] | None = None) -> dict[str, int]:
        with self._read() as conn:
            return self._delivery_counts(conn, label)

    def _delivery_counts(self, conn: Connection,
                         label: tuple[str, str] | None = None) -> dict[str, int]:
        query = select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
        if label is not None:
            query = query.join(jobs, jobs.c.id == deliveries.c.job_id).where(
                jobs.c.labels[label[0]].as_string() == label[1])
        return {str(status): int(count) for status, count in conn.execute(query)}

    def gauges(self) -> tuple[dict[tuple[str, str], int], dict[str, int], dict[str, int]]:
        """For ``/metrics``: jobs by (status, workflow), jobs in flight (starting or
        running) by provider, deliveries by status; one read transaction."""
        by_state = select(jobs.c.status, jobs.c.workflow, func.count()).group_by(
            jobs.c.status, jobs.c.workflow)
        in_flight = select(jobs.c.provider, func.count()).where(
            jobs.c.status.in_([JobStatus.STARTING.value, JobStatus.RUNNING.value])
        ).group_by(jobs.c.provider)
        with self._read() as conn:
            counts = {(str(s), str(w)): int(n) for s, w, n in conn.execute(by_state)}
            flying = {str(p): int(n) for p, n in conn.execute(in_flight)}
            return counts, flying, self._delivery_counts(conn)

    def record_delivery_attempt(
        self, attempt: DeliveryAttempt, *, status: str, next_attempt_at: float | None
    ) -> bool:
        record = AttemptRecord(attempt, status, next_attempt_at)  # type: ignore[arg-type]
        return self.record_delivery_attempts([record])[0]

    def record_delivery_attempts(self, records: Sequence[AttemptRecord]) -> list[bool]:
        # One transaction for a round's attempts: the commit, not the statements, is what
        # a delivery costs the database.
        recorded: dict[int, bool] = {}
        # In id order: PostgreSQL row locks taken in one order by every writer cannot
        # deadlock (the sweep's touch updates rows in id order too).
        order = sorted(range(len(records)), key=lambda i: records[i].attempt.delivery_id)
        with self._write() as conn:
            for index in order:
                record = records[index]
                attempt = record.attempt
                values: dict[str, Any] = {
                    "status": record.status, "attempts": attempt.number,
                    "next_attempt_at": record.next_attempt_at, "claimed_until": None,
                    "last_status_code": attempt.status_code, "last_error": attempt.error}
                if record.status == "succeeded":
                    values["delivered_at"] = attempt.at
                guarded = update(deliveries).where(
                    deliveries.c.id == attempt.delivery_id,
                    deliveries.c.attempts == attempt.number - 1,
                    deliveries.c.status == "pending").values(**values)
                recorded[index] = conn.execute(guarded).rowcount == 1
            rows = [{"delivery_id": r.attempt.delivery_id, "number": r.attempt.number,
                     "at": r.attempt.at, "status_code": r.attempt.status_code,
                     "latency_ms": r.attempt.latency_s * 1000, "error": r.attempt.error}
                    for i, r in enumerate(records) if recorded[i]]
            if rows:
                conn.execute(insert(delivery_attempts), rows)
        return [recorded[i] for i in range(len(records))]

    def release_deliveries(self, delivery_ids: Sequence[str], until: float) -> None:
        if delivery_ids:
            with self._write() as conn:
                conn.execute(update(deliveries).where(
                    deliveries.c.id.in_(list(delivery_ids)), deliveries.c.status == "pending",
                    deliveries.c.claimed_until == until).values(claimed_until=None))

    def claim_deliveries(self, now: float, until: float, limit: int, *,
                         only: Sequence[str] | None = None) -> list[Delivery]:
        due = (select(deliveries.c.id)
               .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now,
                      or_(deliveries.c.claimed_until.is_(None),
                          deliveries.c.claimed_until < now))
               .order_by(deliveries.c.next_attempt_at, deliveries.c.id).limit(limit)
               # PostgreSQL: concurrent claimers skip each other's rows instead of
               # waiting; SQLite takes its write lock up front and ignores this.
               .with_for_update(skip_locked=True))
        if only is not None:
            due = due.where(deliveries.c.id.in_(list(only)))
        with self._write() as conn:
            rows = conn.execute(update(deliveries).where(deliveries.c.id.in_(due.scalar_subquery()))
                                .values(claimed_until=until).returning(*deliveries.c)).all()
        return sorted((_delivery(row) for row in rows),
                      key=lambda d: (d.next_attempt_at or 0.0, d.id))

    def overdue_deliveries(self, now: float, limit: int) -> list[Delivery]:
        query = (select(deliveries)
                 .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at < now,
                        _unheld(now))
                 .order_by(deliveries.c.next_attempt_at).limit(limit))
        with self._read() as conn:
            return [_delivery(row) for row in conn.execute(query)]

    def touch_deliveries(self, delivery_ids: Iterable[str], now: float, *,
                         before: float) -> None:
        ids = list(delivery_ids)
        if ids:
            with self._write() as conn:
                conn.execute(update(deliveries).where(deliveries.c.id.in_(sorted(ids)),
                                                      deliveries.c.next_attempt_at < before,
                                                      _unheld(before))
                             .values(next_attempt_at=now))

    # tokens -------------------------------------------------------------------------------

    def add_token(self, name: str, prefix: str, secret_hash: str, now: float) -> Token:
        token = Token(id=new_id("tok"), name=name, prefix=prefix, created_at=now)
        try:
            with self._write() as conn:
                conn.execute(insert(api_tokens).values(
                    id=token.id, name=name, prefix=prefix, secret_hash=secret_hash,
                    created_at=now))
        except IntegrityError:
            raise AlreadyExists(f"a token named '{name}' already exists") from None
        return token

    def token_by_hash(self, secret_hash: str) -> Token | None:
        query = select(api_tokens).where(api_tokens.c.secret_hash == secret_hash)
        with self._read() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else _token(row)

    def list_tokens(self) -> list[Token]:
        with self._read() as conn:
            return [_token(row) for row in conn.execute(select(api_tokens).order_by("name"))]

    def revoke_token(self, name: str, now: float) -> bool:
        statement = update(api_tokens).where(
            api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None)).values(revoked_at=now)
        with self._write() as conn:
            return conn.execute(statement).rowcount == 1


def log_change(job: Job, event: str) -> None:
    changes.info("job %s %s: now %s (%s, attempt %d)", job.id, event, job.status.value,
                 job.workflow, job.attempt,
                 extra={"job_id": job.id, "workflow": job.workflow, "provider": job.provider,
                        "attempt": job.attempt, "event": event, "status": job.status.value})


def _token(row: Row[Any]) -> Token:
    m = row._mapping
    return Token(id=m["id"], name=m["name"], prefix=m["prefix"], created_at=m["created_at"],
                 revoked_at=m["revoked_at"])


def _lock_provider_claims(conn: Connection, job_id: str) -> None:
    """On PostgreSQL, claims on one provider take a transaction lock first: under READ
    COMMITTED two claims would each count the other's job as not yet in flight and both
    pass the cap. SQLite needs none: ``BEGIN IMMEDIATE`` already lets one writer in."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext("
                          "(SELECT provider FROM jobs WHERE id = :id)))"), {"id": job_id})


def _in_flight(provider: Any) -> Any:
    """How many of ``provider``'s jobs are starting or running, as a subquery of the
    statement it is in (so the count and the change are one step under the write lock)."""
    other = jobs.alias("other")
    return (select(func.count()).select_from(other)
            .where(other.c.provider == provider,
                   other.c.status.in_([JobStatus.STARTING.value, JobStatus.RUNNING.value]))
            .scalar_subquery())


def _equals(column: str, value: object) -> Any:
    return jobs.c[column].is_(None) if value is None else jobs.c[column] == value


def _batch_ended(conn: Connection, batch_id: str) -> bool:
    active = conn.execute(select(jobs.c.id).where(
        jobs.c.batch_id == batch_id,
        jobs.c.status.in_([s.value for s in ACTIVE])).limit(1)).first()
    return active is None


def _batch_progress(conn: Connection, batch_id: str) -> BatchProgress:
    ended = func.max(func.coalesce(jobs.c.finished_at, jobs.c.updated_at))
    query = (select(jobs.c.status, func.count(), ended)
             .where(jobs.c.batch_id == batch_id).group_by(jobs.c.status))
    found = [(str(status), int(count), last) for status, count, last in conn.execute(query)]
    terminal = {s.value for s in TERMINAL}
    last = max((float(t) for s, _, t in found if s in terminal and t is not None),
               default=None)
    return BatchProgress({status: count for status, count, _ in found}, last)


def _unheld(at: float) -> Any:
    """No sender holds it at ``at``: never claimed, or the claim ran out before."""
    return or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until < at)
