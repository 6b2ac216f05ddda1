"""The CodeWords runtime adapter (see ``providers/README.md`` for the wire facts).

Starts are retry-safe: ``reserve`` provisions a request id first and ``start`` sends it as
``X-Provisioned-Request-Id``, so sending the same start again never makes a second run.
``poll`` asks ``/result`` with ``timeout=result_wait_s``: 0 answers at once, a few seconds
turns a poll into a short long-poll that notices completion sooner for one request.

``logs`` follows ``/logs/{id}`` (NDJSON lines, each with ``createdAt``, resumable with
``?after=``) and ``upload`` stores an input file with ``POST /file`` and a ``PUT`` of the bytes
to the presigned URL it answers; both make CodeWords a ``LogSource`` and ``FileUploads``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from orchestrator.adapters.providers.base import (
    NOT_SENT_ERRORS,
    HttpProvider,
    http_urls,
    segment,
)
from orchestrator.domain.errors import (
    NotReady,
    Permanent,
    RateLimited,
    Transient,
    error_text,
    retry_after_seconds,
)
from orchestrator.domain.job import LaunchRequest, RemoteState, RunStatus
from orchestrator.ports import LogLine

# What /result answers while the run is still going.
NOT_READY = frozenset({408, 504})
# Where a log line's text may be, in order; the sandbox and the official client use "message".
MESSAGE_KEYS = ("message", "text", "msg")
# Named in messages instead of the presigned upload URL, whose query string is a credential.
UPLOAD_URL = "the upload URL"


class CodeWordsProvider(HttpProvider):
    idempotent_start = True
    supports_cancel = False  # the API has no way to stop a run

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str,
        client: httpx.Client,
        *,
        result_wait_s: float = 0.0,
        **shared: Any,  # embargoes, metrics, limiter, limits: see HttpProvider
    ) -> None:
        super().__init__(name, base_url, api_key, client, **shared)
        self.result_wait_s = max(0.0, result_wait_s)
        self._poll_timeout = _extended(client.timeout, self.result_wait_s)

    def authorization(self, api_key: str) -> str:
        return api_key  # the raw key, as the official client sends it

    def reserve(self, workflow: str) -> str | None:
        # Its own operation: it starts nothing, so it takes no turn of the trigger limit.
        body = self.send("POST", "/provision-request", operation="provision")
        return self.field(body, "request_id", "provision-request")

    def start(self, launch: LaunchRequest) -> str:
        path = f"/run_async/{segment(launch.workflow)}"
        if launch.path.strip("/"):
            path += "/" + "/".join(segment(p) for p in launch.path.strip("/").split("/"))
        headers = {"X-Correlation-Id": launch.job_id}
        if launch.reservation:
            headers["X-Provisioned-Request-Id"] = launch.reservation
        body = self.send("POST", path, operation="trigger", body=launch.inputs, headers=headers)
        return self.field(body, "request_id", "run_async")

    def poll(self, workflow: str, run_id: str) -> RunStatus:
        try:
            body = self.send(
                "GET",
                f"/result/{segment(run_id)}",
                operation="read",
                params={"timeout": _seconds(self.result_wait_s)},
                not_ready_statuses=NOT_READY,
                timeout=self._poll_timeout,
            )
        except NotReady:
            return RunStatus(RemoteState.RUNNING, raw_status="running")
        return self._run_status(body)

    def cancel(self, workflow: str, run_id: str) -> bool:
        return False

    def output_files(self, outputs: object) -> list[str]:
        """CodeWords documents no shape for output files: a workflow's answer
        (``responseJson``) is its own JSON. By our convention (the sandbox's ``files``
        workflow answers so) only a top-level ``files`` list of http(s) URLs names files to
        keep; URLs anywhere else in the answer are data."""
        return http_urls(outputs.get("files")) if isinstance(outputs, Mapping) else []

    def logs(self, run_id: str, *, after: str | None = None) -> Iterator[LogLine]:
        """The run's log lines as they are written, past ``after`` (a line's ``at``).

        Ends when the runtime closes the stream (the run has ended) or when nothing arrived
        for the client's read time-out: a quiet run is not an error, and the caller resumes
        with ``after`` set to the last line's ``at``. Malformed lines are skipped.
        """
        params = {"after": after} if after else None
        with self.stream("GET", f"/logs/{segment(run_id)}", operation="read", params=params,
                         headers={"Accept": "text/event-stream"}) as response:
            try:
                for raw in response.iter_lines():
                    line = _log_line(raw)
                    if line is not None:
                        yield line
            except httpx.ReadTimeout:
                return

    def upload(self, filename: str, content: bytes, content_type: str | None = None) -> str:
        """Store an input file on the runtime; returns the URL to pass in the inputs.

        ``content_type`` is not sent: a presigned URL accepts the headers it was signed for,
        which are the ``upload_headers`` the runtime gives, else (as the official client
        sends) ``application/octet-stream``.
        """
        body = self.send("POST", "/file", operation="file", params={"filename": filename})
        upload_uri = self.field(body, "upload_uri", "file")
        download_uri = self.field(body, "download_uri", "file")
        self._put_file(upload_uri, content, _upload_headers(body))
        return download_uri

    def _put_file(self, url: str, content: bytes, headers: Mapping[str, str]) -> None:
        # Straight to the storage behind the presigned URL: without our Authorization
        # header (the client carries none of its own), and without the runtime's embargoes.
        try:
            response = self._client.put(url, content=content, headers=dict(headers))
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError,
                UnicodeError):
            # A URL or upload_headers that cannot be sent as they are (non-ASCII values).
            raise Permanent(f"{self.name}: the runtime answered /file with an unusable "
                            "upload_uri or upload_headers") from None
        except NOT_SENT_ERRORS as exc:
            raise self._transport_error("PUT", UPLOAD_URL, exc, sent=False) from None
        except httpx.TransportError as exc:
            raise self._transport_error("PUT", UPLOAD_URL, exc, sent=True) from None
        _raise_for_upload(self.name, response)

    def _run_status(self, body: object) -> RunStatus:
        if not isinstance(body, Mapping):
            raise self.unexpected("the result is not a JSON object")
        status = body.get("responseStatus")
        if isinstance(status, bool) or not isinstance(status, int):
            # A record without the workflow's answer yet: the run is still going.
            return RunStatus(RemoteState.RUNNING, raw_status=str(body.get("status") or "running"))
        output = body.get("responseJson")
        if 200 <= status < 300:
            return RunStatus(RemoteState.COMPLETED, outputs=output, raw_status=str(status))
        if isinstance(output, str) and output:
            message = output[:500]
        else:
            message = error_text(output, f"the workflow answered HTTP {status}")
        return RunStatus(RemoteState.FAILED, error=message, raw_status=str(status))


def _log_line(raw: str) -> LogLine | None:
    """One NDJSON log line, or None for a blank, malformed or undated one."""
    text = raw.strip()
    if text.startswith("data:"):  # tolerate server-sent-event framing of the same objects
        text = text[5:].strip()
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None
    at = obj.get("createdAt") if isinstance(obj, dict) else None
    if not isinstance(at, str) or not at:
        return None  # without its time a line cannot be resumed after
    message = next((v for k in MESSAGE_KEYS if isinstance(v := obj.get(k), str)), None)
    if message is None:
        message = json.dumps({k: v for k, v in obj.items() if k != "createdAt"})
    return LogLine(at=at, message=message, fields=obj)


def _upload_headers(body: object) -> dict[str, str]:
    given = body.get("upload_headers") if isinstance(body, Mapping) else None
    if isinstance(given, Mapping) and given:
        return {str(k): str(v) for k, v in given.items()}
    return {"Content-Type": "application/octet-stream"}


def _raise_for_upload(provider: str, response: httpx.Response) -> None:
    """The storage's refusal as a ``ProviderError``. Its body is left out: a storage error
    can quote the signature it was sent."""
    status = response.status_code
    if 200 <= status < 300:
        return
    message = f"{provider}: storing the file failed (PUT to {UPLOAD_URL}: HTTP {status})"
    wait = retry_after_seconds(response.headers, None, time.time())
    if status == 429:
        raise RateLimited(message, wait if wait is not None else 1.0)
    if status >= 500 or status == 408:
        raise Transient(message, retry_after=wait)
    raise Permanent(message, code="upload_failed")


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def _extended(base: httpx.Timeout, wait_s: float) -> httpx.Timeout | None:
    """The client's time-outs with the read time-out lengthened by the long-poll wait."""
    if wait_s <= 0 or base.read is None:
        return None
    return httpx.Timeout(
        connect=base.connect, read=base.read + wait_s, write=base.write, pool=base.pool
    )
