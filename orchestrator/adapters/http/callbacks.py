"""``HttpCallbackSender``: one POST per attempt, redirects never followed.

With a ``NetworkGuard`` each send checks the URL first and connects to the address that was
checked, never to a second DNS answer: the request goes to the IP literal, with the
original ``Host`` header and, for https, the host name for SNI and certificate checks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx

from orchestrator.adapters.http.guard import NetworkGuard, PinnedTarget, send_pinned
from orchestrator.domain.errors import retry_after_seconds
from orchestrator.domain.netguard import UnsafeUrl
from orchestrator.ports import Outgoing, SendResult

MAX_ADDRESSES_TRIED = 3


# POSTs in flight at once from one process: a callback mostly waits on its receiver, so a
# round of deliveries goes out together instead of one after another.
MAX_CONCURRENT_POSTS = 16


class HttpCallbackSender:
    def __init__(self, client: httpx.Client, timeout_s: float,
                 guard: NetworkGuard | None = None) -> None:
        """``guard``: the SSRF guard each send goes through; None sends to any URL."""
        self._client = client
        self._timeout = httpx.Timeout(timeout_s)
        self._guard = guard
        self._pool: ThreadPoolExecutor | None = None

    def send_many(self, requests: Sequence[Outgoing]) -> list[SendResult]:
        if len(requests) <= 1:
            return [self.send(r.url, r.headers, r.body) for r in requests]
        if self._pool is None:  # made on first use: after a worker's fork, not before
            self._pool = ThreadPoolExecutor(MAX_CONCURRENT_POSTS, "callbacks")
        return list(self._pool.map(lambda r: self.send(r.url, r.headers, r.body), requests))

    def send(self, url: str, headers: Mapping[str, str], body: bytes) -> SendResult:
        started = time.perf_counter()
        if self._guard is None:
            return self._post(url, dict(headers), body, started)
        try:
            target = self._guard.pin(url)
        except UnsafeUrl as exc:
            # A refused URL is one failed attempt, like a refused connection: recorded in the
            # delivery log with the reason, and nothing is sent.
            return SendResult(None, time.perf_counter() - started,
                              error=f"refused: {exc}"[:500])
        if not target.addresses:  # the guard is off
            return self._post(url, dict(headers), body, started)
        return self._post_pinned(target, headers, body, started)

    def _post_pinned(self, target: PinnedTarget, headers: Mapping[str, str], body: bytes,
                     started: float) -> SendResult:
        # A few addresses at most: each unreachable one costs a connect time-out, and an
        # attempt must end well within the sweep's grace or it is handed out twice.
        try:
            response = send_pinned(target, headers, lambda url, pinned, extensions:
                                   self._request(url, pinned, body, extensions),
                                   most=MAX_ADDRESSES_TRIED)
        except Exception as exc:  # noqa: BLE001
            return _failure(exc, started)
        return _result(response, started)

    def _post(self, url: str, headers: dict[str, str], body: bytes, started: float,
              extensions: dict[str, str] | None = None) -> SendResult:
        try:
            response = self._request(url, headers, body, extensions)
        except Exception as exc:  # noqa: BLE001
            # Whatever went wrong (a refused connection, or a URL httpx cannot even use) is
            # one failed attempt, recorded; never a crash that leaves the delivery looping.
            return _failure(exc, started)
        return _result(response, started)

    def _request(self, url: str, headers: dict[str, str], body: bytes,
                 extensions: dict[str, str] | None) -> httpx.Response:
        return self._client.post(url, content=body, headers=headers, timeout=self._timeout,
                                 follow_redirects=False, extensions=extensions or None)


def _result(response: httpx.Response, started: float) -> SendResult:
    latency = time.perf_counter() - started
    if 200 <= response.status_code < 300:
        return SendResult(response.status_code, latency)
    wait = retry_after_seconds(response.headers, None, time.time())
    reason = f"HTTP {response.status_code}: {response.text[:200]}"
    return SendResult(response.status_code, latency, error=reason, retry_after=wait)


def _failure(exc: Exception, started: float) -> SendResult:
    return SendResult(None, time.perf_counter() - started,
                      error=f"{type(exc).__name__}: {exc}"[:500])
