"""Every Procfile line, started for real from the repository root, as a PaaS or honcho would.

The commands are read from the Procfile itself (never copied here), run through ``/bin/sh``
so that ``${PORT:-8000}`` and the like expand as they do in production, against an embedded
Redis server and a SQLite database named by an ``orchestrator.toml`` in a temporary directory.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.adapters.embedded import Child, EmbeddedRedis, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# The line format honcho, foreman and Heroku share; other lines (comments) are ignored.
PROCESS_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
FLOWER_AUTH = ("ops", "test-only-password")
SENT = re.compile(r"Sending due task \S+ \(orchestrator\.sweep\)")
RECEIVED = re.compile(r"Task orchestrator\.sweep\[[0-9a-f-]+\] received")


def procfile() -> dict[str, str]:
    lines = (PROCESS_LINE.match(line) for line in (ROOT / "Procfile").read_text().splitlines())
    return {match[1]: match[2] for match in lines if match}


@dataclass
class Procs:
    children: dict[str, Child]
    web: str
    flower: str

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{child.tail(20)}" for name, child in self.children.items())

    def log(self, name: str) -> str:
        return self.children[name].log_path.read_text(errors="replace")


def wait_for(condition: Callable[[], Any], procs: Procs, what: str, timeout_s: float = 40) -> Any:
    """Poll until ``condition`` returns something truthy; fail with every log tail if not."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dead = [name for name, child in procs.children.items() if not child.alive]
        assert not dead, f"{dead} exited while waiting for {what}\n{procs.logs()}"
        try:
            result = condition()
        except httpx.HTTPError:
            result = None
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}\n{procs.logs()}")


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "orchestrator").exists(), "run the tests with the project's virtualenv"
    lines = procfile()
    assert sorted(lines) == ["beat", "flower", "web", "worker"]
    web, flower = free_port(), free_port()
    children = {name: Child(name, ["/bin/sh", "-c", command], cwd=ROOT,
                            env=_environment(tmp_path, bin_dir, web, flower),
                            log_path=tmp_path / "logs" / f"{name}.log")
                for name, command in lines.items()}
    redis = EmbeddedRedis(tmp_path / "redis").start()
    try:
        # A short sweep interval so beat's first sweep comes within a second or two.
        (tmp_path / "orchestrator.toml").write_text(
            f'[database]\nurl = "sqlite:///{tmp_path}/orchestrator.db"\n\n'
            f'[redis]\nurl = "{redis.url}"\n\n[jobs]\nsweep_interval_s = 1.0\n')
        migrated = subprocess.run(["orchestrator", "migrate"], cwd=ROOT, capture_output=True,
                                  env=children["web"].env, text=True, timeout=60)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        for child in children.values():
            child.start()
        yield Procs(children, f"http://127.0.0.1:{web}", f"http://127.0.0.1:{flower}")
    finally:
        for child in children.values():
            child.signal(signal.SIGTERM)  # all at once: Celery's warm shutdowns overlap
        for child in children.values():
            child.stop(timeout_s=10)
        redis.stop()


def _environment(tmp_path: Path, bin_dir: Path, web: int, flower: int) -> dict[str, str]:
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "ORCHESTRATOR_CONFIG": str(tmp_path / "orchestrator.toml"),
        # Empty counts as unset for the settings loader: the file decides, whatever the
        # environment running the tests holds.
        "ORCHESTRATOR_DATABASE_URL": "", "ORCHESTRATOR_REDIS_URL": "",
        "PORT": str(web), "FLOWER_PORT": str(flower),
        "BEAT_SCHEDULE": str(tmp_path / "celerybeat-schedule"),  # keeps the checkout clean
        "WORKER_CONCURRENCY": "1",
        "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH),  # Flower 2's API answers only with auth
    }


@pytest.mark.timeout(90)
def test_every_procfile_line_starts_and_serves(procs: Procs) -> None:
    health = wait_for(lambda: httpx.get(f"{procs.web}/healthz", timeout=2), procs, "/healthz")
    assert health.status_code == 200
    ready = httpx.get(f"{procs.web}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}

    # Beat sends the sweep; the worker receives it (Celery's own log lines, in any format).
    wait_for(lambda: SENT.search(procs.log("beat")), procs, "beat to send a sweep")
    wait_for(lambda: RECEIVED.search(procs.log("worker")), procs, "the worker to get a sweep")

    flower_health = wait_for(lambda: httpx.get(f"{procs.flower}/healthcheck", timeout=2),
                             procs, "Flower")
    assert flower_health.status_code == 200
    # The API is closed without credentials, open with them.
    assert httpx.get(f"{procs.flower}/api/workers", timeout=5).status_code == 401
    workers = wait_for(lambda: _flower(procs, "/api/workers?refresh=1"), procs,
                       "Flower to list the worker")
    name, info = next(iter(workers.items()))
    assert "orchestrator.launch" in info["registered"], info
    queues = {queue["name"] for queue in info["active_queues"]}
    assert queues == {"orchestrator.jobs", "orchestrator.callbacks"}
    # Flower sees the tasks through the worker's events, named as they read in Celery.
    swept = wait_for(lambda: _flower(procs, "/api/tasks?taskname=orchestrator.sweep"
                                            "&state=SUCCESS"), procs, "a sweep in Flower")
    assert {task["worker"] for task in swept.values()} == {name}


def _flower(procs: Procs, path: str) -> Any:
    response = httpx.get(procs.flower + path, auth=FLOWER_AUTH, timeout=10)
    response.raise_for_status()
    return response.json()
