"""Request and response models of the REST API (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from orchestrator.domain.schedule import Catchup, Overlap, SlotStatus, Trigger
from orchestrator.services.batches import MAX_BATCH_JOBS

JobStatusName = Literal["queued", "starting", "running", "completed", "failed", "cancelled",
                        "timed_out"]



def refuse_null(value: object) -> object:
    """For PATCH bodies: a field left out keeps its value; null is not a way to clear it."""
    if value is None:
        raise PydanticCustomError(
            "not_null", "may not be null; leave the field out to keep its value")
    return value

class JobTemplateIn(BaseModel):
    """A job spec without an idempotency key: what a schedule submits at each slot."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"workflow": "sandbox/echo", "inputs": {"hello": "world"}}]})

    workflow: str = Field(min_length=3, max_length=300,
                          description="`<provider>/<name>`, such as `sandbox/echo`")
    inputs: Any = Field(default_factory=dict, description="any JSON, at most 1 MiB")
    path: str = Field("", max_length=500)
    callback_url: str | None = Field(None, max_length=2000, pattern=r"^https?://")
    priority: int = Field(0, ge=-10, le=10)
    labels: dict[str, str] = Field(default_factory=dict, max_length=50)
    timeout_s: float | None = Field(None, gt=0, le=7 * 86400)
    retries: int = Field(0, ge=0, le=10)


class JobIn(JobTemplateIn):
    """One job to submit."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"workflow": "sandbox/echo", "inputs": {"hello": "world"},
         "labels": {"team": "growth"}}]})

    idempotency_key: str | None = Field(None, min_length=1, max_length=255)


class ErrorOut(BaseModel):
    code: str
    message: str


class RemoteOut(BaseModel):
    provider: str
    run_id: str | None
    status: str | None


class ArtifactOut(BaseModel):
    url: str
    sha256: str
    size: int
    content_type: str | None
    download: str


class JobOut(BaseModel):
    id: str
    workflow: str
    status: JobStatusName
    inputs: Any
    path: str
    outputs: Any
    artifacts: list[ArtifactOut]
    error: ErrorOut | None
    remote: RemoteOut
    attempt: int
    polls: int
    batch_id: str | None
    schedule_id: str | None
    idempotency_key: str | None
    priority: int
    labels: dict[str, str]
    callback_url: str | None
    timeout_s: float | None
    retries: int
    created_at: str
    started_at: str | None
    finished_at: str | None


class CancellationOut(BaseModel):
    remote: Literal["stopped", "not_supported", "not_started", "failed"]
    message: str


class CancelOut(JobOut):
    cancellation: CancellationOut


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page")


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


# batches ------------------------------------------------------------------------------------

def _no_null(value: object) -> object:
    if value is None:
        raise PydanticCustomError("not_null", "may not be null; leave the field out instead")
    return value


class BatchDefaultsIn(BaseModel):
    """Fields every job of the batch takes unless it sets its own (a job's `labels` are
    merged over these, not instead of them)."""

    model_config = ConfigDict(extra="forbid")

    workflow: str | SkipJsonSchema[None] = Field(
        None, min_length=3, max_length=300, description="`<provider>/<name>`")
    inputs: Any = Field(None, description="any JSON, at most 1 MiB")
    path: str | SkipJsonSchema[None] = Field(None, max_length=500)
    callback_url: str | None = Field(None, max_length=2000, pattern=r"^https?://")
    priority: int | SkipJsonSchema[None] = Field(None, ge=-10, le=10)
    labels: dict[str, str] | SkipJsonSchema[None] = Field(None, max_length=50)
    timeout_s: float | None = Field(None, gt=0, le=7 * 86400)
    retries: int | SkipJsonSchema[None] = Field(None, ge=0, le=10)

    @field_validator("workflow", "path", "priority", "labels", "retries", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        return _no_null(value)


class BatchJobIn(BatchDefaultsIn):
    """One job of a batch: a job spec whose fields may come from the batch's `defaults`
    (`workflow` included)."""

    idempotency_key: str | None = Field(None, min_length=1, max_length=255,
                                        description="this job's own key (rarely needed: "
                                                    "give the batch a key instead)")


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"defaults": {"workflow": "sandbox/echo"}, "labels": {"run": "2024-06-01"},
         "jobs": [{"inputs": {"row": 1}}, {"inputs": {"row": 2}, "priority": 5}]}]})

    jobs: list[BatchJobIn] = Field(
        description=f"1 to {MAX_BATCH_JOBS:,} job specs; more is a 413",
        json_schema_extra={"minItems": 1, "maxItems": MAX_BATCH_JOBS})
    defaults: BatchDefaultsIn = Field(default_factory=BatchDefaultsIn)
    callback_url: str | None = Field(
        None, max_length=2000, pattern=r"^https?://",
        description="POSTed each job's terminal event, for jobs that name no callback_url")
    labels: dict[str, str] = Field(default_factory=dict, max_length=50,
                                   description="set on every job (a job's own labels win)")
    idempotency_key: str | None = Field(None, min_length=1, max_length=255)

    @field_validator("jobs", mode="before")
    @classmethod
    def _at_most_max(cls, value: object) -> object:
        # Before the jobs are validated one by one: a batch too large is a 413, whatever
        # else is wrong with it.
        if isinstance(value, list) and len(value) > MAX_BATCH_JOBS:
            raise PydanticCustomError(
                "batch_too_large", "the batch has {count} jobs; at most {limit} go in one batch: "
                "send several", {"count": f"{len(value):,}", "limit": f"{MAX_BATCH_JOBS:,}"})
        return value


class BatchCreatedOut(BaseModel):
    id: str
    job_ids: list[str] = Field(description="the jobs' ids, in input order")


class BatchCountsOut(BaseModel):
    queued: int
    starting: int
    running: int
    completed: int
    failed: int
    cancelled: int
    timed_out: int


class BatchOut(BaseModel):
    id: str
    total: int
    counts: BatchCountsOut = Field(description="the batch's jobs by state, now")
    done: bool = Field(description="every job has ended")
    created_at: str
    finished_at: str | None = Field(description="when the last job ended, once all have")
    labels: dict[str, str]
    callback_url: str | None
    idempotency_key: str | None


# schedules ----------------------------------------------------------------------------------

SCHEDULE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


# Checked by the schedule service (orchestrator.domain.cron), whose messages say what to write.
CronRule = Annotated[str, Field(min_length=1, max_length=200)]
EveryRule = Annotated[str, Field(min_length=1, max_length=50)]
# The longest IANA name has 32 characters; a long one would reach the file system.
TimeZoneName = Annotated[str, Field(min_length=1, max_length=64)]
ScheduleLabels = Annotated[dict[str, str], Field(max_length=50)]
CatchupWindow = Annotated[float, Field(gt=0, allow_inf_nan=False)]

CRON_HELP = "five cron fields, like `0 2 * * *`, in `timezone`; exactly one of `cron`, `every`"
EVERY_HELP = "a fixed interval, like `30s`, `5m`, `1h30m`; exactly one of `cron`, `every`"
TIMEZONE_HELP = "the IANA time zone of the cron rule's wall times, like `Europe/Berlin`"
LABELS_HELP = "labels of every job the schedule makes (the template's own labels win)"
OVERLAP_HELP = ("what a slot does while the previous slot's job still runs: `skip` it, "
                "`buffer_one` (run it when that job ends), `allow` both, `cancel_previous`")
CATCHUP_HELP = ("slots missed while no beat ran: fire `none`, the `latest` one, or `all` "
                "(within `catchup_window_s`)")


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "nightly-enrich", "cron": "0 2 * * *", "timezone": "Europe/Berlin",
         "job": {"workflow": "sandbox/echo", "inputs": {"hello": "world"}}}]})

    name: str = Field(pattern=SCHEDULE_NAME_PATTERN,
                      description="letters, digits, `.`, `_`, `-`; at most 100")
    cron: CronRule | None = Field(None, description=CRON_HELP)
    every: EveryRule | None = Field(None, description=EVERY_HELP)
    timezone: TimeZoneName = Field("UTC", description=TIMEZONE_HELP)
    job: JobTemplateIn
    labels: ScheduleLabels = Field(default_factory=dict, description=LABELS_HELP)
    paused: bool = False
    overlap: Overlap = Field("skip", description=OVERLAP_HELP)
    catchup: Catchup = Field("latest", description=CATCHUP_HELP)
    catchup_window_s: CatchupWindow = Field(86400.0, description="how far back catch-up looks")


class SchedulePatch(BaseModel):
    """The fields to change; those left out keep their values. `job` replaces the whole
    template. Setting `cron` clears `every` and the other way round. Only `cron` and
    `every` may be null."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"paused": True}, {"cron": "30 3 * * *"}]})

    cron: CronRule | None = Field(None, description=CRON_HELP)
    every: EveryRule | None = Field(None, description=EVERY_HELP)
    # Left out, they keep their values; null is refused (and absent from the schema).
    timezone: TimeZoneName | SkipJsonSchema[None] = Field(None, description=TIMEZONE_HELP)
    job: JobTemplateIn | SkipJsonSchema[None] = Field(
        None, description="the new job template, whole")
    labels: ScheduleLabels | SkipJsonSchema[None] = Field(None, description=LABELS_HELP)
    paused: bool | SkipJsonSchema[None] = None
    overlap: Overlap | SkipJsonSchema[None] = Field(None, description=OVERLAP_HELP)
    catchup: Catchup | SkipJsonSchema[None] = Field(None, description=CATCHUP_HELP)
    catchup_window_s: CatchupWindow | SkipJsonSchema[None] = Field(
        None, description="how far back catch-up looks")

    @field_validator("timezone", "job", "labels", "paused", "overlap", "catchup",
                     "catchup_window_s", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        return refuse_null(value)


class SlotOut(BaseModel):
    slot_at: str = Field(description="the instant the rule named, RFC 3339")
    status: SlotStatus
    trigger: Trigger
    job_id: str | None
    job_status: JobStatusName | None = Field(description="the job's state now")
    reason: str | None
    recorded_at: str


class ScheduleOut(BaseModel):
    id: str
    name: str
    cron: str | None
    every: str | None
    timezone: str
    job: dict[str, Any]
    labels: dict[str, str]
    paused: bool
    overlap: Overlap
    catchup: Catchup
    catchup_window_s: float
    source: Literal["api", "config"] = Field(
        description="`config`: declared in the configuration file and synced at start-up")
    note: str | None = Field(description="why the system paused it, if it did")
    next_fire_at: str | None = Field(description="RFC 3339; null when paused")
    created_at: str
    updated_at: str


class ScheduleDetailOut(ScheduleOut):
    slots: list[SlotOut] = Field(description="the most recent slots, newest first")


class ScheduleList(BaseModel):
    items: list[ScheduleOut]


# providers ----------------------------------------------------------------------------------

class LimitOut(BaseModel):
    operation: Literal["trigger", "read", "cancel"]
    limit: str | None = Field(description="`<count>/<period>s`; null when unlimited")
    used: int | None = Field(description="requests granted in the current window")
    remaining: int | None
    next_turn_s: float = Field(description="seconds until a request may go; 0 when now")
    embargo_s: float = Field(description="seconds left of a wait the runtime asked for")
    error: str | None = Field(None, description="why the state is unknown, when it is")


class ProviderOut(BaseModel):
    name: str
    type: str
    base_url: str
    max_in_flight: int | None
    in_flight: int = Field(description="jobs starting or running")
    queued: int
    limits: list[LimitOut]


class ProviderList(BaseModel):
    items: list[ProviderOut]


# callbacks ----------------------------------------------------------------------------------

# orchestrator.domain.events.EVENT_TYPES, spelled out for the schema (a test keeps them equal).
EventTypeName = Literal["job.started", "job.completed", "job.failed", "job.cancelled",
                        "job.timed_out", "batch.completed"]
DeliveryStatusName = Literal["pending", "succeeded", "failed"]

CallbackUrl = Annotated[str, Field(
    min_length=1, max_length=2000,
    description="an http(s) URL; one that resolves to a loopback, private, link-local or "
                "reserved address is refused unless `[callbacks].allow_private_networks`")]
EventTypeList = Annotated[list[EventTypeName], Field(
    max_length=50, description="the events it receives (at least one)")]
WorkflowFilter = Annotated[list[Annotated[str, Field(min_length=3, max_length=300)]], Field(
    max_length=50,
    description="only events of these workflows (`<provider>/<name>`); empty: every workflow "
                "(a `batch.completed` is never filtered by workflow)")]
LabelFilter = Annotated[dict[str, str], Field(
    max_length=50, description="only events whose job (or batch) has all these labels")]
Description = Annotated[str, Field(max_length=500)]


class CallbackIn(BaseModel):
    """A callback endpoint to register."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"url": "https://receiver.example.com/hook"},
        {"url": "https://receiver.example.com/hook", "event_types": ["job.failed"],
         "workflows": ["sandbox/echo"], "labels": {"team": "growth"},
         "description": "growth's failure alerts"}]})

    url: CallbackUrl
    event_types: EventTypeList | None = Field(
        None, description="the events it receives; left out or null: the terminal job events "
                          "and `batch.completed`")
    workflows: WorkflowFilter = Field(default_factory=list)
    labels: LabelFilter = Field(default_factory=dict)
    description: Description | None = None


def _not_nullable(schema: dict[str, Any]) -> None:
    """A PATCH field that may be left out but not be null: its schema without the null.
    (Typed ``X | None`` rather than ``X | SkipJsonSchema[None]``, so a wrong value gets one
    error, the field's own, not one for each member of a union.)"""
    options = schema.pop("anyOf", None)
    if options:
        schema.update(next(o for o in options if o.get("type") != "null"))
    schema.pop("default", None)


class CallbackPatch(BaseModel):
    """The fields to change; those left out keep their values. `{"enabled": true}`
    re-enables an endpoint that was disabled (by request, by a 410 Gone or after days of
    failures); `{"enabled": false}` disables it. Only `description` may be null."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"enabled": True}, {"event_types": ["job.completed", "job.failed"]}]})

    url: CallbackUrl | None = Field(None, json_schema_extra=_not_nullable)
    event_types: EventTypeList | None = Field(None, json_schema_extra=_not_nullable)
    workflows: WorkflowFilter | None = Field(None, json_schema_extra=_not_nullable)
    labels: LabelFilter | None = Field(None, json_schema_extra=_not_nullable)
    description: Description | None = None
    enabled: bool | None = Field(None, json_schema_extra=_not_nullable)

    @field_validator("url", "event_types", "workflows", "labels", "enabled", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        return refuse_null(value)


class CallbackOut(BaseModel):
    id: str
    url: str
    description: str | None
    event_types: list[str]
    workflows: list[str]
    labels: dict[str, str]
    enabled: bool
    disabled_reason: str | None = Field(description="why it is disabled, when it is")
    failing_since: str | None = Field(
        description="since when every attempt to it has failed; null after a success")
    secret_rotating_until: str | None = Field(
        description="after a rotation, until when the previous secret signs too (RFC 3339); "
                    "null when only the current one signs")
    created_at: str
    updated_at: str


class CallbackSecretOut(CallbackOut):
    secret: str = Field(description="the `whsec_` signing secret; shown only in this answer "
                                     "(and a rotation's): store it now")


class CallbackList(BaseModel):
    items: list[CallbackOut]


class DeliveryAttemptOut(BaseModel):
    number: int = Field(description="1 for the first attempt")
    at: str
    status_code: int | None = Field(description="the receiver's answer; null when none came")
    latency_ms: float
    error: str | None


class DeliveryOut(BaseModel):
    id: str = Field(description="the `webhook-id` header of every attempt")
    endpoint_id: str | None = Field(description="null for a job's (or batch's) own "
                                                "callback_url")
    job_id: str | None = Field(description="null for a `batch.completed`")
    event_type: str
    url: str = Field(description="where the event was addressed when it happened")
    status: DeliveryStatusName
    attempts: int
    next_attempt_at: str | None = Field(description="when it is tried next, while pending")
    created_at: str
    delivered_at: str | None
    last_status_code: int | None
    last_error: str | None


class DeliveryDetailOut(DeliveryOut):
    attempt_log: list[DeliveryAttemptOut] = Field(description="every attempt, oldest first")


class DeliveryPage(BaseModel):
    items: list[DeliveryOut] = Field(description="newest first; each delivery's attempts: "
                                                 "`GET /v1/deliveries/{id}`")
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page")


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"since": "2024-06-01T00:00:00Z"}]})

    since: AwareDatetime = Field(description="RFC 3339 with a time zone: the failed "
                                             "deliveries created at or after it are replayed")


class ReplayOut(BaseModel):
    replayed: int
    delivery_ids: list[str]
