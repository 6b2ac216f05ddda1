"""Producer commands over the REST API: submit, jobs list, show, logs and cancel."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from orchestrator.cli.common import (
    STATUS_STYLE,
    JsonFlag,
    call,
    client_or_exit,
    err,
    fail,
    out,
    print_json,
    read_inputs,
)
from orchestrator.client import TERMINAL, Client

jobs_app = typer.Typer(help="Look at and steer jobs.", no_args_is_help=True)


def _read_files(specs: list[str]) -> dict[str, Path]:
    """``--file KEY=PATH`` options, each file checked before anything is uploaded."""
    files: dict[str, Path] = {}
    for spec in specs:
        key, sep, path = spec.partition("=")
        if not sep or not key or not path:
            fail(f"--file takes KEY=PATH (e.g. --file doc=report.pdf), got '{spec}'")
        if not Path(path).is_file():
            fail(f"file not found: {path} (--file {key})")
        files[key] = Path(path)
    return files


def submit(
    workflow: Annotated[str, typer.Argument(help="<provider>/<name>, e.g. sandbox/echo")],
    inputs: Annotated[str, typer.Option(help="JSON, or @file.json")] = "{}",
    file: Annotated[list[str] | None, typer.Option(
        "--file", help="KEY=PATH: upload the file to the workflow's provider and pass its URL "
                       "as inputs[KEY]; repeatable")] = None,
    callback_url: Annotated[str | None, typer.Option(help="POSTed the terminal event")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="same key → same job")] = None,
    label: Annotated[list[str] | None, typer.Option(help="key=value, repeatable")] = None,
    priority: Annotated[int, typer.Option(min=-10, max=10)] = 0,
    wait: Annotated[bool, typer.Option("--wait", help="wait until the job ends")] = False,
    json_: JsonFlag = False,
) -> None:
    """Submit one job. Prints its id (or the job with --json).

    With --wait the exit code is 0 if the job completed, 1 if it failed, was cancelled or
    timed out.

    Example: orchestrator submit sandbox/echo --inputs '{"hello": "world"}' --wait

    Example: orchestrator submit codewords/summarise --file doc=report.pdf --wait
    """
    labels = dict(item.split("=", 1) for item in label or [] if "=" in item)
    files = _read_files(file or [])
    values = read_inputs(inputs)
    if files and not isinstance(values, dict):
        fail("--inputs must be a JSON object when --file is given")
    client = client_or_exit()
    job = call(client.submit, workflow, values, callback_url=callback_url,
               idempotency_key=idempotency_key, labels=labels or None, priority=priority,
               files=files or None)
    if wait:
        with err.status(f"job {job['id']} is {job['status']}…"):
            job = call(client.wait, job["id"])
    if json_:
        print_json(job)
    elif wait:
        _show(job)
    else:
        print(job["id"])
    if wait and job["status"] != "completed":
        raise typer.Exit(1)


@jobs_app.command("list")
def list_jobs(
    status: Annotated[str | None, typer.Option(help="queued, running, completed, …")] = None,
    workflow: Annotated[str | None, typer.Option()] = None,
    label: Annotated[str | None, typer.Option(help="key=value")] = None,
    batch: Annotated[str | None, typer.Option(help="only the jobs of this batch")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    json_: JsonFlag = False,
) -> None:
    """List jobs, newest first.

    Example: orchestrator jobs list --status failed --limit 20

    Example: orchestrator jobs list --batch bat_01jf… --status failed
    """
    client = client_or_exit()
    jobs = call(lambda: list(client.list(status=status, workflow=workflow, label=label,
                                         batch_id=batch, limit=limit,
                                         page_size=min(limit, 500))))
    if json_:
        print_json(jobs)
        return
    table = Table("id", "workflow", "status", "attempt", "polls", "created")
    for job in jobs:
        style = STATUS_STYLE.get(job["status"], "")
        table.add_row(job["id"], job["workflow"], f"[{style}]{job['status']}[/]",
                      str(job["attempt"]), str(job["polls"]), job["created_at"])
    out.print(table)


@jobs_app.command("show")
def show(job_id: str, json_: JsonFlag = False) -> None:
    """Show one job.

    Example: orchestrator jobs show job_01jf…
    """
    job = call(client_or_exit().get, job_id)
    if json_:
        print_json(job)
    else:
        _show(job)


@jobs_app.command("logs")
def logs(job_id: str, json_: Annotated[bool, typer.Option(
        "--json", help="print each event as one line of JSON")] = False) -> None:
    """Follow a job: its state changes, and its run's log lines where the provider streams
    them (CodeWords), as they come. Ends when the job has ended.

    Example: orchestrator jobs logs job_01jf…
    """
    call(_follow, client_or_exit(), job_id, json_)


def _follow(client: Client, job_id: str, json_: bool) -> None:
    for event in client.events(job_id):
        if json_:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()
        elif event["event"] != "end":  # the last state line already says how it ended
            out.print(_event_line(event), highlight=False, soft_wrap=True)  # one line each


def _event_line(event: dict[str, Any]) -> str:
    data = event["data"] if isinstance(event["data"], dict) else {"message": event["data"]}
    kind = event["event"]
    when = _clock(data.get("at"))
    if kind == "state":
        status = str(data.get("status"))
        detail = f"  {escape(str(data['detail']))}" if data.get("detail") else ""
        return (f"{when}  [bold]state[/]    [{STATUS_STYLE.get(status, '')}]{status}[/] "
                f"({escape(str(data.get('event')))}, attempt {data.get('attempt')}){detail}")
    if kind == "log":
        fields = data.get("fields")
        level = fields.get("level") if isinstance(fields, dict) else None
        level = f"{escape(str(level))} " if level else ""
        return f"{when}  [dim]log[/]      {level}{escape(str(data.get('message', '')))}"
    return f"{when}  [yellow]{escape(kind):<8}[/] {escape(str(data.get('message', data)))}"


def _clock(value: object) -> str:
    """A timestamp as local wall-clock time with milliseconds; now if there is none."""
    try:
        when = datetime.fromisoformat(str(value)) if value else datetime.now().astimezone()
    except ValueError:
        return str(value)
    return when.astimezone().strftime("%H:%M:%S.%f")[:-3]


@jobs_app.command("cancel")
def cancel(job_id: str, json_: JsonFlag = False) -> None:
    """Cancel a job, and stop its remote run where the provider can. Prints the job's new
    status and what became of the run; a job that has already ended is an error.

    Example: orchestrator jobs cancel job_01jf…
    """
    job = call(client_or_exit().cancel, job_id)
    if json_:
        print_json(job)
        return
    style = STATUS_STYLE.get(job["status"], "")
    out.print(f"{job['id']} [{style}]{job['status']}[/]", highlight=False, soft_wrap=True)
    cancellation = job.get("cancellation") or {}
    if cancellation:
        out.print(f"remote run: {escape(str(cancellation.get('remote')))}: "
                  f"{escape(str(cancellation.get('message', '')))}", highlight=False,
                  soft_wrap=True)


@jobs_app.command("retry")
def retry(
    job_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="wait until the new attempt ends")] = False,
    json_: JsonFlag = False,
) -> None:
    """Start a new attempt of a failed, cancelled or timed-out job (its history is kept).

    With --wait the exit code is 0 if the new attempt completed, 1 otherwise.

    Example: orchestrator jobs retry job_01jf… --wait
    """
    client = client_or_exit()
    job = call(client.retry, job_id)
    if wait:
        with err.status(f"job {job['id']}, attempt {job['attempt']}, is {job['status']}…"):
            job = call(client.wait, job["id"])
    if json_:
        print_json(job)
    else:
        style = STATUS_STYLE.get(job["status"], "")
        out.print(f"{job['id']} attempt {job['attempt']} [{style}]{job['status']}[/]",
                  highlight=False, soft_wrap=True)
    if wait and job["status"] != "completed":
        raise typer.Exit(1)


def _show(job: dict[str, Any]) -> None:
    table = Table.grid(padding=(0, 2))
    style = STATUS_STYLE.get(job["status"], "")
    rows = [("id", job["id"]), ("workflow", job["workflow"]),
            ("status", f"[{style}]{job['status']}[/]"),
            ("remote", f"{job['remote']['provider']} run {job['remote']['run_id']}"),
            ("attempt", str(job["attempt"])), ("polls", str(job["polls"])),
            ("created", job["created_at"]), ("finished", job["finished_at"] or "")]
    if job.get("error"):
        rows.append(("error", f"{job['error']['code']}: {job['error']['message']}"))
    if job["status"] in TERMINAL and job.get("outputs") is not None:
        rows.append(("outputs", json.dumps(job["outputs"])[:500]))
    for key, value in rows:
        table.add_row(f"[bold]{key}[/]", value)
    out.print(table)
