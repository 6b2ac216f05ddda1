"""``orchestrator batch``: submit many jobs from a JSONL file, and follow them."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from orchestrator.cli.common import (
    STATUS_STYLE,
    JsonFlag,
    WaitTimeout,
    call,
    client_or_exit,
    err,
    fail,
    out,
    parse_labels,
    print_json,
)
from orchestrator.client import MAX_BATCH_JOBS, Client, ClientError

batch_app = typer.Typer(
    help="Many jobs at once: submit a JSONL file of job specs as batches, and follow them.",
    no_args_is_help=True)

STATES = ("queued", "starting", "running", "completed", "failed", "cancelled", "timed_out")
MAX_BAD_LINES = 10
JOB_INDEX = re.compile(r"\bjobs\[(\d+)\](\.?)")  # jobs[17] and jobs[17].priority


def read_jobs(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """One JSON job spec (an object) per line, and each one's line number; blank lines are
    skipped. Any bad line stops everything, before anything is sent, with the line numbers
    named."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
    jobs: list[dict[str, Any]] = []
    lines: list[int] = []
    bad: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(job, dict):
            bad.append(f"line {number}: a job spec must be a JSON object, like "
                       '{"workflow": "sandbox/echo", "inputs": {}}')
            continue
        jobs.append(job)
        lines.append(number)
    if bad:
        more = f"\n  … and {len(bad) - MAX_BAD_LINES} more" if len(bad) > MAX_BAD_LINES else ""
        fail(f"{path}: {len(bad)} bad line(s), nothing was submitted:\n  "
             + "\n  ".join(bad[:MAX_BAD_LINES]) + more)
    if not jobs:
        fail(f"{path} holds no jobs: write one JSON job spec per line, like "
             '{"workflow": "sandbox/echo", "inputs": {"n": 1}}')
    return jobs, lines


@batch_app.command("submit")
def submit(
    file: Annotated[Path, typer.Argument(help="JSONL: one job spec per line", dir_okay=False)],
    idempotency_key: Annotated[str | None, typer.Option(
        help="same key and file again → no new job (a file of more than one batch is "
             "sent as batches keyed KEY-1, KEY-2, …)")] = None,
    label: Annotated[list[str] | None, typer.Option(
        help="key=value, set on every job (a job's own labels win); repeatable")] = None,
    callback_url: Annotated[str | None, typer.Option(
        help="POSTed each job's terminal event, for jobs that name no callback_url")] = None,
    batch_size: Annotated[int, typer.Option(
        help="jobs per batch", min=1, max=MAX_BATCH_JOBS)] = MAX_BATCH_JOBS,
    wait: Annotated[bool, typer.Option(
        "--wait", help="follow the jobs until every one has ended")] = False,
    timeout: WaitTimeout = None,
    interval: Annotated[float, typer.Option(
        help="with --wait: seconds between looks at the batches", min=0.1)] = 1.0,
    json_: JsonFlag = False,
) -> None:
    """Submit the jobs of a JSONL file (one job spec per line, blank lines skipped) as
    batches of up to 10,000, all of a batch accepted or none. A bad line stops it before
    anything is sent. Prints the batch ids; with --json, each batch with its job ids.

    With --wait it shows the jobs' progress by state and rate, then a summary; the exit
    code is 0 when every job completed, 1 otherwise (a job failed, was cancelled or timed
    out, or --timeout passed).

    Example: orchestrator batch submit jobs.jsonl --idempotency-key nightly-2024-06-01 --wait

    A line of jobs.jsonl: {"workflow": "sandbox/echo", "inputs": {"row": 1}}
    """
    jobs, lines = read_jobs(file)
    client = client_or_exit()
    batches = _upload(client, jobs, lines, batch_size, idempotency_key=idempotency_key,
                      labels=parse_labels(label or []) or None, callback_url=callback_url)
    if not wait:
        if json_:
            print_json(batches)
        else:
            for batch in batches:
                print(batch["id"])
        return
    started = time.monotonic()
    finals = call(_follow, client, batches, timeout, interval)
    if json_:
        print_json([{**final, "job_ids": batch["job_ids"], "created": batch["created"]}
                    for batch, final in zip(batches, finals, strict=True)])
    else:
        _summary(finals, time.monotonic() - started)
    if any(final["counts"]["completed"] != final["total"] for final in finals):
        raise typer.Exit(1)


def _upload(client: Client, jobs: list[dict[str, Any]], lines: list[int], batch_size: int,
            *, idempotency_key: str | None, **fields: Any) -> list[dict[str, Any]]:
    """Every batch sent, with a progress bar of the jobs uploaded; each batch is named as
    it is accepted. A refused batch is reported by the file's line numbers."""
    batches: list[dict[str, Any]] = []
    try:
        _send(client, jobs, batch_size, batches, idempotency_key=idempotency_key, **fields)
    except ClientError as error:
        first = sum(len(batch["job_ids"]) for batch in batches)
        message = JOB_INDEX.sub(lambda m: _line_of(m, first, lines), error.message)
        prefix = f"HTTP {error.status} {error.code}: " if error.status else ""
        if batches:
            again = ("; run the same command again to send the rest (the accepted batches "
                     "are not repeated)" if idempotency_key else "")
            message += (f"\n{len(batches)} batch(es) before it were accepted: "
                        + " ".join(batch["id"] for batch in batches) + again)
        fail(prefix + message)
    return batches


def _line_of(match: re.Match[str], first: int, lines: list[int]) -> str:
    index = first + int(match.group(1))
    if index >= len(lines):
        return match.group(0)
    return f"line {lines[index]}" + (", " if match.group(2) else "")


def _send(client: Client, jobs: list[dict[str, Any]], batch_size: int,
          batches: list[dict[str, Any]], *, idempotency_key: str | None,
          **fields: Any) -> None:
    several = len(jobs) > batch_size
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("jobs"), TimeElapsedColumn(), console=err) as progress:
        task = progress.add_task("upload", total=len(jobs))

        def on_jobs_sent(sent: int, _total: int) -> None:
            progress.update(task, completed=sent)

        for batch in client.submit_batches(jobs, idempotency_key=idempotency_key,
                                           chunk_size=batch_size, on_jobs_sent=on_jobs_sent,
                                           **fields):
            size = len(batch["job_ids"])
            progress.update(task, completed=batch["first"] + size)
            batches.append(batch)
            note = "" if batch["created"] else \
                " [yellow](submitted before with this key: no new jobs)[/]"
            number = f" {len(batches)}" if several else ""
            progress.console.print(
                f"batch{number} [bold]{batch['id']}[/]: {size:,} jobs "
                f"({batch['first'] + 1:,}–{batch['first'] + size:,} of the file's "
                f"{len(jobs):,}){note}", highlight=False)


def _follow(client: Client, batches: list[dict[str, Any]], timeout: float | None,
            interval: float) -> list[dict[str, Any]]:
    """Poll the batches until every job has ended, with a progress bar of the jobs ended,
    their counts by state and the rate they end at."""
    started = time.monotonic()
    finals = [client.get_batch(batch["id"]) for batch in batches]
    ended_at_start = sum(_ended(final) for final in finals)
    total = sum(final["total"] for final in finals)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[counts]}"), TextColumn("{task.fields[rate]}"),
                  TimeElapsedColumn(), console=err) as progress:
        task = progress.add_task("jobs ended", total=total, counts="", rate="")
        while True:
            _show_progress(progress, task, finals, ended_at_start, started)
            if all(final["done"] for final in finals):
                return finals
            if timeout is not None and time.monotonic() - started > timeout:
                progress.stop()
                ids = " ".join(batch["id"] for batch in batches)
                fail(f"not every job has ended after {timeout:g} s; follow them with "
                     f"'orchestrator batch status {ids}'")
            time.sleep(interval)
            finals = [final if final["done"] else client.get_batch(final["id"])
                      for final in finals]


def _show_progress(progress: Progress, task: TaskID, finals: list[dict[str, Any]],
                   ended_at_start: int, started: float) -> None:
    counts = _sum_counts(finals)
    ended = sum(_ended(final) for final in finals)
    elapsed = max(time.monotonic() - started, 1e-6)
    rate = (ended - ended_at_start) / elapsed
    shown = " · ".join(f"[{STATUS_STYLE.get(state, '')}]{state} {counts[state]:,}[/]"
                       for state in STATES if counts[state])
    progress.update(task, completed=ended, counts=shown, rate=f"{rate:,.1f} jobs/s")


def _ended(batch: dict[str, Any]) -> int:
    counts = batch["counts"]
    return int(counts["completed"] + counts["failed"] + counts["cancelled"]
               + counts["timed_out"])


def _sum_counts(batches: list[dict[str, Any]]) -> dict[str, int]:
    return {state: sum(int(b["counts"][state]) for b in batches) for state in STATES}


def _summary(finals: list[dict[str, Any]], elapsed: float) -> None:
    counts = _sum_counts(finals)
    total = sum(final["total"] for final in finals)
    batches = "1 batch" if len(finals) == 1 else f"{len(finals)} batches"
    out.print(f"[bold]{total:,} jobs[/] in {batches}, all ended after {elapsed:,.1f} s",
              highlight=False)
    table = Table("state", "jobs")
    for state in STATES:
        if counts[state]:
            style = STATUS_STYLE.get(state, "")
            table.add_row(f"[{style}]{state}[/]", f"{counts[state]:,}")
    out.print(table)
    for final in finals:
        out.print(f"batch {final['id']}: {final['counts']['completed']:,} of "
                  f"{final['total']:,} completed", highlight=False, soft_wrap=True)
    unsuccessful = total - counts["completed"]
    if unsuccessful:
        first = next(final["id"] for final in finals
                     if final["counts"]["completed"] != final["total"])
        out.print(f"[red]{unsuccessful:,} job(s) did not complete[/]: see them with "
                  f"'orchestrator jobs list --batch {escape(first)} --status failed' (or "
                  "cancelled, timed_out)", highlight=False, soft_wrap=True)


@batch_app.command("status")
def status(
    batch_id: Annotated[str, typer.Argument(help="the batch's id, bat_…")],
    json_: JsonFlag = False,
) -> None:
    """Show a batch: its jobs counted by state, whether all have ended, and when.

    Example: orchestrator batch status bat_01jf…
    """
    batch = call(client_or_exit().get_batch, batch_id)
    if json_:
        print_json(batch)
        return
    out.print(f"batch [bold]{escape(batch['id'])}[/]", highlight=False, soft_wrap=True)
    table = Table("state", "jobs")
    for state in STATES:
        style = STATUS_STYLE.get(state, "")
        table.add_row(f"[{style}]{state}[/]", f"{batch['counts'][state]:,}")
    table.add_section()
    table.add_row("[bold]total[/]", f"{batch['total']:,}")
    out.print(table)
    done = "yes, finished " + str(batch["finished_at"]) if batch["done"] else "no"
    labels = ", ".join(f"{k}={v}" for k, v in batch["labels"].items()) or "-"
    for key, value in (("created", batch["created_at"]), ("done", done), ("labels", labels)):
        out.print(f"[bold]{key}[/]  {escape(str(value))}", highlight=False, soft_wrap=True)
