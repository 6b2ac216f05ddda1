"""What every HTTP provider adapter shares: one ``send`` that turns the wire into values or
``ProviderError``s, so adapters hold only their protocol's paths and shapes.

::

    httpx ConnectError / ConnectTimeout / PoolTimeout   → Transient(request_sent=False)
    httpx ReadTimeout / ReadError / WriteError /
          RemoteProtocolError / other transport errors  → Transient(request_sent=True)
    non-2xx response                                    → classify_response(...)
    2xx with a truncated or malformed JSON body         → Transient (parse_json_body)

Every request names its operation (``trigger``, ``read``, ``cancel``, ``file``). A
``retry_after`` the runtime gives is recorded in the shared ``Embargoes`` for this API key and
operation, and until it has passed no process sends that kind of request: ``send`` raises
``RateLimited`` at once instead.

With a ``metrics`` sink, every request held back by an embargo, every 429 and the duration
of every ``read`` (poll) request is recorded under the provider's name.

The API key goes into the ``Authorization`` header of each request and nowhere else: it is
not kept on the (shared) client, and every message is scrubbed of it before it is raised,
because a runtime may echo what it was sent in an error body.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx

from orchestrator.domain.errors import (
    NotReady,
    Permanent,
    ProviderError,
    RateLimited,
    Throttled,
    Transient,
    classify_response,
    parse_json_body,
)
from orchestrator.domain.ratelimit import RateLimit
from orchestrator.metrics import (
    POLL_LATENCY,
    RATE_LIMIT_WAITS,
    RESPONSES_429,
    THROTTLED,
    Metrics,
    NullMetrics,
)
from orchestrator.ports import Embargoes, RateLimiter

# Failing these, the request certainly never reached the runtime: safe to send again.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_NO_BODY = object()
REDACTED = "[redacted]"
# The operation whose request durations are the poll latency histogram.
POLL_OPERATION = "read"


def http_urls(values: object) -> list[str]:
    """The http(s) URLs among ``values`` (a list), in order, each once."""
    if not isinstance(values, list):
        return []
    urls = (v.strip() for v in values if isinstance(v, str))
    return list(dict.fromkeys(u for u in urls if u.lower().startswith(("http://", "https://"))))


def segment(value: str) -> str:
    """One URL path segment, quoted so an id can never add or climb path levels."""
    return quote(value, safe="")


class HttpProvider:
    """Base of the HTTP adapters. The ``client`` belongs to the caller (usually the
    process's shared one), so ``close`` leaves it open."""

    name: str
    idempotent_start: bool = False
    supports_cancel: bool = False

    def __init__(self, name: str, base_url: str, api_key: str, client: httpx.Client, *,
                 embargoes: Embargoes | None = None, metrics: Metrics | None = None,
                 limiter: RateLimiter | None = None,
                 limits: Mapping[str, RateLimit | None] | None = None) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._client = client
        self._embargoes = embargoes
        self._limiter = limiter
        self.limits = {op: lim for op, lim in (limits or {}).items() if lim is not None}
        self._metrics: Metrics = metrics or NullMetrics()
        # Names the API key in shared state without revealing it.
        self.key_id = hashlib.sha256(f"{self.base_url}\0{api_key}".encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    def authorization(self, api_key: str) -> str:
        """The ``Authorization`` header value for this runtime."""
        return f"Bearer {api_key}"

    def close(self) -> None:
        """Nothing to release: the HTTP client is shared and closed by its owner."""

    def output_files(self, outputs: object) -> list[str]:
        """The output files a completed run points to (none unless the protocol says)."""
        return []

    def send(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        body: object = _NO_BODY,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        not_ready_statuses: frozenset[int] = frozenset(),
        timeout: httpx.Timeout | None = None,
    ) -> object:
        """Send one request and return its decoded JSON body (``None`` when empty).

        Raises ``ProviderError``: ``NotReady`` for a status in ``not_ready_statuses``,
        else whatever ``classify_response`` or the transport failure amounts to;
        ``RateLimited`` without sending anything while ``operation`` is embargoed.
        """
        self.check_embargo(operation)
        self.take_turn(operation)
        started = time.perf_counter()
        try:
            response = self._transmit(method, path, body, params, headers, timeout)
        finally:
            if operation == POLL_OPERATION:
                self._metrics.observe(POLL_LATENCY, {"provider": self.name},
                                      time.perf_counter() - started)
        self._count_429(operation, response.status_code)
        error = classify_response(
            response.status_code,
            response.headers,
            response.content,
            time.time(),
            provider=self.name,
            not_ready_statuses=not_ready_statuses,
        )
        if error is not None:
            self.note_retry_after(operation, error)
            raise self._redacted(error)
        try:
            return parse_json_body(response.content)
        except Transient as exc:
            raise Transient(f"{self.name}: {method} {path}: {exc.message}") from None

    def check_embargo(self, operation: str) -> None:
        """Raise ``RateLimited`` if a wait the runtime asked for has not passed yet."""
        if self._embargoes is None:
            return
        until = self._embargoes.until(self.key_id, operation)
        wait = 0.0 if until is None else until - time.time()
        if wait > 0:
            self._metrics.count(RATE_LIMIT_WAITS, {"provider": self.name, "operation": operation})
            raise RateLimited(
                f"{self.name}: '{operation}' requests wait {wait:.1f}s more, as the runtime "
                "asked (not sent)", retry_after=wait)

    def take_turn(self, operation: str) -> None:
        """Take this request's turn under our own limit for the operation, shared by every
        process; raise ``Throttled`` (nothing sent) with the wait until the next turn. Taken
        last before sending, so the turn's time is as close to the request's as it can be."""
        limit = self.limits.get(operation)
        if self._limiter is None or limit is None:
            return
        wait = self._limiter.acquire(self.key_id, operation, limit)
        if wait > 0:
            self._metrics.count(THROTTLED, {"provider": self.name, "operation": operation})
            raise Throttled(f"{self.name}: '{operation}' is at its limit of {limit}; the next "
                            f"turn is in {wait:.2f}s (not sent)", retry_after=wait)

    def note_retry_after(self, operation: str, error: ProviderError) -> None:
        """Share a wait the runtime asked for with every process. A run that is not ready
        yet says nothing about the key, so it embargoes nothing."""
        if isinstance(error, NotReady):
            return
        if self._embargoes is not None and error.retry_after:
            self._embargoes.impose(self.key_id, operation, time.time() + error.retry_after)

    def _count_429(self, operation: str, status_code: int) -> None:
        if status_code == 429:
            self._metrics.count(RESPONSES_429, {"provider": self.name, "operation": operation})

    @contextmanager
    def stream(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[httpx.Response]:
        """``send`` for an answer read as it arrives (a log stream): yields the open 2xx
        response. Errors map as in ``send``; a transport failure while the caller reads the
        body becomes ``Transient`` (the request was sent)."""
        self.check_embargo(operation)
        self.take_turn(operation)
        request_headers = {"Authorization": self.authorization(self._api_key), **(headers or {})}
        with self._wire_errors(method, path), self._client.stream(
                method, self.base_url + path, params=params, headers=request_headers) as response:
            if not 200 <= response.status_code < 300:
                self._count_429(operation, response.status_code)
                response.read()  # the error body says why, and may carry a retry_after
                error = classify_response(response.status_code, response.headers,
                                          response.content, time.time(), provider=self.name)
                if error is not None:
                    self.note_retry_after(operation, error)
                    raise self._redacted(error)
            yield response

    def _transmit(
        self,
        method: str,
        path: str,
        body: object,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        timeout: httpx.Timeout | None,
    ) -> httpx.Response:
        request_headers = {"Authorization": self.authorization(self._api_key)}
        request_headers["Accept"] = "application/json"
        content: bytes | None = None
        if body is not _NO_BODY:
            content = json.dumps(body, separators=(",", ":")).encode()
            request_headers["Content-Type"] = "application/json"
        request_headers.update(headers or {})
        options: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        with self._wire_errors(method, path):
            return self._client.request(
                method,
                self.base_url + path,
                content=content,
                params=params,
                headers=request_headers,
                **options,
            )
        raise AssertionError("unreachable")  # for type checkers: the block returns or raises

    @contextmanager
    def _wire_errors(self, method: str, path: str) -> Iterator[None]:
        """httpx's transport failures as ``ProviderError`` values (see the module doc)."""
        try:
            yield
        except httpx.LocalProtocolError:
            # The request could not even be formed (a header value with a line break, say).
            # Its text would quote the offending header, which may be the key: not kept.
            raise Permanent(f"{self.name}: the request to {self.base_url} could not be "
                            "formed; check the provider's api_key and base_url for stray "
                            "characters", code="provider_config") from None
        except httpx.UnsupportedProtocol as exc:
            raise self._redacted(
                Permanent(f"{self.name}: cannot call {self.base_url!r} ({exc}); check base_url")
            ) from None
        except NOT_SENT_ERRORS as exc:
            raise self._transport_error(method, path, exc, sent=False) from None
        except httpx.TransportError as exc:
            raise self._transport_error(method, path, exc, sent=True) from None

    def _transport_error(
        self, method: str, path: str, exc: Exception, *, sent: bool
    ) -> ProviderError:
        # ``from None`` above: the httpx exception holds the request, headers and all.
        what = "no answer (the request may have been received)" if sent else "could not connect"
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        error = Transient(f"{self.name}: {method} {path}: {what} ({detail})", request_sent=sent)
        return self._redacted(error)

    def _redacted(self, error: ProviderError) -> ProviderError:
        """Scrub the key, as sent and in its escaped form, from the error's text."""
        for form in {self._api_key, repr(self._api_key)[1:-1]} - {""}:
            if form in error.message:
                error.message = error.message.replace(form, REDACTED)
                error.args = (error.message,)
        return error

    def unexpected(self, what: str) -> Transient:
        """A 2xx answer that lacks what the protocol promises: treated like a malformed
        body, and as possibly having taken effect."""
        return Transient(f"{self.name}: unexpected answer: {what}", request_sent=True)

    def field(self, body: object, key: str, what: str) -> str:
        """A non-empty string field of a JSON object answer."""
        value = body.get(key) if isinstance(body, Mapping) else None
        if not isinstance(value, str) or not value:
            raise self.unexpected(f"the {what} answer has no '{key}'")
        return value
