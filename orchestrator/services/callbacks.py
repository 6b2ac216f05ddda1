"""Deliver: send callback attempts in rounds, record them, and plan the next of each that
failed.

A round claims the deliveries now due that no other sender holds (a lease in the store,
so two workers never send one delivery at once), sends them together, and records every
attempt in one transaction: the per-delivery cost is the POST, not a task, a read and a
commit each. A message naming one delivery (``deliver_callback``) is a round of that one.

The delivery's id is the ``webhook-id`` of every attempt, and its body is fixed when the
event happens; each attempt signs it afresh with the attempt's timestamp: with the
endpoint's secrets (both, while one rotates), or ``[callbacks].signing_secret`` for a job's
own ``callback_url``. An attempt is recorded by a compare-and-set on the attempt count, so
nothing is recorded twice. A retry is never due before the receiver's ``Retry-After``,
counted from its answer, and a delivery is never claimed before it is due.

An endpoint answering 410 Gone is disabled, and so is one whose every attempt has failed
for ``endpoint_disable_after_s``; deliveries to a disabled or removed endpoint end failed
at their next attempt, kept in the log and replayable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass

from orchestrator.domain.records import (
    AttemptRecord,
    CallbackEndpoint,
    Deliver,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
)
from orchestrator.domain.webhook import signature_headers
from orchestrator.ports import Outgoing, SendResult
from orchestrator.services.deps import Deps

UNREADABLE_SECRET = (
    "the endpoint's secret cannot be decrypted ([callbacks].signing_secret changed since it "
    "was stored): rotate it ('orchestrator callbacks rotate-secret ID'), give receivers the "
    "new one, then replay")
# Deliveries claimed by one round: one wave of the sender's concurrent POSTs, so a round
# takes about one request's time and ends well within its lease.
ROUND_MOST = 16


@dataclass(frozen=True)
class DeliverOutcome:
    result: str  # succeeded | retrying | failed | skipped
    delivery: Delivery | None = None
    next_at: float | None = None


def deliver_callback(delivery_id: str, deps: Deps) -> DeliverOutcome:
    """A round of this one delivery, if it is due and no one else holds it."""
    now = deps.clock.now()
    until = now + deps.limits.delivery_lease_s
    claimed = deps.store.claim_deliveries(now, until, 1, only=[delivery_id])
    if claimed:
        return _deliver(claimed, deps, now, until)[0]
    delivery = deps.store.get_delivery(delivery_id)
    if (delivery is not None and delivery.status == "pending"
            and delivery.next_attempt_at is not None and delivery.next_attempt_at > now):
        # Early: a duplicate message (the sweep re-sent one that was only slow), or a clock
        # ahead of ours. Never sooner than planned, since a retry's time may be a
        # receiver's Retry-After: at its time instead (the delay queue keeps one copy).
        deps.scheduler.schedule([Deliver(delivery.id, delivery.next_attempt_at)])
    return DeliverOutcome("skipped", delivery)


def deliver_due(deps: Deps, *, most: int = ROUND_MOST) -> list[DeliverOutcome]:
    """One round: up to ``most`` due deliveries no one holds, sent together."""
    now = deps.clock.now()
    until = now + deps.limits.delivery_lease_s
    claimed = deps.store.claim_deliveries(now, until, most)
    return _deliver(claimed, deps, now, until) if claimed else []


@dataclass(frozen=True)
class _Plan:
    delivery: Delivery
    endpoint: CallbackEndpoint | None
    request: Outgoing | None  # None: not sent, for ``why``
    why: str = ""


def _deliver(deliveries: Sequence[Delivery], deps: Deps, now: float,
             until: float) -> list[DeliverOutcome]:
    """Send and record claimed deliveries (held until ``until``)."""
    if deps.sender is None:
        raise RuntimeError("callbacks need a sender")
    try:
        endpoints = _endpoints({d.endpoint_id for d in deliveries if d.endpoint_id}, deps)
        plans = [_plan(d, endpoints, deps, now) for d in deliveries]
        sendable = [p for p in plans if p.request is not None]
        # Half the lease: a round's sends are over (answered or given up) long before
        # another sender may claim its deliveries.
        sent = deps.sender.send_many([p.request for p in sendable if p.request],
                                     within_s=deps.limits.delivery_lease_s / 2)
        results = dict(zip((p.delivery.id for p in sendable), sent, strict=True))
        answered = deps.clock.now()
        records = [_record(p, results.get(p.delivery.id), deps, now, answered) for p in plans]
        recorded = deps.store.record_delivery_attempts(records)
    except BaseException:
        # Whatever this round did not record goes back at once, not after the lease.
        with suppress(Exception):
            deps.store.release_deliveries([d.id for d in deliveries], until)
        raise
    outcomes: list[DeliverOutcome] = []
    for plan, record, ok in zip(plans, records, recorded, strict=True):
        outcomes.append(_outcome(plan.delivery, record, ok, deps))
    _track_endpoints(plans, results, deps, answered)
    return outcomes


def _endpoints(ids: set[str | None], deps: Deps) -> dict[str, CallbackEndpoint]:
    if deps.endpoints is None:
        return {}
    found = {i: deps.endpoints.get_endpoint(i) for i in ids if i}
    return {i: e for i, e in found.items() if e is not None}


def _plan(delivery: Delivery, endpoints: Mapping[str, CallbackEndpoint], deps: Deps,
          now: float) -> _Plan:
    if delivery.endpoint_id is None:
        if not deps.signing_secrets:
            raise RuntimeError("callbacks to a job's callback_url need "
                               "[callbacks].signing_secret")
        url, secrets = delivery.url, tuple(deps.signing_secrets)
        endpoint = None
    else:
        endpoint = endpoints.get(delivery.endpoint_id)
        if endpoint is None:
            return _Plan(delivery, None, None, "the endpoint was removed")
        if not endpoint.enabled:
            return _Plan(delivery, endpoint, None, "the endpoint is disabled: "
                         f"{endpoint.disabled_reason or 'by request'}")
        url, secrets = endpoint.url, endpoint.signing_secrets(now)
        if not secrets:
            return _Plan(delivery, endpoint, None, UNREADABLE_SECRET)
    headers = signature_headers(secrets, delivery.id, int(now), delivery.payload)
    return _Plan(delivery, endpoint, Outgoing(url, headers, delivery.payload))


def _record(plan: _Plan, result: SendResult | None, deps: Deps, now: float,
            answered: float) -> AttemptRecord:
    delivery = plan.delivery
    number = delivery.attempts + 1
    if result is None:
        # Not sent (the endpoint is gone, disabled, or its secret unreadable): the delivery
        # ends failed with why, replayable once that is fixed.
        attempt = DeliveryAttempt(delivery.id, number, now, None, 0.0, plan.why)
        return AttemptRecord(attempt, "failed", None)
    attempt = DeliveryAttempt(delivery.id, number, now, result.status_code, result.latency_s,
                              result.error)
    code = result.status_code
    status: DeliveryStatus
    if code is not None and 200 <= code < 300:
        status, next_at = "succeeded", None
    elif code == 410 or number > len(deps.limits.callback_retry_s):
        status, next_at = "failed", None  # 410 Gone: the receiver wants no more
    else:
        # From the answer, not from the request: a Retry-After counts from the response.
        since = max(now + result.latency_s, answered)
        status, next_at = "pending", since + retry_delay(number, result.retry_after, deps)
    return AttemptRecord(attempt, status, next_at)


def _outcome(delivery: Delivery, record: AttemptRecord, recorded: bool,
             deps: Deps) -> DeliverOutcome:
    if not recorded:
        return DeliverOutcome("skipped", delivery)
    if record.next_attempt_at is not None:
        deps.scheduler.schedule([Deliver(delivery.id, record.next_attempt_at)])
        return DeliverOutcome("retrying", delivery, record.next_attempt_at)
    return DeliverOutcome(record.status, delivery)


def _track_endpoints(plans: Sequence[_Plan], results: Mapping[str, SendResult], deps: Deps,
                     now: float) -> None:
    """Per endpoint sent to in this round: a 2xx clears its failing streak; a 410, or a
    streak longer than ``endpoint_disable_after_s``, disables it."""
    sent_to: dict[str, CallbackEndpoint] = {}
    codes: dict[str, list[int | None]] = {}
    for plan in plans:
        result = results.get(plan.delivery.id)
        if plan.endpoint is not None and result is not None:
            sent_to[plan.endpoint.id] = plan.endpoint
            codes.setdefault(plan.endpoint.id, []).append(result.status_code)
    for endpoint_id, endpoint in sent_to.items():
        _track_endpoint(endpoint, codes[endpoint_id], deps, now)


def _track_endpoint(endpoint: CallbackEndpoint, codes: Sequence[int | None], deps: Deps,
                    now: float) -> None:
    """Written only when something changes, and only if the endpoint is as read: a user's
    re-enabling (or another round's change) since then is never overwritten."""
    assert deps.endpoints is not None
    values: dict[str, object] = {}
    if 410 in codes:
        values = {"enabled": False,
                  "disabled_reason": "the receiver answered 410 Gone; re-enable it once "
                                     "it takes callbacks again"}
    elif any(code is not None and 200 <= code < 300 for code in codes):
        if endpoint.failing_since is not None:
            values["failing_since"] = None
    elif endpoint.failing_since is None:
        values["failing_since"] = now
    elif now - endpoint.failing_since >= deps.limits.endpoint_disable_after_s:
        days = (now - endpoint.failing_since) / 86_400
        values = {"enabled": False,
                  "disabled_reason": f"every attempt failed for {days:.1f} days; "
                                     "re-enable it once the receiver is fixed, then replay "
                                     "its failed deliveries"}
    if values:
        deps.endpoints.update_endpoint(
            endpoint.id, values, now,
            guard={"enabled": True, "failing_since": endpoint.failing_since})


def retry_delay(number: int, retry_after: float | None, deps: Deps) -> float:
    """The wait after failed attempt ``number``: the schedule's step with jitter, and never
    less than the receiver's ``Retry-After``."""
    schedule = deps.limits.callback_retry_s
    base = schedule[min(number, len(schedule)) - 1]
    jitter = deps.limits.callback_jitter
    delay = base * (1 + deps.rng.uniform(-jitter, jitter))
    return max(delay, retry_after or 0.0)
