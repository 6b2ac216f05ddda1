"""Schedules as values, and the pure decision of which slots fire after a pause.

A *slot* is one instant a schedule's rule names. Each slot a beat looks at is recorded once,
under a unique (schedule, slot time) key, with what became of it: ``fired`` (a job was
made), ``skipped`` (the previous job was still running), ``buffered`` (waiting for it),
``missed`` (the beat was down and the catch-up policy let it go) or ``failed`` (its job
could not be made, e.g. its provider is no longer configured).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from orchestrator.domain.cron import Rule, parse_rule

Overlap = Literal["skip", "buffer_one", "allow", "cancel_previous"]
Catchup = Literal["none", "latest", "all"]
SlotStatus = Literal["fired", "skipped", "buffered", "missed", "failed"]
Trigger = Literal["schedule", "manual"]
OVERLAP_POLICIES: tuple[Overlap, ...] = ("skip", "buffer_one", "allow", "cancel_previous")
CATCHUP_POLICIES: tuple[Catchup, ...] = ("none", "latest", "all")

# A slot reached this long after its time is on time; later, the beat was not running and
# the catch-up policy decides. Half the gap to the next slot, between 1 s and 60 s: a beat
# restarted within a minute fires a nightly job as if nothing happened.
MIN_GRACE_S = 1.0
MAX_GRACE_S = 60.0
# At most this many slots are recorded one by one after a pause; older ones are summed up in
# one row. Counting those stops at MAX_COUNTED (a one-minute cron rule paused for a week).
MAX_SLOTS_PER_TICK = 1000
MAX_COUNTED = 10_000
# Catch-up looks back at most this far; a month of a every-minute cron rule is 44,640 slots.
MAX_CATCHUP_WINDOW_S = 31 * 86400.0

@dataclass(frozen=True)
class Schedule:
    id: str
    name: str
    cron: str | None
    every: str | None
    timezone: str
    job: Mapping[str, object]  # the job template: a job spec's fields
    created_at: float
    updated_at: float
    labels: Mapping[str, str] = field(default_factory=dict)
    paused: bool = False
    overlap: Overlap = "skip"
    catchup: Catchup = "latest"
    catchup_window_s: float = 86400.0
    source: Literal["api", "config"] = "api"
    config_hash: str | None = None
    note: str | None = None  # why it is paused, when the system paused it
    cursor_at: float = 0.0  # every slot up to this instant has been looked at
    next_fire_at: float | None = None

    @property
    def rule(self) -> Rule:
        return parse_rule(self.cron, self.every, self.timezone)


@dataclass(frozen=True)
class NewSlot:
    schedule_id: str
    slot_at: float
    status: SlotStatus
    trigger: Trigger = "schedule"
    reason: str | None = None


@dataclass(frozen=True)
class Slot:
    id: int
    schedule_id: str
    slot_at: float
    status: SlotStatus
    trigger: Trigger
    recorded_at: float
    job_id: str | None = None
    reason: str | None = None
    job_status: str | None = None  # the job's state now, where the store joins it in


@dataclass(frozen=True)
class SlotPlan:
    """What a beat does with the slots due since it last looked."""

    on_time: tuple[float, ...]  # fire, subject to the overlap policy
    catch_up: tuple[float, ...]  # late, fired by the catch-up policy (overlap applies too)
    missed: tuple[float, ...]  # late and let go
    dropped: int = 0  # older still, beyond the window or the per-tick cap: counted only
    dropped_from: float | None = None
    dropped_to: float | None = None

    @property
    def last(self) -> float | None:
        slots = self.on_time + self.catch_up + self.missed
        return max(slots) if slots else None


def grace_s(gap_s: float) -> float:
    """How late a slot may be reached and still count as on time, given the gap to the
    rule's next slot."""
    return min(MAX_GRACE_S, max(MIN_GRACE_S, gap_s / 2))


def plan_slots(rule: Rule, *, cursor: float, now: float, catchup: Catchup,
               window_s: float) -> SlotPlan:
    """Sort the slots in (``cursor``, ``now``] into on time, caught up and missed.

    Only the newest ``MAX_SLOTS_PER_TICK`` slots within ``window_s`` of ``now`` are looked at
    one by one; the ones before are counted (``dropped``), never fired.
    """
    start = max(cursor, now - min(window_s, MAX_CATCHUP_WINDOW_S))
    if rule.every_s is not None:  # jump straight to the newest slots: no scan of the rest
        start = max(start, (math.floor(now / rule.every_s) - MAX_SLOTS_PER_TICK) * rule.every_s)
    due: deque[float] = deque(maxlen=MAX_SLOTS_PER_TICK)
    for slot in rule.slots(start):
        if slot > now:
            break
        if len(due) == due.maxlen:
            start = due[0]  # let the oldest go: it joins the dropped ones
        due.append(slot)
    dropped = rule.count(cursor, start, cap=MAX_COUNTED) if start > cursor else 0
    first = rule.next_slot(cursor) if dropped else None
    gaps = [b - a for a, b in zip(due, list(due)[1:], strict=False)]
    if due:
        gaps.append(rule.next_slot(due[-1]) - due[-1])
    on_time = [s for s, gap in zip(due, gaps, strict=True) if now - s <= grace_s(gap)]
    late = [s for s in due if s not in on_time]
    if catchup == "all":
        catch_up, missed = late, []
    elif catchup == "latest" and late and not on_time:
        catch_up, missed = late[-1:], late[:-1]
    else:
        catch_up, missed = [], late
    return SlotPlan(tuple(on_time), tuple(catch_up), tuple(missed), dropped,
                    first, start if dropped else None)
