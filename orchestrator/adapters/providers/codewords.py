"""The CodeWords runtime adapter (see ``providers/README.md`` for the wire facts).

Starts are retry-safe: ``reserve`` provisions a request id first and ``start`` sends it as
``X-Provisioned-Request-Id``, so sending the same start again never makes a second run.
``poll`` asks ``/result`` with ``timeout=result_wait_s``: 0 answers at once, a few seconds
turns a poll into a short long-poll that notices completion sooner for one request.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from orchestrator.adapters.providers.base import HttpProvider, segment
from orchestrator.domain.errors import NotReady, error_text
from orchestrator.domain.job import LaunchRequest, RemoteState, RunStatus

# What /result answers while the run is still going.
NOT_READY = frozenset({408, 504})


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
    ) -> None:
        super().__init__(name, base_url, api_key, client)
        self.result_wait_s = max(0.0, result_wait_s)
        self._poll_timeout = _extended(client.timeout, self.result_wait_s)

    def authorization(self, api_key: str) -> str:
        return api_key  # the raw key, as the official client sends it

    def reserve(self, workflow: str) -> str | None:
        body = self.send("POST", "/provision-request")
        return self.field(body, "request_id", "provision-request")

    def start(self, launch: LaunchRequest) -> str:
        path = f"/run_async/{segment(launch.workflow)}"
        if launch.path.strip("/"):
            path += "/" + "/".join(segment(p) for p in launch.path.strip("/").split("/"))
        headers = {"X-Correlation-Id": launch.job_id}
        if launch.reservation:
            headers["X-Provisioned-Request-Id"] = launch.reservation
        body = self.send("POST", path, body=launch.inputs, headers=headers)
        return self.field(body, "request_id", "run_async")

    def poll(self, workflow: str, run_id: str) -> RunStatus:
        try:
            body = self.send(
                "GET",
                f"/result/{segment(run_id)}",
                params={"timeout": _seconds(self.result_wait_s)},
                not_ready_statuses=NOT_READY,
                timeout=self._poll_timeout,
            )
        except NotReady:
            return RunStatus(RemoteState.RUNNING, raw_status="running")
        return self._run_status(body)

    def cancel(self, workflow: str, run_id: str) -> bool:
        return False

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


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def _extended(base: httpx.Timeout, wait_s: float) -> httpx.Timeout | None:
    """The client's time-outs with the read time-out lengthened by the long-poll wait."""
    if wait_s <= 0 or base.read is None:
        return None
    return httpx.Timeout(
        connect=base.connect, read=base.read + wait_s, write=base.write, pool=base.pool
    )
