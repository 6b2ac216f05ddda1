"""``HttpCallbackSender``: one POST per attempt, redirects never followed.

With a ``NetworkGuard`` each send checks the URL first and connects to the address that was
checked, never to a second DNS answer: the request goes to the IP literal, with the
original ``Host`` header and, for https, the host name for SNI and certificate checks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

import httpx

from orchestrator.adapters.http.guard import NetworkGuard, PinnedTarget, send_pinned
from orchestrator.domain.errors import retry_after_seconds
from orchestrator.domain.netguard import UnsafeUrl
from orchestrator.ports import Outgoing, SendResult

MAX_ADDRESSES_TRIED = 3


# POSTs in flight at once from one process: a callback mostly waits on its receiver, so a
# round of deliveries goes out together instead of one after another.
MAX_CONCURRENT_POSTS = 16
# Connecting gets this long at most (each of up to MAX_ADDRESSES_TRIED addresses), and
# of an answer's body only this much is read: a receiver cannot hold a send for long.
CONNECT_S = 5.0
MAX_BODY_READ = 1024


class HttpCallbackSender:
    def __init__(self, client: httpx.Client, timeout_s: float,
                 guard: NetworkGuard | None = None) -> None:
        """``guard``: the SSRF guard each send goes through; None sends to any URL."""
        self._client = client
        self._timeout_s = timeout_s
        self._timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, CONNECT_S))
        self._guard = guard
        self._pool: ThreadPoolExecutor | None = None

    def send_many(self, requests: Sequence[Outgoing], *,
                  within_s: float | None = None) -> list[SendResult]:
        """All at once (up to MAX_CONCURRENT_POSTS); a send not answered ``within_s`` is
        a failed attempt, so a round ends in time whatever its receivers do."""
        if self._pool is None:  # made on first use: after a worker's fork, not before
            self._pool = ThreadPoolExecutor(MAX_CONCURRENT_POSTS, "callbacks")
        started = time.perf_counter()
        futures = [self._pool.submit(self._safe_send, r) for r in requests]
        wait(futures, timeout=within_s)
        return [f.result() if f.done() else SendResult(
                    None, time.perf_counter() - started,
                    error=f"no answer within {within_s:g} s")
                for f in futures]

    def _safe_send(self, request: Outgoing) -> SendResult:
        started = time.perf_counter()
        try:
            return self.send(request.url, request.headers, request.body)
        except Exception as exc:  # noqa: BLE001 - one bad send never sinks the round
            return _failure(exc, started)

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
            answer = send_pinned(target, headers, lambda url, pinned, extensions:
                                 self._request(url, pinned, body, extensions),
                                 most=MAX_ADDRESSES_TRIED)
            return _result(answer, started)
        except Exception as exc:  # noqa: BLE001
            return _failure(exc, started)

    def _post(self, url: str, headers: dict[str, str], body: bytes, started: float,
              extensions: dict[str, str] | None = None) -> SendResult:
        try:
            return _result(self._request(url, headers, body, extensions), started)
        except Exception as exc:  # noqa: BLE001
            # Whatever went wrong (a refused connection, or a URL httpx cannot even use) is
            # one failed attempt, recorded; never a crash that leaves the delivery looping.
            return _failure(exc, started)

    def _request(self, url: str, headers: dict[str, str], body: bytes,
                 extensions: dict[str, str] | None) -> _Answer:
        """The status, the headers and the start of the body: a receiver that trickles a
        long body is cut off after ``timeout_s`` of reading."""
        request = self._client.build_request("POST", url, content=body, headers=headers,
                                             timeout=self._timeout,
                                             extensions=extensions or None)
        response = self._client.send(request, stream=True, follow_redirects=False)
        try:
            deadline = time.monotonic() + self._timeout_s
            text = b""
            for chunk in response.iter_bytes():
                text += chunk
                if len(text) >= MAX_BODY_READ or time.monotonic() > deadline:
                    break
        finally:
            response.close()
        return _Answer(response.status_code, response.headers,
                       text[:MAX_BODY_READ].decode(errors="replace"))


@dataclass(frozen=True)
class _Answer:
    status_code: int
    headers: httpx.Headers
    text: str


def _result(answer: _Answer, started: float) -> SendResult:
    latency = time.perf_counter() - started
    if 200 <= answer.status_code < 300:
        return SendResult(answer.status_code, latency)
    hint = retry_after_seconds(answer.headers, None, time.time())
    reason = f"HTTP {answer.status_code}: {answer.text[:200]}"
    return SendResult(answer.status_code, latency, error=reason, retry_after=hint)


def _failure(exc: Exception, started: float) -> SendResult:
    return SendResult(None, time.perf_counter() - started,
                      error=f"{type(exc).__name__}: {exc}"[:500])
