"""A Python client for the REST API, sync and async: ``from orchestrator.client import Client``.

    client = Client()                       # ORCHESTRATOR_URL, ORCHESTRATOR_TOKEN
    job = client.submit("sandbox/echo", {"hello": "world"})
    job = client.wait(job["id"], timeout_s=60)
    for event in client.events(job["id"]):  # state changes and log lines, as they happen
        print(event["event"], event["data"])

    async with AsyncClient() as client:     # the same methods, awaited
        job = await client.submit("sandbox/echo", {"hello": "world"})
        async for event in client.events(job["id"]):
            print(event["event"], event["data"])

One copy of the logic for both. Every call of the API is written once, as a generator of
*steps* that does no I/O itself (``orchestrator.client.steps``): it yields a ``Request`` (and
is sent back the ``Reply``), a ``Sleep``, a ``Clock`` reading, ``OpenStream``/``ReadLine``
for server-sent events, a ``ReadFile``, or ``Emit`` (an item for the caller of a listing or a
stream). So the paths, bodies, pagination, ``wait``'s pauses, SSE parsing and reconnection
live in one place: a module a resource (``jobs``, ``batches``, ``schedules`` with providers,
``callbacks``), and ``sse``. ``Client`` and ``AsyncClient`` (``drivers``) only perform
steps: with ``httpx.Client`` and ``time.sleep``, or with ``httpx.AsyncClient`` and
``asyncio.sleep``. Their methods are the descriptors in ``api._Api``, typed for each:
``Client().get(id)`` is the job, ``AsyncClient().get(id)`` a coroutine of it; a listing is
an ``Iterator`` or an ``AsyncIterator``.

Errors: ``ClientError`` with the API's ``code``, ``message`` and HTTP ``status`` (or a
refusal before anything was sent, ``status`` None); ``Unreachable``, a ``ClientError``, when
the API cannot be reached; ``TimeoutError`` from ``wait`` and ``wait_batch``.
"""

from __future__ import annotations

from orchestrator.client.api import DEFAULT_URL
from orchestrator.client.batches import MAX_BATCH_BYTES, MAX_BATCH_JOBS
from orchestrator.client.callbacks import ID
from orchestrator.client.drivers import AsyncClient, Client
from orchestrator.client.errors import ClientError, Unreachable
from orchestrator.client.jobs import TERMINAL
from orchestrator.client.schedules import SCHEDULE_FIELDS, SCHEDULE_NAME
from orchestrator.client.sse import MAX_RECONNECTS, parse_sse
from orchestrator.client.steps import UPLOAD_TIMEOUT_S, UploadProgress

__all__ = [
    "DEFAULT_URL", "ID", "MAX_BATCH_BYTES", "MAX_BATCH_JOBS", "MAX_RECONNECTS",
    "SCHEDULE_FIELDS", "SCHEDULE_NAME", "TERMINAL", "UPLOAD_TIMEOUT_S", "AsyncClient",
    "Client", "ClientError", "Unreachable", "UploadProgress", "parse_sse",
]
