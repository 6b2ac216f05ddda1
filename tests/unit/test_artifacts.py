"""Output files kept as artifacts: the fsspec store against a real local HTTP server, which
outputs are files on each protocol, the keeping service over fakes, and the download route."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.adapters.artifacts import FsspecArtifactStore
from orchestrator.adapters.http.client import make_http_client
from orchestrator.adapters.providers.codewords import CodeWordsProvider
from orchestrator.adapters.providers.cordage import CordageProvider
from orchestrator.domain.errors import Permanent, Transient
from orchestrator.domain.job import JobStatus, RemoteState, RunStatus
from orchestrator.domain.records import Artifact, NewJob, Poll
from orchestrator.services import artifacts as keeping
from orchestrator.services.deps import Deps
from orchestrator.services.launch import launch_job
from orchestrator.services.poll import poll_job
from orchestrator.services.submit import JobSpec, submit_job
from orchestrator.services.sweep import sweep
from orchestrator.testing import (
    FakeClock,
    FakeProvider,
    FakeSender,
    InMemoryArtifacts,
    RecordingScheduler,
    drain,
    make_deps,
)
from tests.unit.api_support import api_client, error_of, make_container

# a local file server ----------------------------------------------------------------------


class FileServer:
    """A real HTTP server on a free port. ``routes`` maps a path to a list of answers
    (status, headers, body), served in turn (the last one again and again); ``hits``
    counts requests by path. Each answer ends by closing the connection (HTTP/1.0), so one
    whose ``Content-Length`` claims more than its body is cut off mid-body, and one with
    ``Content-Length: none`` is read until the close."""

    def __init__(self) -> None:
        self.routes: dict[str, list[tuple[int, dict[str, str], bytes]]] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                answers = server.routes.get(self.path) or [(404, {}, b"no such file")]
                status, headers, body = answers[min(server.hits[self.path], len(answers)) - 1]
                self.send_response(status)
                headers = {"Content-Length": str(len(body)), **headers}
                for name, value in headers.items():
                    if value != "none":
                        self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, path: str, *answers: tuple[int, dict[str, str], bytes]) -> str:
        self.routes[path] = list(answers)
        return self.url + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    server = FileServer()
    yield server
    server.close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with make_http_client(timeout_s=5.0) as http:
        yield http


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def store(tmp_path: Path, client: httpx.Client, sleeps: Sleeps) -> FsspecArtifactStore:
    return FsspecArtifactStore(f"file://{tmp_path}/kept", client, max_bytes=10_000,
                               sleep=sleeps)


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


OK = {"Content-Type": "text/csv"}


# the store --------------------------------------------------------------------------------

def test_a_file_is_kept_with_its_sha256_size_and_content_type(
        store: FsspecArtifactStore, files: FileServer, tmp_path: Path) -> None:
    content = b"name,score\nada,10\n" * 100
    url = files.serve("/out/report.csv", (200, OK, content))
    artifact = store.keep("job_01ABC", 0, url)
    assert artifact == Artifact(url=url, key="job_01ABC/0",
                                sha256=hashlib.sha256(content).hexdigest(),
                                size=len(content), content_type="text/csv")
    assert (tmp_path / "kept" / "job_01ABC" / "0").read_bytes() == content
    assert b"".join(store.open(artifact.key)) == content
    assert leftovers(tmp_path / "kept") == ["job_01ABC/0"]  # no temporary file left


def test_a_relative_file_url_is_taken_from_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: httpx.Client,
        files: FileServer) -> None:
    monkeypatch.chdir(tmp_path)
    relative = FsspecArtifactStore("file://./.orchestrator/artifacts", client)
    url = files.serve("/out/a.txt", (200, {}, b"a"))
    relative.keep("job_1", 3, url)
    assert (tmp_path / ".orchestrator" / "artifacts" / "job_1" / "3").read_bytes() == b"a"


def test_any_fsspec_filesystem_will_do(client: httpx.Client, files: FileServer) -> None:
    memory = FsspecArtifactStore("memory://artifacts-test", client)
    url = files.serve("/out/m.bin", (200, {"Content-Type": "application/pdf"}, b"%PDF-1"))
    artifact = memory.keep("job_m", 0, url)
    assert b"".join(memory.open(artifact.key)) == b"%PDF-1"
    assert artifact.content_type == "application/pdf"
    assert memory.fs.ls(memory.root + "/job_m", detail=False) == [memory.root + "/job_m/0"]


def test_a_body_cut_off_leaves_no_half_file_under_the_key(
        store: FsspecArtifactStore, files: FileServer, tmp_path: Path) -> None:
    url = files.serve("/out/cut.csv", (200, OK, b"good"),
                      (200, {"Content-Length": "5000"}, b"only the start"))
    store.keep("job_cut", 0, url)
    with pytest.raises(Transient):
        store.keep("job_cut", 0, url)  # the same file again, dropped mid-body every time
    # The copy kept before is whole and untouched; no temporary file lingers.
    assert (tmp_path / "kept" / "job_cut" / "0").read_bytes() == b"good"
    assert leftovers(tmp_path / "kept") == ["job_cut/0"]


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
def test_server_trouble_is_transient_after_a_few_quick_tries(
        store: FsspecArtifactStore, files: FileServer, sleeps: Sleeps, status: int) -> None:
    url = files.serve(f"/busy/{status}", (status, {}, b"busy"))
    with pytest.raises(Transient, match=f"HTTP {status}"):
        store.keep("job_b", 0, url)
    assert files.hits[f"/busy/{status}"] == 3 and sleeps == [0.2, 1.0]


def test_a_long_retry_after_is_left_to_the_caller(
        store: FsspecArtifactStore, files: FileServer, sleeps: Sleeps) -> None:
    url = files.serve("/slow/down", (503, {"Retry-After": "30"}, b""))
    with pytest.raises(Transient) as caught:
        store.keep("job_s", 0, url)
    assert caught.value.retry_after == 30
    assert files.hits["/slow/down"] == 1 and sleeps == []  # no worker sleeps 30 s


def test_a_passing_failure_is_retried_within_one_keep(
        store: FsspecArtifactStore, files: FileServer, sleeps: Sleeps) -> None:
    url = files.serve("/flaky.txt", (503, {}, b""), (502, {}, b""), (200, {}, b"at last"))
    assert store.keep("job_f", 0, url).size == len(b"at last")
    assert sleeps == [0.2, 1.0]


def test_an_unreachable_host_is_transient(store: FsspecArtifactStore) -> None:
    with pytest.raises(Transient, match="ConnectError"):
        store.keep("job_u", 0, "http://127.0.0.1:1/file.txt")


@pytest.mark.parametrize("status", [404, 410, 403, 401, 400])
def test_a_file_that_is_gone_or_refused_is_permanent_at_once(
        store: FsspecArtifactStore, files: FileServer, sleeps: Sleeps, status: int) -> None:
    url = files.serve(f"/gone/{status}?X-Amz-Signature=secret", (status, {}, b"nope"))
    with pytest.raises(Permanent, match=f"HTTP {status}") as caught:
        store.keep("job_g", 0, url)
    assert caught.value.code == "artifact_not_kept"
    assert "secret" not in caught.value.message  # a presigned URL's query stays out
    assert files.hits[f"/gone/{status}?X-Amz-Signature=secret"] == 1 and sleeps == []


def test_a_redirect_to_the_file_is_followed(store: FsspecArtifactStore,
                                            files: FileServer) -> None:
    target = files.serve("/real/place.txt", (200, {}, b"moved"))
    url = files.serve("/short", (302, {"Location": target}, b""))
    artifact = store.keep("job_r", 0, url)
    assert artifact.url == url and artifact.size == 5


def test_a_file_over_the_limit_is_permanent_whether_declared_or_not(
        store: FsspecArtifactStore, files: FileServer, tmp_path: Path) -> None:
    declared = files.serve("/huge/declared", (200, {}, b"x" * 10_001))
    with pytest.raises(Permanent, match="larger than 10000 bytes, the most kept for one file"):
        store.keep("job_h", 0, declared)
    undeclared = files.serve("/huge/undeclared", (200, {"Content-Length": "none"}, b"x" * 5))
    small = FsspecArtifactStore(f"file://{tmp_path}/small", store._client, max_bytes=4)
    with pytest.raises(Permanent, match="larger than 4 bytes") as caught:
        small.keep("job_h", 1, undeclared)
    assert caught.value.code == "artifact_too_large"
    assert leftovers(tmp_path / "kept") == [] and leftovers(tmp_path / "small") == []


def test_only_http_urls_are_fetched_and_keys_are_ours(store: FsspecArtifactStore) -> None:
    with pytest.raises(Permanent, match="not an http"):
        store.keep("job_x", 0, "file:///etc/passwd")
    with pytest.raises(ValueError):
        store.keep("../../etc", 0, "http://127.0.0.1:1/x")
    with pytest.raises(ValueError):
        store.open("job_x/../../secrets")
    with pytest.raises(FileNotFoundError):
        store.open("job_x/0")


# which outputs are files ------------------------------------------------------------------

def test_cordage_outputs_are_files_when_they_are_urls(client: httpx.Client) -> None:
    cordage = CordageProvider("c", "http://127.0.0.1:1", "k", client)
    outputs = ["https://storage.trycordage.com/outputs/image_001.png", {"n": 1},
               "http://x.test/b.csv", "plain text", "https://storage.trycordage.com/outputs/"
               "image_001.png"]
    assert cordage.output_files(outputs) == [
        "https://storage.trycordage.com/outputs/image_001.png", "http://x.test/b.csv"]
    assert cordage.output_files({"outputs": "x"}) == [] and cordage.output_files(None) == []


def test_codewords_files_are_the_answers_files_list_only(client: httpx.Client) -> None:
    codewords = CodeWordsProvider("w", "http://127.0.0.1:1", "k", client)
    assert codewords.output_files({"files": ["https://s.test/1.txt", 3, "ftp://s.test/2"],
                                   "link": "https://s.test/not-a-file"}) == [
        "https://s.test/1.txt"]
    assert codewords.output_files(["https://s.test/1.txt"]) == []
    assert codewords.output_files({"files": "https://s.test/1.txt"}) == []


# the service ------------------------------------------------------------------------------

URLS = ["https://files.test/a.csv", "https://files.test/b.png", "https://files.test/c.txt"]
CONTENT = {url: f"content of {url}".encode() for url in URLS}


def deps_with_files(urls: list[str] = URLS, *, artifacts: InMemoryArtifacts | None = None,
                    **kw: Any) -> tuple[Deps, FakeProvider, InMemoryArtifacts]:
    provider = FakeProvider(result=RunStatus(RemoteState.COMPLETED, outputs=list(urls),
                                             raw_status="completed"))
    kept = artifacts or InMemoryArtifacts(CONTENT)
    return make_deps(provider, artifacts=kept, **kw), provider, kept


def submit(deps: Deps, **spec: Any) -> str:
    fields: dict[str, Any] = {"workflow": "fake/files", "inputs": {},
                              "callback_url": "https://example.com/hook", **spec}
    return submit_job(JobSpec(**fields), deps, owner="tok_1").job.id


def sent_events(deps: Deps) -> list[dict[str, Any]]:
    assert isinstance(deps.sender, FakeSender)
    return [json.loads(body) for _, _, body in deps.sender.sent]


def test_a_completed_run_completes_once_its_files_are_kept() -> None:
    deps, _, kept = deps_with_files()
    job_id = submit(deps)
    assert drain(deps) == ["launch:started", "poll:completed", "deliver:succeeded"]
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED
    assert [a.url for a in job.artifacts] == URLS and job.error_code is None
    assert [a.sha256 for a in job.artifacts] == [hashlib.sha256(CONTENT[u]).hexdigest()
                                                 for u in URLS]
    assert [a.key for a in job.artifacts] == [f"{job_id}/0", f"{job_id}/1", f"{job_id}/2"]
    # The terminal event carries them: it is sent only once they are kept.
    (event,) = sent_events(deps)
    assert event["type"] == "job.completed"
    assert [a["sha256"] for a in event["data"]["artifacts"]] == [a.sha256 for a in job.artifacts]
    assert event["data"]["artifacts"][1]["download"] == f"/v1/jobs/{job_id}/artifacts/1"
    assert kept.fetches == URLS


def test_a_transient_failure_polls_again_and_kept_files_are_not_fetched_again() -> None:
    deps, provider, kept = deps_with_files()
    kept.errors[URLS[1]] = [Transient("HTTP 503", retry_after=40), Transient("reset")]
    job_id = submit(deps)
    steps = drain(deps)
    assert steps == ["launch:started", "poll:keeping", "poll:keeping", "poll:completed",
                     "deliver:succeeded"]
    assert kept.fetches == [URLS[0], URLS[1], URLS[1], URLS[1], URLS[2]]
    assert sum(provider.polls.values()) == 1  # the run was asked about once
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED
    assert [a.url for a in job.artifacts] == URLS and job.outputs == URLS
    assert len(sent_events(deps)) == 1


def test_a_retry_after_from_the_file_server_is_honoured() -> None:
    deps, _, kept = deps_with_files()
    kept.errors[URLS[0]] = [Transient("HTTP 503", retry_after=40)]
    job_id = submit(deps)
    launch_job(job_id, deps)
    (first,) = [a for a in sched(deps).actions if isinstance(a, Poll)]
    clock_of(deps).t = first.at or 0
    assert poll_job(job_id, first.seq, deps).result == "keeping"
    again = sched(deps).actions[-1]
    assert isinstance(again, Poll) and (again.at or 0) - clock_of(deps).t >= 40
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.RUNNING and job.outputs == URLS


def test_a_permanent_failure_completes_the_job_saying_which_file_without_looping() -> None:
    deps, _, kept = deps_with_files()
    del kept.files[URLS[1]]  # gone from the provider: a 404
    job_id = submit(deps)
    assert drain(deps) == ["launch:started", "poll:completed", "deliver:succeeded"]
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.outputs == URLS
    assert [a.url for a in job.artifacts] == [URLS[0], URLS[2]]
    assert job.error_code == "artifacts_not_kept"
    assert job.error_message is not None and URLS[1] in job.error_message
    assert "HTTP 404" in job.error_message
    complete = [e for e in deps.store.job_events(job_id) if e["event"] == "complete"]
    assert URLS[1] in str(complete[0]["detail"])
    assert kept.fetches == URLS  # each once


def test_past_the_deadline_and_its_grace_the_job_completes_with_what_was_kept() -> None:
    deps, _, kept = deps_with_files()
    kept.errors[URLS[2]] = [Transient("HTTP 503")] * 1000
    job_id = submit(deps, timeout_s=60)
    steps = drain(deps)
    assert steps[-2:] == ["poll:completed", "deliver:succeeded"]
    assert 3 < steps.count("poll:keeping") < 60  # by the backoff, not a tight loop
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED
    assert job.deadline_at is not None and job.finished_at is not None
    assert job.finished_at == pytest.approx(job.deadline_at + keeping.ARTIFACT_GRACE_S,
                                            abs=0.01)
    assert [a.url for a in job.artifacts] == URLS[:2]
    assert job.error_message is not None and "past the job's deadline" in job.error_message


def test_without_an_artifact_store_nothing_is_downloaded() -> None:
    deps, _, kept = deps_with_files()
    deps.artifacts = None
    job_id = submit(deps)
    assert drain(deps) == ["launch:started", "poll:completed", "deliver:succeeded"]
    job = deps.store.get_job(job_id)
    assert job is not None and job.artifacts == () and job.outputs == URLS
    assert kept.fetches == []


def test_outputs_without_files_complete_at_once() -> None:
    deps, _, kept = deps_with_files([])
    submit(deps)
    assert drain(deps)[-2:] == ["poll:completed", "deliver:succeeded"]
    assert kept.fetches == []


def test_a_slow_round_keeps_the_sweep_off_and_yields_after_its_budget() -> None:
    class SlowArtifacts(InMemoryArtifacts):
        """Each file takes 50 s; mid-download, a sweep runs."""

        def __init__(self, deps_box: list[Deps]) -> None:
            super().__init__({f"https://files.test/{i}": b"x" for i in range(5)})
            self.deps_box = deps_box
            self.swept: list[int] = []

        def keep(self, job_id: str, n: int, url: str) -> Artifact:
            deps = self.deps_box[0]
            clock_of(deps).advance(50)
            self.swept.append(sweep(deps).polls)
            return super().keep(job_id, n, url)

    box: list[Deps] = []
    slow = SlowArtifacts(box)
    deps, _, _ = deps_with_files(list(slow.files), artifacts=slow)
    box.append(deps)
    job_id = submit(deps, timeout_s=3600)
    steps = drain(deps)
    assert steps[:3] == ["launch:started", "poll:keeping", "poll:completed"]
    assert slow.swept == [0] * 5  # the job was taken: no second worker was handed it
    job = deps.store.get_job(job_id)
    assert job is not None and len(job.artifacts) == 5
    assert slow.fetches == list(slow.files)  # the second round went on where the first ended


def test_a_job_cancelled_while_its_files_are_kept_stays_cancelled() -> None:
    from orchestrator.services.cancel import cancel_job

    deps, _, kept = deps_with_files()
    kept.errors[URLS[0]] = [Transient("HTTP 503")]
    job_id = submit(deps)
    launch_job(job_id, deps)
    poll = [a for a in sched(deps).actions if isinstance(a, Poll)][-1]
    assert poll_job(job_id, poll.seq, deps).result == "keeping"
    cancel_job(job_id, deps)
    follow = [a for a in sched(deps).actions if isinstance(a, Poll)][-1]
    assert poll_job(job_id, follow.seq, deps).result == "skipped"
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED


def sched(deps: Deps) -> RecordingScheduler:
    assert isinstance(deps.scheduler, RecordingScheduler)
    return deps.scheduler


def clock_of(deps: Deps) -> FakeClock:
    assert isinstance(deps.clock, FakeClock)
    return deps.clock


# GET /v1/jobs/{id}/artifacts/{n} ----------------------------------------------------------

@pytest.fixture
def served(tmp_path: Path, files: FileServer) -> Iterator[tuple[Any, str, bytes]]:
    """The API over SQLite with a job whose one artifact is kept: (client, job id, bytes)."""
    container = make_container(tmp_path, artifacts={"url": f"file://{tmp_path}/kept"})
    content = b"\x00binary\xffcontent" * 1000
    url = files.serve("/api/out/result.bin?sig=1",
                      (200, {"Content-Type": "application/octet-stream"}, content))
    job = container.store.add_job(NewJob(id="job_api1", workflow="sandbox/files",
                                         provider="sandbox", inputs={}), 1.0)
    artifact = container.artifacts.keep(job.id, 0, url)
    container.store.update_job(job.id, {}, {"artifacts": [dataclasses.asdict(artifact)]})
    with api_client(container) as api:  # closes the container at the end
        yield api, job.id, content


def test_an_artifact_is_served_with_its_type_length_and_digest(
        served: tuple[Any, str, bytes]) -> None:
    api, job_id, content = served
    listed = api.get(f"/v1/jobs/{job_id}").json()["artifacts"]
    assert listed[0]["download"] == f"/v1/jobs/{job_id}/artifacts/0"
    response = api.get(listed[0]["download"])
    assert response.status_code == 200 and response.content == content
    sha = hashlib.sha256(content).hexdigest()
    assert listed[0]["sha256"] == sha and listed[0]["size"] == len(content)
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-length"] == str(len(content))
    assert response.headers["etag"] == f'"{sha}"'
    assert response.headers["digest"].startswith("sha-256=")
    assert 'filename="result.bin"' in response.headers["content-disposition"]
    again = api.get(listed[0]["download"], headers={"If-None-Match": f'"{sha}"'})
    assert again.status_code == 304 and again.content == b""


def test_unknown_jobs_and_artifacts_are_404_and_a_token_is_needed(
        served: tuple[Any, str, bytes], tmp_path: Path) -> None:
    api, job_id, _ = served
    for path in ("/v1/jobs/job_nope/artifacts/0", f"/v1/jobs/{job_id}/artifacts/1"):
        response = api.get(path)
        assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    assert api.get(f"/v1/jobs/{job_id}/artifacts/-1").status_code == 422
    (tmp_path / "kept" / job_id / "0").unlink()  # the store lost it: still no 500
    missing = api.get(f"/v1/jobs/{job_id}/artifacts/0")
    assert missing.status_code == 404 and "missing" in error_of(missing)["message"]
    bare = api.get(f"/v1/jobs/{job_id}/artifacts/0", headers={"Authorization": ""})
    assert bare.status_code == 401 and error_of(bare)["code"] == "unauthorized"
