"""``/v1/batches``: status codes, the error shape, auth, idempotency, the body limit, and
the client's batch calls over the same app."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from orchestrator.bootstrap import Container
from orchestrator.client import Client, ClientError
from orchestrator.domain.records import Launch
from orchestrator.testing import RecordingScheduler
from tests.unit.api_support import api_client, error_of, make_container, new_token

MAX_BATCH_BYTES = 200_000


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    container = make_container(tmp_path, jobs={"max_input_bytes": 2048,
                                               "max_batch_bytes": MAX_BATCH_BYTES})
    yield container
    container.close()


@pytest.fixture
def token(container: Container) -> str:
    return new_token(container)


@pytest.fixture
def api(container: Container, token: str) -> Iterator[TestClient]:
    with api_client(container, token) as client:
        yield client


def jobs_total(container: Container) -> int:
    return sum(container.store.count_by_status().values())


def launches(container: Container) -> list[Launch]:
    scheduler = container.scheduler
    assert isinstance(scheduler, RecordingScheduler)
    return [a for a in scheduler.actions if isinstance(a, Launch)]


def rows(n: int) -> list[dict[str, Any]]:
    return [{"inputs": {"row": i}} for i in range(n)]


def test_submit_then_follow(api: TestClient, container: Container) -> None:
    created = api.post("/v1/batches", json={
        "jobs": [*rows(3), {"workflow": "cw/other", "labels": {"team": "b"}}],
        "defaults": {"workflow": "sandbox/echo", "priority": 2},
        "labels": {"team": "a", "run": "1"}})
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"id", "job_ids"} and body["id"].startswith("bat_")
    ids = body["job_ids"]
    assert len(ids) == 4 and ids == sorted(ids)
    jobs = [api.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
    assert [j["inputs"] for j in jobs] == [{"row": 0}, {"row": 1}, {"row": 2}, {}]
    assert {j["batch_id"] for j in jobs} == {body["id"]}
    assert jobs[0]["labels"] == {"team": "a", "run": "1"} and jobs[0]["priority"] == 2
    assert jobs[3]["workflow"] == "cw/other" and jobs[3]["labels"] == {"team": "b", "run": "1"}
    assert launches(container) == [Launch(job_id) for job_id in ids]
    listed = api.get("/v1/jobs", params={"batch_id": body["id"]}).json()["items"]
    assert [j["id"] for j in listed] == ids[::-1]

    batch = api.get(f"/v1/batches/{body['id']}")
    assert batch.status_code == 200
    shown = batch.json()
    assert shown["id"] == body["id"] and shown["total"] == 4 and shown["done"] is False
    assert shown["counts"] == {"queued": 4, "starting": 0, "running": 0, "completed": 0,
                               "failed": 0, "cancelled": 0, "timed_out": 0}
    assert shown["finished_at"] is None and shown["created_at"].endswith("Z")
    assert shown["labels"] == {"team": "a", "run": "1"} and shown["callback_url"] is None

    for job_id in ids:
        assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    shown = api.get(f"/v1/batches/{body['id']}").json()
    assert shown["done"] is True and shown["counts"]["cancelled"] == 4
    assert shown["finished_at"] is not None and shown["finished_at"] >= shown["created_at"]


def test_idempotency_header_and_field(api: TestClient, container: Container) -> None:
    body = {"jobs": rows(2), "defaults": {"workflow": "sandbox/echo"}}
    first = api.post("/v1/batches", json=body, headers={"Idempotency-Key": "k1"})
    again = api.post("/v1/batches", json={**body, "idempotency_key": "k1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert jobs_total(container) == 2 and len(launches(container)) == 2
    other = api.post("/v1/batches", json={**body, "jobs": rows(3)},
                     headers={"Idempotency-Key": "k1"})
    assert other.status_code == 409
    error = error_of(other)
    assert error["code"] == "idempotency_conflict" and first.json()["id"] in error["message"]
    mismatch = api.post("/v1/batches", json={**body, "idempotency_key": "a"},
                        headers={"Idempotency-Key": "b"})
    assert mismatch.status_code == 400
    assert error_of(mismatch)["code"] == "idempotency_key_mismatch"
    assert jobs_total(container) == 2


def test_every_bad_job_is_named_and_nothing_is_written(api: TestClient,
                                                       container: Container) -> None:
    jobs = [{"workflow": "sandbox/echo"}, {"workflow": "nope/echo"},
            {"workflow": "sandbox/echo", "inputs": "x" * 3000},
            {"workflow": "sandbox/echo", "inputs": {"x": "\ud800"}}]
    raw = json.dumps({"jobs": jobs}).encode()  # keeps the lone surrogate as its escape
    response = api.post("/v1/batches", content=raw,
                        headers={"content-type": "application/json"})
    assert response.status_code == 422
    message = error_of(response)["message"]
    assert message.startswith("3 of 4 jobs cannot be accepted, so none was submitted")
    assert "jobs[1]: workflow 'nope/echo'" in message
    assert "configured providers: sandbox, cw" in message
    assert "jobs[2]: inputs are 3002 bytes; the limit is 2048" in message
    assert "jobs[3]: inputs hold text that is not valid Unicode" in message
    assert jobs_total(container) == 0 and launches(container) == []


@pytest.mark.parametrize(("body", "says"), [
    ({"jobs": [{"workflow": "sandbox/echo"}, {"workflow": "sandbox/echo", "priority": 11},
               {"workflow": 5}]},
     "jobs[1].priority: Input should be less than or equal to 10; jobs[2].workflow"),
    ({"jobs": [{"workflow": "sandbox/echo", "surprise": 1}]}, "jobs[0].surprise"),
    ({"jobs": [{"workflow": None}]}, "jobs[0].workflow: may not be null"),
    ({"jobs": {"workflow": "sandbox/echo"}}, "jobs: Input should be a valid list"),
    ({"jobs": [{"workflow": "sandbox/echo"}], "defaults": {"idempotency_key": "k"}},
     "defaults.idempotency_key: Extra inputs are not permitted"),
    ({"jobs": [{"inputs": {}}]}, "jobs[0]: workflow is missing"),
    ({"jobs": []}, "jobs is empty"),
    ({}, "jobs: Field required"),
    ({"jobs": [{"workflow": "sandbox/echo"}], "labels": {"a": 1}}, "labels.a"),
])
def test_wrong_shapes_are_422_naming_the_place(api: TestClient, container: Container,
                                               body: dict[str, Any], says: str) -> None:
    response = api.post("/v1/batches", json=body)
    assert response.status_code == 422, response.text
    assert says in error_of(response)["message"]
    assert jobs_total(container) == 0


def test_more_than_10000_jobs_is_a_413(api: TestClient, container: Container) -> None:
    body = {"jobs": [{}] * 10_001, "defaults": {"workflow": "sandbox/echo"}}
    response = api.post("/v1/batches", json=body)
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "batch_too_large" and "10,001 jobs" in error["message"]
    assert jobs_total(container) == 0


def test_a_body_over_max_batch_bytes_is_a_413(api: TestClient, container: Container) -> None:
    big = {"jobs": [{"workflow": "sandbox/echo", "inputs": "x" * 1000}] * 250}
    raw = json.dumps(big).encode()
    assert len(raw) > MAX_BATCH_BYTES
    declared = api.post("/v1/batches", content=raw, headers={"content-type": "application/json"})
    assert declared.status_code == 413
    assert "max_batch_bytes" in error_of(declared)["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(raw), 10_000):
            yield raw[start:start + 10_000]

    streamed = api.post("/v1/batches", content=chunks(),
                        headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and "max_batch_bytes" in error_of(streamed)["message"]
    assert jobs_total(container) == 0


def test_a_batch_larger_than_the_general_body_limit_is_fine(api: TestClient,
                                                            container: Container) -> None:
    # The general limit is max_input_bytes (2048) + 64 KiB; this body is some 150 KB.
    body = {"jobs": [{"workflow": "sandbox/echo", "inputs": "x" * 1500}] * 100}
    assert len(json.dumps(body)) > 2048 + 64 * 1024
    assert api.post("/v1/batches", json=body).status_code == 201
    assert jobs_total(container) == 100
    one_job = api.post("/v1/jobs", json={"workflow": "sandbox/echo", "inputs": "x" * 100_000})
    assert one_job.status_code == 413  # the general limit still holds elsewhere


def test_malformed_json_is_400(api: TestClient) -> None:
    response = api.post("/v1/batches", content=b'{"jobs": [', headers={
        "content-type": "application/json"})
    assert response.status_code == 400 and error_of(response)["code"] == "malformed_json"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer orch_wrong"}])
def test_a_missing_or_wrong_token_is_401(api: TestClient, container: Container,
                                         headers: dict[str, str]) -> None:
    api.headers.pop("Authorization")
    posted = api.post("/v1/batches", json={"jobs": [{"workflow": "sandbox/echo"}]},
                      headers=headers)
    shown = api.get("/v1/batches/bat_x", headers=headers)
    assert (posted.status_code, shown.status_code) == (401, 401)
    assert error_of(posted)["code"] == "unauthorized"
    assert jobs_total(container) == 0


def test_unknown_or_malformed_batch_ids(api: TestClient) -> None:
    missing = api.get("/v1/batches/bat_nope")
    assert missing.status_code == 404 and "bat_nope" in error_of(missing)["message"]
    assert api.get("/v1/batches/bat%00x").status_code == 422


def test_the_schema_describes_batches(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    post = schema["paths"]["/v1/batches"]["post"]
    assert {"200", "201", "400", "401", "409", "413", "422"} <= set(post["responses"])
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/BatchIn")
    get = schema["paths"]["/v1/batches/{batch_id}"]["get"]
    assert {"200", "401", "404"} <= set(get["responses"])
    batch_in = schema["components"]["schemas"]["BatchIn"]
    assert batch_in["properties"]["jobs"]["maxItems"] == 10_000
    assert set(schema["components"]["schemas"]["BatchCountsOut"]["properties"]) == {
        "queued", "starting", "running", "completed", "failed", "cancelled", "timed_out"}


# the client over the same app ----------------------------------------------------------------


@pytest.fixture
def client(api: TestClient, token: str) -> Iterator[Client]:
    with Client("http://testserver", token, transport=api._transport) as client:
        yield client


def test_the_client_submits_and_reads_a_batch(client: Client, container: Container) -> None:
    sent: list[tuple[int, int]] = []
    made = client.submit_batch(rows(3), defaults={"workflow": "sandbox/echo"},
                               labels={"run": "1"}, idempotency_key="k",
                               on_upload=lambda done, total: sent.append((done, total)))
    assert made["created"] is True and len(made["job_ids"]) == 3
    assert sent and sent[-1][0] == sent[-1][1]
    again = client.submit_batch(rows(3), defaults={"workflow": "sandbox/echo"},
                                labels={"run": "1"}, idempotency_key="k")
    assert again == {**made, "created": False}
    batch = client.get_batch(made["id"])
    assert batch["total"] == 3 and batch["labels"] == {"run": "1"}
    with pytest.raises(ClientError) as caught:
        client.submit_batch([{"workflow": "nope/echo"}])
    assert caught.value.status == 422 and "jobs[0]" in caught.value.message
    with pytest.raises(TimeoutError):
        client.wait_batch(made["id"], timeout_s=0.05, interval_s=0.01)
    assert jobs_total(container) == 3


def test_the_client_splits_many_jobs_into_keyed_batches(client: Client,
                                                        container: Container) -> None:
    jobs = [{"workflow": "sandbox/echo", "inputs": {"row": i}} for i in range(7)]
    progress: list[int] = []
    made = list(client.submit_batches(jobs, idempotency_key="file", chunk_size=3,
                                      on_jobs_sent=lambda done, _: progress.append(done)))
    assert [len(b["job_ids"]) for b in made] == [3, 3, 1]
    assert [b["first"] for b in made] == [0, 3, 6] and all(b["created"] for b in made)
    keys = [client.get_batch(b["id"])["idempotency_key"] for b in made]
    assert keys == ["file-1", "file-2", "file-3"]
    assert progress == sorted(progress) and progress[-1] == 7
    again = list(client.submit_batches(jobs, idempotency_key="file", chunk_size=3))
    assert [b["id"] for b in again] == [b["id"] for b in made]
    assert not any(b["created"] for b in again) and jobs_total(container) == 7
    # Cut by size as well as by count; one batch keeps the key as given.
    by_size = list(client.submit_batches(jobs, max_bytes=120))
    assert len(by_size) > 1 and sum(len(b["job_ids"]) for b in by_size) == 7
    single = list(client.submit_batches(jobs[:2], idempotency_key="one"))
    assert client.get_batch(single[0]["id"])["idempotency_key"] == "one"
