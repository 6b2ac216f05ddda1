"""``orchestrator providers``: the configured runtimes, their limits and what is in flight."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from orchestrator.cli.common import JsonFlag, call, client_or_exit, out, print_json

providers_app = typer.Typer(help="Configured providers (remote runtimes) and their limits.",
                            no_args_is_help=True)


@providers_app.command("list")
def list_providers(json_: JsonFlag = False) -> None:
    """List the providers: each limit with what is left of it now, any wait the runtime
    asked for, and the jobs in flight (starting or running) and queued.

    Example: orchestrator providers list
    """
    providers = call(client_or_exit().providers)
    if json_:
        print_json(providers)
        return
    table = Table("provider", "type", "in flight", "queued", "trigger", "read", "cancel")
    for p in providers:
        cap = f"/{p['max_in_flight']}" if p["max_in_flight"] else ""
        limits = {limit["operation"]: _limit(limit) for limit in p["limits"]}
        table.add_row(escape(p["name"]), p["type"], f"{p['in_flight']}{cap}", str(p["queued"]),
                      limits.get("trigger", ""), limits.get("read", ""),
                      limits.get("cancel", ""))
    out.print(table)


def _limit(limit: dict[str, Any]) -> str:
    """``45/60 left of 60/60s`` and any wait: what a person needs at a glance."""
    if limit["limit"] is None:
        text = "unlimited"
    else:
        total = limit["used"] + limit["remaining"]
        text = f"{limit['remaining']}/{total} left of {limit['limit']}"
        if limit["next_turn_s"] > 0:
            text += f", next in {limit['next_turn_s']:.1f}s"
    if limit["embargo_s"] > 0:
        text += f" [yellow](runtime asked to wait {limit['embargo_s']:.0f}s)[/]"
    return text
