"""What every command shares: loading settings, consoles, errors that say what to do."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from orchestrator.client import Client, ClientError
from orchestrator.config import ConfigError, Settings, load_settings

out = Console()
err = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
# ``--timeout`` of the commands that can wait (--wait) for work to end.
WaitTimeout = Annotated[float | None, typer.Option(
    metavar="SECONDS", min=0, show_default=False,
    help="with --wait: give up after this many seconds (exit 1; the work goes on)")]
STATUS_STYLE = {"completed": "green", "failed": "red", "cancelled": "yellow",
                "timed_out": "magenta", "running": "cyan", "starting": "cyan",
                "queued": "white"}


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def exit_unless_completed(status: object) -> None:
    """The exit code a script can trust after following work to its end: 0 if it
    completed, 1 if it failed, was cancelled or timed out (or never said how it ended)."""
    if status != "completed":
        raise typer.Exit(1)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as error:
        fail(str(error), code=2)


def client_or_exit() -> Client:
    return Client()


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a client call, turning its errors into one clear line and exit code 1."""
    try:
        return fn(*args, **kwargs)
    except ClientError as error:
        prefix = f"HTTP {error.status} {error.code}: " if error.status else ""
        fail(prefix + error.message)


def read_inputs(text: str) -> Any:
    """``--inputs``: JSON, or ``@file.json``."""
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


def parse_labels(items: list[str]) -> dict[str, str]:
    """Repeated ``--label KEY=VALUE`` options as a map; a malformed one exits 1 naming it."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--label takes KEY=VALUE (e.g. --label team=growth), got '{item}'")
        labels[key] = value
    return labels
