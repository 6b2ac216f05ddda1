"""``HttpCallbackSender``: one POST per attempt, redirects never followed."""

from __future__ import annotations

import time
from collections.abc import Mapping

import httpx

from orchestrator.domain.errors import retry_after_seconds
from orchestrator.ports import SendResult


class HttpCallbackSender:
    def __init__(self, client: httpx.Client, timeout_s: float) -> None:
        self._client = client
        self._timeout = httpx.Timeout(timeout_s)

    def send(self, url: str, headers: Mapping[str, str], body: bytes) -> SendResult:
        started = time.perf_counter()
        try:
            response = self._client.post(url, content=body, headers=dict(headers),
                                         timeout=self._timeout, follow_redirects=False)
        except Exception as exc:  # noqa: BLE001
            # Whatever went wrong (a refused connection, or a URL httpx cannot even use) is
            # one failed attempt, recorded; never a crash that leaves the delivery looping.
            return SendResult(None, time.perf_counter() - started,
                              error=f"{type(exc).__name__}: {exc}"[:500])
        latency = time.perf_counter() - started
        if 200 <= response.status_code < 300:
            return SendResult(response.status_code, latency)
        wait = retry_after_seconds(response.headers, None, time.time())
        reason = f"HTTP {response.status_code}: {response.text[:200]}"
        return SendResult(response.status_code, latency, error=reason, retry_after=wait)
