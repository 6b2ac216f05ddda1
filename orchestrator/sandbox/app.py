"""The sandbox as one ASGI app: Cordage at ``/cordage``, CodeWords at ``/codewords``, stored
files at ``/files`` and ``/uploads``, the admin API at ``/_sandbox``."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from orchestrator.sandbox import codewords, cordage
from orchestrator.sandbox.admin import admin_router, files_router
from orchestrator.sandbox.gate import RAW_SEND
from orchestrator.sandbox.settings import SandboxSettings
from orchestrator.sandbox.state import SandboxState


class SandboxApp(FastAPI):
    """A FastAPI app that keeps the server's own ``send`` in the scope: the only handle on
    the connection, which the dropped-connection fault needs to close it unanswered."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND] = send
        await super().__call__(scope, receive, send)


def create_app(
    settings: SandboxSettings | None = None, *, clock: Callable[[], float] = time.time
) -> SandboxApp:
    app = SandboxApp(
        title="orchestrator sandbox provider",
        description="Speaks the Cordage and CodeWords wire protocols, with settable faults.",
        docs_url="/_sandbox/docs",
        openapi_url="/_sandbox/openapi.json",
        redoc_url=None,
    )
    app.state.sandbox = SandboxState(settings or SandboxSettings(), clock)
    app.include_router(cordage.router, prefix="/cordage", tags=["cordage"])
    app.include_router(codewords.router, prefix="/codewords", tags=["codewords"])
    app.include_router(files_router, tags=["files"])
    app.include_router(admin_router, prefix="/_sandbox", tags=["admin"])
    return app
