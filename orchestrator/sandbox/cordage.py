"""The Cordage webhook API, as ``cordage-api.md`` and the providers README describe it.

Mounted at ``{root}/cordage``. ``outputs`` is always a list: the file URLs for ``files``,
otherwise a one-element list holding the workflow's result object (for ``echo``, the
inputs), since Cordage documents no other shape. A failed run carries ``error``.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from orchestrator.sandbox.gate import error_response, guarded, read_inputs, root_url, state_of
from orchestrator.sandbox.state import Run, iso
from orchestrator.sandbox.workflows import WORKFLOWS

router = APIRouter()


def run_view(run: Run, now: float, root: str, *, with_inputs: bool = False) -> dict[str, object]:
    status = run.status(now)
    finished = run.finished_at(now)
    view: dict[str, object] = {
        "run_id": run.run_id,
        "status": status,
        "created_at": iso(run.created_at),
        "completed_at": iso(finished) if finished is not None else None,
        "outputs": [],
    }
    if status == "completed":
        view["outputs"] = run.file_urls(root) if run.makes_files else [run.plan.result]
    elif status == "failed":
        view["error"] = run.plan.error
    if with_inputs:
        # Not documented by Cordage: the sandbox lists inputs to help reconcile a trigger
        # whose answer was lost. Do not rely on it against the real runtime.
        view["inputs"] = run.inputs
    return view


def _find_run(request: Request, webhook_key: str, run_id: str) -> Run | Response:
    if webhook_key not in WORKFLOWS:
        return error_response(404, "Webhook not found")
    run = state_of(request).runs.get(run_id)
    if run is None or run.protocol != "cordage" or run.workflow != webhook_key:
        return error_response(404, "Run not found")
    return run


@router.post("/{webhook_key}/trigger")
@guarded("cordage.trigger")
async def trigger(webhook_key: str, request: Request) -> Response:
    inputs, refusal = await read_inputs(request)
    if refusal is not None:
        return refusal
    state = state_of(request)
    run = state.start_run(
        "cordage", webhook_key, inputs, correlation_id=request.headers.get("x-correlation-id")
    )
    if run is None:
        return error_response(404, "Webhook not found")
    return JSONResponse(
        {
            "run_id": run.run_id,
            "status": run.status(state.now()),
            "message": "Workflow started",
            "node_count": 3,
        }
    )


@router.get("/{webhook_key}/runs")
@guarded("cordage.list_runs")
async def list_runs(
    webhook_key: str, request: Request, limit: int = Query(100, ge=1, le=1000)
) -> Response:
    if webhook_key not in WORKFLOWS:
        return error_response(404, "Webhook not found")
    state = state_of(request)
    now, root = state.now(), root_url(request)
    runs = state.runs_of("cordage", webhook_key)[:limit]
    return JSONResponse({"runs": [run_view(r, now, root, with_inputs=True) for r in runs]})


@router.get("/{webhook_key}/runs/{run_id}")
@guarded("cordage.get_run")
async def get_run(webhook_key: str, run_id: str, request: Request) -> Response:
    found = _find_run(request, webhook_key, run_id)
    if isinstance(found, Response):
        return found
    return JSONResponse(run_view(found, state_of(request).now(), root_url(request)))


@router.post("/{webhook_key}/runs/{run_id}/kill")
@guarded("cordage.kill")
async def kill_run(webhook_key: str, run_id: str, request: Request) -> Response:
    found = _find_run(request, webhook_key, run_id)
    if isinstance(found, Response):
        return found
    now = state_of(request).now()
    if found.finished_at(now) is not None:
        # Killing a finished run is harmless here: the answer says how it ended.
        message = "Run already finished"
    else:
        found.cancelled_at = now
        message = "Run cancelled"
    return JSONResponse({"run_id": found.run_id, "status": found.status(now), "message": message})
