"""Request and response models of the REST API (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobStatusName = Literal["queued", "starting", "running", "completed", "failed", "cancelled",
                        "timed_out"]


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"workflow": "sandbox/echo", "inputs": {"hello": "world"},
         "labels": {"team": "growth"}}]})

    workflow: str = Field(min_length=3, max_length=300,
                          description="`<provider>/<name>`, such as `sandbox/echo`")
    inputs: Any = Field(default_factory=dict, description="any JSON, at most 1 MiB")
    path: str = Field("", max_length=500)
    callback_url: str | None = Field(None, max_length=2000, pattern=r"^https?://")
    idempotency_key: str | None = Field(None, min_length=1, max_length=255)
    priority: int = Field(0, ge=-10, le=10)
    labels: dict[str, str] = Field(default_factory=dict, max_length=50)
    timeout_s: float | None = Field(None, gt=0, le=7 * 86400)
    retries: int = Field(0, ge=0, le=10)


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
