"""The database schema, as SQLModel tables. Alembic migrations are the source of truth for
the schema in a database; these classes must match the latest migration (a test checks).

Times are epoch seconds (double precision) so the same arithmetic runs on SQLite and
PostgreSQL; the API renders them as RFC 3339.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


class JobRow(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
        # The sweep's scan: active jobs by when their next step is due.
        Index("ix_jobs_status_next_action_at", "status", "next_action_at"),
        # Reconciling a lost launch asks whether a remote run is already ours.
        Index("ix_jobs_provider_run_id", "provider", "run_id"),
        # The dispatcher's and the in-flight cap's counts: a provider's jobs by state.
        Index("ix_jobs_provider_status", "provider", "status"),
        # Whether a batch has a job still going, at each of its jobs' ends.
        Index("ix_jobs_batch_id_status", "batch_id", "status"),
    )

    id: str = Field(primary_key=True, max_length=40)
    workflow: str = Field(index=True, max_length=300)
    provider: str = Field(max_length=100)
    status: str = Field(max_length=16)
    inputs: Any = Field(sa_column=Column(JSON, nullable=True))
    path: str = Field(default="", max_length=500)
    outputs: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = None
    run_id: str | None = Field(default=None, max_length=200)
    remote_status: str | None = Field(default=None, max_length=32)
    reservation: str | None = Field(default=None, max_length=200)
    attempt: int = 1
    polls: int = 0
    launch_tries: int = 0
    launch_sent_at: float | None = None
    batch_id: str | None = Field(default=None, index=True, max_length=40)
    schedule_id: str | None = Field(default=None, index=True, max_length=40)
    owner: str | None = Field(default=None, max_length=40)
    idempotency_key: str | None = Field(default=None, max_length=255)
    request_hash: str | None = Field(default=None, max_length=64)
    priority: int = 0
    labels: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    callback_url: str | None = Field(default=None, max_length=2000)
    timeout_s: float | None = None
    retries: int = 0
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    next_action_at: float | None = None
    lease_until: float | None = None
    deadline_at: float | None = None
    dispatched_at: float | None = None
    # Output files kept in the artifact store: [{url, key, sha256, size, content_type}].
    artifacts: Any = Field(default=None, sa_column=Column(JSON, nullable=True))


class BatchRow(SQLModel, table=True):
    __tablename__ = "batches"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key", name="uq_batches_owner_idempotency_key"),
    )

    id: str = Field(primary_key=True, max_length=40)
    owner: str | None = Field(default=None, max_length=40)
    idempotency_key: str | None = Field(default=None, max_length=255)
    request_hash: str | None = Field(default=None, max_length=64)
    total: int
    labels: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    callback_url: str | None = Field(default=None, max_length=2000)
    created_at: float
    # Set once, by the compare-and-set that emits batch.completed when its last job ends.
    completed_at: float | None = None


class JobEventRow(SQLModel, table=True):
    __tablename__ = "job_events"

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(index=True, max_length=40)
    attempt: int
    event: str = Field(max_length=32)
    status: str = Field(max_length=16)
    at: float
    detail: str | None = None


class DeliveryRow(SQLModel, table=True):
    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),)

    id: str = Field(primary_key=True, max_length=40)
    job_id: str | None = Field(default=None, index=True, max_length=40)
    event_type: str = Field(max_length=40)
    url: str = Field(max_length=2000)
    endpoint_id: str | None = Field(default=None, index=True, max_length=40)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = Field(max_length=16)
    attempts: int = 0
    next_attempt_at: float | None = None
    created_at: float
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: float | None = None
    # While a sender holds it (its attempt on the way): others leave it alone until then.
    claimed_until: float | None = None


class CallbackEndpointRow(SQLModel, table=True):
    __tablename__ = "callback_endpoints"

    id: str = Field(primary_key=True, max_length=40)
    url: str = Field(max_length=2000)
    description: str | None = Field(default=None, max_length=500)
    event_types: Any = Field(sa_column=Column(JSON, nullable=False))
    workflows: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    labels: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Signing secrets, encrypted (Fernet): the current one, and the one it replaced while
    # both sign (until previous_until).
    secret: str = Field(max_length=500)
    previous_secret: str | None = Field(default=None, max_length=500)
    previous_until: float | None = None
    enabled: bool = True
    disabled_reason: str | None = Field(default=None, max_length=500)
    # Since when every attempt failed (None after a success): long enough disables it.
    failing_since: float | None = None
    created_at: float
    updated_at: float


class DeliveryAttemptRow(SQLModel, table=True):
    __tablename__ = "delivery_attempts"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(index=True, max_length=40)
    number: int
    at: float
    status_code: int | None = None
    latency_ms: float
    error: str | None = None


class TokenRow(SQLModel, table=True):
    __tablename__ = "api_tokens"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(unique=True, max_length=100)
    prefix: str = Field(max_length=24)
    secret_hash: str = Field(unique=True, max_length=64)
    created_at: float
    revoked_at: float | None = None


class ScheduleRow(SQLModel, table=True):
    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_paused_next_fire_at", "paused", "next_fire_at"),)

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(unique=True, max_length=100)
    cron: str | None = Field(default=None, max_length=200)
    every: str | None = Field(default=None, max_length=40)
    timezone: str = Field(max_length=64)
    job: Any = Field(sa_column=Column(JSON, nullable=False))
    labels: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    paused: bool = False
    overlap: str = Field(max_length=16)
    catchup: str = Field(max_length=16)
    catchup_window_s: float
    source: str = Field(max_length=16)
    config_hash: str | None = Field(default=None, max_length=64)
    note: str | None = None
    cursor_at: float
    next_fire_at: float | None = None
    created_at: float
    updated_at: float


class ScheduleSlotRow(SQLModel, table=True):
    __tablename__ = "schedule_slots"
    __table_args__ = (
        # The exactly-once guard: one row per slot, whichever beat gets there first.
        UniqueConstraint("schedule_id", "slot_at", "trigger", name="uq_schedule_slots_slot"),
        Index("ix_schedule_slots_status", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    schedule_id: str = Field(max_length=40)
    slot_at: float
    trigger: str = Field(max_length=16)
    status: str = Field(max_length=16)
    job_id: str | None = Field(default=None, max_length=40)
    reason: str | None = None
    recorded_at: float


jobs = SQLModel.metadata.tables["jobs"]
job_events = SQLModel.metadata.tables["job_events"]
batches = SQLModel.metadata.tables["batches"]
deliveries = SQLModel.metadata.tables["deliveries"]
delivery_attempts = SQLModel.metadata.tables["delivery_attempts"]
callback_endpoints = SQLModel.metadata.tables["callback_endpoints"]
api_tokens = SQLModel.metadata.tables["api_tokens"]
schedules = SQLModel.metadata.tables["schedules"]
schedule_slots = SQLModel.metadata.tables["schedule_slots"]
