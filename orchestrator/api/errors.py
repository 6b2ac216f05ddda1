"""Every error as ``{"error": {"code", "message"}}`` with the fitting status; never a 500
for anything a client sent."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from orchestrator.services.endpoints import EndpointRefused

log = logging.getLogger("orchestrator.api")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after


def error_response(status: int, code: str, message: str,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    sent = dict(headers or {})
    if status == 401:
        sent.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=sent or None)


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "too_large",
               422: "invalid_request", 429: "too_many_requests"}

# Validation errors of these types (raised by a model's validator) are a 413, not a 422.
TOO_LARGE = frozenset({"batch_too_large"})

# Documented on every operation, so the schema describes the errors too.
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": code.replace("_", " ")}
    for status, code in _HTTP_CODES.items() if status in (400, 401, 404, 409, 413, 422)
}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        response = error_response(exc.status, exc.code, exc.message)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return response

    @app.exception_handler(EndpointRefused)
    async def _endpoint_refused(_: Request, exc: EndpointRefused) -> JSONResponse:
        # The callback routes let the service's refusals through: its status, code and
        # message are the answer.
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # RFC 9110: a 405 lists what the resource allows. Starlette names only the
            # methods of the first route on the path; each method here is a route of its own.
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "malformed_json",
                                  "the request body is not valid JSON")
        too_large = [e for e in errors if e.get("type") in TOO_LARGE]
        if too_large:
            return error_response(413, too_large[0]["type"], describe(too_large))
        return error_response(422, "invalid_request", describe(errors, limit=20))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal", "unexpected server error; see the API's log")


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes on the request's path (asked of the routes
    themselves: FastAPI nests included routers, whose routes are not listed flat)."""
    routes = request.app.router.routes
    return [method for method in _METHODS
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL
                   for route in routes)]


def describe(errors: object, limit: int = 10) -> str:
    parts = []
    for error in errors if isinstance(errors, (list, tuple)) else []:
        field = ""
        for part in error.get("loc", ()):
            if part == "body":
                continue
            if isinstance(part, int):  # an item, named as the batch service does: jobs[17]
                field += f"[{part}]"
            else:
                field += f".{part}" if field else str(part)
        parts.append(f"{field or 'body'}: {error.get('msg', 'invalid')}")
    more = f"; and {len(parts) - limit} more" if len(parts) > limit else ""
    return "; ".join(parts[:limit]) + more or "invalid request"
