"""The real stack for integration tests: an embedded Redis server, SQLite, the sandbox over
HTTP, `orchestrator api` and `celery -A workers worker` as separate processes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.adapters.store.repository import SqlStore
from orchestrator.bootstrap import SystemClock
from orchestrator.client import Client
from orchestrator.devstack import Stack, StackOptions
from orchestrator.receiver import CallbackReceiver
from orchestrator.services.tokens import create_token

TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


class Harness:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        assert stack.settings is not None
        from orchestrator.adapters.store.engine import make_engine

        self.store = SqlStore(make_engine(stack.settings.database.url))
        token, _ = create_token(f"test-{time.monotonic_ns()}", self.store, SystemClock())
        self.token = token
        self.client = Client(stack.api_url, token)
        self.secret = (stack.workdir / "signing_secret").read_text().strip()

    def receiver(self, **kwargs: Any) -> CallbackReceiver:
        return CallbackReceiver(self.secret, **kwargs)

    def runs(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.stack.sandbox.url}/_sandbox/runs", timeout=10)
        runs: list[dict[str, Any]] = response.json()["runs"]
        return runs

    def wait_until(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.2)
        logs = "\n".join(f"--- {c.name}\n{c.tail(15)}" for c in self.stack.children)
        raise AssertionError(f"timed out waiting for {what}\n{logs}")

    def all_terminal(self, ids: list[str]) -> bool:
        return all((job := self.store.get_job(i)) is not None and job.status.terminal
                   for i in ids)

    def close(self) -> None:
        self.client.close()
        self.store.engine.dispose()


def start_stack(workdir: Path, **options: Any) -> Stack:
    defaults: dict[str, Any] = {"workers": 1, "concurrency": 2, "sweep_grace_s": 2.0,
                                "poll_initial_s": 0.3,
                                "poll_max_s": 2.0, "callback_retry_s": (0.5, 1, 2, 5)}
    stack = Stack(StackOptions(workdir=workdir, **{**defaults, **options}))
    stack.__enter__()
    return stack


@contextmanager
def running_harness(workdir: Path, **options: Any) -> Iterator[Harness]:
    stack = start_stack(workdir, **options)
    harness = Harness(stack)
    try:
        yield harness
    finally:
        harness.close()
        stack.stop()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with running_harness(tmp_path_factory.mktemp("stack")) as harness:
        yield harness
