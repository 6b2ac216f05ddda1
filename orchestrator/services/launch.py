"""Launch: start a queued job's run on its provider, at most once.

1. Claim: ``queued → starting`` as a compare-and-set with a lease. One worker wins; a
   duplicate message finds the job ``starting`` under a live lease and does nothing.
2. Reserve (where the runtime offers it, CodeWords' provisioned id) and store the
   reservation *before* the start request, so a repeated start is recognised remotely.
3. Start, then ``starting → running`` with the run id and the first poll's time.

A worker that dies in between leaves the job ``starting`` with a lease that runs out; the
sweep hands the launch out again, and ``recover`` decides: a runtime with idempotent starts
gets the same request again (same reservation, same run); on one without, a start that may
have been sent is never sent again blindly: it is reconciled against the runtime's listed
runs (``reconcile.py``), and fails with ``launch_unknown`` if it cannot be.
"""

from __future__ import annotations

import dataclasses
from contextlib import suppress
from dataclasses import dataclass

from orchestrator.domain.errors import (
    Permanent,
    ProviderError,
    RateLimited,
    Throttled,
    Transient,
)
from orchestrator.domain.events import JOB_STARTED
from orchestrator.domain.job import Event, JobStatus, LaunchRequest
from orchestrator.domain.records import Job, JobChange, Launch, Poll
from orchestrator.ports import Provider, RunFinder
from orchestrator.services.deps import EARLY_TOLERANCE_S, Deps
from orchestrator.services.fanout import job_event, schedule
from orchestrator.services.finish import finish
from orchestrator.services.reconcile import (
    Adopt,
    Decision,
    GiveUp,
    LookAgain,
    StartAgain,
    decide,
    same_inputs,
)

# A claim younger than this still stands for the send time and lease of a start.
FRESH_CLAIM_S = 0.5


@dataclass(frozen=True)
class LaunchOutcome:
    result: str  # started | deferred | throttled | waiting | reconciling | failed | skipped
    job: Job | None = None
    reason: str = ""


def launch_job(job_id: str, deps: Deps, *, run_id: str | None = None) -> LaunchOutcome:
    """Start the job's run. ``run_id`` is given when an earlier launch started the run but
    could not store its id (a database error): only that is left to do."""
    job = deps.store.get_job(job_id)
    now = deps.clock.now()
    if job is None:
        return LaunchOutcome("skipped", reason="no such job")
    if run_id is not None:
        if job.status is not JobStatus.STARTING:
            return LaunchOutcome("skipped", job, f"job is {job.status}")
        return _started(job, run_id, deps, how="stored on a second try",
                        guard={"status": JobStatus.STARTING.value, "attempt": job.attempt})
    if job.status is JobStatus.QUEUED:
        if job.next_action_at is not None and job.next_action_at > now + EARLY_TOLERANCE_S:
            # Early (a clock ahead of ours handed it out, or an older copy): at its time.
            deps.scheduler.schedule([Launch(job.id, job.next_action_at)])
            return LaunchOutcome("skipped", job, "not due yet")
        cap = deps.policy(job.provider).max_in_flight
        claimed = deps.store.move(JobChange(
            job.id, Event.CLAIM, guard={"attempt": job.attempt}, in_flight_cap=cap,
            values={"lease_until": now + deps.limits.launch_lease_s, "launch_sent_at": now,
                    "dispatched_at": None}),
            now)
        if claimed is None:
            return _not_claimed(job, deps, cap)
        return _start(claimed, deps, just_claimed=True)
    if job.status is JobStatus.STARTING:
        return _recover(job, deps, now)
    return LaunchOutcome("skipped", job, f"job is {job.status}")


def _not_claimed(job: Job, deps: Deps, cap: int | None) -> LaunchOutcome:
    """Another worker claimed it, or the provider's in-flight slots are all taken: then
    the job goes back to the dispatcher, which hands it out again when a slot frees."""
    if cap is None:
        return LaunchOutcome("skipped", job, "claimed by another worker")
    returned = deps.store.update_job(
        job.id, guard={"status": JobStatus.QUEUED.value, "attempt": job.attempt},
        values={"dispatched_at": None})
    if not returned:
        return LaunchOutcome("skipped", job, "claimed by another worker")
    return LaunchOutcome("waiting", job, f"all {cap} in-flight slots of '{job.provider}' "
                         "are taken; the dispatcher hands it out when one frees")


def _held(job: Job) -> dict[str, object]:
    """The guard of every write a launch makes: the job is still starting under the lease
    this worker holds. The lease is a fencing token: once another worker has taken the
    job over, every write of the old one matches zero rows."""
    return {"status": JobStatus.STARTING.value, "lease_until": job.lease_until}


def _renew(job: Job, deps: Deps, *, sending: bool = False,
           tries: int | None = None) -> Job | None:
    """Extend the lease before a remote call; None if it was lost meanwhile. Before a
    start request (``sending``) the send time is recorded too: reconciling a lost answer
    waits for runs made since the last start that may have gone out."""
    now = deps.clock.now()
    values: dict[str, object] = {"lease_until": now + deps.limits.launch_lease_s}
    if sending:
        values["launch_sent_at"] = now
    if tries is not None:
        values["launch_tries"] = tries
    if not deps.store.update_job(job.id, guard=_held(job), values=values):
        return None
    return dataclasses.replace(job, **values)  # type: ignore[arg-type]


def _recover(job: Job, deps: Deps, now: float) -> LaunchOutcome:
    if job.lease_until is not None and job.lease_until > now:
        return LaunchOutcome("skipped", job, "another worker holds the launch")
    taken = _renew(job, deps)
    if taken is None:
        return LaunchOutcome("skipped", job, "taken over by another worker")
    provider = deps.providers.get(job.provider)
    if provider.idempotent_start:
        return _start(taken, deps)
    return _reconcile(taken, provider, deps)


def _start(job: Job, deps: Deps, *, just_claimed: bool = False,
           tries: int | None = None) -> LaunchOutcome:
    """``just_claimed``: the claim took the lease and stamped the send time; if nothing was
    stored since and it was a moment ago, renewing them again is a write for nothing (and
    time between a rate-limit turn coming and the request going). ``tries``: the failed
    tries so far, stored with the send time when it changed."""
    provider = deps.providers.get(job.provider)
    held: Job | None = job
    try:
        held = _with_reservation(job, provider, deps)
        fresh = (just_claimed and held is job
                 and deps.clock.now() - (job.launch_sent_at or 0.0) < FRESH_CLAIM_S)
        if not fresh:
            held = held and _renew(held, deps, sending=True, tries=tries)
        if held is None:
            return LaunchOutcome("skipped", job, "lost the launch to another worker")
        run_id = provider.start(LaunchRequest(
            job_id=held.id, workflow=held.workflow_name, inputs=held.inputs, path=held.path,
            reservation=held.reservation))
    except ProviderError as error:
        # ``held`` carries the lease as last renewed: the guard of every write from here.
        return _launch_error(held or job, provider, error, deps)
    return _started(held, run_id, deps)


def _with_reservation(job: Job, provider: Provider, deps: Deps) -> Job | None:
    """The job with its reservation stored before the start (where the runtime offers
    one); None if the lease was lost, in which case nothing may be started."""
    if job.reservation is not None:
        return job
    reservation = provider.reserve(job.workflow_name)
    if reservation is None:
        return job
    if not deps.store.update_job(job.id, guard={**_held(job), "reservation": None},
                                 values={"reservation": reservation}):
        return None
    return dataclasses.replace(job, reservation=reservation)


def _started(job: Job, run_id: str, deps: Deps, how: str = "started",
             guard: dict[str, object] | None = None) -> LaunchOutcome:
    now = deps.clock.now()
    policy = deps.policy(job.provider)
    timeout = job.timeout_s or policy.run_timeout_s
    first_poll = now + policy.backoff.delay(0, deps.rng)
    values = {"run_id": run_id, "remote_status": "running", "started_at": now,
              "deadline_at": now + timeout, "next_action_at": min(first_poll, now + timeout),
              "lease_until": None}
    after = dataclasses.replace(job, status=JobStatus.RUNNING, updated_at=now, **values)  # type: ignore[arg-type]
    try:
        outbox = job_event(after, JOB_STARTED, now, deps, own_url=False)
        moved = deps.store.move(JobChange(
            job.id, Event.STARTED, guard=guard or _held(job), values=values,
            deliveries=outbox, detail=f"run {run_id} ({how})"), now)
    except Exception:
        # The run exists but its id could not be stored: hand the id to the next try
        # rather than lose it (the lease would otherwise run out and the launch be
        # reconciled, or on Cordage failed).
        deps.scheduler.schedule([Launch(job.id, now + 1.0, run_id=run_id)])
        raise
    if moved is None:
        return _orphaned(job, run_id, deps)
    schedule(outbox, deps)
    deps.scheduler.schedule([Poll(moved.id, moved.polls, moved.next_action_at)])
    return LaunchOutcome("started", moved)


def _launch_error(
    job: Job, provider: Provider, error: ProviderError, deps: Deps
) -> LaunchOutcome:
    if isinstance(error, Throttled):
        return _wait_turn(job, deps, error.retry_after, error.message)
    if isinstance(error, RateLimited):
        return _defer(job, deps, error.retry_after, error.message)
    if isinstance(error, Transient):
        if not error.request_sent or provider.idempotent_start:
            return _defer(job, deps, error.retry_after, error.message)
        return _reconcile(job, provider, deps)
    code = error.code if isinstance(error, Permanent) else "provider_error"
    return _fail(job, deps, code, error.message)


def _defer(job: Job, deps: Deps, retry_after: float | None, why: str) -> LaunchOutcome:
    """Back to the queue until the launch may be tried again (the start did not happen,
    or will be recognised as the same run)."""
    tries = job.launch_tries + 1
    if tries >= deps.limits.max_launch_tries:
        return _fail(job, deps, "launch_failed",
                     f"the job could not be started on '{job.provider}' after {tries} tries; "
                     f"the last error: {why}")
    now = deps.clock.now()
    delay = deps.policy(job.provider).backoff.delay(job.launch_tries, deps.rng, retry_after)
    # Still handed out (its launch waits in the delay queue): the dispatcher counts it as
    # holding a place and does not hand it out again; the sweep resends it if it is lost.
    moved = deps.store.move(JobChange(
        job.id, Event.DEFER, guard=_held(job),
        values={"next_action_at": now + delay, "lease_until": None, "launch_tries": tries,
                "dispatched_at": now},
        detail=why[:500]), now)
    if moved is None:
        return LaunchOutcome("skipped", job, "moved by another worker")
    deps.scheduler.schedule([Launch(job.id, now + delay)])
    return LaunchOutcome("deferred", moved, why)


def _wait_turn(job: Job, deps: Deps, wait: float, why: str) -> LaunchOutcome:
    """Our own limit held the start back before anything was sent: back to the queue until
    the turn comes. Not a failed try, so it neither counts towards ``max_launch_tries`` nor
    grows the backoff."""
    now = deps.clock.now()
    moved = deps.store.move(JobChange(
        job.id, Event.DEFER, guard=_held(job),
        values={"next_action_at": now + wait, "lease_until": None, "dispatched_at": now},
        detail=why[:500]), now)
    if moved is None:
        return LaunchOutcome("skipped", job, "moved by another worker")
    deps.scheduler.schedule([Launch(job.id, now + wait)])
    return LaunchOutcome("throttled", moved, why)


def _fail(job: Job, deps: Deps, code: str, message: str) -> LaunchOutcome:
    moved = finish(job, Event.FAIL, deps, error=(code, message), guard=_held(job))
    return LaunchOutcome("failed" if moved else "skipped", moved or job, message)


def _orphaned(job: Job, run_id: str, deps: Deps) -> LaunchOutcome:
    """The run started but the job moved on meanwhile (cancelled, or taken over by a worker
    that stored another run): stop this run where the runtime can, so nothing runs that no
    job owns. The same run stored by the other worker (a reservation) is left alone."""
    current = deps.store.get_job(job.id)
    provider = deps.providers.get(job.provider)
    owned = current is not None and current.run_id == run_id
    # A worker that took the launch over and has not sent a start of its own will find
    # this run among the runtime's runs and adopt it: stopping it would waste the run.
    # One that has sent its own start would make this one a duplicate: stop it.
    adoptable = (current is not None and current.status is JobStatus.STARTING
                 and (current.launch_sent_at or 0) <= (job.launch_sent_at or 0))
    owned = owned or adoptable or deps.store.run_claimed(job.provider, run_id)
    if not owned and provider.supports_cancel:
        with suppress(ProviderError):  # best effort: the job has moved on either way
            provider.cancel(job.workflow_name, run_id)
    return LaunchOutcome("skipped", current or job, f"moved by another worker; run {run_id} "
                         + ("kept" if owned else "stopped"))


def _reconcile(job: Job, provider: Provider, deps: Deps) -> LaunchOutcome:
    """A start that may have been sent to a runtime without idempotent starts."""
    if not isinstance(provider, RunFinder):
        return _fail(job, deps, "launch_unknown", _unknown(job, "the runtime cannot list runs"))
    try:
        decision = _reconcile_decision(job, provider, deps)
    except Permanent as error:
        return _fail(job, deps, error.code, error.message)
    except Throttled as error:  # nothing was asked: look when the read turn comes
        return _look_again(job, deps, error.message, delay=error.retry_after)
    if isinstance(decision, Adopt):
        if deps.store.run_claimed(job.provider, decision.run_id):  # taken meanwhile
            return _look_again(job, deps, "the run found was just taken by another job")
        return _started(job, decision.run_id, deps, how="found among the runtime's runs")
    if isinstance(decision, StartAgain):
        # The start sent before never took effect: that was a failed try.
        tries = job.launch_tries + 1
        if tries >= deps.limits.max_launch_tries:
            return _fail(job, deps, "launch_failed",
                         f"the job could not be started on '{job.provider}' after {tries} "
                         "tries; the last start request got no answer and made no run")
        return _start(job, deps, tries=tries)  # records the send time before it sends
    if isinstance(decision, LookAgain):
        return _look_again(job, deps, decision.why)
    return _fail(job, deps, "launch_unknown", _unknown(job, decision.why))


def _reconcile_decision(job: Job, finder: RunFinder, deps: Deps) -> Decision:
    now = deps.clock.now()
    sent_at = job.launch_sent_at or job.updated_at
    limits = deps.limits
    try:
        listing = finder.recent_runs(job.workflow_name)
    except (Permanent, Throttled):
        raise  # a refused key or workflow: no point looking again; a turn: look at it
    except ProviderError as error:
        why = f"listing its runs failed: {error.message}"
        return GiveUp(why) if now - sent_at >= limits.reconcile_window_s else LookAgain(why)
    others = [j for j in deps.store.list_jobs(status=JobStatus.STARTING.value,
                                              workflow=job.workflow, limit=200)
              if j.id != job.id]
    twins = any(same_inputs(o.inputs, job.inputs) for o in others)
    return decide(listing.runs, complete=listing.complete, inputs=job.inputs,
                  sent_at=sent_at, now=now,
                  claimed=lambda run_id: deps.store.run_claimed(job.provider, run_id),
                  others_in_flight=bool(others), twins_in_flight=twins,
                  # A start answered by a time-out may still be processed: settling
                  # counts from when it can no longer be on its way.
                  settle_s=limits.reconcile_settle_s + limits.request_max_s,
                  window_s=limits.reconcile_window_s)


def _look_again(job: Job, deps: Deps, why: str, *, delay: float | None = None) -> LaunchOutcome:
    """Keep the job starting, its lease ending when it is time to look again. Looking is
    not a failed try (the reconcile window bounds it), so the wait grows with the time
    since the start was sent, not with ``launch_tries``. ``delay``: the wait for a read
    turn."""
    now = deps.clock.now()
    if delay is None:
        backoff = deps.policy(job.provider).backoff
        looked = backoff.steps_within(now - (job.launch_sent_at or job.updated_at))
        delay = backoff.delay(looked, deps.rng)
    if not deps.store.update_job(job.id, guard=_held(job), values={"lease_until": now + delay}):
        return LaunchOutcome("skipped", job, "moved by another worker")
    deps.scheduler.schedule([Launch(job.id, now + delay)])
    return LaunchOutcome("reconciling", job, why)


def _unknown(job: Job, why: str) -> str:
    return (f"the start request to '{job.provider}' got no answer and its run could not be "
            f"identified ({why}); it is not sent again, to avoid a duplicate run. Check the "
            "provider's runs, then retry the job")
