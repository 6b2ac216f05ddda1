"""CodeWords' log streaming and file uploads: the adapter against the sandbox over real HTTP,
and against scripted transports for what the sandbox never does (broken lines, a stream cut
off, a storage PUT that fails)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from orchestrator.adapters.http.client import make_http_client
from orchestrator.adapters.providers.codewords import CodeWordsProvider
from orchestrator.domain.errors import Permanent, RateLimited, Transient
from orchestrator.domain.job import LaunchRequest
from orchestrator.ports import FileUploads, LogSource
from orchestrator.sandbox import SandboxServer
from orchestrator.testing import InMemoryEmbargoes

SECRET = "cwk-secret-9d1e7a"


@pytest.fixture
def provider(sandbox: SandboxServer, http_client: httpx.Client) -> CodeWordsProvider:
    return CodeWordsProvider("cw", f"{sandbox.url}/codewords", sandbox.settings.api_key,
                             http_client, embargoes=InMemoryEmbargoes())


def launch(provider: CodeWordsProvider, inputs: object, workflow: str = "echo") -> str:
    return provider.start(LaunchRequest("job-1", workflow, inputs, provider.reserve(workflow)))


def scripted(handler: Callable[[httpx.Request], httpx.Response]) -> CodeWordsProvider:
    client = make_http_client(transport=httpx.MockTransport(handler))
    return CodeWordsProvider("cw", "https://runtime.example", SECRET, client)


class Cut(httpx.SyncByteStream):
    """A body that sends ``chunks`` and then fails with ``error``."""

    def __init__(self, chunks: list[bytes], error: Exception) -> None:
        self.chunks, self.error = chunks, error

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        raise self.error


def test_codewords_is_a_log_source_and_takes_files(provider: CodeWordsProvider) -> None:
    assert isinstance(provider, LogSource) and isinstance(provider, FileUploads)


def test_logs_of_a_finished_run_and_resuming_after_a_line(provider: CodeWordsProvider) -> None:
    run_id = launch(provider, {"duration_s": 0.1})
    time.sleep(0.2)
    lines = list(provider.logs(run_id))
    assert [line.message for line in lines] == [
        f"run {run_id} of 'echo' accepted", "25% done", "50% done", "75% done", "completed"]
    assert [line.at for line in lines] == sorted({line.at for line in lines})
    assert lines[0].fields == {"createdAt": lines[0].at, "level": "INFO",
                               "message": lines[0].message}
    assert [line.message for line in provider.logs(run_id, after=lines[2].at)] == [
        "75% done", "completed"]


def test_logs_arrive_while_the_run_goes_and_end_with_it(provider: CodeWordsProvider) -> None:
    run_id = launch(provider, {"duration_s": 1.0})
    started = time.monotonic()
    arrivals = [(time.monotonic() - started, line.message) for line in provider.logs(run_id)]
    assert arrivals[0][0] < 0.5 and arrivals[0][1].endswith("accepted")
    assert arrivals[-1] == (pytest.approx(arrivals[-1][0]), "completed")
    assert 0.8 < arrivals[-1][0] < 3.0


def test_log_errors_map_like_any_request(provider: CodeWordsProvider, sandbox: SandboxServer,
                                         http_client: httpx.Client) -> None:
    with pytest.raises(Permanent) as unknown:
        list(provider.logs("req_nope"))
    assert unknown.value.code == "provider_not_found"
    run_id = launch(provider, {})
    wrong = CodeWordsProvider("cw", f"{sandbox.url}/codewords", SECRET, http_client)
    with pytest.raises(Permanent) as refused:
        list(wrong.logs(run_id))
    assert refused.value.code == "provider_auth" and SECRET not in str(refused.value)


def test_a_429_on_logs_embargoes_reads_without_sending(provider: CodeWordsProvider,
                                                       sandbox: SandboxServer) -> None:
    run_id = launch(provider, {})
    sandbox.configure(rate_limits={"codewords_read": "1/minute"})
    list(provider.logs(run_id))
    with pytest.raises(RateLimited) as limited:
        list(provider.logs(run_id))
    assert 0 < limited.value.retry_after <= 60
    sent = sandbox.stats()["requests"]["codewords.logs"]
    with pytest.raises(RateLimited):
        provider.poll("echo", run_id)  # "read" is embargoed: polls wait too
    with pytest.raises(RateLimited):
        list(provider.logs(run_id))
    assert sandbox.stats()["requests"]["codewords.logs"] == sent


def test_malformed_lines_are_skipped_and_sse_framing_is_read() -> None:
    body = "\n".join([
        json.dumps({"createdAt": "t1", "message": "one"}), "not json", "[1, 2]", "",
        json.dumps({"message": "no time"}), ": comment",
        "data: " + json.dumps({"createdAt": "t2", "text": "two"}),
        json.dumps({"createdAt": "t3", "level": "DEBUG"}), '{"createdAt": "t4", "mess']).encode()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=body)

    lines = list(scripted(handler).logs("r/1", after="t0"))
    assert [(line.at, line.message) for line in lines] == [
        ("t1", "one"), ("t2", "two"), ("t3", '{"level": "DEBUG"}')]
    request = seen[0]
    assert request.url.raw_path == b"/logs/r%2F1?after=t0"  # the id stays one segment
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["authorization"] == SECRET


def test_a_stream_cut_off_is_transient_and_a_quiet_one_just_ends() -> None:
    first = json.dumps({"createdAt": "t1", "message": "one"}).encode() + b"\n"
    for error, ends_quietly in ((httpx.ReadError("reset by peer"), False),
                                (httpx.ReadTimeout("timed out"), True)):
        provider = scripted(lambda _, e=error: httpx.Response(200, stream=Cut([first], e)))
        received = []
        if ends_quietly:
            received = [line.message for line in provider.logs("r1")]
        else:
            with pytest.raises(Transient) as caught:
                received.extend(line.message for line in provider.logs("r1"))
            assert caught.value.request_sent is True
        assert received == ["one"]


def test_upload_puts_the_bytes_without_our_key(provider: CodeWordsProvider,
                                               sandbox: SandboxServer,
                                               http_client: httpx.Client) -> None:
    sent: list[httpx.Request] = []
    http_client.event_hooks["request"].append(sent.append)
    url = provider.upload("report.csv", b"a,b\n1,2\n", "text/csv")
    assert http_client.get(url).content == b"a,b\n1,2\n"
    post, put = sent[0], sent[1]
    assert (post.method, post.url.path, post.url.params["filename"]) == (
        "POST", "/codewords/file", "report.csv")
    assert post.headers["authorization"] == sandbox.settings.api_key
    assert put.method == "PUT" and "authorization" not in put.headers
    assert put.headers["content-type"] == "application/octet-stream"  # its upload_headers


def test_upload_refused_or_rate_limited(provider: CodeWordsProvider, sandbox: SandboxServer,
                                        http_client: httpx.Client) -> None:
    wrong = CodeWordsProvider("cw", f"{sandbox.url}/codewords", SECRET, http_client)
    with pytest.raises(Permanent) as refused:
        wrong.upload("a.txt", b"x")
    assert refused.value.code == "provider_auth" and SECRET not in str(refused.value)
    sandbox.configure(rate_limits={"codewords_file": "1/minute"})
    provider.upload("a.txt", b"x")
    with pytest.raises(RateLimited):
        provider.upload("b.txt", b"x")
    with pytest.raises(RateLimited):
        provider.upload("c.txt", b"x")  # embargoed: not sent
    assert sandbox.stats()["requests"]["codewords.file"] == 3


@pytest.mark.parametrize(("status", "kind"), [(503, Transient), (403, Permanent),
                                              (429, RateLimited)])
def test_a_failed_put_is_a_provider_error(status: int, kind: type[Exception]) -> None:
    puts: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"upload_uri": "https://s3.example/u?X-Sig=abc",
                                             "download_uri": "https://s3.example/d"})
        puts.append(request)
        return httpx.Response(status, text="<Error><SignatureProvided>abc</SignatureProvided>")

    with pytest.raises(kind) as caught:  # type: ignore[var-annotated]
        scripted(handler).upload("a.bin", b"\x00\x01", "image/png")
    assert "X-Sig" not in str(caught.value) and "abc" not in str(caught.value)
    assert f"HTTP {status}" in str(caught.value)
    assert puts[0].headers["content-type"] == "application/octet-stream"
    assert "authorization" not in puts[0].headers and puts[0].content == b"\x00\x01"


def test_upload_headers_from_the_runtime_are_sent_as_given() -> None:
    puts: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={
                "upload_uri": "https://s3.example/u", "download_uri": "https://s3.example/d",
                "upload_headers": {"Content-Type": "text/plain", "x-amz-acl": "private"}})
        puts.append(request)
        return httpx.Response(200)

    assert scripted(handler).upload("a.txt", b"hi") == "https://s3.example/d"
    assert puts[0].headers["content-type"] == "text/plain"
    assert puts[0].headers["x-amz-acl"] == "private"


def test_upload_headers_that_cannot_be_sent_are_a_clear_permanent_error() -> None:
    def runtime(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/file":
            return httpx.Response(200, json={"upload_uri": "http://storage.invalid/u",
                                             "download_uri": "http://storage.invalid/d",
                                             "upload_headers": {"x-meta": "résumé.pdf"}})
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(runtime))
    provider = CodeWordsProvider("cw", "http://runtime.invalid", "cwk-secret", client)
    with pytest.raises(Permanent, match="unusable upload_uri or upload_headers"):
        provider.upload("a.pdf", b"x")
