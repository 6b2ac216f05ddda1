"""Reconcile a launch whose answer was lost, on a runtime without idempotent starts.

The start request may or may not have made a run. Instead of sending it again blindly, the
runtime's recent runs are listed and compared with what we sent:

- exactly one run we do not already own, created since we sent, with our inputs (or, where
  the runtime does not list inputs, the only such run while no other job of ours on that
  workflow is mid-launch): that is our run, adopted;
- no such run once ``settle_s`` has passed since we sent, in a listing that reaches back
  past the send or holds every run (a listing is a page of the newest runs: ours may have
  been pushed off it): the start never took effect, and starting again cannot make a
  second run;
- otherwise wait and look again, until ``window_s`` has passed; then give up and fail the
  job with ``launch_unknown``, rather than risk a duplicate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from orchestrator.ports import RemoteRun
from orchestrator.services.submit import canonical_json

# The runtime's clock and ours may differ a little; a run stamped this much before we sent
# can still be ours.
CLOCK_SKEW_S = 5.0


@dataclass(frozen=True)
class Adopt:
    run_id: str


@dataclass(frozen=True)
class StartAgain:
    pass


@dataclass(frozen=True)
class LookAgain:
    why: str


@dataclass(frozen=True)
class GiveUp:
    why: str


Decision = Adopt | StartAgain | LookAgain | GiveUp


def same_inputs(a: object, b: object) -> bool:
    """Equal as JSON, whatever the order of keys."""
    return canonical_json(a) == canonical_json(b)


def decide(
    runs: Sequence[RemoteRun],
    *,
    complete: bool,
    inputs: object,
    sent_at: float,
    now: float,
    claimed: Callable[[str], bool],
    others_in_flight: bool,
    twins_in_flight: bool = False,
    settle_s: float,
    window_s: float,
) -> Decision:
    """``others_in_flight``: another job of ours on this workflow is mid-launch;
    ``twins_in_flight``: one with the same inputs is. ``settle_s`` counts from the send
    and must cover the longest a start request can take, plus the runtime's lag."""
    recent = [r for r in runs
              if (r.created_at is None or r.created_at >= sent_at - CLOCK_SKEW_S)
              and not claimed(r.run_id)]
    listed_inputs = any(r.inputs is not None for r in recent)
    candidates = [r for r in recent if same_inputs(r.inputs, inputs)] if listed_inputs else recent
    settled = now - sent_at >= settle_s
    late = now - sent_at >= window_s
    reaches_back = complete or any(
        r.created_at is not None and r.created_at < sent_at - CLOCK_SKEW_S for r in runs)
    # A run another launch of ours may be about to store is not ours to take.
    rivals = twins_in_flight if listed_inputs else others_in_flight
    if len(candidates) == 1 and not rivals:
        return Adopt(candidates[0].run_id)
    # Start again only when no unowned run at all appeared since the send: inputs as the
    # runtime lists them may differ in form from ours (1 and 1.0), and a miss must not
    # become a second run.
    if not recent and settled and reaches_back:
        return StartAgain()
    if candidates or recent:
        why = f"{len(candidates or recent)} unowned runs since the start was sent"
    elif settled:
        why = "the runtime's list of runs does not reach back to when the start was sent"
    else:
        why = "no run listed yet"
    if rivals:
        why += ", and other jobs of this workflow are starting too"
    return GiveUp(why) if late else LookAgain(why)
