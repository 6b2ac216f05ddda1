"""What the API tests share: a real SQLite container wired to a recording scheduler, a
TestClient holding a token, and the error shape every failure must have."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from orchestrator.adapters.store.migrate import upgrade
from orchestrator.api.app import create_app
from orchestrator.bootstrap import Container, SystemClock
from orchestrator.config import Settings
from orchestrator.domain.webhook import new_secret
from orchestrator.services.tokens import create_token
from orchestrator.testing import RecordingScheduler

PROVIDERS = {"sandbox": {"type": "sandbox", "base_url": "http://127.0.0.1:1", "api_key": "k"},
             "cw": {"type": "codewords", "base_url": "http://127.0.0.1:1", "api_key": "k"}}


def make_container(tmp_path: Path, *, migrate: bool = True, **settings: Any) -> Container:
    """A container on a fresh SQLite file; ``settings`` replace whole top-level sections."""
    config = Settings.model_validate({
        "database": {"url": f"sqlite:///{tmp_path}/api.db"},
        "providers": PROVIDERS,
        "callbacks": {"signing_secret": new_secret()},
        "jobs": {"max_input_bytes": 2048},
        **settings,
    })
    container = Container(config, scheduler=RecordingScheduler())
    if migrate:
        upgrade(container.engine)
    return container


def new_token(container: Container, name: str = "test") -> str:
    plain, _ = create_token(name, container.store, SystemClock())
    return plain


@contextmanager
def api_client(container: Container, token: str | None = None) -> Iterator[TestClient]:
    """The app over ``container``, sending ``token`` (a new one if none is given)."""
    with TestClient(create_app(container.settings, container)) as client:
        client.headers["Authorization"] = f"Bearer {token or new_token(container)}"
        yield client


def error_of(response: Any) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]  # type: ignore[no-any-return]
