"""``AsyncClient`` against the real app (on a real SQLite store) through
``httpx.ASGITransport``, so no server is started; and the operations both clients run,
driven by hand, with no network and no clock."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from orchestrator.api import events as events_api
from orchestrator.api.app import create_app
from orchestrator.bootstrap import Container
from orchestrator.client import AsyncClient, Client, ClientError, Unreachable
from orchestrator.client.api import _CALLS, _Api
from orchestrator.client.steps import Clock, Emit, Reply, Request, Sleep
from orchestrator.domain.job import Event
from orchestrator.domain.records import JobChange
from tests.unit.api_support import make_container, new_token

T = TypeVar("T")
# The moves that take a queued job to running on run r1, then to an end.
TO_RUNNING: tuple[tuple[Event, dict[str, Any]], ...] = (
    (Event.CLAIM, {"lease_until": time.time() + 3600}), (Event.STARTED, {"run_id": "r1"}))
COMPLETE = (Event.COMPLETE, {"outputs": {"ok": True}})
FAIL = (Event.FAIL, {"error_code": "boom", "error_message": "it broke"})


@pytest.fixture(autouse=True)
def fast_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_api, "POLL_S", 0.02)


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    container = make_container(tmp_path)
    yield container
    container.close()


class CountingTransport(httpx.ASGITransport):
    """The app in process, with the path of every request it was sent."""

    def __init__(self, container: Container) -> None:
        super().__init__(app=create_app(container.settings, container))
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await super().handle_async_request(request)


@pytest.fixture
def transport(container: Container) -> CountingTransport:
    return CountingTransport(container)


def with_client(container: Container, transport: httpx.AsyncBaseTransport,
                body: Callable[[AsyncClient], Awaitable[T]]) -> T:
    """Run ``body`` with an AsyncClient on the app, in an event loop of its own."""
    async def main() -> T:
        async with AsyncClient("http://testserver", new_token(container),
                               transport=transport) as client:
            return await body(client)

    return asyncio.run(main())


def move(container: Container, job_id: str, *moves: tuple[Event, dict[str, Any]]) -> None:
    for event, values in moves:
        assert container.store.move(JobChange(job_id, event, values=values), time.time())


def later(seconds: float, action: Callable[[], object]) -> threading.Thread:
    """``action`` on a thread of its own after ``seconds`` (join it)."""
    def act() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=act)
    thread.start()
    return thread


def test_submit_and_an_idempotent_resubmit(container: Container,
                                           transport: CountingTransport) -> None:
    async def body(client: AsyncClient) -> None:
        job = await client.submit("sandbox/echo", {"n": 1}, idempotency_key="k1",
                                  labels={"team": "growth"}, priority=3)
        assert job["status"] == "queued" and job["priority"] == 3
        again = await client.submit("sandbox/echo", {"n": 1}, idempotency_key="k1",
                                    labels={"team": "growth"}, priority=3)
        assert again["id"] == job["id"]
        with pytest.raises(ClientError) as conflict:
            await client.submit("sandbox/echo", {"n": 2}, idempotency_key="k1")
        assert (conflict.value.status, conflict.value.code) == (409, "idempotency_conflict")
        assert job["id"] in conflict.value.message
        assert (await client.get(job["id"]))["labels"] == {"team": "growth"}

    with_client(container, transport, body)
    assert transport.paths.count("/v1/jobs") == 3


def test_list_follows_the_cursor_page_by_page(container: Container,
                                              transport: CountingTransport) -> None:
    async def body(client: AsyncClient) -> tuple[list[str], list[str], list[str]]:
        made = [(await client.submit("sandbox/echo", {"n": n}))["id"] for n in range(5)]
        transport.paths.clear()
        every = [job["id"] async for job in client.list(page_size=2)]
        pages = len(transport.paths)
        first_three = [job["id"] async for job in client.list(page_size=2, limit=3)]
        assert pages == 3 and len(transport.paths) == pages + 2
        return made, every, first_three

    made, every, first_three = with_client(container, transport, body)
    assert every == made[::-1]  # newest first
    assert first_three == made[:1:-1]


def test_wait_gives_up_after_its_timeout_and_returns_the_ended_job(
        container: Container, transport: CountingTransport) -> None:
    async def body(client: AsyncClient) -> dict[str, Any]:
        job_id = (await client.submit("sandbox/echo", {}))["id"]
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=f"job {job_id} is still queued after 0.2s"):
            await client.wait(job_id, timeout_s=0.2, interval_s=0.05)
        assert 0.2 <= time.monotonic() - started < 5.0
        ender = later(0.1, lambda: move(container, job_id, *TO_RUNNING, COMPLETE))
        ended = await client.wait(job_id, timeout_s=10, interval_s=0.02)
        await asyncio.to_thread(ender.join)
        return ended

    ended = with_client(container, transport, body)
    assert ended["status"] == "completed" and ended["outputs"] == {"ok": True}


def test_errors_are_client_errors_with_the_api_code_and_message(
        container: Container, transport: CountingTransport) -> None:
    async def body(client: AsyncClient) -> None:
        with pytest.raises(ClientError) as missing:
            await client.get("job_nope")
        assert (missing.value.status, missing.value.code) == (404, "not_found")
        assert "job_nope" in missing.value.message
        with pytest.raises(ClientError) as refused:
            await client.submit("nope/echo", {})
        assert refused.value.status == 422 and refused.value.message
        with pytest.raises(ClientError) as bad_id:  # refused before anything is sent
            await client.get_callback("..")
        assert (bad_id.value.status, bad_id.value.code) == (None, "invalid_id")
        with pytest.raises(ClientError) as ended:
            job_id = (await client.submit("sandbox/echo", {}))["id"]
            assert (await client.cancel(job_id))["status"] == "cancelled"
            await client.cancel(job_id)
        assert ended.value.status == 409

    with_client(container, transport, body)
    assert "/v1/callbacks/.." not in transport.paths


def test_an_unreachable_api_is_said_so() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async def main() -> None:
        async with AsyncClient("http://127.0.0.1:9", "t",
                               transport=httpx.MockTransport(refuse)) as client:
            with pytest.raises(Unreachable) as caught:
                await client.get("job_1")
        assert caught.value.code == "unreachable" and caught.value.status is None
        assert "cannot reach the API at http://127.0.0.1:9" in caught.value.message

    asyncio.run(main())


def test_events_stream_every_state_change_until_the_end(
        container: Container, transport: CountingTransport) -> None:
    async def body(client: AsyncClient) -> list[dict[str, Any]]:
        job_id = (await client.submit("sandbox/echo", {}))["id"]
        ender = later(0.1, lambda: move(container, job_id, *TO_RUNNING, FAIL))
        received = [event async for event in client.events(job_id)]
        await asyncio.to_thread(ender.join)
        return received

    received = with_client(container, transport, body)
    states = [event["data"]["status"] for event in received if event["event"] == "state"]
    assert states[-3:] == ["starting", "running", "failed"]
    assert received[-1] == {"event": "end", "id": None, "data": {"status": "failed"}}
    assert all(event["id"].startswith("s") for event in received[:-1])


def test_events_reconnect_with_both_cursors_until_end() -> None:
    seen: list[str | None] = []
    answers = [b"id: s1\nevent: state\ndata: {\"status\": \"queued\"}\n\n"
               b"id: l7\nevent: log\ndata: {\"m\": 1}\n\n",
               b"id: s2\nevent: state\ndata: {\"status\": \"completed\"}\n\n"
               b"event: end\ndata: {\"status\": \"completed\"}\n\n"]

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("last-event-id"))
        return httpx.Response(200, content=answers[len(seen) - 1])

    async def main() -> list[tuple[str, str | None]]:
        async with AsyncClient("http://api", "t", transport=httpx.MockTransport(handler)) as c:
            return [(e["event"], e["id"]) async for e in c.events("job_1", last_event_id="s0")]

    assert asyncio.run(main()) == [("state", "s1"), ("log", "l7"), ("state", "s2"),
                                   ("end", None)]
    assert seen == ["s0", "s1,l7"]


def test_batches_retry_and_files(container: Container, transport: CountingTransport,
                                 tmp_path: Path) -> None:
    jobs = [{"workflow": "sandbox/echo", "inputs": {"row": n}} for n in range(5)]

    async def body(client: AsyncClient) -> None:
        sent: list[int] = []
        made = [batch async for batch in client.submit_batches(
            jobs, idempotency_key="file", chunk_size=2,
            on_jobs_sent=lambda done, _: sent.append(done))]
        assert [(b["first"], len(b["job_ids"]), b["created"]) for b in made] == [
            (0, 2, True), (2, 2, True), (4, 1, True)]
        assert sent[-1] == 5
        again = [batch async for batch in client.submit_batches(jobs, idempotency_key="file",
                                                                 chunk_size=2)]
        assert [b["id"] for b in again] == [b["id"] for b in made]
        assert not any(b["created"] for b in again)
        assert (await client.get_batch(made[0]["id"]))["total"] == 2
        with pytest.raises(TimeoutError):
            await client.wait_batch(made[0]["id"], timeout_s=0.05, interval_s=0.01)
        job_id = made[2]["job_ids"][0]
        await client.cancel(job_id)
        retried = await client.retry(job_id)
        assert (retried["status"], retried["attempt"]) == ("queued", 2)
        with pytest.raises(ClientError, match="not found: .*missing.txt"):
            await client.submit("cw/x", files={"a": tmp_path / "missing.txt"})

    with_client(container, transport, body)


def test_a_file_is_read_off_the_loop_and_uploaded_into_inputs(tmp_path: Path) -> None:
    requests: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path == "/v1/files":
            return httpx.Response(201, json={"url": f"https://s/{request.url.params['filename']}"})
        return httpx.Response(201, json=json.loads(request.content))

    async def main() -> dict[str, Any]:
        async with AsyncClient("http://api", "t", transport=httpx.MockTransport(handler)) as c:
            return await c.submit("cw/summarise", {"n": 1}, files={"doc": tmp_path / "d.pdf"})

    (tmp_path / "d.pdf").write_bytes(b"%PDF")
    assert asyncio.run(main())["inputs"] == {"n": 1, "doc": "https://s/d.pdf"}
    assert requests[0].content == b"%PDF" and requests[0].headers["content-type"] == \
        "application/pdf"


def test_both_clients_have_every_method() -> None:
    methods = {name for name in vars(_Api) if not name.startswith("_")}
    assert {"submit", "submit_batch", "submit_batches", "get", "list", "cancel", "retry",
            "wait", "events", "wait_batch", "providers", "create_callback",
            "create_schedule", "deliveries"} <= methods
    sync, async_ = Client("http://api"), AsyncClient("http://api")
    for name in methods:
        assert getattr(sync, name).__doc__, name
        assert getattr(sync, name).__doc__ == getattr(async_, name).__doc__
    sync.close()
    asyncio.run(async_.aclose())


# the operations, by hand ---------------------------------------------------------------------


def test_wait_never_sleeps_past_its_deadline() -> None:
    """``wait`` run with a made-up clock: what it asks for, and what it does with it."""
    op = _CALLS.wait("job_1", timeout_s=1.0, interval_s=0.4)
    now, steps = 100.0, []
    answer: Any = None
    with pytest.raises(TimeoutError, match="job job_1 is still running after 1.0s"):
        while True:
            step = op.send(answer)
            steps.append(step)
            if isinstance(step, Clock):
                answer = now
            elif isinstance(step, Sleep):
                now, answer = now + step.seconds, None
            else:
                assert step == Request("GET", "/v1/jobs/job_1")
                answer = Reply(200, {"id": "job_1", "status": "running"})
    sleeps = [round(step.seconds, 6) for step in steps if isinstance(step, Sleep)]
    assert sleeps == [0.4, 0.4, 0.2]  # the last one only up to the deadline
    assert sum(isinstance(step, Request) for step in steps) == 4


def test_a_listing_asks_for_the_next_page_only_when_it_is_needed() -> None:
    flow = _CALLS.list(page_size=2, status="failed")
    step = next(flow)
    assert step == Request("GET", "/v1/jobs", params={"status": "failed", "limit": 2})
    assert flow.send(Reply(200, {"items": [{"id": "a"}, {"id": "b"}],
                                 "next_cursor": "c1"})) == Emit({"id": "a"})
    assert next(flow) == Emit({"id": "b"})
    assert next(flow) == Request("GET", "/v1/jobs",
                                 params={"status": "failed", "limit": 2, "cursor": "c1"})
    with pytest.raises(StopIteration):
        flow.send(Reply(200, {"items": [], "next_cursor": None}))
