"""``GET /v1/providers``: each configured provider, its limits and what it has in hand.

The limiter's state is read without taking a turn; the embargo is a wait a runtime asked
for; the counts come from the database (in flight = starting or running).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from redis.exceptions import RedisError

from orchestrator.api.deps import ContainerDep, TokenDep
from orchestrator.api.errors import ERROR_RESPONSES
from orchestrator.api.schemas import ProviderList
from orchestrator.bootstrap import Container
from orchestrator.domain.job import split_workflow

router = APIRouter(prefix="/v1/providers", tags=["providers"], responses=ERROR_RESPONSES)

OPERATIONS = ("trigger", "read", "cancel")


@router.get("", response_model=ProviderList)
def list_providers(_: TokenDep, container: ContainerDep) -> dict[str, Any]:
    """Every configured provider: type, limits with how much of each is left now, any wait
    the runtime imposed, and its jobs in flight and queued."""
    counts, _flying, _deliveries = container.store.gauges()
    by_provider: dict[str, dict[str, int]] = {}
    for (status, workflow), n in counts.items():
        provider = split_workflow(workflow)[0] if "/" in workflow else workflow
        slot = by_provider.setdefault(provider, {})
        slot[status] = slot.get(status, 0) + n
    return {"items": [_provider(name, container, by_provider.get(name, {}))
                      for name in container.settings.providers]}


def _provider(name: str, container: Container, jobs: dict[str, int]) -> dict[str, Any]:
    settings = container.settings.providers[name]
    adapter = container.providers.get(name)
    key_id = str(getattr(adapter, "key_id", name))
    limits = {op: getattr(settings.rate_limits, op) for op in OPERATIONS}
    return {
        "name": name,
        "type": settings.type,
        "base_url": settings.base_url,
        "max_in_flight": settings.max_in_flight,
        "in_flight": jobs.get("starting", 0) + jobs.get("running", 0),
        "queued": jobs.get("queued", 0),
        "limits": [_limit(container, key_id, op, limit) for op, limit in limits.items()],
    }


def _limit(container: Container, key_id: str, operation: str, limit: Any) -> dict[str, Any]:
    unknown = {"operation": operation, "limit": None if limit is None else str(limit),
               "used": None, "remaining": None, "next_turn_s": 0.0, "embargo_s": 0.0}
    try:
        until = container.embargoes.until(key_id, operation)
        state = None if limit is None else container.limiter.state(key_id, operation, limit)
    except RedisError:  # the limits are in Redis; the rest of the answer is still true
        return {**unknown, "error": "Redis is unreachable: limiter state unknown"}
    embargo_s = max(0.0, until - time.time()) if until else 0.0
    if state is None:
        return {**unknown, "embargo_s": round(embargo_s, 3)}
    return {"operation": operation, "limit": str(limit), "used": state.used,
            "remaining": state.remaining, "next_turn_s": round(state.next_turn_s, 3),
            "embargo_s": round(embargo_s, 3)}
