"""The steps an operation yields, what each is answered with, and the building blocks the
operations are written with (a request's JSON, a paginated list, polling until done).
Nothing here does I/O: the drivers (``sync``, ``aio``) perform the steps."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeAlias, TypeVar

from orchestrator.client.errors import ClientError

T = TypeVar("T")
UploadProgress = Callable[[int, int], None]  # (bytes sent, bytes in all)
UPLOAD_TIMEOUT_S = 300.0  # a 50 MiB file over a slow link


@dataclass(frozen=True)
class Request:
    """Send a request; answered with its ``Reply`` (an error status raises ClientError)."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None  # None: the client's own
    on_upload: UploadProgress | None = None  # called as ``content`` goes out

    def arguments(self, content: object) -> dict[str, Any]:
        """The httpx request's arguments, ``content`` as the driver streams it."""
        arguments: dict[str, Any] = {"method": self.method, "url": self.path,
                                     "params": self.params, "json": self.json,
                                     "content": content, "headers": self.headers}
        if self.timeout is not None:
            arguments["timeout"] = self.timeout
        return arguments


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any  # decoded JSON; None for an empty answer


@dataclass(frozen=True)
class Sleep:
    """Wait; answered with None."""

    seconds: float


@dataclass(frozen=True)
class Clock:
    """Answered with the monotonic clock's reading, in seconds."""


@dataclass(frozen=True)
class ReadFile:
    """Answered with the file's bytes (ClientError if it cannot be read)."""

    path: Path


@dataclass(frozen=True)
class OpenStream:
    """GET a streamed answer; answered with a handle on its lines for ``ReadLine``. Opening
    another closes the one before."""

    path: str
    headers: Mapping[str, str]


@dataclass(frozen=True)
class ReadLine:
    """Answered with the stream's next line, or None where it ends."""

    lines: Any


@dataclass(frozen=True)
class Emit(Generic[T]):
    """An item for the caller of a listing or a stream; answered with None."""

    item: T


Step: TypeAlias = Request | Sleep | Clock | ReadFile | OpenStream | ReadLine
Op: TypeAlias = Generator[Step, Any, T]  # a call: steps, then its result
Flow: TypeAlias = Generator[Step | Emit[T], Any, None]  # a listing or a stream: items


# Building blocks of the operations ----------------------------------------------------------


def fetch(method: str, path: str, **request: Any) -> Op[dict[str, Any]]:
    """One request's answer: a JSON object (every answer of the API with a body is one)."""
    reply = yield Request(method, path, **request)
    body: dict[str, Any] = reply.body
    return body


def items(path: str) -> Op[list[dict[str, Any]]]:
    """The ``items`` of an unpaginated list."""
    found: list[dict[str, Any]] = (yield from fetch("GET", path))["items"]
    return found


def pages(path: str, params: dict[str, Any], limit: int | None) -> Flow[dict[str, Any]]:
    """Every item of a cursor-paginated list, at most ``limit``."""
    seen = 0
    while True:
        page = yield from fetch("GET", path, params=params)
        for item in page["items"]:
            yield Emit(item)
            seen += 1
            if limit is not None and seen >= limit:
                return
        if not page.get("next_cursor"):
            return
        params = {**params, "cursor": page["next_cursor"]}


def _pause(deadline: float | None, now: float, interval_s: float) -> float | None:
    """How long to wait before looking again, never past ``deadline``; None: time is up."""
    if deadline is None:
        return interval_s
    if now >= deadline:
        return None
    return min(interval_s, deadline - now)


def polled(fetch: Callable[[], Op[dict[str, Any]]], done: Callable[[dict[str, Any]], bool],
           timeout_s: float | None, interval_s: float) -> Op[tuple[dict[str, Any], bool]]:
    """Fetch until ``done`` or ``timeout_s`` has passed: the last value, and whether done."""
    deadline = None if timeout_s is None else (yield Clock()) + timeout_s
    while True:
        value = yield from fetch()
        if done(value):
            return value, True
        pause = _pause(deadline, (yield Clock()), interval_s)
        if pause is None:
            return value, False
        yield Sleep(pause)


# Running an operation -----------------------------------------------------------------------


class Steps(Generic[T]):
    """An operation being run: hands out its steps one by one and takes back each one's
    answer, or error (thrown into the operation, which may handle it); ``result`` at the
    end."""

    result: T

    def __init__(self, op: Generator[Step | Emit[Any], Any, T]) -> None:
        self._op = op
        self._answer: Any = None
        self._error: ClientError | None = None

    def __iter__(self) -> Steps[T]:
        return self

    def __next__(self) -> Step | Emit[Any]:
        answer, error, self._answer, self._error = self._answer, self._error, None, None
        try:
            return self._op.send(answer) if error is None else self._op.throw(error)
        except StopIteration as done:
            self.result = done.value
            raise StopIteration from None

    def answer(self, value: Any) -> None:
        self._answer = value

    def fail(self, error: ClientError) -> None:
        self._error = error

    def close(self) -> None:
        self._op.close()
