"""S1 and S3: schemathesis drives every operation in ``/openapi.json`` against the real app
(in process, over ASGI, on a real SQLite store and a real Redis) and finds no 5xx and no
answer off the schema; and every ``/v1`` operation answers 401, in the error shape, to a
missing, wrong or revoked token.

The suite runs a modest number of cases (``SCHEMATHESIS_EXAMPLES``, 25 an operation by
default, derandomized, so CI repeats itself and keeps to its budget); raise it for a deeper
run: ``SCHEMATHESIS_EXAMPLES=300 pytest tests/unit/test_schemathesis.py``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import schemathesis
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.adapters.embedded import EmbeddedRedis
from orchestrator.adapters.http.guard import NetworkGuard, static_resolver
from orchestrator.api import events
from orchestrator.api.app import create_app
from orchestrator.bootstrap import Container
from orchestrator.config import Settings
from tests.unit.api_support import PROVIDERS, api_client, error_of, make_container, new_token

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))
# A safety net: no answer here takes long (/readyz's Redis check is the slowest).
READ_TIMEOUT_S = 10.0
# The recording scheduler runs no job, so a job's event stream would stay open for the
# server's whole MAX_STREAM_S (5 minutes); that cap, shortened, ends each stream cleanly.
STREAM_S = 1.0
RESOLVES = {"receiver.example.com": ["93.184.216.34"]}
# pytest-timeout's 120 s a test is for the default; a deeper run is given time to match.
pytestmark = pytest.mark.timeout(max(120, 4 * EXAMPLES))


class AppUnderTest:
    """The schema is loaded when the module is collected, the app is built by each test's
    fixtures: schemathesis is handed this stand-in, which passes requests to the current
    app. The fixtures open and close the container, so lifespan events end here.
    (``schemathesis.pytest.from_fixture`` would load the schema from a fixture instead, but
    its runner writes pytest's private ``Node._nodeid``, which pytest 9.2 no longer has.)"""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None
        self.token = ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert self.app is not None, "no app under test: use the `app` fixture"
        await self.app(scope, receive, send)


APP = AppUnderTest()


def _container(directory: Path, redis_url: str) -> Container:
    # A real Redis, so /readyz and /v1/providers answer as they do when deployed.
    redis.Redis.from_url(redis_url).flushdb()
    directory.mkdir(parents=True, exist_ok=True)
    container = make_container(directory, redis={"url": redis_url})
    # The SSRF guard as production has it, over a fixed table instead of DNS.
    container.deps.url_guard = NetworkGuard(resolver=static_resolver(RESOLVES))
    return container


@pytest.fixture
def container(tmp_path: Path, redis_server: EmbeddedRedis) -> Iterator[Container]:
    container = _container(tmp_path, redis_server.url)
    yield container
    container.close()


@pytest.fixture
def fresh_app(tmp_path: Path, redis_server: EmbeddedRedis,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], AppUnderTest]]:
    """Puts a new app, on a new database and an emptied Redis, under test; each call
    another."""
    monkeypatch.setattr(events, "MAX_STREAM_S", STREAM_S)
    opened: list[Container] = []

    def fresh() -> AppUnderTest:
        container = _container(tmp_path / f"app{len(opened)}", redis_server.url)
        opened.append(container)
        APP.app, APP.token = create_app(container.settings, container), new_token(container)
        return APP

    yield fresh
    APP.app, APP.token = None, ""
    for container in opened:
        container.close()


@pytest.fixture
def app(fresh_app: Callable[[], AppUnderTest]) -> AppUnderTest:
    return fresh_app()


def _schema_document() -> dict[str, Any]:
    """``/openapi.json`` as the app serves it, from an app over a container that is never
    opened (building one opens nothing: the database is reached on first use only)."""
    settings = Settings.model_validate({"database": {"url": "sqlite:///:memory:"},
                                        "providers": PROVIDERS})
    with TestClient(create_app(settings, Container(settings))) as client:
        document: dict[str, Any] = client.get("/openapi.json").json()
    return document


# Every check schemathesis runs by default, with two adjustments:
CONFIG = schemathesis.Config.from_dict({"checks": {
    # A schema-violating request is to be refused with a 4xx: add 413, which is how this API
    # refuses a body over a limit (PRODUCT: more than 10,000 jobs in a batch is a 413).
    "negative_data_rejection": {"expected-statuses": [
        400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]},
    # A schema-valid request may still be a 422 for a rule no JSON schema can state: that the
    # workflow's provider is configured, that a callback host resolves to a public address
    # (the SSRF guard), what a cron rule or an interval means, an IANA zone's name. Any other
    # refusal (400, 405, 413...) of a schema-valid request is still a finding.
    "positive_data_acceptance": {"expected-statuses": [
        "2XX", "3XX", 401, 403, 404, 409, 422, 429, "5XX"]},
}})
schema = schemathesis.openapi.from_dict(_schema_document(), config=CONFIG)
schema.app = APP


# The token as the schema declares it (HTTPBearer), so schemathesis knows what it is: its
# negative cases leave it out or spoil it, and `ignored_auth` checks the refusals. Fetched
# afresh for each case, and a 401 is not retried with a new one (it would hide a finding).
@schema.auth.auth(refresh_interval=None, retry_on=[])
class CurrentToken:
    def get(self, case: Any, context: Any) -> str:
        return APP.token

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.hook("map_case")
def one_idempotency_key(context: Any, case: Any) -> Any:
    """POST /v1/jobs and /v1/batches take the key as a header or a field, and refuse (400)
    the two when they differ: a rule between two parameters that OpenAPI cannot state. A
    schema-valid case that sends both sends one key."""
    header = (case.headers or {}).get("idempotency-key")
    body = case.body if isinstance(case.body, dict) else {}
    positive = case.meta is None or case.meta.generation.mode == GenerationMode.POSITIVE
    if positive and header is not None and body.get("idempotency_key") not in (None, header):
        case.body = {**body, "idempotency_key": header}
    return case


SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
                    suppress_health_check=list(HealthCheck))


def valid_token_is_accepted(ctx: Any, response: Any, case: Any) -> bool:
    """A request that carried the valid token is not refused as unauthorized (else every
    case could pass on a 401, which each operation declares)."""
    sent = response.request.headers.get("Authorization")
    assert not (sent == f"Bearer {APP.token}" and response.status_code == 401), \
        f"401 with a valid token: {response.text}"
    return True


@schema.parametrize()
@SETTINGS
def test_every_operation_keeps_to_the_schema(case: Any, app: AppUnderTest) -> None:
    case.call_and_validate(timeout=READ_TIMEOUT_S, additional_checks=[valid_token_is_accepted])


def test_sequences_of_operations_keep_to_the_schema(
        fresh_app: Callable[[], AppUnderTest]) -> None:
    """Stateful: the links schemathesis infers (a job's id from `POST /v1/jobs` to its get,
    cancel, retry and events; a schedule's name; a callback's id) chain calls on resources
    that exist, with every check on each answer. Each sequence starts on an empty store, so
    that Hypothesis can replay it."""

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            fresh_app()

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"timeout": READ_TIMEOUT_S}

        def validate_response(self, response: Any, case: Any,
                              additional_checks: Any = None, **kwargs: Any) -> None:
            super().validate_response(response, case, [valid_token_is_accepted], **kwargs)

    Workflow.run(settings=settings(SETTINGS, max_examples=max(EXAMPLES // 3, 5),
                                   stateful_step_count=8))


# ---- S3: no /v1 operation answers without a valid token ---------------------------------

def _operations(container: Container) -> list[tuple[str, str]]:
    spec = create_app(container.settings, container).openapi()
    return [(method.upper(), path) for path, ops in spec["paths"].items()
            for method in ops if path.startswith("/v1/")]


def _concrete(path: str) -> str:
    """The path with every parameter filled with a valid value."""
    return re.sub(r"\{[^}]+\}", "x_1", path.replace("{n}", "0"))


def _api_routes(routes: Any) -> Iterator[APIRoute]:
    """Every route, through the included routers FastAPI nests."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        yield from _api_routes(getattr(getattr(route, "original_router", None), "routes", []))


def test_every_v1_operation_declares_the_bearer_token(container: Container) -> None:
    app = create_app(container.settings, container)
    spec = app.openapi()
    routed = {(method, route.path) for route in _api_routes(app.routes)
              if route.path.startswith("/v1/") for method in route.methods}
    assert routed == set(_operations(container)), "a /v1 route is missing from the schema"
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            declared = op.get("security") == [{"HTTPBearer": []}]
            assert declared == path.startswith("/v1/"), (method, path)
            if declared:
                assert "401" in op["responses"], (method, path)


@pytest.mark.parametrize("auth", ["missing", "wrong", "basic", "empty", "revoked"])
def test_every_v1_operation_is_401_without_a_valid_token(container: Container,
                                                        auth: str) -> None:
    token = new_token(container, "s3")
    headers = {"missing": {}, "wrong": {"Authorization": "Bearer orch_wrong"},
               "basic": {"Authorization": "Basic dXNlcjpwdw=="},
               "empty": {"Authorization": "Bearer "},
               "revoked": {"Authorization": f"Bearer {token}"}}[auth]
    if auth == "revoked":
        assert container.store.revoke_token("s3", 0)
    operations = _operations(container)
    assert len(operations) >= 27, operations
    with TestClient(create_app(container.settings, container)) as client:
        for method, path in operations:
            response = client.request(method, _concrete(path), headers=headers,
                                      json={"workflow": "sandbox/echo"})
            assert response.status_code == 401, (method, path, response.text)
            assert error_of(response)["code"] == "unauthorized", (method, path)
            assert response.headers["www-authenticate"] == "Bearer"


def test_a_405_lists_the_methods_of_the_path(container: Container) -> None:
    with api_client(container) as client:
        for method, path, allowed in (("PUT", "/v1/jobs", "GET, POST"),
                                      ("TRACE", "/v1/schedules/x_1", "DELETE, GET, PATCH"),
                                      ("GET", "/v1/jobs/x_1/cancel", "POST"),
                                      ("POST", "/healthz", "GET")):
            response = client.request(method, path)
            assert response.status_code == 405, (method, path)
            assert response.headers["allow"] == allowed, (method, path)
            assert error_of(response)["code"] == "method_not_allowed"


def test_the_s3_requests_reach_their_routes_with_a_valid_token(container: Container) -> None:
    """The 401s above are the token's doing: the same requests with a valid token are not
    refused as unauthorized, nor unrouted (405, or a 404 that is not the resource's own)."""
    with api_client(container) as client:
        for method, path in _operations(container):
            response = client.request(method, _concrete(path), json={"workflow": "sandbox/echo"})
            assert response.status_code not in (401, 405), (method, path, response.text)
            if response.status_code == 404:
                assert error_of(response)["message"] != "Not Found", (method, path)
