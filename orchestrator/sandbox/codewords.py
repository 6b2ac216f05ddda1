"""The CodeWords runtime API, as ``codewords-api.md`` and the official client use it.

Mounted at ``{root}/codewords``. A start carrying ``X-Provisioned-Request-Id`` of a run that
already exists starts nothing and answers with the same ``request_id``, which is what makes
a launch retry-safe. ``/result`` long-polls without blocking the loop (and gives up when the
server shuts down); without ``timeout`` it answers at once. A failed run has
``responseStatus`` 500 and ``responseJson`` ``{"error": ...}``; ``files`` answers
``{"files": [urls]}``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from orchestrator.sandbox.gate import error_response, guarded, read_inputs, root_url, state_of
from orchestrator.sandbox.state import Run, SandboxState, StoredFile, iso, iso_us, parse_iso_us
from orchestrator.sandbox.workflows import WORKFLOWS

router = APIRouter()
SYNC_LIMIT_S = 120.0  # /run answers 504 beyond this, like the real runtime's ~2 minutes


def response_of(run: Run, root: str) -> tuple[int, object]:
    """The workflow's own HTTP status and JSON output, once it has finished."""
    if run.plan.fails:
        return 500, {"error": run.plan.error}
    if run.makes_files:
        return 200, {"files": run.file_urls(root)}
    return 200, run.plan.result


def record(run: Run, now: float, root: str) -> dict[str, object]:
    finished = run.finished_at(now)
    status, output = response_of(run, root) if finished is not None else (None, None)
    return {
        "request_id": run.run_id,
        "service_id": run.workflow,
        "path": run.path,
        "status": run.status(now),
        "created_at": iso(run.created_at),
        "completed_at": iso(finished) if finished is not None else None,
        "correlation_id": run.correlation_id,
        "requestJson": run.inputs,
        "responseStatus": status,
        "responseJson": output,
        "cost": 0,
    }


@router.post("/provision-request")
@guarded("codewords.provision")
async def provision(request: Request) -> Response:
    return JSONResponse({"request_id": state_of(request).provision()})


@router.post("/run_async/{service_id}")
@router.post("/run_async/{service_id}/{path:path}")
@guarded("codewords.run_async")
async def run_async(request: Request, service_id: str, path: str = "") -> Response:
    started = await _start(request, service_id, path)
    if isinstance(started, Response):
        return started
    return JSONResponse({"request_id": started.run_id})


@router.post("/run/{service_id}")
@router.post("/run/{service_id}/{path:path}")
@guarded("codewords.run")
async def run_sync(request: Request, service_id: str, path: str = "") -> Response:
    started = await _start(request, service_id, path)
    if isinstance(started, Response):
        return started
    state = state_of(request)
    if not await _wait_until_finished(state, started, SYNC_LIMIT_S):
        return error_response(504, "the run takes longer than the synchronous limit")
    status, output = response_of(started, root_url(request))
    return JSONResponse(output, status_code=status)


async def _start(request: Request, service_id: str, path: str) -> Run | Response:
    state = state_of(request)
    if service_id not in WORKFLOWS:
        return error_response(404, f"Service '{service_id}' not found")
    inputs, refusal = await read_inputs(request)
    if refusal is not None:
        return refusal
    provisioned = request.headers.get("x-provisioned-request-id") or None
    if provisioned is not None:
        existing = state.runs.get(provisioned)
        if existing is not None:
            existing.start_requests += 1
            state.stats.duplicate_starts += 1
            return existing
        if provisioned not in state.reservations:
            return error_response(
                400, "unknown X-Provisioned-Request-Id: POST /provision-request first"
            )
    run = state.start_run(
        "codewords",
        service_id,
        inputs,
        run_id=provisioned or f"req_{uuid.uuid4().hex}",
        path=path,
        reservation=provisioned,
        correlation_id=request.headers.get("x-correlation-id"),
    )
    assert run is not None  # the service was checked above
    return run


async def _wait_until_finished(state: SandboxState, run: Run, timeout_s: float) -> bool:
    """Sleep (without blocking the loop) until the run ends or ``timeout_s`` passes."""
    deadline = state.now() + timeout_s
    for _ in range(4):  # bounded: a frozen test clock must not spin forever
        now = state.now()
        if run.finished_at(now) is not None:
            return True
        wait = min(run.ends_at, deadline) - now
        if wait <= 0 or not await state.pause(wait):
            return False
    return run.finished_at(state.now()) is not None


def _codewords_run(request: Request, request_id: str) -> Run | Response:
    run = state_of(request).runs.get(request_id)
    if run is None or run.protocol != "codewords":
        return error_response(404, "Request not found")
    return run


@router.get("/result/{request_id}")
@guarded("codewords.result")
async def result(request: Request, request_id: str, timeout: float = Query(0.0, ge=0)) -> Response:
    found = _codewords_run(request, request_id)
    if isinstance(found, Response):
        return found
    state = state_of(request)
    wait = min(timeout, state.settings.max_result_wait_s)
    if not await _wait_until_finished(state, found, wait):
        return error_response(408, "Result not ready yet; ask again")
    return JSONResponse(record(found, state.now(), root_url(request)))


@router.get("/request/{request_id}")
@guarded("codewords.request")
async def request_details(request: Request, request_id: str) -> Response:
    found = _codewords_run(request, request_id)
    if isinstance(found, Response):
        return found
    return JSONResponse(record(found, state_of(request).now(), root_url(request)))


@router.get("/logs/{request_id}")
@guarded("codewords.logs")
async def logs(request: Request, request_id: str, after: str | None = None) -> Response:
    """Newline-delimited JSON lines. With ``Accept: text/event-stream`` the answer stays
    open and streams lines as they are written until the run ends; otherwise it holds the
    lines written so far. ``after`` (a line's ``createdAt``) resumes past that line."""
    found = _codewords_run(request, request_id)
    if isinstance(found, Response):
        return found
    cursor = parse_iso_us(after) if after else None
    if after and cursor is None:
        return error_response(400, "'after' must be a createdAt value from an earlier line")
    state = state_of(request)
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(_follow(state, found, cursor), media_type="text/event-stream")
    lines, _ = _lines_after(found, state.now(), cursor)
    return Response("".join(lines), media_type="application/x-ndjson")


def _lines_after(run: Run, now: float, cursor: int | None) -> tuple[list[str], int | None]:
    out = []
    for us, level, message in run.log_lines(now):
        if cursor is None or us > cursor:
            out.append(json.dumps({"createdAt": iso_us(us), "level": level, "message": message}))
            cursor = us
    return [line + "\n" for line in out], cursor


async def _follow(state: SandboxState, run: Run, cursor: int | None) -> AsyncIterator[str]:
    while True:
        now = state.now()
        lines, cursor = _lines_after(run, now, cursor)
        for line in lines:
            yield line
        if run.finished_at(now) is not None:
            return
        if not await state.pause(min(0.25, max(0.01, run.ends_at - now))):
            return


@router.post("/file")
@guarded("codewords.file")
async def create_file(request: Request, filename: str = Query(..., min_length=1)) -> Response:
    state = state_of(request)
    file_id = uuid.uuid4().hex
    state.files[file_id] = StoredFile(file_id, filename, "application/octet-stream", None)
    root = root_url(request)
    return JSONResponse(
        {
            "upload_uri": f"{root}/uploads/{file_id}",
            "download_uri": f"{root}/files/{file_id}",
            "upload_headers": {"Content-Type": "application/octet-stream"},
        }
    )
