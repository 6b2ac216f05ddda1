"""``/v1/jobs``: submit, look up and list jobs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic.json_schema import SkipJsonSchema

from orchestrator.api.deps import ContainerDep, TokenDep
from orchestrator.api.errors import ERROR_RESPONSES, ApiError
from orchestrator.api.schemas import CancelOut, JobIn, JobOut, JobPage, JobStatusName
from orchestrator.domain.resource import job_resource
from orchestrator.services.cancel import CancelRefused, cancel_job
from orchestrator.services.retry import RetryRefused, retry_job
from orchestrator.services.submit import JobSpec, SubmitRejected, submit_job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

# Ids are a type prefix and base32: anything else cannot name a job (and a NUL in it would
# reach the database).
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
JobId = Annotated[str, Path(pattern=ID_PATTERN)]
NoNul = r"^[^\x00]*$"


@router.post("", status_code=201, response_model=JobOut,
             responses={200: {"model": JobOut, "description": "an earlier job with this key"}})
def submit(
    body: JobIn,
    response: Response,
    token: TokenDep,
    container: ContainerDep,
    # A header is a string or absent: null is no value it can have.
    idempotency_key: Annotated[str | SkipJsonSchema[None], Header(max_length=255)] = None,
) -> dict[str, Any]:
    """Submit one job. The same `Idempotency-Key` (header or field) and body again returns
    the first job with 200; the same key with another body is a 409."""
    key = idempotency_key or body.idempotency_key
    if idempotency_key and body.idempotency_key and idempotency_key != body.idempotency_key:
        raise ApiError(400, "idempotency_key_mismatch",
                       "the Idempotency-Key header and the idempotency_key field differ")
    spec = JobSpec(**{**body.model_dump(), "idempotency_key": key})
    try:
        submitted = submit_job(spec, container.deps, owner=token.id)
    except SubmitRejected as rejected:
        raise ApiError(rejected.status, rejected.code, rejected.message) from None
    if not submitted.created:
        response.status_code = 200
    return job_resource(submitted.job)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: JobId, _: TokenDep, container: ContainerDep) -> dict[str, Any]:
    job = container.store.get_job(job_id)
    if job is None:
        raise ApiError(404, "not_found", f"no job with id '{job_id}'")
    return job_resource(job)


@router.get("", response_model=JobPage)
def list_jobs(
    _: TokenDep,
    container: ContainerDep,
    request: Request,
    status: JobStatusName | None = None,
    workflow: Annotated[str | None, Query(max_length=300, pattern=NoNul)] = None,
    batch_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    label: Annotated[str | None, Query(max_length=300, pattern=r"^[^=\x00]+=[^\x00]*$",
                                       description="`key=value`")] = None,
    cursor: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Newest first. Pass the returned `next_cursor` as `cursor` for the next page."""
    label_pair = None
    if label:
        key, _sep, value = label.partition("=")
        label_pair = (key, value)
    jobs = container.store.list_jobs(status=status, workflow=workflow, batch_id=batch_id,
                                     label=label_pair, after=cursor, limit=limit + 1)
    page = jobs[:limit]
    next_cursor = page[-1].id if len(jobs) > limit else None
    return {"items": [job_resource(j) for j in page], "next_cursor": next_cursor}


@router.post("/{job_id}/cancel", response_model=CancelOut)
def cancel(job_id: JobId, _: TokenDep, container: ContainerDep) -> dict[str, Any]:
    """Cancel a job. Its remote run is stopped where the provider can (Cordage's kill);
    where it cannot (CodeWords has no kill), the run goes on and `cancellation` says so."""
    try:
        outcome = cancel_job(job_id, container.deps)
    except CancelRefused as refused:
        raise ApiError(refused.status, refused.code, refused.message,
                       retry_after=refused.retry_after) from None
    return {**job_resource(outcome.job),
            "cancellation": {"remote": outcome.remote, "message": outcome.message}}


@router.post("/{job_id}/retry", response_model=JobOut)
def retry(job_id: JobId, _: TokenDep, container: ContainerDep) -> dict[str, Any]:
    """Start a new attempt of a failed, cancelled or timed-out job; the history of every
    attempt is kept. A job that is still active or completed is a 409."""
    try:
        job = retry_job(job_id, container.deps)
    except RetryRefused as refused:
        raise ApiError(refused.status, refused.code, refused.message) from None
    return job_resource(job)
