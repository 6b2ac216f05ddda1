"""The baselines' own Celery app: ``celery -A orchestrator.bench.celery_app worker``.

Configured like the product's workers (JSON, late acks, prefetch 1) on the broker named by
``$BENCH_BROKER_URL``, so what it measures is Celery and Redis on this machine, not our code:

- ``bench.noop`` does nothing but count itself in Redis (its start time, each worker's first):
  the raw ceiling of tasks per second.
- ``bench.trigger`` POSTs one Cordage trigger with Celery's own ``rate_limit`` set to the
  published limit (``$BENCH_RATE_LIMIT``, per worker, as celery#5732 describes), and on a 429
  retries after ``retry_after``: the per-worker rate limit users reach for first.
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
from celery import Celery, Task
from redis import Redis

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")
RATE_LIMIT = os.environ.get("BENCH_RATE_LIMIT", "10/s")
PREFIX = os.environ.get("BENCH_PREFIX", "bench")
QUEUE = "bench"

app = Celery("bench", broker=BROKER_URL, set_as_current=False)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_redis: Redis | None = None
_http: httpx.Client | None = None


def redis() -> Redis:
    global _redis
    if _redis is None:
        _redis = Redis.from_url(BROKER_URL)
    return _redis


def http() -> httpx.Client:
    global _http
    if _http is None:
        _http = httpx.Client(timeout=30.0)
    return _http


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]  # Celery is untyped
def noop() -> None:
    now = time.time()
    pipe = redis().pipeline(transaction=False)
    pipe.setnx(f"{PREFIX}:first:{os.getppid()}", now)  # per worker process (pool parent)
    pipe.rpush(f"{PREFIX}:times", now)
    pipe.incr(f"{PREFIX}:done")
    pipe.execute()


@app.task(name="bench.trigger", bind=True, rate_limit=RATE_LIMIT,  # type: ignore[untyped-decorator]
          max_retries=None)
def trigger(self: Task[Any, Any], url: str, key: str, n: int) -> None:
    response = http().post(url, json={"n": n}, headers={"Authorization": f"Bearer {key}"})
    if response.status_code == 429:
        redis().incr(f"{PREFIX}:429")
        retry_after = float(response.json().get("retry_after", 1))
        raise self.retry(countdown=retry_after)
    response.raise_for_status()
    redis().incr(f"{PREFIX}:done")
