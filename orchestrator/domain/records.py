"""The values the core works with: jobs, changes to them, deliveries, tokens, actions.

Plain frozen dataclasses: the store turns rows into these, the services decide on them, and
nothing here knows about SQL or HTTP. Times are epoch seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from orchestrator.domain.job import Event, JobStatus


@dataclass(frozen=True)
class Artifact:
    """An output file kept in our artifact store: where the runtime had it (``url``), where
    we keep it (``key``, relative to the store's root) and what it holds."""

    url: str
    key: str
    sha256: str
    size: int
    content_type: str | None = None


@dataclass(frozen=True)
class Job:
    id: str
    workflow: str
    provider: str
    status: JobStatus
    inputs: object
    created_at: float
    updated_at: float
    path: str = ""
    outputs: object = None
    error_code: str | None = None
    error_message: str | None = None
    run_id: str | None = None
    remote_status: str | None = None
    reservation: str | None = None
    attempt: int = 1
    polls: int = 0
    launch_tries: int = 0
    launch_sent_at: float | None = None
    batch_id: str | None = None
    schedule_id: str | None = None
    owner: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    priority: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    callback_url: str | None = None
    timeout_s: float | None = None
    retries: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    next_action_at: float | None = None
    lease_until: float | None = None
    deadline_at: float | None = None
    # When the dispatcher last handed the launch out (paced providers): a launch handed out
    # and not yet claimed holds its place, so no more are handed out than can start.
    dispatched_at: float | None = None
    artifacts: tuple[Artifact, ...] = ()

    @property
    def workflow_name(self) -> str:
        return self.workflow.partition("/")[2]


@dataclass(frozen=True)
class NewJob:
    id: str
    workflow: str
    provider: str
    inputs: object
    path: str = ""
    batch_id: str | None = None
    schedule_id: str | None = None
    owner: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    priority: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    callback_url: str | None = None
    timeout_s: float | None = None
    retries: int = 0


@dataclass(frozen=True)
class Batch:
    """Jobs submitted together (``POST /v1/batches``); the jobs carry its id."""

    id: str
    total: int
    created_at: float
    owner: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    callback_url: str | None = None
    # When its last job ended and batch.completed was emitted (set once).
    completed_at: float | None = None


@dataclass(frozen=True)
class BatchProgress:
    """Where a batch's jobs are now, from one read."""

    counts: Mapping[str, int]  # jobs by status; a status no job is in is left out
    last_finished_at: float | None  # when the latest of its ended jobs ended


@dataclass(frozen=True)
class NewDelivery:
    """A callback to send, written in the same transaction as the change that caused it."""

    id: str
    job_id: str | None
    event_type: str
    url: str
    endpoint_id: str | None  # None for a job's own callback_url
    payload: bytes  # the exact body that is signed and sent on every attempt
    next_attempt_at: float


@dataclass(frozen=True)
class JobChange:
    """One state transition: the event, the values it sets, and what it causes.

    ``guard`` adds columns that must still hold (``{"polls": 3}``, ``{"lease_until": t}``)
    besides the source states the transition table allows. ``deliveries`` is an outbox: its
    rows are inserted in the same transaction as the change.
    """

    job_id: str
    event: Event
    values: Mapping[str, object] = field(default_factory=dict)
    guard: Mapping[str, object] = field(default_factory=dict)
    detail: str | None = None
    deliveries: tuple[NewDelivery, ...] = ()
    # Filled in by services that build the outbox from the job as it will be after the move.
    expected_status: JobStatus | None = None
    # A claim on a provider with ``max_in_flight``: the move happens only while fewer of the
    # provider's jobs than this are starting or running (checked in the same statement).
    in_flight_cap: int | None = None


@dataclass(frozen=True)
class CallbackEndpoint:
    """A registered receiver: which events it wants, filtered by workflow and labels, and
    the ``whsec_`` secrets that sign them (in clear only in memory; the store encrypts).
    During a rotation the previous secret signs too, until ``previous_until``."""

    id: str
    url: str
    event_types: tuple[str, ...]
    # None when the stored secret cannot be decrypted (the key it was sealed with is gone).
    secret: str | None = field(repr=False)
    created_at: float
    updated_at: float
    description: str | None = None
    workflows: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    previous_secret: str | None = field(default=None, repr=False)
    previous_until: float | None = None
    enabled: bool = True
    disabled_reason: str | None = None
    failing_since: float | None = None  # since when every attempt failed; None after a 2xx

    def signing_secrets(self, now: float) -> tuple[str, ...]:
        """The secrets that sign now: the current one, and the previous while it overlaps."""
        overlap = bool(self.previous_until and self.previous_until > now)
        found = (self.secret, self.previous_secret if overlap else None)
        return tuple(secret for secret in found if secret)

    def subscription(self) -> Subscription:
        return Subscription(self.id, self.url, self.event_types, self.workflows, self.labels)


@dataclass(frozen=True)
class Subscription:
    """What fan-out needs of an enabled endpoint: where, and which events. No secrets: an
    event is recorded whatever becomes of them."""

    id: str
    url: str
    event_types: tuple[str, ...]
    workflows: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


DeliveryStatus = Literal["pending", "succeeded", "failed"]


@dataclass(frozen=True)
class Delivery:
    id: str
    job_id: str | None
    event_type: str
    url: str
    endpoint_id: str | None
    payload: bytes
    status: DeliveryStatus
    attempts: int
    next_attempt_at: float | None
    created_at: float
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: float | None = None
    claimed_until: float | None = None  # a sender holds it until then


@dataclass(frozen=True)
class DeliveryAttempt:
    delivery_id: str
    number: int  # 1 for the first attempt
    at: float
    status_code: int | None
    latency_s: float
    error: str | None


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt and the state it leaves its delivery in."""

    attempt: DeliveryAttempt
    status: DeliveryStatus
    next_attempt_at: float | None


@dataclass(frozen=True)
class Token:
    id: str
    name: str
    prefix: str
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True)
class Launch:
    job_id: str
    at: float | None = None
    run_id: str | None = None  # a run already started whose id could not be stored yet


@dataclass(frozen=True)
class Poll:
    job_id: str
    seq: int  # the job's poll count when this poll was planned: a stale duplicate is dropped
    at: float | None = None


@dataclass(frozen=True)
class Deliver:
    delivery_id: str
    at: float | None = None


Action = Launch | Poll | Deliver
