"""``orchestrator callbacks``: callback endpoints, their delivery log, and replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from orchestrator.cli.common import (
    JsonFlag,
    call,
    client_or_exit,
    err,
    fail,
    out,
    parse_labels,
    print_json,
)
from orchestrator.client import Client, ClientError
from orchestrator.domain.cron import parse_every
from orchestrator.domain.events import DEFAULT_EVENT_TYPES, EVENT_TYPES
from orchestrator.domain.records import DeliveryStatus

callbacks_app = typer.Typer(
    help="Callback endpoints: URLs that receive a signed POST for the events they subscribe "
         "to, their delivery log, and replay.",
    no_args_is_help=True)

DELIVERY_STYLE = {"succeeded": "green", "failed": "red", "pending": "cyan"}
EndpointId = Annotated[str, typer.Argument(help="the endpoint's id (ep_…)")]


@callbacks_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="the http(s) URL to POST events to")],
    event: Annotated[list[str] | None, typer.Option(
        "--event", help=f"an event to receive, repeatable: {', '.join(EVENT_TYPES)} "
                        f"(default: {', '.join(DEFAULT_EVENT_TYPES)})")] = None,
    workflow: Annotated[list[str] | None, typer.Option(
        "--workflow", help="only events of this workflow (<provider>/<name>); "
                           "repeatable")] = None,
    label: Annotated[list[str] | None, typer.Option(
        "--label", help="key=value: only events of jobs with this label; repeatable")] = None,
    description: Annotated[str | None, typer.Option(help="a note on what it is for")] = None,
    json_: JsonFlag = False,
) -> None:
    """Register a callback endpoint; prints it and, this once, its signing secret.

    Store the secret where the receiver can check each webhook-signature with it.

    Example: orchestrator callbacks add https://example.com/hook --event job.completed \\
    --event job.failed --label team=growth
    """
    labels = parse_labels(label or [])
    endpoint = call(client_or_exit().create_callback, url, event_types=event or None,
                    workflows=workflow or None, labels=labels or None,
                    description=description)
    if json_:
        print_json(endpoint)
        return
    out.print(f"callback endpoint {endpoint['id']} added: {escape(endpoint['url'])}",
              highlight=False, soft_wrap=True)
    out.print(f"events: {', '.join(endpoint['event_types'])}{_filters(endpoint, ' ')}",
              highlight=False, soft_wrap=True)
    _print_secret(endpoint["secret"], "signing secret")


@callbacks_app.command("list")
def list_callbacks(json_: JsonFlag = False) -> None:
    """List the callback endpoints, oldest first.

    Example: orchestrator callbacks list --json
    """
    endpoints = call(client_or_exit().list_callbacks)
    if json_:
        print_json(endpoints)
        return
    table = Table(_id_column(endpoints), Column("url", overflow="fold"), "events", "filters",
                  "state", Column("created", no_wrap=True))
    for endpoint in endpoints:
        table.add_row(endpoint["id"], escape(endpoint["url"]),
                      ", ".join(endpoint["event_types"]), _filters(endpoint),
                      _state(endpoint, brief=True), _short(endpoint["created_at"]))
    if endpoints:
        out.print(table)
    else:
        out.print("no callback endpoints; add one with 'orchestrator callbacks add URL'")


@callbacks_app.command("show")
def show(endpoint_id: EndpointId, json_: JsonFlag = False) -> None:
    """Show one callback endpoint (never its secret).

    Example: orchestrator callbacks show ep_01jf…
    """
    endpoint = call(client_or_exit().get_callback, endpoint_id)
    if json_:
        print_json(endpoint)
        return
    grid = Table.grid(padding=(0, 2))
    rows = [("id", endpoint["id"]), ("url", escape(endpoint["url"])),
            ("description", escape(endpoint.get("description") or "")),
            ("events", ", ".join(endpoint["event_types"])),
            ("workflows", escape(", ".join(endpoint["workflows"]) or "any")),
            ("labels", escape(", ".join(f"{k}={v}" for k, v in endpoint["labels"].items())
                              or "any")),
            ("state", _state(endpoint)),
            ("failing since", endpoint.get("failing_since") or ""),
            ("secret rotating until", endpoint.get("secret_rotating_until") or ""),
            ("created", endpoint["created_at"]), ("updated", endpoint["updated_at"])]
    for key, value in rows:
        if value:
            grid.add_row(f"[bold]{key}[/]", value)
    out.print(grid)


@callbacks_app.command("remove")
def remove(endpoint_id: EndpointId) -> None:
    """Remove a callback endpoint; its deliveries stay in the log.

    Example: orchestrator callbacks remove ep_01jf…
    """
    call(client_or_exit().delete_callback, endpoint_id)
    out.print(f"callback endpoint {escape(endpoint_id)} removed", highlight=False)


@callbacks_app.command("enable")
def enable(endpoint_id: EndpointId) -> None:
    """Re-enable a disabled endpoint.

    An endpoint is disabled by request, by a 410 Gone, or after days of failures. Its failed
    deliveries are not sent again by enabling it: replay them.

    Example: orchestrator callbacks enable ep_01jf… && orchestrator callbacks replay \\
    --endpoint ep_01jf… --since 3d
    """
    endpoint = call(client_or_exit().enable_callback, endpoint_id)
    out.print(f"callback endpoint {endpoint['id']} enabled", highlight=False)


@callbacks_app.command("disable")
def disable(endpoint_id: EndpointId) -> None:
    """Stop sending to an endpoint; its pending deliveries end failed (replayable).

    Example: orchestrator callbacks disable ep_01jf…
    """
    endpoint = call(client_or_exit().disable_callback, endpoint_id)
    out.print(f"callback endpoint {endpoint['id']} disabled", highlight=False)


@callbacks_app.command("rotate-secret")
def rotate_secret(endpoint_id: EndpointId, json_: JsonFlag = False) -> None:
    """Give an endpoint a new signing secret; prints it, this once.

    For 24 hours callbacks carry signatures by both the new and the previous secret, so the
    receiver can switch without missing one.

    Example: orchestrator callbacks rotate-secret ep_01jf…
    """
    endpoint = call(client_or_exit().rotate_callback_secret, endpoint_id)
    if json_:
        print_json(endpoint)
        return
    until = endpoint.get("secret_rotating_until")
    note = f"; the previous one signs too until {until}" if until else ""
    out.print(f"callback endpoint {endpoint['id']} has a new secret{note}", highlight=False,
              soft_wrap=True)
    _print_secret(endpoint["secret"], "new signing secret")


@callbacks_app.command("deliveries")
def deliveries(
    endpoint_id: EndpointId,
    status: Annotated[DeliveryStatus | None, typer.Option(
        help="only pending, succeeded or failed ones")] = None,
    since: Annotated[str | None, typer.Option(
        help="only those created since TIME: RFC 3339 (2024-06-01T00:00:00Z) or a time ago "
             "(30m, 2h, 3d)")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 50,
    json_: JsonFlag = False,
) -> None:
    """List an endpoint's deliveries, newest first, with their state and last answer.

    One delivery's attempts: 'orchestrator callbacks delivery ID'.

    Example: orchestrator callbacks deliveries ep_01jf… --status failed --since 1d
    """
    after = None if since is None else parse_time(since)
    client = client_or_exit()
    items = call(lambda: list(client.deliveries(endpoint_id, status=status, since=after,
                                                limit=limit, page_size=min(limit, 500))))
    if json_:
        print_json(items)
        return
    table = Table(_id_column(items), "event", "status", "attempts", "last code", "last error",
                  Column("created", no_wrap=True))
    for item in items:
        table.add_row(item["id"], item["event_type"], _status(item["status"]),
                      str(item["attempts"]), str(item["last_status_code"] or ""),
                      escape((item["last_error"] or "")[:80]), _short(item["created_at"]))
    if items:
        out.print(table)
    else:
        out.print("no deliveries")


@callbacks_app.command("delivery")
def delivery(
    delivery_id: Annotated[str, typer.Argument(help="the delivery's id (its webhook-id)")],
    json_: JsonFlag = False,
) -> None:
    """Show one delivery and its attempts: when, the answer, the latency, the error.

    Example: orchestrator callbacks delivery msg_01jf…
    """
    item = call(client_or_exit().get_delivery, delivery_id)
    if json_:
        print_json(item)
        return
    _show_delivery(item)


@callbacks_app.command("replay")
def replay(
    delivery_id: Annotated[str | None, typer.Argument(
        help="the delivery to send again (or give --endpoint and --since)")] = None,
    endpoint: Annotated[str | None, typer.Option(
        help="replay this endpoint's failed deliveries (with --since)")] = None,
    since: Annotated[str | None, typer.Option(
        help="with --endpoint: the failed deliveries created since TIME: RFC 3339 "
             "(2024-06-01T00:00:00Z) or a time ago (30m, 2h, 3d)")] = None,
    json_: JsonFlag = False,
) -> None:
    """Send a delivery again, or every failed delivery of an endpoint since a time.

    Each keeps its webhook-id and body (a receiver that de-duplicates on webhook-id ignores
    one it has already handled).

    Example: orchestrator callbacks replay msg_01jf…

    Example: orchestrator callbacks replay --endpoint ep_01jf… --since 2h
    """
    client = client_or_exit()
    if delivery_id is not None:
        if endpoint is not None or since is not None:
            fail("give either a DELIVERY_ID or --endpoint ID --since TIME, not both")
        item = call(client.replay_delivery, delivery_id)
        if json_:
            print_json(item)
        else:
            out.print(f"delivery {item['id']} replayed: {_status(item['status'])}",
                      highlight=False)
        if item.get("endpoint_id"):
            _warn_if_not_sending(client, item["endpoint_id"])
        return
    if endpoint is None or since is None:
        fail("give a DELIVERY_ID, or --endpoint ID with --since TIME (e.g. --since 2h) to "
             "replay an endpoint's failed deliveries")
    result = call(client.replay_failed, endpoint, parse_time(since))
    if json_:
        print_json(result)
        return
    count = result["replayed"]
    out.print(f"{count} failed deliver{'y' if count == 1 else 'ies'} of {escape(endpoint)} "
              f"replayed", highlight=False)
    if count:
        _warn_if_not_sending(client, endpoint)


def _warn_if_not_sending(client: Client, endpoint_id: str) -> None:
    """A replay to an endpoint that is disabled or removed fails again at once: say so."""
    try:
        endpoint = client.get_callback(endpoint_id)
    except ClientError as error:
        if error.status == 404:
            err.print(f"[yellow]warning:[/] endpoint {escape(endpoint_id)} was removed: what "
                      "is replayed to it fails again", highlight=False)
        return
    if not endpoint["enabled"]:
        err.print(f"[yellow]warning:[/] endpoint {escape(endpoint_id)} is disabled, so what "
                  "is replayed to it fails again; enable it first with 'orchestrator "
                  f"callbacks enable {escape(endpoint_id)}'", highlight=False)


def parse_time(text: str, now: datetime | None = None) -> str:
    """``--since``: an RFC 3339 time (with a zone), or a time ago such as ``2h`` or
    ``1d12h``; the RFC 3339 time it names. A malformed one exits 1 saying what to write."""
    value = text.strip()
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        pass
    else:
        if when.tzinfo is None:
            fail(f"--since '{text}' has no time zone; add one, e.g. {value}Z")
        return when.isoformat()
    try:
        ago = parse_every(value)
    except ValueError:
        fail(f"--since '{text}' is neither an RFC 3339 time (2024-06-01T00:00:00Z) nor a "
             "time ago (30m, 2h, 3d)")
    start = (now or datetime.now(UTC)) - timedelta(seconds=ago)
    return start.isoformat().replace("+00:00", "Z")


def _print_secret(secret: str, what: str) -> None:
    out.print(f"\n{what} (shown only now; store it for your receiver to verify "
              "webhook-signature with):", highlight=False, soft_wrap=True)
    print(secret)


def _filters(endpoint: dict[str, Any], prefix: str = "") -> str:
    parts = [*(f"workflow {w}" for w in endpoint["workflows"]),
             *(f"{k}={v}" for k, v in endpoint["labels"].items())]
    if not parts:
        return ""
    return escape(prefix + ("(" if prefix else "") + ", ".join(parts) + (")" if prefix else ""))


def _state(endpoint: dict[str, Any], *, brief: bool = False) -> str:
    if endpoint["enabled"]:
        failing = endpoint.get("failing_since")
        if failing:
            return f"[yellow]failing since {_short(failing) if brief else failing}[/]"
        return "[green]enabled[/]"
    reason = endpoint.get("disabled_reason")
    return "[red]disabled[/]" + (f" ({escape(reason)})" if reason and not brief else "")


def _id_column(items: list[dict[str, Any]]) -> Column:
    """Ids are copied from the table: never cut short."""
    return Column("id", no_wrap=True, min_width=max((len(i["id"]) for i in items), default=2))


def _short(value: str | None) -> str:
    """An RFC 3339 time to the second, for tables."""
    if not value:
        return ""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return escape(value)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _status(status: str) -> str:
    return f"[{DELIVERY_STYLE.get(status, '')}]{status}[/]"


def _show_delivery(item: dict[str, Any]) -> None:
    grid = Table.grid(padding=(0, 2))
    rows = [("id", item["id"]), ("event", item["event_type"]),
            ("endpoint", item["endpoint_id"] or "(the job's own callback_url)"),
            ("job", item["job_id"] or ""), ("url", escape(item["url"])),
            ("status", _status(item["status"])), ("attempts", str(item["attempts"])),
            ("next attempt", item["next_attempt_at"] or ""), ("created", item["created_at"]),
            ("delivered", item["delivered_at"] or "")]
    for key, value in rows:
        if value:
            grid.add_row(f"[bold]{key}[/]", value)
    out.print(grid)
    log = item.get("attempt_log") or []
    if not log:
        out.print("no attempts yet")
        return
    table = Table("#", "at", "code", "latency", "error", title="attempts, oldest first")
    for attempt in log:
        table.add_row(str(attempt["number"]), attempt["at"] or "",
                      str(attempt["status_code"] or ""), f"{attempt['latency_ms']:.0f} ms",
                      escape(attempt["error"] or ""))
    out.print(table)
