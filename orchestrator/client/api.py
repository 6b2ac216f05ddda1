"""How both clients get their methods: every operation, in ``_Calls``, becomes a method of
``_Api`` through a descriptor typed for each client (``_Call`` for a call, ``_Stream`` for a
listing or a stream)."""

from __future__ import annotations

import builtins
import inspect
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

from orchestrator.client.batches import BatchCalls
from orchestrator.client.callbacks import CallbackCalls
from orchestrator.client.jobs import JobCalls
from orchestrator.client.schedules import ScheduleCalls
from orchestrator.client.steps import Flow, Op

if TYPE_CHECKING:
    from orchestrator.client.drivers import AsyncClient, Client

DEFAULT_URL = "http://127.0.0.1:8000"

T = TypeVar("T")
P = ParamSpec("P")


class _Calls(JobCalls, BatchCalls, ScheduleCalls, CallbackCalls):
    """Every call of the API, once: each method is an operation (a generator of steps) that
    both clients run. Nothing here does I/O. (``self, /``: where an operation takes
    ``**fields``, so that its method's type can drop ``self``.)"""


_CALLS = _Calls()


class _Method(Generic[P, T]):
    """A method of both clients made from an operation of ``_Calls``; ``runner`` names the
    client's method that runs it."""

    runner = ""

    def __init__(self, op: Callable[Concatenate[_Calls, P], T]) -> None:
        self.op = op
        self.__name__, self.__qualname__, self.__doc__ = op.__name__, op.__qualname__, op.__doc__
        signature = inspect.signature(op)
        self.__signature__ = signature.replace(
            parameters=builtins.list(signature.parameters.values())[1:],
            return_annotation=inspect.Signature.empty)

    def _bind(self, client: _Api) -> Callable[..., Any]:
        run, op = getattr(client, self.runner), self.op

        def method(*args: Any, **kwargs: Any) -> Any:
            return run(op(_CALLS, *args, **kwargs))

        method.__name__, method.__qualname__, method.__doc__ = (
            self.__name__, self.__qualname__, self.__doc__)
        method.__signature__ = self.__signature__  # type: ignore[attr-defined]
        return method


class _Call(_Method[P, Op[T]]):
    """Client: the call's result; AsyncClient: a coroutine of it."""

    runner = "_run"

    @overload
    def __get__(self, client: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self, client: Client, owner: type[Any] | None = None) -> Callable[P, T]: ...
    @overload
    def __get__(self, client: AsyncClient,
                owner: type[Any] | None = None) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, client: _Api | None, owner: type[Any] | None = None) -> Any:
        return self if client is None else self._bind(client)


class _Stream(_Method[P, Flow[T]]):
    """Client: an iterator of the items; AsyncClient: an async iterator of them."""

    runner = "_iterate"

    @overload
    def __get__(self, client: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self, client: Client,
                owner: type[Any] | None = None) -> Callable[P, Iterator[T]]: ...
    @overload
    def __get__(self, client: AsyncClient,
                owner: type[Any] | None = None) -> Callable[P, AsyncIterator[T]]: ...
    def __get__(self, client: _Api | None, owner: type[Any] | None = None) -> Any:
        return self if client is None else self._bind(client)


class _Api:
    """What both clients share: where the API is, and every method (an operation of
    ``_Calls`` each, documented there)."""

    def __init__(self, url: str | None, token: str | None) -> None:
        self.url = (url or os.environ.get("ORCHESTRATOR_URL") or DEFAULT_URL).rstrip("/")
        token = token or os.environ.get("ORCHESTRATOR_TOKEN")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    submit = _Call(_Calls.submit)
    upload = _Call(_Calls.upload)
    get = _Call(_Calls.get)
    list = _Stream(_Calls.list)
    cancel = _Call(_Calls.cancel)
    retry = _Call(_Calls.retry)
    wait = _Call(_Calls.wait)
    events = _Stream(_Calls.events)
    submit_batch = _Call(_Calls.submit_batch)
    submit_batches = _Stream(_Calls.submit_batches)
    get_batch = _Call(_Calls.get_batch)
    wait_batch = _Call(_Calls.wait_batch)
    create_schedule = _Call(_Calls.create_schedule)
    providers = _Call(_Calls.providers)
    list_schedules = _Call(_Calls.list_schedules)
    get_schedule = _Call(_Calls.get_schedule)
    update_schedule = _Call(_Calls.update_schedule)
    pause_schedule = _Call(_Calls.pause_schedule)
    resume_schedule = _Call(_Calls.resume_schedule)
    delete_schedule = _Call(_Calls.delete_schedule)
    trigger_schedule = _Call(_Calls.trigger_schedule)
    create_callback = _Call(_Calls.create_callback)
    list_callbacks = _Call(_Calls.list_callbacks)
    get_callback = _Call(_Calls.get_callback)
    update_callback = _Call(_Calls.update_callback)
    enable_callback = _Call(_Calls.enable_callback)
    disable_callback = _Call(_Calls.disable_callback)
    delete_callback = _Call(_Calls.delete_callback)
    rotate_callback_secret = _Call(_Calls.rotate_callback_secret)
    deliveries = _Stream(_Calls.deliveries)
    get_delivery = _Call(_Calls.get_delivery)
    replay_delivery = _Call(_Calls.replay_delivery)
    replay_failed = _Call(_Calls.replay_failed)
