"""Server-side commands: api, migrate, sandbox, tokens."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from orchestrator.adapters.store.repository import SqlStore
from orchestrator.cli.common import fail, out, print_json, settings_or_exit

tokens_app = typer.Typer(help="API tokens, stored hashed.", no_args_is_help=True)


def api(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
) -> None:
    """Serve the REST API.

    Example: orchestrator api --host 0.0.0.0 --port 8000
    """
    import uvicorn

    from orchestrator.api.app import create_app
    from orchestrator.logs import configure_logging

    settings = settings_or_exit()
    try:
        configure_logging()
    except ValueError as exc:
        fail(str(exc))
    # log_config=None: uvicorn's records go through our handler (JSON or text, redacted by
    # the secrets the app's Container registers) instead of handlers of its own.
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info",
                access_log=False, log_config=None)


def migrate() -> None:
    """Create or upgrade the database schema to the newest version.

    Example: ORCHESTRATOR_DATABASE_URL=postgresql+psycopg://u:pw@db/orch orchestrator migrate
    """
    from orchestrator.adapters.store.engine import make_engine
    from orchestrator.adapters.store.migrate import upgrade

    settings = settings_or_exit()
    engine = make_engine(settings.database.url)
    try:
        before, after = upgrade(engine)
    except Exception as exc:  # the database's own message says what is wrong
        fail(f"migration failed on {engine.url.render_as_string(hide_password=True)}: {exc}")
    finally:
        engine.dispose()
    where = engine.url.render_as_string(hide_password=True)
    if before == after:
        out.print(f"database {where} is up to date (revision {after})")
    else:
        out.print(f"database {where} upgraded from {before or 'empty'} to {after}")


def sandbox(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8100,
    api_key: Annotated[str, typer.Option(help="the key clients must send")] = "sandbox-key",
    duration: Annotated[float, typer.Option(help="default run time, seconds")] = 0.2,
    latency: Annotated[float, typer.Option(help="added latency per request, seconds")] = 0.0,
) -> None:
    """Serve the sandbox provider alone: Cordage protocol under /cordage, CodeWords under
    /codewords, admin under /_sandbox.

    Example: orchestrator sandbox --port 8100 --duration 2
    """
    from orchestrator.sandbox.server import serve
    from orchestrator.sandbox.settings import SandboxSettings

    serve(host, port, SandboxSettings(api_key=api_key, default_duration_s=duration,
                                      latency_s=latency))


def _store() -> SqlStore:
    from orchestrator.adapters.store.engine import make_engine
    return SqlStore(make_engine(settings_or_exit().database.url))


@tokens_app.command("create")
def tokens_create(name: str) -> None:
    """Create a token and print it alone on stdout, once; only its hash is kept.

    Example: export ORCHESTRATOR_TOKEN=$(orchestrator tokens create ci)
    """
    from orchestrator.bootstrap import SystemClock
    from orchestrator.ports import AlreadyExists
    from orchestrator.services.tokens import create_token

    try:
        plain, _ = create_token(name, _store(), SystemClock())
    except (ValueError, AlreadyExists) as exc:
        fail(f"{exc}; choose another name or revoke the old token")
    print(plain)


@tokens_app.command("list")
def tokens_list(json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List tokens (names and prefixes; never the secret).

    Example: orchestrator tokens list --json
    """
    tokens = _store().list_tokens()
    if json_:
        print_json([t.__dict__ for t in tokens])
        return
    table = Table("name", "prefix", "created", "revoked")
    for t in tokens:
        table.add_row(t.name, t.prefix + "…", _when(t.created_at), _when(t.revoked_at))
    out.print(table)


@tokens_app.command("revoke")
def tokens_revoke(name: str) -> None:
    """Revoke a token: every request with it gets 401 from now on. A name with no live
    token is an error (exit 1).

    Example: orchestrator tokens revoke ci
    """
    import time

    if not _store().revoke_token(name, time.time()):
        fail(f"no live token named '{name}' (see 'orchestrator tokens list')")
    out.print(f"token '{name}' revoked")


def _when(epoch: float | None) -> str:
    from orchestrator.domain.webhook import rfc3339

    return "" if epoch is None else rfc3339(epoch)
