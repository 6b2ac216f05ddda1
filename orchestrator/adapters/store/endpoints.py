"""``SqlEndpointStore``: callback endpoints in the database, their secrets sealed by a
``SecretBox`` on the way in and opened on the way out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.engine import Row

from orchestrator.adapters.crypto import SecretBox
from orchestrator.adapters.store.repository import Transactions
from orchestrator.adapters.store.tables import callback_endpoints
from orchestrator.domain.records import CallbackEndpoint, Subscription

_SEALED = ("secret", "previous_secret")


class SqlEndpointStore(Transactions):
    def __init__(self, engine: Engine, box: SecretBox) -> None:
        super().__init__(engine)
        self._box = box

    def add_endpoint(self, endpoint: CallbackEndpoint) -> CallbackEndpoint:
        with self._write() as conn:
            conn.execute(insert(callback_endpoints).values(**self._row(vars(endpoint))))
        return endpoint

    def get_endpoint(self, endpoint_id: str) -> CallbackEndpoint | None:
        with self._read() as conn:
            row = conn.execute(select(callback_endpoints).where(
                callback_endpoints.c.id == endpoint_id)).one_or_none()
        return None if row is None else self._endpoint(row)

    def list_endpoints(self) -> list[CallbackEndpoint]:
        query = select(callback_endpoints).order_by(callback_endpoints.c.id)
        with self._read() as conn:
            return [self._endpoint(row) for row in conn.execute(query)]

    def subscriptions(self) -> list[Subscription]:
        c = callback_endpoints.c
        query = (select(c.id, c.url, c.event_types, c.workflows, c.labels)
                 .where(c.enabled.is_(True)).order_by(c.id))
        with self._read() as conn:
            return [Subscription(row.id, row.url, tuple(row.event_types or ()),
                                 tuple(row.workflows or ()), row.labels or {})
                    for row in conn.execute(query)]

    def update_endpoint(self, endpoint_id: str, values: Mapping[str, object], now: float,
                        *, guard: Mapping[str, object] | None = None
                        ) -> CallbackEndpoint | None:
        row = self._row({**values, "updated_at": now})
        c = callback_endpoints.c
        conditions = [c.id == endpoint_id]
        conditions += [c[name].is_(None) if value is None else c[name] == value
                       for name, value in (guard or {}).items()]
        with self._write() as conn:
            changed = conn.execute(update(callback_endpoints).where(*conditions)
                                   .values(**row)).rowcount
        return self.get_endpoint(endpoint_id) if changed else None

    def delete_endpoint(self, endpoint_id: str) -> bool:
        with self._write() as conn:
            return bool(conn.execute(delete(callback_endpoints).where(
                callback_endpoints.c.id == endpoint_id)).rowcount)

    def _row(self, values: Mapping[str, object]) -> dict[str, Any]:
        row = dict(values)
        for name in _SEALED:
            if isinstance(row.get(name), str):
                row[name] = self._box.seal(str(row[name]))
        for name in ("event_types", "workflows"):
            if name in row:
                row[name] = list(row[name])  # type: ignore[call-overload]
        if "labels" in row:
            row["labels"] = dict(row["labels"])  # type: ignore[call-overload]
        return row

    def _endpoint(self, row: Row[Any]) -> CallbackEndpoint:
        data = dict(row._mapping)
        for name in _SEALED:
            if data.get(name):
                # Unreadable (the key changed): the endpoint is still shown and can be
                # rotated; its deliveries say why they cannot be signed.
                data[name] = self._box.open_or_none(data[name])
        data["event_types"] = tuple(data["event_types"] or ())
        data["workflows"] = tuple(data["workflows"] or ())
        data["labels"] = data["labels"] or {}
        return CallbackEndpoint(**data)
