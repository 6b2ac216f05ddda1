"""Deliver once: send one callback attempt, record it, and plan the next if it failed.

The delivery's id is the ``webhook-id`` of every attempt, and its body is fixed when the
event happens; each attempt signs it afresh with the attempt's timestamp: with the
endpoint's secrets (both, while one rotates), or ``[callbacks].signing_secret`` for a job's
own ``callback_url``. The attempt is recorded by a compare-and-set on the attempt count, so
a duplicated message sends at most one extra request and records nothing twice.

An endpoint answering 410 Gone is disabled, and so is one whose every attempt has failed
for ``endpoint_disable_after_s``; deliveries to a disabled or removed endpoint end failed
at their next attempt, kept in the log and replayable.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.domain.records import CallbackEndpoint, Deliver, Delivery, DeliveryAttempt
from orchestrator.domain.webhook import signature_headers
from orchestrator.ports import SendResult
from orchestrator.services.deps import Deps

UNREADABLE_SECRET = (
    "the endpoint's secret cannot be decrypted ([callbacks].signing_secret changed since it "
    "was stored): rotate it ('orchestrator callbacks rotate-secret ID'), give receivers the "
    "new one, then replay")


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
    if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
        # Early: a duplicate message (the sweep re-sent one that was only slow), or a clock
        # ahead of ours. Never sooner than planned, since a retry's time may be a
        # receiver's Retry-After: at its time instead (the delay queue keeps one copy).
        deps.scheduler.schedule([Deliver(delivery.id, delivery.next_attempt_at)])
        return DeliverOutcome("skipped", delivery)
    if deps.sender is None:
        raise RuntimeError("callbacks need a sender")
    endpoint = None
    if delivery.endpoint_id is not None:
        endpoint = deps.endpoints.get_endpoint(delivery.endpoint_id) if deps.endpoints else None
        if endpoint is None or not endpoint.enabled:
            return _undeliverable(delivery, deps, now, "the endpoint was removed" if endpoint
                                  is None else "the endpoint is disabled: "
                                  f"{endpoint.disabled_reason or 'by request'}")
        url, secrets = endpoint.url, endpoint.signing_secrets(now)
        if not secrets:
            return _undeliverable(delivery, deps, now, UNREADABLE_SECRET)
    else:
        if not deps.signing_secrets:
            raise RuntimeError("callbacks to a job's callback_url need "
                               "[callbacks].signing_secret")
        url, secrets = delivery.url, tuple(deps.signing_secrets)
    headers = signature_headers(secrets, delivery.id, int(now), delivery.payload)
    result = deps.sender.send(url, headers, delivery.payload)
    outcome = _record(delivery, result, deps, now)
    if endpoint is not None and outcome.result != "skipped":
        _track_endpoint(endpoint, result, deps, now)
    return outcome


def _undeliverable(delivery: Delivery, deps: Deps, now: float, why: str) -> DeliverOutcome:
    """No request: the endpoint is gone, disabled, or its secret unreadable. The delivery
    ends failed, with why, replayable once that is fixed."""
    attempt = DeliveryAttempt(delivery.id, delivery.attempts + 1, now, None, 0.0, why)
    if not deps.store.record_delivery_attempt(attempt, status="failed", next_attempt_at=None):
        return DeliverOutcome("skipped", delivery)
    return DeliverOutcome("failed", delivery)


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
        # From the answer, not from the request: a Retry-After counts from the response.
        answered = max(now + result.latency_s, deps.clock.now())
        status, next_at = "pending", answered + retry_delay(number, result.retry_after, deps)
    if not deps.store.record_delivery_attempt(attempt, status=status, next_attempt_at=next_at):
        return DeliverOutcome("skipped", delivery)
    if next_at is not None:
        deps.scheduler.schedule([Deliver(delivery.id, next_at)])
        return DeliverOutcome("retrying", delivery, next_at)
    return DeliverOutcome(status, delivery)


def _track_endpoint(endpoint: CallbackEndpoint, result: SendResult, deps: Deps,
                    now: float) -> None:
    """A 2xx clears the endpoint's failing streak; a 410, or a streak longer than
    ``endpoint_disable_after_s``, disables it. Written only when something changes."""
    assert deps.endpoints is not None
    code = result.status_code
    values: dict[str, object] = {}
    # Written only if the endpoint is as read: a user's re-enabling (or another attempt's
    # change) since then is never overwritten from this stale copy.
    guard = {"enabled": True, "failing_since": endpoint.failing_since}
    if code is not None and 200 <= code < 300:
        if endpoint.failing_since is not None:
            values["failing_since"] = None
    elif code == 410:
        values = {"enabled": False,
                  "disabled_reason": "the receiver answered 410 Gone; re-enable it once "
                                     "it takes callbacks again"}
    elif endpoint.failing_since is None:
        values["failing_since"] = now
    elif now - endpoint.failing_since >= deps.limits.endpoint_disable_after_s:
        days = (now - endpoint.failing_since) / 86_400
        values = {"enabled": False,
                  "disabled_reason": f"every attempt failed for {days:.1f} days; "
                                     "re-enable it once the receiver is fixed, then replay "
                                     "its failed deliveries"}
    if values:
        deps.endpoints.update_endpoint(endpoint.id, values, now, guard=guard)


def retry_delay(number: int, retry_after: float | None, deps: Deps) -> float:
    """The wait after failed attempt ``number``: the schedule's step with jitter, and never
    less than the receiver's ``Retry-After``."""
    schedule = deps.limits.callback_retry_s
    base = schedule[min(number, len(schedule)) - 1]
    jitter = deps.limits.callback_jitter
    delay = base * (1 + deps.rng.uniform(-jitter, jitter))
    return max(delay, retry_after or 0.0)
