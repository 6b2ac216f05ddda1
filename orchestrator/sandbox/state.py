"""The sandbox's memory: runs, reserved ids, stored files, counters and the limiter.

All of it is touched only from the server's event loop (every route is ``async def``), so
no locks are needed; other threads read it through the admin API.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from orchestrator.sandbox.limits import SlidingWindowLimiter
from orchestrator.sandbox.settings import SandboxSettings
from orchestrator.sandbox.workflows import Plan, plan_run

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(ts: float) -> str:
    """Epoch seconds as RFC 3339 UTC with microseconds, the form both runtimes send."""
    return iso_us(round(ts * 1_000_000))


def iso_us(us: int) -> str:
    # Built from whole microseconds so that formatting and parsing round-trip exactly,
    # which the logs' ``after`` cursor relies on.
    return (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso_us(text: str) -> int | None:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - EPOCH) // timedelta(microseconds=1)


@dataclass
class StoredFile:
    file_id: str
    name: str
    content_type: str
    content: bytes | None  # None: reserved by a CodeWords upload, not yet PUT
    run_id: str | None = None


@dataclass
class Run:
    protocol: str  # "cordage" or "codewords"
    run_id: str
    workflow: str
    inputs: object
    plan: Plan
    created_at: float
    pending_s: float
    path: str = ""
    reservation: str | None = None
    correlation_id: str | None = None
    file_ids: list[str] = field(default_factory=list)
    cancelled_at: float | None = None
    start_requests: int = 1

    @property
    def makes_files(self) -> bool:
        return self.workflow == "files"

    def file_urls(self, root: str) -> list[str]:
        return [f"{root}/files/{file_id}" for file_id in self.file_ids]

    @property
    def ends_at(self) -> float:
        return self.created_at + self.plan.duration_s

    def status(self, now: float) -> str:
        """One of Cordage's five words, from the clock alone."""
        if self.cancelled_at is not None:
            return "cancelled"
        if now < self.created_at + min(self.pending_s, self.plan.duration_s):
            return "pending"
        if now < self.ends_at:
            return "running"
        return "failed" if self.plan.fails else "completed"

    def finished_at(self, now: float) -> float | None:
        if self.cancelled_at is not None:
            return self.cancelled_at
        return self.ends_at if now >= self.ends_at else None

    def log_lines(self, now: float) -> list[tuple[int, str, str]]:
        """``(createdAt µs, level, message)`` of every log line written by ``now``.
        Times strictly increase so an ``after`` cursor never skips a line."""
        start = self.created_at
        planned = [(start, "INFO", f"run {self.run_id} of '{self.workflow}' accepted")]
        for share in (0.25, 0.5, 0.75):
            planned.append((start + share * self.plan.duration_s, "INFO", f"{share:.0%} done"))
        if self.plan.fails:
            planned.append((self.ends_at, "ERROR", f"failed: {self.plan.error}"))
        else:
            planned.append((self.ends_at, "INFO", "completed"))
        horizon = now if self.cancelled_at is None else min(now, self.cancelled_at)
        lines: list[tuple[int, str, str]] = []
        for ts, level, message in planned:
            if ts > horizon:
                break
            us = round(ts * 1_000_000)
            lines.append((max(us, lines[-1][0] + 1) if lines else us, level, message))
        if self.cancelled_at is not None and self.cancelled_at <= now:
            us = round(self.cancelled_at * 1_000_000)
            lines.append((max(us, lines[-1][0] + 1) if lines else us, "WARNING", "cancelled"))
        return lines

    def describe(self, now: float) -> dict[str, object]:
        """The admin view of the run."""
        finished = self.finished_at(now)
        return {
            "protocol": self.protocol,
            "run_id": self.run_id,
            "workflow": self.workflow,
            "path": self.path,
            "inputs": self.inputs,
            "reservation": self.reservation,
            "correlation_id": self.correlation_id,
            "created_at": self.created_at,
            "finished_at": finished,
            "status": self.status(now),
            "start_requests": self.start_requests,
        }


@dataclass
class Stats:
    runs_started: int = 0
    duplicate_starts: int = 0  # starts repeating a reservation that already has its run
    requests: Counter[str] = field(default_factory=Counter)  # by operation
    responses_429: int = 0
    rate_limited: Counter[str] = field(default_factory=Counter)  # real-limit 429s by bucket
    injected: Counter[str] = field(default_factory=Counter)  # faults by kind
    early_requests: int = 0  # arrived before a retry_after this sandbox gave had passed
    early_by_bucket: Counter[str] = field(default_factory=Counter)
    auth_failures: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "runs_started": self.runs_started,
            "duplicate_starts": self.duplicate_starts,
            "requests": dict(self.requests),
            "requests_total": sum(self.requests.values()),
            "responses_429": self.responses_429,
            "rate_limited": dict(self.rate_limited),
            "injected": dict(self.injected),
            "early_requests": self.early_requests,
            "early_by_bucket": dict(self.early_by_bucket),
            "auth_failures": self.auth_failures,
        }


class SandboxState:
    def __init__(self, settings: SandboxSettings, clock: Callable[[], float] = time.time) -> None:
        self.initial_settings = settings
        self.clock = clock
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.limiter = SlidingWindowLimiter()
        self.runs: dict[str, Run] = {}
        self.by_workflow: dict[tuple[str, str], list[str]] = {}
        self.reservations: dict[str, float] = {}
        self.files: dict[str, StoredFile] = {}
        self.stats = Stats()
        self.not_before: dict[str, float] = {}  # bucket → end of the last retry_after given
        self.refused_at: dict[str, float] = {}  # bucket → when the last 429 was sent
        # Set when the server shuts down, so long polls and log streams end at once
        # instead of holding the shutdown until they are cancelled.
        self.closing = asyncio.Event()

    def now(self) -> float:
        return self.clock()

    async def pause(self, seconds: float) -> bool:
        """Sleep without blocking the loop; False if the server began shutting down."""
        try:
            await asyncio.wait_for(self.closing.wait(), timeout=seconds)
        except TimeoutError:
            return True
        return False

    def apply_settings(self, settings: SandboxSettings) -> None:
        if settings.seed is not None and settings.seed != self.settings.seed:
            self.rng = random.Random(settings.seed)
        self.settings = settings

    def reset(self, *, settings: bool = False) -> None:
        """Forget every run, file and count; with ``settings``, the settings too."""
        if settings:
            self.settings = self.initial_settings
        self.rng = random.Random(self.settings.seed)
        self.limiter.reset()
        self.runs.clear()
        self.by_workflow.clear()
        self.reservations.clear()
        self.files.clear()
        self.stats = Stats()
        self.not_before.clear()
        self.refused_at.clear()

    def provision(self) -> str:
        request_id = f"req_{uuid.uuid4().hex}"
        self.reservations[request_id] = self.now()
        return request_id

    def start_run(
        self,
        protocol: str,
        workflow: str,
        inputs: object,
        *,
        run_id: str | None = None,
        **details: object,
    ) -> Run | None:
        """Start a run; ``None`` for an unknown workflow. ``details``: path, reservation,
        correlation_id."""
        run_id = run_id or str(uuid.uuid4())
        plan = plan_run(workflow, inputs, run_id, self.rng, self.settings.default_duration_s)
        if plan is None:
            return None
        run = Run(protocol, run_id, workflow, inputs, plan, self.now(), self.settings.pending_s)
        for key, value in details.items():
            setattr(run, key, value)
        for output in plan.files:
            file_id = uuid.uuid4().hex
            self.files[file_id] = StoredFile(
                file_id, output.name, output.content_type, output.content, run_id
            )
            run.file_ids.append(file_id)
        self.runs[run_id] = run
        self.by_workflow.setdefault((protocol, workflow), []).append(run_id)
        self.stats.runs_started += 1
        return run

    def runs_of(self, protocol: str, workflow: str) -> list[Run]:
        """Newest first."""
        ids = self.by_workflow.get((protocol, workflow), [])
        return [self.runs[run_id] for run_id in reversed(ids)]
