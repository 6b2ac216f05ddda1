"""``RedisWakeFlag``: at most one wake-up message waiting for the callback senders.

A delivery task sends every due delivery no one holds, in rounds, not only the one its
message names; so while one wake-up waits in the queue, more would only be tasks that find
nothing left. Raising the flag (``SET NX`` with a short expiry) says one is on its way;
the task that takes it lowers the flag first, so a delivery due after that point raises it
again. The expiry bounds what a lost message costs: the next due delivery sends another
(and the sweep finds every overdue one regardless).
"""

from __future__ import annotations

import redis


class RedisWakeFlag:
    def __init__(self, client: redis.Redis, *, key: str = "orchestrator:deliver:wake",
                 hold_ms: int = 500) -> None:
        self._client = client
        self._key = key
        self._hold_ms = hold_ms

    @property
    def hold_s(self) -> float:
        return self._hold_ms / 1000

    def raise_(self) -> bool:
        """True if no wake-up was on its way (send one now); False if one is."""
        return bool(self._client.set(self._key, b"1", nx=True, px=self._hold_ms))

    def lower(self) -> None:
        self._client.delete(self._key)
