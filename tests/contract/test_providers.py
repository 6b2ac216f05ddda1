"""The provider contract: one suite, run against every HTTP adapter over real HTTP to the
sandbox, so the adapters cannot drift apart in how they report the same situation."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import httpx
import pytest

from orchestrator.adapters.http.client import make_http_client
from orchestrator.adapters.providers.codewords import CodeWordsProvider
from orchestrator.adapters.providers.cordage import CordageProvider
from orchestrator.domain.errors import Permanent, RateLimited, Transient
from orchestrator.domain.job import LaunchRequest, RemoteState, RunStatus
from orchestrator.ports import Provider
from orchestrator.sandbox import SandboxServer


@dataclass(frozen=True)
class Flavour:
    """How one runtime type is built, and how its outputs are shaped."""

    kind: str
    build: Callable[[str, httpx.Client, str], Provider]  # (sandbox root URL, client, key)
    echo_outputs: Callable[[object], object]  # what ``echo`` gives back for these inputs
    file_urls: Callable[[object], list[str]]
    start_bucket: str  # the sandbox rate-limit bucket a start counts against


FLAVOURS = [
    Flavour(
        "codewords",
        lambda root, client, key: CodeWordsProvider(
            "sandbox-cw", f"{root}/codewords", key, client, result_wait_s=0.5
        ),
        echo_outputs=lambda inputs: inputs,
        file_urls=lambda outputs: cast(dict[str, list[str]], outputs)["files"],
        start_bucket="codewords_start",
    ),
    Flavour(
        "cordage",
        lambda root, client, key: CordageProvider("sandbox-cd", f"{root}/cordage", key, client),
        echo_outputs=lambda inputs: [inputs],
        file_urls=lambda outputs: cast(list[str], outputs),
        start_bucket="cordage_trigger",
    ),
]


@pytest.fixture(params=FLAVOURS, ids=lambda f: f.kind)
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def provider(flavour: Flavour, sandbox: SandboxServer, http_client: httpx.Client) -> Provider:
    return flavour.build(sandbox.url, http_client, sandbox.settings.api_key)


def launch(provider: Provider, workflow: str, inputs: object, job_id: str = "job-1") -> str:
    reservation = provider.reserve(workflow)
    return provider.start(LaunchRequest(job_id, workflow, inputs, reservation=reservation))


def run_to_end(
    provider: Provider, workflow: str, inputs: object, limit_s: float = 5.0
) -> RunStatus:
    run_id = launch(provider, workflow, inputs)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        status = provider.poll(workflow, run_id)
        if status.state.finished:
            return status
        time.sleep(0.02)
    raise AssertionError(f"{workflow} run {run_id} did not finish within {limit_s} s")


def test_adapters_satisfy_the_provider_protocol(provider: Provider) -> None:
    assert isinstance(provider, Provider)


def test_echo_completes_with_its_inputs_as_outputs(provider: Provider, flavour: Flavour) -> None:
    inputs = {"greeting": "hello", "n": [1, 2, 3]}
    status = run_to_end(provider, "echo", inputs)
    assert status.state is RemoteState.COMPLETED
    assert status.outputs == flavour.echo_outputs(inputs)
    assert status.error is None


def test_a_run_is_running_before_it_completes(provider: Provider) -> None:
    run_id = launch(provider, "sleep", {"duration_s": 3.0})
    assert provider.poll("sleep", run_id).state in (RemoteState.PENDING, RemoteState.RUNNING)


def test_fail_ends_failed_with_the_workflows_error(provider: Provider) -> None:
    status = run_to_end(provider, "fail", {"error": "the model refused"})
    assert status.state is RemoteState.FAILED
    assert status.error == "the model refused"


def test_files_yields_downloadable_urls(
    provider: Provider, flavour: Flavour, http_client: httpx.Client
) -> None:
    status = run_to_end(provider, "files", {"count": 3})
    assert status.state is RemoteState.COMPLETED
    urls = flavour.file_urls(status.outputs)
    assert len(urls) == 3
    for n, url in enumerate(urls, start=1):
        response = http_client.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert response.content.startswith(f"sandbox file {n} of 3".encode())


def test_an_unknown_workflow_is_permanent_not_found(provider: Provider) -> None:
    with pytest.raises(Permanent) as caught:
        launch(provider, "no-such-workflow", {})
    assert caught.value.code == "provider_not_found"


def test_a_wrong_key_is_permanent_auth_and_never_shown(
    flavour: Flavour, sandbox: SandboxServer, http_client: httpx.Client
) -> None:
    secret = "cwk-wrong-key-5f3a9c"
    provider = flavour.build(sandbox.url, http_client, secret)
    with pytest.raises(Permanent) as caught:
        launch(provider, "echo", {})
    assert caught.value.code == "provider_auth"
    assert secret not in str(caught.value)
    assert secret not in repr(caught.value)
    assert secret not in repr(provider)


def test_a_start_repeated_with_its_reservation_makes_one_run(
    provider: Provider, sandbox: SandboxServer
) -> None:
    reservation = provider.reserve("echo")
    if not provider.idempotent_start:
        # No reservations here, so two starts are two runs: the hazard that makes the
        # launch service never send a start twice to such a runtime.
        assert reservation is None
        request = LaunchRequest("job-7", "echo", {"x": 1})
        assert provider.start(request) != provider.start(request)
        assert sandbox.stats()["runs_started"] == 2
        return
    request = LaunchRequest("job-7", "echo", {"x": 1}, reservation=reservation)
    first, second = provider.start(request), provider.start(request)
    assert first == second == reservation
    stats = sandbox.stats()
    assert stats["runs_started"] == 1
    assert stats["duplicate_starts"] == 1
    [run] = sandbox.runs()
    assert run["start_requests"] == 2
    assert run["correlation_id"] == "job-7"


def test_cancel_stops_a_running_run_where_supported(provider: Provider) -> None:
    run_id = launch(provider, "sleep", {"duration_s": 10})
    if not provider.supports_cancel:
        assert provider.cancel("sleep", run_id) is False
        return
    assert provider.cancel("sleep", run_id) is True
    status = provider.poll("sleep", run_id)
    assert status.state is RemoteState.CANCELLED
    assert status.raw_status == "cancelled"


def test_the_rate_limit_raises_rate_limited_with_a_wait(
    provider: Provider, flavour: Flavour, sandbox: SandboxServer
) -> None:
    sandbox.configure(rate_limits={flavour.start_bucket: "1/minute"})
    launch(provider, "echo", {})
    with pytest.raises(RateLimited) as caught:
        launch(provider, "echo", {})
    assert 0 < caught.value.retry_after <= 60
    stats = sandbox.stats()
    assert stats["rate_limited"] == {flavour.start_bucket: 1}
    assert stats["early_requests"] == 0


def test_a_dropped_connection_is_transient(provider: Provider, sandbox: SandboxServer) -> None:
    run_id = launch(provider, "echo", {})
    sandbox.configure(p_drop=1.0)
    with pytest.raises(Transient) as caught:
        provider.poll("echo", run_id)
    assert caught.value.request_sent is True


def test_a_start_whose_answer_is_lost_is_transient_and_maybe_sent(
    provider: Provider, sandbox: SandboxServer
) -> None:
    request = LaunchRequest("job-1", "echo", {}, reservation=provider.reserve("echo"))
    sandbox.configure(p_drop_after=1.0)
    with pytest.raises(Transient) as caught:
        provider.start(request)
    assert caught.value.request_sent is True
    assert sandbox.stats()["runs_started"] == 1  # the run exists; only its answer was lost
    if provider.idempotent_start:  # so sending it again is safe, and finds that run
        sandbox.configure(p_drop_after=0.0)
        assert provider.start(request) == request.reservation
        assert sandbox.stats()["runs_started"] == 1


def test_an_unreachable_runtime_is_transient_and_not_sent(flavour: Flavour) -> None:
    with make_http_client(timeout_s=2.0) as client:
        provider = flavour.build(f"http://127.0.0.1:{_free_port()}", client, "k")
        with pytest.raises(Transient) as caught:
            provider.start(LaunchRequest("job-1", "echo", {}))
    assert caught.value.request_sent is False


def test_server_errors_and_malformed_bodies_are_transient(
    provider: Provider, sandbox: SandboxServer
) -> None:
    run_id = launch(provider, "echo", {})
    sandbox.configure(p_503=1.0)
    with pytest.raises(Transient, match="503"):
        provider.poll("echo", run_id)
    sandbox.configure(p_503=0.0, p_malformed=1.0)
    with pytest.raises(Transient, match="malformed JSON"):
        provider.poll("echo", run_id)


def _free_port() -> int:
    """A port nobody listens on (free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
