"""``orchestrator dev`` and ``orchestrator demo``: the embedded default, in one command."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel

from orchestrator.cli.common import err, fail, out
from orchestrator.devstack import Stack, StackOptions


def dev(
    port: Annotated[int, typer.Option(help="port of the API")] = 8000,
    workdir: Annotated[Path, typer.Option(help="where data and logs go")] = Path(
        ".orchestrator/dev"),
    concurrency: Annotated[int, typer.Option(help="worker processes")] = 4,
) -> None:
    """One process for a laptop: embedded Redis, SQLite, the API, a worker, beat and the
    sandbox provider. Prints the URL and a token; Ctrl-C stops everything.

    Runs until stopped. The exit code is 0 when stopped by Ctrl-C (or SIGTERM), 1 if the
    stack did not start or one of its processes stopped on its own, 2 for a bad option.

    Example: orchestrator dev --port 8000
    """
    from orchestrator.adapters.store.engine import make_engine
    from orchestrator.adapters.store.repository import SqlStore
    from orchestrator.bootstrap import SystemClock
    from orchestrator.services.tokens import create_token

    options = StackOptions(workdir=workdir, api_port=port, concurrency=concurrency,
                           persistent_redis=True)
    with err.status("starting Redis, the sandbox, the API, a worker and beat…"):
        stack = _started(Stack(options))
    assert stack.settings is not None
    store = SqlStore(make_engine(stack.settings.database.url))
    token, _ = create_token(f"dev-{int(time.time())}", store, SystemClock())
    out.print(Panel.fit(
        f"API        {stack.api_url}   (docs: {stack.api_url}/docs)\n"
        f"token      {token}\n"
        f"sandbox    {stack.sandbox.url}   (providers 'sandbox' and 'sandbox-codewords')\n"
        f"config     {stack.config_path}\nlogs       {workdir / 'logs'}\n\n"
        f"export ORCHESTRATOR_URL={stack.api_url}\nexport ORCHESTRATOR_TOKEN={token}\n"
        "orchestrator submit sandbox/echo --inputs '{\"hello\": \"world\"}' --wait",
        title="orchestrator dev", subtitle="Ctrl-C stops everything"))
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    crashed = False
    try:
        while not stopped.wait(1.0):
            if not all(child.alive for child in stack.children):
                crashed = True
                break
    except KeyboardInterrupt:
        pass
    finally:
        with err.status("stopping…"):
            stack.stop()
    if crashed:
        fail(f"a process of the stack stopped; see the logs above and in {workdir / 'logs'}")


def demo(
    jobs: Annotated[int, typer.Option(min=1, max=5000, help="how many jobs to run")] = 200,
    workdir: Annotated[Path, typer.Option(help="where data and logs go (wiped first)")] = Path(
        ".orchestrator/demo"),
    concurrency: Annotated[int, typer.Option(help="worker processes")] = 4,
) -> None:
    """The main job on the embedded default: start what dev starts, submit jobs across the
    sandbox workflows (failures included), show progress and callbacks, and print a
    summary. Exits 0 when every job ended as its workflow dictates, no run was started
    twice, and every callback arrived with a valid signature; 1 otherwise, or if the stack
    did not start.

    Example: orchestrator demo --jobs 200
    """
    from orchestrator.demo import facts_table, run_demo, summary_table

    options = StackOptions(workdir=workdir, concurrency=concurrency, fresh=True)
    with err.status("starting Redis, the sandbox, the API, a worker and beat…"):
        stack = _started(Stack(options))
    try:
        out.print(f"stack up: API {stack.api_url}, sandbox {stack.sandbox.url}, "
                  f"logs in {workdir / 'logs'}")
        result = run_demo(stack, jobs, out)
    finally:
        with err.status("stopping every process the demo started…"):
            stack.stop()
    out.print(summary_table(result))
    out.print(facts_table(result))
    if not result.ok:
        for problem in result.problems[:20]:
            err.print(f"[red]✗[/] {problem}")
        fail(f"the demo found {len(result.problems)} problem(s); logs are in {workdir / 'logs'}")
    out.print("[bold green]✓ every job ended as its workflow dictates, no run was started "
              "twice, every callback arrived signed[/]")


def _started(stack: Stack) -> Stack:
    try:
        stack.start()
    except Exception as exc:
        stack.stop()
        fail(f"the stack did not start: {exc}")
    return stack

