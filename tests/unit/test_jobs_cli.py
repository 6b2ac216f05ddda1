"""``orchestrator jobs watch`` (and the exit codes of the job commands) in process, its
client talking to the real app (on a real SQLite store) through the test client's
transport, so no server is started; a thread moves the job as a worker would."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from orchestrator.api import events as events_api
from orchestrator.bootstrap import Container
from orchestrator.cli import common
from orchestrator.cli import jobs as jobs_cli
from orchestrator.cli.main import app
from orchestrator.client import Client
from orchestrator.domain.job import Event
from tests.unit import test_client_async
from tests.unit.api_support import api_client, new_token
from tests.unit.test_client_async import COMPLETE, FAIL, TO_RUNNING, later, move

container = test_client_async.container  # the same fixture: a container on a new SQLite file


@pytest.fixture
def cli(container: Container, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setattr(events_api, "POLL_S", 0.02)
    with api_client(container) as api:
        token = new_token(container, "cli")
        monkeypatch.setattr(jobs_cli, "client_or_exit",
                            lambda: Client(str(api.base_url), token, transport=api._transport))
        monkeypatch.setattr(common.out, "_width", 200)  # one line each: nothing wrapped
        monkeypatch.setattr(common.err, "_width", 200)
        yield CliRunner()


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(app, ["jobs", *args])


def submitted(cli: CliRunner) -> str:
    done = cli.invoke(app, ["submit", "sandbox/echo", "--inputs", '{"n": 1}'])
    assert done.exit_code == 0, done.output
    return done.stdout.strip()


def run_then_end(container: Container, job_id: str, end: tuple[Event, dict[str, Any]]) -> None:
    """What a worker does: start the run, poll it three times, end the job."""
    move(container, job_id, *TO_RUNNING)
    container.store.update_job(job_id, {}, {"polls": 3, "remote_status": "in progress"})
    time.sleep(0.1)
    move(container, job_id, end)


@pytest.mark.parametrize(("end", "status", "code"), [(COMPLETE, "completed", 0),
                                                     (FAIL, "failed", 1)])
def test_watch_prints_each_state_change_and_exits_by_how_the_job_ended(
        cli: CliRunner, container: Container, end: tuple[Event, dict[str, Any]], status: str,
        code: int) -> None:
    job_id = submitted(cli)
    worker = later(0.2, lambda: run_then_end(container, job_id, end))
    done = run(cli, "watch", job_id, "--interval", "0.1")
    worker.join()
    assert done.exit_code == code, done.output
    lines = done.stdout.splitlines()
    changes = [line for line in lines if " state " in line]
    assert [line.split()[2] for line in changes] == ["queued", "starting", "running", status]
    assert "(started, attempt 1)" in changes[2]
    final = lines[-1]  # the status line, as the job ended
    assert final.split()[:2] == [job_id, status]
    assert "remote in progress" in final and "polls 3" in final and "attempt 1" in final
    assert "elapsed 0:00:0" in final


def test_watch_json_prints_each_event_as_a_line(cli: CliRunner, container: Container) -> None:
    job_id = submitted(cli)
    worker = later(0.1, lambda: run_then_end(container, job_id, FAIL))
    done = run(cli, "watch", job_id, "--json")
    worker.join()
    assert done.exit_code == 1, done.output
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["data"]["status"] for e in events if e["event"] == "state"] == [
        "queued", "starting", "running", "failed"]
    assert events[-1] == {"event": "end", "id": None, "data": {"status": "failed"}}


def test_watch_of_an_ended_job_replays_it_and_exits_at_once(cli: CliRunner,
                                                            container: Container) -> None:
    job_id = submitted(cli)
    move(container, job_id, *TO_RUNNING, COMPLETE)
    started = time.monotonic()
    done = run(cli, "watch", job_id)
    assert done.exit_code == 0 and done.stdout.splitlines()[-1].split()[1] == "completed"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("args", [("watch", "job_nope"), ("watch", "job_nope", "--json")])
def test_watch_of_no_such_job_exits_1_with_one_line(cli: CliRunner,
                                                    args: tuple[str, ...]) -> None:
    done = run(cli, *args)
    assert done.exit_code == 1
    assert "HTTP 404 not_found" in done.stderr and "Traceback" not in done.output


def test_submit_and_retry_wait_exit_by_how_the_job_ended(cli: CliRunner,
                                                        container: Container) -> None:
    job_id = submitted(cli)
    move(container, job_id, *TO_RUNNING, FAIL)
    retried = later(0.2, lambda: run_then_end(container, job_id, COMPLETE))
    done = run(cli, "retry", job_id, "--wait", "--json")
    retried.join()
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["attempt"] == 2


@pytest.mark.parametrize("json_", [[], ["--json"]])
def test_submit_and_retry_wait_give_up_after_their_timeout_with_exit_1(
        cli: CliRunner, container: Container, json_: list[str]) -> None:
    started = time.monotonic()
    done = cli.invoke(app, ["submit", "sandbox/echo", "--wait", "--timeout", "0.3", *json_])
    assert done.exit_code == 1, done.output
    assert time.monotonic() - started < 5
    assert "still queued after 0.3s" in done.stderr and "Traceback" not in done.output
    job_id = done.stderr.split()[2]  # "error: job <id> is still queued …"
    assert job_id.startswith("job_") and f"orchestrator jobs watch {job_id}" in done.stderr
    assert done.stdout == ""

    move(container, job_id, *TO_RUNNING, FAIL)
    retried = run(cli, "retry", job_id, "--wait", "--timeout", "0", *json_)
    assert retried.exit_code == 1, retried.output
    assert f"job {job_id} is still queued after 0.0s" in retried.stderr


@pytest.mark.parametrize("command", [["submit"], ["jobs", "retry"], ["batch", "submit"]])
def test_commands_that_wait_take_a_timeout_in_seconds(command: list[str]) -> None:
    done = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    text = " ".join(done.stdout.split())
    assert "--timeout SECONDS" in text and "give up after this many seconds (exit 1" in text


@pytest.mark.parametrize("command", ["list", "show", "logs", "watch", "cancel", "retry"])
def test_every_jobs_command_has_help_with_an_example(command: str) -> None:
    done = CliRunner().invoke(app, ["jobs", command, "--help"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "Example: orchestrator jobs " + command in done.stdout


@pytest.mark.parametrize("command", [["jobs", "watch"], ["jobs", "retry"], ["submit"]])
def test_commands_that_follow_a_job_state_their_exit_codes(command: list[str]) -> None:
    done = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    text = " ".join(done.stdout.split())
    assert "exit code is 0 if" in text, text
    assert "1 otherwise" in text or "1 if it failed" in text, text
