"""The job events stream, file uploads, and the client and CLI commands that use them: the
API in process on SQLite, with fakes (or CodeWords on a ``SandboxServer``) as providers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from orchestrator.adapters.http.client import make_http_client
from orchestrator.adapters.providers.codewords import CodeWordsProvider
from orchestrator.adapters.store.migrate import upgrade
from orchestrator.api import events, files
from orchestrator.api.app import create_app
from orchestrator.bootstrap import Container, SystemClock
from orchestrator.cli import jobs as jobs_cli
from orchestrator.cli.main import app as cli_app
from orchestrator.client import Client, ClientError, parse_sse
from orchestrator.config import Settings
from orchestrator.domain.errors import Permanent, ProviderError, RateLimited, Transient
from orchestrator.domain.ids import new_id
from orchestrator.domain.job import Event, LaunchRequest
from orchestrator.domain.records import JobChange, NewJob
from orchestrator.ports import LogLine, Provider
from orchestrator.sandbox import SandboxServer, SandboxSettings
from orchestrator.services.tokens import create_token
from orchestrator.testing import FakeProvider, RecordingScheduler, StaticRegistry


class LogProvider(FakeProvider):
    """A fake ``LogSource``: yields the lines in ``available`` past ``after``; each call
    first raises the next of ``log_errors`` if any are queued."""

    def __init__(self, name: str = "logs") -> None:
        super().__init__(name)
        self.available: list[LogLine] = []
        self.log_errors: list[ProviderError] = []
        self.afters: list[str | None] = []

    def logs(self, run_id: str, *, after: str | None = None) -> Iterator[LogLine]:
        self.afters.append(after)
        if self.log_errors:
            raise self.log_errors.pop(0)
        yield from [line for line in list(self.available) if after is None or line.at > after]


class UploadProvider(FakeProvider):
    """A fake ``FileUploads``: records each upload, or raises the queued error."""

    def __init__(self, name: str = "files") -> None:
        super().__init__(name)
        self.uploaded: list[tuple[str, bytes, str | None]] = []
        self.upload_error: ProviderError | None = None

    def upload(self, filename: str, content: bytes, content_type: str | None = None) -> str:
        if self.upload_error is not None:
            raise self.upload_error
        self.uploaded.append((filename, content, content_type))
        return f"https://storage.example/{filename}"


class Registry(StaticRegistry):
    def close(self) -> None:  # the container closes its providers
        pass


def line(n: int) -> LogLine:
    at = f"2030-01-01T00:00:0{n}.000000Z"
    return LogLine(at=at, message=f"line {n}", fields={"createdAt": at, "level": "INFO"})


@pytest.fixture(autouse=True)
def fast_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"POLL_S": 0.05, "RECONNECT_S": 0.02, "MAX_RECONNECT_S": 0.1,
                        "DRAIN_S": 3.0}.items():
        monkeypatch.setattr(events, name, value)


@pytest.fixture
def providers() -> dict[str, Provider]:
    return {"logs": LogProvider(), "files": UploadProvider(), "plain": FakeProvider("plain")}


@pytest.fixture
def container(tmp_path: Path, providers: dict[str, Provider]) -> Iterator[Container]:
    settings = Settings.model_validate({
        "database": {"url": f"sqlite:///{tmp_path}/api.db"},
        "jobs": {"max_input_bytes": 2048}})
    container = Container(settings, scheduler=RecordingScheduler())
    container.__dict__["providers"] = Registry(providers)  # before anything builds the real
    upgrade(container.engine)
    yield container
    container.close()


@pytest.fixture
def api(container: Container) -> Iterator[TestClient]:
    token, _ = create_token("test", container.store, SystemClock())
    with TestClient(create_app(container.settings, container)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def add_job(container: Container, provider: str, *moves: tuple[Event, dict[str, Any]]) -> str:
    job_id = new_id("job")
    store = container.store
    store.add_job(NewJob(id=job_id, workflow=f"{provider}/echo", provider=provider,
                         inputs={}), time.time())
    for event, values in moves:
        assert store.move(JobChange(job_id, event, values=values), time.time()) is not None
    return job_id


RUNNING = ((Event.CLAIM, {"lease_until": time.time() + 60}), (Event.STARTED, {"run_id": "r1"}))
COMPLETE = (Event.COMPLETE, {"outputs": {"ok": True}})


def stream(api: TestClient, job_id: str, **headers: str) -> list[dict[str, Any]]:
    with api.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(parse_sse(response.iter_lines()))


def later(seconds: float, action: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()))
    thread.start()
    return thread


def complete(container: Container, job_id: str) -> Callable[[], object]:
    return lambda: container.store.move(JobChange(job_id, COMPLETE[0], values=COMPLETE[1]),
                                        time.time())


def kinds(received: list[dict[str, Any]]) -> list[str]:
    return [f"{e['event']}:{e['id'] or ''}" for e in received]


# events -----------------------------------------------------------------------------------


def test_an_ended_job_streams_its_history_then_end(api: TestClient,
                                                  container: Container) -> None:
    job_id = add_job(container, "plain", *RUNNING, COMPLETE)
    received = stream(api, job_id)
    assert kinds(received) == ["state:s1", "state:s2", "state:s3", "state:s4", "end:"]
    assert [e["data"]["status"] for e in received[:4]] == [
        "queued", "starting", "running", "completed"]
    assert received[2]["data"]["event"] == "started" and received[2]["data"]["attempt"] == 1
    assert received[0]["data"]["at"].endswith("Z") and received[-1]["data"]["status"] == "completed"


def test_logs_and_state_changes_interleave_until_the_job_ends(
        api: TestClient, container: Container, providers: dict[str, Any]) -> None:
    logs: LogProvider = providers["logs"]
    logs.available += [line(1), line(2)]
    job_id = add_job(container, "logs", *RUNNING)

    # A line written as the run ends must still be sent.
    thread = later(0.4, lambda: (logs.available.append(line(3)), complete(container, job_id)()))
    received = stream(api, job_id)
    thread.join()
    ids = kinds(received)
    assert ids[:5] == ["state:s1", "state:s2", "state:s3", f"log:l{line(1).at}",
                       f"log:l{line(2).at}"]
    assert set(ids[5:-1]) == {"state:s4", f"log:l{line(3).at}"} and ids[-1] == "end:"
    assert received[3]["data"] == {"at": line(1).at, "message": "line 1",
                                   "fields": {"createdAt": line(1).at, "level": "INFO"}}


def test_last_event_id_resumes_both_cursors(api: TestClient, container: Container,
                                            providers: dict[str, Any]) -> None:
    logs: LogProvider = providers["logs"]
    logs.available += [line(1), line(2)]
    job_id = add_job(container, "logs", *RUNNING, COMPLETE)
    received = stream(api, job_id, **{"Last-Event-ID": f"s3,l{line(1).at}"})
    assert kinds(received) == ["state:s4", f"log:l{line(2).at}", "end:"]
    assert logs.afters[0] == line(1).at
    assert kinds(stream(api, job_id, **{"Last-Event-ID": "s2"}))[:2] == ["state:s3",
                                                                         "state:s4"]


def test_unknown_job_is_404_a_bad_resume_id_400_and_a_token_needed(
        api: TestClient, container: Container) -> None:
    response = api.get("/v1/jobs/job_nope/events")
    assert response.status_code == 404 and "job_nope" in response.json()["error"]["message"]
    job_id = add_job(container, "plain")
    for bad in ("x1", "s", "s-1", "sabc", "s1,x"):
        response = api.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": bad})
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "invalid_last_event_id"
    api.headers.pop("Authorization")
    assert api.get(f"/v1/jobs/{job_id}/events").status_code == 401


def test_a_log_failure_is_a_warning_and_the_stream_goes_on(
        api: TestClient, container: Container, providers: dict[str, Any]) -> None:
    logs: LogProvider = providers["logs"]
    logs.available.append(line(1))
    logs.log_errors.append(Transient("logs: HTTP 503 server error"))
    job_id = add_job(container, "logs", *RUNNING)
    thread = later(0.5, complete(container, job_id))
    received = stream(api, job_id)
    thread.join()
    warning = next(e for e in received if e["event"] == "warning")
    assert "HTTP 503" in warning["data"]["message"] and warning["id"] is None
    assert f"log:l{line(1).at}" in kinds(received) and kinds(received)[-2:] == [
        "state:s4", "end:"]


def test_a_permanent_log_failure_is_reported_once(api: TestClient, container: Container,
                                                  providers: dict[str, Any]) -> None:
    providers["logs"].log_errors.append(Permanent("logs: not found (HTTP 404)"))
    job_id = add_job(container, "logs", *RUNNING)
    later(0.4, lambda: container.store.move(JobChange(job_id, Event.FAIL), time.time()))
    received = stream(api, job_id)
    warnings = [e["data"]["message"] for e in received if e["event"] == "warning"]
    assert len(warnings) == 1 and "no more log lines" in warnings[0]
    assert received[-1] == {"event": "end", "id": None, "data": {"status": "failed"}}


def test_an_ended_jobs_logs_are_tried_once(api: TestClient, container: Container,
                                           providers: dict[str, Any]) -> None:
    providers["logs"].log_errors.append(Transient("logs: HTTP 503 server error"))
    job_id = add_job(container, "logs", *RUNNING, COMPLETE)
    received = stream(api, job_id)
    assert kinds(received) == ["state:s1", "state:s2", "state:s3", "state:s4", "warning:",
                               "end:"]
    assert "no more log lines" in received[4]["data"]["message"]
    assert providers["logs"].afters == [None]


def test_a_request_is_bounded_and_keeps_the_connection_alive(
        api: TestClient, container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "MAX_STREAM_S", 0.6)
    monkeypatch.setattr(events, "HEARTBEAT_S", 0.1)
    job_id = add_job(container, "plain", *RUNNING)
    started = time.monotonic()
    with api.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        text = response.read().decode()
    assert time.monotonic() - started < 5
    assert ": keep-alive" in text and "event: end" not in text  # the client reconnects


def test_events_follow_a_real_codewords_run_on_the_sandbox(api: TestClient,
                                                           container: Container) -> None:
    with SandboxServer(SandboxSettings(default_duration_s=0.6)) as sandbox:
        http = make_http_client(timeout_s=5.0)
        provider = CodeWordsProvider("cw", f"{sandbox.url}/codewords",
                                     sandbox.settings.api_key, http)
        container.providers.__dict__["_providers"]["cw"] = provider
        run_id = provider.start(LaunchRequest("job", "echo", {}, provider.reserve("echo")))
        job_id = add_job(container, "cw", RUNNING[0], (Event.STARTED, {"run_id": run_id}))
        thread = later(1.0, complete(container, job_id))
        received = stream(api, job_id)
        thread.join()
        http.close()
    messages = [e["data"]["message"] for e in received if e["event"] == "log"]
    assert messages[0].startswith(f"run {run_id}") and messages[-1] == "completed"
    assert len(messages) == 5 and received[-1]["event"] == "end"


# files ------------------------------------------------------------------------------------


def upload(api: TestClient, content: Any, provider: str = "files",
           filename: str = "a.csv", **headers: str) -> httpx.Response:
    return api.post("/v1/files", params={"provider": provider, "filename": filename},
                    content=content, headers=headers)


def test_a_file_is_uploaded_and_its_url_returned(api: TestClient,
                                                providers: dict[str, Any]) -> None:
    big = b"x" * 200_000  # over the JSON body limit (2 KiB + 64 KiB): this path is exempt
    response = upload(api, big, **{"Content-Type": "text/csv"})
    assert response.status_code == 201
    assert response.json() == {"provider": "files", "filename": "a.csv", "size": 200_000,
                               "url": "https://storage.example/a.csv"}
    assert providers["files"].uploaded == [("a.csv", big, "text/csv")]
    assert api.post("/v1/jobs", content=b"x" * 200_000).status_code == 413  # not exempt


def test_file_size_is_limited_whether_declared_or_not(api: TestClient,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 10)
    declared = upload(api, b"x" * 11)
    chunked = upload(api, iter([b"x" * 6, b"x" * 6]))
    for response in (declared, chunked):
        assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    assert upload(api, b"x" * 10).status_code == 201


@pytest.mark.parametrize(("provider", "filename", "content", "code", "says"), [
    ("files", "a.csv", b"", "empty_file", "empty"),
    ("nope", "a.csv", b"x", "unknown_provider", "configured providers: logs, files, plain"),
    ("plain", "a.csv", b"x", "uploads_not_supported", "takes no file uploads"),
    ("files", "../a.csv", b"x", "invalid_filename", "plain file name"),
])
def test_bad_uploads_are_422(api: TestClient, providers: dict[str, Any], provider: str,
                             filename: str, content: bytes, code: str, says: str) -> None:
    response = upload(api, content, provider, filename)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code and says in response.json()["error"][
        "message"]
    assert providers["files"].uploaded == []


def test_provider_errors_are_502_or_429(api: TestClient, providers: dict[str, Any]) -> None:
    providers["files"].upload_error = Permanent("files: HTTP 400: bad name")
    response = upload(api, b"x")
    assert response.status_code == 502
    assert response.json()["error"] == {"code": "provider_error",
                                        "message": "files: HTTP 400: bad name"}
    providers["files"].upload_error = RateLimited("files: slow down (HTTP 429)", 2.5)
    response = upload(api, b"x")
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    assert response.json()["error"]["code"] == "rate_limited"


# client and CLI ---------------------------------------------------------------------------


CANCELLED = {"id": "job_1", "status": "cancelled",
             "cancellation": {"remote": "stopped", "message": "run killed"}}


def sse_body(*events_: tuple[str, str | None, object]) -> bytes:
    return "".join((f"id: {i}\n" if i else "") + f"event: {e}\ndata: {json.dumps(d)}\n\n"
                   for e, i, d in events_).encode()


def test_the_client_reconnects_with_both_cursors_until_end(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda _: None)
    seen: list[str | None] = []
    answers = [sse_body(("state", "s1", {"status": "queued"}), ("log", "l7", {"m": 1})),
               b": keep-alive\n\n" + sse_body(("state", "s2", {"status": "completed"}),
                                              ("end", None, {"status": "completed"}))]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("last-event-id"))
        return httpx.Response(200, content=answers[len(seen) - 1])

    with Client("http://api", "t", transport=httpx.MockTransport(handler)) as client:
        received = list(client.events("job_1", last_event_id="s0"))
    assert seen == ["s0", "s1,l7"]
    assert [(e["event"], e["id"]) for e in received] == [
        ("state", "s1"), ("log", "l7"), ("state", "s2"), ("end", None)]


def test_the_client_cancels_and_uploads_files_into_inputs(tmp_path: Path) -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path == "/v1/files":
            return httpx.Response(201, json={"url": f"https://s/{request.url.params['filename']}"})
        if request.url.path.endswith("/cancel"):
            if "ended" not in request.url.path:
                return httpx.Response(200, json=CANCELLED)
            return httpx.Response(409, json={"error": {"code": "conflict", "message": "ended"}})
        return httpx.Response(201, json=json.loads(request.content))

    (tmp_path / "doc.pdf").write_bytes(b"%PDF")
    with Client("http://api", "t", transport=httpx.MockTransport(handler)) as client:
        job = client.submit("cw/summarise", {"n": 1}, files={"doc": tmp_path / "doc.pdf"})
        assert job["inputs"] == {"n": 1, "doc": "https://s/doc.pdf"}
        sent = requests[0]
        assert sent.url.params["provider"] == "cw" and sent.content == b"%PDF"
        assert sent.headers["content-type"] == "application/pdf"
        with pytest.raises(ClientError, match="not found: .*missing.txt"):
            client.submit("cw/x", files={"a": tmp_path / "missing.txt"})
        assert len(requests) == 2  # nothing uploaded for the missing file
        cancelled = client.cancel("job_1")
        assert requests[-1].method == "POST" and requests[-1].url.path == "/v1/jobs/job_1/cancel"
        assert cancelled["cancellation"]["remote"] == "stopped"
        with pytest.raises(ClientError) as ended:
            client.cancel("job_ended")
        assert (ended.value.status, ended.value.code) == (409, "conflict")


def test_cli_submit_names_a_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_app, ["submit", "cw/x", "--file", f"doc={tmp_path}/no.pdf"])
    output = result.output.replace("\n", "")  # unwrapped
    assert result.exit_code == 1 and f"file not found: {tmp_path}/no.pdf (--file doc)" in output


def test_cli_logs_and_cancel_print_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    body = sse_body(("state", "s1", {"status": "running", "event": "started", "attempt": 1,
                                     "at": "2030-01-01T00:00:00Z", "detail": None}),
                    ("log", "l1", {"at": "2030-01-01T00:00:01Z", "message": "[b]half[/b]",
                                   "fields": {"level": "INFO"}}),
                    ("warning", None, {"message": "logs unavailable"}),
                    ("end", None, {"status": "completed"}))

    def handler(request: httpx.Request) -> httpx.Response:
        cancel = request.url.path.endswith("/cancel")
        return httpx.Response(200, json=CANCELLED) if cancel else httpx.Response(200, content=body)

    monkeypatch.setattr(jobs_cli, "client_or_exit",
                        lambda: Client("http://api", "t", transport=httpx.MockTransport(handler)))
    runner = CliRunner()
    shown = runner.invoke(cli_app, ["jobs", "logs", "job_1"], env={"COLUMNS": "200"})
    lines = shown.output.splitlines()
    assert shown.exit_code == 0 and len(lines) == 3, shown.output
    assert "running (started, attempt 1)" in lines[0] and "INFO [b]half[/b]" in lines[1]
    assert "warning" in lines[2] and "logs unavailable" in lines[2]
    as_json = runner.invoke(cli_app, ["jobs", "logs", "job_1", "--json"])
    assert [json.loads(x)["event"] for x in as_json.output.splitlines()] == [
        "state", "log", "warning", "end"]
    cancelled = runner.invoke(cli_app, ["jobs", "cancel", "job_1"])
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output
    assert "remote run: stopped: run killed" in cancelled.output
