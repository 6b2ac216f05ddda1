"""The operations on schedules (create, list, get, update, pause, resume, delete, trigger)
and on providers."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from orchestrator.client.errors import ClientError
from orchestrator.client.steps import Op, fetch, items

# Keyword arguments of ``create_schedule`` that belong to the schedule, not its job template.
SCHEDULE_FIELDS = frozenset({"labels", "paused", "overlap", "catchup", "catchup_window_s"})
SCHEDULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class ScheduleCalls:
    """Schedules, and the providers they (and every job) run on."""

    def create_schedule(self, /, name: str, workflow: str, inputs: object = None, *,
                        cron: str | None = None, every: str | None = None,
                        timezone: str = "UTC", **fields: Any) -> Op[dict[str, Any]]:
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
        return (yield from fetch("POST", "/v1/schedules", json=body))

    def providers(self) -> Op[list[dict[str, Any]]]:
        """The configured providers: limits, what is left of each, in flight, queued."""
        return (yield from items("/v1/providers"))

    def list_schedules(self) -> Op[list[dict[str, Any]]]:
        """Every schedule, by name."""
        return (yield from items("/v1/schedules"))

    def get_schedule(self, name: str, slots: int = 50) -> Op[dict[str, Any]]:
        """The schedule with its ``slots``: the most recent ones, newest first."""
        return (yield from fetch("GET", _schedule_path(name), params={"slots": slots}))

    def update_schedule(self, /, name: str, **changes: Any) -> Op[dict[str, Any]]:
        """Change the given fields (``cron``, ``every``, ``timezone``, ``job``, ``labels``,
        ``paused``, ``overlap``, ``catchup``, ``catchup_window_s``); ``job`` replaces the
        whole template."""
        return (yield from fetch("PATCH", _schedule_path(name), json=changes))

    def pause_schedule(self, name: str) -> Op[dict[str, Any]]:
        """Stop firing the schedule's slots until it is resumed."""
        return (yield from self.update_schedule(name, paused=True))

    def resume_schedule(self, name: str) -> Op[dict[str, Any]]:
        """Resume from now on: slots passed while paused are not caught up."""
        return (yield from self.update_schedule(name, paused=False))

    def delete_schedule(self, name: str) -> Op[None]:
        """Delete the schedule and its slot history; the jobs it made stay."""
        yield from fetch("DELETE", _schedule_path(name))

    def trigger_schedule(self, name: str) -> Op[dict[str, Any]]:
        """Submit the schedule's job now (even if paused); the job."""
        return (yield from fetch("POST", _schedule_path(name) + "/trigger"))


def _schedule_path(name: str) -> str:
    # Checked here: '.' or '..' would be read as path segments and reach another route.
    if not SCHEDULE_NAME.match(name):
        raise ClientError(f"'{name}' is not a schedule name: letters, digits, '.', '_' and "
                          "'-', starting with a letter or digit", code="invalid_name")
    return f"/v1/schedules/{quote(name, safe='')}"
