"""``/v1/schedules``: create, look at, change, remove and trigger schedules."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from orchestrator.api.deps import ContainerDep, TokenDep
from orchestrator.api.errors import ERROR_RESPONSES, ApiError
from orchestrator.api.schemas import (
    SCHEDULE_NAME_PATTERN,
    JobOut,
    ScheduleDetailOut,
    ScheduleIn,
    ScheduleList,
    ScheduleOut,
    SchedulePatch,
)
from orchestrator.domain.resource import job_resource
from orchestrator.domain.schedule import Schedule, Slot
from orchestrator.domain.webhook import rfc3339
from orchestrator.services.schedules import (
    ScheduleRefused,
    ScheduleSpec,
    create_schedule,
    delete_schedule,
    get_schedule,
    store_of,
    trigger_schedule,
    update_schedule,
)

router = APIRouter(prefix="/v1/schedules", tags=["schedules"], responses=ERROR_RESPONSES)

ScheduleName = Annotated[str, Path(pattern=SCHEDULE_NAME_PATTERN,
                                   description="the schedule's name")]


def _time(value: float | None) -> str | None:
    return None if value is None else rfc3339(value)


def schedule_resource(schedule: Schedule) -> dict[str, Any]:
    return {
        "id": schedule.id,
        "name": schedule.name,
        "cron": schedule.cron,
        "every": schedule.every,
        "timezone": schedule.timezone,
        "job": dict(schedule.job),
        "labels": dict(schedule.labels),
        "paused": schedule.paused,
        "overlap": schedule.overlap,
        "catchup": schedule.catchup,
        "catchup_window_s": schedule.catchup_window_s,
        "source": schedule.source,
        "note": schedule.note,
        "next_fire_at": None if schedule.paused else _time(schedule.next_fire_at),
        "created_at": _time(schedule.created_at),
        "updated_at": _time(schedule.updated_at),
    }


def slot_resource(slot: Slot) -> dict[str, Any]:
    return {
        "slot_at": _time(slot.slot_at),
        "status": slot.status,
        "trigger": slot.trigger,
        "job_id": slot.job_id,
        "job_status": slot.job_status,
        "reason": slot.reason,
        "recorded_at": _time(slot.recorded_at),
    }


def _refused(refused: ScheduleRefused) -> ApiError:
    return ApiError(refused.status, refused.code, refused.message)


@router.post("", status_code=201, response_model=ScheduleOut)
def create(body: ScheduleIn, _: TokenDep, container: ContainerDep) -> dict[str, Any]:
    """Create a schedule: a `cron` rule (in `timezone`) or an `every` interval that submits
    `job` at each slot. A name already taken is a 409."""
    values = body.model_dump(exclude={"job"})
    spec = ScheduleSpec(**values, job=body.job.model_dump(exclude_unset=True))
    try:
        schedule = create_schedule(spec, container.deps)
    except ScheduleRefused as refused:
        raise _refused(refused) from None
    return schedule_resource(schedule)


@router.get("", response_model=ScheduleList)
def list_all(_: TokenDep, container: ContainerDep) -> dict[str, Any]:
    """Every schedule, by name."""
    return {"items": [schedule_resource(s) for s in store_of(container.deps).list_schedules()]}


@router.get("/{name}", response_model=ScheduleDetailOut)
def show(
    name: ScheduleName,
    _: TokenDep,
    container: ContainerDep,
    slots: Annotated[int, Query(ge=1, le=500, description="how many recent slots")] = 50,
) -> dict[str, Any]:
    """The schedule and its most recent slots, newest first, each with its job's state."""
    try:
        schedule = get_schedule(name, container.deps)
    except ScheduleRefused as refused:
        raise _refused(refused) from None
    recent = container.schedules.recent_slots(schedule.id, slots)
    return {**schedule_resource(schedule), "slots": [slot_resource(s) for s in recent]}


@router.patch("/{name}", response_model=ScheduleOut)
def change(name: ScheduleName, body: SchedulePatch, _: TokenDep,
          container: ContainerDep) -> dict[str, Any]:
    """Change the fields sent; the others keep their values. `{"paused": true}` pauses,
    `{"paused": false}` resumes from now on (slots passed meanwhile are not caught up)."""
    changes = body.model_dump(exclude_unset=True)
    try:
        schedule = update_schedule(name, changes, container.deps)
    except ScheduleRefused as refused:
        raise _refused(refused) from None
    return schedule_resource(schedule)


@router.delete("/{name}", status_code=204, response_class=Response)
def remove(name: ScheduleName, _: TokenDep, container: ContainerDep) -> Response:
    """Delete the schedule and its slot history; the jobs it made stay."""
    try:
        delete_schedule(name, container.deps)
    except ScheduleRefused as refused:
        raise _refused(refused) from None
    return Response(status_code=204)


@router.post("/{name}/trigger", status_code=201, response_model=JobOut)
def trigger(name: ScheduleName, _: TokenDep, container: ContainerDep) -> dict[str, Any]:
    """Submit the schedule's job now, even if it is paused and whatever its overlap policy;
    recorded as a `manual` slot."""
    try:
        job = trigger_schedule(name, container.deps)
    except ScheduleRefused as refused:
        raise _refused(refused) from None
    return job_resource(job)

