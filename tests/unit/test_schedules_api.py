"""``/v1/schedules``: status codes, the error shape, auth, and slots as a beat records them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient

from orchestrator.bootstrap import Container
from orchestrator.client import Client, ClientError
from orchestrator.domain.records import Launch
from orchestrator.services.fire import fire_due
from orchestrator.testing import RecordingScheduler
from tests.unit.api_support import api_client, error_of, make_container

NIGHTLY = {"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Berlin",
           "job": {"workflow": "sandbox/echo", "inputs": {"a": 1}}}


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    container = make_container(tmp_path)
    yield container
    container.close()


@pytest.fixture
def api(container: Container) -> Iterator[TestClient]:
    with api_client(container) as client:
        yield client


def epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339).timestamp()


def test_create_then_get_and_list(api: TestClient) -> None:
    created = api.post("/v1/schedules", json={**NIGHTLY, "labels": {"team": "x"}})
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["name"] == "nightly" and schedule["cron"] == "0 2 * * *"
    assert schedule["every"] is None and schedule["timezone"] == "Europe/Berlin"
    assert schedule["job"] == {"workflow": "sandbox/echo", "inputs": {"a": 1}}
    assert (schedule["paused"], schedule["overlap"], schedule["catchup"]) == (
        False, "skip", "latest")
    assert (schedule["source"], schedule["note"], schedule["labels"]) == (
        "api", None, {"team": "x"})
    assert schedule["id"].startswith("sch")
    # 02:00 in Berlin, within the next day
    next_fire = datetime.fromisoformat(schedule["next_fire_at"])
    assert 0 < next_fire.timestamp() - time.time() <= 86400 + 3600
    local = next_fire.astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) == (2, 0)

    shown = api.get("/v1/schedules/nightly").json()
    assert shown == {**schedule, "slots": []}

    api.post("/v1/schedules", json={"name": "a-first", "every": "30s",
                                    "job": {"workflow": "cw/x"}})
    listed = api.get("/v1/schedules")
    assert listed.status_code == 200
    assert [s["name"] for s in listed.json()["items"]] == ["a-first", "nightly"]
    assert listed.json()["items"][1] == schedule


def test_duplicate_name_is_409(api: TestClient) -> None:
    assert api.post("/v1/schedules", json=NIGHTLY).status_code == 201
    again = api.post("/v1/schedules", json={**NIGHTLY, "cron": "0 3 * * *"})
    assert again.status_code == 409
    assert error_of(again)["code"] == "already_exists"
    assert "nightly" in error_of(again)["message"]
    assert api.get("/v1/schedules/nightly").json()["cron"] == "0 2 * * *"


@pytest.mark.parametrize(("change", "says"), [
    ({"cron": "61 * * * *"}, "cron '61 * * * *'"),
    ({"cron": "0 2 * * * *"}, "expected five"),
    ({"cron": "0 2 31 2 *"}, "never fires"),
    ({"cron": None}, "exactly one of 'cron'"),
    ({"every": "30s"}, "exactly one of 'cron'"),
    ({"cron": None, "every": "fortnightly"}, "every 'fortnightly'"),
    ({"cron": None, "every": "0.5s"}, "outside 1 s to 366 days"),
    ({"cron": None, "every": "9999999999d"}, "outside 1 s to 366 days"),
    ({"timezone": "Mars/Olympus"}, "'Mars/Olympus' is not an IANA time zone"),
    ({"timezone": "x" * 65}, "timezone"),
    ({"timezone": None}, "timezone"),
    ({"job": {"workflow": "nope/echo"}}, "configured providers: sandbox, cw"),
    ({"job": {"workflow": "sandbox/echo", "idempotency_key": "k"}}, "idempotency_key"),
    ({"job": {"workflow": "sandbox/echo", "priority": 11}}, "job.priority"),
    ({"job": {"workflow": "sandbox/echo", "path": "a\x00b"}}, "NUL"),
    ({"job": None}, "job"),
    ({"labels": {"k": "v\x00"}}, "NUL"),
    ({"overlap": "sometimes"}, "overlap"),
    ({"catchup": "most"}, "catchup"),
    ({"catchup_window_s": 0}, "catchup_window_s"),
    ({"name": "-starts-with-a-dash"}, "name"),
    ({"name": "has space"}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"name": "nightly\n"}, "name"),
    ({"surprise": 1}, "surprise"),
])
def test_invalid_schedules_are_422(api: TestClient, container: Container,
                                   change: dict[str, object], says: str) -> None:
    body = {**NIGHTLY, **change}
    raw = json.dumps(body).encode()
    response = api.post("/v1/schedules", content=raw,
                        headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert says in error_of(response)["message"]
    assert container.schedules.list_schedules() == []


def test_a_huge_template_is_413(api: TestClient) -> None:
    response = api.post("/v1/schedules", json={
        **NIGHTLY, "job": {"workflow": "sandbox/echo", "inputs": "x" * 3000}})
    assert response.status_code == 413 and "2048 bytes" in error_of(response)["message"]


@pytest.mark.parametrize("content", [b'{"name": ', b"[]", b"null", b'"x"',
                                     b'{"name": "n", "every": "1s", "job": {"workflow": '
                                     b'"sandbox/echo"}, "catchup_window_s": Infinity}',
                                     b'{"name": "n", "every": "1s", "job": {"workflow": '
                                     b'"sandbox/echo", "inputs": NaN}}',
                                     b'{"name": "\\ud800", "every": "1s"}',
                                     b'{"name": "n", "cron": "\\ud800 * * * *", "job": '
                                     b'{"workflow": "sandbox/echo"}}',
                                     b'{"name": "n", "every": "1s", "timezone": "\\ud800", '
                                     b'"job": {"workflow": "sandbox/echo"}}'])
def test_malformed_bodies_are_400_or_422(api: TestClient, content: bytes) -> None:
    assert api.post("/v1/schedules", json=NIGHTLY).status_code == 201
    for method, path in (("POST", "/v1/schedules"), ("PATCH", "/v1/schedules/nightly")):
        response = api.request(method, path, content=content,
                               headers={"content-type": "application/json"})
        assert response.status_code in (400, 422), (method, response.text)
        error_of(response)


def test_patch_changes_only_what_is_sent(api: TestClient) -> None:
    created = api.post("/v1/schedules", json={**NIGHTLY, "overlap": "allow",
                                              "labels": {"team": "x"}}).json()
    changed = api.patch("/v1/schedules/nightly", json={"catchup": "all"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["catchup"] == "all"
    assert {k: v for k, v in changed.json().items() if k not in ("catchup", "updated_at")} == {
        k: v for k, v in created.items() if k not in ("catchup", "updated_at")}

    to_every = api.patch("/v1/schedules/nightly", json={"every": "5m"}).json()
    assert (to_every["cron"], to_every["every"]) == (None, "5m")
    assert epoch(to_every["next_fire_at"]) % 300 == 0
    back = api.patch("/v1/schedules/nightly", json={"cron": "30 3 * * *",
                                                    "timezone": "UTC"}).json()
    assert (back["cron"], back["every"], back["timezone"]) == ("30 3 * * *", None, "UTC")
    assert back["next_fire_at"].endswith("03:30:00Z")

    job = api.patch("/v1/schedules/nightly", json={"job": {"workflow": "cw/other"}}).json()
    assert job["job"] == {"workflow": "cw/other"}  # replaced whole: inputs gone
    assert job["overlap"] == "allow" and job["labels"] == {"team": "x"}

    assert api.patch("/v1/schedules/nightly", json={}).status_code == 200
    renamed = api.patch("/v1/schedules/nightly", json={"name": "other"})
    assert renamed.status_code == 422 and error_of(renamed)["message"].startswith("name")


def test_pause_and_resume(api: TestClient) -> None:
    api.post("/v1/schedules", json=NIGHTLY)
    paused = api.patch("/v1/schedules/nightly", json={"paused": True}).json()
    assert paused["paused"] is True and paused["next_fire_at"] is None
    listed = api.get("/v1/schedules").json()["items"]
    assert listed[0]["paused"] is True and listed[0]["next_fire_at"] is None
    resumed = api.patch("/v1/schedules/nightly", json={"paused": False}).json()
    assert resumed["paused"] is False and epoch(resumed["next_fire_at"]) > time.time()


def test_delete(api: TestClient) -> None:
    api.post("/v1/schedules", json=NIGHTLY)
    deleted = api.delete("/v1/schedules/nightly")
    assert deleted.status_code == 204 and deleted.content == b""
    assert api.get("/v1/schedules/nightly").status_code == 404
    assert api.get("/v1/schedules").json() == {"items": []}
    assert api.delete("/v1/schedules/nightly").status_code == 404


def test_trigger_makes_a_job_and_a_manual_slot(api: TestClient, container: Container) -> None:
    schedule = api.post("/v1/schedules", json={**NIGHTLY, "paused": True,
                                               "labels": {"from": "schedule"}}).json()
    triggered = api.post("/v1/schedules/nightly/trigger")
    assert triggered.status_code == 201, triggered.text
    job = triggered.json()
    assert job["workflow"] == "sandbox/echo" and job["inputs"] == {"a": 1}
    assert job["status"] == "queued" and job["schedule_id"] == schedule["id"]
    assert job["labels"] == {"from": "schedule"} and job["idempotency_key"] is None
    assert api.get(f"/v1/jobs/{job['id']}").json() == job
    assert isinstance(container.scheduler, RecordingScheduler)
    assert container.scheduler.actions == [Launch(job["id"])]
    slots = api.get("/v1/schedules/nightly").json()["slots"]
    assert len(slots) == 1
    assert {k: slots[0][k] for k in ("status", "trigger", "job_id", "job_status")} == {
        "status": "fired", "trigger": "manual", "job_id": job["id"], "job_status": "queued"}
    assert epoch(slots[0]["slot_at"]) == pytest.approx(time.time(), abs=60)


def test_slots_as_the_beat_records_them(api: TestClient, container: Container) -> None:
    api.post("/v1/schedules", json={"name": "often", "every": "1s", "catchup": "none",
                                    "job": {"workflow": "sandbox/echo"}})
    t0 = time.time()
    container.schedules.update_schedule("often", {"cursor_at": t0 - 10, "next_fire_at": t0 - 9},
                                        t0)
    outcome = fire_due(container.deps)
    assert outcome.fired == 1 and outcome.missed >= 8

    detail = api.get("/v1/schedules/often").json()
    slots = detail["slots"]
    assert len(slots) == outcome.fired + outcome.missed + outcome.skipped
    times = [epoch(s["slot_at"]) for s in slots]
    assert times == sorted(times, reverse=True)  # newest first
    fired = [s for s in slots if s["status"] == "fired"]
    assert len(fired) == 1 and fired[0]["trigger"] == "schedule"
    assert fired[0]["job_status"] == "queued"
    job = api.get(f"/v1/jobs/{fired[0]['job_id']}").json()
    assert job["schedule_id"] == detail["id"]
    missed = [s for s in slots if s["status"] == "missed"]
    assert all(s["job_id"] is None and "catch-up policy 'none'" in s["reason"] for s in missed)
    assert epoch(detail["next_fire_at"]) > t0

    three = api.get("/v1/schedules/often", params={"slots": 3}).json()["slots"]
    assert three == slots[:3]
    for bad in (0, 501, "x"):
        assert api.get("/v1/schedules/often", params={"slots": bad}).status_code == 422


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/schedules/nope"), ("PATCH", "/v1/schedules/nope"),
    ("DELETE", "/v1/schedules/nope"), ("POST", "/v1/schedules/nope/trigger")])
def test_unknown_schedule_is_404(api: TestClient, method: str, path: str) -> None:
    response = api.request(method, path, json={} if method == "PATCH" else None)
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found" and "'nope'" in error_of(response)["message"]


@pytest.mark.parametrize("path", ["/v1/schedules/-x", "/v1/schedules/a%20b",
                                  "/v1/schedules/a%00b", "/v1/schedules/" + "x" * 101,
                                  "/v1/schedules/a%0A"])
def test_bad_names_in_the_path_are_422(api: TestClient, path: str) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = api.request(method, path, json={} if method == "PATCH" else None)
        assert response.status_code == 422, (method, path)
        error_of(response)
    assert api.post(path + "/trigger").status_code == 422


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer orch_wrong"}])
def test_every_route_needs_a_token(api: TestClient, headers: dict[str, str]) -> None:
    api.post("/v1/schedules", json=NIGHTLY)
    api.headers.pop("Authorization")
    for method, path in (("POST", "/v1/schedules"), ("GET", "/v1/schedules"),
                         ("GET", "/v1/schedules/nightly"), ("PATCH", "/v1/schedules/nightly"),
                         ("DELETE", "/v1/schedules/nightly"),
                         ("POST", "/v1/schedules/nightly/trigger")):
        response = api.request(method, path, headers=headers, json=NIGHTLY)
        assert response.status_code == 401, (method, path)
        assert error_of(response)["code"] == "unauthorized"


def test_the_schema_documents_the_routes_and_their_errors(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    paths = schema["paths"]
    assert set(paths["/v1/schedules"]) == {"get", "post"}
    assert set(paths["/v1/schedules/{name}"]) == {"get", "patch", "delete"}
    assert set(paths["/v1/schedules/{name}/trigger"]) == {"post"}
    assert {"201", "401", "409", "422"} <= set(paths["/v1/schedules"]["post"]["responses"])
    assert {"204", "401", "404"} <= set(paths["/v1/schedules/{name}"]["delete"]["responses"])
    patch = schema["components"]["schemas"]["SchedulePatch"]["properties"]
    assert "anyOf" not in patch["timezone"]  # not nullable
    job_in = schema["components"]["schemas"]["JobIn"]["properties"]
    template = schema["components"]["schemas"]["JobTemplateIn"]["properties"]
    assert set(job_in) - set(template) == {"idempotency_key"}


@pytest.mark.parametrize("name", [".", "..", "a/b", ""])
def test_the_client_refuses_names_that_would_reach_another_route(name: str) -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(200, json={"items": []})

    with Client("http://api", "t", transport=httpx.MockTransport(handler)) as client:
        for call in (client.get_schedule, client.pause_schedule, client.trigger_schedule,
                     client.delete_schedule):
            with pytest.raises(ClientError, match="is not a schedule name"):
                call(name)
    assert sent == []
