"""Producer commands over the REST API: submit, jobs list, jobs show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from orchestrator.cli.common import call, client_or_exit, err, fail, out, print_json
from orchestrator.client import TERMINAL

jobs_app = typer.Typer(help="Look at and steer jobs.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
STATUS_STYLE = {"completed": "green", "failed": "red", "cancelled": "yellow",
                "timed_out": "magenta", "running": "cyan", "starting": "cyan",
                "queued": "white"}


def _read_inputs(text: str) -> Any:
    source = "--inputs"
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text, source = path.read_text(), str(path)
        except OSError as exc:
            fail(f"cannot read inputs file {path}: {exc.strerror}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{source} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")


def submit(
    workflow: Annotated[str, typer.Argument(help="<provider>/<name>, e.g. sandbox/echo")],
    inputs: Annotated[str, typer.Option(help="JSON, or @file.json")] = "{}",
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
    """
    labels = dict(item.split("=", 1) for item in label or [] if "=" in item)
    client = client_or_exit()
    job = call(client.submit, workflow, _read_inputs(inputs), callback_url=callback_url,
               idempotency_key=idempotency_key, labels=labels or None, priority=priority)
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
    limit: Annotated[int, typer.Option(min=1)] = 50,
    json_: JsonFlag = False,
) -> None:
    """List jobs, newest first.

    Example: orchestrator jobs list --status failed --limit 20
    """
    client = client_or_exit()
    jobs = call(lambda: list(client.list(status=status, workflow=workflow, label=label,
                                         limit=limit, page_size=min(limit, 500))))
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
