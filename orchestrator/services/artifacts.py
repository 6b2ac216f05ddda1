"""Keeping a completed run's output files, before its job completes.

A run that completed with files (``Provider.output_files``) is kept running while its
files are copied into the artifact store, so the terminal event, sent with the completing
move, carries them. One round of keeping:

- takes the job, as a lease: one guarded write moves its poll count (``polls``, the poll
  messages' compare-and-set token) on by one and pushes ``next_action_at`` ``KEEP_LEASE_S``
  ahead. A second copy of the same poll message (Redis hands an unacknowledged task out
  again) carries the old count and is skipped; the sweep does not hand the job out while
  files are downloading; the round goes on with the job as taken (``Keeping.job``), so its
  own writes and the follow-up poll carry the new count;
- keeps each file in order, skipping those an earlier round kept (matched by URL);
- stops at the first ``Transient`` failure, or when the round has used ``ROUND_BUDGET_S``
  (the file under way is finished, or dropped by the store's own limit): the caller saves
  what was kept and polls again later (the poll backoff);
- gives up on a ``Permanent`` failure of one file: the others are still kept, and the job
  completes without it, saying which file and why (its ``error``, with code
  ``artifacts_not_kept``, and the ``complete`` event's detail; the job is still
  ``completed``: the run succeeded and its outputs are there). Nothing records a file given
  up on before the job completes, so a later round of the same job (after a transient
  failure of another) asks for it once more.

The artifacts are saved on the running job just before the completing move, and the move
is given the job with them: the terminal event, built from that job, lists them.

Retries go on until ``ARTIFACT_GRACE_S`` past the job's deadline (the run finished in
time; its outputs are not thrown away because storage was slow). A round at or past that
is the last: every file still missing is tried once while its budget lasts (those it does
not reach are given up on), and the job completes with what was kept and a note of what
was not.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

from orchestrator.domain.errors import Permanent, ProviderError
from orchestrator.domain.job import JobStatus
from orchestrator.domain.records import Artifact, Job
from orchestrator.services.deps import Deps

log = logging.getLogger("orchestrator.artifacts")

# How long past the job's deadline a completed run's files may still be retried.
ARTIFACT_GRACE_S = 600.0
# A round runs inside a poll task, which Redis hands to another worker when it is not
# acknowledged within the visibility timeout (300 s, adapters/celery_app.py). So a round
# starts files only in its first ROUND_BUDGET_S (60 s), and the file started last ends
# within the store's limit for one file (adapters/artifacts.py MAX_DOWNLOAD_S: 120 s, give
# or take one 10 s read time-out), or is dropped and tried again next round: a round is
# over within about 190 s, well inside the 300 s. (The lease below makes a second copy of
# the poll harmless anyway; the bound keeps it from even being handed out.)
ROUND_BUDGET_S = 60.0
# How long a round holds the job off the sweep: longer than a round can take (~190 s), and
# short enough that the sweep soon hands the job out again if its worker died mid-round.
KEEP_LEASE_S = 300.0
# The most files kept for one job; more are listed as not kept.
MAX_FILES = 100
# The job's error code when some output file could not be kept (the job still completes).
NOT_KEPT = "artifacts_not_kept"


@dataclass(frozen=True)
class Unkept:
    n: int
    url: str
    reason: str


@dataclass(frozen=True)
class Keeping:
    """What one round came to. ``again``: more to keep later (``retry_after`` if a server
    named a wait); else every file is kept or given up on (``unkept``). ``job``: the job as
    the round left it, its poll count moved on if the round took it (every later write of
    this poll guards on that count); None when another process moved the job first (or
    took it: a second copy of the poll), so there is nothing more to do."""

    job: Job | None
    artifacts: tuple[Artifact, ...]
    unkept: tuple[Unkept, ...] = ()
    again: bool = False
    retry_after: float | None = None
    retry_until: float | None = None

    @property
    def values(self) -> dict[str, object]:
        """The job's ``artifacts`` column, as the store writes it."""
        return {"artifacts": [asdict(a) for a in self.artifacts]}

    @property
    def error(self) -> tuple[str, str] | None:
        """The job's error when files were not kept: (code, message naming each)."""
        if not self.unkept:
            return None
        # The reason names the file's URL as the store shows it (no query string or
        # password); the URL as written is not repeated here.
        missing = "; ".join(f"file {u.n}: {u.reason}" for u in self.unkept)
        return NOT_KEPT, f"{len(self.unkept)} output file(s) could not be kept: {missing}"


def keep_artifacts(job: Job, urls: Sequence[str], deps: Deps) -> Keeping:
    """One round of keeping ``urls`` (in output order) as ``job``'s artifacts."""
    store = deps.artifacts
    assert store is not None, "keep_artifacts needs deps.artifacts"
    now = deps.clock.now()
    urls = list(dict.fromkeys(urls))
    earlier = {a.url: a for a in job.artifacts}
    retry_until = _retry_until(job, now)
    last_round = now >= retry_until
    to_keep = [(n, url) for n, url in enumerate(urls[:MAX_FILES]) if url not in earlier]
    if to_keep:
        taken = _take(job, deps, now)
        if taken is None:
            return Keeping(None, job.artifacts)
        job = taken
    kept: dict[int, Artifact] = {n: earlier[u] for n, u in enumerate(urls) if u in earlier}
    unkept = [Unkept(n, u, f"more than {MAX_FILES} output files")
              for n, u in enumerate(urls) if n >= MAX_FILES and u not in earlier]
    for n, url in to_keep:
        if deps.clock.now() - now >= ROUND_BUDGET_S:
            if not last_round:
                return _later(job, kept, unkept, None, retry_until)
            unkept.append(_given_up(job, n, url, None))
            continue
        try:
            kept[n] = store.keep(job.id, n, url)
        except Permanent as error:
            unkept.append(_given_up(job, n, url, error))
        except ProviderError as error:  # Transient: may work later
            if not last_round:
                log.info("job %s: output file %d not kept yet, trying again later: %s",
                         job.id, n, error.message)
                return _later(job, kept, unkept, error.retry_after, retry_until)
            unkept.append(_given_up(job, n, url, error, past_deadline=True))
    return Keeping(job, _in_order(kept), tuple(sorted(unkept, key=lambda u: u.n)))


def record_artifacts(job: Job, keeping: Keeping, deps: Deps) -> Job | None:
    """Save the kept artifacts on the still running job, before the move that completes
    it (which builds its terminal event from the job it is given): the job as it now is,
    or None when another process moved it meanwhile."""
    if keeping.artifacts == job.artifacts:
        return job
    saved = deps.store.update_job(
        job.id, guard={"status": JobStatus.RUNNING.value, "polls": job.polls},
        values=keeping.values)
    return replace(job, artifacts=keeping.artifacts) if saved else None


def _take(job: Job, deps: Deps, now: float) -> Job | None:
    """Lease the job for one round: its poll count moved on, in the same guarded write
    that holds it off the sweep. The job as taken, or None when the count had moved (a
    second copy of this poll, or another process, got there first)."""
    polls, until = job.polls + 1, now + KEEP_LEASE_S
    taken = deps.store.update_job(
        job.id, guard={"status": JobStatus.RUNNING.value, "polls": job.polls},
        values={"polls": polls, "next_action_at": until})
    return replace(job, polls=polls, next_action_at=until) if taken else None


def _retry_until(job: Job, now: float) -> float:
    base = job.deadline_at if job.deadline_at is not None else (job.started_at or now)
    return base + ARTIFACT_GRACE_S


def _later(job: Job, kept: Mapping[int, Artifact], unkept: Sequence[Unkept],
           retry_after: float | None, retry_until: float) -> Keeping:
    return Keeping(job, _in_order(kept), tuple(unkept), again=True, retry_after=retry_after,
                   retry_until=retry_until)


def _given_up(job: Job, n: int, url: str, error: ProviderError | None, *,
              past_deadline: bool = False) -> Unkept:
    """``error``: why the file failed; None when the last round ran out of time before
    trying it."""
    if error is None:
        reason = "not tried: the time for keeping the job's files ran out"
    else:
        reason = error.message + (" (still failing past the job's deadline)"
                                  if past_deadline else "")
    log.warning("job %s: output file %d is not kept: %s", job.id, n, reason)
    return Unkept(n, url, reason)


def _in_order(kept: Mapping[int, Artifact]) -> tuple[Artifact, ...]:
    return tuple(kept[n] for n in sorted(kept))
