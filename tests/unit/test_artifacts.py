"""Output files kept as artifacts: the fsspec store against a real local HTTP server (and,
for the SSRF guard, a recording transport), which outputs are files on each protocol, the
keeping service over fakes, and the download route."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.adapters import artifacts as adapter
from orchestrator.adapters.artifacts import FsspecArtifactStore, shown
from orchestrator.adapters.http.client import make_http_client
from orchestrator.adapters.http.guard import NetworkGuard, static_resolver
from orchestrator.adapters.providers.codewords import CodeWordsProvider
from orchestrator.adapters.providers.cordage import CordageProvider
from orchestrator.domain.errors import Permanent, Transient
from orchestrator.domain.job import JobStatus, RemoteState, RunStatus
from orchestrator.domain.records import Artifact, NewJob, Poll
from orchestrator.domain.webhook import new_secret
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

# The test server listens on 127.0.0.1: the guard lets the store reach it (as the dev stack's
# allow_private_networks does), and files.test is a name for it that no DNS is asked about.
LOCAL = NetworkGuard(allowed_networks=["127.0.0.0/8"],
                     resolver=static_resolver({"files.test": ["127.0.0.1"]}))

# a local file server ----------------------------------------------------------------------


class FileServer:
    """A real HTTP server on a free port. ``routes`` maps a path to a list of answers
    (status, headers, body), served in turn (the last one again and again); ``hits``
    counts requests by path and ``hosts`` their ``Host`` headers. Each answer ends by closing
    the connection (HTTP/1.0), so one whose ``Content-Length`` claims more than its body is
    cut off mid-body, and one with ``Content-Length: none`` is read until the close. With a
    ``Trickle`` header the body is sent a byte at a time, that many seconds apart."""

    def __init__(self) -> None:
        self.routes: dict[str, list[tuple[int, dict[str, str], bytes]]] = {}
        self.hits: dict[str, int] = {}
        self.hosts: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                server.hosts.append(self.headers.get("Host", ""))
                answers = server.routes.get(self.path) or [(404, {}, b"no such file")]
                status, headers, body = answers[min(server.hits[self.path], len(answers)) - 1]
                self.send_response(status)
                headers = {"Content-Length": str(len(body)), **headers}
                for name, value in headers.items():
                    if value != "none":
                        self.send_header(name, value)
                self.end_headers()
                pause = float(headers.get("Trickle", 0))
                pieces = [body[i:i + 1] for i in range(len(body))] if pause else [body]
                try:
                    for piece in pieces:
                        self.wfile.write(piece)
                        self.wfile.flush()
                        time.sleep(pause)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on it

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
    return FsspecArtifactStore(f"file://{tmp_path}/kept", client, guard=LOCAL,
                               max_bytes=10_000, sleep=sleeps)


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
    relative = FsspecArtifactStore("file://./.orchestrator/artifacts", client, guard=LOCAL)
    url = files.serve("/out/a.txt", (200, {}, b"a"))
    relative.keep("job_1", 3, url)
    assert (tmp_path / ".orchestrator" / "artifacts" / "job_1" / "3").read_bytes() == b"a"


def test_any_fsspec_filesystem_will_do(client: httpx.Client, files: FileServer) -> None:
    memory = FsspecArtifactStore("memory://artifacts-test", client, guard=LOCAL)
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
    small = FsspecArtifactStore(f"file://{tmp_path}/small", store._client, guard=LOCAL,
                                max_bytes=4)
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


def test_a_keep_with_its_tries_ends_within_its_time_even_on_a_trickle(
        store: FsspecArtifactStore, files: FileServer, tmp_path: Path) -> None:
    # 60 bytes, one every 50 ms: 3 s for the body, each byte well within the read time-out.
    url = files.serve("/trickle.bin", (200, {"Trickle": "0.05"}, b"x" * 60))
    quick = FsspecArtifactStore(f"file://{tmp_path}/kept", store._client, guard=LOCAL,
                                max_download_s=0.5, sleep=store._sleep)
    started = time.monotonic()
    with pytest.raises(Transient, match="took more than 0.5s to download"):
        quick.keep("job_t", 0, url)
    # Dropped once its time was up: not after the whole body, nor tried again past it.
    assert time.monotonic() - started < 1.5
    assert files.hits["/trickle.bin"] == 1
    assert leftovers(tmp_path / "kept") == []  # its temporary file is gone


def test_quick_retries_stop_when_the_time_for_one_keep_is_up(
        store: FsspecArtifactStore, files: FileServer, tmp_path: Path, sleeps: Sleeps) -> None:
    url = files.serve("/busy/briefly", (503, {}, b""))
    quick = FsspecArtifactStore(f"file://{tmp_path}/kept", store._client, guard=LOCAL,
                                max_download_s=0.1, sleep=sleeps)
    with pytest.raises(Transient, match="HTTP 503"):
        quick.keep("job_q", 0, url)
    assert files.hits["/busy/briefly"] == 1 and sleeps == []  # a 0.2 s pause would overrun


# the SSRF guard ---------------------------------------------------------------------------

class Recorder:
    """An ``httpx`` transport that answers from ``answers`` (full URL → response) and
    records every request; anything else is a 200 with "secret" in it. Connecting to an
    address in ``down`` fails."""

    def __init__(self, answers: dict[str, httpx.Response] | None = None) -> None:
        self.answers = answers or {}
        self.requests: list[httpx.Request] = []
        self.down: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return self.answers.get(str(request.url), httpx.Response(200, content=b"secret"))

    def seen(self) -> list[tuple[str, str]]:
        return [(str(r.url), r.headers["host"]) for r in self.requests]


PUBLIC = "93.184.215.14"
RESOLVER = static_resolver({"cdn.test": [PUBLIC], "internal.test": ["10.1.2.3"],
                            "metadata.test": ["169.254.169.254"],
                            "both.test": [PUBLIC, "192.168.1.1"],
                            "many.test": ["93.184.215.1", "93.184.215.2", "93.184.215.3",
                                          "93.184.215.4"]})


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def guarded(tmp_path: Path, recorder: Recorder) -> Iterator[FsspecArtifactStore]:
    """A store behind the guard as production has it (no private networks allowed),
    whose client answers from ``recorder``."""
    with make_http_client(transport=httpx.MockTransport(recorder)) as http:
        yield FsspecArtifactStore(f"file://{tmp_path}/kept", http,
                                  guard=NetworkGuard(resolver=RESOLVER), sleep=lambda _: None)


ADVICE = ("output files are fetched only from public addresses (set "
          "[callbacks].allow_private_networks or add the subnet to "
          "[callbacks].allowed_networks to allow it)")


@pytest.mark.parametrize(("url", "why"), [
    ("http://169.254.169.254/latest/meta-data/iam/security-credentials/admin",
     "resolves to 169.254.169.254, the cloud metadata address (link-local)"),
    ("http://metadata.test/latest/meta-data/", "resolves to 169.254.169.254, the cloud "
                                               "metadata address (link-local)"),
    ("http://0xa9fea9fe/latest/", "resolves to 169.254.169.254, the cloud metadata address"),
    ("https://internal.test/admin", "resolves to 10.1.2.3, a private address"),
    ("http://both.test/x", "resolves to 192.168.1.1, a private address"),
    ("http://127.0.0.1:6379/", "resolves to 127.0.0.1, a loopback address"),
    ("http://[::ffff:10.0.0.1]/x", "resolves to ::ffff:10.0.0.1, the IPv4-mapped form of "
                                   "10.0.0.1, a private address"),
])
def test_an_output_url_to_a_private_address_is_permanent_and_never_requested(
        guarded: FsspecArtifactStore, recorder: Recorder, url: str, why: str) -> None:
    with pytest.raises(Permanent) as caught:
        guarded.keep("job_ssrf", 0, url)
    assert caught.value.code == "artifact_not_kept"
    assert caught.value.message.startswith(f"output file URL '{url}' {why}")
    assert caught.value.message.endswith(f"; {ADVICE}")
    assert recorder.requests == []


def test_the_request_goes_to_the_checked_address_with_the_host_header_and_sni(
        guarded: FsspecArtifactStore, recorder: Recorder) -> None:
    guarded.keep("job_pin", 0, "https://cdn.test/out/a.csv?sig=1")
    guarded.keep("job_pin", 1, "http://cdn.test:8080/out/b.csv")
    assert recorder.seen() == [(f"https://{PUBLIC}/out/a.csv?sig=1", "cdn.test"),
                               (f"http://{PUBLIC}:8080/out/b.csv", "cdn.test:8080")]
    https, http_ = recorder.requests
    assert https.extensions["sni_hostname"] == "cdn.test"
    assert "sni_hostname" not in http_.extensions


def test_an_unreachable_checked_address_gives_way_to_the_next_of_the_first_three(
        guarded: FsspecArtifactStore, recorder: Recorder) -> None:
    recorder.down = {"93.184.215.1"}
    assert guarded.keep("job_many", 0, "http://many.test/a").size == len(b"secret")
    assert [r.url.host for r in recorder.requests] == ["93.184.215.1", "93.184.215.2"]
    recorder.requests.clear()
    recorder.down = {"93.184.215.1", "93.184.215.2", "93.184.215.3"}
    with pytest.raises(Transient, match="ConnectError"):
        guarded.keep("job_many", 1, "http://many.test/b")
    hosts = [r.url.host for r in recorder.requests]
    assert "93.184.215.4" not in hosts  # three tried, each attempt
    assert hosts[:3] == ["93.184.215.1", "93.184.215.2", "93.184.215.3"]


def test_each_redirect_is_checked_and_pinned_again(
        guarded: FsspecArtifactStore, recorder: Recorder) -> None:
    recorder.answers.update({
        f"https://{PUBLIC}/start": httpx.Response(302, headers={"Location": "/next?x=1"}),
        f"https://{PUBLIC}/next?x=1": httpx.Response(
            307, headers={"Location": "http://cdn.test/final"}),
        f"http://{PUBLIC}/final": httpx.Response(200, content=b"the file"),
    })
    artifact = guarded.keep("job_hops", 0, "https://cdn.test/start")
    assert artifact.url == "https://cdn.test/start" and artifact.size == len(b"the file")
    assert recorder.seen() == [(f"https://{PUBLIC}/start", "cdn.test"),
                               (f"https://{PUBLIC}/next?x=1", "cdn.test"),
                               (f"http://{PUBLIC}/final", "cdn.test")]


@pytest.mark.parametrize(("location", "why"), [
    ("http://10.0.0.5/secret", "resolves to 10.0.0.5, a private address"),
    ("http://169.254.169.254/latest/meta-data/",
     "resolves to 169.254.169.254, the cloud metadata address (link-local)"),
    ("https://internal.test/admin", "resolves to 10.1.2.3, a private address"),
    ("http://[::1]:8000/", "resolves to ::1, a loopback address"),
])
def test_a_redirect_to_a_private_address_is_refused_before_it_is_requested(
        guarded: FsspecArtifactStore, recorder: Recorder, location: str, why: str) -> None:
    recorder.answers[f"https://{PUBLIC}/out"] = httpx.Response(
        302, headers={"Location": location})
    with pytest.raises(Permanent) as caught:
        guarded.keep("job_redir", 0, "https://cdn.test/out")
    assert caught.value.message == (f"output file URL 'https://cdn.test/out' redirected to "
                                    f"'{location}', and that URL {why}; {ADVICE}")
    assert recorder.seen() == [(f"https://{PUBLIC}/out", "cdn.test")]


def test_a_redirect_to_another_scheme_is_permanent(
        guarded: FsspecArtifactStore, recorder: Recorder) -> None:
    recorder.answers[f"http://{PUBLIC}/out"] = httpx.Response(
        301, headers={"Location": "file:///etc/passwd"})
    with pytest.raises(Permanent, match="has scheme 'file'; only http and https URLs"):
        guarded.keep("job_file", 0, "http://cdn.test/out")
    assert len(recorder.requests) == 1


def test_at_most_five_redirects_are_followed(
        guarded: FsspecArtifactStore, recorder: Recorder) -> None:
    for hop in range(7):
        for chain in ("ok", "loop"):
            recorder.answers[f"http://{PUBLIC}/{chain}{hop}"] = httpx.Response(
                302, headers={"Location": f"{chain}{hop + 1}"})  # relative to the hop
    recorder.answers[f"http://{PUBLIC}/ok5"] = httpx.Response(200, content=b"five")
    assert guarded.keep("job_five", 0, "http://cdn.test/ok0").size == 4  # 5 redirects
    assert len(recorder.requests) == 6
    recorder.requests.clear()
    with pytest.raises(Permanent, match="redirected more than 5 times") as caught:
        guarded.keep("job_six", 0, "http://cdn.test/loop0")  # a sixth redirect
    assert caught.value.code == "artifact_not_kept"
    assert len(recorder.requests) == 6  # the sixth Location is not requested


def test_a_host_that_does_not_resolve_is_transient(
        guarded: FsspecArtifactStore, recorder: Recorder) -> None:
    with pytest.raises(Transient, match="cannot resolve host 'nowhere.test'") as caught:
        guarded.keep("job_dns", 0, "https://nowhere.test/a.csv")
    assert caught.value.message.startswith("output file URL 'https://nowhere.test/a.csv':")
    assert recorder.requests == []


def test_the_guard_pins_the_connection_on_a_real_socket(
        store: FsspecArtifactStore, files: FileServer) -> None:
    port = files.url.rsplit(":", 1)[1]
    files.serve("/pinned.txt", (200, {}, b"pinned"))
    files.hosts.clear()
    artifact = store.keep("job_real", 0, f"http://files.test:{port}/pinned.txt")
    assert artifact.size == len(b"pinned")
    assert files.hosts == [f"files.test:{port}"]  # reached by the checked address, not DNS


# passwords in output URLs -----------------------------------------------------------------

def test_a_url_is_shown_without_its_password_or_query() -> None:
    assert shown("https://ada:s3cret@files.test/out/a.csv?X-Amz-Signature=abc#frag") == (
        "https://ada:***@files.test/out/a.csv")
    assert shown("http://ada:p@ss:w0rd@files.test:8080/x") == "http://ada:***@files.test:8080/x"
    assert shown("http://[::1/x?sig=abc") == "http://[::1/x"  # not a URL urlsplit takes


def test_no_message_of_the_store_carries_a_password_or_presigned_query(
        guarded: FsspecArtifactStore, recorder: Recorder, store: FsspecArtifactStore,
        files: FileServer) -> None:
    messages = []
    gone = files.serve("/private/gone", (404, {}, b"")).replace("http://", "http://ada:pw1@")
    for keeper, url in [
        (store, gone + "?sig=sig1"),
        (guarded, "http://ada:pw2@10.0.0.1/x?sig=sig2"),  # refused by the guard
        (guarded, "ftp://ada:pw3@files.test/x?sig=sig3"),  # not http
        (guarded, "https://ada:pw4@nowhere.test/x?sig=sig4"),  # does not resolve
    ]:
        with pytest.raises((Permanent, Transient)) as caught:
            keeper.keep("job_pw", 0, url)
        messages.append(caught.value.message)
    for i, message in enumerate(messages, 1):
        assert "ada:***@" in message
        assert f"pw{i}" not in message and f"sig{i}" not in message, message


def test_a_job_error_names_no_password_of_a_file_that_was_not_kept() -> None:
    class Refusing(InMemoryArtifacts):
        def keep(self, job_id: str, n: int, url: str) -> Artifact:
            if "@" in url:
                raise Permanent(f"fetching {shown(url)} answered HTTP 403",
                                code="artifact_not_kept")
            return super().keep(job_id, n, url)

    urls = [URLS[0], "https://ada:s3cret@files.test/private.csv?sig=abc"]
    deps, _, _ = deps_with_files(urls, artifacts=Refusing(CONTENT))
    job_id = submit(deps)
    drain(deps)
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED
    assert job.error_message == ("1 output file(s) could not be kept: file 1: fetching "
                                 "https://ada:***@files.test/private.csv answered HTTP 403")


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
    # Files are started in a round's first 60 s: two a round (at 0 s and 50 s).
    assert keeping.ROUND_BUDGET_S == 60
    assert steps[:4] == ["launch:started", "poll:keeping", "poll:keeping", "poll:completed"]
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


def first_poll(deps: Deps, job_id: str) -> Poll:
    """Launch ``job_id`` and move the clock to its first poll."""
    launch_job(job_id, deps)
    poll = [a for a in sched(deps).actions if isinstance(a, Poll)][-1]
    clock_of(deps).t = max(clock_of(deps).t, poll.at or 0)
    return poll


def test_a_second_copy_of_the_poll_during_a_round_is_skipped() -> None:
    """Redis hands an unacknowledged poll out again: the copy, arriving while the first is
    still downloading, finds the poll count moved on and downloads nothing."""

    class Redelivered(InMemoryArtifacts):
        copy: tuple[Deps, int] | None = None  # the poll to deliver again, mid-download
        copy_result: str | None = None

        def keep(self, job_id: str, n: int, url: str) -> Artifact:
            if self.copy is not None:
                (deps, seq), self.copy = self.copy, None
                self.copy_result = poll_job(job_id, seq, deps).result
            return super().keep(job_id, n, url)

    kept = Redelivered(CONTENT)
    deps, _, _ = deps_with_files(artifacts=kept)
    job_id = submit(deps)
    poll = first_poll(deps, job_id)
    kept.copy = (deps, poll.seq)
    first = poll_job(job_id, poll.seq, deps)
    assert kept.copy_result == "skipped"
    assert kept.fetches == URLS  # each file once
    assert first.result == "completed"
    assert "deliver:succeeded" in drain(deps) and len(sent_events(deps)) == 1


def test_the_follow_up_poll_carries_the_count_the_round_took() -> None:
    deps, _, kept = deps_with_files()
    kept.errors[URLS[1]] = [Transient("HTTP 503")]
    job_id = submit(deps)
    poll = first_poll(deps, job_id)
    assert poll_job(job_id, poll.seq, deps).result == "keeping"
    job = deps.store.get_job(job_id)
    follow = sched(deps).actions[-1]
    assert isinstance(follow, Poll) and job is not None
    # Taking the round moved the count on once, planning the next poll once more.
    assert (job.polls, follow.seq) == (poll.seq + 2, poll.seq + 2)
    for stale in (poll.seq, poll.seq + 1):
        assert poll_job(job_id, stale, deps).result == "skipped"
    clock_of(deps).t = follow.at or 0
    assert poll_job(job_id, follow.seq, deps).result == "completed"
    assert kept.fetches == [URLS[0], URLS[1], URLS[1], URLS[2]]


class Slow(InMemoryArtifacts):
    """Each file takes ``seconds`` of the fake clock; ``started`` notes when each began."""

    def __init__(self, count: int, seconds: float) -> None:
        super().__init__({f"https://files.test/{i}": b"x" for i in range(count)})
        self.seconds = seconds
        self.started: list[float] = []
        self.clock: FakeClock | None = None

    def keep(self, job_id: str, n: int, url: str) -> Artifact:
        assert self.clock is not None
        self.started.append(self.clock.t)
        self.clock.advance(self.seconds)
        return super().keep(job_id, n, url)


def test_a_round_starts_no_file_past_its_budget() -> None:
    slow = Slow(7, 25)
    deps, _, _ = deps_with_files(list(slow.files), artifacts=slow)
    slow.clock = clock_of(deps)
    job_id = submit(deps, timeout_s=3600)
    poll = first_poll(deps, job_id)
    start = clock_of(deps).t
    assert poll_job(job_id, poll.seq, deps).result == "keeping"
    # Started at 0, 25 and 50 s; the fourth would start at 75 s, past the 60 s budget.
    assert [t - start for t in slow.started] == [0, 25, 50]
    job = deps.store.get_job(job_id)
    assert job is not None and len(job.artifacts) == 3


def test_the_last_round_keeps_to_its_budget_too_and_gives_up_on_the_rest() -> None:
    slow = Slow(5, 50)
    deps, _, _ = deps_with_files(list(slow.files), artifacts=slow)
    slow.clock = clock_of(deps)
    job_id = submit(deps, timeout_s=60)
    poll = first_poll(deps, job_id)
    job = deps.store.get_job(job_id)
    assert job is not None and job.deadline_at is not None
    clock_of(deps).t = job.deadline_at + keeping.ARTIFACT_GRACE_S  # the last round
    assert poll_job(job_id, poll.seq, deps).result == "completed"
    assert len(slow.started) == 2  # at 0 s and 50 s, not 100 s past the budget
    job = deps.store.get_job(job_id)
    assert job is not None and [a.url for a in job.artifacts] == list(slow.files)[:2]
    assert job.error_message is not None
    assert job.error_message.startswith("3 output file(s) could not be kept: file 2: not "
                                        "tried: the time for keeping the job's files ran out")


def test_a_round_ends_well_inside_the_visibility_timeout(tmp_path: Path) -> None:
    """A round starts files for ROUND_BUDGET_S; the last one ends within the store's limit,
    give or take one read time-out: all of it well before Redis hands the poll out again,
    and before the lease that holds the job off the sweep runs out."""
    container = make_container(tmp_path, migrate=False)
    try:
        visibility = container.celery.conf.broker_transport_options["visibility_timeout"]
        read_timeout = container.http.timeout.read
        assert read_timeout is not None
        store = container.artifacts
        longest_round = keeping.ROUND_BUDGET_S + store.max_download_s + read_timeout
        assert store.max_download_s == adapter.MAX_DOWNLOAD_S
        assert longest_round <= 200 < visibility
        assert longest_round < keeping.KEEP_LEASE_S
    finally:
        container.close()


def test_the_container_s_store_fetches_through_the_callbacks_guard(
        tmp_path: Path, files: FileServer) -> None:
    url = files.serve("/wired/secret", (200, {}, b"from a loopback address"))
    strict = make_container(tmp_path, migrate=False)
    lax = make_container(tmp_path, migrate=False, callbacks={
        "signing_secret": new_secret(), "allow_private_networks": True})
    try:
        assert strict.artifacts._guard is strict.url_guard
        with pytest.raises(Permanent, match="resolves to 127.0.0.1, a loopback address"):
            strict.artifacts.keep("job_w", 0, url)
        assert files.hits.get("/wired/secret") is None
        assert lax.artifacts.keep("job_w", 0, url).size == len(b"from a loopback address")
    finally:
        strict.close()
        lax.close()


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
    container = make_container(tmp_path, artifacts={"url": f"file://{tmp_path}/kept"},
                               callbacks={"signing_secret": new_secret(),
                                          "allow_private_networks": True})
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
