"""Submit: validate a job spec, persist the job, and hand its launch to the workers.

Idempotency: a key is scoped to its owner (the API token). The same key with the same spec
returns the first job; the same key with another spec is a conflict.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

from orchestrator.domain.ids import new_id
from orchestrator.domain.job import split_workflow
from orchestrator.domain.records import Job, Launch, NewJob
from orchestrator.domain.validation import json_problem, text_problem, url_problem
from orchestrator.ports import AlreadyExists
from orchestrator.services.deps import Deps
from orchestrator.services.endpoints import url_refusal

log = logging.getLogger("orchestrator.submit")


@dataclass(frozen=True)
class JobSpec:
    workflow: str
    inputs: object = field(default_factory=dict)
    path: str = ""
    callback_url: str | None = None
    idempotency_key: str | None = None
    priority: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    retries: int = 0


_HASHED = [f.name for f in fields(JobSpec) if f.name != "idempotency_key"]


class SubmitRejected(Exception):
    """The spec cannot be accepted. ``code`` and ``status`` map onto the API's error."""

    def __init__(self, code: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Submitted:
    job: Job
    created: bool  # False when an earlier submission with the same key is returned


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def new_job(spec: JobSpec, deps: Deps, now: float, *, owner: str | None = None,
            schedule_id: str | None = None, batch_id: str | None = None,
            job_id: str | None = None) -> NewJob:
    """A checked spec as the job to insert; ``SubmitRejected`` if it cannot be accepted."""
    provider = _check(spec, deps)
    request_hash = hashlib.sha256(canonical_json(_hashable(spec))).hexdigest()
    return NewJob(
        id=job_id or new_id("job", now), workflow=spec.workflow, provider=provider,
        inputs=spec.inputs, path=spec.path, owner=owner, idempotency_key=spec.idempotency_key,
        request_hash=request_hash, priority=spec.priority, labels=dict(spec.labels),
        callback_url=spec.callback_url, timeout_s=spec.timeout_s, retries=spec.retries,
        schedule_id=schedule_id, batch_id=batch_id)


def submit_job(spec: JobSpec, deps: Deps, *, owner: str | None = None) -> Submitted:
    now = deps.clock.now()
    new = new_job(spec, deps, now, owner=owner)
    if spec.idempotency_key and owner:
        earlier = deps.store.find_by_idempotency_key(owner, spec.idempotency_key)
        if earlier is not None:
            return _replay(earlier, new.request_hash)
    try:
        job = deps.store.add_job(new, now)
    except AlreadyExists:
        # Two submissions with one key raced; the loser returns the winner's job.
        if spec.idempotency_key and owner:
            earlier = deps.store.find_by_idempotency_key(owner, spec.idempotency_key)
            if earlier is not None:
                return _replay(earlier, new.request_hash)
        raise
    hand_out_launch(job, deps)
    return Submitted(job, created=True)


def hand_out_launch(job: Job, deps: Deps) -> None:
    """Send a new job's launch. The job is recorded either way: if the broker is
    unreachable, the sweep sends the launch once it is back."""
    hand_out_launches([job], deps)


def hand_out_launches(jobs: Sequence[Job | NewJob], deps: Deps) -> None:
    """``hand_out_launch`` for many jobs at once (a batch), in one call to the scheduler.
    A paced provider's jobs are left to the dispatcher (``services/dispatch.py``)."""
    launches = [Launch(job.id) for job in jobs if not deps.policy(job.provider).paced]
    if not launches:
        return
    try:
        deps.scheduler.schedule(launches)
    except Exception:
        # Answering with an error now would make a client without an idempotency key
        # submit the jobs again.
        log.warning("%d job(s) accepted; their launches are left to the sweep (broker "
                    "unreachable)", len(jobs), exc_info=True)


def _spec_problem(spec: JobSpec) -> str | None:
    texts = [(spec.workflow, "workflow"), (spec.path, "path"),
             (spec.idempotency_key or "", "idempotency_key")]
    texts += [(k, "a label name") for k in spec.labels]
    texts += [(v, f"label '{k}'") for k, v in spec.labels.items()]
    for value, what in texts:
        problem = text_problem(value, what)
        if problem:
            return problem
    if spec.callback_url is not None:
        problem = url_problem(spec.callback_url)
        if problem:
            return problem
    return json_problem(spec.inputs, "inputs")


def _hashable(spec: JobSpec) -> dict[str, object]:
    # What ``asdict`` gives, without its deep copy (a batch hashes 10,000 specs).
    data = {name: getattr(spec, name) for name in _HASHED}
    data["labels"] = dict(spec.labels)
    return data


def _replay(earlier: Job, request_hash: str | None) -> Submitted:
    if earlier.request_hash != request_hash:
        raise SubmitRejected(
            "idempotency_conflict",
            f"idempotency key '{earlier.idempotency_key}' was already used for job "
            f"{earlier.id} with a different request; use a new key for a new job",
            status=409)
    return Submitted(earlier, created=False)


def _check(spec: JobSpec, deps: Deps) -> str:
    try:
        provider, _ = split_workflow(spec.workflow)
    except ValueError as exc:
        raise SubmitRejected("invalid_workflow", str(exc)) from None
    configured = list(deps.providers.names())
    if provider not in configured:
        names = ", ".join(configured) or "none"
        raise SubmitRejected(
            "unknown_provider",
            f"workflow '{spec.workflow}' names provider '{provider}', which is not configured "
            f"(configured providers: {names})")
    problem = _spec_problem(spec)
    if problem:
        raise SubmitRejected("invalid_request", problem)
    size = len(canonical_json(spec.inputs))
    if size > deps.limits.max_input_bytes:
        raise SubmitRejected(
            "inputs_too_large",
            f"inputs are {size} bytes; the limit is {deps.limits.max_input_bytes} bytes "
            "(jobs.max_input_bytes). Pass large data by reference, e.g. a file URL",
            status=413)
    if spec.callback_url and not deps.signing_secrets:
        raise SubmitRejected(
            "callbacks_not_configured",
            "callback_url needs a signing secret: set [callbacks].signing_secret "
            "to a whsec_ secret (for example signing_secret = \"env:ORCHESTRATOR_SIGNING_SECRET\")")
    if spec.callback_url and deps.url_guard is not None:
        refusal = url_refusal(spec.callback_url, deps, "callback_url")
        if refusal:
            raise SubmitRejected("invalid_request", refusal)
    return provider
