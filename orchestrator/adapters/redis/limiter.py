"""``RedisRateLimiter``: the ``RateLimiter`` port as one atomic script in Redis.

A sorted set per API key and operation holds the times of the requests granted within the
window (``orchestrator.domain.ratelimit``: at most ``count`` in any window of the period,
counted a small margin longer); a second holds the turns promised to refused callers, so
each is told a different time. Checking and granting is one script, so any number of
processes on any number of hosts share the limit exactly. Times come from the Redis
server's own clock (``TIME``), never from the callers', so a host whose clock runs ahead
cannot take turns early.
"""

from __future__ import annotations

import secrets

import redis

from orchestrator.domain.ratelimit import RateLimit, window_margin_s
from orchestrator.ports import LimiterState

# KEYS[1]: the granted requests' times; KEYS[2]: the turns promised to refused callers.
# ARGV: count, window (µs), a unique suffix for members, 1 to take a turn or 0 to look.
# Returns {granted, wait µs, used}. Mirrors domain/ratelimit.py's next_turn/promised_turn.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local count = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local member = now .. ':' .. ARGV[3]
local keep = math.ceil(window / 1000) * 2 + 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local used = redis.call('ZCARD', KEYS[1])
if used < count then
  if ARGV[4] == '1' then
    redis.call('ZADD', KEYS[1], now, member)
    redis.call('PEXPIRE', KEYS[1], keep)
    used = used + 1
  end
  return {1, 0, used}
end
local waiting = 0
if ARGV[4] == '1' then
  waiting = redis.call('ZCARD', KEYS[2])
end
local index = used - count + waiting
local turn
if index < used then
  turn = tonumber(redis.call('ZRANGE', KEYS[1], index, index, 'WITHSCORES')[2])
else
  turn = tonumber(redis.call('ZRANGE', KEYS[2], index - used, index - used, 'WITHSCORES')[2])
end
turn = turn + window
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[2], turn, member)
  redis.call('PEXPIRE', KEYS[2], keep)
end
return {0, turn - now, used}
"""


class RedisRateLimiter:
    def __init__(self, client: redis.Redis, *, prefix: str = "orchestrator:rate") -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_ACQUIRE)

    def _call(self, key: str, operation: str, limit: RateLimit,
              take: bool) -> tuple[bool, float, int]:
        window_us = round((limit.period_s + window_margin_s(limit)) * 1_000_000)
        base = f"{self._prefix}:{key}:{operation}"
        granted, wait_us, used = self._script(
            keys=[base, f"{base}:promised"],
            args=[limit.count, window_us, secrets.token_hex(4), "1" if take else "0"])
        return bool(granted), max(0.0, float(wait_us) / 1_000_000), int(used)

    def acquire(self, key: str, operation: str, limit: RateLimit) -> float:
        granted, wait, _ = self._call(key, operation, limit, take=True)
        return 0.0 if granted else wait

    def state(self, key: str, operation: str, limit: RateLimit) -> LimiterState:
        granted, wait, used = self._call(key, operation, limit, take=False)
        return LimiterState(used=used, remaining=max(0, limit.count - used),
                            next_turn_s=0.0 if granted else wait)
