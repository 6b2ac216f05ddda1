"""``orchestrator schedules``: add, list, show, pause, resume, trigger and remove schedules."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich.markup import escape
from rich.table import Table

from orchestrator.cli.common import (
    STATUS_STYLE,
    JsonFlag,
    call,
    client_or_exit,
    fail,
    out,
    parse_labels,
    print_json,
    read_inputs,
)
from orchestrator.domain.schedule import Catchup, Overlap

schedules_app = typer.Typer(
    help="Schedules: a cron rule or a fixed interval that submits a job at each slot.",
    no_args_is_help=True)

SLOT_STYLE = {"fired": "green", "skipped": "yellow", "buffered": "cyan", "missed": "magenta",
              "failed": "red"}
Name = Annotated[str, typer.Argument(help="the schedule's name")]


@schedules_app.command("add")
def add(
    name: Name,
    workflow: Annotated[str, typer.Argument(help="<provider>/<name>, e.g. sandbox/echo")],
    cron: Annotated[str | None, typer.Option(
        help="five cron fields, e.g. '0 2 * * *' (in --timezone)")] = None,
    every: Annotated[str | None, typer.Option(
        help="a fixed interval instead, e.g. 30s, 5m, 1h30m")] = None,
    timezone: Annotated[str, typer.Option(
        help="IANA time zone of the cron rule, e.g. Europe/Berlin")] = "UTC",
    inputs: Annotated[str, typer.Option(help="JSON, or @file.json")] = "{}",
    label: Annotated[list[str] | None, typer.Option(
        help="key=value, set on every job it makes; repeatable")] = None,
    overlap: Annotated[Overlap, typer.Option(
        help="while the previous slot's job still runs: skip the slot, buffer_one (run it "
             "when that job ends), allow both, or cancel_previous")] = "skip",
    catchup: Annotated[Catchup, typer.Option(
        help="slots missed while no beat ran: fire none, the latest, or all")] = "latest",
    paused: Annotated[bool, typer.Option("--paused", help="create it paused")] = False,
) -> None:
    """Add a schedule that submits WORKFLOW at each slot of --cron or --every (give one).

    Example: orchestrator schedules add nightly-enrich sandbox/echo --cron '0 2 * * *' \\
    --timezone Europe/Berlin --inputs '{"sheet": "1Bxi"}'

    Example: orchestrator schedules add heartbeat sandbox/echo --every 30s --overlap allow
    """
    if (cron is None) == (every is None):
        fail("give exactly one of --cron (e.g. --cron '0 2 * * *') or --every (e.g. --every 5m)")
    values = read_inputs(inputs)
    labels = parse_labels(label or [])
    schedule = call(client_or_exit().create_schedule, name, workflow, values, cron=cron,
                    every=every, timezone=timezone, labels=labels, overlap=overlap,
                    catchup=catchup, paused=paused)
    out.print(f"schedule {escape(schedule['name'])} added: {_state(schedule)}",
              highlight=False, soft_wrap=True)


@schedules_app.command("list")
def list_schedules(json_: JsonFlag = False) -> None:
    """List the schedules, with when each fires next in its own time zone.

    Example: orchestrator schedules list
    """
    schedules = call(client_or_exit().list_schedules)
    if json_:
        print_json(schedules)
        return
    table = Table("name", "rule", "timezone", "next fire", "overlap", "catchup", "state")
    for schedule in schedules:
        table.add_row(escape(schedule["name"]), escape(_rule(schedule)),
                      escape(schedule["timezone"]), _next_fire(schedule),
                      schedule["overlap"], schedule["catchup"], _paused(schedule))
    out.print(table)


@schedules_app.command("show")
def show(
    name: Name,
    slots: Annotated[int, typer.Option(min=1, max=500, help="how many recent slots")] = 20,
    json_: JsonFlag = False,
) -> None:
    """Show a schedule and its recent slots: what each did, its job and the job's state.

    Example: orchestrator schedules show nightly-enrich --slots 50
    """
    schedule = call(client_or_exit().get_schedule, name, slots=slots)
    if json_:
        print_json(schedule)
        return
    grid = Table.grid(padding=(0, 2))
    job = schedule["job"]
    rows = [("name", schedule["name"]), ("id", schedule["id"]), ("rule", _rule(schedule)),
            ("timezone", schedule["timezone"]), ("workflow", str(job.get("workflow"))),
            ("inputs", json.dumps(job.get("inputs", {}))[:500]),
            ("labels", ", ".join(f"{k}={v}" for k, v in schedule["labels"].items())),
            ("overlap", schedule["overlap"]),
            ("catchup", f"{schedule['catchup']} (window {schedule['catchup_window_s']:g} s)"),
            ("source", schedule["source"])]
    for key, value in rows:
        grid.add_row(f"[bold]{key}[/]", escape(value))
    grid.add_row("[bold]state[/]", _paused(schedule))
    grid.add_row("[bold]next fire[/]", _next_fire(schedule))
    out.print(grid)
    table = Table("slot", "status", "trigger", "job", "job status", "reason",
                  title="recent slots, newest first")
    for slot in schedule["slots"]:
        status, job_status = slot["status"], slot["job_status"] or ""
        table.add_row(_local(slot["slot_at"], schedule["timezone"]),
                      f"[{SLOT_STYLE.get(status, '')}]{status}[/]", slot["trigger"],
                      slot["job_id"] or "",
                      f"[{STATUS_STYLE.get(job_status, '')}]{job_status}[/]",
                      escape(slot["reason"] or ""))
    if schedule["slots"]:
        out.print(table)
    else:
        out.print("no slots yet")


@schedules_app.command("pause")
def pause(name: Name) -> None:
    """Pause a schedule: no slot fires until it is resumed.

    Example: orchestrator schedules pause nightly-enrich
    """
    schedule = call(client_or_exit().pause_schedule, name)
    out.print(f"schedule {escape(schedule['name'])} paused", highlight=False)


@schedules_app.command("resume")
def resume(name: Name) -> None:
    """Resume a paused schedule; the slots passed while it was paused are not caught up.

    Example: orchestrator schedules resume nightly-enrich
    """
    schedule = call(client_or_exit().resume_schedule, name)
    out.print(f"schedule {escape(schedule['name'])} resumed: {_state(schedule)}",
              highlight=False, soft_wrap=True)


@schedules_app.command("trigger")
def trigger(name: Name, json_: JsonFlag = False) -> None:
    """Submit the schedule's job now, even if it is paused; prints the job's id.

    With --json it prints the whole job.

    Example: orchestrator schedules trigger nightly-enrich
    """
    job = call(client_or_exit().trigger_schedule, name)
    if json_:
        print_json(job)
    else:
        print(job["id"])


@schedules_app.command("remove")
def remove(name: Name) -> None:
    """Delete a schedule and its slot history; the jobs it made stay.

    Example: orchestrator schedules remove nightly-enrich
    """
    call(client_or_exit().delete_schedule, name)
    out.print(f"schedule {escape(name)} removed", highlight=False)


def _rule(schedule: dict[str, Any]) -> str:
    return f"cron {schedule['cron']}" if schedule.get("cron") else f"every {schedule['every']}"


def _state(schedule: dict[str, Any]) -> str:
    return "paused" if schedule["paused"] else f"next fire {_next_fire(schedule)}"


def _paused(schedule: dict[str, Any]) -> str:
    if not schedule["paused"]:
        return "[green]active[/]"
    note = f": {escape(schedule['note'])}" if schedule.get("note") else ""
    return f"[yellow]paused[/]{note}"


def _next_fire(schedule: dict[str, Any]) -> str:
    value = schedule.get("next_fire_at")
    if not value:
        return "-"
    try:
        seconds = datetime.fromisoformat(value).timestamp() - time.time()
    except ValueError:
        return escape(str(value))
    return f"{_local(value, schedule['timezone'])} ({relative(seconds)})"


def _local(value: str | None, timezone: str) -> str:
    """An RFC 3339 time as wall-clock time in ``timezone`` (UTC if this machine does not
    know that zone)."""
    if not value:
        return ""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return escape(value)
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # older tzdata here than the API's
        zone = ZoneInfo("UTC")
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def relative(seconds: float) -> str:
    """``in 3h 12m``, ``in 45s``, ``2d 1h ago``: the two largest units."""
    whole = round(seconds)
    if whole == 0:
        return "now"
    left, amounts = abs(whole), list[tuple[int, str]]()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, size)
        amounts.append((count, unit))
    first = next(i for i, (count, _) in enumerate(amounts) if count)
    text = " ".join(f"{count}{unit}" for count, unit in amounts[first:first + 2] if count)
    return f"in {text}" if whole > 0 else f"{text} ago"
