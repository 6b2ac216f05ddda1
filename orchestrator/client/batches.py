"""The operations on batches: submit one, submit any number as consecutive batches, get,
wait; and how a long list of jobs is encoded once and cut into batches."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from orchestrator.client.errors import ClientError
from orchestrator.client.steps import (
    UPLOAD_TIMEOUT_S,
    Emit,
    Flow,
    Op,
    Request,
    UploadProgress,
    fetch,
    polled,
)

# The API's limits on one batch: jobs, and (by default, ``[jobs] max_batch_bytes``) bytes; a
# client splits a larger list by some margin under the latter.
MAX_BATCH_JOBS = 10_000
MAX_BATCH_BYTES = 48 * 1024 * 1024


class BatchCalls:
    """Batches of jobs, all accepted or none."""

    def submit_batch(self, jobs: Sequence[Mapping[str, Any]], *,
                     defaults: Mapping[str, Any] | None = None,
                     callback_url: str | None = None, labels: Mapping[str, str] | None = None,
                     idempotency_key: str | None = None,
                     on_upload: UploadProgress | None = None) -> Op[dict[str, Any]]:
        """Submit 1 to 10,000 jobs (job specs as dicts) as one batch: all are accepted or
        none. Each job takes the ``defaults`` it does not set itself, ``labels`` under its
        own, and ``callback_url`` if it names none. Returns ``{"id", "job_ids", "created"}``
        (job ids in input order; ``created`` is False when an earlier batch with the same
        ``idempotency_key`` and jobs was returned). ``on_upload(sent, total)`` is called as
        the request body's bytes go out. More jobs: ``submit_batches``."""
        batch = _BatchBody([_encoded(job) for job in jobs], defaults=defaults,
                           callback_url=callback_url, labels=labels,
                           idempotency_key=idempotency_key)
        return (yield from self._post_batch(batch, on_upload))

    def submit_batches(self, /, jobs: Sequence[Mapping[str, Any]], *,
                       idempotency_key: str | None = None, chunk_size: int = MAX_BATCH_JOBS,
                       max_bytes: int = MAX_BATCH_BYTES,
                       on_jobs_sent: UploadProgress | None = None,
                       **fields: Any) -> Flow[dict[str, Any]]:
        """Any number of jobs as consecutive batches of at most ``chunk_size`` jobs and
        ``max_bytes`` of body each, yielding each batch's answer (as ``submit_batch``, plus
        ``first``: the index of its first job) as it is accepted. With more than one batch,
        batch n's key is ``<idempotency_key>-n``, so submitting the same jobs again with the
        same key makes no new job. ``on_jobs_sent(sent, total)`` follows the upload in
        jobs (estimated within a batch). ``fields``: ``defaults``, ``callback_url``,
        ``labels``."""
        chunks = _chunked([_encoded(job) for job in jobs], chunk_size, max_bytes)
        first = 0
        for number, chunk in enumerate(chunks, start=1):
            key = idempotency_key
            if key and len(chunks) > 1:
                key = f"{key}-{number}"
            batch = _BatchBody(chunk, idempotency_key=key, **fields)
            progress = None
            if on_jobs_sent is not None:
                progress = _in_jobs(on_jobs_sent, first, len(chunk), len(jobs))
            result = yield from self._post_batch(batch, progress)
            yield Emit({**result, "first": first})
            first += len(chunk)

    def _post_batch(self, batch: _BatchBody,
                    on_upload: UploadProgress | None) -> Op[dict[str, Any]]:
        body = batch.encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        reply = yield Request("POST", "/v1/batches", content=body, headers=headers,
                              timeout=UPLOAD_TIMEOUT_S, on_upload=on_upload)
        return {**reply.body, "created": reply.status == 201}

    def get_batch(self, batch_id: str) -> Op[dict[str, Any]]:
        """The batch: ``total``, ``counts`` by state, ``done``, ``created_at``,
        ``finished_at``. Its jobs: ``list(batch_id=…)``."""
        return (yield from fetch("GET", f"/v1/batches/{quote(batch_id, safe='')}"))

    def wait_batch(self, batch_id: str, *, timeout_s: float | None = None,
                   interval_s: float = 1.0) -> Op[dict[str, Any]]:
        """Look at the batch every ``interval_s`` until every job of it has ended; the
        batch. TimeoutError after ``timeout_s``."""
        batch, done = yield from polled(lambda: self.get_batch(batch_id),
                                        lambda batch: bool(batch["done"]),
                                        timeout_s, interval_s)
        if not done:
            raise TimeoutError(f"batch {batch_id} has not ended after {timeout_s}s")
        return batch


class _BatchBody:
    """A batch request built from jobs already encoded one by one (so a long list is
    encoded once, then cut into batches by count and size)."""

    def __init__(self, jobs: list[bytes], *,
                 defaults: Mapping[str, Any] | None = None, callback_url: str | None = None,
                 labels: Mapping[str, str] | None = None,
                 idempotency_key: str | None = None) -> None:
        self.jobs = jobs
        self.fields = {k: v for k, v in (("defaults", defaults), ("callback_url", callback_url),
                                         ("labels", labels),
                                         ("idempotency_key", idempotency_key))
                       if v is not None}

    def encode(self) -> bytes:
        rest = _encoded(self.fields)[1:-1]
        return b'{"jobs":[' + b",".join(self.jobs) + b"]" + (b"," + rest if rest else b"") + b"}"


def _encoded(value: object) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ClientError(f"a job cannot be sent as JSON: {exc}", code="invalid_job") from None


def _chunked(jobs: list[bytes], count: int, max_bytes: int) -> list[list[bytes]]:
    chunks: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    for job in jobs:
        if current and (len(current) >= count or size + len(job) + 1 > max_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(job)
        size += len(job) + 1
    if current:
        chunks.append(current)
    return chunks


def _in_jobs(on_jobs_sent: UploadProgress, first: int, count: int,
             total: int) -> UploadProgress:
    def on_upload(sent: int, size: int) -> None:
        on_jobs_sent(first + count * sent // max(size, 1), total)

    return on_upload
