"""``orchestrator``: the command line."""

from __future__ import annotations

import typer

from orchestrator.bench.cli import EPILOG as BENCH_EPILOG
from orchestrator.bench.cli import bench
from orchestrator.cli import batches, callbacks, dev, jobs, providers, schedules, server

app = typer.Typer(
    name="orchestrator",
    help="A durable job orchestrator for remote workflow runtimes.\n\n"
         "Client commands reach the API at $ORCHESTRATOR_URL (default http://127.0.0.1:8000) "
         "with $ORCHESTRATOR_TOKEN; server commands read orchestrator.toml or "
         "$ORCHESTRATOR_CONFIG.\n\n"
         "Exit codes: 0 success; 1 an API or input error (the message says which), or, "
         "where a command waits (--wait, jobs watch), a job that did not complete or a "
         "--timeout that passed; 2 a usage or configuration error. Each command's --help "
         "says more where it differs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(dev.dev)
app.command()(dev.demo)
app.command()(server.api)
app.command()(server.migrate)
app.command()(server.sandbox)
app.command(epilog=BENCH_EPILOG)(bench)
app.command()(jobs.submit)
app.add_typer(server.tokens_app, name="tokens")
app.add_typer(jobs.jobs_app, name="jobs")
app.add_typer(batches.batch_app, name="batch")
app.add_typer(schedules.schedules_app, name="schedules")
app.add_typer(callbacks.callbacks_app, name="callbacks")
app.add_typer(providers.providers_app, name="providers")


def main() -> None:
    app()
