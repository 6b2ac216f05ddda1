"""Producer commands over the REST API: submit, jobs list, show, logs, watch, cancel and
retry."""

from __future__ import annotations

import json
import queue
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import RenderableType
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from orchestrator.cli.common import (
    STATUS_STYLE,
    JsonFlag,
    WaitTimeout,
    call,
    client_or_exit,
    err,
    exit_unless_completed,
    fail,
    out,
    print_json,
    read_inputs,
)
from orchestrator.client import TERMINAL, Client

jobs_app = typer.Typer(help="Look at and steer jobs.", no_args_is_help=True)
JobId = Annotated[str, typer.Argument(help="the job's id, job_…", show_default=False)]
EventsJson = Annotated[bool, typer.Option("--json", help="print each event as one line of JSON")]


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
    timeout: WaitTimeout = None,
    json_: JsonFlag = False,
) -> None:
    """Submit one job. Prints its id (or the job with --json).

    With --wait the exit code is 0 if the job completed, 1 if it failed, was cancelled or
    timed out, or --timeout passed first (the job goes on).

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
        job = _waited(client, job["id"], timeout, f"job {job['id']} is {job['status']}…")
    if json_:
        print_json(job)
    elif wait:
        _show(job)
    else:
        print(job["id"])
    if wait:
        exit_unless_completed(job["status"])


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
def show(job_id: JobId, json_: JsonFlag = False) -> None:
    """Show one job.

    Example: orchestrator jobs show job_01jf…
    """
    job = call(client_or_exit().get, job_id)
    if json_:
        print_json(job)
    else:
        _show(job)


@jobs_app.command("logs")
def logs(job_id: JobId, json_: EventsJson = False) -> None:
    """Follow a job: its state changes, and its run's log lines where the provider streams
    them (CodeWords), as they come. Ends when the job has ended, with exit code 0 however
    it ended (for an exit code that says how: jobs watch).

    Example: orchestrator jobs logs job_01jf…
    """
    call(_follow, client_or_exit(), job_id, json_)


def _follow(client: Client, job_id: str, json_: bool) -> str | None:
    """Print the job's events as they come until it has ended; the status it ended in."""
    status = None
    for event in client.events(job_id):
        if json_:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()
        elif event["event"] != "end":  # the last state line already says how it ended
            out.print(_event_line(event), highlight=False, soft_wrap=True)  # one line each
        if event["event"] == "end":
            status = _data(event).get("status")
    return status


@jobs_app.command("watch")
def watch(
    job_id: JobId,
    json_: EventsJson = False,
    interval: Annotated[float, typer.Option(
        help="seconds between looks at the job's remote status and polls", min=0.1)] = 1.0,
) -> None:
    """Follow one job live until it ends: a status line with its state, the remote run's
    status, its polls, attempt and elapsed time, and each state change (and the run's log
    lines, where the provider streams them) printed as it happens. With --json, each event
    as one line of JSON instead, as jobs logs --json prints them.

    The exit code is 0 if the job completed, 1 if it failed, was cancelled or timed out
    (or there is no such job, or the API cannot be reached).

    Example: orchestrator jobs watch job_01jf…

    Example: orchestrator jobs watch job_01jf… --json > events.jsonl && echo completed
    """
    client = client_or_exit()
    if json_:
        status = call(_follow, client, job_id, True)
    else:
        status = call(_watch, client, job_id, interval)
    exit_unless_completed(status)


def _watch(client: Client, job_id: str, interval: float) -> str | None:
    """The live view: events as lines above a status line that is refreshed from the job
    every ``interval``; the status the job ended in."""
    job = client.get(job_id)  # no such job: an error before anything is started
    feed = _EventFeed(client, job_id)
    with Live(_status_line(job), console=out, refresh_per_second=8, transient=True) as live:
        while not feed.ended:
            for event in feed.take(interval):
                if event["event"] != "end":
                    live.console.print(_event_line(event), highlight=False, soft_wrap=True)
            job = client.get(job_id)
            live.update(_status_line(job))
    out.print(_status_line(job), highlight=False, soft_wrap=True)
    return feed.status


class _EventFeed:
    """The job's events, read on a thread of their own so that the status line moves on
    between them; the reader's error is raised where the events are taken."""

    def __init__(self, client: Client, job_id: str) -> None:
        self._items: queue.Queue[dict[str, Any] | Exception] = queue.Queue()
        self.ended = False
        self.status: str | None = None
        threading.Thread(target=self._read, args=(client, job_id), daemon=True,
                         name=f"events-{job_id}").start()

    def _read(self, client: Client, job_id: str) -> None:
        try:
            for event in client.events(job_id):
                self._items.put(event)
        except Exception as error:  # handed over: the main thread says what went wrong
            self._items.put(error)

    def take(self, timeout: float) -> list[dict[str, Any]]:
        """The events that have come, waiting up to ``timeout`` for the first."""
        events: list[dict[str, Any]] = []
        try:
            item = self._items.get(timeout=timeout)
            while True:
                if isinstance(item, Exception):
                    raise item
                events.append(item)
                if item["event"] == "end":
                    self.ended, self.status = True, _data(item).get("status")
                item = self._items.get_nowait()
        except queue.Empty:
            return events


def _status_line(job: dict[str, Any]) -> RenderableType:
    status = str(job["status"])
    remote = job.get("remote") or {}
    line = Text.from_markup(
        f"[bold]{escape(str(job['id']))}[/]  [{STATUS_STYLE.get(status, '')}]{status}[/]  "
        f"remote {escape(str(remote.get('status') or '-'))}  polls {job.get('polls', 0)}  "
        f"attempt {job.get('attempt', 1)}  elapsed {_elapsed(job)}")
    return line if status in TERMINAL else Spinner("dots", text=line, style="cyan")


def _elapsed(job: dict[str, Any]) -> str:
    """From the job's creation to its end, or to now."""
    try:
        start = datetime.fromisoformat(str(job["created_at"]))
        end = (datetime.fromisoformat(job["finished_at"]) if job.get("finished_at")
               else datetime.now(UTC))
    except (KeyError, ValueError):
        return "-"
    return str(timedelta(seconds=round(max((end - start).total_seconds(), 0.0))))


def _data(event: dict[str, Any]) -> dict[str, Any]:
    data = event["data"]
    return data if isinstance(data, dict) else {"message": data}


def _event_line(event: dict[str, Any]) -> str:
    data = _data(event)
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
def cancel(job_id: JobId, json_: JsonFlag = False) -> None:
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
    job_id: JobId,
    wait: Annotated[bool, typer.Option("--wait", help="wait until the new attempt ends")] = False,
    timeout: WaitTimeout = None,
    json_: JsonFlag = False,
) -> None:
    """Start a new attempt of a failed, cancelled or timed-out job (its history is kept).

    With --wait the exit code is 0 if the new attempt completed, 1 otherwise (it failed,
    was cancelled or timed out, or --timeout passed first: the attempt goes on).

    Example: orchestrator jobs retry job_01jf… --wait
    """
    client = client_or_exit()
    job = call(client.retry, job_id)
    if wait:
        job = _waited(client, job["id"], timeout,
                      f"job {job['id']}, attempt {job['attempt']}, is {job['status']}…")
    if json_:
        print_json(job)
    else:
        style = STATUS_STYLE.get(job["status"], "")
        out.print(f"{job['id']} attempt {job['attempt']} [{style}]{job['status']}[/]",
                  highlight=False, soft_wrap=True)
    if wait:
        exit_unless_completed(job["status"])


def _waited(client: Client, job_id: str, timeout: float | None,
            doing: str) -> dict[str, Any]:
    """The job once it has ended, with ``doing`` shown meanwhile; exit 1 if ``timeout``
    passes first (the job goes on)."""
    try:
        with err.status(doing):
            job: dict[str, Any] = call(client.wait, job_id, timeout_s=timeout)
    except TimeoutError as exc:
        fail(f"{exc}; it goes on: follow it with 'orchestrator jobs watch {job_id}', or stop "
             f"it with 'orchestrator jobs cancel {job_id}'")
    return job


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
