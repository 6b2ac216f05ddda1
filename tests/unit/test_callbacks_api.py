"""``/v1/callbacks`` and ``/v1/deliveries``: endpoints, secrets shown once, the delivery log
and replay, through the real app on a real SQLite store; and the Python client's methods."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from fastapi.testclient import TestClient

from orchestrator.adapters.http.guard import NetworkGuard, static_resolver
from orchestrator.api.schemas import EventTypeName
from orchestrator.bootstrap import Container
from orchestrator.client import Client, ClientError
from orchestrator.domain.events import DEFAULT_EVENT_TYPES, EVENT_TYPES
from orchestrator.domain.ids import new_id
from orchestrator.domain.records import Deliver, DeliveryAttempt, NewDelivery
from orchestrator.testing import RecordingScheduler
from tests.unit.api_support import api_client, error_of, make_container, new_token

HOOK = "https://receiver.example.com/hook"
PUBLIC_IP_HOOK = "https://93.184.216.34/hook"
RESOLVES = {"receiver.example.com": ["93.184.216.34"], "internal.example.com": ["10.0.0.5"]}


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    container = make_container(tmp_path)
    # The guard as production has it, over a fixed table instead of DNS.
    container.deps.url_guard = NetworkGuard(resolver=static_resolver(RESOLVES))
    yield container
    container.close()


@pytest.fixture
def api(container: Container) -> Iterator[TestClient]:
    with api_client(container) as client:
        yield client


def epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339).timestamp()


def add(api: TestClient, **fields: Any) -> dict[str, Any]:
    created = api.post("/v1/callbacks", json={"url": HOOK, **fields})
    assert created.status_code == 201, created.text
    return created.json()  # type: ignore[no-any-return]


def add_deliveries(container: Container, endpoint_id: str | None, count: int, *,
                   start: float, step: float = 60.0,
                   event_type: str = "job.completed") -> list[str]:
    """``count`` deliveries to the endpoint, created ``step`` seconds apart from ``start``;
    their ids, oldest first."""
    ids = []
    for n in range(count):
        at = start + n * step
        delivery = NewDelivery(id=new_id("msg", at), job_id=f"job_{n}", event_type=event_type,
                               url=HOOK, endpoint_id=endpoint_id, payload=b'{"n": %d}' % n,
                               next_attempt_at=at)
        container.store.add_deliveries([delivery], at)
        ids.append(delivery.id)
    return ids


def fail_delivery(container: Container, delivery_id: str, *, attempts: int = 2) -> None:
    """Record failed attempts until it is given up (failed)."""
    for number in range(1, attempts + 1):
        last = number == attempts
        assert container.store.record_delivery_attempt(
            DeliveryAttempt(delivery_id, number, time.time(), 503, 0.0123, "HTTP 503"),
            status="failed" if last else "pending",
            next_attempt_at=None if last else time.time() + 300)


def succeed_delivery(container: Container, delivery_id: str) -> None:
    assert container.store.record_delivery_attempt(
        DeliveryAttempt(delivery_id, 1, time.time(), 200, 0.05, None),
        status="succeeded", next_attempt_at=None)


# endpoints ----------------------------------------------------------------------------------

def test_create_shows_the_secret_once(api: TestClient) -> None:
    endpoint = add(api)
    secret = endpoint.pop("secret")
    assert secret.startswith("whsec_") and len(secret) > 20
    assert endpoint["id"].startswith("ep_") and endpoint["url"] == HOOK
    assert endpoint["event_types"] == list(DEFAULT_EVENT_TYPES)
    assert (endpoint["workflows"], endpoint["labels"], endpoint["description"]) == ([], {}, None)
    assert (endpoint["enabled"], endpoint["disabled_reason"], endpoint["failing_since"]) == (
        True, None, None)
    assert endpoint["secret_rotating_until"] is None
    assert epoch(endpoint["created_at"]) == pytest.approx(time.time(), abs=60)

    shown = api.get(f"/v1/callbacks/{endpoint['id']}")
    assert shown.status_code == 200 and shown.json() == endpoint
    listed = api.get("/v1/callbacks")
    assert listed.status_code == 200 and listed.json() == {"items": [endpoint]}
    for response in (shown, listed):
        assert secret not in response.text and "secret\"" not in response.text


def test_create_with_events_and_filters(api: TestClient) -> None:
    endpoint = add(api, url=PUBLIC_IP_HOOK,
                   event_types=["job.failed", "job.started", "job.failed"],
                   workflows=["sandbox/echo", "cw/x"], labels={"team": "growth"},
                   description="growth's alerts")
    assert endpoint["url"] == PUBLIC_IP_HOOK
    assert endpoint["event_types"] == ["job.failed", "job.started"]  # once each, in order
    assert endpoint["workflows"] == ["sandbox/echo", "cw/x"]
    assert endpoint["labels"] == {"team": "growth"}
    assert endpoint["description"] == "growth's alerts"
    null_events = add(api, event_types=None)
    assert null_events["event_types"] == list(DEFAULT_EVENT_TYPES)
    every = add(api, event_types=list(EVENT_TYPES))
    assert every["event_types"] == list(EVENT_TYPES)
    assert len(api.get("/v1/callbacks").json()["items"]) == 3


@pytest.mark.parametrize(("body", "says"), [
    ({"event_types": ["job.finished"]}, "job.started"),
    ({"event_types": ["job.completed", "job.nope"]}, "batch.completed"),
    ({"event_types": []}, "event_types is empty; choose from job.started"),
    ({"event_types": "job.completed"}, "event_types"),
    ({"event_types": [1]}, "event_types[0]"),
    ({"workflows": ["nope/echo"]}, "configured: cw, sandbox"),
    ({"workflows": ["echo"]}, "not PROVIDER/WORKFLOW"),
    ({"workflows": "sandbox/echo"}, "workflows"),
    ({"workflows": ["sandbox/e\x00"]}, "NUL"),
    ({"labels": ["team"]}, "labels"),
    ({"labels": {"team": 1}}, "labels.team"),
    ({"labels": {"team": "a\x00"}}, "NUL"),
    ({"labels": {f"k{n}": "v" for n in range(51)}}, "labels"),
    ({"description": "x" * 501}, "description"),
    ({"description": "a\x00b"}, "NUL"),
    ({"description": 5}, "description"),
    ({"url": 5}, "url"),
    ({"url": None}, "url"),
    ({"url": ""}, "url"),
    ({"url": "ftp://receiver.example.com/x"}, "http:// or https://"),
    ({"url": "https://" + "x" * 2000}, "url"),
    ({"url": "https://exa mple.com/"}, "whitespace"),
    ({"url": "http://127.0.0.1:9000/hook"}, "loopback"),
    ({"url": "https://10.1.2.3/hook"}, "private"),
    ({"url": "https://internal.example.com/hook"}, "private"),
    ({"url": "http://169.254.169.254/latest"}, "metadata"),
    ({"url": "http://10.0.0.1/"}, "private"),
    ({"url": "https://alice:pw@receiver.example.com/hook"}, "credentials"),
    ({"url": "http://[::ffff:127.0.0.1]/"}, "IPv4-mapped form of 127.0.0.1"),
    ({"url": "http://0x7f000001/"}, "loopback"),
    ({"url": "http://100.64.0.1/"}, "100.64"),
    ({"url": "https://unknown.example.org/hook"}, "cannot resolve host"),
    ({"secret": "whsec_mine"}, "secret"),
    ({"enabled": False}, "enabled"),
])
def test_invalid_endpoints_are_422(api: TestClient, container: Container,
                                   body: dict[str, Any], says: str) -> None:
    response = api.post("/v1/callbacks", content=json.dumps({"url": HOOK, **body}),
                        headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert says in error_of(response)["message"], error_of(response)
    assert api.get("/v1/callbacks").json() == {"items": []}


def test_an_unknown_event_type_names_the_allowed_ones(api: TestClient) -> None:
    response = api.post("/v1/callbacks", json={"url": HOOK, "event_types": ["job.done"]})
    message = error_of(response)["message"]
    assert response.status_code == 422 and all(event in message for event in EVENT_TYPES)


@pytest.mark.parametrize("content", [b'{"url": ', b"[]", b"null", b'"x"', b"",
                                     b'{"url": "https://93.184.216.34/\\ud800"}',
                                     b'{"url": "https://93.184.216.34/", "labels": '
                                     b'{"\\ud800": "v"}}',
                                     b'{"url": "https://93.184.216.34/", "description": NaN}'])
def test_malformed_bodies_are_400_or_422(api: TestClient, content: bytes) -> None:
    endpoint = add(api)
    for method, path in (("POST", "/v1/callbacks"), ("PATCH", f"/v1/callbacks/{endpoint['id']}"),
                         ("POST", f"/v1/callbacks/{endpoint['id']}/replay")):
        response = api.request(method, path, content=content,
                               headers={"content-type": "application/json"})
        assert response.status_code in (400, 422), (method, path, response.text)
        error_of(response)
    assert len(api.get("/v1/callbacks").json()["items"]) == 1


def test_patch_changes_only_what_is_sent(api: TestClient) -> None:
    created = add(api, labels={"team": "x"}, description="first")
    created.pop("secret")
    path = f"/v1/callbacks/{created['id']}"

    changed = api.patch(path, json={"event_types": ["job.failed"]})
    assert changed.status_code == 200, changed.text
    assert changed.json()["event_types"] == ["job.failed"]
    assert {k: v for k, v in changed.json().items() if k not in ("event_types", "updated_at")} \
        == {k: v for k, v in created.items() if k not in ("event_types", "updated_at")}

    moved = api.patch(path, json={"url": PUBLIC_IP_HOOK, "workflows": ["sandbox/echo"],
                                  "labels": {}, "description": None}).json()
    assert (moved["url"], moved["workflows"], moved["labels"], moved["description"]) == (
        PUBLIC_IP_HOOK, ["sandbox/echo"], {}, None)
    assert api.get(path).json() == moved
    unchanged = api.patch(path, json={})
    assert unchanged.status_code == 200
    assert {**unchanged.json(), "updated_at": None} == {**moved, "updated_at": None}


def test_disable_and_enable(api: TestClient, container: Container) -> None:
    endpoint = add(api)
    path = f"/v1/callbacks/{endpoint['id']}"
    disabled = api.patch(path, json={"enabled": False}).json()
    assert disabled["enabled"] is False and disabled["disabled_reason"] == "disabled by request"
    # As the delivery service disables one that fails for days:
    assert container.deps.endpoints is not None
    container.deps.endpoints.update_endpoint(endpoint["id"], {
        "disabled_reason": "every attempt failed for 5.0 days", "failing_since": 1.7e9},
        time.time())
    shown = api.get(path).json()
    assert shown["disabled_reason"] == "every attempt failed for 5.0 days"
    assert shown["failing_since"] == "2023-11-14T22:13:20Z"
    enabled = api.patch(path, json={"enabled": True}).json()
    assert (enabled["enabled"], enabled["disabled_reason"], enabled["failing_since"]) == (
        True, None, None)


@pytest.mark.parametrize(("change", "says"), [
    ({"url": None}, "url"), ({"event_types": None}, "event_types"),
    ({"workflows": None}, "workflows"), ({"labels": None}, "labels"),
    ({"enabled": None}, "enabled"), ({"enabled": "maybe"}, "enabled"),
    ({"event_types": ["job.gone"]}, "'job.started'"),
    ({"event_types": []}, "event_types is empty"),
    ({"url": "http://10.0.0.1/"}, "private"),
    ({"workflows": ["nope/x"]}, "configured"),
    ({"secret": "whsec_x"}, "secret"),
    ({"id": "ep_other"}, "id"),
])
def test_invalid_patches_are_422_and_change_nothing(api: TestClient, change: dict[str, Any],
                                                     says: str) -> None:
    endpoint = add(api)
    endpoint.pop("secret")
    response = api.patch(f"/v1/callbacks/{endpoint['id']}", json=change)
    assert response.status_code == 422, response.text
    assert says in error_of(response)["message"]
    assert api.get(f"/v1/callbacks/{endpoint['id']}").json() == endpoint


def test_delete(api: TestClient) -> None:
    endpoint = add(api)
    path = f"/v1/callbacks/{endpoint['id']}"
    deleted = api.delete(path)
    assert deleted.status_code == 204 and deleted.content == b""
    assert api.get(path).status_code == 404
    assert api.get("/v1/callbacks").json() == {"items": []}
    assert api.delete(path).status_code == 404


def test_rotate_secret(api: TestClient, container: Container) -> None:
    endpoint = add(api)
    path = f"/v1/callbacks/{endpoint['id']}"
    rotated = api.post(f"{path}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["secret"].startswith("whsec_") and new["secret"] != endpoint["secret"]
    until = epoch(new["secret_rotating_until"])
    assert until == pytest.approx(time.time() + 86_400, abs=60)
    shown = api.get(path)
    assert shown.json()["secret_rotating_until"] == new["secret_rotating_until"]
    assert new["secret"] not in shown.text and endpoint["secret"] not in shown.text
    assert container.deps.endpoints is not None
    stored = container.deps.endpoints.get_endpoint(endpoint["id"])
    assert stored is not None
    assert stored.signing_secrets(time.time()) == (new["secret"], endpoint["secret"])
    # once the overlap has passed, only the new one signs, and the resource says so
    container.deps.endpoints.update_endpoint(endpoint["id"], {"previous_until": time.time() - 1},
                                             time.time())
    assert api.get(path).json()["secret_rotating_until"] is None


def test_without_a_signing_secret_endpoints_are_refused(tmp_path: Path) -> None:
    container = make_container(tmp_path, callbacks={})
    try:
        with api_client(container) as api:
            for method, path in (("POST", "/v1/callbacks"), ("GET", "/v1/callbacks"),
                                 ("GET", "/v1/callbacks/ep_x")):
                response = api.request(method, path, json={"url": HOOK})
                assert response.status_code == 422, (method, path)
                assert error_of(response)["code"] == "callbacks_not_configured"
                assert "[callbacks].signing_secret" in error_of(response)["message"]
    finally:
        container.close()


# deliveries ---------------------------------------------------------------------------------

def test_the_delivery_log_pages_newest_first(api: TestClient, container: Container) -> None:
    endpoint = add(api)
    other = add(api)
    t0 = time.time() - 3600
    ids = add_deliveries(container, endpoint["id"], 5, start=t0)
    add_deliveries(container, other["id"], 2, start=t0)
    fail_delivery(container, ids[1])
    succeed_delivery(container, ids[3])
    path = f"/v1/callbacks/{endpoint['id']}/deliveries"

    everything = api.get(path)
    assert everything.status_code == 200, everything.text
    assert [d["id"] for d in everything.json()["items"]] == ids[::-1]
    assert everything.json()["next_cursor"] is None

    pages: list[list[str]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = api.get(path, params=params).json()
        pages.append([d["id"] for d in page["items"]])
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    assert pages == [ids[4:2:-1], ids[2:0:-1], ids[:1]]

    failed = api.get(path, params={"status": "failed"}).json()["items"]
    assert [d["id"] for d in failed] == [ids[1]]
    assert {k: failed[0][k] for k in ("status", "attempts", "last_status_code", "last_error",
                                      "next_attempt_at", "delivered_at", "endpoint_id",
                                      "job_id", "event_type", "url")} == {
        "status": "failed", "attempts": 2, "last_status_code": 503, "last_error": "HTTP 503",
        "next_attempt_at": None, "delivered_at": None, "endpoint_id": endpoint["id"],
        "job_id": "job_1", "event_type": "job.completed", "url": HOOK}
    assert "attempt_log" not in failed[0]  # the list is one query: the attempts are per id
    succeeded = api.get(path, params={"status": "succeeded"}).json()["items"]
    assert [d["id"] for d in succeeded] == [ids[3]] and succeeded[0]["delivered_at"]
    pending = api.get(path, params={"status": "pending"}).json()["items"]
    assert [d["id"] for d in pending] == [ids[4], ids[2], ids[0]]
    assert epoch(pending[0]["next_attempt_at"]) == pytest.approx(t0 + 240, abs=1)

    since = datetime.fromtimestamp(t0 + 90, UTC).isoformat()
    recent = api.get(path, params={"since": since}).json()["items"]
    assert [d["id"] for d in recent] == [ids[4], ids[3], ids[2]]
    india = timezone(timedelta(hours=5, minutes=30))
    offset = api.get(path, params={"since": datetime.fromtimestamp(t0 + 90, india).isoformat()})
    assert "+05:30" in str(offset.url) or "%2B05%3A30" in str(offset.url)
    assert offset.json()["items"] == recent


@pytest.mark.parametrize("params", [
    {"status": "lost"}, {"since": "yesterday"}, {"since": "2024-06-01T00:00:00"},
    {"since": "2024-13-01T00:00:00Z"}, {"since": "2024-06-01T00:00:00\x00Z"},
    {"limit": 0}, {"limit": 501}, {"limit": "x"}, {"cursor": "a b"}, {"cursor": "x" * 65},
])
def test_bad_log_queries_are_422(api: TestClient, params: dict[str, Any]) -> None:
    endpoint = add(api)
    response = api.get(f"/v1/callbacks/{endpoint['id']}/deliveries", params=params)
    assert response.status_code == 422, response.text
    assert next(iter(params)) in error_of(response)["message"]


def test_one_delivery_with_its_attempt_log(api: TestClient, container: Container) -> None:
    endpoint = add(api)
    [delivery_id] = add_deliveries(container, endpoint["id"], 1, start=time.time())
    fresh = api.get(f"/v1/deliveries/{delivery_id}").json()
    assert fresh["status"] == "pending" and fresh["attempt_log"] == []
    fail_delivery(container, delivery_id, attempts=3)
    shown = api.get(f"/v1/deliveries/{delivery_id}")
    assert shown.status_code == 200, shown.text
    delivery = shown.json()
    assert delivery["id"] == delivery_id and delivery["status"] == "failed"
    assert delivery["attempts"] == 3
    log = delivery["attempt_log"]
    assert [a["number"] for a in log] == [1, 2, 3]
    assert log[0]["status_code"] == 503 and log[0]["error"] == "HTTP 503"
    assert log[0]["latency_ms"] == pytest.approx(12.3)
    assert epoch(log[0]["at"]) == pytest.approx(time.time(), abs=60)
    listed = api.get(f"/v1/callbacks/{endpoint['id']}/deliveries").json()["items"]
    assert listed == [{k: v for k, v in delivery.items() if k != "attempt_log"}]


def test_a_jobs_own_callback_delivery_is_readable_too(api: TestClient,
                                                      container: Container) -> None:
    [delivery_id] = add_deliveries(container, None, 1, start=time.time())
    delivery = api.get(f"/v1/deliveries/{delivery_id}").json()
    assert delivery["endpoint_id"] is None and delivery["url"] == HOOK


def test_replay_one_delivery(api: TestClient, container: Container) -> None:
    endpoint = add(api)
    [delivery_id] = add_deliveries(container, endpoint["id"], 1, start=time.time() - 60)
    fail_delivery(container, delivery_id)
    assert isinstance(container.scheduler, RecordingScheduler)
    container.scheduler.take()

    replayed = api.post(f"/v1/deliveries/{delivery_id}/replay")
    assert replayed.status_code == 202, replayed.text
    delivery = replayed.json()
    assert delivery["id"] == delivery_id and delivery["status"] == "pending"
    assert delivery["attempts"] == 2 and len(delivery["attempt_log"]) == 2  # kept
    assert epoch(delivery["next_attempt_at"]) == pytest.approx(time.time(), abs=60)
    assert container.scheduler.take() == [Deliver(delivery_id)]
    assert api.get(f"/v1/deliveries/{delivery_id}").json() == delivery


def test_replay_an_endpoints_failed_deliveries_since(api: TestClient,
                                                     container: Container) -> None:
    endpoint = add(api)
    other = add(api)
    t0 = time.time() - 7200
    ids = add_deliveries(container, endpoint["id"], 5, start=t0, step=600)
    [elsewhere] = add_deliveries(container, other["id"], 1, start=t0 + 3000)
    for delivery_id in (ids[0], ids[2], ids[4], elsewhere):
        fail_delivery(container, delivery_id)
    succeed_delivery(container, ids[3])
    assert isinstance(container.scheduler, RecordingScheduler)
    container.scheduler.take()

    since = datetime.fromtimestamp(t0 + 600, UTC).isoformat().replace("+00:00", "Z")
    response = api.post(f"/v1/callbacks/{endpoint['id']}/replay", json={"since": since})
    assert response.status_code == 202, response.text
    result = response.json()
    assert result["replayed"] == 2 and sorted(result["delivery_ids"]) == sorted([ids[2], ids[4]])
    assert sorted(a.delivery_id for a in container.scheduler.take()  # type: ignore[union-attr]
                  ) == sorted([ids[2], ids[4]])
    status = {d["id"]: d["status"] for d in api.get(
        f"/v1/callbacks/{endpoint['id']}/deliveries").json()["items"]}
    assert status == {ids[0]: "failed", ids[1]: "pending", ids[2]: "pending",
                      ids[3]: "succeeded", ids[4]: "pending"}
    assert api.get(f"/v1/deliveries/{elsewhere}").json()["status"] == "failed"

    again = api.post(f"/v1/callbacks/{endpoint['id']}/replay", json={"since": since}).json()
    assert again == {"replayed": 0, "delivery_ids": []}


@pytest.mark.parametrize("body", [{}, {"since": None}, {"since": "2h"},
                                  {"since": "2024-06-01T00:00:00"}, {"since": [1]},
                                  {"since": "2024-06-01T00:00:00Z", "status": "failed"}])
def test_bad_replay_bodies_are_422(api: TestClient, body: dict[str, Any]) -> None:
    endpoint = add(api)
    response = api.post(f"/v1/callbacks/{endpoint['id']}/replay", json=body)
    assert response.status_code == 422, response.text
    error_of(response)


def test_a_removed_endpoints_log_stays_readable(api: TestClient, container: Container) -> None:
    endpoint = add(api)
    ids = add_deliveries(container, endpoint["id"], 2, start=time.time() - 60)
    assert api.delete(f"/v1/callbacks/{endpoint['id']}").status_code == 204
    listed = api.get(f"/v1/callbacks/{endpoint['id']}/deliveries")
    assert listed.status_code == 200 and [d["id"] for d in listed.json()["items"]] == ids[::-1]
    assert api.get(f"/v1/deliveries/{ids[0]}").status_code == 200
    assert api.post(f"/v1/callbacks/{endpoint['id']}/replay",
                    json={"since": "2024-01-01T00:00:00Z"}).status_code == 404


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/callbacks/ep_nope"), ("PATCH", "/v1/callbacks/ep_nope"),
    ("DELETE", "/v1/callbacks/ep_nope"), ("POST", "/v1/callbacks/ep_nope/rotate-secret"),
    ("GET", "/v1/callbacks/ep_nope/deliveries"), ("POST", "/v1/callbacks/ep_nope/replay"),
    ("GET", "/v1/deliveries/msg_nope"), ("POST", "/v1/deliveries/msg_nope/replay")])
def test_unknown_ids_are_404(api: TestClient, method: str, path: str) -> None:
    body = {"since": "2024-01-01T00:00:00Z"} if path.endswith("/replay") else {}
    response = api.request(method, path, json=body if method in ("PATCH", "POST") else None)
    assert response.status_code == 404, response.text
    assert error_of(response)["code"] == "not_found" and "_nope'" in error_of(response)["message"]


@pytest.mark.parametrize("resource_id", ["a%20b", "a%00b", "x" * 65, "a%0A", "a.b"])
def test_bad_ids_in_the_path_are_422(api: TestClient, resource_id: str) -> None:
    for method, path in (("GET", "/v1/callbacks/{}"), ("PATCH", "/v1/callbacks/{}"),
                         ("DELETE", "/v1/callbacks/{}"), ("POST", "/v1/callbacks/{}/rotate-secret"),
                         ("GET", "/v1/callbacks/{}/deliveries"),
                         ("POST", "/v1/callbacks/{}/replay"), ("GET", "/v1/deliveries/{}"),
                         ("POST", "/v1/deliveries/{}/replay")):
        body = {"since": "2024-01-01T00:00:00Z"} if path.endswith("/replay") else {}
        response = api.request(method, path.format(resource_id),
                               json=body if method in ("PATCH", "POST") else None)
        assert response.status_code == 422, (method, path, response.text)
        error_of(response)


ROUTES = (("POST", "/v1/callbacks"), ("GET", "/v1/callbacks"), ("GET", "/v1/callbacks/{ep}"),
          ("PATCH", "/v1/callbacks/{ep}"), ("DELETE", "/v1/callbacks/{ep}"),
          ("POST", "/v1/callbacks/{ep}/rotate-secret"),
          ("GET", "/v1/callbacks/{ep}/deliveries"), ("POST", "/v1/callbacks/{ep}/replay"),
          ("GET", "/v1/deliveries/{msg}"), ("POST", "/v1/deliveries/{msg}/replay"))


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer orch_wrong"}])
def test_every_route_needs_a_token(api: TestClient, container: Container,
                                   headers: dict[str, str]) -> None:
    endpoint = add(api)
    [delivery_id] = add_deliveries(container, endpoint["id"], 1, start=time.time())
    api.headers.pop("Authorization")
    for method, path in ROUTES:
        url = path.format(ep=endpoint["id"], msg=delivery_id)
        response = api.request(method, url, headers=headers,
                               json={"url": HOOK} if method in ("POST", "PATCH") else None)
        assert response.status_code == 401, (method, path)
        assert error_of(response)["code"] == "unauthorized"
    assert len(container.deps.endpoints.list_endpoints()) == 1  # type: ignore[union-attr]


def test_the_schema_documents_the_routes_and_their_errors(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    paths = schema["paths"]
    assert set(paths["/v1/callbacks"]) == {"get", "post"}
    assert set(paths["/v1/callbacks/{endpoint_id}"]) == {"get", "patch", "delete"}
    for path in ("/v1/callbacks/{endpoint_id}/rotate-secret",
                 "/v1/callbacks/{endpoint_id}/replay", "/v1/deliveries/{delivery_id}/replay"):
        assert set(paths[path]) == {"post"}, path
    for path in ("/v1/callbacks/{endpoint_id}/deliveries", "/v1/deliveries/{delivery_id}"):
        assert set(paths[path]) == {"get"}, path
    for method, path in ROUTES:
        path = path.replace("{ep}", "{endpoint_id}").replace("{msg}", "{delivery_id}")
        responses = set(paths[path][method.lower()]["responses"])
        assert {"401", "404", "422"} <= responses, (method, path)
    assert {"201", "409"} <= set(paths["/v1/callbacks"]["post"]["responses"])
    assert "202" in paths["/v1/deliveries/{delivery_id}/replay"]["post"]["responses"]
    schemas = schema["components"]["schemas"]
    assert "secret" in schemas["CallbackSecretOut"]["properties"]
    assert "secret" not in schemas["CallbackOut"]["properties"]
    assert "anyOf" not in schemas["CallbackPatch"]["properties"]["url"]  # not nullable
    assert "attempt_log" in schemas["DeliveryDetailOut"]["properties"]


def test_the_schema_knows_every_event_type() -> None:
    assert get_args(EventTypeName) == EVENT_TYPES


# the Python client --------------------------------------------------------------------------

def test_the_client_drives_every_route(api: TestClient, container: Container) -> None:
    token = new_token(container, "client")
    with Client("http://testserver", token, transport=api._transport) as client:
        created = client.create_callback(HOOK, event_types=["job.failed"],
                                         workflows=["sandbox/echo"], labels={"t": "x"},
                                         description="d")
        assert created["secret"].startswith("whsec_")
        endpoint_id = created["id"]
        assert [e["id"] for e in client.list_callbacks()] == [endpoint_id]
        assert "secret" not in client.get_callback(endpoint_id)
        assert client.update_callback(endpoint_id, description="e")["description"] == "e"
        assert client.disable_callback(endpoint_id)["enabled"] is False
        assert client.enable_callback(endpoint_id)["enabled"] is True
        rotated = client.rotate_callback_secret(endpoint_id)
        assert rotated["secret"] != created["secret"] and rotated["secret_rotating_until"]

        t0 = time.time() - 3600
        ids = add_deliveries(container, endpoint_id, 5, start=t0)
        for delivery_id in ids[:3]:
            fail_delivery(container, delivery_id)
        assert [d["id"] for d in client.deliveries(endpoint_id, page_size=2)] == ids[::-1]
        assert [d["id"] for d in client.deliveries(endpoint_id, status="failed")] == \
            ids[2::-1]
        assert len(list(client.deliveries(endpoint_id, page_size=2, limit=3))) == 3
        since = datetime.fromtimestamp(t0 + 30, UTC)
        assert [d["id"] for d in client.deliveries(endpoint_id, since=since)] == \
            ids[:0:-1]
        assert len(client.get_delivery(ids[0])["attempt_log"]) == 2
        assert client.replay_delivery(ids[0])["status"] == "pending"
        replayed = client.replay_failed(endpoint_id, since)
        assert replayed["replayed"] == 2 and sorted(replayed["delivery_ids"]) == ids[1:3]
        assert client.replay_failed(endpoint_id, since.isoformat())["replayed"] == 0

        with pytest.raises(ClientError) as refused:
            client.create_callback(HOOK, event_types=["job.done"])
        assert refused.value.status == 422 and "job.started" in refused.value.message
        with pytest.raises(ClientError, match="time zone"):
            client.replay_failed(endpoint_id, datetime.now())
        client.delete_callback(endpoint_id)
        with pytest.raises(ClientError) as gone:
            client.get_callback(endpoint_id)
        assert gone.value.status == 404 and gone.value.code == "not_found"


@pytest.mark.parametrize("resource_id", [".", "..", "a/b", "", "a?b"])
def test_the_client_refuses_ids_that_would_reach_another_route(resource_id: str) -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(200, json={"items": []})

    with Client("http://api", "t", transport=httpx.MockTransport(handler)) as client:
        for call in (client.get_callback, client.delete_callback, client.enable_callback,
                     client.rotate_callback_secret, client.get_delivery,
                     client.replay_delivery):
            with pytest.raises(ClientError, match="is not an id"):
                call(resource_id)
        with pytest.raises(ClientError, match="is not an id"):
            list(client.deliveries(resource_id))
    assert sent == []


@pytest.mark.parametrize("url", ["http://10.0.0.1/", "http://[::ffff:127.0.0.1]/",
                                 "http://0x7f000001/", "https://internal.example.com/hook"])
def test_a_job_or_batch_callback_url_to_a_private_address_is_refused(
        api: TestClient, url: str) -> None:
    job = api.post("/v1/jobs", json={"workflow": "sandbox/echo", "callback_url": url})
    assert job.status_code == 422, job.text
    assert "callbacks may only go to public addresses" in error_of(job)["message"]
    batch = api.post("/v1/batches", json={"jobs": [{"workflow": "sandbox/echo"}],
                                          "callback_url": url})
    assert batch.status_code == 422, batch.text
    assert api.get("/v1/jobs").json()["items"] == []
