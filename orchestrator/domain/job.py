"""The job state machine: an explicit transition table, and nothing else decides a move.

A job is ``queued`` until a worker claims it (``starting``: the start request may be on the
wire), ``running`` once the remote run id is stored, then one of four terminal states. The
store applies each move as a compare-and-set guarded by the allowed source states, so a move
that another process already made updates zero rows and is not made twice.

A terminal state is final for that attempt. ``retry`` (asked for by a user) and ``relaunch``
(a failed run with ``retries`` left) start a new attempt of the same job from ``queued``; the
history keeps every attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT}
)
ACTIVE = frozenset(set(JobStatus) - TERMINAL)


class Event(StrEnum):
    """What happened to a job; each names one row of the transition table."""

    CLAIM = "claim"  # a worker takes a queued job to start it
    DEFER = "defer"  # the start was refused before it began (rate limit): back to the queue
    STARTED = "started"  # the runtime accepted the run; its id is stored
    COMPLETE = "complete"
    FAIL = "fail"
    CANCEL = "cancel"
    TIME_OUT = "time_out"
    RETRY = "retry"  # a user asks for a new attempt of a finished job
    RELAUNCH = "relaunch"  # a failed run with retries left: a new attempt


Q, S, R = JobStatus.QUEUED, JobStatus.STARTING, JobStatus.RUNNING
RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT})

TRANSITIONS: dict[Event, tuple[frozenset[JobStatus], JobStatus]] = {
    Event.CLAIM: (frozenset({Q}), S),
    Event.DEFER: (frozenset({S}), Q),
    Event.STARTED: (frozenset({S}), R),
    Event.COMPLETE: (frozenset({R}), JobStatus.COMPLETED),
    Event.FAIL: (frozenset({Q, S, R}), JobStatus.FAILED),
    Event.CANCEL: (frozenset({Q, S, R}), JobStatus.CANCELLED),
    Event.TIME_OUT: (frozenset({Q, S, R}), JobStatus.TIMED_OUT),
    Event.RETRY: (RETRYABLE, Q),
    Event.RELAUNCH: (frozenset({S, R}), Q),
}

# Events that begin a new attempt of the job rather than continue the current one.
NEW_ATTEMPT = frozenset({Event.RETRY, Event.RELAUNCH})


class InvalidTransition(Exception):
    def __init__(self, event: Event, status: JobStatus) -> None:
        super().__init__(f"a job that is {status} cannot take '{event}'")
        self.event = event
        self.status = status


@dataclass(frozen=True)
class Transition:
    event: Event
    sources: frozenset[JobStatus]
    target: JobStatus


def transition(event: Event) -> Transition:
    sources, target = TRANSITIONS[event]
    return Transition(event, sources, target)


def apply(status: JobStatus, event: Event) -> JobStatus:
    """The state a job in ``status`` moves to on ``event``; raises if the table forbids it."""
    sources, target = TRANSITIONS[event]
    if status not in sources:
        raise InvalidTransition(event, status)
    return target


def allowed_events(status: JobStatus) -> frozenset[Event]:
    return frozenset(e for e, (sources, _) in TRANSITIONS.items() if status in sources)


class RemoteState(StrEnum):
    """A remote run's state, in the five words Cordage uses (CodeWords maps onto them)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RemoteState.COMPLETED, RemoteState.FAILED, RemoteState.CANCELLED)


@dataclass(frozen=True)
class RunStatus:
    """What one poll of a remote run told us."""

    state: RemoteState
    outputs: object = None
    error: str | None = None
    raw_status: str = ""


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a provider needs to start one run of a job."""

    job_id: str
    workflow: str  # the name on the provider: a CodeWords service id or a Cordage webhook key
    inputs: object
    path: str = ""
    reservation: str | None = None  # an id reserved before the start (CodeWords)


def split_workflow(workflow: str) -> tuple[str, str]:
    """``"cordage/abc"`` → ``("cordage", "abc")``; raises ValueError on a malformed name."""
    provider, sep, name = workflow.partition("/")
    if not sep or not provider or not name:
        raise ValueError(
            f"workflow '{workflow}' must be '<provider>/<name>', such as 'sandbox/echo'"
        )
    return provider, name
