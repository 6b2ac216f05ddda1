"""Callback event types, and which endpoints an event goes to.

An endpoint subscribes to event types (by default the terminal ones and
``batch.completed``) and may narrow them to some workflows and to labels that must all
match. A batch event is matched on the batch's labels; the workflow filter does not apply
to it (a batch may mix workflows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

JOB_STARTED = "job.started"
BATCH_COMPLETED = "batch.completed"
TERMINAL_EVENT_TYPES = {
    "completed": "job.completed",
    "failed": "job.failed",
    "cancelled": "job.cancelled",
    "timed_out": "job.timed_out",
}
EVENT_TYPES = (JOB_STARTED, *TERMINAL_EVENT_TYPES.values(), BATCH_COMPLETED)
DEFAULT_EVENT_TYPES = (*TERMINAL_EVENT_TYPES.values(), BATCH_COMPLETED)

# Seconds before each retry of a failed delivery: Svix's schedule (5 s, 5 min, 30 min, 2 h,
# 5 h, 10 h, 10 h), then 10 h steps to about three days of retrying in all.
CALLBACK_RETRY_S = (5, 300, 1800, 7200, 18000, 36000, 36000, 36000, 36000, 36000, 36000)


def unknown_event_types(types: Iterable[str]) -> list[str]:
    return [t for t in types if t not in EVENT_TYPES]


def wants(
    *,
    event_types: Iterable[str],
    workflows: Iterable[str],
    labels: Mapping[str, str],
    event_type: str,
    workflow: str | None,
    event_labels: Mapping[str, str],
) -> bool:
    """Whether an endpoint with these subscriptions and filters gets this event."""
    if event_type not in event_types:
        return False
    wanted = tuple(workflows)
    if wanted and workflow is not None and workflow not in wanted:
        return False
    return all(event_labels.get(key) == value for key, value in labels.items())
