"""``orchestrator callbacks``: each command in process, its client talking to the real app
(on a real SQLite store) through the test client's transport, so no server is started."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from click.testing import Result
from typer.testing import CliRunner

from orchestrator.adapters.http.guard import NetworkGuard
from orchestrator.bootstrap import Container
from orchestrator.cli import callbacks as callbacks_cli
from orchestrator.cli import common
from orchestrator.cli.main import app
from orchestrator.client import Client
from orchestrator.domain.events import EVENT_TYPES
from tests.unit.api_support import api_client, make_container, new_token
from tests.unit.test_callbacks_api import add_deliveries, fail_delivery, succeed_delivery

HOOK = "https://93.184.216.34/hook"
COMMANDS = ("add", "list", "show", "remove", "enable", "disable", "rotate-secret",
            "deliveries", "delivery", "replay")


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    container = make_container(tmp_path)
    container.deps.url_guard = NetworkGuard()  # the test URL is a public IP: no DNS
    yield container
    container.close()


@pytest.fixture
def cli(container: Container, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    with api_client(container) as api:
        token = new_token(container, "cli")
        monkeypatch.setattr(callbacks_cli, "client_or_exit",
                            lambda: Client(str(api.base_url), token, transport=api._transport))
        monkeypatch.setattr(common.out, "_width", 200)  # wide tables: no cell cut short
        monkeypatch.setattr(common.err, "_width", 200)
        yield CliRunner()


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(app, ["callbacks", *args])


def secret_in(output: str) -> str:
    [secret] = [line for line in output.splitlines() if line.startswith("whsec_")]
    return secret


def test_add_prints_the_secret_once_and_list_show_never(cli: CliRunner) -> None:
    added = run(cli, "add", HOOK, "--event", "job.completed", "--event", "job.failed",
                "--workflow", "sandbox/echo", "--label", "team=growth",
                "--description", "alerts")
    assert added.exit_code == 0, added.output
    assert f"added: {HOOK}" in added.stdout
    assert "events: job.completed, job.failed (workflow sandbox/echo, team=growth)" in \
        added.stdout
    assert "shown only now" in added.stdout
    secret = secret_in(added.stdout)
    endpoint_id = added.stdout.split()[2]
    assert endpoint_id.startswith("ep_")

    listed = run(cli, "list")
    assert listed.exit_code == 0 and endpoint_id in listed.stdout and "enabled" in listed.stdout
    as_json = run(cli, "list", "--json")
    [item] = json.loads(as_json.stdout)
    assert item["id"] == endpoint_id and "secret" not in item
    shown = run(cli, "show", endpoint_id)
    assert shown.exit_code == 0 and "alerts" in shown.stdout and "team=growth" in shown.stdout
    assert json.loads(run(cli, "show", endpoint_id, "--json").stdout)["url"] == HOOK
    for output in (listed.stdout, as_json.stdout, shown.stdout):
        assert secret not in output

    added_json = run(cli, "add", HOOK, "--json")
    assert json.loads(added_json.stdout)["secret"].startswith("whsec_")


def test_disable_enable_rotate_remove(cli: CliRunner) -> None:
    endpoint_id = json.loads(run(cli, "add", HOOK, "--json").stdout)["id"]
    disabled = run(cli, "disable", endpoint_id)
    assert disabled.exit_code == 0 and "disabled" in disabled.stdout
    assert "disabled (disabled by request)" in run(cli, "show", endpoint_id).stdout
    assert run(cli, "enable", endpoint_id).exit_code == 0
    assert "enabled" in run(cli, "show", endpoint_id).stdout

    rotated = run(cli, "rotate-secret", endpoint_id)
    assert rotated.exit_code == 0, rotated.output
    assert "the previous one signs too until" in rotated.stdout
    assert secret_in(rotated.stdout).startswith("whsec_")
    assert "secret rotating until" in run(cli, "show", endpoint_id).stdout

    removed = run(cli, "remove", endpoint_id)
    assert removed.exit_code == 0 and "removed" in removed.stdout
    gone = run(cli, "show", endpoint_id)
    assert gone.exit_code == 1 and "HTTP 404 not_found" in gone.stderr
    assert run(cli, "list").stdout.startswith("no callback endpoints")


def test_deliveries_delivery_and_replay(cli: CliRunner, container: Container) -> None:
    endpoint_id = json.loads(run(cli, "add", HOOK, "--json").stdout)["id"]
    t0 = time.time() - 3 * 3600
    ids = add_deliveries(container, endpoint_id, 4, start=t0, step=3600)  # 3h, 2h, 1h, now
    for delivery_id in ids[:3]:
        fail_delivery(container, delivery_id)
    succeed_delivery(container, ids[3])

    table = run(cli, "deliveries", endpoint_id)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    rows = [next(n for n, line in enumerate(lines) if d in line) for d in ids[::-1]]
    assert rows == sorted(rows)  # newest first
    assert "HTTP 503" in table.stdout and "job.completed" in table.stdout
    failed = json.loads(run(cli, "deliveries", endpoint_id, "--status", "failed",
                            "--json").stdout)
    assert [d["id"] for d in failed] == ids[2::-1]
    assert len(json.loads(run(cli, "deliveries", endpoint_id, "--limit", "2",
                              "--json").stdout)) == 2
    recent = json.loads(run(cli, "deliveries", endpoint_id, "--since", "150m",
                            "--json").stdout)
    assert [d["id"] for d in recent] == ids[:0:-1]

    shown = run(cli, "delivery", ids[0])
    assert shown.exit_code == 0 and "attempts, oldest first" in shown.stdout
    assert "12 ms" in shown.stdout and "503" in shown.stdout
    assert len(json.loads(run(cli, "delivery", ids[0], "--json").stdout)["attempt_log"]) == 2

    one = run(cli, "replay", ids[0])
    assert one.exit_code == 0 and f"delivery {ids[0]} replayed: pending" in one.stdout
    many = run(cli, "replay", "--endpoint", endpoint_id, "--since", "150m")
    assert many.exit_code == 0, many.output
    assert f"2 failed deliveries of {endpoint_id} replayed" in many.stdout
    assert "warning" not in one.stderr + many.stderr
    since = datetime.fromtimestamp(t0 - 60, UTC).isoformat()
    none_left = run(cli, "replay", "--endpoint", endpoint_id, "--since", since, "--json")
    assert json.loads(none_left.stdout) == {"replayed": 0, "delivery_ids": []}

    assert run(cli, "disable", endpoint_id).exit_code == 0
    to_disabled = run(cli, "replay", ids[3])
    assert to_disabled.exit_code == 1, to_disabled.output
    assert "endpoint_disabled" in to_disabled.stderr
    assert f"orchestrator callbacks enable {endpoint_id}" in to_disabled.stderr


@pytest.mark.parametrize(("args", "says"), [
    (("add", HOOK, "--label", "team"), "--label takes KEY=VALUE"),
    (("add", HOOK, "--event", "job.done"), "HTTP 422 invalid_request"),
    (("add", "http://127.0.0.1/hook"), "loopback"),
    (("show", "ep_nope"), "HTTP 404 not_found: no callback endpoint 'ep_nope'"),
    (("replay",), "give a DELIVERY_ID, or --endpoint ID with --since TIME"),
    (("replay", "--endpoint", "ep_x"), "give a DELIVERY_ID, or --endpoint ID with --since"),
    (("replay", "msg_x", "--endpoint", "ep_x"), "not both"),
    (("replay", "--endpoint", "ep_x", "--since", "yesterday"), "neither an RFC 3339 time"),
    (("replay", "--endpoint", "ep_x", "--since", "2024-06-01T00:00:00"), "no time zone"),
    (("deliveries", "ep_x", "--since", "5 parsecs"), "neither an RFC 3339 time"),
    (("replay", "msg_nope"), "HTTP 404 not_found: no delivery 'msg_nope'"),
    (("delivery", ".."), "is not an id"),
])
def test_errors_exit_1_with_one_clear_line(cli: CliRunner, args: tuple[str, ...],
                                           says: str) -> None:
    done = run(cli, *args)
    assert done.exit_code == 1, done.output
    assert says in done.stderr and "Traceback" not in done.output


def test_an_unknown_event_names_the_allowed_ones(cli: CliRunner) -> None:
    done = run(cli, "add", HOOK, "--event", "job.done")
    assert all(event in done.stderr for event in EVENT_TYPES)


def test_a_bad_status_is_a_usage_error(cli: CliRunner) -> None:
    done = run(cli, "deliveries", "ep_x", "--status", "lost")
    assert done.exit_code == 2 and "pending" in done.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    done = CliRunner().invoke(app, ["callbacks", command, "--help"])
    assert done.exit_code == 0, done.output
    assert "Example: orchestrator callbacks " + command in done.stdout


def test_the_group_is_registered() -> None:
    done = CliRunner().invoke(app, ["--help"])
    assert done.exit_code == 0 and "callbacks" in done.stdout


def test_since_as_a_time_ago_or_rfc3339() -> None:
    now = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    assert callbacks_cli.parse_time("2h", now) == "2024-06-01T10:00:00Z"
    assert callbacks_cli.parse_time("1d12h", now) == "2024-05-31T00:00:00Z"
    assert callbacks_cli.parse_time("2024-05-01T08:00:00+02:00") == "2024-05-01T08:00:00+02:00"
    assert callbacks_cli.parse_time("2024-05-01T08:00:00Z") == "2024-05-01T08:00:00+00:00"
    with pytest.raises(typer.Exit):
        callbacks_cli.parse_time("2024-05-01")
