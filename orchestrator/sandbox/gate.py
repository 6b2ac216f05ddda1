"""What every protocol request passes through: latency, auth, faults and the rate limit.

Routes declare their operation with ``@guarded("cordage.trigger")``; the gate counts the
request, may refuse it (401, an injected 503 or 429, the real rate limit, a dropped
connection) and, once the route has answered, may lose or mangle the answer. Cordage
answers always carry the ``X-RateLimit-*`` headers of their bucket.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from orchestrator.domain.ratelimit import parse_rate_limit
from orchestrator.sandbox.limits import Verdict
from orchestrator.sandbox.state import SandboxState

# operation → rate-limit bucket (a field of RateLimits)
OPERATIONS = {
    "cordage.trigger": "cordage_trigger",
    "cordage.get_run": "cordage_read",
    "cordage.list_runs": "cordage_read",
    "cordage.kill": "cordage_kill",
    "codewords.provision": "codewords_provision",
    "codewords.run_async": "codewords_start",
    "codewords.run": "codewords_start",
    "codewords.result": "codewords_read",
    "codewords.request": "codewords_read",
    "codewords.logs": "codewords_read",
    "codewords.file": "codewords_file",
}
RAW_SEND = "sandbox.raw_send"  # scope key where SandboxApp keeps the server's own send

Handler = Callable[..., Awaitable[Response]]
cached_rate = functools.lru_cache(maxsize=64)(parse_rate_limit)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def state_of(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def root_url(request: Request) -> str:
    """The URL prefix for links the sandbox hands out (file downloads, uploads)."""
    configured = state_of(request).settings.public_url
    return (configured or str(request.base_url)).rstrip("/")


def guarded(operation: str) -> Callable[[Handler], Handler]:
    """Run a protocol route behind the gate. The route must take ``request: Request``."""
    bucket = OPERATIONS[operation]
    protocol = operation.partition(".")[0]

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(**kwargs: Any) -> Response:
            request: Request = kwargs["request"]
            state = state_of(request)
            refusal, verdict = await _admit(state, request, operation, bucket, protocol)
            response = refusal or await _answer(state, request, await handler(**kwargs))
            if protocol == "cordage":
                verdict = verdict or _peek(state, bucket)
                if verdict is not None:
                    response.headers.update(verdict.headers())
            return response

        return wrapper

    return decorate


async def _admit(
    state: SandboxState, request: Request, operation: str, bucket: str, protocol: str
) -> tuple[Response | None, Verdict | None]:
    """A refusal to send instead of handling the request, or None; and the limiter's verdict."""
    settings = state.settings
    if settings.latency_s:
        await asyncio.sleep(settings.latency_s)
    state.stats.requests[operation] += 1
    if not _authorized(request.headers.get("authorization", ""), settings.api_key, protocol):
        state.stats.auth_failures += 1
        return error_response(401, "Invalid or missing API key"), None
    now = state.now()
    refused_at = state.refused_at.get(bucket, 0.0)
    if now < state.not_before.get(bucket, 0.0) and (
            now - refused_at > settings.in_flight_allowance_s):
        state.stats.early_requests += 1
        state.stats.early_by_bucket[bucket] += 1
    fault = await _injected_refusal(state, request, bucket, now)
    if fault is not None:
        return fault, None
    text = getattr(settings.rate_limits, bucket)
    if not text:
        return None, None
    verdict = state.limiter.check(bucket, cached_rate(text), now)
    if verdict.allowed:
        return None, verdict
    state.stats.rate_limited[bucket] += 1
    return too_many_requests(state, bucket, verdict.reset_s, now), verdict


async def _injected_refusal(
    state: SandboxState, request: Request, bucket: str, now: float
) -> Response | None:
    """A fault that refuses the request before it has any effect, if one is drawn."""
    settings = state.settings
    if _chance(state, settings.p_drop):
        state.stats.injected["drop"] += 1
        return await drop_connection(request)
    if _chance(state, settings.p_503):
        state.stats.injected["503"] += 1
        return error_response(503, "Service temporarily unavailable (injected fault)")
    if _chance(state, settings.p_429):
        state.stats.injected["429"] += 1
        return too_many_requests(state, bucket, settings.spurious_retry_after_s, now)
    return None


async def _answer(state: SandboxState, request: Request, response: Response) -> Response:
    """The route's answer, unless a fault loses or truncates it."""
    settings = state.settings
    if _chance(state, settings.p_drop_after):
        state.stats.injected["drop_after"] += 1
        return await drop_connection(request)
    is_json = response.media_type == "application/json" and hasattr(response, "body")
    if request.method == "GET" and is_json and _chance(state, settings.p_malformed):
        state.stats.injected["malformed"] += 1
        body = bytes(response.body)
        return Response(
            body[: max(1, len(body) // 2)],
            status_code=response.status_code,
            media_type="application/json",
        )
    return response


def too_many_requests(state: SandboxState, bucket: str, wait_s: float, now: float) -> Response:
    """A 429 with ``retry_after`` in the body and ``Retry-After``; remembers when it ends so
    that a request arriving before then is counted as early."""
    retry_after = math.ceil(wait_s)  # whole seconds, as Cordage documents; never shorter
    state.not_before[bucket] = max(state.not_before.get(bucket, 0.0), now + retry_after)
    state.refused_at[bucket] = now
    state.stats.responses_429 += 1
    return JSONResponse(
        {"error": "Rate limit exceeded.", "retry_after": retry_after},
        status_code=429,
        headers={"Retry-After": str(retry_after)},
    )


async def drop_connection(request: Request) -> Response:
    """Close the connection without answering. Under uvicorn the socket is closed outright;
    where there is no socket (the in-process test client) a truncated body stands in."""
    send = request.scope.get(RAW_SEND)
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "close"):
        return Response(b'{"run_id": "', status_code=200, media_type="application/json")
    transport.close()
    # Let the loop run the server's connection_lost, so that it treats the cycle as
    # disconnected and neither sends a 500 nor logs an error for the response below.
    for _ in range(3):
        await asyncio.sleep(0)
    return Response(status_code=500)


def _authorized(header: str, api_key: str, protocol: str) -> bool:
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        presented = token.strip()
    elif protocol == "codewords":  # CodeWords also takes the raw key
        presented = header.strip()
    else:
        return False
    return hmac.compare_digest(presented.encode(), api_key.encode())


def _chance(state: SandboxState, probability: float) -> bool:
    # The RNG is drawn only for an active fault, so a seeded run's workflow outcomes do
    # not depend on which faults happen to be configured at zero.
    return probability > 0 and state.rng.random() < probability


def _peek(state: SandboxState, bucket: str) -> Verdict | None:
    text = getattr(state.settings.rate_limits, bucket)
    if not text:
        return None
    return state.limiter.check(bucket, cached_rate(text), state.now(), consume=False)


async def read_inputs(request: Request) -> tuple[object, Response | None]:
    """The JSON request body as the run's inputs (empty: ``{}``), or a 400 to send."""
    body = await request.body()
    if not body.strip():
        return {}, None
    try:
        return json.loads(body), None
    except (UnicodeDecodeError, ValueError):
        return None, error_response(400, "the request body must be JSON (the run's inputs)")
