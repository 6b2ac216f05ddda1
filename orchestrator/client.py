"""A Python client for the REST API: ``from orchestrator.client import Client``.

    client = Client()                       # ORCHESTRATOR_URL, ORCHESTRATOR_TOKEN
    job = client.submit("sandbox/echo", {"hello": "world"})
    job = client.wait(job["id"], timeout_s=60)
    for event in client.events(job["id"]):  # state changes and log lines, as they happen
        print(event["event"], event["data"])
"""

from __future__ import annotations

import builtins
import json
import mimetypes
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}
UPLOAD_TIMEOUT_S = 300.0  # a 50 MiB file over a slow link
MAX_RECONNECTS = 5  # consecutive failed attempts to reopen an event stream before giving up
# The API's limits on one batch: jobs, and (by default, ``[jobs] max_batch_bytes``) bytes; a
# client splits a larger list by some margin under the latter.
MAX_BATCH_JOBS = 10_000
MAX_BATCH_BYTES = 48 * 1024 * 1024
UploadProgress = Callable[[int, int], None]  # (bytes sent, bytes in all)
# Keyword arguments of ``create_schedule`` that belong to the schedule, not its job template.
SCHEDULE_FIELDS = frozenset({"labels", "paused", "overlap", "catchup", "catchup_window_s"})


class ClientError(Exception):
    """The API answered with an error, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "error") -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout_s: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = (url or os.environ.get("ORCHESTRATOR_URL") or DEFAULT_URL).rstrip("/")
        token = token or os.environ.get("ORCHESTRATOR_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s,
                                  transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise _unreachable(self.url, exc) from None
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def submit(self, workflow: str, inputs: object = None, *,
               idempotency_key: str | None = None,
               files: Mapping[str, str | Path] | None = None, **fields: Any) -> dict[str, Any]:
        """Submit one job. Each of ``files`` is uploaded to the workflow's provider first
        and its URL set as ``inputs[key]`` (uploading again makes new URLs, so a retry with
        the same ``idempotency_key`` and files is a different body: a 409)."""
        if files:
            inputs = self._with_files(workflow, inputs, files)
        body = {"workflow": workflow, "inputs": {} if inputs is None else inputs,
                **{k: v for k, v in fields.items() if v is not None}}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        result: dict[str, Any] = self._call("POST", "/v1/jobs", json=body, headers=headers)
        return result

    def _with_files(self, workflow: str, inputs: object,
                    files: Mapping[str, str | Path]) -> dict[str, Any]:
        if inputs is not None and not isinstance(inputs, Mapping):
            raise ClientError("inputs must be a JSON object to take files", code="invalid_inputs")
        # Every file is checked before any is uploaded, so a typo uploads nothing.
        for key, path in files.items():
            if not Path(path).is_file():
                raise ClientError(f"file for input '{key}' not found: {path}",
                                  code="file_not_found")
        provider = workflow.partition("/")[0]
        urls = {key: self.upload(provider, path) for key, path in files.items()}
        return {**(inputs or {}), **urls}

    def upload(self, provider: str, path: str | Path) -> str:
        """Upload a file to a provider that takes files; the URL to pass in inputs."""
        path = Path(path)
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise ClientError(f"cannot read {path}: {exc.strerror or exc}",
                              code="file_unreadable") from None
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        result = self._call("POST", "/v1/files", content=content,
                            params={"provider": provider, "filename": path.name},
                            headers={"Content-Type": content_type}, timeout=UPLOAD_TIMEOUT_S)
        return str(result["url"])

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job; the job with ``cancellation`` (``remote``, ``message``). A 409 if
        it has already ended."""
        result: dict[str, Any] = self._call("POST", f"/v1/jobs/{quote(job_id, safe='')}/cancel")
        return result

    def retry(self, job_id: str) -> dict[str, Any]:
        """A new attempt of a failed, cancelled or timed-out job; the job, queued again."""
        result: dict[str, Any] = self._call("POST", f"/v1/jobs/{quote(job_id, safe='')}/retry")
        return result

    def events(self, job_id: str, *,
               last_event_id: str | None = None) -> Iterator[dict[str, Any]]:
        """The job's events (``{"event", "id", "data"}``) as they happen: ``state`` changes,
        ``log`` lines, ``warning``s, and last ``end``. A stream that closes before ``end``
        (the server bounds each request) is reopened where it stopped."""
        resume = _Resume.parse(last_event_id)
        failures, reached = 0, False
        while True:
            try:
                for event in self._event_stream(job_id, resume.header()):
                    failures, reached = 0, True
                    resume.note(event.get("id"))
                    yield event
                    if event["event"] == "end":
                        return
            except httpx.TransportError as exc:
                failures += 1
                if not reached or failures >= MAX_RECONNECTS:
                    raise _unreachable(self.url, exc) from None
            time.sleep(min(0.5 * 2 ** failures, 10.0))

    def _event_stream(self, job_id: str, last_event_id: str | None) -> Iterator[dict[str, Any]]:
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        path = f"/v1/jobs/{quote(job_id, safe='')}/events"
        with self._http.stream("GET", path, headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                raise _error(response)
            yield from parse_sse(response.iter_lines())

    def _pages(self, path: str, params: dict[str, Any],
               limit: int | None) -> Iterator[dict[str, Any]]:
        """Every item of a cursor-paginated list, at most ``limit``."""
        seen = 0
        while True:
            page = self._call("GET", path, params=params)
            for item in page["items"]:
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
            if not page.get("next_cursor"):
                return
            params = {**params, "cursor": page["next_cursor"]}

    def get(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}")
        return result

    def list(self, *, page_size: int = 100, limit: int | None = None,
             **filters: str | None) -> Iterator[dict[str, Any]]:
        """Every matching job, newest first, following the cursor page by page."""
        params: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
        params["limit"] = page_size
        yield from self._pages("/v1/jobs", params, limit)

    def wait(self, job_id: str, *, timeout_s: float | None = None,
             interval_s: float = 0.5) -> dict[str, Any]:
        """Poll until the job is terminal; TimeoutError after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.get(job_id)
            if job["status"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout_s}s")
            time.sleep(interval_s)


    # batches --------------------------------------------------------------------------------

    def submit_batch(self, jobs: Sequence[Mapping[str, Any]], *,
                     defaults: Mapping[str, Any] | None = None,
                     callback_url: str | None = None, labels: Mapping[str, str] | None = None,
                     idempotency_key: str | None = None,
                     on_upload: UploadProgress | None = None) -> dict[str, Any]:
        """Submit 1 to 10,000 jobs (job specs as dicts) as one batch: all are accepted or
        none. Each job takes the ``defaults`` it does not set itself, ``labels`` under its
        own, and ``callback_url`` if it names none. Returns ``{"id", "job_ids", "created"}``
        (job ids in input order; ``created`` is False when an earlier batch with the same
        ``idempotency_key`` and jobs was returned). ``on_upload(sent, total)`` is called as
        the request body's bytes go out. More jobs: ``submit_batches``."""
        batch = _BatchBody([_encoded(job) for job in jobs], defaults=defaults,
                           callback_url=callback_url, labels=labels,
                           idempotency_key=idempotency_key)
        return self._post_batch(batch, on_upload)

    def submit_batches(self, jobs: Sequence[Mapping[str, Any]], *,
                       idempotency_key: str | None = None, chunk_size: int = MAX_BATCH_JOBS,
                       max_bytes: int = MAX_BATCH_BYTES,
                       on_jobs_sent: UploadProgress | None = None,
                       **fields: Any) -> Iterator[dict[str, Any]]:
        """Any number of jobs as consecutive batches of at most ``chunk_size`` jobs and
        ``max_bytes`` of body each, yielding each batch's answer (as ``submit_batch``, plus
        ``first``: the index of its first job) as it is accepted. With more than one batch,
        batch n's key is ``<idempotency_key>-n``, so submitting the same jobs again with the
        same key makes no new job. ``on_jobs_sent(sent, total)`` follows the upload in
        jobs (estimated within a batch). ``fields``: ``defaults``, ``callback_url``,
        ``labels``."""
        chunks = _chunked([_encoded(job) for job in jobs], chunk_size, max_bytes)
        first = 0
        for number, chunk in enumerate(chunks, start=1):
            key = idempotency_key
            if key and len(chunks) > 1:
                key = f"{key}-{number}"
            batch = _BatchBody(chunk, idempotency_key=key, **fields)
            progress = None
            if on_jobs_sent is not None:
                progress = _in_jobs(on_jobs_sent, first, len(chunk), len(jobs))
            result = self._post_batch(batch, progress)
            yield {**result, "first": first}
            first += len(chunk)

    def _post_batch(self, batch: _BatchBody, on_upload: UploadProgress | None) -> dict[str, Any]:
        body = batch.encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        content: bytes | Iterator[bytes] = body
        if on_upload is not None:
            content = _reporting(body, on_upload)
        response = self._send("POST", "/v1/batches", content=content, headers=headers,
                              timeout=UPLOAD_TIMEOUT_S)
        result: dict[str, Any] = response.json()
        return {**result, "created": response.status_code == 201}

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        """The batch: ``total``, ``counts`` by state, ``done``, ``created_at``,
        ``finished_at``. Its jobs: ``list(batch_id=…)``."""
        result: dict[str, Any] = self._call("GET", f"/v1/batches/{quote(batch_id, safe='')}")
        return result

    def wait_batch(self, batch_id: str, *, timeout_s: float | None = None,
                   interval_s: float = 1.0) -> dict[str, Any]:
        """Poll until every job of the batch has ended; TimeoutError after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            batch = self.get_batch(batch_id)
            if batch["done"]:
                return batch
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id} has not ended after {timeout_s}s")
            time.sleep(interval_s)

    # schedules ------------------------------------------------------------------------------

    def create_schedule(self, name: str, workflow: str, inputs: object = None, *,
                        cron: str | None = None, every: str | None = None,
                        timezone: str = "UTC", **fields: Any) -> dict[str, Any]:
        """Create a schedule that submits ``workflow`` with ``inputs`` at each slot of a
        ``cron`` rule (in ``timezone``) or ``every`` interval. ``fields`` are the schedule's
        ``labels``, ``paused``, ``overlap``, ``catchup`` and ``catchup_window_s``, or the job
        template's other fields (``priority``, ``callback_url``, ``path``, ``timeout_s``,
        ``retries``, and the template's own labels as ``job_labels``).

            client.create_schedule("nightly", "sandbox/echo", {"a": 1}, cron="0 2 * * *",
                                   timezone="Europe/Berlin", overlap="buffer_one")
        """
        given = {k: v for k, v in fields.items() if v is not None}
        job: dict[str, Any] = {"workflow": workflow, "inputs": {} if inputs is None else inputs}
        if "job_labels" in given:
            job["labels"] = given.pop("job_labels")
        job.update({k: given.pop(k) for k in list(given) if k not in SCHEDULE_FIELDS})
        body = {"name": name, "cron": cron, "every": every, "timezone": timezone, "job": job,
                **given}
        result: dict[str, Any] = self._call("POST", "/v1/schedules", json=body)
        return result

    def providers(self) -> builtins.list[dict[str, Any]]:
        """The configured providers: limits, what is left of each, in flight, queued."""
        items: builtins.list[dict[str, Any]] = self._call("GET", "/v1/providers")["items"]
        return items

    def list_schedules(self) -> builtins.list[dict[str, Any]]:
        """Every schedule, by name."""
        items: builtins.list[dict[str, Any]] = self._call("GET", "/v1/schedules")["items"]
        return items

    def get_schedule(self, name: str, slots: int = 50) -> dict[str, Any]:
        """The schedule with its ``slots``: the most recent ones, newest first."""
        result: dict[str, Any] = self._call("GET", _schedule_path(name),
                                            params={"slots": slots})
        return result

    def update_schedule(self, name: str, **changes: Any) -> dict[str, Any]:
        """Change the given fields (``cron``, ``every``, ``timezone``, ``job``, ``labels``,
        ``paused``, ``overlap``, ``catchup``, ``catchup_window_s``); ``job`` replaces the
        whole template."""
        result: dict[str, Any] = self._call("PATCH", _schedule_path(name), json=changes)
        return result

    def pause_schedule(self, name: str) -> dict[str, Any]:
        return self.update_schedule(name, paused=True)

    def resume_schedule(self, name: str) -> dict[str, Any]:
        """Resume from now on: slots passed while paused are not caught up."""
        return self.update_schedule(name, paused=False)

    def delete_schedule(self, name: str) -> None:
        """Delete the schedule and its slot history; the jobs it made stay."""
        self._call("DELETE", _schedule_path(name))

    def trigger_schedule(self, name: str) -> dict[str, Any]:
        """Submit the schedule's job now (even if paused); the job."""
        result: dict[str, Any] = self._call("POST", _schedule_path(name) + "/trigger")
        return result


    # callbacks ------------------------------------------------------------------------------

    def create_callback(self, url: str, *, event_types: Sequence[str] | None = None,
                        workflows: Sequence[str] | None = None,
                        labels: Mapping[str, str] | None = None,
                        description: str | None = None) -> dict[str, Any]:
        """Register a callback endpoint. The answer carries its ``secret`` (``whsec_…``),
        shown this once: keep it to check the signatures of what the endpoint receives.
        ``event_types`` left out: the terminal job events and ``batch.completed``;
        ``workflows`` and ``labels`` narrow the events to those jobs (or batches).

            endpoint = client.create_callback("https://example.com/hook",
                                              event_types=["job.failed"])
            save(endpoint["secret"])
        """
        body: dict[str, Any] = {"url": url}
        if event_types is not None:
            body["event_types"] = builtins.list(event_types)
        if workflows is not None:
            body["workflows"] = builtins.list(workflows)
        if labels is not None:
            body["labels"] = dict(labels)
        if description is not None:
            body["description"] = description
        result: dict[str, Any] = self._call("POST", "/v1/callbacks", json=body)
        return result

    def list_callbacks(self) -> builtins.list[dict[str, Any]]:
        """Every callback endpoint, oldest first (never with a secret)."""
        items: builtins.list[dict[str, Any]] = self._call("GET", "/v1/callbacks")["items"]
        return items

    def get_callback(self, endpoint_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", _id_path("callbacks", endpoint_id))
        return result

    def update_callback(self, endpoint_id: str, **changes: Any) -> dict[str, Any]:
        """Change the given fields (``url``, ``event_types``, ``workflows``, ``labels``,
        ``description``, ``enabled``); ``enabled=True`` re-enables a disabled endpoint."""
        result: dict[str, Any] = self._call("PATCH", _id_path("callbacks", endpoint_id),
                                            json=changes)
        return result

    def enable_callback(self, endpoint_id: str) -> dict[str, Any]:
        """Re-enable an endpoint (disabled by request, by a 410 or after days of failures);
        its failed deliveries are not sent again by that: ``replay_failed``."""
        return self.update_callback(endpoint_id, enabled=True)

    def disable_callback(self, endpoint_id: str) -> dict[str, Any]:
        """Stop sending to the endpoint; its pending deliveries end failed (replayable)."""
        return self.update_callback(endpoint_id, enabled=False)

    def delete_callback(self, endpoint_id: str) -> None:
        """Remove the endpoint; its deliveries stay in the log."""
        self._call("DELETE", _id_path("callbacks", endpoint_id))

    def rotate_callback_secret(self, endpoint_id: str) -> dict[str, Any]:
        """A new ``secret``, shown this once; the previous one signs too until
        ``secret_rotating_until``."""
        result: dict[str, Any] = self._call(
            "POST", _id_path("callbacks", endpoint_id) + "/rotate-secret")
        return result

    def deliveries(self, endpoint_id: str, *, status: str | None = None,
                   since: str | datetime | None = None, page_size: int = 100,
                   limit: int | None = None) -> Iterator[dict[str, Any]]:
        """The endpoint's deliveries, newest first (``status``: ``pending``,
        ``succeeded`` or ``failed``; ``since``: created at or after), following the cursor
        page by page. Each one's attempts: ``get_delivery``."""
        params: dict[str, Any] = {"limit": page_size}
        if status is not None:
            params["status"] = status
        if since is not None:
            params["since"] = _instant(since)
        path = _id_path("callbacks", endpoint_id) + "/deliveries"
        yield from self._pages(path, params, limit)

    def get_delivery(self, delivery_id: str) -> dict[str, Any]:
        """One delivery with its ``attempt_log``."""
        result: dict[str, Any] = self._call("GET", _id_path("deliveries", delivery_id))
        return result

    def replay_delivery(self, delivery_id: str) -> dict[str, Any]:
        """Send the delivery again now, with the same ``webhook-id`` and body; the delivery,
        pending again."""
        result: dict[str, Any] = self._call(
            "POST", _id_path("deliveries", delivery_id) + "/replay")
        return result

    def replay_failed(self, endpoint_id: str, since: str | datetime) -> dict[str, Any]:
        """Send every failed delivery of the endpoint created at or after ``since`` (RFC
        3339, or an aware datetime) again: ``{"replayed": n, "delivery_ids": [...]}``."""
        result: dict[str, Any] = self._call(
            "POST", _id_path("callbacks", endpoint_id) + "/replay",
            json={"since": _instant(since)})
        return result


class _BatchBody:
    """A batch request built from jobs already encoded one by one (so a long list is
    encoded once, then cut into batches by count and size)."""

    def __init__(self, jobs: builtins.list[bytes], *,
                 defaults: Mapping[str, Any] | None = None, callback_url: str | None = None,
                 labels: Mapping[str, str] | None = None,
                 idempotency_key: str | None = None) -> None:
        self.jobs = jobs
        self.fields = {k: v for k, v in (("defaults", defaults), ("callback_url", callback_url),
                                         ("labels", labels),
                                         ("idempotency_key", idempotency_key))
                       if v is not None}

    def encode(self) -> bytes:
        rest = _encoded(self.fields)[1:-1]
        return b'{"jobs":[' + b",".join(self.jobs) + b"]" + (b"," + rest if rest else b"") + b"}"


def _encoded(value: object) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ClientError(f"a job cannot be sent as JSON: {exc}", code="invalid_job") from None


def _chunked(jobs: builtins.list[bytes], count: int,
             max_bytes: int) -> builtins.list[builtins.list[bytes]]:
    chunks: builtins.list[builtins.list[bytes]] = []
    current: builtins.list[bytes] = []
    size = 0
    for job in jobs:
        if current and (len(current) >= count or size + len(job) + 1 > max_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(job)
        size += len(job) + 1
    if current:
        chunks.append(current)
    return chunks


def _in_jobs(on_jobs_sent: UploadProgress, first: int, count: int,
             total: int) -> UploadProgress:
    def on_upload(sent: int, size: int) -> None:
        on_jobs_sent(first + count * sent // max(size, 1), total)

    return on_upload


def _reporting(body: bytes, on_upload: UploadProgress) -> Iterator[bytes]:
    step = 256 * 1024
    for start in range(0, len(body), step):
        yield body[start:start + step]
        on_upload(min(start + step, len(body)), len(body))


class _Resume:
    """The two cursors of an event stream, sent back as ``s<n>,l<at>``."""

    def __init__(self, state: str | None = None, log: str | None = None) -> None:
        self.state, self.log = state, log

    @classmethod
    def parse(cls, value: str | None) -> _Resume:
        if not value:
            return cls()
        if value.startswith("s"):
            state, _, log = value.partition(",")
            return cls(state, log or None)
        return cls(None, value)

    def note(self, event_id: object) -> None:
        if isinstance(event_id, str) and event_id.startswith("s"):
            self.state = event_id
        elif isinstance(event_id, str) and event_id.startswith("l"):
            self.log = event_id

    def header(self) -> str | None:
        return ",".join(c for c in (self.state, self.log) if c) or None


def parse_sse(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Server-sent events from their lines: ``{"event", "id", "data"}``, the data decoded
    from JSON where it is JSON."""
    event, event_id, data = "message", None, list[str]()
    for line in lines:
        if not line:
            if data:
                yield {"event": event, "id": event_id, "data": _decoded("\n".join(data))}
            event, event_id, data = "message", None, []
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            event_id = value


def _decoded(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data


SCHEDULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def _schedule_path(name: str) -> str:
    # Checked here: '.' or '..' would be read as path segments and reach another route.
    if not SCHEDULE_NAME.match(name):
        raise ClientError(f"'{name}' is not a schedule name: letters, digits, '.', '_' and "
                          "'-', starting with a letter or digit", code="invalid_name")
    return f"/v1/schedules/{quote(name, safe='')}"


ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _id_path(collection: str, resource_id: str) -> str:
    # Checked here, as names are: '..' would reach another route.
    if not ID.match(resource_id):
        raise ClientError(f"'{resource_id}' is not an id: letters, digits, '_' and '-'",
                          code="invalid_id")
    return f"/v1/{collection}/{resource_id}"


def _instant(value: str | datetime) -> str:
    """An RFC 3339 time for the API; a datetime must know its time zone."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ClientError("a time needs a time zone (e.g. datetime.now(UTC))",
                              code="invalid_time")
        return value.isoformat()
    return value


def _unreachable(url: str, exc: Exception) -> ClientError:
    return ClientError(
        f"cannot reach the API at {url} ({type(exc).__name__}); is 'orchestrator api' (or "
        "'orchestrator dev') running? Set ORCHESTRATOR_URL to its address")


def _error(response: httpx.Response) -> ClientError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        error = body["error"]
        return ClientError(str(error.get("message")), status=response.status_code,
                           code=str(error.get("code")))
    return ClientError(f"HTTP {response.status_code}: {response.text[:200]}",
                       status=response.status_code)
