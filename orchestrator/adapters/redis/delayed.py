"""``RedisDelayQueue``: steps due later, kept in a Redis sorted set until they are due.

Celery's countdown and ETA messages wait in a worker's memory (about 11 KB each, celery#2218)
and run twice once a delay outlasts Redis' visibility time-out (kombu#337). Here a step due
later is one member of a sorted set, scored by its due time: a few dozen bytes, durable with
Redis, and handed to the broker in bulk when due by whoever calls ``pop_due`` (beat, every
tick). The database still records every step's due time, so a step lost with Redis is found
again by the sweep.

A member is the step itself (task name and arguments, as JSON), so the same step scheduled
twice is one member, due at the time it was last scheduled for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis

# KEYS[1]: the set. ARGV: now, most. Pops (removes and returns) the members due by now.
_POP_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #due > 0 then
  redis.call('ZREM', KEYS[1], unpack(due))
end
return due
"""

Step = tuple[str, list[object]]  # task name, arguments


class RedisDelayQueue:
    def __init__(self, client: redis.Redis, *, key: str = "orchestrator:delayed") -> None:
        self._client = client
        self._key = key
        self._pop = client.register_script(_POP_DUE)

    def add(self, steps: Sequence[tuple[Step, float]]) -> None:
        """Keep each step until its due time (a step already kept moves to the later time)."""
        if steps:
            mapping = {_encode(step): at for step, at in steps}
            # The latest decision wins: a step scheduled again moves to its new time,
            # earlier or later.
            self._client.zadd(self._key, mapping)

    def pop_due(self, now: float, most: int = 1000) -> list[Step]:
        """Remove and return up to ``most`` steps due by ``now``, soonest first."""
        members = self._pop(keys=[self._key], args=[repr(now), most])
        return [_decode(m) for m in members]

    def next_due(self) -> float | None:
        first = self._client.zrange(self._key, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def __len__(self) -> int:
        return int(self._client.zcard(self._key))


def _encode(step: Step) -> str:
    return json.dumps([step[0], step[1]], separators=(",", ":"))


def _decode(member: bytes | str) -> Step:
    name, args = json.loads(member)
    return str(name), list(args)
