"""The delay queue on a real Redis server, and the Celery scheduler that fills it: a step
due later is one small member until it is due, then handed out once, in bulk."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from orchestrator.adapters.celery_app import POLL, CeleryScheduler
from orchestrator.adapters.embedded import EmbeddedRedis
from orchestrator.adapters.redis.delayed import RedisDelayQueue
from orchestrator.domain.records import Deliver, Launch, Poll


@pytest.fixture
def queue(redis_server: EmbeddedRedis) -> Iterator[RedisDelayQueue]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield RedisDelayQueue(client)
    client.close()


class SentTasks:
    """Stands in for the Celery app: records what would go to the broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any]]] = []

    def send_task(self, name: str, args: list[Any]) -> None:
        self.sent.append((name, args))


def test_steps_wait_until_due_and_are_popped_once(queue: RedisDelayQueue) -> None:
    now = 1_000_000.0
    queue.add([((POLL, ["job_a", 1]), now + 5), ((POLL, ["job_b", 0]), now + 1)])
    assert queue.pop_due(now) == []
    assert queue.next_due() == now + 1
    assert queue.pop_due(now + 2) == [(POLL, ["job_b", 0])]
    assert queue.pop_due(now + 10) == [(POLL, ["job_a", 1])]
    assert queue.pop_due(now + 10) == [] and queue.next_due() is None


def test_the_same_step_twice_is_kept_once_at_its_latest_time(queue: RedisDelayQueue) -> None:
    now = 1_000_000.0
    queue.add([((POLL, ["job_a", 3]), now + 5)])
    queue.add([((POLL, ["job_a", 3]), now + 9)])
    queue.add([((POLL, ["job_a", 3]), now + 2)])  # scheduled again, sooner
    assert len(queue) == 1 and queue.next_due() == now + 2


def test_a_backlog_comes_out_in_bulk_soonest_first(queue: RedisDelayQueue) -> None:
    now = 1_000_000.0
    queue.add([((POLL, [f"job_{i:05d}", 0]), now + i / 1000) for i in range(2500)])
    first = queue.pop_due(now + 10, most=1000)
    assert len(first) == 1000 and first[0] == (POLL, ["job_00000", 0])
    assert len(queue.pop_due(now + 10, most=1000)) == 1000
    assert len(queue.pop_due(now + 10, most=1000)) == 500


def test_the_scheduler_sends_now_what_is_due_and_keeps_the_rest(
        queue: RedisDelayQueue) -> None:
    app = SentTasks()
    scheduler = CeleryScheduler(app, queue)  # type: ignore[arg-type]
    now = time.time()
    scheduler.schedule([Launch("job_a"), Poll("job_b", 2, now + 0.3),
                        Deliver("dlv_c", now - 1), Launch("job_d", now + 60)])
    assert app.sent == [("orchestrator.launch", ["job_a"]), ("orchestrator.deliver", ["dlv_c"])]
    assert scheduler.send_due() == 0
    time.sleep(0.35)
    assert scheduler.send_due() == 1
    assert app.sent[-1] == ("orchestrator.poll", ["job_b", 2])
    assert len(queue) == 1  # the launch a minute away waits in Redis, not in a worker


def test_a_batch_of_launches_is_one_write_not_a_message_each(queue: RedisDelayQueue) -> None:
    app = SentTasks()
    scheduler = CeleryScheduler(app, queue)  # type: ignore[arg-type]
    scheduler.schedule([Launch(f"job_{i:05d}") for i in range(5000)])
    assert app.sent == [] and len(queue) == 5000
    handed = 0
    while (sent := scheduler.send_due(most=1000)):
        handed += sent
    assert handed == 5000 and len({args[0] for _, args in app.sent}) == 5000


def test_one_delivery_wake_up_waits_at_a_time(redis_server: EmbeddedRedis) -> None:
    """Deliveries go out in rounds: while one wake-up waits, more would only be tasks
    that find nothing; the task that starts lowers the flag, so later ones wake again."""
    from orchestrator.adapters.celery_app import DELIVER
    from orchestrator.adapters.redis.wake import RedisWakeFlag

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    app = SentTasks()
    flag = RedisWakeFlag(client, hold_ms=300)
    scheduler = CeleryScheduler(app, RedisDelayQueue(client), flag)  # type: ignore[arg-type]
    scheduler.schedule([Deliver("msg_1"), Deliver("msg_2")])
    scheduler.schedule([Deliver("msg_3")])
    assert app.sent == [(DELIVER, ["msg_1"])]
    scheduler.senders_awake()  # the task took it
    scheduler.schedule([Deliver("msg_4")])
    assert app.sent[-1] == (DELIVER, ["msg_4"]) and len(app.sent) == 2
    time.sleep(0.35)  # a lost wake-up costs at most the hold
    scheduler.schedule([Deliver("msg_5")])
    assert app.sent[-1] == (DELIVER, ["msg_5"])
    client.close()


def test_a_dropped_wake_up_comes_back_after_the_hold_and_a_failed_send_lowers_the_flag(
        redis_server: EmbeddedRedis) -> None:
    from orchestrator.adapters.celery_app import DELIVER
    from orchestrator.adapters.redis.wake import RedisWakeFlag

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    delayed = RedisDelayQueue(client)
    flag = RedisWakeFlag(client, hold_ms=60_000)
    scheduler = CeleryScheduler(SentTasks(), delayed, flag)  # type: ignore[arg-type]
    scheduler.schedule([Deliver("msg_1")])
    scheduler.schedule([Deliver("msg_2")])  # dropped: one shared wake-up follows
    scheduler.schedule([Deliver("msg_3")])
    assert delayed.pop_due(time.time() + 61) == [(DELIVER, [])]

    class Down:
        def send_task(self, name: str, args: list[Any]) -> None:
            raise ConnectionError("broker down")

    flag.lower()
    failing = CeleryScheduler(Down(), delayed, flag)  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        failing.schedule([Deliver("msg_4")])
    assert flag.raise_()  # lowered again: the next delivery sends its wake-up
    client.close()
