"""The operations on jobs: submit (with files), upload, get, list, cancel, retry, wait,
events."""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from orchestrator.client.errors import ClientError
from orchestrator.client.sse import event_stream
from orchestrator.client.steps import UPLOAD_TIMEOUT_S, Flow, Op, ReadFile, fetch, pages, polled

TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


class JobCalls:
    """Jobs, and the files their inputs point to."""

    def submit(self, /, workflow: str, inputs: object = None, *,
               idempotency_key: str | None = None,
               files: Mapping[str, str | Path] | None = None,
               **fields: Any) -> Op[dict[str, Any]]:
        """Submit one job. Each of ``files`` is uploaded to the workflow's provider first
        and its URL set as ``inputs[key]`` (uploading again makes new URLs, so a retry with
        the same ``idempotency_key`` and files is a different body: a 409)."""
        if files:
            inputs = yield from self._with_files(workflow, inputs, files)
        body = {"workflow": workflow, "inputs": {} if inputs is None else inputs,
                **{k: v for k, v in fields.items() if v is not None}}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return (yield from fetch("POST", "/v1/jobs", json=body, headers=headers))

    def _with_files(self, workflow: str, inputs: object,
                    files: Mapping[str, str | Path]) -> Op[dict[str, Any]]:
        if inputs is not None and not isinstance(inputs, Mapping):
            raise ClientError("inputs must be a JSON object to take files", code="invalid_inputs")
        # Every file is checked before any is uploaded, so a typo uploads nothing.
        for key, path in files.items():
            if not Path(path).is_file():
                raise ClientError(f"file for input '{key}' not found: {path}",
                                  code="file_not_found")
        provider = workflow.partition("/")[0]
        urls = {}
        for key, path in files.items():
            urls[key] = yield from self.upload(provider, path)
        return {**(inputs or {}), **urls}

    def upload(self, provider: str, path: str | Path) -> Op[str]:
        """Upload a file to a provider that takes files; the URL to pass in inputs."""
        path = Path(path)
        content = yield ReadFile(path)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        result = yield from fetch("POST", "/v1/files", content=content,
                                  params={"provider": provider, "filename": path.name},
                                  headers={"Content-Type": content_type},
                                  timeout=UPLOAD_TIMEOUT_S)
        return str(result["url"])

    def get(self, job_id: str) -> Op[dict[str, Any]]:
        """The job."""
        return (yield from fetch("GET", _job_path(job_id)))

    def list(self, /, *, page_size: int = 100, limit: int | None = None,
             **filters: str | None) -> Flow[dict[str, Any]]:
        """Every matching job (filters: ``status``, ``workflow``, ``batch_id``, ``label``),
        newest first, following the cursor page by page; at most ``limit``."""
        params: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
        params["limit"] = page_size
        yield from pages("/v1/jobs", params, limit)

    def cancel(self, job_id: str) -> Op[dict[str, Any]]:
        """Cancel a job; the job with ``cancellation`` (``remote``, ``message``). A 409 if
        it has already ended."""
        return (yield from fetch("POST", _job_path(job_id) + "/cancel"))

    def retry(self, job_id: str) -> Op[dict[str, Any]]:
        """A new attempt of a failed, cancelled or timed-out job; the job, queued again."""
        return (yield from fetch("POST", _job_path(job_id) + "/retry"))

    def wait(self, job_id: str, *, timeout_s: float | None = None,
             interval_s: float = 0.5) -> Op[dict[str, Any]]:
        """Look at the job every ``interval_s`` until it has ended; the job.
        TimeoutError after ``timeout_s``."""
        job, ended = yield from polled(lambda: self.get(job_id),
                                       lambda job: job["status"] in TERMINAL,
                                       timeout_s, interval_s)
        if not ended:
            raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout_s}s")
        return job

    def events(self, job_id: str, *,
               last_event_id: str | None = None) -> Flow[dict[str, Any]]:
        """The job's events (``{"event", "id", "data"}``) as they happen: ``state`` changes,
        ``log`` lines, ``warning``s, and last ``end``. A stream that closes before ``end``
        (the server bounds each request) is reopened where it stopped."""
        yield from event_stream(_job_path(job_id) + "/events", last_event_id)


def _job_path(job_id: str) -> str:
    return f"/v1/jobs/{quote(job_id, safe='')}"
