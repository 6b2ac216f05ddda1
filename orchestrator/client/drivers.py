"""The two drivers: ``Client`` performs each step with ``httpx.Client`` and ``time.sleep``,
``AsyncClient`` with ``httpx.AsyncClient`` and ``asyncio.sleep``. Neither knows any call of
the API: those are the operations of ``api._Calls``, which both run."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import httpx

from orchestrator.client.api import _Api
from orchestrator.client.errors import ClientError
from orchestrator.client.steps import (
    Emit,
    Flow,
    Op,
    OpenStream,
    ReadFile,
    ReadLine,
    Request,
    Sleep,
    Step,
    Steps,
)
from orchestrator.client.transport import (
    api_error,
    areporting,
    decode,
    read_file,
    reporting,
    unreachable,
)

T = TypeVar("T")


class Client(_Api):
    """The API from synchronous code; ``transport`` stands in for the network (tests)."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout_s: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(url, token)
        self._http = httpx.Client(base_url=self.url, headers=self._headers, timeout=timeout_s,
                                  transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, op: Op[T]) -> T:
        steps = Steps(op)
        for _ in self._drive(steps):
            raise TypeError("a call gave items")  # only listings and streams do
        return steps.result

    def _iterate(self, flow: Flow[T]) -> Iterator[T]:
        return self._drive(Steps(flow))

    def _drive(self, steps: Steps[Any]) -> Iterator[Any]:
        with contextlib.closing(steps), contextlib.ExitStack() as stream:
            for step in steps:
                if isinstance(step, Emit):
                    yield step.item
                    continue
                try:
                    steps.answer(self._perform(step, stream))
                except ClientError as error:
                    steps.fail(error)

    def _perform(self, step: Step, stream: contextlib.ExitStack) -> Any:
        try:
            if isinstance(step, Request):
                content = step.content
                if step.on_upload is not None and content is not None:
                    content = reporting(content, step.on_upload)  # type: ignore[assignment]
                return decode(self._http.request(**step.arguments(content)))
            if isinstance(step, OpenStream):
                return self._open(step, stream)
            if isinstance(step, ReadLine):
                return next(step.lines, None)
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from None
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            return None
        if isinstance(step, ReadFile):
            return read_file(step.path)
        return time.monotonic()

    def _open(self, step: OpenStream, stream: contextlib.ExitStack) -> Iterator[str]:
        stream.close()  # the one this call opened before, if any
        response = stream.enter_context(self._http.stream("GET", step.path,
                                                          headers=step.headers))
        if response.status_code >= 400:
            response.read()
            raise api_error(response)
        return response.iter_lines()


class AsyncClient(_Api):
    """The API from asyncio code: the methods of ``Client``, each a coroutine to await, and
    ``list``, ``events``, ``submit_batches`` and ``deliveries`` async iterators (``async
    for``; one left before its end holds its connection until it is closed:
    ``async with contextlib.aclosing(client.events(job_id)) as events``). ``transport``
    stands in for the network (tests: ``httpx.ASGITransport``)."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout_s: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(url, token)
        self._http = httpx.AsyncClient(base_url=self.url, headers=self._headers,
                                       timeout=timeout_s, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, op: Op[T]) -> T:
        steps = Steps(op)
        async for _ in self._drive(steps):
            raise TypeError("a call gave items")  # only listings and streams do
        return steps.result

    def _iterate(self, flow: Flow[T]) -> AsyncIterator[T]:
        return self._drive(Steps(flow))

    async def _drive(self, steps: Steps[Any]) -> AsyncIterator[Any]:
        try:
            async with contextlib.AsyncExitStack() as stream:
                for step in steps:
                    if isinstance(step, Emit):
                        yield step.item
                        continue
                    try:
                        steps.answer(await self._perform(step, stream))
                    except ClientError as error:
                        steps.fail(error)
        finally:
            steps.close()

    async def _perform(self, step: Step, stream: contextlib.AsyncExitStack) -> Any:
        try:
            if isinstance(step, Request):
                content = step.content
                if step.on_upload is not None and content is not None:
                    content = areporting(content, step.on_upload)  # type: ignore[assignment]
                return decode(await self._http.request(**step.arguments(content)))
            if isinstance(step, OpenStream):
                return await self._open(step, stream)
            if isinstance(step, ReadLine):
                return await anext(step.lines, None)
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from None
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            return None
        if isinstance(step, ReadFile):
            return await asyncio.to_thread(read_file, step.path)
        return time.monotonic()

    async def _open(self, step: OpenStream,
                    stream: contextlib.AsyncExitStack) -> AsyncIterator[str]:
        await stream.aclose()  # the one this call opened before, if any
        response = await stream.enter_async_context(
            self._http.stream("GET", step.path, headers=step.headers))
        if response.status_code >= 400:
            await response.aread()
            raise api_error(response)
        return response.aiter_lines()
