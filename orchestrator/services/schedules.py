"""Schedules: create, change, remove, trigger, and sync the ones declared in the config file.

Firing is in ``services/fire.py``. A schedule's job template is a job spec without an
idempotency key (each slot's job is unique by its slot, not by a key); it is checked when
the schedule is saved, so a schedule that cannot make a job is refused then, not at 02:00.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from orchestrator.domain.cron import parse_rule
from orchestrator.domain.ids import new_id
from orchestrator.domain.records import Job, NewJob
from orchestrator.domain.schedule import (
    CATCHUP_POLICIES,
    MAX_CATCHUP_WINDOW_S,
    OVERLAP_POLICIES,
    Catchup,
    NewSlot,
    Overlap,
    Schedule,
)
from orchestrator.ports import AlreadyExists, ScheduleStore
from orchestrator.services.deps import Deps
from orchestrator.services.submit import (
    JobSpec,
    SubmitRejected,
    canonical_json,
    hand_out_launch,
    new_job,
)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_LABELS = 50  # as many as a job submitted through the API may carry
TEMPLATE_FIELDS = frozenset(JobSpec.__dataclass_fields__) - {"idempotency_key"}


class ScheduleRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    job: Mapping[str, Any]
    cron: str | None = None
    every: str | None = None
    timezone: str = "UTC"
    labels: Mapping[str, str] = field(default_factory=dict)
    paused: bool = False
    overlap: Overlap = "skip"
    catchup: Catchup = "latest"
    catchup_window_s: float = 86400.0


def store_of(deps: Deps) -> ScheduleStore:
    if deps.schedules is None:
        raise RuntimeError("this process was built without a schedule store")
    return deps.schedules


def check_definition(spec: ScheduleSpec) -> None:
    """Everything about a schedule that needs no configured provider; ValueError if wrong."""
    if not NAME.match(spec.name):
        raise ValueError(f"schedule name '{spec.name}' may hold only letters, digits, '.', "
                         "'_' and '-' (at most 100, starting with a letter or digit)")
    parse_rule(spec.cron, spec.every, spec.timezone)
    if spec.overlap not in OVERLAP_POLICIES:
        raise ValueError(f"overlap '{spec.overlap}' is not one of {', '.join(OVERLAP_POLICIES)}")
    if spec.catchup not in CATCHUP_POLICIES:
        raise ValueError(f"catchup '{spec.catchup}' is not one of {', '.join(CATCHUP_POLICIES)}")
    if not 0 < spec.catchup_window_s <= MAX_CATCHUP_WINDOW_S:
        raise ValueError(f"catchup_window_s must be more than 0 and at most "
                         f"{MAX_CATCHUP_WINDOW_S:g} s (31 days)")
    template_spec(spec.job, spec.labels)


def template_spec(template: Mapping[str, Any], labels: Mapping[str, str]) -> JobSpec:
    """The job spec a slot submits: the template, with the schedule's labels under its own."""
    unknown = sorted(set(template) - TEMPLATE_FIELDS)
    if unknown:
        raise ValueError(f"job template: unknown field(s) {', '.join(unknown)}; a template "
                         f"takes {', '.join(sorted(TEMPLATE_FIELDS))}")
    problem = _template_problem(template)
    if problem:
        raise ValueError(f"job template: {problem}")
    merged = {**labels, **template.get("labels", {})}
    if len(merged) > MAX_LABELS:
        raise ValueError(f"the schedule's and the template's labels come to {len(merged)}; "
                         f"a job takes at most {MAX_LABELS}")
    return JobSpec(**{**template, "labels": merged})


def _template_problem(t: Mapping[str, Any]) -> str | None:
    checks: list[tuple[str, bool, str]] = [
        ("workflow", isinstance(t.get("workflow"), str), "a string like 'sandbox/echo'"),
        ("path", isinstance(t.get("path", ""), str), "a string"),
        ("callback_url", t.get("callback_url") is None or isinstance(t["callback_url"], str),
         "an http(s) URL"),
        ("priority", _is_int(t.get("priority", 0), -10, 10), "an integer from -10 to 10"),
        ("retries", _is_int(t.get("retries", 0), 0, 10), "an integer from 0 to 10"),
        ("timeout_s", t.get("timeout_s") is None or _is_number(t["timeout_s"]),
         "a number of seconds above 0"),
        ("labels", _is_labels(t.get("labels", {})), "a map of strings to strings"),
    ]
    for name, ok, expected in checks:
        if not ok:
            return f"'{name}' must be {expected}"
    return None


def _is_int(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _is_labels(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _check(spec: ScheduleSpec, deps: Deps, *, template: bool = True) -> None:
    """``template``: also check that the job template can make a job with the providers
    configured now (left out when only a schedule's timing or policies change, so a
    schedule whose provider went away can still be paused)."""
    try:
        check_definition(spec)
    except ValueError as exc:
        raise ScheduleRefused(422, "invalid_schedule", str(exc)) from None
    if template:
        _job_from(spec.job, spec.labels, deps, deps.clock.now(), None)


def _job_from(template: Mapping[str, Any], labels: Mapping[str, str], deps: Deps, now: float,
              schedule_id: str | None) -> NewJob:
    try:
        return new_job(template_spec(template, labels), deps, now, schedule_id=schedule_id)
    except ValueError as exc:
        raise ScheduleRefused(422, "invalid_schedule", str(exc)) from None
    except SubmitRejected as rejected:
        raise ScheduleRefused(rejected.status, rejected.code,
                              f"job template: {rejected.message}") from None


def create_schedule(spec: ScheduleSpec, deps: Deps, *, source: str = "api",
                    config_hash: str | None = None) -> Schedule:
    _check(spec, deps)
    now = deps.clock.now()
    schedule = Schedule(
        id=new_id("sch", now), name=spec.name, cron=spec.cron, every=spec.every,
        timezone=spec.timezone, job=dict(spec.job), labels=dict(spec.labels),
        paused=spec.paused, overlap=spec.overlap, catchup=spec.catchup,
        catchup_window_s=spec.catchup_window_s, source="config" if source == "config" else "api",
        config_hash=config_hash, created_at=now, updated_at=now, cursor_at=now,
        next_fire_at=parse_rule(spec.cron, spec.every, spec.timezone).next_slot(now))
    try:
        return store_of(deps).add_schedule(schedule)
    except AlreadyExists:
        raise ScheduleRefused(409, "already_exists",
                              f"a schedule named '{spec.name}' exists already; change it "
                              "with PATCH /v1/schedules/{name} or pick another name") from None


def get_schedule(name: str, deps: Deps) -> Schedule:
    schedule = store_of(deps).get_schedule(name)
    if schedule is None:
        raise ScheduleRefused(404, "not_found", f"no schedule named '{name}'")
    return schedule


def spec_of(schedule: Schedule) -> ScheduleSpec:
    return ScheduleSpec(
        name=schedule.name, job=schedule.job, cron=schedule.cron, every=schedule.every,
        timezone=schedule.timezone, labels=schedule.labels, paused=schedule.paused,
        overlap=schedule.overlap, catchup=schedule.catchup,
        catchup_window_s=schedule.catchup_window_s)


def update_schedule(name: str, changes: Mapping[str, Any], deps: Deps, *,
                    extra: Mapping[str, object] | None = None) -> Schedule:
    """Apply ``changes`` (fields of ``ScheduleSpec`` but the name). A new rule, or a
    schedule resumed, fires from now on: slots before it are neither fired nor missed."""
    current = get_schedule(name, deps)
    changes = dict(changes)
    if "cron" in changes and changes["cron"] is not None:
        changes.setdefault("every", None)
    if "every" in changes and changes["every"] is not None:
        changes.setdefault("cron", None)
    spec = replace(spec_of(current), **changes)
    resumes = current.paused and not spec.paused
    _check(spec, deps, template="job" in changes or "labels" in changes or resumes)
    now = deps.clock.now()
    values: dict[str, object] = {k: v for k, v in asdict(spec).items() if k != "name"}
    values.update(extra or {})
    restarts = any(getattr(spec, k) != getattr(current, k) for k in ("cron", "every",
                                                                     "timezone"))
    if restarts or (current.paused and not spec.paused):
        values["cursor_at"] = now
        values["next_fire_at"] = parse_rule(spec.cron, spec.every, spec.timezone).next_slot(now)
    if not spec.paused:
        values.setdefault("note", None)
    updated = store_of(deps).update_schedule(name, values, now)
    if updated is None:
        raise ScheduleRefused(404, "not_found", f"no schedule named '{name}'")
    return updated


def slot_job(schedule: Schedule, deps: Deps, now: float) -> NewJob:
    """The job one slot of the schedule makes; ``ScheduleRefused`` saying why none can be
    made (its provider is no longer configured, say)."""
    return _job_from(schedule.job, schedule.labels, deps, now, schedule.id)


def delete_schedule(name: str, deps: Deps) -> None:
    if not store_of(deps).delete_schedule(name):
        raise ScheduleRefused(404, "not_found", f"no schedule named '{name}'")


def trigger_schedule(name: str, deps: Deps) -> Job:
    """Run the schedule's job now, whatever its overlap policy and even if paused: a
    manual slot, recorded with the others."""
    schedule = get_schedule(name, deps)
    now = deps.clock.now()
    new = slot_job(schedule, deps, now)
    for nudge in range(10):
        # Manual slots are keyed by the time of the request; two requests within one tick
        # of a coarse clock are told apart by a microsecond.
        at = now + nudge * 1e-6
        slot = NewSlot(schedule.id, at, "fired", trigger="manual", reason="triggered on request")
        try:
            job = store_of(deps).record_slot(slot, new, now)
        except AlreadyExists:
            continue
        assert job is not None
        hand_out_launch(job, deps)
        return job
    raise ScheduleRefused(409, "conflict", f"schedule '{name}' is being triggered by many "
                          "requests at once; try again")


# declared in the config file ---------------------------------------------------------------

@dataclass(frozen=True)
class SyncOutcome:
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    paused: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()  # "name: why", for declarations that cannot be saved


def declaration_hash(spec: ScheduleSpec) -> str:
    return hashlib.sha256(canonical_json(asdict(spec))).hexdigest()


def sync_declared(specs: list[ScheduleSpec], deps: Deps, origin: str) -> SyncOutcome:
    """Make the stored schedules match the file: new ones created, changed ones updated,
    and config schedules no longer in the file paused (never deleted: their slots and jobs
    are history). A declaration unchanged since the last sync is left alone, so a schedule
    paused through the API stays paused across restarts."""
    done: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": []}
    paused: list[str] = []
    refused: list[str] = []
    for spec in specs:
        try:
            done[_sync_one(spec, deps)].append(spec.name)
        except ScheduleRefused as why:  # one bad declaration must not stop the others
            refused.append(f"{spec.name}: {why.message}")
    declared = {spec.name for spec in specs}
    for schedule in store_of(deps).list_schedules():
        if schedule.source == "config" and schedule.name not in declared and not schedule.note:
            store_of(deps).update_schedule(schedule.name, {
                "paused": True,
                "note": f"removed from {origin}: paused, not deleted, so its history stays; "
                        f"delete it with 'orchestrator schedules remove {schedule.name}'"},
                deps.clock.now())
            paused.append(schedule.name)
    return SyncOutcome(tuple(done["created"]), tuple(done["updated"]), tuple(paused),
                       tuple(refused))


def _sync_one(spec: ScheduleSpec, deps: Deps) -> str:
    digest = declaration_hash(spec)
    current = store_of(deps).get_schedule(spec.name)
    if current is None:
        try:
            create_schedule(spec, deps, source="config", config_hash=digest)
        except ScheduleRefused as refused:
            if refused.status == 409:  # another process created it just now
                return "unchanged"
            raise
        return "created"
    if (current.config_hash, current.source, current.note) == (digest, "config", None):
        return "unchanged"
    changes = {k: v for k, v in asdict(spec).items() if k != "name"}
    update_schedule(spec.name, changes, deps,
                    extra={"source": "config", "config_hash": digest, "note": None})
    return "updated"
