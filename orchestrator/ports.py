"""The ports: what the services need from the outside world, as Protocols.

Services (``orchestrator/services``) talk only to these; adapters implement them with real
I/O, and ``orchestrator.testing`` ships in-memory fakes of each. Times are epoch seconds
(floats) given by a ``Clock``, so every decision can be tested without a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from orchestrator.domain.job import LaunchRequest, RunStatus
from orchestrator.domain.ratelimit import RateLimit
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
    NewDelivery,
    NewJob,
    Subscription,
    Token,
)
from orchestrator.domain.schedule import NewSlot, Schedule, Slot


class AlreadyExists(Exception):
    """A row with the same unique key (an idempotency key, a token name) is there already."""


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


@runtime_checkable
class Provider(Protocol):
    """One configured remote runtime.

    Errors are raised as ``orchestrator.domain.errors.ProviderError`` subclasses, so the
    services see ``RateLimited``, ``Transient`` or ``Permanent`` and never an HTTP detail.
    """

    name: str
    # True when ``start`` with the same reservation can be sent again without a second run.
    idempotent_start: bool
    # True when ``cancel`` can stop a run on this runtime.
    supports_cancel: bool

    def reserve(self, workflow: str) -> str | None:
        """Reserve a run id before starting, where the runtime offers it (CodeWords'
        provision-request); ``None`` where it does not."""
        ...

    def start(self, launch: LaunchRequest) -> str:
        """Start a run and return its remote id."""
        ...

    def poll(self, workflow: str, run_id: str) -> RunStatus:
        """The run's state now. A run still going is ``RemoteState.RUNNING``/``PENDING``."""
        ...

    def cancel(self, workflow: str, run_id: str) -> bool:
        """Ask the runtime to stop the run; False where the runtime cannot."""
        ...

    def output_files(self, outputs: object) -> list[str]:
        """The URLs of the output files a completed run's ``outputs`` point to, in order,
        to be kept as artifacts; empty when it names none."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RemoteRun:
    """One run as a runtime lists it, for reconciling a launch whose answer was lost."""

    run_id: str
    created_at: float | None
    status: str
    inputs: object = None  # where the runtime lists them (the sandbox does; Cordage may not)


@dataclass(frozen=True)
class RunListing:
    runs: list[RemoteRun]
    complete: bool  # every run the runtime has for the workflow (a short page), not a page


@runtime_checkable
class RunFinder(Protocol):
    """A runtime that can list its recent runs of a workflow, newest first."""

    def recent_runs(self, workflow: str) -> RunListing: ...


@dataclass(frozen=True)
class LogLine:
    at: str  # the runtime's own timestamp; also the cursor to resume after
    message: str
    fields: Mapping[str, object] = field(default_factory=dict)


@runtime_checkable
class LogSource(Protocol):
    """A runtime that streams a run's logs (CodeWords' ``/logs``)."""

    def logs(self, run_id: str, *, after: str | None = None) -> Iterator[LogLine]: ...


@runtime_checkable
class FileUploads(Protocol):
    """A runtime that takes input files and hands back a URL to pass in the inputs."""

    def upload(self, filename: str, content: bytes, content_type: str | None = None) -> str: ...


class Embargoes(Protocol):
    """Waits a runtime asked for, shared by every process: after a ``retry_after`` on one
    API key and operation, no process sends that kind of request before it has passed."""

    def until(self, key: str, operation: str) -> float | None:
        """The time before which nothing may be sent, or None."""
        ...

    def impose(self, key: str, operation: str, until: float) -> None:
        """Embargo until ``until``, or longer if a longer one is already in force."""
        ...


@dataclass(frozen=True)
class LimiterState:
    """One limiter as ``orchestrator providers list`` shows it."""

    used: int  # requests granted in the current window
    remaining: int
    next_turn_s: float  # 0.0 when a request may go now


class RateLimiter(Protocol):
    """Our own limits on a runtime, shared by every process: per API key and operation, at
    most ``limit.count`` requests in any window of ``limit.period_s``
    (``orchestrator.domain.ratelimit``). A request that may not go is not sent: the caller
    is told when its turn comes and reschedules the work for then."""

    def acquire(self, key: str, operation: str, limit: RateLimit) -> float:
        """Take a turn now: 0.0 if granted (the request may be sent at once), else the
        seconds until one may be (nothing taken)."""
        ...

    def state(self, key: str, operation: str, limit: RateLimit) -> LimiterState: ...


class ProviderRegistry(Protocol):
    def get(self, name: str) -> Provider:
        """The provider of that name; KeyError if it is not configured."""
        ...

    def names(self) -> Sequence[str]: ...


class JobStore(Protocol):
    """Durable state: jobs, their history, callback deliveries and API tokens.

    Every state change goes through ``move``: a compare-and-set guarded by the transition
    table's allowed source states (and any extra ``guard`` columns). It returns ``None`` when
    zero rows matched, meaning another process already moved the job.
    """

    def add_job(self, new: NewJob, now: float) -> Job:
        """Insert a queued job; ``AlreadyExists`` if its idempotency key is taken."""
        ...

    def get_job(self, job_id: str) -> Job | None: ...

    def find_by_idempotency_key(self, owner: str, key: str) -> Job | None: ...

    def move(self, change: JobChange, now: float) -> Job | None:
        """Apply a state transition, record it in the history, and insert the change's
        outbox deliveries, all in one transaction."""
        ...

    def update_job(
        self, job_id: str, guard: Mapping[str, object], values: Mapping[str, object]
    ) -> bool:
        """Set ``values`` on the job only while every ``guard`` column still holds."""
        ...

    def list_jobs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        batch_id: str | None = None,
        label: tuple[str, str] | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> list[Job]: ...

    def count_by_status(self, *, label: tuple[str, str] | None = None) -> dict[str, int]: ...

    def overdue_jobs(self, now: float, limit: int, *,
                     dispatched_by: Sequence[str] = ()) -> list[Job]:
        """Active jobs whose next step was due before ``now``: work to hand out again. For
        the providers in ``dispatched_by`` a queued job not yet handed out is not overdue:
        it waits for the dispatcher."""
        ...

    def dispatch_candidates(self, provider: str, now: float, limit: int) -> list[Job]:
        """The provider's queued jobs due by ``now`` and not handed out, in dispatch order:
        higher priority first; at one priority, groups (a batch, a schedule, one token's
        single jobs) take turns, oldest first within each."""
        ...

    def mark_dispatched(self, job_ids: Sequence[str], now: float) -> None:
        """Record that these (still queued) jobs' launches were handed out."""
        ...

    def provider_load(self, provider: str, *, due_by: float | None = None) -> tuple[int, int]:
        """(jobs starting or running, queued jobs handed out and not yet claimed). With
        ``due_by``, only the handed-out ones due by then count: a launch waiting out a long
        backoff holds no place meanwhile."""
        ...

    def touch_jobs(self, job_ids: Iterable[str], now: float, *, before: float) -> None:
        """Mark the jobs' next step as due ``now`` (it was just handed out again), where it
        is still due before ``before``: a due time a worker has just pushed later (a
        ``retry_after``) is kept."""
        ...

    def job_events(self, job_id: str) -> list[Mapping[str, object]]: ...

    def add_batch(self, batch: Batch, jobs: Sequence[NewJob], now: float) -> None:
        """Insert the batch and all its queued jobs (with their first history rows) in one
        transaction: all of them or, on any failure, none. ``AlreadyExists`` if the batch's
        idempotency key, or one of its jobs' keys, is taken."""
        ...

    def get_batch(self, batch_id: str) -> Batch | None: ...

    def find_batch_by_idempotency_key(self, owner: str, key: str) -> Batch | None: ...

    def batch_job_ids(self, batch_id: str) -> list[str]:
        """The batch's job ids in input order (they sort that way)."""
        ...

    def batch_progress(self, batch_id: str) -> BatchProgress:
        """Its jobs counted by status, and when the last one ended, in one query."""
        ...

    def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    def add_deliveries(self, deliveries: Iterable[NewDelivery], now: float) -> list[Delivery]: ...

    def record_delivery_attempt(
        self, attempt: DeliveryAttempt, *, status: str, next_attempt_at: float | None
    ) -> bool:
        """Record one attempt and the delivery's new state, guarded on its attempt count so
        a duplicated delivery message records nothing twice."""
        ...

    def record_delivery_attempts(self, records: Sequence[AttemptRecord]) -> list[bool]:
        """Several attempts in one transaction, each guarded as ``record_delivery_attempt``
        (and releasing its claim); whether each was recorded."""
        ...

    def claim_deliveries(self, now: float, until: float, limit: int, *,
                         only: Sequence[str] | None = None) -> list[Delivery]:
        """Take up to ``limit`` pending deliveries due by ``now`` that no sender holds
        (``claimed_until`` unset or past), holding them until ``until``; the earliest due
        first. ``only``: among these ids."""
        ...

    def release_deliveries(self, delivery_ids: Sequence[str], until: float) -> None:
        """Let go of these claims (those still held until ``until``, still pending)."""
        ...

    def overdue_deliveries(self, now: float, limit: int) -> list[Delivery]:
        """Pending deliveries due before ``now`` that no sender holds (a claim that ran out
        before ``now`` is a dead sender's)."""
        ...

    def touch_deliveries(self, delivery_ids: Iterable[str], now: float, *,
                         before: float) -> None: ...

    def deliveries_for_job(self, job_id: str) -> list[Delivery]: ...

    def list_deliveries(self, *, endpoint_id: str, status: str | None = None,
                        since: float | None = None, before: str | None = None,
                        limit: int = 100) -> list[Delivery]:
        """An endpoint's deliveries, newest first; ``before``: a delivery id (the page
        cursor), ``since``: created at or after."""
        ...

    def delivery_attempts(self, delivery_id: str) -> list[Mapping[str, object]]: ...

    def replay_deliveries(self, delivery_ids: Sequence[str], now: float) -> list[str]:
        """Make these deliveries, those that have ended, pending again and due now,
        keeping their id (the ``webhook-id``) and attempt log; the ids that were. A pending
        one is left alone: its attempt may be in flight."""
        ...

    def complete_batch(
        self, batch_id: str, now: float,
        outbox: Callable[[Batch, BatchProgress], Sequence[NewDelivery]],
    ) -> Sequence[NewDelivery] | None:
        """If every job of the batch has ended and it is not marked complete yet, mark it
        (a compare-and-set: one caller wins) and insert ``outbox(batch, progress)`` in the
        same transaction; what was inserted, or None if this call did not mark it."""
        ...

    def ended_batches(self, limit: int) -> list[str]:
        """Batches whose jobs have all ended but that are not marked complete: the sweep
        completes them when the process that ended the last job died first."""
        ...

    def run_claimed(self, provider: str, run_id: str) -> bool:
        """Whether some job of ours already owns that remote run."""
        ...

    def add_token(self, name: str, prefix: str, secret_hash: str, now: float) -> Token: ...

    def token_by_hash(self, secret_hash: str) -> Token | None: ...

    def list_tokens(self) -> list[Token]: ...

    def revoke_token(self, name: str, now: float) -> bool: ...


class EndpointStore(Protocol):
    """Callback endpoints. Secrets go in and come out in clear; at rest they are
    encrypted."""

    def add_endpoint(self, endpoint: CallbackEndpoint) -> CallbackEndpoint: ...

    def get_endpoint(self, endpoint_id: str) -> CallbackEndpoint | None: ...

    def list_endpoints(self) -> list[CallbackEndpoint]:
        """Every endpoint, oldest first."""
        ...

    def subscriptions(self) -> list[Subscription]:
        """The enabled endpoints' URLs and filters, without their secrets (fan-out reads
        these on every event)."""
        ...

    def update_endpoint(self, endpoint_id: str, values: Mapping[str, object], now: float,
                        *, guard: Mapping[str, object] | None = None
                        ) -> CallbackEndpoint | None:
        """Set these fields (dataclass names) if the ``guard`` fields still hold; None if
        there is no such endpoint or the guard failed."""
        ...

    def delete_endpoint(self, endpoint_id: str) -> bool: ...


class ScheduleStore(Protocol):
    """Schedules and their slots. A slot is recorded once: ``record_slot`` raises
    ``AlreadyExists`` when another beat recorded that (schedule, slot time, trigger) first,
    which is what makes each slot fire exactly once however many beats run."""

    def add_schedule(self, schedule: Schedule) -> Schedule:
        """Insert; ``AlreadyExists`` if the name is taken."""
        ...

    def get_schedule(self, name: str) -> Schedule | None: ...

    def list_schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        ...


    def update_schedule(self, name: str, values: Mapping[str, object],
                        now: float) -> Schedule | None: ...

    def delete_schedule(self, name: str) -> bool:
        """Remove the schedule and its slots; the jobs it made stay."""
        ...

    def due_schedules(self, now: float) -> list[Schedule]:
        """Schedules not paused whose next slot is at or before ``now``."""
        ...

    def soonest_fire_at(self) -> float | None:
        """The earliest next slot of any schedule not paused."""
        ...

    def advance(self, schedule_id: str, *, read: float, cursor_at: float,
                next_fire_at: float) -> None:
        """Move the cursor from ``read`` (the value the caller planned from) to ``cursor_at``
        and set the next fire time to match; nothing if the cursor moved meanwhile (another
        beat advanced it, or a change of rule restarted it)."""
        ...

    def record_slot(self, slot: NewSlot, job: NewJob | None, now: float) -> Job | None:
        """Record a slot and, when it fires, insert its job in the same transaction."""
        ...

    def buffered_slots(self) -> list[tuple[Schedule, Slot]]:
        """Slots waiting for their schedule's running job to end, with their schedule."""
        ...

    def release_slot(self, slot_id: int, job: NewJob, now: float) -> Job | None:
        """Fire a buffered slot: its job inserted and the slot marked fired, together;
        None when another beat released it first."""
        ...

    def recent_slots(self, schedule_id: str, limit: int) -> list[Slot]:
        """Newest first, each with its job's state."""
        ...

    def active_jobs(self, schedule_id: str) -> list[Job]:
        """The schedule's jobs that have not ended."""
        ...


class Scheduler(Protocol):
    """Hands work to the workers: now, or at a time. Messages may be lost or duplicated;
    the database records every next step, and every task is idempotent."""

    def schedule(self, actions: Sequence[Action]) -> None: ...


@dataclass(frozen=True)
class SendResult:
    """What one callback POST came to."""

    status_code: int | None  # None when no response arrived
    latency_s: float
    error: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class Outgoing:
    """One callback POST to make."""

    url: str
    headers: Mapping[str, str]
    body: bytes


class CallbackSender(Protocol):
    def send(self, url: str, headers: Mapping[str, str], body: bytes) -> SendResult: ...

    def send_many(self, requests: Sequence[Outgoing], *,
                  within_s: float | None = None) -> list[SendResult]:
        """Each one sent (several at once where the sender can), the results in order; one
        not answered ``within_s`` is a failed attempt. Never raises for one bad send."""
        ...


class UrlGuard(Protocol):
    """The SSRF guard: a callback URL may only reach public addresses."""

    def check(self, url: str) -> None:
        """Raise ``orchestrator.domain.netguard.UnsafeUrl`` (a ``ValueError`` whose message
        says why) unless the URL is http(s) and every address its host resolves to may be
        reached."""
        ...


class ArtifactStore(Protocol):
    """Where output files are kept, so they outlive the runtime's retention."""

    def keep(self, job_id: str, n: int, url: str) -> Artifact:
        """Download the file at ``url`` into the store as the job's ``n``-th artifact;
        raises ``Transient`` when it may work later, ``Permanent`` when it never will."""
        ...

    def open(self, key: str) -> Iterator[bytes]:
        """The kept file's bytes, in chunks; ``FileNotFoundError`` if it is not there."""
        ...
