"""Fixtures for contract suites that run adapters against the sandbox over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.adapters.http.client import make_http_client
from orchestrator.adapters.store.engine import make_engine
from orchestrator.adapters.store.migrate import upgrade
from orchestrator.adapters.store.repository import SqlStore
from orchestrator.sandbox import SandboxServer, SandboxSettings
from orchestrator.testing import InMemoryStore

# Short runs keep the suite fast; tests that need a longer run say so in their inputs.
SANDBOX_SETTINGS = SandboxSettings(default_duration_s=0.05, seed=1234)


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    """One sandbox on a free port for the whole session."""
    with SandboxServer(SANDBOX_SETTINGS) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxServer:
    """The session's sandbox, emptied and with its starting settings, for each test."""
    sandbox_server.reset(settings=True)
    return sandbox_server


@pytest.fixture
def http_client() -> Iterator[httpx.Client]:
    client = make_http_client(timeout_s=5.0)
    yield client
    client.close()


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Each JobStore contract test runs on the fake and on SqlStore over migrated SQLite,
    so the fake cannot drift from the real thing."""
    if request.param == "memory":
        yield InMemoryStore()
        return
    engine = make_engine(f"sqlite:///{tmp_path}/store.db")
    upgrade(engine)
    yield SqlStore(engine)
    engine.dispose()
