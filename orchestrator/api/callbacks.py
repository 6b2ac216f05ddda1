"""``/v1/callbacks`` and ``/v1/deliveries``: callback endpoints, their delivery log, replay.

An endpoint's ``whsec_`` secret is in the answer to its creation and to a rotation, and
nowhere else. A delivery is one event sent to one endpoint; its id is the ``webhook-id`` of
every attempt, and replaying it sends the same event again under the same id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import AwareDatetime

from orchestrator.api.deps import ContainerDep, TokenDep
from orchestrator.api.errors import ERROR_RESPONSES, ApiError
from orchestrator.api.jobs import ID_PATTERN
from orchestrator.api.schemas import (
    CallbackIn,
    CallbackList,
    CallbackOut,
    CallbackPatch,
    CallbackSecretOut,
    DeliveryDetailOut,
    DeliveryPage,
    DeliveryStatusName,
    ReplayIn,
    ReplayOut,
)
from orchestrator.bootstrap import Container
from orchestrator.domain.records import CallbackEndpoint, Delivery
from orchestrator.domain.webhook import rfc3339
from orchestrator.services.endpoints import (
    EndpointRefused,
    EndpointSpec,
    create_endpoint,
    delete_endpoint,
    endpoints_of,
    get_endpoint,
    replay_delivery,
    replay_failed,
    rotate_secret,
    update_endpoint,
)

# Two prefixes, one router: the log of a delivery outlives its endpoint.
router = APIRouter(tags=["callbacks"], responses=ERROR_RESPONSES)

EndpointId = Annotated[str, Path(pattern=ID_PATTERN, description="the endpoint's id")]
DeliveryId = Annotated[str, Path(pattern=ID_PATTERN,
                                 description="the delivery's id (its `webhook-id`)")]


def _time(value: float | None) -> str | None:
    return None if value is None else rfc3339(value)


def endpoint_resource(endpoint: CallbackEndpoint, now: float) -> dict[str, Any]:
    """The endpoint as the API shows it: never with a secret."""
    rotating = endpoint.previous_until
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": list(endpoint.event_types),
        "workflows": list(endpoint.workflows),
        "labels": dict(endpoint.labels),
        "enabled": endpoint.enabled,
        "disabled_reason": None if endpoint.enabled else endpoint.disabled_reason,
        "failing_since": _time(endpoint.failing_since),
        "secret_rotating_until": _time(rotating) if rotating and rotating > now else None,
        "created_at": _time(endpoint.created_at),
        "updated_at": _time(endpoint.updated_at),
    }


def _with_secret(endpoint: CallbackEndpoint, now: float) -> dict[str, Any]:
    return {**endpoint_resource(endpoint, now), "secret": endpoint.secret}


def delivery_resource(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "endpoint_id": delivery.endpoint_id,
        "job_id": delivery.job_id,
        "event_type": delivery.event_type,
        "url": delivery.url,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": _time(delivery.next_attempt_at),
        "created_at": _time(delivery.created_at),
        "delivered_at": _time(delivery.delivered_at),
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
    }


def attempt_resource(attempt: Mapping[str, object]) -> dict[str, Any]:
    at, latency = attempt.get("at"), attempt.get("latency_ms")
    return {
        "number": attempt.get("number"),
        "at": _time(float(at)) if isinstance(at, (int, float)) else None,
        "status_code": attempt.get("status_code"),
        "latency_ms": round(float(latency), 1) if isinstance(latency, (int, float)) else 0.0,
        "error": attempt.get("error"),
    }


def _detail(delivery: Delivery, container: Container) -> dict[str, Any]:
    log = container.store.delivery_attempts(delivery.id)
    return {**delivery_resource(delivery), "attempt_log": [attempt_resource(a) for a in log]}


@router.post("/v1/callbacks", status_code=201, response_model=CallbackSecretOut)
def create(body: CallbackIn, _: TokenDep, container: ContainerDep) -> dict[str, Any]:
    """Register a callback endpoint. The answer carries its `whsec_` signing secret, which
    is shown this once: store it to check the `webhook-signature` of what it receives.
    `event_types` left out: the terminal job events and `batch.completed`. A URL the SSRF
    guard refuses (loopback, private, link-local, reserved addresses) is a 422 saying why."""
    spec = EndpointSpec(url=body.url, event_types=body.event_types,
                        workflows=tuple(body.workflows), labels=body.labels,
                        description=body.description)
    deps = container.deps
    endpoint = create_endpoint(spec, deps)
    return _with_secret(endpoint, deps.clock.now())


@router.get("/v1/callbacks", response_model=CallbackList)
def list_all(_: TokenDep, container: ContainerDep) -> dict[str, Any]:
    """Every callback endpoint, oldest first (without their secrets)."""
    deps = container.deps
    endpoints = endpoints_of(deps).list_endpoints()
    now = deps.clock.now()
    return {"items": [endpoint_resource(e, now) for e in endpoints]}


@router.get("/v1/callbacks/{endpoint_id}", response_model=CallbackOut)
def show(endpoint_id: EndpointId, _: TokenDep, container: ContainerDep) -> dict[str, Any]:
    """The endpoint (without its secret)."""
    deps = container.deps
    endpoint = get_endpoint(endpoint_id, deps)
    return endpoint_resource(endpoint, deps.clock.now())


@router.patch("/v1/callbacks/{endpoint_id}", response_model=CallbackOut)
def change(endpoint_id: EndpointId, body: CallbackPatch, _: TokenDep,
           container: ContainerDep) -> dict[str, Any]:
    """Change the fields sent; the others keep their values. `{"enabled": true}`
    re-enables a disabled endpoint (its failed deliveries are not sent again by that:
    replay them with `POST /v1/callbacks/{id}/replay`)."""
    deps = container.deps
    endpoint = update_endpoint(endpoint_id, body.model_dump(exclude_unset=True), deps)
    return endpoint_resource(endpoint, deps.clock.now())


@router.delete("/v1/callbacks/{endpoint_id}", status_code=204, response_class=Response)
def remove(endpoint_id: EndpointId, _: TokenDep, container: ContainerDep) -> Response:
    """Remove the endpoint. Its deliveries stay in the log (`GET /v1/deliveries/{id}`);
    pending ones end failed at their next attempt."""
    delete_endpoint(endpoint_id, container.deps)
    return Response(status_code=204)


@router.post("/v1/callbacks/{endpoint_id}/rotate-secret", response_model=CallbackSecretOut)
def rotate(endpoint_id: EndpointId, _: TokenDep, container: ContainerDep) -> dict[str, Any]:
    """A new signing secret, shown this once. Until `secret_rotating_until` (24 hours) every
    callback is signed with both the new and the previous secret (two `v1,…` signatures),
    so the receiver can switch without missing one."""
    deps = container.deps
    endpoint = rotate_secret(endpoint_id, deps)
    return _with_secret(endpoint, deps.clock.now())


@router.get("/v1/callbacks/{endpoint_id}/deliveries", response_model=DeliveryPage)
def deliveries(
    endpoint_id: EndpointId,
    _: TokenDep,
    container: ContainerDep,
    status: DeliveryStatusName | None = None,
    since: Annotated[AwareDatetime | None, Query(
        description="RFC 3339 with a time zone: only deliveries created at or after it")] = None,
    cursor: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """The endpoint's delivery log, newest first. Pass the returned `next_cursor` as
    `cursor` for the next page. Each delivery's attempts, one by one, are in
    `GET /v1/deliveries/{id}`. The log of a removed endpoint stays readable here."""
    try:
        get_endpoint(endpoint_id, container.deps)
    except EndpointRefused as refused:
        # A removed endpoint's deliveries are kept: its id still names a log.
        if refused.status != 404 or not container.store.list_deliveries(
                endpoint_id=endpoint_id, limit=1):
            raise
    found = container.store.list_deliveries(
        endpoint_id=endpoint_id, status=status,
        since=None if since is None else since.timestamp(), before=cursor, limit=limit + 1)
    page = found[:limit]
    next_cursor = page[-1].id if len(found) > limit else None
    return {"items": [delivery_resource(d) for d in page], "next_cursor": next_cursor}


@router.post("/v1/callbacks/{endpoint_id}/replay", status_code=202, response_model=ReplayOut)
def replay_endpoint(endpoint_id: EndpointId, body: ReplayIn, _: TokenDep,
                    container: ContainerDep) -> dict[str, Any]:
    """Send every failed delivery of the endpoint created at or after `since` again, each
    with its own `webhook-id` and body; typically after a receiver's outage, once it is
    fixed (and the endpoint re-enabled)."""
    ids = replay_failed(endpoint_id, body.since.timestamp(), container.deps)
    return {"replayed": len(ids), "delivery_ids": ids}


@router.get("/v1/deliveries/{delivery_id}", response_model=DeliveryDetailOut)
def show_delivery(delivery_id: DeliveryId, _: TokenDep,
                  container: ContainerDep) -> dict[str, Any]:
    """One delivery with its `attempt_log`: every attempt's time, answer, latency and
    error."""
    delivery = container.store.get_delivery(delivery_id)
    if delivery is None:
        raise ApiError(404, "not_found", f"no delivery '{delivery_id}'")
    return _detail(delivery, container)


@router.post("/v1/deliveries/{delivery_id}/replay", status_code=202,
             response_model=DeliveryDetailOut)
def replay_one(delivery_id: DeliveryId, _: TokenDep, container: ContainerDep) -> dict[str, Any]:
    """Send the delivery again now, with the same `webhook-id` and body, whatever its state;
    its attempts so far stay in the log. The answer is the delivery, pending again."""
    delivery = replay_delivery(delivery_id, container.deps)
    return _detail(delivery, container)
