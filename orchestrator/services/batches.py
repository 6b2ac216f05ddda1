"""Batches: up to 10,000 jobs submitted together, all of them or none.

A batch request is a list of job specs, with optional ``defaults`` (fields every job takes
unless it sets its own), ``labels`` (under each job's own) and ``callback_url`` (for the jobs
that name none). Every job is checked before anything is written, and every problem is
reported with its job's index (``jobs[17]: …``); then the batch row, all its jobs and their
history rows go into the database in one transaction, and their launches are handed out in
one call to the scheduler.

Idempotency works as for one job: the batch's key is scoped to its owner (the API token);
the same key with the same request returns the first batch, with another request it is a
conflict. The job ids of a batch sort in input order (``new_ids``), which is how a replay
returns them in that order.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.domain.ids import new_id, new_ids
from orchestrator.domain.job import split_workflow
from orchestrator.domain.records import Batch, NewJob
from orchestrator.domain.validation import text_problem
from orchestrator.ports import AlreadyExists
from orchestrator.services.deps import Deps
from orchestrator.services.endpoints import url_refusal
from orchestrator.services.submit import (
    JobSpec,
    SubmitRejected,
    canonical_json,
    hand_out_launches,
    new_job,
)

MAX_BATCH_JOBS = 10_000
MAX_LABELS = 50  # as many as one job submitted through the API may carry
MAX_PROBLEMS = 20  # distinct problems named in one answer; the rest are counted
MAX_TIMEOUT_S = 7 * 86400
JOB_FIELDS = frozenset(JobSpec.__dataclass_fields__)
# A key shared by every job would make all but the first a conflict: give the batch one.
DEFAULT_FIELDS = JOB_FIELDS - {"idempotency_key"}
_LENGTHS = {"workflow": 300, "path": 500, "callback_url": 2000, "idempotency_key": 255}


@dataclass(frozen=True)
class BatchSpec:
    jobs: Sequence[Mapping[str, Any]]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    callback_url: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None


@dataclass(frozen=True)
class SubmittedBatch:
    batch: Batch
    job_ids: list[str]  # in input order
    created: bool  # False when an earlier batch with the same key is returned
    jobs: list[NewJob] = field(default_factory=list)  # the new jobs; empty on a replay


def submit_batch(spec: BatchSpec, deps: Deps, *, owner: str | None = None,
                 hand_out: bool = True) -> SubmittedBatch:
    """Check, record and launch a batch; ``SubmitRejected`` if any of it cannot be accepted,
    and then nothing is written. ``hand_out=False`` leaves the launches to the caller
    (``hand_out_launches(result.jobs, deps)``), for an API that answers first."""
    _check_batch(spec, deps)
    now = deps.clock.now()
    batch_id = new_id("bat", now)
    news = _new_jobs(spec, deps, now, owner=owner, batch_id=batch_id)
    request_hash = _request_hash(spec, news)
    key = spec.idempotency_key
    if key and owner:
        earlier = deps.store.find_batch_by_idempotency_key(owner, key)
        if earlier is not None:
            return _replay(earlier, request_hash, deps)
    batch = Batch(id=batch_id, total=len(news), created_at=now, owner=owner,
                  idempotency_key=key, request_hash=request_hash, labels=dict(spec.labels),
                  callback_url=spec.callback_url)
    try:
        deps.store.add_batch(batch, news, now)
    except AlreadyExists:
        # Two submissions with one key raced (the loser returns the winner's batch), or a
        # job's own key was used before.
        earlier = deps.store.find_batch_by_idempotency_key(owner, key) if key and owner else None
        if earlier is not None:
            return _replay(earlier, request_hash, deps)
        raise _keys_taken(news, deps, owner) from None
    if hand_out:
        hand_out_launches(news, deps)
    return SubmittedBatch(batch, [new.id for new in news], created=True, jobs=news)


# checks -------------------------------------------------------------------------------------


def _check_batch(spec: BatchSpec, deps: Deps) -> None:
    """What concerns the batch as a whole, each reported once rather than for every job."""
    if not spec.jobs:
        raise SubmitRejected("empty_batch", "jobs is empty: a batch takes 1 to "
                             f"{MAX_BATCH_JOBS:,} jobs")
    if len(spec.jobs) > MAX_BATCH_JOBS:
        raise SubmitRejected(
            "batch_too_large",
            f"the batch has {len(spec.jobs):,} jobs; at most {MAX_BATCH_JOBS:,} go in one "
            "batch: send several ('orchestrator batch submit' splits a larger file by itself)",
            status=413)
    problem = _batch_problem(spec, deps)
    if problem:
        raise SubmitRejected("invalid_request", problem)


def _batch_problem(spec: BatchSpec, deps: Deps) -> str | None:
    if not isinstance(spec.defaults, Mapping):
        return "defaults must be an object of job fields"
    unknown = sorted(set(spec.defaults) - DEFAULT_FIELDS)
    if unknown:
        return (f"defaults: unknown field(s) {', '.join(map(str, unknown))}; defaults take "
                f"{', '.join(sorted(DEFAULT_FIELDS))} (give the batch its idempotency_key)")
    problem = _fields_problem(spec.defaults)
    if problem:
        return f"defaults: {problem}"
    if "workflow" in spec.defaults:
        problem = _provider_problem(spec.defaults["workflow"], deps)
        if problem:
            return f"defaults: {problem}"
    problem = _fields_problem({"labels": spec.labels, "callback_url": spec.callback_url,
                               "idempotency_key": spec.idempotency_key})
    if problem:
        return problem
    problem = (text_problem(spec.idempotency_key or "", "idempotency_key")
               or (url_refusal(spec.callback_url, deps, "callback_url")
                   if spec.callback_url is not None else None))
    if problem:
        return problem
    if spec.callback_url and not deps.signing_secrets:
        return ("callback_url needs a signing secret: set [callbacks].signing_secret to a "
                "whsec_ secret")
    return None


def _new_jobs(spec: BatchSpec, deps: Deps, now: float, *, owner: str | None,
              batch_id: str) -> list[NewJob]:
    """Every job checked and built; one ``SubmitRejected`` naming all the problems."""
    ids = new_ids("job", len(spec.jobs), now)
    news: list[NewJob] = []
    problems: list[tuple[int, SubmitRejected]] = []
    for index, raw in enumerate(spec.jobs):
        try:
            news.append(new_job(_job_spec(raw, spec), deps, now, owner=owner,
                                batch_id=batch_id, job_id=ids[index]))
        except SubmitRejected as rejected:
            problems.append((index, rejected))
    problems += _repeated_keys(spec.jobs)
    if problems:
        raise _rejected(problems, len(spec.jobs))
    return news


def _job_spec(raw: object, spec: BatchSpec) -> JobSpec:
    if not isinstance(raw, Mapping):
        raise SubmitRejected("invalid_request", "must be an object with a workflow")
    unknown = sorted(set(raw) - JOB_FIELDS)
    if unknown:
        raise SubmitRejected("invalid_request",
                             f"unknown field(s) {', '.join(map(str, unknown))}; a job takes "
                             f"{', '.join(sorted(JOB_FIELDS))}")
    problem = _fields_problem(raw)
    if problem:
        raise SubmitRejected("invalid_request", problem)
    values = {**spec.defaults, **raw}
    if "workflow" not in values:
        raise SubmitRejected("invalid_request",
                             "workflow is missing: give it in the job or in defaults")
    labels = {**spec.labels, **spec.defaults.get("labels", {}), **raw.get("labels", {})}
    if len(labels) > MAX_LABELS:
        raise SubmitRejected("invalid_request",
                             f"the batch's, the defaults' and the job's labels come to "
                             f"{len(labels)}; a job takes at most {MAX_LABELS}")
    values["labels"] = labels
    if values.get("callback_url") is None:
        values["callback_url"] = spec.callback_url
    return JobSpec(**values)


def _fields_problem(values: Mapping[str, Any]) -> str | None:
    """Types and ranges of the fields present (the API's schema checks them too; this is
    for every other caller)."""
    for name, limit in _LENGTHS.items():
        value = values.get(name, "")
        if value is None and name in ("callback_url", "idempotency_key"):
            continue
        if not isinstance(value, str) or len(value) > limit or (value == "" and name in values
                                                                and name != "path"):
            return f"{name} must be a string of 1 to {limit} characters"
    checks = [
        ("priority", _is_int(values.get("priority", 0), -10, 10), "an integer from -10 to 10"),
        ("retries", _is_int(values.get("retries", 0), 0, 10), "an integer from 0 to 10"),
        ("timeout_s", _is_timeout(values.get("timeout_s")),
         f"a number of seconds above 0 and at most {MAX_TIMEOUT_S}"),
        ("labels", _is_labels(values.get("labels", {})), "an object of strings"),
    ]
    for name, ok, expected in checks:
        if not ok:
            return f"{name} must be {expected}"
    for name, value in values.get("labels", {}).items():
        problem = text_problem(name, "a label name") or text_problem(value, f"label '{name}'")
        if problem:
            return problem
    return None


def _provider_problem(workflow: str, deps: Deps) -> str | None:
    try:
        provider, _ = split_workflow(workflow)
    except ValueError as exc:
        return str(exc)
    configured = list(deps.providers.names())
    if provider not in configured:
        return (f"workflow '{workflow}' names provider '{provider}', which is not configured "
                f"(configured providers: {', '.join(configured) or 'none'})")
    return None


def _is_int(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_timeout(value: object) -> bool:
    if value is None:
        return True
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and 0 < value <= MAX_TIMEOUT_S)


def _is_labels(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _repeated_keys(jobs: Sequence[Mapping[str, Any]]) -> list[tuple[int, SubmitRejected]]:
    seen: dict[str, int] = {}
    repeated = []
    for index, raw in enumerate(jobs):
        key = raw.get("idempotency_key") if isinstance(raw, Mapping) else None
        if not isinstance(key, str):
            continue
        if key in seen:
            repeated.append((index, SubmitRejected(
                "invalid_request", f"idempotency_key '{key}' is also that of "
                                   f"jobs[{seen[key]}]; each job's key must be its own")))
        else:
            seen[key] = index
    return repeated


def _rejected(problems: list[tuple[int, SubmitRejected]], total: int) -> SubmitRejected:
    """One answer for all the problems: the same message for several jobs is said once."""
    by_message: dict[str, list[int]] = {}
    for index, rejected in problems:
        by_message.setdefault(rejected.message, []).append(index)
    parts = []
    for message, indexes in list(by_message.items())[:MAX_PROBLEMS]:
        named = ", ".join(f"jobs[{i}]" for i in indexes[:3])
        more = f" and {len(indexes) - 3:,} more" if len(indexes) > 3 else ""
        parts.append(f"{named}{more}: {message}")
    if len(by_message) > MAX_PROBLEMS:
        parts.append(f"and {len(by_message) - MAX_PROBLEMS:,} other problems")
    failing = len({index for index, _ in problems})
    codes = {rejected.code for _, rejected in problems}
    statuses = {rejected.status for _, rejected in problems}
    return SubmitRejected(
        codes.pop() if len(codes) == 1 else "invalid_jobs",
        f"{failing:,} of {total:,} jobs cannot be accepted, so none was submitted: "
        + "; ".join(parts),
        status=statuses.pop() if len(statuses) == 1 else 422)


# idempotency --------------------------------------------------------------------------------


def _request_hash(spec: BatchSpec, news: Sequence[NewJob]) -> str:
    """The request as it takes effect: each job's spec with the defaults and the batch's
    labels and callback_url applied (so the same jobs written either way are the same
    request), and each job's own key."""
    digest = hashlib.sha256(canonical_json({"labels": dict(spec.labels),
                                            "callback_url": spec.callback_url}))
    for new in news:
        digest.update(f"\n{new.request_hash}:{new.idempotency_key or ''}".encode())
    return digest.hexdigest()


def _replay(earlier: Batch, request_hash: str, deps: Deps) -> SubmittedBatch:
    if earlier.request_hash != request_hash:
        raise SubmitRejected(
            "idempotency_conflict",
            f"idempotency key '{earlier.idempotency_key}' was already used for batch "
            f"{earlier.id} with a different request; use a new key for a new batch",
            status=409)
    return SubmittedBatch(earlier, deps.store.batch_job_ids(earlier.id), created=False)


def _keys_taken(news: Sequence[NewJob], deps: Deps, owner: str | None) -> SubmitRejected:
    taken = []
    for index, new in enumerate(news):
        if new.idempotency_key and owner:
            earlier = deps.store.find_by_idempotency_key(owner, new.idempotency_key)
            if earlier is not None:
                taken.append(f"jobs[{index}]: idempotency_key '{new.idempotency_key}' is "
                             f"job {earlier.id}'s")
    named = "; ".join(taken[:MAX_PROBLEMS]) or "a job's idempotency_key is taken"
    return SubmitRejected(
        "idempotency_conflict",
        f"jobs of this batch carry idempotency keys used by earlier jobs, so none was "
        f"submitted: {named}. Leave those jobs out, or their keys",
        status=409)
