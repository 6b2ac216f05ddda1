"""``RedisEmbargoes``: the ``Embargoes`` port in Redis, shared by every process.

One key per API key and operation holds the time before which nothing may be sent. Raising
it is one atomic script (a longer wait is never shortened by a shorter one that arrives
later), and the key expires with the embargo, so nothing needs cleaning up.
"""

from __future__ import annotations

import math
import time

import redis

_IMPOSE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local until_ = tonumber(ARGV[1])
if until_ > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""


class RedisEmbargoes:
    def __init__(self, client: redis.Redis, *, prefix: str = "orchestrator:embargo") -> None:
        self._client = client
        self._prefix = prefix
        self._impose = client.register_script(_IMPOSE)

    def _key(self, key: str, operation: str) -> str:
        return f"{self._prefix}:{key}:{operation}"

    def until(self, key: str, operation: str) -> float | None:
        value = self._client.get(self._key(key, operation))
        return None if value is None else float(value)

    def impose(self, key: str, operation: str, until: float) -> None:
        # Kept a second past the embargo: expiry is housekeeping, the value decides.
        ttl_ms = max(1000, math.ceil((until - time.time()) * 1000) + 1000)
        self._impose(keys=[self._key(key, operation)], args=[repr(until), ttl_ms])
