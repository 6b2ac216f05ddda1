"""``GET /v1/jobs/{id}/events``: a job's state changes, and its run's logs, as server-sent
events.

The stream sends the job's history first (``event: state``, ``id: s<row id>``), then new
history rows as the store records them (it is read every ``POLL_S``, each read a short query
of its own, so no database connection is held while waiting), and, where the provider is a
``LogSource`` and the job has a run, the run's log lines (``event: log``, ``id: l<at>``).
It ends with ``event: end`` once the job is terminal and the run's remaining lines are sent.

A request lasts at most ``MAX_STREAM_S``: a stream that closes without ``end`` is resumed by
reconnecting with ``Last-Event-ID``. The header takes an id as sent (``s12`` skips history
rows up to 12; ``l<at>`` resumes the logs after that line) or both cursors as ``s12,l<at>``,
which is what ``orchestrator.client`` sends; a bare one replays the other kind from the start.

The runtime's log stream blocks, so a ``LogPump`` thread follows it and hands lines to the
request's event loop. Trouble fetching logs becomes ``event: warning``; state changes go on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse
from pydantic.json_schema import SkipJsonSchema
from starlette.concurrency import run_in_threadpool

from orchestrator.api.deps import ContainerDep, TokenDep
from orchestrator.api.errors import ERROR_RESPONSES, ApiError
from orchestrator.api.jobs import JobId
from orchestrator.bootstrap import Container
from orchestrator.domain.errors import Permanent, ProviderError
from orchestrator.domain.records import Job
from orchestrator.domain.webhook import rfc3339
from orchestrator.ports import LogLine, LogSource

log = logging.getLogger("orchestrator.api")
router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

POLL_S = 0.5  # how often the store is read for new history rows
HEARTBEAT_S = 10.0  # a comment line after this long without an event keeps proxies open
MAX_STREAM_S = 300.0  # one request's longest life; the client reconnects with Last-Event-ID
DRAIN_S = 10.0  # how long after the job ends its run's remaining log lines may take
RECONNECT_S = 1.0  # first wait before the log stream is opened again
MAX_RECONNECT_S = 15.0
MAX_LOG_FAILURES = 5  # consecutive failures after which the logs are given up on
QUEUE_ITEMS = 1000  # lines a stream may hold for a slow reader before its pump waits
# Log pumps open at once in this process: each holds a thread and a connection of the shared
# HTTP client, whose pool the workers' other requests (a kill, an upload) need too.
MAX_PUMPS = 32
PUMP_SLOTS = threading.BoundedSemaphore(MAX_PUMPS)
_LAST_EVENT_ID = re.compile(r"^s([0-9]{1,18})(?:,l(.+))?$|^l(.+)$")
# The same, as the schema states it (a header value has no blanks at its ends on the wire).
LAST_EVENT_ID_PATTERN = r"^(?:s[0-9]{1,18}(?:,l.*[^ \t])?|l.*[^ \t])?$"


@dataclass
class Cursor:
    """Where a client is: the last history row and the last log line it has."""

    state_id: int = 0
    log_at: str | None = None


def parse_last_event_id(value: str | None) -> Cursor:
    value = (value or "").strip(" \t")  # HTTP's optional whitespace, nothing else
    if not value:
        return Cursor()
    match = _LAST_EVENT_ID.match(value)
    if match is None:
        raise ApiError(400, "invalid_last_event_id",
                       "Last-Event-ID must be an id this stream sent: 's<n>', 'l<time>' or "
                       "'s<n>,l<time>'")
    state, log_at, only_log = match.groups()
    return Cursor(int(state) if state else 0, log_at or only_log)


class EventStreamResponse(StreamingResponse):
    media_type = "text/event-stream"


# One event of the stream, as OpenAPI 3.2's `itemSchema` describes each item of a sequential
# media type (FastAPI documents its own event streams so); `data` is one line of JSON.
EVENT_SCHEMA = {"type": "object", "properties": {
    "event": {"type": "string", "enum": ["state", "log", "warning", "end"]},
    "data": {"type": "string", "contentMediaType": "application/json"},
    "id": {"type": "string"},
    "retry": {"type": "integer", "minimum": 0},
}}


@router.get(
    "/{job_id}/events",
    # Documented by `responses` alone: with EventStreamResponse as the route's class, FastAPI
    # would describe the whole stream as one string and put the JSON errors under its type.
    response_class=StreamingResponse,
    responses={200: {"description": "`state`, `log`, `warning` and a final `end` event",
                     "content": {"text/event-stream": {"itemSchema": EVENT_SCHEMA}}}},
)
def job_events(
    job_id: JobId,
    _: TokenDep,
    container: ContainerDep,
    # The pattern is documented, not enforced by FastAPI: a wrong id is this route's own 400.
    last_event_id: Annotated[str | SkipJsonSchema[None], Header(
        max_length=400, json_schema_extra={"pattern": LAST_EVENT_ID_PATTERN})] = None,
) -> EventStreamResponse:
    """Server-sent events: the job's state changes (`state`), its run's log lines where the
    provider streams them (`log`), trouble fetching those (`warning`), and `end` with the
    final status once the job has ended. Reconnect with `Last-Event-ID` to resume."""
    cursor = parse_last_event_id(last_event_id)
    if container.store.get_job(job_id) is None:
        raise ApiError(404, "not_found", f"no job with id '{job_id}'")
    return EventStreamResponse(
        EventStream(container, job_id, cursor).run(),
        # Proxies must pass each event on at once rather than buffer the answer.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def sse(event: str, data: object, event_id: str | None = None) -> str:
    """One event in the wire format; ``data`` as one line of JSON."""
    head = ""
    if event_id is not None:
        head = "id: " + re.sub(r"[\r\n\0]", "", event_id) + "\n"
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def state_event(row: Mapping[str, object]) -> str:
    at = row.get("at")
    data = {"id": row["id"], "event": row.get("event"), "status": row.get("status"),
            "attempt": row.get("attempt"), "detail": row.get("detail"),
            "at": rfc3339(at) if isinstance(at, (int, float)) else at}
    return sse("state", data, f"s{row['id']}")


def log_event(line: LogLine) -> str:
    return sse("log", {"at": line.at, "message": line.message, "fields": dict(line.fields)},
               f"l{line.at}")


@dataclass(frozen=True)
class PumpItem:
    """What a pump hands the stream: a log line, a warning, or that it has stopped."""

    pump: LogPump | None  # None for a warning from the stream itself
    line: LogLine | None = None
    warning: str | None = None
    done: bool = False


class LogPump:
    """Follows one run's logs in a thread, reconnecting with ``after`` when the runtime's
    stream ends or fails, until the job has ended (then it reads what is left once more),
    it is stopped, or its deadline passes: a pump never outlives its request for long."""

    def __init__(self, source: LogSource, run_id: str, after: str | None,
                 deliver: Callable[[PumpItem], bool], deadline: float) -> None:
        self.run_id, self.cursor = run_id, after
        self._source, self._deliver, self._deadline = source, deliver, deadline
        self._stop, self._job_ended, self._wake = (threading.Event(), threading.Event(),
                                                   threading.Event())
        self._thread = threading.Thread(target=self._run, name=f"logs-{run_id}", daemon=True)

    def start(self) -> LogPump:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def job_ended(self) -> None:
        self._job_ended.set()
        self._wake.set()

    def running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._deadline

    def _run(self) -> None:
        wait, failures = RECONNECT_S, 0
        try:
            while self.running():
                final = self._job_ended.is_set()  # the run is over: what is left, then stop
                began = time.monotonic()
                try:
                    got = self._follow()
                except ProviderError as error:
                    failures += 1
                    if not self._give_warning(error, failures, final):
                        return
                    wait = max(RECONNECT_S * 2 ** failures, error.retry_after or 0.0)
                else:
                    if final:
                        return
                    failures = 0
                    # A stream that answered or stayed open a while was healthy: come back
                    # soon. One that closed at once empty is not asked again so often.
                    healthy = got or time.monotonic() - began >= MAX_RECONNECT_S / 3
                    wait = RECONNECT_S if healthy else min(wait * 2, MAX_RECONNECT_S)
                self._wake.wait(min(wait, MAX_RECONNECT_S * 2))
                self._wake.clear()
        except Exception:  # a bug in an adapter must not end the request's stream
            log.exception("following the logs of run %s failed", self.run_id)
            self._deliver(PumpItem(self, warning="logs unavailable: unexpected error (see "
                                                 "the API's log)"))
        finally:
            self._deliver(PumpItem(self, done=True))

    def _follow(self) -> bool:
        """Read the runtime's stream to its end; whether any line came."""
        got = False
        lines = self._source.logs(self.run_id, after=self.cursor)
        try:
            for line in lines:
                if not self.running():
                    break
                self.cursor = line.at
                got = True
                if not self._deliver(PumpItem(self, line=line)):
                    self._stop.set()
        finally:
            close = getattr(lines, "close", None)
            if callable(close):
                close()  # ends the HTTP stream now rather than when collected
        return got

    def _give_warning(self, error: ProviderError, failures: int, final: bool) -> bool:
        """Report the failure; whether to try again."""
        again = not (final or isinstance(error, Permanent) or failures >= MAX_LOG_FAILURES)
        suffix = "; trying again" if again else "; no more log lines on this stream"
        if not self._deliver(PumpItem(self, warning=f"logs unavailable: {error.message}"
                                                    + suffix)):
            return False
        return again


class EventStream:
    """One request's stream: reads the store, runs a pump, writes the events."""

    def __init__(self, container: Container, job_id: str, cursor: Cursor) -> None:
        self.container, self.job_id, self.cursor = container, job_id, cursor
        self.pump: LogPump | None = None
        self.pump_done = False
        self.last_line: LogLine | None = None
        self.holds_slot = False

    async def run(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        # Bounded: a client that reads slowly holds the pump back instead of letting the
        # lines pile up in memory.
        queue: asyncio.Queue[PumpItem] = asyncio.Queue(maxsize=QUEUE_ITEMS)
        deadline = loop.time() + MAX_STREAM_S
        deliver = _deliverer(loop, queue)
        next_poll = last_sent = loop.time()
        ended_at: float | None = None
        try:
            yield "retry: 1000\n\n"  # reconnect a second after a stream closes early
            while loop.time() < deadline:
                chunks: list[str] = []
                if loop.time() >= next_poll:
                    job, rows = await run_in_threadpool(self._read)
                    chunks += self._state_events(rows)
                    if job is None:
                        return  # gone from the store: nothing more will happen to it
                    self._follow_run(job, deliver, deadline)
                    if job.status.terminal:
                        ended_at = ended_at or loop.time()
                        if self._finished(ended_at, loop.time()):
                            yield "".join(chunks) + sse("end", {"status": str(job.status)})
                            return
                    next_poll = loop.time() + POLL_S
                wait = max(0.0, min(next_poll, deadline) - loop.time())
                chunks += self._pump_events(await _take(queue, wait))
                if chunks or loop.time() - last_sent >= HEARTBEAT_S:
                    last_sent = loop.time()
                    yield "".join(chunks) or ": keep-alive\n\n"
        finally:
            if self.pump is not None:
                self.pump.stop()
            if self.holds_slot:
                PUMP_SLOTS.release()

    def _read(self) -> tuple[Job | None, list[Mapping[str, object]]]:
        store = self.container.store
        return store.get_job(self.job_id), store.job_events(self.job_id)

    def _state_events(self, rows: list[Mapping[str, object]]) -> list[str]:
        out = []
        for row in rows:
            row_id = row.get("id")
            if isinstance(row_id, int) and row_id > self.cursor.state_id:
                out.append(state_event(row))
                self.cursor.state_id = row_id
        return out

    def _follow_run(self, job: Job, deliver: Callable[[PumpItem], bool],
                    deadline: float) -> None:
        """Start a pump on the job's run (a new one if a relaunch changed the run)."""
        new = None
        if job.run_id and (self.pump is None or self.pump.run_id != job.run_id):
            source = self._log_source(job.provider)
            if source is not None and not self.holds_slot:
                self.holds_slot = PUMP_SLOTS.acquire(blocking=False)
                if not self.holds_slot:
                    deliver(PumpItem(None, warning="too many log streams are open on this "
                                                   "server; state changes only"))
                    source = None
            if source is not None:
                if self.pump is not None:
                    self.pump.stop()
                # The pump's own deadline is in monotonic time, the loop's may not be.
                remaining = deadline - asyncio.get_running_loop().time()
                new = self.pump = LogPump(source, job.run_id, self.cursor.log_at, deliver,
                                          time.monotonic() + remaining + DRAIN_S)
                self.pump_done = False
        if job.status.terminal and self.pump is not None:
            self.pump.job_ended()  # before a new pump starts, so it reads only once
        if new is not None:
            new.start()

    def _log_source(self, provider: str) -> LogSource | None:
        try:
            source = self.container.providers.get(provider)
        except KeyError:  # no longer configured: there is nobody to ask
            return None
        return source if isinstance(source, LogSource) else None

    def _finished(self, ended_at: float, now: float) -> bool:
        """Whether the ended job's stream may close: its logs are in, or took too long."""
        return self.pump is None or self.pump_done or now - ended_at >= DRAIN_S

    def _pump_events(self, items: list[PumpItem]) -> list[str]:
        out = []
        for item in items:
            if item.pump is None and item.warning is not None:  # from the stream itself
                out.append(sse("warning", {"message": item.warning}))
                continue
            if item.pump is not self.pump:
                continue  # a pump replaced after a relaunch
            if item.done:
                self.pump_done = True
            elif item.warning is not None:
                out.append(sse("warning", {"message": item.warning}))
            elif item.line is not None and item.line != self.last_line:
                # Only an exact repeat of the last line is dropped (a reconnect may send
                # it again); other lines may share its timestamp.
                self.last_line = item.line
                self.cursor.log_at = item.line.at
                out.append(log_event(item.line))
        return out


def _deliverer(loop: asyncio.AbstractEventLoop,
               queue: asyncio.Queue[PumpItem]) -> Callable[[PumpItem], bool]:
    def deliver(item: PumpItem) -> bool:
        """Hand an item over, waiting while the queue is full; False once nobody listens."""
        while True:
            try:
                future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
            except RuntimeError:  # the loop has closed: nobody is listening any more
                return False
            try:
                future.result(timeout=1.0)
                return True
            except concurrent.futures.CancelledError:  # the stream is shutting down
                return False
            except concurrent.futures.TimeoutError:
                if not future.cancel():
                    return True  # it went in just as the wait ran out
                if item.pump is not None and not item.pump.running():
                    return False

    return deliver


async def _take(queue: asyncio.Queue[PumpItem], timeout: float) -> list[PumpItem]:
    """Whatever the pump has handed over, waiting up to ``timeout`` for the first item."""
    items = []
    if queue.empty() and timeout > 0:
        try:
            items.append(await asyncio.wait_for(queue.get(), timeout))
        except TimeoutError:
            return []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
