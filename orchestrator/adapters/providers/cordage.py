"""The Cordage webhook adapter (see ``cordage-api.md`` and ``providers/README.md``).

Cordage has no idempotent start: a trigger whose answer was lost may or may not have made a
run, and ``start`` must not be sent again blindly (``idempotent_start = False``); callers
reconcile with ``list_runs``. The kill path is not documented, so it is a setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from orchestrator.adapters.providers.base import HttpProvider, http_urls, segment
from orchestrator.domain.job import LaunchRequest, RemoteState, RunStatus
from orchestrator.ports import RemoteRun, RunListing

DEFAULT_KILL_PATH = "/{webhook_key}/runs/{run_id}/kill"
LIST_LIMIT = 1000
_STATES = {state.value: state for state in RemoteState}


class CordageProvider(HttpProvider):
    idempotent_start = False
    supports_cancel = True

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str,
        client: httpx.Client,
        *,
        kill_path: str = DEFAULT_KILL_PATH,
        **shared: Any,  # embargoes, metrics, limiter, limits: see HttpProvider
    ) -> None:
        super().__init__(name, base_url, api_key, client, **shared)
        try:
            kill_path.format(webhook_key="k", run_id="r")
        except (KeyError, IndexError, ValueError):
            raise ValueError(
                f"kill_path '{kill_path}' may use only {{webhook_key}} and {{run_id}}, "
                f"such as '{DEFAULT_KILL_PATH}'"
            ) from None
        self.kill_path = "/" + kill_path.lstrip("/")

    def reserve(self, workflow: str) -> str | None:
        return None  # nothing to reserve: Cordage has no provisioned ids

    def start(self, launch: LaunchRequest) -> str:
        # X-Correlation-Id is not a Cordage feature; it is sent because servers ignore
        # unknown headers and it lets the sandbox and proxies tie a run to its job.
        body = self.send(
            "POST",
            f"/{segment(launch.workflow)}/trigger",
            operation="trigger",
            body=launch.inputs,
            headers={"X-Correlation-Id": launch.job_id},
        )
        return self.field(body, "run_id", "trigger")

    def poll(self, workflow: str, run_id: str) -> RunStatus:
        body = self.send("GET", f"/{segment(workflow)}/runs/{segment(run_id)}", operation="read")
        return self.run_status(body)

    def cancel(self, workflow: str, run_id: str) -> bool:
        path = self.kill_path.format(webhook_key=segment(workflow), run_id=segment(run_id))
        self.send("POST", path, operation="cancel")
        return True

    def output_files(self, outputs: object) -> list[str]:
        """Cordage's ``outputs`` are URLs of files in its storage: every http(s) one."""
        return http_urls(outputs)

    def list_runs(self, webhook_key: str) -> list[dict[str, object]]:
        """The webhook's recent runs, newest first (each as ``poll`` sees it raw).

        As many as the runtime gives in one page: ``limit`` asks for a long one (the
        parameter is not documented; a runtime that ignores it gives its own page, and
        reconciling then concludes nothing from a page that does not reach back far enough).
        """
        body = self.send("GET", f"/{segment(webhook_key)}/runs", operation="read",
                         params={"limit": str(LIST_LIMIT)})
        runs = body.get("runs") if isinstance(body, Mapping) else None
        if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
            raise self.unexpected("list runs did not answer {'runs': [...]}")
        return runs

    def recent_runs(self, workflow: str) -> RunListing:
        """``RunFinder``: the webhook's recent runs, to reconcile a lost trigger answer.
        A page shorter than the ``limit`` asked for is taken to hold every run (an
        assumption about an undocumented endpoint, stated in docs/providers.md)."""
        raw = self.list_runs(workflow)
        runs = [RemoteRun(run_id=str(run.get("run_id") or ""),
                          created_at=_epoch(run.get("created_at")),
                          status=str(run.get("status") or ""), inputs=run.get("inputs"))
                for run in raw if run.get("run_id")]
        return RunListing(runs, complete=len(raw) < LIST_LIMIT)

    def run_status(self, body: object) -> RunStatus:
        """A run object (from get run or list runs) as a ``RunStatus``."""
        raw = body.get("status") if isinstance(body, Mapping) else None
        state = _STATES.get(raw) if isinstance(raw, str) else None
        if state is None or not isinstance(body, Mapping):
            raise self.unexpected(f"run status {raw!r} is none of {sorted(_STATES)}")
        if state is RemoteState.COMPLETED:
            return RunStatus(state, outputs=body.get("outputs", []), raw_status=state.value)
        if state is RemoteState.FAILED:
            error = body.get("error")
            message = error[:500] if isinstance(error, str) and error else "the run failed"
            return RunStatus(state, error=message, raw_status=state.value)
        return RunStatus(state, raw_status=state.value)


def _epoch(value: object) -> float | None:
    """An ISO 8601 time such as ``2024-01-15T10:30:00Z`` as epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
