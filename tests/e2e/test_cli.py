"""The CLI as a user runs it, in subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from orchestrator.adapters.store.engine import make_engine
from orchestrator.adapters.store.repository import SqlStore
from orchestrator.bootstrap import SystemClock
from orchestrator.cli import dev as dev_cli
from orchestrator.cli.main import app
from orchestrator.devstack import Stack, StackOptions
from orchestrator.services.tokens import create_token
from tests.integration.conftest import Harness, running_harness
from tests.unit.api_support import make_container

pytestmark = pytest.mark.e2e


def run(*args: str, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd,
                          env={**clean, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def test_demo_runs_jobs_to_the_end_and_exits_0(tmp_path: Path) -> None:
    done = run("demo", "--jobs", "25", "--workdir", str(tmp_path / "demo"), cwd=tmp_path,
               timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "25 jobs in" in done.stdout
    assert "duplicates: 0" in done.stdout
    assert "25 of 25" in done.stdout  # callbacks delivered


def test_migrate_then_tokens(tmp_path: Path) -> None:
    (tmp_path / "orchestrator.toml").write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/o.db"\n')
    migrated = run("migrate", cwd=tmp_path)
    assert migrated.returncode == 0 and "upgraded from empty" in migrated.stdout
    assert "up to date" in run("migrate", cwd=tmp_path).stdout
    created = run("tokens", "create", "ci", cwd=tmp_path)
    assert created.returncode == 0
    token = created.stdout
    assert token.startswith("orch_") and token.count("\n") == 1 and len(token.strip()) > 40
    duplicate = run("tokens", "create", "ci", cwd=tmp_path)
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    listed = run("tokens", "list", "--json", cwd=tmp_path)
    assert '"name": "ci"' in listed.stdout and token.strip() not in listed.stdout
    assert run("tokens", "revoke", "ci", cwd=tmp_path).returncode == 0
    assert run("tokens", "revoke", "ci", cwd=tmp_path).returncode == 1


def test_a_bad_config_stops_with_the_key_named(tmp_path: Path) -> None:
    (tmp_path / "orchestrator.toml").write_text(
        '[providers.cordage]\ntype = "cordage"\nbase_url = "https://x"\n'
        'api_key = "env:NOT_SET_ANYWHERE"\n')
    done = run("migrate", cwd=tmp_path)
    assert done.returncode == 2
    assert "providers.cordage.api_key" in done.stderr and "NOT_SET_ANYWHERE" in done.stderr
    worker = subprocess.run([sys.executable, "-c", "import workers"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items()
                                 if not k.startswith("ORCHESTRATOR_")})
    assert worker.returncode == 2 and "providers.cordage.api_key" in worker.stderr


def test_client_commands_explain_an_unreachable_api(tmp_path: Path) -> None:
    done = run("jobs", "list", cwd=tmp_path,
               env={"ORCHESTRATOR_URL": "http://127.0.0.1:9", "ORCHESTRATOR_TOKEN": "orch_x"})
    assert done.returncode == 1
    assert "cannot reach the API at http://127.0.0.1:9" in done.stderr


# help and exit codes ---------------------------------------------------------------------


def commands(group: TyperGroup, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command the app has, as the words that run it: found in the app itself, so a
    new command is checked without being listed here."""
    found: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, TyperGroup):
            found += commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


ROOT = typer.main.get_command(app)
assert isinstance(ROOT, TyperGroup)
COMMANDS = commands(ROOT)


def test_the_commands_are_found_in_the_app() -> None:
    found = {" ".join(command) for command in COMMANDS}
    assert {"dev", "demo", "submit", "bench", "tokens list", "tokens revoke", "jobs watch",
            "batch submit", "schedules trigger", "callbacks replay", "callbacks deliveries",
            "providers list"} <= found, sorted(found)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command: tuple[str, ...]) -> None:
    done = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    text = " ".join(done.stdout.split())  # however the help was wrapped
    assert "Example" in text and "orchestrator " + " ".join(command) in text, text


def test_the_top_level_help_states_the_exit_codes_and_they_hold(tmp_path: Path) -> None:
    done = run("--help", cwd=tmp_path, env={"COLUMNS": "200"})
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for part in ("Exit codes: 0 success", "1 an API or input error", "a job that did not complete",
                 "2 a usage or configuration error"):
        assert part in text, (part, text)
    assert run("jobs", "show", cwd=tmp_path).returncode == 2  # a missing argument
    assert run("jobs", "nope", cwd=tmp_path).returncode == 2


class FakeStack:
    """What ``orchestrator dev`` starts, without the processes: ``alive`` says whether they
    keep running; a real (migrated) database for the token dev creates."""

    def __init__(self, settings: Any, alive: bool) -> None:
        self.settings, self.stopped = settings, False
        self.api_url, self.sandbox = "http://127.0.0.1:1", SimpleNamespace(url="http://s")
        self.config_path = Path("orchestrator.toml")
        self.children = [SimpleNamespace(alive=alive)]

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.stopped = True


@pytest.mark.parametrize(("alive", "code"), [(True, 0), (False, 1)])
def test_dev_exits_0_when_stopped_and_1_when_a_process_of_it_stops(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alive: bool, code: int) -> None:
    stack = FakeStack(make_container(tmp_path).settings, alive)
    monkeypatch.setattr(dev_cli, "Stack", lambda options: stack)

    def on_signal(number: int, handler: Callable[..., object]) -> None:
        handler(number, None)  # SIGTERM at once: stopped by the user

    monkeypatch.setattr(dev_cli, "signal", SimpleNamespace(
        SIGTERM=signal.SIGTERM, signal=on_signal if alive else lambda *_: None))
    done = CliRunner().invoke(app, ["dev", "--workdir", str(tmp_path / "dev")])
    assert done.exit_code == code, done.output
    assert stack.stopped
    assert ("a process of the stack stopped" in done.stderr) is not alive


@pytest.fixture(scope="module")
def api_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The API (with Redis and the sandbox, no worker or beat) and the client's environment."""
    with Stack(StackOptions(workdir=tmp_path_factory.mktemp("stack"), workers=0,
                            beat=False)) as stack:
        assert stack.settings is not None
        engine = make_engine(stack.settings.database.url)
        token, _ = create_token("cli", SqlStore(engine), SystemClock())
        engine.dispose()
        # COLUMNS: a wide table, so no cell is cut short.
        yield {"ORCHESTRATOR_URL": stack.api_url, "ORCHESTRATOR_TOKEN": token,
               "COLUMNS": "200"}


def test_schedules_add_list_show_pause_resume_trigger_remove(tmp_path: Path,
                                                             api_env: dict[str, str]) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run("schedules", *args, cwd=tmp_path, env=api_env)

    added = cli("add", "nightly", "sandbox/echo", "--cron", "0 2 * * *", "--timezone",
                "Europe/Berlin", "--inputs", '{"a": 1}', "--label", "team=x",
                "--overlap", "buffer_one")
    assert added.returncode == 0, added.stderr
    assert "schedule nightly added: next fire" in added.stdout
    assert " 02:00:00 CE" in added.stdout and "(in " in added.stdout
    assert cli("add", "heartbeat", "sandbox/echo", "--every", "1h", "--paused").returncode == 0

    both = cli("add", "x", "sandbox/echo", "--cron", "0 2 * * *", "--every", "5m")
    assert both.returncode == 1 and "exactly one of --cron" in both.stderr
    again = cli("add", "nightly", "sandbox/echo", "--every", "5m")
    assert again.returncode == 1 and "HTTP 409 already_exists" in again.stderr
    bad = cli("add", "other", "sandbox/echo", "--cron", "0 25 * * *")
    assert bad.returncode == 1 and "HTTP 422" in bad.stderr and "0 25 * * *" in bad.stderr
    unknown = cli("add", "other", "nope/echo", "--every", "5m")
    assert unknown.returncode == 1 and "provider 'nope'" in unknown.stderr

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    nightly = next(line for line in listed.stdout.splitlines() if "nightly" in line)
    for part in ("cron 0 2 * * *", "Europe/Berlin", "02:00:00", "(in ", "buffer_one",
                 "latest", "active"):
        assert part in nightly, (part, nightly)
    heartbeat = next(line for line in listed.stdout.splitlines() if "heartbeat" in line)
    assert "every 1h" in heartbeat and "paused" in heartbeat
    as_json = json.loads(cli("list", "--json").stdout)
    assert [s["name"] for s in as_json] == ["heartbeat", "nightly"]
    assert as_json[1]["labels"] == {"team": "x"} and as_json[1]["job"]["inputs"] == {"a": 1}

    triggered = cli("trigger", "nightly")
    assert triggered.returncode == 0, triggered.stderr
    job_id = triggered.stdout.strip()
    assert job_id.startswith("job_") and "\n" not in job_id
    shown = cli("show", "nightly")
    assert shown.returncode == 0, shown.stderr
    assert job_id in shown.stdout and "manual" in shown.stdout and "fired" in shown.stdout
    detail = json.loads(cli("show", "nightly", "--json").stdout)
    assert detail["slots"][0]["job_id"] == job_id

    paused = cli("pause", "nightly")
    assert paused.returncode == 0 and "schedule nightly paused" in paused.stdout
    assert json.loads(cli("show", "nightly", "--json").stdout)["paused"] is True
    resumed = cli("resume", "nightly")
    assert resumed.returncode == 0 and "resumed: next fire" in resumed.stdout

    removed = cli("remove", "nightly")
    assert removed.returncode == 0 and "schedule nightly removed" in removed.stdout
    gone = cli("show", "nightly")
    assert gone.returncode == 1 and "HTTP 404 not_found" in gone.stderr
    assert cli("remove", "nightly").returncode == 1


# batches ------------------------------------------------------------------------------------


def write_jobs(path: Path, count: int, *, blank_every: int = 0, **fields: object) -> Path:
    lines = []
    for i in range(count):
        lines.append(json.dumps({"workflow": "sandbox/echo", "inputs": {"row": i}, **fields}))
        if blank_every and i % blank_every == 0:
            lines.append("")  # blank lines are skipped
    path.write_text("\n".join(lines) + "\n")
    return path


def job_count(env: dict[str, str], tmp_path: Path) -> int:
    listed = run("jobs", "list", "--json", "--limit", "100000", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    return len(json.loads(listed.stdout))


def test_batch_submit_refuses_a_bad_file_and_sends_nothing(tmp_path: Path,
                                                           api_env: dict[str, str]) -> None:
    before = job_count(api_env, tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"workflow": "sandbox/echo"}\n\n{"workflow": \n[1, 2]\n')
    done = run("batch", "submit", str(bad), cwd=tmp_path, env=api_env)
    assert done.returncode == 1
    assert "2 bad line(s), nothing was submitted" in done.stderr
    assert "line 3: not valid JSON" in done.stderr and "line 4: a job spec must be" in done.stderr

    refused = tmp_path / "refused.jsonl"
    refused.write_text('{"workflow": "sandbox/echo"}\n\n{"workflow": "nope/echo"}\n'
                       '{"workflow": "sandbox/echo", "priority": 99}\n')
    schema = run("batch", "submit", str(refused), cwd=tmp_path, env=api_env)
    assert schema.returncode == 1 and "HTTP 422" in schema.stderr
    assert "line 4, priority" in schema.stderr  # the index mapped to the file's line
    refused.write_text('{"workflow": "sandbox/echo"}\n\n{"workflow": "nope/echo"}\n')
    unknown = run("batch", "submit", str(refused), cwd=tmp_path, env=api_env)
    assert unknown.returncode == 1 and "line 3: workflow 'nope/echo'" in unknown.stderr
    assert job_count(api_env, tmp_path) == before


def test_batch_submit_splits_a_file_into_keyed_batches(tmp_path: Path,
                                                       api_env: dict[str, str]) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", 250, blank_every=40)
    args = ("batch", "submit", str(jobs), "--batch-size", "100", "--idempotency-key", "split",
            "--label", "e2e=split")
    first = run(*args, cwd=tmp_path, env=api_env)
    assert first.returncode == 0, first.stderr
    ids = first.stdout.split()
    assert len(ids) == 3 and all(i.startswith("bat_") for i in ids)
    assert "batch 3 " in first.stderr and "upload" in first.stderr
    again = run(*args, cwd=tmp_path, env=api_env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == ids
    assert again.stderr.count("no new jobs") == 3

    shown = run("batch", "status", ids[2], "--json", cwd=tmp_path, env=api_env)
    batch = json.loads(shown.stdout)
    assert batch["total"] == 50 and batch["idempotency_key"] == "split-3"
    assert batch["labels"] == {"e2e": "split"} and batch["done"] is False
    listed = run("jobs", "list", "--label", "e2e=split", "--json", "--limit", "1000",
                 cwd=tmp_path, env=api_env)
    inputs = sorted(job["inputs"]["row"] for job in json.loads(listed.stdout))
    assert inputs == list(range(250))  # each line once, however often it was sent
    table = run("batch", "status", ids[0], cwd=tmp_path, env=api_env)
    assert table.returncode == 0 and ids[0] in table.stdout and "queued" in table.stdout
    assert run("batch", "status", "bat_nope", cwd=tmp_path, env=api_env).returncode == 1


@pytest.fixture(scope="module")
def worker_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """A stack with one worker and beat (which hands out launches and polls), so batches
    run to their end."""
    with running_harness(tmp_path_factory.mktemp("batch-stack")) as harness:
        yield harness


def test_batch_submit_wait_runs_every_job_and_a_second_submit_makes_none(
        tmp_path: Path, worker_harness: Harness) -> None:
    env = {"ORCHESTRATOR_URL": worker_harness.stack.api_url,
           "ORCHESTRATOR_TOKEN": worker_harness.token, "COLUMNS": "200"}
    jobs = write_jobs(tmp_path / "jobs.jsonl", 300, blank_every=50)
    args = ("batch", "submit", str(jobs), "--idempotency-key", "nightly", "--wait",
            "--interval", "0.3", "--timeout", "100")
    done = run(*args, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "300 jobs in 1 batch, all ended after" in done.stdout
    assert "300 of 300 completed" in done.stdout
    assert "upload" in done.stderr and "jobs ended" in done.stderr and "jobs/s" in done.stderr
    assert sum(worker_harness.store.count_by_status().values()) == 300

    again = run(*args, "--json", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert "no new jobs" in again.stderr
    (batch,) = json.loads(again.stdout)
    assert batch["created"] is False and batch["done"] is True
    assert batch["counts"]["completed"] == 300 and len(batch["job_ids"]) == 300
    assert sum(worker_harness.store.count_by_status().values()) == 300

    failing = write_jobs(tmp_path / "failing.jsonl", 3, workflow="sandbox/fail")
    failed = run("batch", "submit", str(failing), "--wait", "--interval", "0.3",
                 cwd=tmp_path, env=env)
    assert failed.returncode == 1
    assert "3 job(s) did not complete" in failed.stdout
