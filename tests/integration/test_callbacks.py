"""Callback endpoints through the real stack: a receiver that refuses the first two
attempts of every event with 503 and ``Retry-After: 1`` still gets every event of 200 jobs
exactly once, each signature verifying with the ``standardwebhooks`` package, no retry
before its ``Retry-After``; the delivery log holds every attempt; a replay re-sends with
the same ``webhook-id``."""

from __future__ import annotations

from collections import Counter

import pytest

from orchestrator.receiver import CallbackReceiver, FailFirst, event_types
from tests.integration.conftest import Harness

pytestmark = pytest.mark.integration

JOBS = 200


@pytest.mark.timeout(300)
def test_every_event_arrives_once_signed_after_refusals_and_a_replay_resends_it(
        harness: Harness) -> None:
    refusing = FailFirst(attempts=2, status=503, retry_after=1)
    with CallbackReceiver("whsec_" + "A" * 32, refusing) as receiver:
        endpoint = harness.client.create_callback(
            receiver.url, event_types=["job.started", "job.completed", "job.failed",
                                       "batch.completed"],
            labels={"suite": "callbacks"})
        receiver.state.secret = endpoint["secret"]
        batch = harness.client.submit_batch(
            [{"workflow": "sandbox-codewords/" + ("fail" if i % 10 == 0 else "echo"),
              "inputs": {"i": i}} for i in range(JOBS)], labels={"suite": "callbacks"})
        expected = 2 * JOBS + 1  # started and an end for each job, and the batch's end
        harness.wait_until(lambda: len(receiver.events()) >= expected, 240,
                           f"{expected} events")
        summary = receiver.summary()
        assert summary["bad_signatures"] == 0 and summary["duplicates"] == 0
        events = receiver.events()
        assert event_types(events) == {"job.started": JOBS, "job.completed": JOBS - 20,
                                       "job.failed": 20, "batch.completed": 1}
        ended = Counter(e.body["data"]["id"] for e in events
                        if e.body["type"] in ("job.completed", "job.failed"))
        assert set(ended) == set(batch["job_ids"]) and set(ended.values()) == {1}
        with receiver.state.lock:
            attempts = {k: list(v) for k, v in receiver.state.attempts.items()}
        assert all(len(times) == 3 for times in attempts.values())
        early = [k for k, times in attempts.items()
                 if any(b - a < 1.0 for a, b in zip(times, times[1:], strict=False))]
        gaps = sorted(round(b - a, 3) for times in attempts.values()
                      for a, b in zip(times, times[1:], strict=False))
        assert not early, f"retries before Retry-After: {early[:5]}, gaps {gaps[:10]}"

        log = list(harness.client.deliveries(endpoint["id"]))
        assert len(log) == expected
        one = harness.client.get_delivery(log[0]["id"])
        assert [a["status_code"] for a in one["attempt_log"]] == [503, 503, 204]
        assert one["status"] == "succeeded"

        harness.client.replay_delivery(one["id"])
        harness.wait_until(lambda: len(receiver.state.attempts[one["id"]]) == 4, 30,
                           "the replay")
        harness.wait_until(
            lambda: len(harness.client.get_delivery(one["id"])["attempt_log"]) == 4, 30,
            "the replay's attempt in the log")
        assert receiver.summary()["duplicates"] == 1  # the replay, same webhook-id
