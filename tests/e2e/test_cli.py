"""The CLI as a user runs it, in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_every_command_has_help_with_an_example(tmp_path: Path) -> None:
    for command in (["dev"], ["demo"], ["api"], ["migrate"], ["sandbox"], ["submit"],
                    ["tokens", "create"], ["jobs", "list"], ["jobs", "show"], ["jobs", "logs"],
                    ["jobs", "cancel"], ["jobs", "retry"]):
        done = run(*command, "--help", cwd=tmp_path)
        assert done.returncode == 0, command
        assert "Example" in done.stdout, command
