"""How a remote runtime's answers are classified.

Every provider adapter turns what the wire gave it into one of these, so the services decide
on four kinds of trouble and never on status codes::

    ProviderError
    ├── RateLimited(retry_after)   429: wait at least retry_after seconds, then the same again
    ├── NotReady(retry_after)      the run is not finished yet (CodeWords 408/504 on /result)
    ├── Transient(request_sent)    5xx, connection or read errors, malformed bodies: retry later
    └── Permanent(code)            refused key, unknown workflow, bad request: retrying won't help

``Transient.request_sent`` tells a launch whether the start request may have reached the
runtime (a read time-out after the body went out) or certainly did not (connection refused).
Only the latter may be retried blindly on a runtime without idempotent starts.

``classify_response`` is the one place HTTP status codes and headers become these kinds; it
is pure (the clock comes in as ``now``) so it is tested from recorded responses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

# The longest wait any runtime may impose. A longer hint (a bug on its side, or a
# hostile one) would park work and embargo a key for years; an hour is plenty to honour.
MAX_RETRY_AFTER_S = 3600.0


class ProviderError(Exception):
    """A remote runtime did not give us what we asked for.

    ``retry_after`` is the wait the runtime asked for, if it named one (a 429's body, or a
    ``Retry-After`` on a 503): the next request of that kind is not sent before it.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = (None if retry_after is None
                            else min(max(0.0, retry_after), MAX_RETRY_AFTER_S))


class RateLimited(ProviderError):
    """The runtime refused for rate; no request of this kind before ``retry_after`` seconds."""

    retry_after: float

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, max(0.0, retry_after))


class Throttled(RateLimited):
    """Held back by our own limiter, before anything was sent: this request's turn comes in
    ``retry_after`` seconds. Not a failed try: the work waits for its turn and goes on."""


class NotReady(ProviderError):
    """The run is still going; ask again later (``retry_after`` if the runtime said when)."""

    retry_after: float

    def __init__(self, message: str = "run not finished", retry_after: float = 0.0) -> None:
        super().__init__(message, max(0.0, retry_after))


class Transient(ProviderError):
    """A failure that may pass: 5xx, a dropped connection, a truncated or malformed body."""

    def __init__(self, message: str, *, request_sent: bool = True,
                 retry_after: float | None = None) -> None:
        super().__init__(message, retry_after)
        self.request_sent = request_sent


class Permanent(ProviderError):
    """A failure retrying cannot fix. ``code`` is the job error code it becomes."""

    def __init__(self, message: str, code: str = "provider_error") -> None:
        super().__init__(message)
        self.code = code


def retry_after_seconds(
    headers: Mapping[str, str], body: object, now: float
) -> float | None:
    """The wait a response asks for, from the body's ``retry_after``, the ``Retry-After``
    header (seconds or an HTTP date) or ``X-RateLimit-Reset`` when nothing is left.

    The largest of the hints wins: a wait is a floor, and honouring the longest one is the
    only way to honour all of them.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    hints: list[float] = []
    if isinstance(body, Mapping):
        hint = _as_seconds(body.get("retry_after"))
        if hint is not None:
            hints.append(hint)
    header = lowered.get("retry-after")
    if header is not None:
        hint = _as_seconds(header)
        if hint is None:
            hint = _http_date_delay(header, now)
        if hint is not None:
            hints.append(hint)
    if lowered.get("x-ratelimit-remaining", "").strip() == "0":
        hint = _as_seconds(lowered.get("x-ratelimit-reset"))
        if hint is not None:
            hints.append(hint)
    return min(max(hints), MAX_RETRY_AFTER_S) if hints else None


def _as_seconds(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


def _http_date_delay(value: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:  # "-0000" or no zone: HTTP dates are GMT (RFC 9110)
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None  # not a date we can use (year 99999999999, say): no hint


def parse_json_body(content: bytes) -> object:
    """Decode a JSON body, treating a truncated or malformed one as transient trouble."""
    try:
        return json.loads(content) if content else None
    except UnicodeDecodeError:
        raise Transient("response body is not valid UTF-8") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge ints, deep nesting
        detail = getattr(exc, "msg", type(exc).__name__)
        raise Transient(f"malformed JSON in response ({detail})") from None


def error_text(body: object, fallback: str) -> str:
    """The runtime's own error message if the body carries one (``{"error": "..."}``)."""
    if isinstance(body, Mapping):
        for key in ("error", "detail", "message"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:500]
    return fallback


def classify_response(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    now: float,
    *,
    provider: str,
    not_ready_statuses: frozenset[int] = frozenset(),
) -> ProviderError | None:
    """Classify a response: ``None`` for a 2xx, else the error it amounts to.

    ``not_ready_statuses`` are the codes a runtime uses for "not finished yet" on this
    endpoint (CodeWords' 408 and 504 on ``/result``).
    """
    if 200 <= status < 300:
        return None
    try:
        body = json.loads(content) if content else None
    except (ValueError, RecursionError):  # includes UnicodeDecodeError and JSONDecodeError
        body = None
    wait = retry_after_seconds(headers, body, now)
    if status in not_ready_statuses:
        return NotReady(f"{provider}: run not finished (HTTP {status})", wait or 0.0)
    if status == 429:
        message = error_text(body, "rate limit exceeded")
        return RateLimited(f"{provider}: {message} (HTTP 429)", wait if wait is not None else 1.0)
    if status in (401, 403):
        return Permanent(
            f"provider '{provider}' refused the API key (HTTP {status}); check its api_key "
            "setting and that the key is still valid",
            code="provider_auth",
        )
    if status >= 500 or status == 408:
        return Transient(f"{provider}: HTTP {status} {error_text(body, 'server error')}",
                         retry_after=wait)
    if status == 404:
        return Permanent(
            f"{provider}: not found (HTTP 404): {error_text(body, 'unknown workflow or run')}",
            code="provider_not_found",
        )
    return Permanent(f"{provider}: HTTP {status}: {error_text(body, 'request refused')}")
