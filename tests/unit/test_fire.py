"""Firing schedules over fakes: exactly once per slot, overlap and catch-up policies, the
config file's declarations, manual triggers. Time is a fake clock; nothing sleeps."""

from __future__ import annotations

import math
from collections import Counter
from itertools import takewhile
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.domain.cron import parse_rule
from orchestrator.domain.records import Launch
from orchestrator.domain.schedule import MAX_COUNTED, MAX_SLOTS_PER_TICK, plan_slots
from orchestrator.services.cancel import cancel_job
from orchestrator.services.deps import Deps
from orchestrator.services.fire import fire_due
from orchestrator.services.schedules import (
    ScheduleRefused,
    ScheduleSpec,
    create_schedule,
    sync_declared,
    trigger_schedule,
    update_schedule,
)
from orchestrator.testing import FakeClock, FakeProvider, RecordingScheduler, make_deps

JOB = {"workflow": "fake/echo", "inputs": {"hello": "world"}}


def deps_at(start: float = 1_700_000_000.0) -> Deps:
    return make_deps(FakeProvider("fake"), clock=FakeClock(start))


def clock(deps: Deps) -> FakeClock:
    assert isinstance(deps.clock, FakeClock)
    return deps.clock


def schedule(deps: Deps, name: str = "s", **kw: Any) -> Any:
    fields: dict[str, Any] = {"every": "2s", "job": JOB, **kw}
    return create_schedule(ScheduleSpec(name=name, **fields), deps)


def slots(deps: Deps, name: str = "s") -> list[Any]:
    assert deps.schedules is not None
    found = deps.schedules.get_schedule(name)
    assert found is not None
    return list(reversed(deps.schedules.recent_slots(found.id, 10_000)))


def statuses(deps: Deps, name: str = "s") -> Counter[str]:
    return Counter(slot.status for slot in slots(deps, name))


def end_active_jobs(deps: Deps, name: str = "s") -> None:
    assert deps.schedules is not None
    found = deps.schedules.get_schedule(name)
    assert found is not None
    for job in deps.schedules.active_jobs(found.id):
        cancel_job(job.id, deps)


def tick_for(deps: Deps, seconds: float, step: float, *, beats: int = 1,
             finish_jobs: bool = True) -> None:
    for _ in range(int(seconds / step)):
        clock(deps).advance(step)
        for _ in range(beats):
            fire_due(deps)
        if finish_jobs:
            end_active_jobs(deps)


def test_two_beats_fire_each_slot_of_30_seconds_exactly_once() -> None:
    deps = deps_at(1_700_000_000.5)
    schedule(deps, overlap="allow")
    tick_for(deps, 30, 0.25, beats=2)
    recorded = slots(deps)
    times = [slot.slot_at for slot in recorded]
    assert len(times) == len(set(times)) == 15
    assert all(b - a == 2 for a, b in zip(times, times[1:], strict=False))
    assert {slot.status for slot in recorded} == {"fired"}
    assert deps.store.count_by_status()["cancelled"] == 15
    launches = [a for a in deps.scheduler.actions if isinstance(a, Launch)]  # type: ignore[attr-defined]
    assert len(launches) == 15


def test_skip_records_the_slots_that_would_have_overlapped() -> None:
    deps = deps_at(1_700_000_000.5)
    schedule(deps, overlap="skip")
    tick_for(deps, 10, 0.5, finish_jobs=False)  # the first job never ends
    assert statuses(deps) == Counter(fired=1, skipped=4)
    skipped = [s for s in slots(deps) if s.status == "skipped"]
    assert all("still queued" in (s.reason or "") for s in skipped)


def test_allow_lets_them_overlap() -> None:
    deps = deps_at(1_700_000_000.5)
    found = schedule(deps, overlap="allow")
    tick_for(deps, 10, 0.5, finish_jobs=False)
    assert statuses(deps) == Counter(fired=5)
    assert deps.schedules is not None
    assert len(deps.schedules.active_jobs(found.id)) == 5


def test_buffer_one_keeps_one_slot_and_fires_it_when_the_job_ends() -> None:
    deps = deps_at(1_700_000_000.5)
    schedule(deps, overlap="buffer_one")
    tick_for(deps, 6, 0.5, finish_jobs=False)
    assert statuses(deps) == Counter(fired=1, buffered=1, skipped=1)
    end_active_jobs(deps)
    fire_due(deps)
    assert statuses(deps) == Counter(fired=2, skipped=1)
    fire_due(deps)  # released once only
    assert statuses(deps) == Counter(fired=2, skipped=1)


def test_cancel_previous_cancels_the_running_job_before_launching_the_next() -> None:
    deps = deps_at(1_700_000_000.5)
    found = schedule(deps, overlap="cancel_previous")
    tick_for(deps, 4, 0.5, finish_jobs=False)
    assert statuses(deps) == Counter(fired=2)
    assert deps.schedules is not None
    active = deps.schedules.active_jobs(found.id)
    assert len(active) == 1 and active[0].id == slots(deps)[-1].job_id
    assert deps.store.count_by_status()["cancelled"] == 1


@pytest.mark.parametrize(("policy", "fired", "missed"),
                         [("latest", 1, 2), ("none", 0, 3), ("all", 3, 0)])
def test_catch_up_after_the_beat_was_down_for_three_slots(policy: str, fired: int,
                                                          missed: int) -> None:
    deps = deps_at(1_700_000_000.5)
    schedule(deps, every="10s", catchup=policy, overlap="allow")
    tick_for(deps, 10, 0.5)  # one slot on time
    assert statuses(deps) == Counter(fired=1)
    clock(deps).advance(36)  # the beat is down over three slots, back 6 s after the last
    fire_due(deps)
    assert statuses(deps) == Counter(fired=1 + fired, missed=missed)
    late = [s for s in slots(deps)[1:] if s.status == "fired"]
    assert all(s.reason == "caught up after the beat was down" for s in late)


def test_all_fires_only_within_the_window_and_records_the_rest_in_one_row() -> None:
    deps = deps_at(1_700_000_000.5)
    schedule(deps, every="10s", catchup="all", overlap="allow", catchup_window_s=35)
    clock(deps).advance(100)
    fire_due(deps)
    recorded = slots(deps)
    # Slots 70, 80, 90 (late) and 100 (on time) fire; 10 to 60 are past the window.
    assert Counter(s.status for s in recorded) == Counter(fired=4, missed=1)
    summary = next(s for s in recorded if s.status == "missed")
    assert summary.reason is not None and summary.reason.startswith("6 slot(s)")


def test_a_paused_schedule_fires_nothing_and_resumes_from_now() -> None:
    deps = deps_at(1_700_000_000.5)
    schedule(deps, every="10s", paused=True)
    clock(deps).advance(60)
    fire_due(deps)
    assert not slots(deps)
    update_schedule("s", {"paused": False}, deps)
    clock(deps).advance(10)
    fire_due(deps)
    assert statuses(deps) == Counter(fired=1)  # none of the paused slots, no misses


def test_trigger_fires_now_even_when_paused_or_overlapping() -> None:
    deps = deps_at()
    schedule(deps, paused=True)
    first = trigger_schedule("s", deps)
    second = trigger_schedule("s", deps)
    assert first.id != second.id and first.schedule_id == second.schedule_id
    assert [s.trigger for s in slots(deps)] == ["manual", "manual"]


def test_a_template_that_can_no_longer_make_a_job_records_a_failed_slot() -> None:
    deps = deps_at(1_700_000_000.5)
    schedule(deps)
    assert deps.schedules is not None
    deps.schedules.update_schedule("s", {"job": {"workflow": "gone/echo"}}, 0)
    tick_for(deps, 2, 0.5)
    [failed] = slots(deps)
    assert failed.status == "failed" and "not configured" in (failed.reason or "")


@pytest.mark.parametrize(("fields", "code", "message"), [
    ({"cron": "0 2 * *"}, "invalid_schedule", "expected five"),
    ({"every": "2s", "cron": "0 2 * * *"}, "invalid_schedule", "exactly one"),
    ({"timezone": "Nowhere/Else"}, "invalid_schedule", "IANA"),
    ({"job": {"workflow": "nope/echo"}}, "unknown_provider", "configured providers: fake"),
    ({"job": {"workflow": "fake/echo", "priority": 99}}, "invalid_schedule", "priority"),
    ({"job": {"workflow": "fake/echo", "idempotency_key": "k"}}, "invalid_schedule",
     "unknown field"),
    ({"overlap": "queue"}, "invalid_schedule", "overlap 'queue'"),
])
def test_a_bad_schedule_is_refused_with_a_message(fields: dict[str, Any], code: str,
                                                  message: str) -> None:
    deps = deps_at()
    base: dict[str, Any] = {"name": "s", "job": JOB}
    if "cron" not in fields:
        base["every"] = "2s"
    with pytest.raises(ScheduleRefused) as refused:
        create_schedule(ScheduleSpec(**{**base, **fields}), deps)
    assert refused.value.code == code and message in refused.value.message
    assert deps.schedules is not None and not deps.schedules.list_schedules()


def test_the_same_name_twice_is_a_conflict() -> None:
    deps = deps_at()
    schedule(deps)
    with pytest.raises(ScheduleRefused) as refused:
        schedule(deps)
    assert refused.value.status == 409


def test_sync_creates_updates_and_pauses_what_left_the_file() -> None:
    deps = deps_at()
    nightly = ScheduleSpec(name="nightly", cron="0 2 * * *", timezone="Europe/Berlin", job=JOB)
    hourly = ScheduleSpec(name="hourly", cron="0 * * * *", job=JOB)
    first = sync_declared([nightly, hourly], deps, "orchestrator.toml")
    assert (first.created, first.updated, first.paused) == (("nightly", "hourly"), (), ())
    again = sync_declared([nightly, hourly], deps, "orchestrator.toml")
    assert again.created == again.updated == again.paused == ()

    update_schedule("hourly", {"paused": True}, deps)  # paused through the API…
    changed = ScheduleSpec(name="nightly", cron="0 3 * * *", timezone="Europe/Berlin", job=JOB)
    outcome = sync_declared([changed, hourly], deps, "orchestrator.toml")
    assert outcome.updated == ("nightly",)
    assert deps.schedules is not None
    hourly_now = deps.schedules.get_schedule("hourly")
    assert hourly_now is not None and hourly_now.paused  # …stays paused: unchanged in file

    gone = sync_declared([changed], deps, "orchestrator.toml")
    assert gone.paused == ("hourly",)
    kept = deps.schedules.get_schedule("hourly")
    assert kept is not None and kept.paused and "removed from orchestrator.toml" in (kept.note
                                                                                    or "")
    back = sync_declared([changed, hourly], deps, "orchestrator.toml")
    assert back.updated == ("hourly",)
    restored = deps.schedules.get_schedule("hourly")
    assert restored is not None and not restored.paused and restored.note is None


def test_one_declaration_that_cannot_be_saved_does_not_stop_the_others() -> None:
    deps = deps_at()
    bad = ScheduleSpec(name="bad", every="1h", job={"workflow": "gone/echo"})
    good = ScheduleSpec(name="good", every="1h", job=JOB)
    outcome = sync_declared([bad, good], deps, "orchestrator.toml")
    assert outcome.created == ("good",)
    assert len(outcome.refused) == 1 and outcome.refused[0].startswith("bad: job template")


def test_a_schedule_made_through_the_api_is_taken_over_by_the_file() -> None:
    deps = deps_at()
    schedule(deps, name="nightly")
    outcome = sync_declared([ScheduleSpec(name="nightly", cron="0 2 * * *", job=JOB)], deps,
                            "orchestrator.toml")
    assert outcome.updated == ("nightly",)
    assert deps.schedules is not None
    taken = deps.schedules.get_schedule("nightly")
    assert taken is not None and taken.source == "config" and taken.every is None


def test_a_launch_lost_to_a_broker_outage_leaves_the_job_for_the_sweep() -> None:
    class Down(RecordingScheduler):
        def schedule(self, actions: Any) -> None:
            raise ConnectionError("broker down")

    deps = make_deps(FakeProvider("fake"), clock=FakeClock(1_700_000_000.5), scheduler=Down())
    schedule(deps)
    tick_for(deps, 2, 0.5, finish_jobs=False)
    assert statuses(deps) == Counter(fired=1)
    assert deps.store.count_by_status() == {"queued": 1}


def test_a_one_second_schedule_down_for_three_days_still_fires_its_latest_slot() -> None:
    deps = deps_at(1_700_000_000.5)
    schedule(deps, every="1s", catchup="latest", overlap="allow")
    clock(deps).advance(3 * 86400 + 0.7)
    outcome = fire_due(deps)
    assert (outcome.fired, outcome.missed) == (1, MAX_SLOTS_PER_TICK)  # 999 + the summary
    recorded = slots(deps)
    assert recorded[-1].status == "fired"
    assert clock(deps).now() - recorded[-1].slot_at < 1  # the newest, not an old one
    summary = recorded[0]
    assert summary.reason is not None
    assert summary.reason.startswith(f"at least {MAX_COUNTED} slot(s)")


@settings(max_examples=300, deadline=None)
@given(every=st.sampled_from([1.0, 2.0, 7.0, 60.0, 3600.0]),
       cursor=st.floats(min_value=1e9, max_value=1e9 + 10_000),
       elapsed=st.floats(min_value=0, max_value=400_000),
       window=st.floats(min_value=1, max_value=500_000),
       catchup=st.sampled_from(["none", "latest", "all"]))
def test_every_slot_is_accounted_for_once(every: float, cursor: float, elapsed: float,
                                         window: float, catchup: Any) -> None:
    rule = parse_rule(None, f"{every:g}s")
    now = cursor + elapsed
    plan = plan_slots(rule, cursor=cursor, now=now, catchup=catchup, window_s=window)
    recorded = plan.on_time + plan.catch_up + plan.missed
    assert len(recorded) == len(set(recorded)) <= MAX_SLOTS_PER_TICK
    assert all(cursor < s <= now for s in recorded)
    total = math.floor(now / every) - math.floor(cursor / every)
    if plan.dropped < MAX_COUNTED:
        assert len(recorded) + plan.dropped == total
    assert all(s > now - window for s in recorded)
    newest = math.floor(now / every) * every
    if newest > max(cursor, now - window):
        assert max(recorded) == newest  # the newest slot is never forgotten
    if recorded and plan.dropped:
        assert plan.dropped_to is not None and plan.dropped_to < min(recorded)
    if catchup == "none":
        assert not plan.catch_up
    if catchup == "latest":
        assert len(plan.catch_up) <= 1
        assert not plan.catch_up or plan.catch_up[0] == max(recorded)
    if catchup == "all":
        assert not plan.missed


@settings(max_examples=25, deadline=None)
@given(cron=st.sampled_from(["* * * * *", "*/7 * * * *", "0 2 * * *", "30 * * * *"]),
       elapsed=st.floats(min_value=0, max_value=40 * 86400),
       catchup=st.sampled_from(["none", "latest", "all"]))
def test_cron_plans_keep_the_newest_slots(cron: str, elapsed: float, catchup: Any) -> None:
    rule = parse_rule(cron, None, "Europe/Berlin")
    cursor = 1_774_000_000.0  # March 2026: the spring-forward night is in range
    now = cursor + elapsed
    plan = plan_slots(rule, cursor=cursor, now=now, catchup=catchup, window_s=86400)
    recorded = sorted(plan.on_time + plan.catch_up + plan.missed)
    expected = list(takewhile(lambda s: s <= now, rule.slots(max(cursor, now - 86400))))
    assert recorded == expected[-MAX_SLOTS_PER_TICK:]


def test_a_schedule_whose_provider_went_away_can_be_paused_but_not_resumed() -> None:
    deps = deps_at()
    schedule(deps)
    assert deps.schedules is not None
    deps.schedules.update_schedule("s", {"job": {"workflow": "gone/echo"}}, 0)
    assert update_schedule("s", {"paused": True, "overlap": "allow"}, deps).paused
    for attempt in (lambda: update_schedule("s", {"paused": False}, deps),
                    lambda: trigger_schedule("s", deps)):
        with pytest.raises(ScheduleRefused) as refused:
            attempt()
        assert (refused.value.status, refused.value.code) == (422, "unknown_provider")


def test_the_schedules_and_templates_labels_together_are_capped_as_a_jobs() -> None:
    deps = deps_at()
    many = {f"s{i}": "x" for i in range(30)}
    more = {f"t{i}": "x" for i in range(30)}
    with pytest.raises(ScheduleRefused, match="come to 60; a job takes at most 50"):
        schedule(deps, labels=many, job={**JOB, "labels": more})
