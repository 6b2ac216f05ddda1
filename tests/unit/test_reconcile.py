"""Reconciling a launch whose answer was lost, on a runtime without idempotent starts."""

from __future__ import annotations

import pytest

from orchestrator.domain.errors import Transient
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


@pytest.mark.parametrize(("runs", "now", "others", "claimed", "expected"), [
    # a listing that holds every run: no run of ours in it means none was made
    ([run("new", created=SENT + 5, inputs={"n": 9})], SENT + 11, False, set(), "complete"),
    # our inputs, unowned, after we sent: ours
    ([run("r1")], SENT + 1, False, set(), Adopt("r1")),
    ([run("r1"), run("r0", inputs={"n": 2})], SENT + 1, True, set(), Adopt("r1")),
    # a run already owned by another job is never adopted
    ([run("r1"), run("old", created=SENT - 60, inputs={"n": 9})], SENT + 20, False, {"r1"},
     StartAgain()),
    # a run from before we sent is someone else's
    ([run("r1", created=SENT - 60)], SENT + 20, False, set(), StartAgain()),
    # nothing listed yet: look again until it settles, then start again
    ([], SENT + 1, False, set(), LookAgain("no run listed yet")),
    ([run("old", created=SENT - 60, inputs={"n": 9})], SENT + 11, False, set(), StartAgain()),
    # a page of newer runs only: ours may have been pushed off it, so nothing is concluded
    ([run("new", created=SENT + 5, inputs={"n": 9})], SENT + 11, False, set(), LookAgain(
        "the runtime's list of runs does not reach back to when the start was sent")),
    ([run("new", created=SENT + 5, inputs={"n": 9})], SENT + 200, False, set(), GiveUp(
        "the runtime's list of runs does not reach back to when the start was sent")),
    # two runs with our inputs: cannot tell which, so keep looking, then give up
    ([run("r1"), run("r2")], SENT + 1, False, set(),
     LookAgain("2 unowned runs since the start was sent")),
    ([run("r1"), run("r2")], SENT + 200, False, set(),
     GiveUp("2 unowned runs since the start was sent")),
    # a runtime that lists no inputs: the one new run is ours only if no other job of ours
    # on that workflow is mid-launch
    ([run("r1", inputs=None)], SENT + 1, False, set(), Adopt("r1")),
    ([run("r1", inputs=None)], SENT + 1, True, set(), LookAgain(
        "1 unowned runs since the start was sent, and other jobs of this workflow are "
        "starting too")),
])
def test_decisions(runs: list[RemoteRun], now: float, others: bool, claimed: set[str],
                   expected: object) -> None:
    # The cases are for a listing that is one page of a longer history, unless marked.
    complete = expected == "complete"
    decision = decide(runs, complete=complete, inputs=MINE, sent_at=SENT, now=now,
                      claimed=claimed.__contains__, others_in_flight=others, settle_s=10,
                      window_s=120)
    assert decision == (StartAgain() if complete else expected)


def listing_deps(**kw: object) -> tuple[ListingProvider, object]:
    provider = ListingProvider("cord", **kw)  # type: ignore[arg-type]
    deps = make_deps(provider, limits=Limits(reconcile_settle_s=10, reconcile_window_s=120))
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
