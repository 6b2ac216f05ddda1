"""What each sandbox workflow does, decided once when its run starts.

A run's whole future (how long it takes, whether it fails, what it produces) is fixed at
start; its state at any moment is then a pure function of the clock, so the sandbox needs no
background threads and a poll can never race a worker.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

WORKFLOWS = ("echo", "sleep", "flaky", "fail", "files")
MAX_FILES = 100
MAX_DURATION_S = 86400.0


@dataclass(frozen=True)
class OutputFile:
    name: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class Plan:
    """A run's fate: ``result`` when it succeeds, ``error`` when it fails."""

    duration_s: float
    result: object = None
    error: str | None = None
    files: list[OutputFile] = field(default_factory=list)

    @property
    def fails(self) -> bool:
        return self.error is not None


def plan_run(
    workflow: str, inputs: object, run_id: str, rng: random.Random, default_duration_s: float
) -> Plan | None:
    """The plan for one run of ``workflow``; ``None`` when no such workflow exists."""
    if workflow not in WORKFLOWS:
        return None
    params = inputs if isinstance(inputs, Mapping) else {}
    duration = _number(params.get("duration_s"), default_duration_s, low=0.0, high=MAX_DURATION_S)
    if workflow == "echo":
        return Plan(duration, result=inputs)
    if workflow == "sleep":
        return Plan(duration, result={"slept_s": duration})
    if workflow == "flaky":
        p = _number(params.get("p"), 0.5, low=0.0, high=1.0)
        if rng.random() < p:
            return Plan(duration, error=f"workflow 'flaky' failed this time (p={p})")
        return Plan(duration, result=inputs)
    if workflow == "fail":
        message = params.get("error")
        if not isinstance(message, str) or not message:
            message = "workflow 'fail' failed, as it always does"
        return Plan(duration, error=message)
    count = int(_number(params.get("count"), 2, low=0, high=MAX_FILES))
    return Plan(duration, files=_output_files(run_id, count))


def _output_files(run_id: str, count: int) -> list[OutputFile]:
    # Content depends only on the run id and position, so a test can predict every byte.
    return [
        OutputFile(
            name=f"output_{i}.txt",
            content_type="text/plain; charset=utf-8",
            content=f"sandbox file {i} of {count} from run {run_id}\n".encode(),
        )
        for i in range(1, count + 1)
    ]


def _number(value: object, default: float, *, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return default
    result = max(low, float(value))
    return min(high, result) if high is not None else result
