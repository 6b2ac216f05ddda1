"""``orchestrator bench``: the command."""

from __future__ import annotations

import json
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

NAMES = ("submit", "rate-limit", "throughput", "callbacks", "read-budget", "scale")

EPILOG = """Examples:

  orchestrator bench all --quick                  # every scenario, short (make bench)

  orchestrator bench submit --json submit.json    # 10,000 jobs in one POST /v1/batches

  orchestrator bench rate-limit --workers 3       # P1 with three worker processes

  orchestrator bench throughput --jobs 1000       # P4 with 1,000 jobs

  orchestrator bench callbacks --rate 100         # P7: fan-out, and latency at 100 jobs/s

  orchestrator bench read-budget --jobs 200       # P2, P3: 200 runs in flight under the read limit

  orchestrator bench scale                        # P6: 100,000 jobs waiting on remote runs

Each scenario measures its baseline in the same run; the table sets each number against
the target in QUALITY.md. Unmet targets are reported, not errors: the exit status is 0
when every scenario ran, 1 when one could not run."""


def bench(
    scenario: Annotated[str, typer.Argument(
        help=f"one of {', '.join(NAMES)}, or all")] = "all",
    quick: Annotated[bool, typer.Option(
        "--quick", help="the short version (all of them in a few minutes)")] = False,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="also write the results to this file as JSON")] = None,
    workers: Annotated[int, typer.Option(min=1, max=16, help="worker processes")] = 2,
    concurrency: Annotated[int, typer.Option(min=1, max=64,
                                             help="task slots per worker process")] = 4,
    jobs: Annotated[int | None, typer.Option(
        min=1, max=10_000, help="jobs per scenario, instead of its own size")] = None,
    rate: Annotated[float | None, typer.Option(
        min=1, max=1_000, help="callbacks: jobs/s submitted in the latency run "
        "(default 100, 50 with --quick)")] = None,
    workdir: Annotated[Path, typer.Option(help="where the stacks' data and logs go")] = Path(
        ".orchestrator/bench"),
) -> None:
    """Measure the performance targets, each against a baseline in the same run: starts
    embedded Redis, SQLite, the sandbox, the API and worker processes as each scenario
    needs, and prints a table per scenario."""
    from orchestrator.bench.report import ScenarioResult, document, table
    from orchestrator.bench.scenarios import SCENARIOS, Context

    if scenario != "all" and scenario not in SCENARIOS:
        Console(stderr=True).print(
            f"[red]unknown scenario '{scenario}'[/]: choose one of {', '.join(NAMES)} or all")
        raise typer.Exit(2)
    chosen = list(SCENARIOS) if scenario == "all" else [scenario]
    console = Console()
    ctx = Context(workdir=workdir.resolve(), quick=quick, workers=workers,
                  concurrency=concurrency, jobs=jobs, console=console, rate=rate)
    results: list[ScenarioResult] = []
    for name in chosen:
        started = time.monotonic()
        try:
            result = SCENARIOS[name](ctx)
        except Exception as exc:  # one scenario failing still reports the others
            result = ScenarioResult(name, quick, error=f"{type(exc).__name__}: {exc}")
            console.print(f"[red]{name} did not run[/]: {exc}")
            traceback.print_exc(file=sys.stderr)
        result.seconds = time.monotonic() - started
        results.append(result)
        console.print(table(result))
    if json_path is not None:
        command = shlex.join(["orchestrator", "bench", *sys.argv[2:]])
        json_path.write_text(json.dumps(document(results, command), indent=2) + "\n")
        console.print(f"results written to {json_path}")
    if any(r.error for r in results):
        raise typer.Exit(1)
