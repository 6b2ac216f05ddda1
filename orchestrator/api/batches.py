"""``/v1/batches``: submit up to 10,000 jobs in one request, and follow them.

A full batch is larger than the app's general body limit (sized for one job's inputs), so
this path is exempt from it and has its own, ``[jobs] max_batch_bytes`` (64 MiB by
default), enforced by ``BatchBodyLimit`` on the declared length and again on the bytes as
they arrive (a chunked upload declares none).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Header, Path, Response
from pydantic.json_schema import SkipJsonSchema
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.api.deps import ContainerDep, TokenDep
from orchestrator.api.errors import ERROR_RESPONSES, ApiError, error_response
from orchestrator.api.jobs import ID_PATTERN
from orchestrator.api.schemas import BatchCreatedOut, BatchIn, BatchOut
from orchestrator.domain.resource import batch_resource
from orchestrator.services.batches import BatchSpec, submit_batch
from orchestrator.services.submit import SubmitRejected, hand_out_launches

PREFIX = "/v1/batches"
router = APIRouter(prefix=PREFIX, tags=["batches"], responses=ERROR_RESPONSES)
BatchId = Annotated[str, Path(pattern=ID_PATTERN)]


@router.post("", status_code=201, response_model=BatchCreatedOut,
             responses={200: {"model": BatchCreatedOut,
                              "description": "an earlier batch with this key"}})
def submit(
    body: BatchIn,
    response: Response,
    background: BackgroundTasks,
    token: TokenDep,
    container: ContainerDep,
    # A header is a string or absent: null is no value it can have.
    idempotency_key: Annotated[str | SkipJsonSchema[None], Header(max_length=255)] = None,
) -> dict[str, Any]:
    """Submit 1 to 10,000 jobs at once: all are accepted, or none (a problem with any job
    is a 422 naming each bad job by its index, `jobs[17]`). Each job takes the `defaults`
    it does not set itself, the batch's `labels` under its own, and the batch's
    `callback_url` if it names none. The same `Idempotency-Key` (header or field) and body
    again returns the first batch with 200; the same key with another body is a 409.
    More than 10,000 jobs, or a body over `[jobs] max_batch_bytes`, is a 413."""
    key = idempotency_key or body.idempotency_key
    if idempotency_key and body.idempotency_key and idempotency_key != body.idempotency_key:
        raise ApiError(400, "idempotency_key_mismatch",
                       "the Idempotency-Key header and the idempotency_key field differ")
    spec = BatchSpec(
        jobs=[job.model_dump(exclude_unset=True) for job in body.jobs],
        defaults=body.defaults.model_dump(exclude_unset=True),
        callback_url=body.callback_url, labels=body.labels, idempotency_key=key)
    try:
        submitted = submit_batch(spec, container.deps, owner=token.id, hand_out=False)
    except SubmitRejected as rejected:
        raise ApiError(rejected.status, rejected.code, rejected.message) from None
    if submitted.created:
        # After the answer: the jobs are committed, and sending thousands of messages to
        # the broker need not hold it up (if this process dies first, the sweep sends them).
        background.add_task(hand_out_launches, submitted.jobs, container.deps)
    else:
        response.status_code = 200
    return {"id": submitted.batch.id, "job_ids": submitted.job_ids}


@router.get("/{batch_id}", response_model=BatchOut)
def get_batch(batch_id: BatchId, _: TokenDep, container: ContainerDep) -> dict[str, Any]:
    """The batch's jobs counted by state; `done` once every job has ended. List the jobs
    themselves with `GET /v1/jobs?batch_id=…`."""
    batch = container.store.get_batch(batch_id)
    if batch is None:
        raise ApiError(404, "not_found", f"no batch with id '{batch_id}'")
    return batch_resource(batch, container.store.batch_progress(batch_id))


class BatchBodyLimit:
    """ASGI middleware: the body of ``POST /v1/batches`` is read here, up to ``limit``
    bytes, and handed on whole; a larger one is a 413 as soon as that is known."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != PREFIX:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.limit:
            await self._too_large(declared, scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(f"over {self.limit}", scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, size: str, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "too_large",
            f"the batch's body is {size} bytes; the limit is {self.limit} "
            f"([jobs] max_batch_bytes): send the jobs in several batches, or pass large "
            "inputs by reference (a file URL)")
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
