"""Our own limit, shared by two worker processes through the real Redis server, against a
sandbox enforcing the same numbers with an exact sliding window: every job runs, and the
sandbox never has to refuse a trigger."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.sandbox.settings import RateLimits, SandboxSettings
from tests.integration.conftest import Harness, running_harness

pytestmark = pytest.mark.integration

LIMIT = "10/2s"
JOBS = 40


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Harness]:
    sandbox = SandboxSettings(api_key="sandbox-key", rate_limits=RateLimits(
        cordage_trigger=LIMIT, cordage_read=None, cordage_kill=None))
    with running_harness(tmp_path / "stack", workers=2, concurrency=4, sandbox=sandbox,
                         rate_limits={"trigger": LIMIT}) as harness:
        yield harness


def test_two_workers_keep_a_shared_trigger_limit(limited: Harness) -> None:
    h = limited
    ids = [h.client.submit("sandbox/echo", {"n": i})["id"] for i in range(JOBS)]
    h.wait_until(lambda: h.all_terminal(ids), 120, "every job to end")
    statuses = {h.store.get_job(i).status.value for i in ids}  # type: ignore[union-attr]
    assert statuses == {"completed"}
    stats = httpx.get(f"{h.stack.sandbox.url}/_sandbox/stats", timeout=10).json()
    assert stats["rate_limited"] == {}, f"the sandbox refused requests: {stats}"
    assert stats["responses_429"] == 0
    assert stats["runs_started"] == JOBS


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[Harness]:
    with running_harness(tmp_path / "stack", workers=2, concurrency=4,
                         max_in_flight=3) as harness:
        yield harness


def test_a_capped_provider_runs_at_most_its_cap_and_batches_take_turns(capped: Harness) -> None:
    """A 40-job batch, then a 3-job batch on the same provider and priority, three runs at
    most in flight: the small batch is done while the big one is still going, and no more
    than three jobs were ever starting or running at once."""
    h = capped
    big = h.client.submit_batch([{"workflow": "sandbox/sleep", "inputs": {"duration_s": 0.4,
                                                                           "i": i}}
                                 for i in range(40)])
    small = h.client.submit_batch([{"workflow": "sandbox/echo", "inputs": {"i": i}}
                                   for i in range(3)])
    most = 0
    while not h.all_terminal(small["job_ids"]):
        most = max(most, h.store.provider_load("sandbox")[0])
        assert most <= 3, f"{most} jobs in flight on a provider capped at 3"
        time.sleep(0.05)
    assert not h.all_terminal(big["job_ids"]), "the small batch waited for the big one"
    h.wait_until(lambda: h.all_terminal(big["job_ids"]), 120, "the big batch to end")
    statuses = {h.store.get_job(i).status.value  # type: ignore[union-attr]
                for i in big["job_ids"] + small["job_ids"]}
    assert statuses == {"completed"}
