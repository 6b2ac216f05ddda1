"""Fast tests of the sandbox app in-process, on a hand-driven clock."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator

import pytest

with warnings.catch_warnings():
    # Starlette 1.x asks for ``httpx2`` under its test client but works with httpx, which
    # is what this project has; the warning is about the choice of package, not our code.
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

from orchestrator.sandbox import SandboxSettings, create_app

CORDAGE = {"Authorization": "Bearer sandbox-key"}
CODEWORDS = {"Authorization": "sandbox-key"}


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(clock: Clock) -> Iterator[TestClient]:
    app = create_app(SandboxSettings(default_duration_s=1.0, seed=7), clock=clock)
    with TestClient(app) as test_client:
        yield test_client


def stats(client: TestClient) -> dict[str, object]:
    return client.get("/_sandbox/stats").json()  # type: ignore[no-any-return]


def test_every_cordage_answer_carries_its_rate_limit_headers(client: TestClient) -> None:
    started = client.post("/cordage/echo/trigger", json={"a": 1}, headers=CORDAGE)
    assert started.status_code == 200
    assert started.headers["X-RateLimit-Limit"] == "60"
    assert started.headers["X-RateLimit-Remaining"] == "59"
    read = client.get(f"/cordage/echo/runs/{started.json()['run_id']}", headers=CORDAGE)
    assert read.headers["X-RateLimit-Limit"] == "120"
    refused = client.get("/cordage/echo/runs", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401
    assert refused.headers["X-RateLimit-Remaining"] == "119"  # a refusal spends nothing
    assert "nope" not in refused.text


def test_the_limit_refuses_with_retry_after_and_counts_early_requests(
    client: TestClient, clock: Clock
) -> None:
    client.put("/_sandbox/settings", json={"rate_limits": {"cordage_trigger": "2/10s"}})
    for _ in range(2):
        assert client.post("/cordage/echo/trigger", headers=CORDAGE).status_code == 200
    clock.t += 4.2
    refused = client.post("/cordage/echo/trigger", headers=CORDAGE)
    assert refused.status_code == 429
    assert refused.json() == {"error": "Rate limit exceeded.", "retry_after": 6}
    assert refused.headers["Retry-After"] == "6"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    clock.t += 5.0  # a second too soon: counted as early, and refused again
    again = client.post("/cordage/echo/trigger", headers=CORDAGE)
    assert (again.status_code, again.json()["retry_after"]) == (429, 1)
    assert stats(client)["early_requests"] == 1
    clock.t += 1.0  # as told: the window has room again
    assert client.post("/cordage/echo/trigger", headers=CORDAGE).status_code == 200
    counted = stats(client)
    assert counted["early_requests"] == 1
    assert counted["rate_limited"] == {"cordage_trigger": 2}
    assert counted["responses_429"] == 2


def test_a_provisioned_start_sent_twice_makes_one_run(client: TestClient) -> None:
    request_id = client.post("/codewords/provision-request", headers=CODEWORDS).json()["request_id"]
    headers = {**CODEWORDS, "X-Provisioned-Request-Id": request_id}
    answers = [
        client.post("/codewords/run_async/echo", json={"x": 1}, headers=headers).json()
        for _ in range(2)
    ]
    assert answers == [{"request_id": request_id}] * 2
    counted = stats(client)
    assert (counted["runs_started"], counted["duplicate_starts"]) == (1, 1)
    [run] = client.get("/_sandbox/runs").json()["runs"]
    assert (run["reservation"], run["start_requests"]) == (request_id, 2)
    unknown = {**CODEWORDS, "X-Provisioned-Request-Id": "req_never_provisioned"}
    assert client.post("/codewords/run_async/echo", headers=unknown).status_code == 400


def test_codewords_takes_the_key_raw_or_as_bearer(client: TestClient) -> None:
    for value in ("sandbox-key", "Bearer sandbox-key"):
        headers = {"Authorization": value}
        assert client.post("/codewords/provision-request", headers=headers).status_code == 200
    assert client.post("/codewords/provision-request").status_code == 401
    assert client.post("/cordage/echo/trigger", headers=CODEWORDS).status_code == 401


def test_result_is_408_until_done_then_the_record(client: TestClient, clock: Clock) -> None:
    started = client.post("/codewords/run_async/fail", json={"error": "nope"}, headers=CODEWORDS)
    request_id = started.json()["request_id"]
    assert client.get(f"/codewords/result/{request_id}", headers=CODEWORDS).status_code == 408
    clock.t += 1.0
    done = client.get(f"/codewords/result/{request_id}?timeout=0", headers=CODEWORDS)
    assert done.status_code == 200
    assert done.json()["responseStatus"] == 500
    assert done.json()["responseJson"] == {"error": "nope"}


def test_logs_resume_after_the_last_line_seen(client: TestClient, clock: Clock) -> None:
    started = client.post("/codewords/run_async/sleep", headers=CODEWORDS)
    url = f"/codewords/logs/{started.json()['request_id']}"
    clock.t += 0.6
    first = [json.loads(line) for line in client.get(url, headers=CODEWORDS).text.splitlines()]
    assert [line["message"] for line in first][1:] == ["25% done", "50% done"]
    clock.t += 0.5
    rest = client.get(url, params={"after": first[-1]["createdAt"]}, headers=CODEWORDS)
    assert [json.loads(line)["message"] for line in rest.text.splitlines()] == [
        "75% done",
        "completed",
    ]
    assert client.get(url, params={"after": "yesterday"}, headers=CODEWORDS).status_code == 400


def test_a_killed_cordage_run_is_cancelled(client: TestClient) -> None:
    run_id = client.post("/cordage/sleep/trigger", headers=CORDAGE).json()["run_id"]
    killed = client.post(f"/cordage/sleep/runs/{run_id}/kill", headers=CORDAGE)
    assert killed.json()["status"] == "cancelled"
    listed = client.get("/cordage/sleep/runs", headers=CORDAGE).json()["runs"]
    assert [(r["run_id"], r["status"]) for r in listed] == [(run_id, "cancelled")]


def test_uploaded_and_produced_files_are_served_until_expired(
    client: TestClient, clock: Clock
) -> None:
    uris = client.post("/codewords/file?filename=in.csv", headers=CODEWORDS).json()
    assert client.put(uris["upload_uri"], content=b"a,b\n1,2\n").status_code == 200
    assert client.get(uris["download_uri"]).content == b"a,b\n1,2\n"
    run_id = client.post("/cordage/files/trigger", json={"count": 1}, headers=CORDAGE).json()[
        "run_id"
    ]
    clock.t += 1.0
    [url] = client.get(f"/cordage/files/runs/{run_id}", headers=CORDAGE).json()["outputs"]
    assert client.get(url).text == f"sandbox file 1 of 1 from run {run_id}\n"
    file_id = url.rsplit("/", 1)[1]
    assert client.delete(f"/_sandbox/files/{file_id}").status_code == 204
    assert client.get(url).status_code == 404


def test_unknown_workflows_are_404(client: TestClient) -> None:
    missing = client.post("/cordage/nope/trigger", headers=CORDAGE)
    assert (missing.status_code, missing.json()) == (404, {"error": "Webhook not found"})
    assert client.post("/codewords/run_async/nope", headers=CODEWORDS).status_code == 404


def test_settings_merge_and_refuse_nonsense(client: TestClient) -> None:
    changed = client.put("/_sandbox/settings", json={"rate_limits": {"cordage_read": "5/second"}})
    assert changed.json()["rate_limits"]["cordage_read"] == "5/second"
    assert changed.json()["rate_limits"]["cordage_trigger"] == "60/minute"
    bad = client.put("/_sandbox/settings", json={"p_503": 2, "rate_limits": {"x": "1/s"}})
    assert bad.status_code == 422
    assert "p_503" in bad.json()["error"]
    assert "rate_limits.x" in bad.json()["error"]
    bad_rate = client.put("/_sandbox/settings", json={"rate_limits": {"cordage_read": "lots"}})
    assert bad_rate.status_code == 422
    assert "cordage_read" in bad_rate.json()["error"]
    reset = client.post("/_sandbox/reset?settings=true").json()
    assert reset["settings"]["rate_limits"]["cordage_read"] == "120/minute"


def test_flaky_follows_its_probability(client: TestClient, clock: Clock) -> None:
    ids = [
        client.post("/cordage/flaky/trigger", json={"p": p}, headers=CORDAGE).json()["run_id"]
        for p in (0.0, 1.0)
    ]
    clock.t += 1.0
    states = [client.get(f"/cordage/flaky/runs/{i}", headers=CORDAGE).json() for i in ids]
    assert [s["status"] for s in states] == ["completed", "failed"]
    assert "flaky" in states[1]["error"]


def test_injected_faults_are_counted_and_spurious_429s_set_a_wait(
    client: TestClient, clock: Clock
) -> None:
    client.put("/_sandbox/settings", json={"p_429": 1.0, "spurious_retry_after_s": 2})
    refused = client.post("/codewords/provision-request", headers=CODEWORDS)
    assert (refused.status_code, refused.json()["retry_after"]) == (429, 2)
    client.put("/_sandbox/settings", json={"p_429": 0.0, "p_503": 1.0})
    clock.t += 0.5  # past the in-flight allowance, still inside the 2 s wait: early
    assert client.post("/codewords/provision-request", headers=CODEWORDS).status_code == 503
    clock.t += 1.5
    client.put("/_sandbox/settings", json={"p_503": 0.0, "p_malformed": 1.0})
    started = client.post("/codewords/run_async/echo", headers=CODEWORDS).json()
    mangled = client.get(f"/codewords/request/{started['request_id']}", headers=CODEWORDS)
    with pytest.raises(ValueError):
        mangled.json()
    counted = stats(client)
    assert counted["injected"] == {"429": 1, "503": 1, "malformed": 1}
    assert counted["early_by_bucket"] == {"codewords_provision": 1}  # the 503'd one


def test_a_request_already_in_flight_when_a_429_went_out_is_not_early(
    client: TestClient, clock: Clock
) -> None:
    client.put("/_sandbox/settings", json={"p_429": 1.0, "spurious_retry_after_s": 2})
    client.post("/codewords/provision-request", headers=CODEWORDS)
    client.put("/_sandbox/settings", json={"p_429": 0.0})
    clock.t += 0.01  # sent before its sender could have read the 429
    client.post("/codewords/provision-request", headers=CODEWORDS)
    assert stats(client)["early_requests"] == 0
