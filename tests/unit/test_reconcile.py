"""Reconciling a launch whose answer was lost, on a runtime without idempotent starts."""

from __future__ import annotations

import pytest

from orchestrator.domain.errors import Throttled, Transient
from orchestrator.domain.job import JobStatus, LaunchRequest
from orchestrator.ports import RemoteRun
from orchestrator.services.deps import Limits
from orchestrator.services.reconcile import Adopt, GiveUp, LookAgain, StartAgain, decide
from orchestrator.services.submit import JobSpec, submit_job
from orchestrator.testing import FakeClock, ListingProvider, drain, make_deps

SENT = 1000.0
MINE = {"n": 1}


def run(run_id: str, created: float | None = SENT + 1, inputs: object = MINE) -> RemoteRun:
    return RemoteRun(run_id, created, "running", inputs)


OLD = run("old", created=SENT - 60, inputs={"n": 9})  # shows the page reaches back
NEW_OTHER = run("new", created=SENT + 5, inputs={"n": 9})
UNOWNED = "1 unowned runs since the start was sent"


@pytest.mark.parametrize(("runs", "complete", "now", "flight", "claimed", "expected"), [
    # our inputs, unowned, after we sent: ours
    ([run("r1")], False, SENT + 1, "", set(), Adopt("r1")),
    ([run("r1"), run("r0", inputs={"n": 2})], False, SENT + 1, "others", set(), Adopt("r1")),
    # ...unless another launch of ours with the same inputs may be about to store it
    ([run("r1")], False, SENT + 1, "twins", set(),
     LookAgain(UNOWNED + ", and other jobs of this workflow are starting too")),
    # a run already owned by another job is never adopted
    ([run("r1"), OLD], False, SENT + 20, "", {"r1"}, StartAgain()),
    # a run from before we sent is someone else's
    ([run("r1", created=SENT - 60)], False, SENT + 20, "", set(), StartAgain()),
    # nothing listed yet: look again until it settles, then start again
    ([], False, SENT + 1, "", set(), LookAgain("no run listed yet")),
    ([], True, SENT + 11, "", set(), StartAgain()),
    ([OLD], False, SENT + 11, "", set(), StartAgain()),
    # an unowned run since the send whose listed inputs differ in form from ours (1.0 for
    # 1) may be ours: never start again over it; give up in the end
    ([run("x", inputs={"n": 1.0}), OLD], False, SENT + 11, "", set(), LookAgain(UNOWNED)),
    ([NEW_OTHER], True, SENT + 200, "", set(), GiveUp(UNOWNED)),
    # two runs with our inputs: cannot tell which, so keep looking, then give up
    ([run("r1"), run("r2")], False, SENT + 1, "", set(),
     LookAgain("2 unowned runs since the start was sent")),
    ([run("r1"), run("r2")], False, SENT + 200, "", set(),
     GiveUp("2 unowned runs since the start was sent")),
    # a runtime that lists no inputs: the one new run is ours only if no other job of ours
    # on that workflow is mid-launch
    ([run("r1", inputs=None)], False, SENT + 1, "", set(), Adopt("r1")),
    ([run("r1", inputs=None)], False, SENT + 1, "others", set(),
     LookAgain(UNOWNED + ", and other jobs of this workflow are starting too")),
])
def test_decisions(runs: list[RemoteRun], complete: bool, now: float, flight: str,
                   claimed: set[str], expected: object) -> None:
    decision = decide(runs, complete=complete, inputs=MINE, sent_at=SENT, now=now,
                      claimed=claimed.__contains__, others_in_flight=bool(flight),
                      twins_in_flight=flight == "twins", settle_s=10, window_s=120)
    assert decision == expected


def test_a_page_of_only_newer_runs_concludes_nothing() -> None:
    runs = [run("a", created=SENT + 5), run("b", created=SENT + 6)]
    decision = decide(runs, complete=False, inputs={"other": 1}, sent_at=SENT,
                      now=SENT + 11, claimed={"a", "b"}.__contains__, others_in_flight=False,
                      settle_s=10, window_s=120)
    assert decision == LookAgain(
        "the runtime's list of runs does not reach back to when the start was sent")


def listing_deps(limits: Limits | None = None,
                 **kw: object) -> tuple[ListingProvider, object]:
    provider = ListingProvider("cord", **kw)  # type: ignore[arg-type]
    deps = make_deps(provider, limits=limits or Limits(reconcile_settle_s=10,
                                                       reconcile_window_s=120))
    assert isinstance(deps.clock, FakeClock)
    provider.clock = deps.clock
    return provider, deps


def test_a_lost_answer_adopts_the_run_it_made() -> None:
    provider, deps = listing_deps()
    provider.errors["start_after"] = [Transient("connection dropped", request_sent=True)]
    job_id = submit_job(JobSpec("cord/echo", {"n": 1}), deps).job.id  # type: ignore[arg-type]
    assert drain(deps)[:2] == ["launch:started", "poll:completed"]  # type: ignore[arg-type]
    job = deps.store.get_job(job_id)  # type: ignore[attr-defined]
    assert job.status is JobStatus.COMPLETED and job.run_id in provider.runs
    assert provider.starts == 1 and len(provider.runs) == 1
    events = deps.store.job_events(job_id)  # type: ignore[attr-defined]
    assert "found among the runtime's runs" in events[-2]["detail"]


def test_a_start_that_never_took_effect_is_sent_again_once_settled() -> None:
    provider, deps = listing_deps()
    provider.errors["start"] = [Transient("read timed out", request_sent=True)]
    job_id = submit_job(JobSpec("cord/echo", {"n": 1}), deps).job.id  # type: ignore[arg-type]
    steps = drain(deps)  # type: ignore[arg-type]
    assert steps[0] == "launch:reconciling" and "launch:started" in steps
    job = deps.store.get_job(job_id)  # type: ignore[attr-defined]
    assert job.status is JobStatus.COMPLETED
    assert provider.starts == 2 and len(provider.runs) == 1


def test_runs_that_cannot_be_told_apart_fail_the_job_without_a_second_start() -> None:
    provider, deps = listing_deps()
    # A run with the same inputs that no job of ours owns (started by hand, say).
    provider.start(LaunchRequest("elsewhere", "echo", {"n": 1}))
    provider.errors["start_after"] = [Transient("dropped", request_sent=True)]
    job_id = submit_job(JobSpec("cord/echo", {"n": 1}), deps).job.id  # type: ignore[arg-type]
    steps = drain(deps)  # type: ignore[arg-type]
    assert steps[0] == "launch:reconciling" and steps[-1] == "launch:failed"
    job = deps.store.get_job(job_id)  # type: ignore[attr-defined]
    assert job.status is JobStatus.FAILED and job.error_code == "launch_unknown"
    assert "2 unowned runs" in job.error_message
    assert provider.starts == 2  # the stray one and ours: never a third


def test_a_throttled_listing_waits_for_its_turn_and_never_gives_up_for_it() -> None:
    """Reads at their limit for longer than the reconcile window: the listing was never
    sent, so the job waits for a turn, then finds and adopts its run."""
    provider, deps = listing_deps()
    provider.errors["start_after"] = [Transient("connection dropped", request_sent=True)]
    provider.errors["list"] = [Throttled("reads at their limit", retry_after=30.0)] * 8
    job_id = submit_job(JobSpec("cord/echo", {"n": 1}), deps).job.id  # type: ignore[arg-type]
    results = drain(deps)  # type: ignore[arg-type]
    assert results.count("launch:reconciling") == 8
    job = deps.store.get_job(job_id)  # type: ignore[attr-defined]
    assert job.status is JobStatus.COMPLETED and job.run_id in provider.runs
    assert provider.starts == 1 and len(provider.runs) == 1


def test_looking_again_is_not_a_failed_try() -> None:
    """A reconcile that looks at the runs many times while the start settles (a long
    settle, a short backoff) must not use up the job's launch tries: only starts count."""
    provider, deps = listing_deps(Limits(reconcile_settle_s=60, reconcile_window_s=300,
                                         max_launch_tries=3))
    provider.errors["start"] = [Transient("read timed out", request_sent=True)]
    job_id = submit_job(JobSpec("cord/echo", {"n": 1}), deps).job.id  # type: ignore[arg-type]
    results = drain(deps)  # type: ignore[arg-type]
    assert results.count("launch:reconciling") > 3
    job = deps.store.get_job(job_id)  # type: ignore[attr-defined]
    assert job.status is JobStatus.COMPLETED and job.launch_tries == 1
    assert provider.starts == 2 and len(provider.runs) == 1


def test_starts_lost_again_and_again_fail_in_the_end() -> None:
    provider, deps = listing_deps(Limits(reconcile_settle_s=10, reconcile_window_s=120,
                                         max_launch_tries=3))
    provider.errors["start"] = [Transient("read timed out", request_sent=True)] * 10
    job_id = submit_job(JobSpec("cord/echo", {"n": 1}), deps).job.id  # type: ignore[arg-type]
    drain(deps)  # type: ignore[arg-type]
    job = deps.store.get_job(job_id)  # type: ignore[attr-defined]
    assert job.status is JobStatus.FAILED and job.error_code == "launch_failed"
    assert "after 3 tries" in job.error_message and provider.starts == 3
