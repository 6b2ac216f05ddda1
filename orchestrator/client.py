"""A Python client for the REST API: ``from orchestrator.client import Client``.

    client = Client()                       # ORCHESTRATOR_URL, ORCHESTRATOR_TOKEN
    job = client.submit("sandbox/echo", {"hello": "world"})
    job = client.wait(job["id"], timeout_s=60)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


class ClientError(Exception):
    """The API answered with an error, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "error") -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout_s: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = (url or os.environ.get("ORCHESTRATOR_URL") or DEFAULT_URL).rstrip("/")
        token = token or os.environ.get("ORCHESTRATOR_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s,
                                  transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(
                f"cannot reach the API at {self.url} ({type(exc).__name__}); is "
                "'orchestrator api' (or 'orchestrator dev') running? Set ORCHESTRATOR_URL "
                "to its address") from None
        if response.status_code >= 400:
            raise _error(response)
        return response.json()

    def submit(self, workflow: str, inputs: object = None, *,
               idempotency_key: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"workflow": workflow, "inputs": {} if inputs is None else inputs,
                **{k: v for k, v in fields.items() if v is not None}}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        result: dict[str, Any] = self._call("POST", "/v1/jobs", json=body, headers=headers)
        return result

    def get(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}")
        return result

    def list(self, *, page_size: int = 100, limit: int | None = None,
             **filters: str | None) -> Iterator[dict[str, Any]]:
        """Every matching job, newest first, following the cursor page by page."""
        params: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
        params["limit"] = page_size
        seen = 0
        while True:
            page = self._call("GET", "/v1/jobs", params=params)
            for item in page["items"]:
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def wait(self, job_id: str, *, timeout_s: float | None = None,
             interval_s: float = 0.5) -> dict[str, Any]:
        """Poll until the job is terminal; TimeoutError after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.get(job_id)
            if job["status"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout_s}s")
            time.sleep(interval_s)


def _error(response: httpx.Response) -> ClientError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        error = body["error"]
        return ClientError(str(error.get("message")), status=response.status_code,
                           code=str(error.get("code")))
    return ClientError(f"HTTP {response.status_code}: {response.text[:200]}",
                       status=response.status_code)
