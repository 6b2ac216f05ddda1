"""The REST API: ``create_app(settings)`` builds it; ``orchestrator api`` serves it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from orchestrator.api import (
    artifacts,
    batches,
    callbacks,
    errors,
    events,
    files,
    jobs,
    metrics,
    providers,
    schedules,
)
from orchestrator.api.deps import ContainerDep
from orchestrator.api.schemas import Health
from orchestrator.bootstrap import Container
from orchestrator.config import Settings

MAX_BODY_SLACK = 64 * 1024
# Paths whose routes read their bodies in chunks and enforce limits of their own.
BODY_LIMIT_EXEMPT = frozenset({files.router.prefix, batches.PREFIX})


def create_app(settings: Settings, container: Container | None = None) -> FastAPI:
    container = container or Container(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        container.close()

    app = FastAPI(title="orchestrator", version="0.1.0", lifespan=lifespan,
                  description="A durable job orchestrator for remote workflow runtimes.")
    app.state.container = container
    errors.install(app)
    app.include_router(jobs.router)
    app.include_router(artifacts.router)
    app.include_router(batches.router)
    app.include_router(events.router)
    app.include_router(files.router)
    app.include_router(schedules.router)
    app.include_router(callbacks.router)
    app.include_router(providers.router)
    app.include_router(metrics.router)
    _add_body_limit(app, settings.jobs.max_input_bytes + MAX_BODY_SLACK)
    app.add_middleware(batches.BatchBodyLimit, limit=settings.jobs.max_batch_bytes)
    _add_health(app)
    return app


def _add_body_limit(app: FastAPI, limit: int) -> None:
    @app.middleware("http")
    async def refuse_huge_bodies(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length", "")
        exempt = request.url.path.rstrip("/") in BODY_LIMIT_EXEMPT
        if not exempt and length.isdigit() and int(length) > limit:
            return errors.error_response(
                413, "too_large", f"the request body is {length} bytes; the limit is {limit}")
        return await call_next(request)


def _add_health(app: FastAPI) -> None:
    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Health, tags=["health"],
             responses={503: {"model": Health}})
    def readyz(container: ContainerDep) -> JSONResponse:
        """The database and Redis are reachable."""
        checks = {"database": _check_database(container), "redis": _check_redis(container)}
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ready else "unavailable", "checks": checks},
                            status_code=200 if ready else 503)


def _check_database(container: Container) -> str:
    try:
        with container.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means not ready; the message says which
        return f"error: {type(exc).__name__}"
    return "ok"


def _check_redis(container: Container) -> str:
    try:
        with container.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"
