"""The job state machine: the table, and properties over any sequence of events."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.domain.job import (
    NEW_ATTEMPT,
    TERMINAL,
    TRANSITIONS,
    Event,
    InvalidTransition,
    JobStatus,
    allowed_events,
    apply,
)

Q, S, R = JobStatus.QUEUED, JobStatus.STARTING, JobStatus.RUNNING
C, F, X, T = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT


@pytest.mark.parametrize(("status", "event", "target"), [
    (Q, Event.CLAIM, S),
    (S, Event.STARTED, R),
    (S, Event.DEFER, Q),
    (R, Event.COMPLETE, C),
    (R, Event.FAIL, F),
    (S, Event.FAIL, F),
    (Q, Event.CANCEL, X),
    (R, Event.CANCEL, X),
    (R, Event.TIME_OUT, T),
    (F, Event.RETRY, Q),
    (X, Event.RETRY, Q),
    (T, Event.RETRY, Q),
    (R, Event.RELAUNCH, Q),
])
def test_allowed_moves(status: JobStatus, event: Event, target: JobStatus) -> None:
    assert apply(status, event) is target


@pytest.mark.parametrize(("status", "event"), [
    (Q, Event.STARTED),  # must be claimed first
    (Q, Event.COMPLETE),  # only a running job completes
    (S, Event.COMPLETE),
    (C, Event.RETRY),  # a completed job is not retried
    (C, Event.FAIL),
    (F, Event.COMPLETE),
    (R, Event.CLAIM),
])
def test_forbidden_moves_raise(status: JobStatus, event: Event) -> None:
    with pytest.raises(InvalidTransition, match=str(status)):
        apply(status, event)


def test_the_table_names_every_event_once() -> None:
    assert set(TRANSITIONS) == set(Event)


def test_completed_is_final() -> None:
    assert allowed_events(C) == frozenset()


@given(st.sampled_from(sorted(TERMINAL)), st.sampled_from(list(Event)))
def test_terminal_states_absorb_all_but_a_new_attempt(status: JobStatus, event: Event) -> None:
    if event in NEW_ATTEMPT and status in TRANSITIONS[event][0]:
        assert apply(status, event) is Q
    else:
        with pytest.raises(InvalidTransition):
            apply(status, event)


@given(st.lists(st.sampled_from(list(Event)), max_size=40))
def test_any_event_sequence_stays_inside_the_table(events: list[Event]) -> None:
    status = Q
    for event in events:
        sources, target = TRANSITIONS[event]
        if status in sources:
            status = apply(status, event)
            assert status is target
        else:
            with pytest.raises(InvalidTransition):
                apply(status, event)
    assert status in set(JobStatus)
