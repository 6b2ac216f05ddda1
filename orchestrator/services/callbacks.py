"""Deliver once: send one callback attempt, record it, and plan the next if it failed.

The delivery's id is the ``webhook-id`` of every attempt, and its body is fixed when the
event happens; each attempt signs it afresh with the attempt's timestamp. The attempt is
recorded by a compare-and-set on the attempt count, so a duplicated message sends at most
one extra request and records nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.domain.records import Deliver, Delivery, DeliveryAttempt
from orchestrator.domain.webhook import signature_headers
from orchestrator.ports import SendResult
from orchestrator.services.deps import EARLY_TOLERANCE_S, Deps


@dataclass(frozen=True)
class DeliverOutcome:
    result: str  # succeeded | retrying | failed | skipped
    delivery: Delivery | None = None
    next_at: float | None = None


def deliver_callback(delivery_id: str, deps: Deps) -> DeliverOutcome:
    delivery = deps.store.get_delivery(delivery_id)
    now = deps.clock.now()
    if delivery is None or delivery.status != "pending":
        return DeliverOutcome("skipped", delivery)
    if delivery.next_attempt_at is not None and delivery.next_attempt_at > now + EARLY_TOLERANCE_S:
        return DeliverOutcome("skipped", delivery)
    if deps.sender is None or not deps.signing_secrets:
        raise RuntimeError("callbacks need a sender and [callbacks].signing_secret")
    headers = signature_headers(deps.signing_secrets, delivery.id, int(now), delivery.payload)
    result = deps.sender.send(delivery.url, headers, delivery.payload)
    return _record(delivery, result, deps, now)


def _record(delivery: Delivery, result: SendResult, deps: Deps, now: float) -> DeliverOutcome:
    number = delivery.attempts + 1
    attempt = DeliveryAttempt(delivery.id, number, now, result.status_code, result.latency_s,
                              result.error)
    code = result.status_code
    if code is not None and 200 <= code < 300:
        status, next_at = "succeeded", None
    elif code == 410 or number > len(deps.limits.callback_retry_s):
        status, next_at = "failed", None  # 410 Gone: the receiver wants no more
    else:
        status, next_at = "pending", now + retry_delay(number, result.retry_after, deps)
    if not deps.store.record_delivery_attempt(attempt, status=status, next_attempt_at=next_at):
        return DeliverOutcome("skipped", delivery)
    if next_at is not None:
        deps.scheduler.schedule([Deliver(delivery.id, next_at)])
        return DeliverOutcome("retrying", delivery, next_at)
    return DeliverOutcome(status, delivery)


def retry_delay(number: int, retry_after: float | None, deps: Deps) -> float:
    """The wait after failed attempt ``number``: the schedule's step with jitter, and never
    less than the receiver's ``Retry-After``."""
    schedule = deps.limits.callback_retry_s
    base = schedule[min(number, len(schedule)) - 1]
    jitter = deps.limits.callback_jitter
    delay = base * (1 + deps.rng.uniform(-jitter, jitter))
    return max(delay, retry_after or 0.0)
