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

from orchestrator.adapters.redis.delayed import RedisDelayQueue, Step
from orchestrator.adapters.redis.wake import RedisWakeFlag
from orchestrator.config import Settings
from orchestrator.domain.records import Action, Deliver, Launch, Poll

JOBS_QUEUE = "orchestrator.jobs"
CALLBACKS_QUEUE = "orchestrator.callbacks"

LAUNCH = "orchestrator.launch"
POLL = "orchestrator.poll"
DELIVER = "orchestrator.deliver"
SWEEP = "orchestrator.sweep"

# A step due sooner than this is sent at once (the worker finds it a moment early and the
# services' due-time checks allow for that); later ones wait in the delay queue.
SEND_NOW_WITHIN_S = 0.05
# More steps due now than this (a batch's launches) go through the delay queue too: one
# write to Redis instead of a message each, handed to the broker by beat in bulk.
SEND_NOW_AT_MOST = 50


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
    """The ``Scheduler`` port on Celery: a step due now is one message, by task name; a step
    due later waits in the delay queue (never as a countdown in a worker's memory) until
    ``send_due`` (beat, every tick) hands it to the broker."""

    def __init__(self, app: Celery, delayed: RedisDelayQueue,
                 wake: RedisWakeFlag | None = None) -> None:
        """``wake``: deliveries go out in rounds, so a delivery message is sent only when
        no other is waiting (without it, one message per delivery)."""
        self._app = app
        self._delayed = delayed
        self._wake = wake

    def schedule(self, actions: Sequence[Action]) -> None:
        now = time.time()
        later: list[tuple[Step, float]] = []
        due: list[Step] = []
        for action in actions:
            step = _message(action)
            if action.at is not None and action.at - now > SEND_NOW_WITHIN_S:
                later.append((step, action.at))
            else:
                due.append(step)
        if len(due) > SEND_NOW_AT_MOST:
            later += [(step, now) for step in due]
            due = []
        for step in due:
            self._send(step)
        self._delayed.add(later)

    def send_due(self, *, most: int = 1000) -> int:
        """Hand every step now due to the broker; how many. A step lost between the pop and
        the send is found again by the sweep (its due time is in the database)."""
        steps = self._delayed.pop_due(time.time(), most)
        for step in steps:
            self._send(step)
        return len(steps)

    def next_due(self) -> float | None:
        return self._delayed.next_due()

    def _send(self, step: Step) -> None:
        name, args = step
        if name == DELIVER and self._wake is not None:
            if not self._wake.raise_():
                # A wake-up is on its way: its rounds take this delivery too. In case this
                # one is due a moment after that task looks (clocks differ), one shared
                # wake-up follows after the hold (one member of the delay queue).
                self._delayed.add([((DELIVER, []), time.time() + self._wake.hold_s)])
                return
            try:
                self._app.send_task(name, args=args)
            except Exception:
                self._wake.lower()  # no message behind the flag: let the next one try
                raise
            return
        self._app.send_task(name, args=args)

    def wake_senders(self) -> None:
        """Another delivery task wanted (a round found more than it took): another worker
        process can join in, unless a wake-up is on its way already."""
        self._send((DELIVER, []))

    def senders_awake(self) -> None:
        """A delivery task has started: a delivery due from now on wakes another."""
        if self._wake is not None:
            self._wake.lower()


def _message(action: Action) -> Step:
    if isinstance(action, Launch):
        return LAUNCH, [action.job_id] if action.run_id is None else [action.job_id, action.run_id]
    if isinstance(action, Poll):
        return POLL, [action.job_id, action.seq]
    if isinstance(action, Deliver):
        return DELIVER, [action.delivery_id]
    raise TypeError(f"unknown action {action!r}")
