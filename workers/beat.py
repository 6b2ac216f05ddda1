"""Beat that also fires schedules: ``celery -A workers beat`` runs this scheduler.

Celery's beat keeps its own schedule (the sweep) in a local file and would fire twice with
two beats running; ours lives in the database. On every tick this scheduler runs Celery's
own entries and then ``fire_due``, in this process: a schedule fires on time even while
the workers have a long queue. Any number of beats may run (for availability): each slot
is recorded once, by whichever beat gets there first.

The tick sleeps until the next slot is due, and at most ``MAX_SLEEP_S``, so a schedule
created or changed through the API is picked up within a second.

Beat also dispatches the launches of paced providers (``services/dispatch.py``: in-flight
caps, trigger limits, priority and fair share) and hands the delay queue's due steps
(polls, deferred launches, callback retries: ``adapters/redis/delayed.py``) to the broker
in bulk, every ``MAX_DELAY_SLEEP_S`` at most.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.beat import PersistentScheduler

from orchestrator.bootstrap import Container
from orchestrator.metrics import SCHEDULE_SLOTS
from orchestrator.services.dispatch import dispatch
from orchestrator.services.fire import FireOutcome, fire_due, next_due
from orchestrator.services.schedules import sync_declared

log = logging.getLogger("orchestrator.beat")

MAX_SLEEP_S = 1.0
MIN_SLEEP_S = 0.01
# Delayed steps (polls above all) are handed out within this of their due time.
MAX_DELAY_SLEEP_S = 0.2
SEND_BATCH = 500  # steps handed out per tick (about half a second of broker writes)


class ScheduleFiringBeat(PersistentScheduler):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._container: Container | None = None
        self._synced = False
        super().__init__(*args, **kwargs)

    @property
    def container(self) -> Container:
        if self._container is None:
            from workers.app import settings

            self._container = Container(settings, celery_app=self.app)
        return self._container

    def tick(self, *args: Any, **kwargs: Any) -> float:
        celery_wait = float(super().tick(*args, **kwargs))
        self._dispatch()
        return min(celery_wait, self._fire(), self._send_due())

    def _dispatch(self) -> None:
        """Hand out the launches of paced providers as slots and turns free up."""
        try:
            outcome = dispatch(self.container.deps)
        except Exception:  # the database is away: the next tick tries again
            log.warning("launches could not be dispatched", exc_info=True)
            return
        if outcome.handed_out:
            log.debug("dispatched %d launch(es)", outcome.handed_out)

    def _send_due(self) -> float:
        """Hand the delay queue's due steps to the broker; the seconds until the next one
        (at most ``MAX_DELAY_SLEEP_S``: a step added meanwhile may be due sooner)."""
        scheduler = self.container.celery_scheduler
        try:
            if scheduler.send_due(most=SEND_BATCH) >= SEND_BATCH:
                return MIN_SLEEP_S  # a backlog: the next tick goes on (schedules fire between)
            soonest = scheduler.next_due()
        except Exception:  # Redis is away: the sweep re-sends from the database meanwhile
            log.warning("due steps could not be handed out; trying again in %g s",
                        MAX_SLEEP_S, exc_info=True)
            return MAX_SLEEP_S
        if soonest is None:
            return MAX_DELAY_SLEEP_S
        return max(MIN_SLEEP_S, min(MAX_DELAY_SLEEP_S, soonest - time.time()))

    def _fire(self) -> float:
        """Fire what is due; the seconds until the next slot (at most ``MAX_SLEEP_S``)."""
        deps = self.container.deps
        if not self._synced:
            try:
                self._sync()
            except Exception:  # the database is away: fire what is stored, sync later
                log.warning("the schedules declared in %s could not be synced; trying again",
                            self.container.settings.source, exc_info=True)
        try:
            outcome = fire_due(deps)
            if outcome.busy:
                log.info("schedules: %s", outcome)
                self._count(outcome)
            soonest = next_due(deps)
        except Exception:  # the database is away: log, keep beating, try again soon
            log.warning("schedules could not be fired; trying again in %g s", MAX_SLEEP_S,
                        exc_info=True)
            return MAX_SLEEP_S
        if soonest is None:
            return MAX_SLEEP_S
        return max(MIN_SLEEP_S, min(MAX_SLEEP_S, soonest - time.time()))

    def _count(self, outcome: FireOutcome) -> None:
        for status in ("fired", "skipped", "buffered", "missed", "failed"):
            if getattr(outcome, status):
                self.container.metrics.count(SCHEDULE_SLOTS, {"status": status},
                                             getattr(outcome, status))

    def _sync(self) -> None:
        settings = self.container.settings
        specs = [declared.spec() for declared in settings.schedules]
        outcome = sync_declared(specs, self.container.deps, origin=settings.source)
        if outcome.created or outcome.updated or outcome.paused:
            log.info("schedules synced from %s: created %s, updated %s, paused %s",
                     settings.source, list(outcome.created), list(outcome.updated),
                     list(outcome.paused))
        for refused in outcome.refused:
            log.error("schedule in %s not saved: %s", settings.source, refused)
        self._synced = True

    def close(self) -> None:
        super().close()
        if self._container is not None:
            self._container.close()
