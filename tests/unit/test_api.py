"""The REST API's contract: status codes, the error shape, auth, idempotency, paging."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from orchestrator.bootstrap import Container
from orchestrator.domain.records import Launch
from orchestrator.testing import RecordingScheduler
from tests.unit.api_support import api_client, error_of, make_container, new_token


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    container = make_container(tmp_path)
    yield container
    container.close()


@pytest.fixture
def token(container: Container) -> str:
    return new_token(container)


@pytest.fixture
def api(container: Container, token: str) -> Iterator[TestClient]:
    with api_client(container, token) as client:
        yield client


def test_submit_then_get(api: TestClient, container: Container) -> None:
    created = api.post("/v1/jobs", json={"workflow": "sandbox/echo", "inputs": {"a": 1},
                                         "labels": {"team": "x"}})
    assert created.status_code == 201
    job = created.json()
    assert job["status"] == "queued" and job["inputs"] == {"a": 1}
    assert job["remote"] == {"provider": "sandbox", "run_id": None, "status": None}
    assert api.get(f"/v1/jobs/{job['id']}").json() == job
    assert isinstance(container.scheduler, RecordingScheduler)
    assert container.scheduler.actions == [Launch(job["id"])]


def test_idempotency_header_and_field(api: TestClient) -> None:
    body = {"workflow": "sandbox/echo", "inputs": {"a": 1}}
    first = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    again = api.post("/v1/jobs", json={**body, "idempotency_key": "k1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = api.post("/v1/jobs", json={**body, "inputs": {"a": 2}},
                     headers={"Idempotency-Key": "k1"})
    assert other.status_code == 409 and "already used" in error_of(other)["message"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer orch_wrong"},
                                     {"Authorization": "Basic abc"}])
def test_a_missing_or_wrong_token_is_401(api: TestClient, headers: dict[str, str]) -> None:
    api.headers.pop("Authorization")
    for method, path in (("GET", "/v1/jobs"), ("GET", "/v1/jobs/job_x"),
                         ("POST", "/v1/jobs")):
        response = api.request(method, path, headers=headers, json={"workflow": "sandbox/e"})
        assert response.status_code == 401, (method, path)
        assert error_of(response)["code"] == "unauthorized"


def test_a_revoked_token_is_401(api: TestClient, container: Container) -> None:
    container.store.revoke_token("test", 0)
    assert api.get("/v1/jobs").status_code == 401


def test_unknown_provider_names_the_configured_ones(api: TestClient,
                                                    container: Container) -> None:
    response = api.post("/v1/jobs", json={"workflow": "nope/echo"})
    assert response.status_code == 422
    assert "configured providers: sandbox, cw" in error_of(response)["message"]
    assert container.store.count_by_status() == {}


def test_malformed_json_is_400(api: TestClient) -> None:
    response = api.post("/v1/jobs", content=b'{"workflow": ', headers={
        "content-type": "application/json"})
    assert response.status_code == 400 and error_of(response)["code"] == "malformed_json"


@pytest.mark.parametrize(("body", "field"), [
    ({"workflow": 5}, "workflow"),
    ({"workflow": "sandbox/echo", "priority": 11}, "priority"),
    ({"workflow": "sandbox/echo", "retries": -1}, "retries"),
    ({"workflow": "sandbox/echo", "labels": {"a": 1}}, "labels.a"),
    ({"workflow": "sandbox/echo", "callback_url": "ftp://x"}, "callback_url"),
    ({"workflow": "sandbox/echo", "surprise": 1}, "surprise"),
    ({}, "workflow"),
])
def test_wrong_types_are_422_naming_the_field(api: TestClient, container: Container,
                                              body: dict[str, object], field: str) -> None:
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert error_of(response)["message"].startswith(field)
    assert container.store.count_by_status() == {}


def test_oversized_inputs_are_413(api: TestClient, container: Container) -> None:
    response = api.post("/v1/jobs", json={"workflow": "sandbox/echo", "inputs": "x" * 3000})
    assert response.status_code == 413 and "2048 bytes" in error_of(response)["message"]
    huge = api.post("/v1/jobs", json={"workflow": "sandbox/echo", "inputs": "x" * 200_000})
    assert huge.status_code == 413
    assert container.store.count_by_status() == {}


def test_unknown_job_is_404(api: TestClient) -> None:
    response = api.get("/v1/jobs/job_nope")
    assert response.status_code == 404 and "job_nope" in error_of(response)["message"]


def test_list_pages_with_a_cursor(api: TestClient) -> None:
    ids = [api.post("/v1/jobs", json={"workflow": "sandbox/echo", "labels": {"i": str(i)}})
           .json()["id"] for i in range(5)]
    first = api.get("/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in first["items"]] == ids[::-1][:2]
    rest = api.get("/v1/jobs", params={"limit": 10, "cursor": first["next_cursor"]}).json()
    assert [j["id"] for j in rest["items"]] == ids[::-1][2:] and rest["next_cursor"] is None
    labelled = api.get("/v1/jobs", params={"label": "i=3"}).json()["items"]
    assert [j["id"] for j in labelled] == [ids[3]]
    assert api.get("/v1/jobs", params={"status": "bogus"}).status_code == 422


def test_health_and_schema(api: TestClient) -> None:
    assert api.get("/healthz").json()["status"] == "ok"
    schema = api.get("/openapi.json").json()
    assert "/v1/jobs" in schema["paths"] and "/v1/jobs/{job_id}" in schema["paths"]
    post = schema["paths"]["/v1/jobs"]["post"]["responses"]
    assert {"201", "401", "409", "413", "422"} <= set(post)


@pytest.mark.parametrize(("body", "says"), [
    ({"workflow": "sandbox/echo", "inputs": {"x": "\ud800"}}, "not valid Unicode"),
    ({"workflow": "sandbox/echo", "path": "a\x00b"}, "NUL"),
    ({"workflow": "sandbox/echo", "labels": {"k": "v\x00"}}, "NUL"),
    ({"workflow": "sandbox/echo", "callback_url": "http://[::1"}, "not a valid URL"),
    ({"workflow": "sandbox/echo", "callback_url": "http://" + "a" * 64 + ".com/"},
     "host name"),
    ({"workflow": "sandbox/echo", "callback_url": "http://x:99999/"}, "not a valid URL"),
])
def test_values_that_would_break_later_are_refused_now(api: TestClient, container: Container,
                                                       body: dict[str, object],
                                                       says: str) -> None:
    import json as _json

    raw = _json.dumps(body).encode()  # keeps a lone surrogate as its \\ud800 escape
    response = api.post("/v1/jobs", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert says in error_of(response)["message"]
    assert container.store.count_by_status() == {}


def test_nan_in_inputs_is_refused(api: TestClient) -> None:
    response = api.post("/v1/jobs", content=b'{"workflow": "sandbox/echo", "inputs": NaN}',
                        headers={"content-type": "application/json"})
    assert response.status_code in (400, 422)


@pytest.mark.parametrize("path", ["/v1/jobs/job%00x", "/v1/jobs?cursor=a%00",
                                  "/v1/jobs?workflow=a%00", "/v1/jobs?batch_id=%00"])
def test_nul_in_ids_and_filters_is_422(api: TestClient, path: str) -> None:
    assert api.get(path).status_code == 422
