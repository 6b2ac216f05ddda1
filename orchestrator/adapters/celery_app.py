"""The Celery side of the product: queues, task names, settings, and the ``Scheduler``.

Both the workers (``workers/app.py``) and the producers (the API, ``dev``) build their Celery
app here, so a task name or route is written once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta

from celery import Celery
from kombu import Queue  # type: ignore[attr-defined]

from orchestrator.config import Settings
from orchestrator.domain.records import Action, Deliver, Launch, Poll

JOBS_QUEUE = "orchestrator.jobs"
CALLBACKS_QUEUE = "orchestrator.callbacks"

LAUNCH = "orchestrator.launch"
POLL = "orchestrator.poll"
DELIVER = "orchestrator.deliver"
SWEEP = "orchestrator.sweep"

# Delays longer than this are not held as countdown messages in a worker's memory (where a
# restart loses them and Redis' visibility time-out can run them twice): the database
# already records the due time, and the sweep hands the step out once it is due.
MAX_COUNTDOWN_S = 60.0


def make_celery(settings: Settings, name: str = "orchestrator") -> Celery:
    app = Celery(name, broker=settings.redis.url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=JOBS_QUEUE,
        task_queues=(Queue(JOBS_QUEUE), Queue(CALLBACKS_QUEUE)),
        task_routes={DELIVER: {"queue": CALLBACKS_QUEUE}},
        # Unacknowledged messages of a worker that vanished come back after this long;
        # the sweep usually finds their jobs sooner.
        broker_transport_options={"visibility_timeout": 300},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
        beat_schedule={
            # A sweep not run within its interval is dropped: the next one does its work,
            # and sweeps do not pile up while the workers are down.
            "sweep": {"task": SWEEP,
                      "schedule": timedelta(seconds=settings.jobs.sweep_interval_s),
                      "options": {"expires": settings.jobs.sweep_interval_s}},
        },
    )
    return app


class CeleryScheduler:
    """The ``Scheduler`` port on Celery: one message per action, by task name."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    def schedule(self, actions: Sequence[Action]) -> None:
        now = time.time()
        for action in actions:
            delay = 0.0 if action.at is None else action.at - now
            if delay > MAX_COUNTDOWN_S:
                continue  # parked in the database; the sweep sends it when due
            name, args = _message(action)
            self._app.send_task(name, args=args, countdown=delay if delay > 0 else None)


def _message(action: Action) -> tuple[str, list[object]]:
    if isinstance(action, Launch):
        return LAUNCH, [action.job_id] if action.run_id is None else [action.job_id, action.run_id]
    if isinstance(action, Poll):
        return POLL, [action.job_id, action.seq]
    if isinstance(action, Deliver):
        return DELIVER, [action.delivery_id]
    raise TypeError(f"unknown action {action!r}")
