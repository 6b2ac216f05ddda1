"""The job resource: the one JSON shape of a job, for the API and for callbacks alike."""

from __future__ import annotations

from typing import Any

from orchestrator.domain.job import TERMINAL, JobStatus
from orchestrator.domain.records import Artifact, Batch, BatchProgress, Job
from orchestrator.domain.webhook import rfc3339


def _time(value: float | None) -> str | None:
    return None if value is None else rfc3339(value)


def artifact_resource(job_id: str, n: int, artifact: Artifact) -> dict[str, Any]:
    """``download`` is our copy (the API path, relative to the server's root); ``url`` is
    where the runtime had the file."""
    return {"url": artifact.url, "sha256": artifact.sha256, "size": artifact.size,
            "content_type": artifact.content_type,
            "download": f"/v1/jobs/{job_id}/artifacts/{n}"}


def job_resource(job: Job) -> dict[str, Any]:
    error = None
    if job.error_code or job.error_message:
        error = {"code": job.error_code or "error", "message": job.error_message or ""}
    return {
        "id": job.id,
        "workflow": job.workflow,
        "status": str(job.status),
        "inputs": job.inputs,
        "path": job.path,
        "outputs": job.outputs,
        "artifacts": [artifact_resource(job.id, n, a) for n, a in enumerate(job.artifacts)],
        "error": error,
        "remote": {"provider": job.provider, "run_id": job.run_id, "status": job.remote_status},
        "attempt": job.attempt,
        "polls": job.polls,
        "batch_id": job.batch_id,
        "schedule_id": job.schedule_id,
        "idempotency_key": job.idempotency_key,
        "priority": job.priority,
        "labels": dict(job.labels),
        "callback_url": job.callback_url,
        "timeout_s": job.timeout_s,
        "retries": job.retries,
        "created_at": _time(job.created_at),
        "started_at": _time(job.started_at),
        "finished_at": _time(job.finished_at),
    }


def batch_resource(batch: Batch, progress: BatchProgress) -> dict[str, Any]:
    """A batch with its jobs counted by state; ``done`` once every job has ended."""
    counts = {status.value: progress.counts.get(status.value, 0) for status in JobStatus}
    ended = sum(counts[status.value] for status in TERMINAL)
    done = ended >= batch.total
    return {
        "id": batch.id,
        "total": batch.total,
        "counts": counts,
        "done": done,
        "created_at": _time(batch.created_at),
        "finished_at": _time(progress.last_finished_at) if done else None,
        "labels": dict(batch.labels),
        "callback_url": batch.callback_url,
        "idempotency_key": batch.idempotency_key,
    }
