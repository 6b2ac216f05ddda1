"""Callback endpoints: register, change, remove, rotate the secret, replay deliveries.

An endpoint's ``whsec_`` secret is made here and shown once, in the answer to its creation
(and to a rotation); after a rotation the previous secret keeps signing too for
``secret_overlap_s`` (24 h), so receivers can switch without missing a callback. A URL is
checked by the SSRF guard when registered and again at every delivery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator.domain.events import DEFAULT_EVENT_TYPES, EVENT_TYPES, unknown_event_types
from orchestrator.domain.ids import new_id
from orchestrator.domain.records import CallbackEndpoint, Deliver, Delivery
from orchestrator.domain.validation import text_problem, url_problem
from orchestrator.domain.webhook import new_secret, rfc3339
from orchestrator.ports import EndpointStore
from orchestrator.services.deps import Deps

MAX_ENDPOINTS = 100  # Svix's default too: more is a sign of one per job, which is misuse
MAX_FILTERS = 50
EDITABLE = frozenset({"url", "event_types", "workflows", "labels", "description", "enabled"})


class EndpointRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class EndpointSpec:
    url: str
    event_types: Sequence[str] | None = None  # None: the terminal events and batch.completed
    workflows: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    description: str | None = None


def endpoints_of(deps: Deps) -> EndpointStore:
    """The store; without one (no ``[callbacks].signing_secret``, whose key also keeps
    the endpoints' secrets encrypted at rest) endpoints cannot be registered."""
    if deps.endpoints is None:
        raise EndpointRefused(422, "callbacks_not_configured",
                              "callback endpoints need [callbacks].signing_secret (a whsec_ "
                              "secret), which also keeps their secrets encrypted at rest")
    return deps.endpoints


def create_endpoint(spec: EndpointSpec, deps: Deps) -> CallbackEndpoint:
    """The new endpoint, its secret in clear (to show once)."""
    store = endpoints_of(deps)
    if len(store.list_endpoints()) >= MAX_ENDPOINTS:
        raise EndpointRefused(409, "too_many_endpoints",
                              f"there are already {MAX_ENDPOINTS} callback endpoints; remove "
                              "unused ones (one endpoint can take every event)")
    events = tuple(DEFAULT_EVENT_TYPES if spec.event_types is None else spec.event_types)
    _check(spec.url, events, spec.workflows, spec.labels, spec.description, deps)
    now = deps.clock.now()
    endpoint = CallbackEndpoint(
        id=new_id("ep", now), url=spec.url, event_types=_unique(events), secret=new_secret(),
        created_at=now, updated_at=now, description=spec.description,
        workflows=_unique(spec.workflows), labels=dict(spec.labels))
    return store.add_endpoint(endpoint)


def get_endpoint(endpoint_id: str, deps: Deps) -> CallbackEndpoint:
    endpoint = endpoints_of(deps).get_endpoint(endpoint_id)
    if endpoint is None:
        raise EndpointRefused(404, "not_found", f"no callback endpoint '{endpoint_id}'; "
                              "'orchestrator callbacks list' shows them")
    return endpoint


def update_endpoint(endpoint_id: str, changes: Mapping[str, object],
                    deps: Deps) -> CallbackEndpoint:
    """Change some of ``EDITABLE``; enabling clears the reason it was disabled and its
    failing streak."""
    current = get_endpoint(endpoint_id, deps)
    unknown = sorted(set(changes) - EDITABLE)
    if unknown:
        raise EndpointRefused(422, "invalid_request",
                              f"cannot change {', '.join(unknown)}; editable: "
                              f"{', '.join(sorted(EDITABLE))}")
    values = dict(changes)
    for name in ("event_types", "workflows"):
        if name in values:
            values[name] = _unique(values[name])  # type: ignore[arg-type]
    _check(str(values.get("url", current.url)),
           values.get("event_types", current.event_types),  # type: ignore[arg-type]
           values.get("workflows", current.workflows),  # type: ignore[arg-type]
           values.get("labels", current.labels),  # type: ignore[arg-type]
           values.get("description", current.description), deps,  # type: ignore[arg-type]
           recheck_url="url" in values)
    if values.get("enabled") is True:
        values.update(disabled_reason=None, failing_since=None)
    elif values.get("enabled") is False:
        values["disabled_reason"] = "disabled by request"
    updated = endpoints_of(deps).update_endpoint(endpoint_id, values, deps.clock.now())
    if updated is None:
        raise EndpointRefused(404, "not_found", f"no callback endpoint '{endpoint_id}'")
    return updated


def delete_endpoint(endpoint_id: str, deps: Deps) -> None:
    """Its deliveries stay in the log; pending ones end failed at their next attempt."""
    if not endpoints_of(deps).delete_endpoint(endpoint_id):
        raise EndpointRefused(404, "not_found", f"no callback endpoint '{endpoint_id}'")


def rotate_secret(endpoint_id: str, deps: Deps) -> CallbackEndpoint:
    """A new secret, in clear (to show once); the old one signs too for the overlap."""
    current = get_endpoint(endpoint_id, deps)
    now = deps.clock.now()
    updated = endpoints_of(deps).update_endpoint(endpoint_id, {
        "secret": new_secret(), "previous_secret": current.secret,
        "previous_until": now + deps.limits.secret_overlap_s}, now)
    if updated is None:
        raise EndpointRefused(404, "not_found", f"no callback endpoint '{endpoint_id}'")
    return updated


def replay_delivery(delivery_id: str, deps: Deps) -> Delivery:
    """Send an ended delivery (succeeded or failed) again, with the same ``webhook-id`` and
    body; its attempts so far stay in the log. A pending one is refused: its next attempt
    is coming, and a second sender at once would race it."""
    delivery = deps.store.get_delivery(delivery_id)
    if delivery is None:
        raise EndpointRefused(404, "not_found", f"no delivery '{delivery_id}'")
    if delivery.status == "pending":
        when = rfc3339(delivery.next_attempt_at) if delivery.next_attempt_at else "now"
        raise EndpointRefused(409, "delivery_pending",
                              f"delivery {delivery_id} is still pending (next attempt: "
                              f"{when}); only an ended delivery can be replayed")
    if delivery.endpoint_id is not None:
        _check_receiving(delivery.endpoint_id, deps)
    if not _replay([delivery_id], deps):
        raise EndpointRefused(409, "delivery_pending",
                              f"delivery {delivery_id} was replayed meanwhile")
    return deps.store.get_delivery(delivery_id) or delivery


def replay_failed(endpoint_id: str, since: float, deps: Deps) -> list[str]:
    """Every failed delivery of the endpoint created at or after ``since``, sent again."""
    get_endpoint(endpoint_id, deps)
    _check_receiving(endpoint_id, deps)
    ids: list[str] = []
    before: str | None = None
    while True:  # a page at a time: an endpoint down for days may have many
        page = deps.store.list_deliveries(endpoint_id=endpoint_id, status="failed",
                                          since=since, before=before, limit=500)
        ids += [d.id for d in page]
        if len(page) < 500:
            break
        before = page[-1].id
    return _replay(ids, deps)


def _replay(ids: Sequence[str], deps: Deps) -> list[str]:
    replayed: list[str] = []
    for start in range(0, len(ids), 500):  # bounded statements, whatever the count
        chunk = deps.store.replay_deliveries(ids[start:start + 500], deps.clock.now())
        deps.scheduler.schedule([Deliver(delivery_id) for delivery_id in chunk])
        replayed += chunk
    return replayed


def _check_receiving(endpoint_id: str, deps: Deps) -> None:
    """A replay to a disabled endpoint would only fail again at once."""
    endpoint = endpoints_of(deps).get_endpoint(endpoint_id)
    if endpoint is None:
        raise EndpointRefused(409, "endpoint_removed",
                              f"the endpoint {endpoint_id} was removed; nothing to send to")
    if not endpoint.enabled:
        raise EndpointRefused(409, "endpoint_disabled",
                              f"the endpoint {endpoint_id} is disabled "
                              f"({endpoint.disabled_reason or 'by request'}); enable it "
                              f"first: orchestrator callbacks enable {endpoint_id}")


def url_refusal(url: str, deps: Deps, what: str = "callback URL") -> str | None:
    """Why this URL may not take callbacks (malformed, or refused by the SSRF guard)."""
    problem = url_problem(url, what)
    if problem or deps.url_guard is None:
        return problem
    try:
        deps.url_guard.check(url)
    except ValueError as refused:
        return str(refused)
    return None


def _check(url: str, events: Sequence[str], workflows: Sequence[str],
           labels: Mapping[str, str], description: str | None, deps: Deps, *,
           recheck_url: bool = True) -> None:
    problem = _problem(url, events, workflows, labels, description, deps, recheck_url)
    if problem:
        raise EndpointRefused(422, "invalid_request", problem)


def _problem(url: str, events: Sequence[str], workflows: Sequence[str],
             labels: Mapping[str, str], description: str | None, deps: Deps,
             recheck_url: bool) -> str | None:
    if recheck_url:
        problem = url_refusal(url, deps, "url")
        if problem:
            return problem
    if not events:
        return f"event_types is empty; choose from {', '.join(EVENT_TYPES)}"
    unknown = unknown_event_types(events)
    if unknown:
        return (f"unknown event type(s) {', '.join(unknown)}; the events are "
                f"{', '.join(EVENT_TYPES)}")
    if len(workflows) > MAX_FILTERS or len(labels) > MAX_FILTERS:
        return f"at most {MAX_FILTERS} workflows and {MAX_FILTERS} labels filter an endpoint"
    configured = set(deps.providers.names())
    for workflow in workflows:
        provider = workflow.partition("/")[0]
        if "/" not in workflow or provider not in configured:
            return (f"workflows: '{workflow}' is not PROVIDER/WORKFLOW with a configured "
                    f"provider (configured: {', '.join(sorted(configured)) or 'none'})")
    texts = [(w, "a workflow filter") for w in workflows] + [(description or "", "description")]
    texts += [(k, "a label name") for k in labels]
    texts += [(v, f"label '{k}'") for k, v in labels.items()]
    return next((p for p in (text_problem(v, what) for v, what in texts) if p), None)


def _unique(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))
