"""Dispatch: hand out the launches of paced providers as slots and turns free up.

A provider is paced when it has ``max_in_flight`` or a trigger ``rate_limit``. Its jobs wait
in ``queued`` (nothing in the broker) until the dispatcher, run by beat on every tick, hands
some out: no more than the free in-flight slots, and no more than about a second of trigger
turns beyond the ones already handed out and not yet claimed. So a 10,000-job batch is not
10,000 messages circling through throttles, and a job submitted later can still go first:
the order is priority, then groups (a batch, a schedule, one token's single jobs) taking
turns, oldest first within each (``JobStore.dispatch_candidates``).

Nothing here is exact, and nothing needs to be: the claim checks the in-flight cap in the
same statement that moves the job (``JobChange.in_flight_cap``), and the limiter checks the
rate when the request is sent. The dispatcher only keeps the right work near the front.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from orchestrator.domain.records import Launch
from orchestrator.services.deps import Deps

# Trigger turns handed out ahead: about this many seconds' worth, so a turn that frees is
# used at once without a queue of launches waiting for turns further off.
LOOKAHEAD_S = 1.0
# At most this many launches per provider per tick (a provider with only an in-flight cap).
MOST_PER_TICK = 500


@dataclass(frozen=True)
class DispatchOutcome:
    handed_out: int = 0


def paced_providers(deps: Deps) -> list[str]:
    return [name for name in deps.providers.names() if deps.policy(name).paced]


def dispatch(deps: Deps) -> DispatchOutcome:
    handed_out = 0
    now = deps.clock.now()
    for provider in paced_providers(deps):
        room = _room(provider, deps, now)
        if room <= 0:
            continue
        jobs = deps.store.dispatch_candidates(provider, now, room)
        if not jobs:
            continue
        ids = [job.id for job in jobs]
        deps.store.mark_dispatched(ids, now)
        deps.scheduler.schedule([Launch(job_id) for job_id in ids])
        handed_out += len(ids)
    return DispatchOutcome(handed_out)


def _room(provider: str, deps: Deps, now: float) -> int:
    """How many more launches to hand out now. Launches handed out and due within the
    lookahead hold their places; one waiting out a long backoff (a runtime's retry_after)
    does not keep the others back."""
    policy = deps.policy(provider)
    in_flight, handed_out = deps.store.provider_load(provider, due_by=now + LOOKAHEAD_S)
    room = MOST_PER_TICK
    if policy.max_in_flight is not None:
        room = min(room, policy.max_in_flight - in_flight - handed_out)
    if policy.trigger_limit is not None:
        limit = policy.trigger_limit
        ahead = max(1, math.ceil(limit.count / limit.period_s * LOOKAHEAD_S))
        room = min(room, ahead - handed_out)
    return room
