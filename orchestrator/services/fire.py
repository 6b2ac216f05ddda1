"""Fire schedules: each due slot is decided once and recorded, in the same transaction as
the job it makes.

Run by every beat on each tick. Exactly once per slot holds however many beats run, and
whenever one is restarted, because a slot is a row with a unique (schedule, slot time) key:
the beat that inserts it makes the job in that transaction, and a beat that loses the race
moves on. The schedule's cursor only says how far slots have been looked at; moving it is
an optimisation, not the guard.

Order of work on a tick: buffered slots whose previous job has ended fire first; then each
due schedule's slots, sorted by ``plan_slots`` into on time, caught up and missed.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.domain.records import Job
from orchestrator.domain.schedule import (
    MAX_COUNTED,
    MAX_SLOTS_PER_TICK,
    NewSlot,
    Schedule,
    Slot,
    SlotPlan,
    plan_slots,
)
from orchestrator.ports import AlreadyExists
from orchestrator.services.cancel import CancelRefused, cancel_job
from orchestrator.services.deps import Deps
from orchestrator.services.schedules import ScheduleRefused, slot_job, store_of
from orchestrator.services.submit import hand_out_launch

log = logging.getLogger("orchestrator.schedules")


@dataclass(frozen=True)
class FireOutcome:
    fired: int = 0
    skipped: int = 0
    buffered: int = 0
    missed: int = 0
    failed: int = 0
    taken: int = 0  # slots another beat recorded first

    @property
    def busy(self) -> bool:
        return any((self.fired, self.skipped, self.buffered, self.missed, self.failed))


def fire_due(deps: Deps) -> FireOutcome:
    counts: Counter[str] = Counter()
    for schedule, slot in store_of(deps).buffered_slots():
        counts[_release(schedule, slot, deps)] += 1
    now = deps.clock.now()
    for schedule in store_of(deps).due_schedules(now):
        plan = plan_slots(schedule.rule, cursor=schedule.cursor_at, now=now,
                          catchup=schedule.catchup, window_s=schedule.catchup_window_s)
        counts.update(_fire_plan(schedule, plan, deps))
        store_of(deps).advance(schedule.id, read=schedule.cursor_at, cursor_at=now,
                               next_fire_at=schedule.rule.next_slot(now))
    counts.pop("", None)
    return FireOutcome(**counts)


def next_due(deps: Deps) -> float | None:
    """When the soonest schedule fires next (for a beat deciding how long to sleep)."""
    return store_of(deps).soonest_fire_at()


def _fire_plan(schedule: Schedule, plan: SlotPlan, deps: Deps) -> Counter[str]:
    counts: Counter[str] = Counter()
    if plan.dropped and plan.dropped_from is not None and plan.dropped_to is not None:
        many = f"at least {plan.dropped}" if plan.dropped >= MAX_COUNTED else str(plan.dropped)
        reason = (f"{many} slot(s) from {_iso(plan.dropped_from)} to "
                  f"{_iso(plan.dropped_to)} passed while no beat ran, beyond the catch-up "
                  f"window ({schedule.catchup_window_s:g} s) or the "
                  f"{MAX_SLOTS_PER_TICK} slots looked at one by one")
        # Keyed by the first of them, which every beat computes alike from the cursor.
        summary = NewSlot(schedule.id, plan.dropped_from, "missed", reason=reason)
        counts[_record(summary, deps)] += 1
    for slot_at in plan.missed:
        reason = (f"no beat ran at {_iso(slot_at)}; catch-up policy '{schedule.catchup}' "
                  "lets it go")
        counts[_record(NewSlot(schedule.id, slot_at, "missed", reason=reason), deps)] += 1
    for slot_at in sorted(plan.catch_up + plan.on_time):
        late = "caught up after the beat was down" if slot_at in plan.catch_up else None
        counts[_fire_slot(schedule, slot_at, deps, late)] += 1
    return counts


def _fire_slot(schedule: Schedule, slot_at: float, deps: Deps, reason: str | None) -> str:
    active = store_of(deps).active_jobs(schedule.id)
    if active and schedule.overlap == "skip":
        why = f"job {active[0].id} of an earlier slot is still {active[0].status.value}"
        return _record(NewSlot(schedule.id, slot_at, "skipped", reason=why), deps)
    if active and schedule.overlap == "buffer_one":
        if any(s.schedule_id == schedule.id for _, s in store_of(deps).buffered_slots()):
            why = "a slot is buffered already; overlap policy 'buffer_one' keeps one"
            return _record(NewSlot(schedule.id, slot_at, "skipped", reason=why), deps)
        why = f"waits for job {active[0].id} of an earlier slot to end"
        return _record(NewSlot(schedule.id, slot_at, "buffered", reason=why), deps)
    job = _make_job(schedule, NewSlot(schedule.id, slot_at, "fired", reason=reason), deps)
    if job is None:
        return "taken"
    if isinstance(job, str):
        return job
    if schedule.overlap == "cancel_previous":
        _cancel(active, job, deps)
    hand_out_launch(job, deps)
    return "fired"


def _make_job(schedule: Schedule, slot: NewSlot, deps: Deps) -> Job | str | None:
    """The slot recorded with its job: the job, "failed" if none can be made, None if
    another beat recorded the slot first. Stamped with the time of writing, not of the
    tick's start: the overlap check just before it has seen the jobs as they are now."""
    now = deps.clock.now()
    try:
        new = slot_job(schedule, deps, now)
    except ScheduleRefused as refused:
        log.error("schedule %s: slot %s cannot make its job: %s", schedule.name,
                  _iso(slot.slot_at), refused.message)
        failed = NewSlot(schedule.id, slot.slot_at, "failed", reason=refused.message)
        return _record(failed, deps)
    try:
        job = store_of(deps).record_slot(slot, new, now)
    except AlreadyExists:
        return None
    log.info("schedule %s fired slot %s: job %s", schedule.name, _iso(slot.slot_at),
             new.id, extra={"schedule": schedule.name, "job_id": new.id})
    return job


def _cancel(previous: list[Job], job: Job, deps: Deps) -> None:
    for earlier in previous:
        try:
            cancel_job(earlier.id, deps)
        except CancelRefused:
            continue  # it ended meanwhile
        except Exception:  # the new job is recorded: it must be launched all the same
            log.warning("job %s (overlap 'cancel_previous') could not cancel job %s",
                        job.id, earlier.id, exc_info=True)
            continue
        log.info("job %s cancelled job %s (overlap 'cancel_previous')", job.id, earlier.id)


def _release(schedule: Schedule, slot: Slot, deps: Deps) -> str:
    if schedule.paused or store_of(deps).active_jobs(schedule.id):
        return ""
    now = deps.clock.now()
    try:
        new = slot_job(schedule, deps, now)
    except ScheduleRefused:
        return ""  # left buffered; the error is logged when a slot fires or fails
    job = store_of(deps).release_slot(slot.id, new, now)
    if job is None:
        return "taken"
    hand_out_launch(job, deps)
    return "fired"


def _record(slot: NewSlot, deps: Deps) -> str:
    try:
        store_of(deps).record_slot(slot, None, deps.clock.now())
    except AlreadyExists:
        return "taken"
    return slot.status


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
