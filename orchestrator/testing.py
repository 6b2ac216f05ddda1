"""In-memory fakes of every port, for fast tests of the services.

``InMemoryStore`` keeps the same compare-and-set semantics as ``SqlStore``; the contract
suite in ``tests/contract/test_store.py`` runs one set of behaviour tests against both, so
the fake cannot drift from the real thing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from orchestrator.domain.errors import Permanent, ProviderError
from orchestrator.domain.ids import new_id
from orchestrator.domain.job import (
    ACTIVE,
    NEW_ATTEMPT,
    TERMINAL,
    JobStatus,
    LaunchRequest,
    RemoteState,
    RunStatus,
    transition,
)
from orchestrator.domain.ratelimit import (
    RateLimit,
    next_turn,
    promised_turn,
    window_margin_s,
)
from orchestrator.domain.records import (
    Action,
    Artifact,
    AttemptRecord,
    Batch,
    BatchProgress,
    CallbackEndpoint,
    Delivery,
    DeliveryAttempt,
    Job,
    JobChange,
    Launch,
    NewDelivery,
    NewJob,
    Poll,
    Subscription,
    Token,
)
from orchestrator.domain.schedule import NewSlot, Schedule, Slot
from orchestrator.ports import (
    AlreadyExists,
    LimiterState,
    Outgoing,
    Provider,
    RemoteRun,
    RunListing,
    SendResult,
)
from orchestrator.services.deps import Deps


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class InMemoryStore:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._events: list[dict[str, object]] = []
        self._deliveries: dict[str, Delivery] = {}
        self._attempts: list[DeliveryAttempt] = []
        self._tokens: dict[str, tuple[Token, str]] = {}
        self._batches: dict[str, Batch] = {}
        self._lock = threading.Lock()

    # jobs
    def add_job(self, new: NewJob, now: float) -> Job:
        with self._lock:
            if new.idempotency_key and any(
                j.owner == new.owner and j.idempotency_key == new.idempotency_key
                for j in self._jobs.values()
            ):
                raise AlreadyExists(f"idempotency key '{new.idempotency_key}' is taken")
            job = Job(**dataclasses.asdict(new), status=JobStatus.QUEUED, created_at=now,
                      updated_at=now, next_action_at=now)
            self._jobs[job.id] = job
            self._event(job.id, 1, "submit", "queued", now, None)
            return job

    def get_job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def find_by_idempotency_key(self, owner: str, key: str) -> Job | None:
        return next((j for j in self._jobs.values()
                     if j.owner == owner and j.idempotency_key == key), None)

    def move(self, change: JobChange, now: float) -> Job | None:
        step = transition(change.event)
        with self._lock:
            job = self._jobs.get(change.job_id)
            if job is None or job.status not in step.sources or not _holds(job, change.guard):
                return None
            if (change.in_flight_cap is not None
                    and self._load(job.provider)[0] >= change.in_flight_cap):
                return None
            values: dict[str, Any] = {**change.values, "status": step.target,
                                      "updated_at": now}
            if change.event in NEW_ATTEMPT:
                values["attempt"] = job.attempt + 1
            job = dataclasses.replace(job, **_with_artifacts(values))
            self._jobs[job.id] = job
            self._event(job.id, job.attempt, change.event.value, step.target.value, now,
                        change.detail)
            self._add_deliveries(change.deliveries, now)
            return job

    def update_job(
        self, job_id: str, guard: Mapping[str, object], values: Mapping[str, object]
    ) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or not _holds(job, guard):
                return False
            values = {k: (JobStatus(str(v)) if k == "status" else v) for k, v in values.items()}
            self._jobs[job_id] = dataclasses.replace(job, **_with_artifacts(values))
            return True

    def touch_jobs(self, job_ids: Iterable[str], now: float, *, before: float) -> None:
        for job_id in job_ids:
            job = self._jobs.get(job_id)
            if job is not None and job.next_action_at is not None and job.next_action_at < before:
                self.update_job(job_id, {}, {"next_action_at": now})

    def list_jobs(self, *, status: str | None = None, workflow: str | None = None,
                  batch_id: str | None = None, label: tuple[str, str] | None = None,
                  after: str | None = None, limit: int = 50) -> list[Job]:
        found = sorted(self._jobs.values(), key=lambda j: j.id, reverse=True)
        found = [j for j in found
                 if (status is None or j.status == status)
                 and (workflow is None or j.workflow == workflow)
                 and (batch_id is None or j.batch_id == batch_id)
                 and (label is None or j.labels.get(label[0]) == label[1])
                 and (after is None or j.id < after)]
        return found[:limit]

    def count_by_status(self, *, label: tuple[str, str] | None = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in self.list_jobs(label=label, limit=10**9):
            counts[job.status.value] = counts.get(job.status.value, 0) + 1
        return counts

    def overdue_jobs(self, now: float, limit: int, *,
                     dispatched_by: Sequence[str] = ()) -> list[Job]:
        due = [j for j in self._jobs.values()
               if j.status in ACTIVE and j.next_action_at is not None and j.next_action_at < now
               and not (j.status is JobStatus.QUEUED and j.provider in dispatched_by
                        and j.dispatched_at is None)]
        return sorted(due, key=lambda j: j.next_action_at or 0)[:limit]

    def dispatch_candidates(self, provider: str, now: float, limit: int) -> list[Job]:
        waiting = sorted((j for j in self._jobs.values()
                          if j.provider == provider and j.status is JobStatus.QUEUED
                          and j.dispatched_at is None
                          and (j.next_action_at is None or j.next_action_at <= now)),
                         key=lambda j: j.id)
        def group(job: Job) -> str:
            return job.batch_id or job.schedule_id or job.owner or "-"

        going: dict[str, int] = {}
        for job in self._jobs.values():
            if job.provider == provider and (
                    job.status in (JobStatus.STARTING, JobStatus.RUNNING)
                    or (job.status is JobStatus.QUEUED and job.dispatched_at is not None)):
                going[group(job)] = going.get(group(job), 0) + 1
        places: dict[tuple[str, int], int] = {}
        ranked = []
        for job in waiting:
            key = (group(job), job.priority)
            places[key] = places.get(key, 0) + 1
            turn = places[key] + going.get(group(job), 0)
            ranked.append((-job.priority, turn, job.id, job))
        return [job for *_, job in sorted(ranked, key=lambda r: r[:3])][:limit]

    def mark_dispatched(self, job_ids: Sequence[str], now: float) -> None:
        with self._lock:
            for job_id in job_ids:
                job = self._jobs.get(job_id)
                if job is not None and job.status is JobStatus.QUEUED:
                    self._jobs[job_id] = dataclasses.replace(job, dispatched_at=now)

    def provider_load(self, provider: str, *, due_by: float | None = None) -> tuple[int, int]:
        return self._load(provider, due_by)

    def _load(self, provider: str, due_by: float | None = None) -> tuple[int, int]:
        mine = [j for j in self._jobs.values() if j.provider == provider]
        flying = sum(j.status in (JobStatus.STARTING, JobStatus.RUNNING) for j in mine)
        handed = sum(j.status is JobStatus.QUEUED and j.dispatched_at is not None
                     and (due_by is None or j.next_action_at is None
                          or j.next_action_at <= due_by) for j in mine)
        return flying, handed

    def run_claimed(self, provider: str, run_id: str) -> bool:
        return any(j.provider == provider and j.run_id == run_id for j in self._jobs.values())

    def job_events(self, job_id: str) -> list[Mapping[str, object]]:
        return [e for e in self._events if e["job_id"] == job_id]

    def _event(self, job_id: str, attempt: int, event: str, status: str, at: float,
               detail: str | None) -> None:
        # Numbered like the SQL table's rows, so an events stream can resume after one.
        self._events.append({"id": len(self._events) + 1, "job_id": job_id,
                             "attempt": attempt, "event": event, "status": status, "at": at,
                             "detail": detail})

    # batches
    def add_batch(self, batch: Batch, jobs: Sequence[NewJob], now: float) -> None:
        with self._lock:
            taken = {(j.owner, j.idempotency_key) for j in self._jobs.values()
                     if j.idempotency_key}
            keys = [(new.owner, new.idempotency_key) for new in jobs if new.idempotency_key]
            batch_taken = batch.idempotency_key and any(
                (b.owner, b.idempotency_key) == (batch.owner, batch.idempotency_key)
                for b in self._batches.values())
            if batch_taken or len(set(keys)) < len(keys) or taken.intersection(keys):
                raise AlreadyExists(f"batch {batch.id}: its idempotency key, or one of its "
                                    "jobs' keys, is taken")
            self._batches[batch.id] = batch
            for new in jobs:
                self._jobs[new.id] = Job(**new.__dict__, status=JobStatus.QUEUED,
                                         created_at=now, updated_at=now, next_action_at=now)
                self._event(new.id, 1, "submit", "queued", now, None)

    def get_batch(self, batch_id: str) -> Batch | None:
        return self._batches.get(batch_id)

    def find_batch_by_idempotency_key(self, owner: str, key: str) -> Batch | None:
        return next((b for b in self._batches.values()
                     if b.owner == owner and b.idempotency_key == key), None)

    def batch_job_ids(self, batch_id: str) -> list[str]:
        return sorted(j.id for j in self._jobs.values() if j.batch_id == batch_id)

    def batch_progress(self, batch_id: str) -> BatchProgress:
        counts: dict[str, int] = {}
        ended: list[float] = []
        for job in self._jobs.values():
            if job.batch_id == batch_id:
                counts[job.status.value] = counts.get(job.status.value, 0) + 1
                if job.status in TERMINAL:
                    ended.append(job.finished_at if job.finished_at is not None
                                 else job.updated_at)
        return BatchProgress(counts, max(ended, default=None))

    def complete_batch(
        self, batch_id: str, now: float,
        outbox: Callable[[Batch, BatchProgress], Sequence[NewDelivery]],
    ) -> Sequence[NewDelivery] | None:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None or batch.completed_at is not None or not self._ended(batch_id):
                return None
            batch = dataclasses.replace(batch, completed_at=now)
            self._batches[batch_id] = batch
            sent = list(outbox(batch, self.batch_progress(batch_id)))
            self._add_deliveries(sent, now)
            return sent

    def ended_batches(self, limit: int) -> list[str]:
        return sorted(b.id for b in self._batches.values()
                      if b.completed_at is None and self._ended(b.id))[:limit]

    def _ended(self, batch_id: str) -> bool:
        return not any(j.batch_id == batch_id and j.status in ACTIVE
                       for j in self._jobs.values())

    # deliveries
    def list_deliveries(self, *, endpoint_id: str, status: str | None = None,
                        since: float | None = None, before: str | None = None,
                        limit: int = 100) -> list[Delivery]:
        found = [d for d in self._deliveries.values() if d.endpoint_id == endpoint_id
                 and (status is None or d.status == status)
                 and (since is None or d.created_at >= since)
                 and (before is None or d.id < before)]
        return sorted(found, key=lambda d: d.id, reverse=True)[:limit]

    def delivery_attempts(self, delivery_id: str) -> list[Mapping[str, object]]:
        return [{"delivery_id": a.delivery_id, "number": a.number, "at": a.at,
                 "status_code": a.status_code, "latency_ms": a.latency_s * 1000,
                 "error": a.error}
                for a in sorted(self._attempts, key=lambda a: a.number)
                if a.delivery_id == delivery_id]

    def replay_deliveries(self, delivery_ids: Sequence[str], now: float) -> list[str]:
        with self._lock:
            found = [i for i in delivery_ids
                     if i in self._deliveries and self._deliveries[i].status != "pending"]
            for delivery_id in found:
                self._deliveries[delivery_id] = dataclasses.replace(
                    self._deliveries[delivery_id], status="pending", next_attempt_at=now)
            return found

    def _add_deliveries(self, items: Iterable[NewDelivery], now: float) -> list[Delivery]:
        added = []
        for item in items:
            delivery = Delivery(**dataclasses.asdict(item), status="pending", attempts=0,
                                created_at=now)
            self._deliveries[delivery.id] = delivery
            added.append(delivery)
        return added

    def add_deliveries(self, items: Iterable[NewDelivery], now: float) -> list[Delivery]:
        with self._lock:
            return self._add_deliveries(items, now)

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        return self._deliveries.get(delivery_id)

    def deliveries_for_job(self, job_id: str) -> list[Delivery]:
        return [d for d in self._deliveries.values() if d.job_id == job_id]

    def record_delivery_attempt(self, attempt: DeliveryAttempt, *, status: str,
                                next_attempt_at: float | None) -> bool:
        record = AttemptRecord(attempt, status, next_attempt_at)  # type: ignore[arg-type]
        return self.record_delivery_attempts([record])[0]

    def _record_attempt(self, record: AttemptRecord) -> bool:
        attempt, status = record.attempt, record.status
        delivery = self._deliveries.get(attempt.delivery_id)
        if (delivery is None or delivery.status != "pending"
                or delivery.attempts != attempt.number - 1):
            return False
        self._deliveries[delivery.id] = dataclasses.replace(
            delivery, status=status, attempts=attempt.number, claimed_until=None,
            next_attempt_at=record.next_attempt_at, last_status_code=attempt.status_code,
            last_error=attempt.error,
            delivered_at=attempt.at if status == "succeeded" else delivery.delivered_at)
        self._attempts.append(attempt)
        return True

    def record_delivery_attempts(self, records: Sequence[AttemptRecord]) -> list[bool]:
        with self._lock:
            return [self._record_attempt(r) for r in records]

    def claim_deliveries(self, now: float, until: float, limit: int, *,
                         only: Sequence[str] | None = None) -> list[Delivery]:
        with self._lock:
            due = sorted((d for d in self._deliveries.values()
                          if d.status == "pending" and d.next_attempt_at is not None
                          and d.next_attempt_at <= now
                          and (d.claimed_until is None or d.claimed_until < now)
                          and (only is None or d.id in only)),
                         key=lambda d: (d.next_attempt_at or 0.0, d.id))[:limit]
            for delivery in due:
                self._deliveries[delivery.id] = dataclasses.replace(
                    delivery, claimed_until=until)
            return [self._deliveries[d.id] for d in due]

    def release_deliveries(self, delivery_ids: Sequence[str], until: float) -> None:
        with self._lock:
            for delivery_id in delivery_ids:
                delivery = self._deliveries.get(delivery_id)
                if (delivery is not None and delivery.status == "pending"
                        and delivery.claimed_until == until):
                    self._deliveries[delivery_id] = dataclasses.replace(
                        delivery, claimed_until=None)

    def overdue_deliveries(self, now: float, limit: int) -> list[Delivery]:
        due = [d for d in self._deliveries.values() if d.status == "pending"
               and d.next_attempt_at is not None and d.next_attempt_at < now
               and (d.claimed_until is None or d.claimed_until < now)]
        return sorted(due, key=lambda d: d.next_attempt_at or 0)[:limit]

    def touch_deliveries(self, delivery_ids: Iterable[str], now: float, *,
                         before: float) -> None:
        with self._lock:
            for delivery_id in delivery_ids:
                delivery = self._deliveries.get(delivery_id)
                due = delivery.next_attempt_at if delivery else None
                held = delivery is not None and delivery.claimed_until is not None \
                    and delivery.claimed_until >= before
                if delivery is not None and due is not None and due < before and not held:
                    self._deliveries[delivery_id] = dataclasses.replace(
                        delivery, next_attempt_at=now)

    # tokens
    def add_token(self, name: str, prefix: str, secret_hash: str, now: float) -> Token:
        with self._lock:
            if name in self._tokens:
                raise AlreadyExists(f"a token named '{name}' already exists")
            token = Token(id=new_id("tok", now), name=name, prefix=prefix, created_at=now)
            self._tokens[name] = (token, secret_hash)
            return token

    def token_by_hash(self, secret_hash: str) -> Token | None:
        return next((t for t, h in self._tokens.values() if h == secret_hash), None)

    def list_tokens(self) -> list[Token]:
        return sorted((t for t, _ in self._tokens.values()), key=lambda t: t.name)

    def revoke_token(self, name: str, now: float) -> bool:
        with self._lock:
            entry = self._tokens.get(name)
            if entry is None or entry[0].revoked_at is not None:
                return False
            self._tokens[name] = (dataclasses.replace(entry[0], revoked_at=now), entry[1])
            return True


def _with_artifacts(values: Mapping[str, Any]) -> dict[str, Any]:
    """``artifacts`` as the store reads them back: the JSON column's dicts as ``Artifact``s."""
    result = dict(values)
    if "artifacts" in result:
        result["artifacts"] = tuple(a if isinstance(a, Artifact) else Artifact(**a)
                                    for a in result["artifacts"] or ())
    return result


def _holds(job: Job, guard: Mapping[str, object]) -> bool:
    return all(getattr(job, name) == value for name, value in guard.items())


class InMemoryEndpointStore:
    """Callback endpoints in memory (the SQL one seals the secrets; here they stay in
    memory only). The same contract suite runs against both."""

    def __init__(self) -> None:
        self._endpoints: dict[str, CallbackEndpoint] = {}

    def add_endpoint(self, endpoint: CallbackEndpoint) -> CallbackEndpoint:
        self._endpoints[endpoint.id] = endpoint
        return endpoint

    def get_endpoint(self, endpoint_id: str) -> CallbackEndpoint | None:
        return self._endpoints.get(endpoint_id)

    def list_endpoints(self) -> list[CallbackEndpoint]:
        return sorted(self._endpoints.values(), key=lambda e: e.id)

    def subscriptions(self) -> list[Subscription]:
        return [e.subscription() for e in self.list_endpoints() if e.enabled]

    def update_endpoint(self, endpoint_id: str, values: Mapping[str, object], now: float,
                        *, guard: Mapping[str, object] | None = None
                        ) -> CallbackEndpoint | None:
        current = self._endpoints.get(endpoint_id)
        if current is None or not all(getattr(current, name) == value
                                      for name, value in (guard or {}).items()):
            return None
        changes = dict(values)
        for name in ("event_types", "workflows"):
            if name in changes:
                changes[name] = tuple(changes[name])  # type: ignore[arg-type]
        updated = dataclasses.replace(current, **changes, updated_at=now)  # type: ignore[arg-type]
        self._endpoints[endpoint_id] = updated
        return updated

    def delete_endpoint(self, endpoint_id: str) -> bool:
        return self._endpoints.pop(endpoint_id, None) is not None


class InMemoryScheduleStore:
    """Schedules and slots beside an ``InMemoryStore`` (whose jobs the slots make).

    The same contract suite as ``SqlScheduleStore`` runs against it."""

    def __init__(self, jobs: InMemoryStore) -> None:
        self._jobs = jobs
        self._schedules: dict[str, Schedule] = {}
        self._slots: list[Slot] = []

    def add_schedule(self, schedule: Schedule) -> Schedule:
        with self._jobs._lock:
            if schedule.name in self._schedules:
                raise AlreadyExists(f"a schedule named '{schedule.name}' exists")
            self._schedules[schedule.name] = schedule
            return schedule

    def get_schedule(self, name: str) -> Schedule | None:
        return self._schedules.get(name)

    def list_schedules(self) -> list[Schedule]:
        return sorted(self._schedules.values(), key=lambda s: s.name)

    def update_schedule(self, name: str, values: Mapping[str, object],
                        now: float) -> Schedule | None:
        with self._jobs._lock:
            current = self._schedules.get(name)
            if current is None:
                return None
            updated = dataclasses.replace(current, **values, updated_at=now)  # type: ignore[arg-type]
            self._schedules[name] = updated
            return updated

    def delete_schedule(self, name: str) -> bool:
        with self._jobs._lock:
            schedule = self._schedules.pop(name, None)
            if schedule is None:
                return False
            self._slots = [s for s in self._slots if s.schedule_id != schedule.id]
            return True

    def due_schedules(self, now: float) -> list[Schedule]:
        return [s for s in self._schedules.values() if not s.paused
                and s.next_fire_at is not None and s.next_fire_at <= now]

    def soonest_fire_at(self) -> float | None:
        return min((s.next_fire_at for s in self._schedules.values()
                    if not s.paused and s.next_fire_at is not None), default=None)

    def advance(self, schedule_id: str, *, read: float, cursor_at: float,
                next_fire_at: float) -> None:
        with self._jobs._lock:
            for name, s in self._schedules.items():
                if s.id == schedule_id and s.cursor_at == read:
                    self._schedules[name] = dataclasses.replace(
                        s, cursor_at=cursor_at, next_fire_at=next_fire_at)

    def record_slot(self, slot: NewSlot, job: NewJob | None, now: float) -> Job | None:
        with self._jobs._lock:
            if any((s.schedule_id, s.slot_at, s.trigger)
                   == (slot.schedule_id, slot.slot_at, slot.trigger) for s in self._slots):
                raise AlreadyExists(f"slot {slot.slot_at} of {slot.schedule_id} is recorded")
            self._slots.append(Slot(id=len(self._slots) + 1, recorded_at=now,
                                    job_id=job.id if job else None, **slot.__dict__))
        return None if job is None else self._jobs.add_job(job, now)

    def buffered_slots(self) -> list[tuple[Schedule, Slot]]:
        by_id = {s.id: s for s in self._schedules.values()}
        return [(by_id[s.schedule_id], s) for s in self._slots
                if s.status == "buffered" and s.schedule_id in by_id]

    def release_slot(self, slot_id: int, job: NewJob, now: float) -> Job | None:
        with self._jobs._lock:
            index = next((i for i, s in enumerate(self._slots)
                          if s.id == slot_id and s.status == "buffered"), None)
            if index is None:
                return None
            self._slots[index] = dataclasses.replace(
                self._slots[index], status="fired", job_id=job.id, recorded_at=now)
        return self._jobs.add_job(job, now)

    def recent_slots(self, schedule_id: str, limit: int) -> list[Slot]:
        slots = sorted((s for s in self._slots if s.schedule_id == schedule_id),
                       key=lambda s: (s.slot_at, s.id), reverse=True)[:limit]
        return [dataclasses.replace(s, job_status=self._status(s.job_id)) for s in slots]

    def _status(self, job_id: str | None) -> str | None:
        job = self._jobs.get_job(job_id) if job_id else None
        return None if job is None else job.status.value

    def active_jobs(self, schedule_id: str) -> list[Job]:
        return sorted((j for j in self._jobs._jobs.values()
                       if j.schedule_id == schedule_id and j.status in ACTIVE),
                      key=lambda j: j.id)


class RecordingScheduler:
    """Remembers every action; tests pop them and play them in order."""

    def __init__(self) -> None:
        self.actions: list[Action] = []

    def schedule(self, actions: Sequence[Action]) -> None:
        self.actions.extend(actions)

    def take(self) -> list[Action]:
        taken, self.actions = self.actions, []
        return taken


class FakeProvider:
    """A provider whose runs finish after ``polls_to_finish`` polls with a scripted result.
    ``errors`` queues exceptions to raise from the next calls, by operation name."""

    def __init__(self, name: str = "fake", *, idempotent_start: bool = True,
                 supports_cancel: bool = True, polls_to_finish: int = 1,
                 result: RunStatus | None = None) -> None:
        self.name = name
        self.idempotent_start = idempotent_start
        self.supports_cancel = supports_cancel
        self.polls_to_finish = polls_to_finish
        self.result = result or RunStatus(RemoteState.COMPLETED, outputs={"ok": True},
                                          raw_status="completed")
        self.errors: dict[str, list[ProviderError]] = {}
        self.runs: dict[str, LaunchRequest] = {}
        self.created: dict[str, float] = {}
        self.clock: FakeClock | None = None  # set to stamp runs for ``recent_runs``
        self.polls: dict[str, int] = {}
        self.starts = 0
        self.cancelled: list[str] = []

    def _maybe_raise(self, operation: str) -> None:
        queued = self.errors.get(operation)
        if queued:
            raise queued.pop(0)

    def reserve(self, workflow: str) -> str | None:
        self._maybe_raise("reserve")
        return new_id("res") if self.idempotent_start else None

    def start(self, launch: LaunchRequest) -> str:
        self.starts += 1
        self._maybe_raise("start")
        run_id = launch.reservation or new_id("run")
        self.runs.setdefault(run_id, launch)
        self.created[run_id] = self.clock.now() if self.clock else 0.0
        self._maybe_raise("start_after")  # the run exists, but its answer is lost
        return run_id

    def poll(self, workflow: str, run_id: str) -> RunStatus:
        self._maybe_raise("poll")
        self.polls[run_id] = self.polls.get(run_id, 0) + 1
        if self.polls[run_id] >= self.polls_to_finish:
            return self.result
        return RunStatus(RemoteState.RUNNING, raw_status="running")

    def cancel(self, workflow: str, run_id: str) -> bool:
        self._maybe_raise("cancel")
        self.cancelled.append(run_id)
        return self.supports_cancel

    def output_files(self, outputs: object) -> list[str]:
        """Cordage's way: the http(s) strings of a list of outputs (or of its ``files``)."""
        if isinstance(outputs, Mapping):
            outputs = outputs.get("files")
        if not isinstance(outputs, list):
            return []
        return [o for o in outputs if isinstance(o, str) and o.startswith(("http://", "https://"))]

    def close(self) -> None:
        pass


class ListingProvider(FakeProvider):
    """A fake that can list its runs (``RunFinder``), with or without their inputs."""

    def __init__(self, name: str = "fake", *, lists_inputs: bool = True, **kw: Any) -> None:
        super().__init__(name, idempotent_start=False, **kw)
        self.lists_inputs = lists_inputs

    def recent_runs(self, workflow: str) -> RunListing:
        self._maybe_raise("list")
        return RunListing([RemoteRun(run_id, self.created.get(run_id), "running",
                                     launch.inputs if self.lists_inputs else None)
                           for run_id, launch in reversed(self.runs.items())
                           if launch.workflow == workflow], complete=True)


class InMemoryArtifacts:
    """The ``ArtifactStore`` port in memory. ``files`` maps a URL to the bytes it serves (a
    URL not there is a 404: ``Permanent``); ``errors`` queues exceptions to raise for a URL
    before it is served. ``fetches`` lists every URL asked for, in order."""

    def __init__(self, files: Mapping[str, bytes] | None = None) -> None:
        self.files = dict(files or {})
        self.errors: dict[str, list[ProviderError]] = {}
        self.kept: dict[str, bytes] = {}
        self.fetches: list[str] = []

    def keep(self, job_id: str, n: int, url: str) -> Artifact:
        self.fetches.append(url)
        queued = self.errors.get(url)
        if queued:
            raise queued.pop(0)
        content = self.files.get(url)
        if content is None:
            raise Permanent(f"fetching {url} answered HTTP 404", code="artifact_not_kept")
        key = f"{job_id}/{n}"
        self.kept[key] = content
        return Artifact(url, key, hashlib.sha256(content).hexdigest(), len(content),
                        "application/octet-stream")

    def open(self, key: str) -> Iterator[bytes]:
        if key not in self.kept:
            raise FileNotFoundError(key)
        return iter([self.kept[key]])


class InMemoryEmbargoes:
    def __init__(self) -> None:
        self._until: dict[tuple[str, str], float] = {}

    def until(self, key: str, operation: str) -> float | None:
        return self._until.get((key, operation))

    def impose(self, key: str, operation: str, until: float) -> None:
        self._until[(key, operation)] = max(until, self._until.get((key, operation), 0.0))


class InMemoryRateLimiter:
    """The ``RateLimiter`` port over a clock; the contract suite runs it beside Redis's."""

    def __init__(self, clock: Any = None) -> None:
        self._clock = clock or FakeClock()
        self.granted: dict[tuple[str, str], list[float]] = {}
        self.promised: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, operation: str, limit: RateLimit) -> float:
        with self._lock:
            times = self.granted.setdefault((key, operation), [])
            now = self._clock.now()
            promises = [t for t in self.promised.get((key, operation), []) if t > now]
            if next_turn(times, now, limit) == 0.0:
                times.append(now)
                self.promised[(key, operation)] = promises
                return 0.0
            turn = promised_turn(times, promises, now, limit)
            self.promised[(key, operation)] = [*promises, turn]
            return turn - now

    def state(self, key: str, operation: str, limit: RateLimit) -> LimiterState:
        now = self._clock.now()
        window = limit.period_s + window_margin_s(limit)
        times = [t for t in self.granted.get((key, operation), []) if t > now - window]
        return LimiterState(used=len(times), remaining=max(0, limit.count - len(times)),
                            next_turn_s=next_turn(times, now, limit))


class StaticRegistry:
    def __init__(self, providers: Mapping[str, Provider]) -> None:
        self._providers = dict(providers)

    def get(self, name: str) -> Provider:
        return self._providers[name]

    def names(self) -> list[str]:
        return list(self._providers)


class FakeSender:
    """Answers each POST with the next scripted result (default 200) and records it."""

    def __init__(self, answers: Callable[[int], SendResult] | None = None) -> None:
        self.sent: list[tuple[str, dict[str, str], bytes]] = []
        self._answers = answers or (lambda n: SendResult(200, 0.001))

    def send(self, url: str, headers: Mapping[str, str], body: bytes) -> SendResult:
        self.sent.append((url, dict(headers), body))
        return self._answers(len(self.sent))

    def send_many(self, requests: Sequence[Outgoing], *,
                  within_s: float | None = None) -> list[SendResult]:
        return [self.send(r.url, r.headers, r.body) for r in requests]


def make_deps(*providers: FakeProvider, **overrides: Any) -> Deps:
    """Services wired to fakes: an in-memory store, a recording scheduler, a fake clock."""
    import random

    from orchestrator.domain.webhook import new_secret

    registry = StaticRegistry({p.name: p for p in providers or (FakeProvider(),)})
    store = overrides.pop("store", None) or InMemoryStore()
    values: dict[str, Any] = {
        "store": store, "schedules": InMemoryScheduleStore(store), "providers": registry,
        "endpoints": InMemoryEndpointStore(),
        "scheduler": RecordingScheduler(),
        "clock": FakeClock(), "sender": FakeSender(), "signing_secrets": (new_secret(),),
        "rng": random.Random(1), **overrides}
    return Deps(**values)


def drain(deps: Deps, *, max_steps: int = 10_000) -> list[str]:
    """Play every scheduled action in time order, moving the fake clock, until none is
    left. Returns what each step came to, for assertions."""
    from orchestrator.services.callbacks import deliver_callback
    from orchestrator.services.launch import launch_job
    from orchestrator.services.poll import poll_job

    scheduler, clock = deps.scheduler, deps.clock
    assert isinstance(scheduler, RecordingScheduler) and isinstance(clock, FakeClock)
    results: list[str] = []
    for _ in range(max_steps):
        if not scheduler.actions:
            return results
        scheduler.actions.sort(key=lambda a: a.at or 0)
        action = scheduler.actions.pop(0)
        if action.at is not None and action.at > clock.t:
            clock.t = action.at
        if isinstance(action, Launch):
            outcome = launch_job(action.job_id, deps, run_id=action.run_id)
            results.append("launch:" + outcome.result)
        elif isinstance(action, Poll):
            results.append("poll:" + poll_job(action.job_id, action.seq, deps).result)
        else:
            results.append("deliver:" + deliver_callback(action.delivery_id, deps).result)
    raise AssertionError(f"still busy after {max_steps} steps")


# Appended with the metrics port; kept here so the fakes stay in one module.
from orchestrator.metrics import Histogram, Series, histogram_of, series  # noqa: E402


class InMemoryMetrics:
    """The ``Metrics`` sink and ``MetricsReader`` in memory; ``tests/contract`` holds it to
    the same behaviour as ``RedisMetrics``."""

    def __init__(self, queue_depths: Mapping[str, int] | None = None) -> None:
        self._counters: dict[Series, float] = {}
        self._values: dict[Series, list[float]] = {}
        self._depths = dict(queue_depths or {})
        self._lock = threading.Lock()

    def count(self, name: str, labels: Mapping[str, str] | None = None,
              amount: int = 1) -> None:
        key = series(name, labels)
        with self._lock:
            self._counters[key] = self._counters.get(key, 0.0) + amount

    def observe(self, name: str, labels: Mapping[str, str] | None, seconds: float) -> None:
        self.observe_many(name, labels, [seconds])

    def observe_many(self, name: str, labels: Mapping[str, str] | None,
                     values: Sequence[float]) -> None:
        with self._lock:
            self._values.setdefault(series(name, labels), []).extend(values)

    def counters(self) -> dict[Series, float]:
        with self._lock:
            return dict(self._counters)

    def histograms(self) -> dict[Series, Histogram]:
        with self._lock:
            return {key: histogram_of(values) for key, values in self._values.items()}

    def queue_depths(self, queues: Sequence[str]) -> dict[str, int]:
        return {queue: self._depths.get(queue, 0) for queue in queues}

    def value(self, name: str, **labels: str) -> float:
        """One counter's value (0 if never counted), for assertions."""
        return self.counters().get(series(name, labels), 0.0)

    def close(self) -> None:
        """Nothing to release (``RedisMetrics`` closes its connections)."""
