"""Schedules on the real stack: two `celery -A workers beat` processes, SQLite, the sandbox.

Schedules are declared in the generated orchestrator.toml, so these tests also see the
start-up sync. The assertions are about slots and jobs in the database, never about time
taken: the waits only let the rules' slots pass.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.adapters.store.schedules import SqlScheduleStore
from orchestrator.domain.records import Job
from orchestrator.domain.schedule import Slot
from tests.integration.conftest import Harness, running_harness

pytestmark = pytest.mark.integration


def declared(name: str, every: str, job: str, **policies: str) -> str:
    lines = [f'\n[[schedules]]\nname = "{name}"\nevery = "{every}"\njob = {job}']
    lines += [f'{key} = "{value}"' for key, value in policies.items()]
    return "\n".join(lines) + "\n"


ECHO = '{ workflow = "sandbox/echo", inputs = { from = "schedule" } }'
SLOW = '{ workflow = "sandbox/sleep", inputs = { duration_s = 5 } }'


class Schedules:
    def __init__(self, harness: Harness) -> None:
        self.h = harness
        self.store = SqlScheduleStore(harness.store.engine)

    def slots(self, name: str) -> list[Slot]:
        schedule = self.store.get_schedule(name)
        assert schedule is not None, f"schedule {name} was not synced from the file"
        return sorted(self.store.recent_slots(schedule.id, 10_000), key=lambda s: s.slot_at)

    def jobs(self, name: str) -> list[Job]:
        jobs = [self.h.store.get_job(s.job_id) for s in self.slots(name) if s.job_id]
        return [job for job in jobs if job is not None]


@pytest.fixture(scope="module")
def two_beats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    config = (declared("every-2s", "2s", ECHO, overlap="allow")
              + declared("slow-skip", "2s", SLOW, overlap="skip")
              + declared("slow-allow", "2s", SLOW, overlap="allow"))
    with running_harness(tmp_path_factory.mktemp("beats"), concurrency=8,
                         extra_config=config) as harness:
        harness.stack.start_beat()
        assert len(harness.stack.beats) == 2
        yield harness


def test_two_beats_fire_each_slot_exactly_once_over_30_seconds(two_beats: Harness) -> None:
    schedules = Schedules(two_beats)
    two_beats.wait_until(lambda: len(schedules.slots("every-2s")) >= 15, 60,
                         "15 slots of the 2 s schedule")
    slots = schedules.slots("every-2s")
    times = [s.slot_at for s in slots]
    assert len(times) == len(set(times)), "a slot was recorded twice"
    assert all(math.isclose(b - a, 2.0) for a, b in zip(times, times[1:], strict=False)), (
        f"a slot was left out: {times}")
    assert Counter(s.status for s in slots) == Counter(fired=len(slots))
    job_ids = [s.job_id for s in slots]
    assert len(set(job_ids)) == len(job_ids)
    two_beats.wait_until(lambda: two_beats.all_terminal([i for i in job_ids if i]), 60,
                         "the scheduled jobs to end")
    assert {job.status.value for job in schedules.jobs("every-2s")} == {"completed"}
    # Each job is one remote run: the schedule made no job twice.
    runs = [r for r in two_beats.runs() if isinstance(r.get("inputs"), dict)
            and r["inputs"].get("from") == "schedule"]
    assert len(runs) >= len(slots)


def test_skip_never_overlaps_and_records_the_skipped_slots(two_beats: Harness) -> None:
    schedules = Schedules(two_beats)
    two_beats.wait_until(lambda: len(schedules.jobs("slow-skip")) >= 2
                         and two_beats.all_terminal([schedules.jobs("slow-skip")[0].id]), 90,
                         "two jobs of the slow schedule")
    slots = schedules.slots("slow-skip")
    assert Counter(s.status for s in slots)["skipped"] >= 2
    assert all("still" in (s.reason or "") for s in slots if s.status == "skipped")
    jobs = schedules.jobs("slow-skip")
    for earlier, later in zip(jobs, jobs[1:], strict=False):
        assert earlier.finished_at is not None and later.created_at >= earlier.finished_at


def test_allow_lets_the_slow_jobs_overlap(two_beats: Harness) -> None:
    schedules = Schedules(two_beats)
    two_beats.wait_until(lambda: len(schedules.jobs("slow-allow")) >= 3, 60,
                         "three jobs of the allowing schedule")
    slots = schedules.slots("slow-allow")
    assert "skipped" not in {s.status for s in slots}
    first, second = schedules.jobs("slow-allow")[:2]
    two_beats.wait_until(lambda: two_beats.all_terminal([first.id]), 60, "the first to end")
    ended = two_beats.store.get_job(first.id)
    assert ended is not None and ended.finished_at is not None
    assert second.created_at < ended.finished_at, "the allowing schedule did not overlap"


EVERY_S = 8.0  # grace is half of it (4 s): room for a beat to start before the next slot


POLICIES = {"latest": Counter(fired=1, missed=2), "none": Counter(missed=3),
            "all": Counter(fired=3)}


def test_beats_stopped_for_three_slots_catch_up_by_policy(tmp_path: Path) -> None:
    config = "".join(declared(f"catchup-{policy}", f"{EVERY_S:g}s", ECHO, catchup=policy,
                              overlap="allow") for policy in POLICIES)
    with running_harness(tmp_path / "stack", extra_config=config) as h:
        schedules = Schedules(h)
        h.wait_until(lambda: all(schedules.slots(f"catchup-{p}") for p in POLICIES), 30,
                     "a first slot of each schedule")
        for beat in h.stack.beats:
            beat.stop()
        h.stack.beats.clear()
        stopped_at = time.time()
        first_missed = (math.floor(stopped_at / EVERY_S) + 1) * EVERY_S
        third_missed = first_missed + 2 * EVERY_S
        # Back just past the third slot's grace, well before the fourth slot.
        time.sleep(max(0.0, third_missed + EVERY_S / 2 + 0.5 - time.time()))
        h.stack.start_beat()
        for policy, expected in POLICIES.items():
            name = f"catchup-{policy}"
            h.wait_until(lambda n=name: any(s.slot_at >= third_missed  # type: ignore[misc]
                                            for s in schedules.slots(n)),
                         30, f"the restarted beat to look at {name}'s missed slots")
            down = [s for s in schedules.slots(name)
                    if first_missed <= s.slot_at <= third_missed]
            assert [s.slot_at for s in down] == [first_missed, first_missed + EVERY_S,
                                                 third_missed], name
            assert Counter(s.status for s in down) == expected, name
