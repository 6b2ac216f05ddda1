"""The demo: the main job on the embedded default, end to end, with its proof.

Starts the stack, submits jobs across every sandbox workflow (failures included) through the
REST API with a callback URL, shows live progress, waits for every callback, and checks what
a user should be able to count on: every job terminal in the state its workflow dictates,
no remote run started twice, every terminal event delivered once with a valid signature.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator.adapters.store.engine import make_engine
from orchestrator.adapters.store.repository import SqlStore
from orchestrator.bootstrap import SystemClock
from orchestrator.client import Client
from orchestrator.devstack import Stack
from orchestrator.receiver import CallbackReceiver
from orchestrator.services.tokens import create_token

PROVIDERS = ("sandbox", "sandbox-codewords")
# workflow → (share of the jobs, states it may end in)
MIX: dict[str, tuple[float, frozenset[str]]] = {
    "echo": (0.35, frozenset({"completed"})),
    "sleep": (0.2, frozenset({"completed"})),
    "files": (0.15, frozenset({"completed"})),
    "flaky": (0.2, frozenset({"completed", "failed"})),
    "fail": (0.1, frozenset({"failed"})),
}


@dataclass(frozen=True)
class PlannedJob:
    tag: str
    workflow: str
    inputs: dict[str, Any]
    expected: frozenset[str]


def plan(count: int, rng: random.Random) -> list[PlannedJob]:
    names = list(MIX)
    weights = [MIX[name][0] for name in names]
    jobs = []
    for index in range(count):
        name = names[index] if index < len(names) else rng.choices(names, weights)[0]
        provider = PROVIDERS[index % len(PROVIDERS)]
        tag = f"demo-{index}"
        inputs: dict[str, Any] = {"tag": tag, "duration_s": round(rng.uniform(0.2, 1.5), 2)}
        if name == "sleep":
            inputs["duration_s"] = round(rng.uniform(1.0, 3.0), 2)
        elif name == "flaky":
            inputs["p"] = 0.3
        elif name == "files":
            inputs["count"] = 2
        jobs.append(PlannedJob(tag, f"{provider}/{name}", inputs, MIX[name][1]))
    return jobs


@dataclass
class DemoResult:
    jobs: int
    seconds: float
    by_state: Counter[str]
    by_workflow: dict[str, Counter[str]]
    unexpected: list[str]
    remote_runs: int
    duplicate_runs: int
    polls: int
    callbacks: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def run_demo(stack: Stack, count: int, console: Console, *, seed: int = 7,
             timeout_s: float = 600.0) -> DemoResult:
    assert stack.settings is not None
    store = SqlStore(make_engine(stack.settings.database.url))
    token, _ = create_token(f"demo-{int(time.time() * 1000)}", store, SystemClock())
    secret = (stack.workdir / "signing_secret").read_text().strip()
    planned = plan(count, random.Random(seed))
    started = time.monotonic()
    with CallbackReceiver(secret) as receiver, Client(stack.api_url, token) as client:
        ids = _submit(client, planned, receiver.url, console)
        _follow(store, ids, receiver, console, timeout_s)
        seconds = time.monotonic() - started
        result = _tally(client, store, stack, planned, ids, receiver, seconds)
    store.engine.dispose()
    return result


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[detail]}"),
                    console=console, transient=False)


def _submit(client: Client, planned: list[PlannedJob], callback_url: str,
            console: Console) -> dict[str, PlannedJob]:
    ids: dict[str, PlannedJob] = {}
    with _progress(console) as progress:
        task = progress.add_task("submitting", total=len(planned), detail="")
        for job in planned:
            created = client.submit(job.workflow, job.inputs, callback_url=callback_url,
                                    labels={"demo": job.tag}, idempotency_key=job.tag)
            ids[created["id"]] = job
            progress.advance(task)
    return ids


def _follow(store: SqlStore, ids: dict[str, PlannedJob], receiver: CallbackReceiver,
            console: Console, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    terminal = {"completed", "failed", "cancelled", "timed_out"}
    with _progress(console) as progress:
        jobs_bar = progress.add_task("jobs done", total=len(ids), detail="")
        hooks_bar = progress.add_task("callbacks", total=len(ids), detail="")
        while time.monotonic() < deadline:
            # The demo's database is fresh, so every job in it is one of ours.
            counts = Counter(store.count_by_status())
            done = sum(n for state, n in counts.items() if state in terminal)
            detail = "  ".join(f"{state} {n}" for state, n in sorted(counts.items()))
            progress.update(jobs_bar, completed=done, detail=detail)
            delivered = len(receiver.job_ids() & set(ids))
            progress.update(hooks_bar, completed=delivered, detail="")
            if done == len(ids) and delivered == len(ids):
                return
            time.sleep(0.25)


def _tally(client: Client, store: SqlStore, stack: Stack, planned: list[PlannedJob],
           ids: dict[str, PlannedJob], receiver: CallbackReceiver,
           seconds: float) -> DemoResult:
    by_state: Counter[str] = Counter()
    by_workflow: dict[str, Counter[str]] = {}
    unexpected: list[str] = []
    polls = 0
    for job_id, job in ids.items():
        row = store.get_job(job_id)
        state = row.status.value if row else "missing"
        polls += row.polls if row else 0
        by_state[state] += 1
        by_workflow.setdefault(job.workflow, Counter())[state] += 1
        if state not in job.expected:
            unexpected.append(f"{job_id} ({job.workflow}) ended {state}")
    runs = httpx.get(f"{stack.sandbox.url}/_sandbox/runs", timeout=10).json()["runs"]
    tags = Counter(run["inputs"].get("tag") for run in runs if isinstance(run.get("inputs"), dict))
    duplicates = sum(n - 1 for tag, n in tags.items() if tag in {j.tag for j in planned})
    callbacks = receiver.summary()
    result = DemoResult(len(ids), seconds, by_state, by_workflow, unexpected,
                        sum(tags.values()), duplicates, polls, callbacks)
    result.problems = _problems(result, ids, receiver)
    return result


def _problems(result: DemoResult, ids: dict[str, PlannedJob],
              receiver: CallbackReceiver) -> list[str]:
    problems = list(result.unexpected)
    if result.duplicate_runs:
        problems.append(f"{result.duplicate_runs} remote runs were started twice")
    missing = set(ids) - receiver.job_ids()
    if missing:
        problems.append(f"{len(missing)} jobs' callbacks did not arrive")
    if result.callbacks["bad_signatures"]:
        problems.append(f"{result.callbacks['bad_signatures']} callbacks failed verification")
    return problems


def summary_table(result: DemoResult) -> Table:
    states = ["completed", "failed", "cancelled", "timed_out"]
    table = Table(title=f"{result.jobs} jobs in {result.seconds:.1f} s", show_footer=True)
    table.add_column("workflow", footer="total")
    for state in states:
        table.add_column(state, justify="right", footer=str(result.by_state.get(state, 0)))
    for workflow, counts in sorted(result.by_workflow.items()):
        table.add_row(workflow, *(str(counts.get(state, 0)) for state in states))
    return table


def facts_table(result: DemoResult) -> Table:
    table = Table(show_header=False, title="what happened")
    cb = result.callbacks
    rows = [
        ("remote runs started", f"{result.remote_runs} (duplicates: {result.duplicate_runs})"),
        ("polls", f"{result.polls} ({result.polls / max(result.jobs, 1):.1f} per job)"),
        ("callbacks delivered", f"{cb['accepted']} of {result.jobs}, signatures verified "
                                f"(attempts {cb['attempts']}, duplicates {cb['duplicates']})"),
        ("time taken", f"{result.seconds:.1f} s ({result.jobs / result.seconds:.1f} jobs/s)"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table
