"""The sandbox's own API: stored files (as a provider's storage would serve them) and the
admin endpoints under ``/_sandbox`` that tests and the demo use to steer and inspect it.

Neither needs the API key: file links are meant to be fetched as they are (like presigned
storage URLs), and the admin API exists only on a sandbox.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from orchestrator.sandbox.gate import error_response, state_of

files_router = APIRouter()
admin_router = APIRouter()


@files_router.get("/files/{file_id}")
async def download(request: Request, file_id: str) -> Response:
    state = state_of(request)
    state.stats.requests["files.download"] += 1
    stored = state.files.get(file_id)
    if stored is None or stored.content is None:
        return error_response(404, "File not found (it may have expired)")
    return Response(
        stored.content,
        media_type=stored.content_type,
        headers={"Content-Disposition": f'attachment; filename="{stored.name}"'},
    )


@files_router.put("/uploads/{file_id}")
async def upload(request: Request, file_id: str) -> Response:
    state = state_of(request)
    state.stats.requests["files.upload"] += 1
    stored = state.files.get(file_id)
    if stored is None:
        return error_response(404, "Upload URL not found")
    stored.content = await request.body()
    stored.content_type = request.headers.get("content-type", "application/octet-stream")
    return JSONResponse({"size": len(stored.content)})


@admin_router.get("/runs")
async def runs(
    request: Request, protocol: str | None = None, workflow: str | None = None
) -> Response:
    """Every run started since the last reset, oldest first, with how often it was started."""
    state = state_of(request)
    now = state.now()
    selected = [
        run.describe(now)
        for run in state.runs.values()
        if (protocol is None or run.protocol == protocol)
        and (workflow is None or run.workflow == workflow)
    ]
    return JSONResponse({"runs": selected})


@admin_router.get("/stats")
async def stats(request: Request) -> Response:
    return JSONResponse(state_of(request).stats.as_dict())


@admin_router.get("/settings")
async def get_settings(request: Request) -> Response:
    return JSONResponse(state_of(request).settings.model_dump())


@admin_router.put("/settings")
async def put_settings(request: Request, changes: Annotated[dict[str, Any], Body()]) -> Response:
    """Change some settings: fields left out keep their value (``rate_limits`` merges)."""
    state = state_of(request)
    try:
        updated = state.settings.merged(changes)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return error_response(422, f"invalid sandbox settings: {problems}")
    state.apply_settings(updated)
    return JSONResponse(updated.model_dump())


@admin_router.post("/reset")
async def reset(request: Request, settings: bool = False) -> Response:
    """Forget runs, files, counters and limiter windows; ``?settings=true`` also restores
    the settings the server started with."""
    state = state_of(request)
    state.reset(settings=settings)
    return JSONResponse({"reset": True, "settings": state.settings.model_dump()})


@admin_router.delete("/files/{file_id}")
async def expire_file(request: Request, file_id: str) -> Response:
    """Delete a stored file, as the provider's retention would."""
    if state_of(request).files.pop(file_id, None) is None:
        return error_response(404, "File not found")
    return Response(status_code=204)
