"""The operations on callback endpoints and their deliveries."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from orchestrator.client.errors import ClientError
from orchestrator.client.steps import Flow, Op, fetch, items, pages

ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class CallbackCalls:
    """Callback endpoints: where the events of jobs and batches are POSTed, signed; and the
    log of those deliveries."""

    def create_callback(self, url: str, *, event_types: Sequence[str] | None = None,
                        workflows: Sequence[str] | None = None,
                        labels: Mapping[str, str] | None = None,
                        description: str | None = None) -> Op[dict[str, Any]]:
        """Register a callback endpoint. The answer carries its ``secret`` (``whsec_…``),
        shown this once: keep it to check the signatures of what the endpoint receives.
        ``event_types`` left out: the terminal job events and ``batch.completed``;
        ``workflows`` and ``labels`` narrow the events to those jobs (or batches).

            endpoint = client.create_callback("https://example.com/hook",
                                              event_types=["job.failed"])
            save(endpoint["secret"])
        """
        body: dict[str, Any] = {"url": url}
        if event_types is not None:
            body["event_types"] = list(event_types)
        if workflows is not None:
            body["workflows"] = list(workflows)
        if labels is not None:
            body["labels"] = dict(labels)
        if description is not None:
            body["description"] = description
        return (yield from fetch("POST", "/v1/callbacks", json=body))

    def list_callbacks(self) -> Op[list[dict[str, Any]]]:
        """Every callback endpoint, oldest first (never with a secret)."""
        return (yield from items("/v1/callbacks"))

    def get_callback(self, endpoint_id: str) -> Op[dict[str, Any]]:
        """The endpoint (without its secret)."""
        return (yield from fetch("GET", _id_path("callbacks", endpoint_id)))

    def update_callback(self, /, endpoint_id: str, **changes: Any) -> Op[dict[str, Any]]:
        """Change the given fields (``url``, ``event_types``, ``workflows``, ``labels``,
        ``description``, ``enabled``); ``enabled=True`` re-enables a disabled endpoint."""
        return (yield from fetch("PATCH", _id_path("callbacks", endpoint_id), json=changes))

    def enable_callback(self, endpoint_id: str) -> Op[dict[str, Any]]:
        """Re-enable an endpoint (disabled by request, by a 410 or after days of failures);
        its failed deliveries are not sent again by that: ``replay_failed``."""
        return (yield from self.update_callback(endpoint_id, enabled=True))

    def disable_callback(self, endpoint_id: str) -> Op[dict[str, Any]]:
        """Stop sending to the endpoint; its pending deliveries end failed (replayable)."""
        return (yield from self.update_callback(endpoint_id, enabled=False))

    def delete_callback(self, endpoint_id: str) -> Op[None]:
        """Remove the endpoint; its deliveries stay in the log."""
        yield from fetch("DELETE", _id_path("callbacks", endpoint_id))

    def rotate_callback_secret(self, endpoint_id: str) -> Op[dict[str, Any]]:
        """A new ``secret``, shown this once; the previous one signs too until
        ``secret_rotating_until``."""
        return (yield from fetch("POST", _id_path("callbacks", endpoint_id) + "/rotate-secret"))

    def deliveries(self, endpoint_id: str, *, status: str | None = None,
                   since: str | datetime | None = None, page_size: int = 100,
                   limit: int | None = None) -> Flow[dict[str, Any]]:
        """The endpoint's deliveries, newest first (``status``: ``pending``,
        ``succeeded`` or ``failed``; ``since``: created at or after), following the cursor
        page by page. Each one's attempts: ``get_delivery``."""
        params: dict[str, Any] = {"limit": page_size}
        if status is not None:
            params["status"] = status
        if since is not None:
            params["since"] = _instant(since)
        yield from pages(_id_path("callbacks", endpoint_id) + "/deliveries", params, limit)

    def get_delivery(self, delivery_id: str) -> Op[dict[str, Any]]:
        """One delivery with its ``attempt_log``."""
        return (yield from fetch("GET", _id_path("deliveries", delivery_id)))

    def replay_delivery(self, delivery_id: str) -> Op[dict[str, Any]]:
        """Send the delivery again now, with the same ``webhook-id`` and body; the delivery,
        pending again."""
        return (yield from fetch("POST", _id_path("deliveries", delivery_id) + "/replay"))

    def replay_failed(self, endpoint_id: str, since: str | datetime) -> Op[dict[str, Any]]:
        """Send every failed delivery of the endpoint created at or after ``since`` (RFC
        3339, or an aware datetime) again: ``{"replayed": n, "delivery_ids": [...]}``."""
        return (yield from fetch("POST", _id_path("callbacks", endpoint_id) + "/replay",
                                 json={"since": _instant(since)}))


def _id_path(collection: str, resource_id: str) -> str:
    # Checked here, as names are: '..' would reach another route.
    if not ID.match(resource_id):
        raise ClientError(f"'{resource_id}' is not an id: letters, digits, '_' and '-'",
                          code="invalid_id")
    return f"/v1/{collection}/{resource_id}"


def _instant(value: str | datetime) -> str:
    """An RFC 3339 time for the API; a datetime must know its time zone."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ClientError("a time needs a time zone (e.g. datetime.now(UTC))",
                              code="invalid_time")
        return value.isoformat()
    return value
