"""The ``scale`` scenario (P6): many jobs waiting on remote runs at once.

A fresh stack (embedded Redis, SQLite, the sandbox, the API, the worker processes, beat)
gets a sandbox provider of its own, ``scale``: unpaced (no ``max_in_flight``, no rate
limits, on a sandbox with none either), runs lasting a day, and a flat poll backoff
(factor 1) of ``N / POLL_RATE`` seconds with jitter 0.9, so that once all wait, the jobs
together ask for about ``POLL_RATE`` polls a second, spread out rather than replaying the
launch wave.

1. **Running.** N echo jobs go in as batches of 10,000 (``POST /v1/batches``); the clock
   runs until every one is ``running`` (run started, first poll planned), then until the
   broker's queue is empty (polls that fell due behind the launches have run).
2. **Window.** For ``window_s`` the jobs are polled on their backoff. Throughout, each
   second: the RSS of every worker process (prefork parents and children), beat and the
   API, and Redis' ``used_memory``. *Poll drift*, from the jobs table: a job's row gives
   its next poll's due time (``next_action_at``, written when the poll was planned); the
   poll advances ``polls`` by one and writes ``updated_at`` right after the runtime's
   answer. The rows of running jobs written since the last read (every second, reads
   overlapping by 5 s) pair each due time with the poll that ran; a sweep's re-hand-out
   moves ``next_action_at`` without a poll, and the first due time is kept. Polls due in
   the window are followed until they run (at most ``TAIL_S`` more); any still waiting
   count with their wait so far (a lower bound). Polls due before the window (while
   launching) are reported apart.
3. **Baseline.** QUALITY.md's reference point: as many delayed steps as plain Celery
   countdown tasks (``apply_async(countdown=...)``) of a no-op task (``bench.noop``), on a
   fresh Redis of the same build, held by one worker of ``orchestrator.bench.celery_app``
   (configured like ours): its RSS and Redis' memory once every task is held.
"""

from __future__ import annotations

import math
import os
import random
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from orchestrator.adapters.embedded import Child, EmbeddedRedis, python_module
from orchestrator.adapters.store.engine import make_engine
from orchestrator.adapters.store.tables import jobs
from orchestrator.bench.fanout import latency_summary, windowed_p99
from orchestrator.bench.report import Measure, ScenarioResult
from orchestrator.bench.scenarios import (
    Context,
    _bench_app,
    _token,
    _unlimited_sandbox,
    _wait_ready,
)
from orchestrator.client import Client
from orchestrator.devstack import Stack, StackOptions

P6_RSS_MB = 250.0
P6_REDIS_MB = 200.0
P6_DRIFT_P99_S = 1.0
FULL_JOBS, QUICK_JOBS = 100_000, 5_000
WINDOW_S, QUICK_WINDOW_S = 60.0, 15.0
CHUNK = 10_000  # jobs per POST /v1/batches (the API's most)
POLL_RATE = 100.0  # polls/s all the waiting jobs ask for together: interval = N / POLL_RATE
POLL_JITTER = 0.9  # each poll 0.1 to 1.9 intervals after the one before
RUN_S = 86_400.0  # the sandbox's runs outlast the measurement
TAIL_S = 30.0  # how long polls due in the window are followed after it
PROVIDER = "scale"
QUEUE = "orchestrator.jobs"
WORKER = "worker"  # the role names of worker processes start so
DELAYED = "orchestrator:delayed"
COUNTDOWN_S = (600.0, 1800.0)  # the baseline's countdowns: none falls due while measured
MB = 1024 * 1024
LAUNCH_LINE = re.compile(r"orchestrator\.worker: launch \S+: (\w+)")


# pure helpers (unit-tested) -------------------------------------------------------------------

def poll_interval(jobs: int, rate: float = POLL_RATE) -> float:
    """The mean poll interval at which ``jobs`` waiting jobs ask for ``rate`` polls/s."""
    return max(1.0, jobs / rate)


def provider_config(interval_s: float, key_file: str, jitter: float = POLL_JITTER) -> str:
    """The ``[providers.scale]`` table appended to the stack's orchestrator.toml: a flat
    backoff (factor 1) whose cap is above every jittered delay, runs timed out after 7 days."""
    return (f'\n[providers.{PROVIDER}]\ntype = "sandbox"\nbase_url = "{{sandbox}}"\n'
            f'api_key = "file:{key_file}"\nprotocol = "cordage"\n'
            f"run_timeout_s = {7 * 86_400}\nresult_wait_s = 0\n"
            f"poll = {{ initial_s = {interval_s:.3f}, factor = 1.0, "
            f"max_s = {interval_s * (1 + jitter) + 1:.3f}, jitter = {jitter} }}\n")


@dataclass
class DriftTracker:
    """Poll drift from rows ``(id, polls, next_action_at, updated_at)`` of running jobs,
    read as they are written (overlapping reads are fine). A job's first row gives the due
    time of its next poll; a later row whose ``polls`` advanced by exactly one is that poll,
    run at ``updated_at``. Polls due in ``[start, end)`` are counted."""

    start: float
    end: float = math.inf
    known: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    drifts: list[float] = field(default_factory=list)
    dues: list[float] = field(default_factory=list)  # the due time of each drift
    skipped: int = 0  # two polls between reads: the first one's due time was not seen

    def observe(self, rows: Iterable[Sequence[Any]]) -> None:
        for job_id, polls, due, at in rows:
            known = self.known.get(job_id)
            if known is not None and polls <= known[0]:
                continue  # read before, or a sweep moved next_action_at: keep the first
            if known is not None and known[1] is not None and self._counts(known[1]):
                if polls == known[0] + 1:
                    self.drifts.append(at - known[1])
                    self.dues.append(known[1])
                else:
                    self.skipped += 1
            self.known[job_id] = (int(polls), due)

    def waiting(self, now: float, low: float | None = None,
                high: float | None = None) -> list[float]:
        """How long each poll due in ``[low, high)`` (by default ``[start, end)``) and not
        run yet has waited by ``now``."""
        low = self.start if low is None else low
        high = self.end if high is None else high
        return [now - due for _, due in self.known.values()
                if due is not None and low <= due < high and due <= now]

    def between(self, low: float, high: float) -> list[float]:
        """The drifts of the polls due in ``[low, high)``."""
        return [d for d, due in zip(self.drifts, self.dues, strict=True) if low <= due < high]

    def _counts(self, due: float) -> bool:
        return self.start <= due < self.end


def drift_figures(drifts: Sequence[float], censored: Sequence[float]) -> dict[str, Any]:
    """p50/p99/max over the polls seen run and, as lower bounds, those still waiting."""
    every = [*drifts, *censored]
    summary = latency_summary(every)
    summary.update(ran=len(drifts), still_waiting=len(censored),
                   late_over_1s=sum(d > 1.0 for d in every))
    return summary


def p6_met(rss_mb: float | None, redis_mb: float | None, drift_p99: float | None,
           ) -> dict[str, bool | None]:
    def under(value: float | None, limit: float) -> bool | None:
        return None if value is None else value <= limit
    return {"rss": under(rss_mb, P6_RSS_MB), "redis": under(redis_mb, P6_REDIS_MB),
            "drift": under(drift_p99, P6_DRIFT_P99_S)}


# sampling -------------------------------------------------------------------------------------

def rss_by_process(roles: dict[str, int]) -> dict[str, float]:
    """RSS in MB of each role's process and of its descendants (``role/child-pid``)."""
    import psutil

    out: dict[str, float] = {}
    for role, pid in roles.items():
        try:
            parent = psutil.Process(pid)
            out[role] = parent.memory_info().rss / MB
            for child in parent.children(recursive=True):
                out[f"{role}/{child.pid}"] = child.memory_info().rss / MB
        except psutil.Error:
            continue
    return out


def cpu_seconds(roles: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) so far of each role's process and its descendants (only
    its own for this process, whose children are the stack's processes)."""
    import psutil

    out: dict[str, float] = {}
    for role, pid in roles.items():
        try:
            parent = psutil.Process(pid)
            total = sum(parent.cpu_times()[:2])
            for child in parent.children(recursive=True) if pid != os.getpid() else []:
                total += sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
        out[role] = total
    return out


def cpu_shares(before: dict[str, float], after: dict[str, float],
               seconds: float) -> dict[str, float]:
    """Cores each role kept busy between two ``cpu_seconds`` readings."""
    return {role: round((after[role] - before.get(role, 0.0)) / seconds, 2)
            for role in after if seconds > 0}


class Sampler(threading.Thread):
    """Every ``every_s``: RSS per process (its max kept), Redis' memory and queues."""

    def __init__(self, roles: dict[str, int], redis_url: str, *, queue: str = QUEUE,
                 every_s: float = 1.0) -> None:
        super().__init__(name="scale-sampler", daemon=True)
        from redis import Redis

        self.roles, self.queue, self.every_s = roles, queue, every_s
        self.redis = Redis.from_url(redis_url)
        self.peak_rss: dict[str, float] = {}
        self.series: list[dict[str, Any]] = []
        self.phase = "idle"
        self._halt = threading.Event()
        self._lock = threading.Lock()  # the scenario may sample too, between the thread's

    def sample(self) -> dict[str, Any]:
        with self._lock:
            return self._sample()

    def _sample(self) -> dict[str, Any]:
        rss = rss_by_process(self.roles)
        for name, mb in rss.items():
            self.peak_rss[name] = max(mb, self.peak_rss.get(name, 0.0))
        pipe = self.redis.pipeline(transaction=False)
        pipe.info("memory")
        pipe.zcard(DELAYED)
        pipe.llen(self.queue)
        pipe.hlen("unacked")
        memory, delayed, queued, unacked = pipe.execute()
        row = {"t": time.time(), "phase": self.phase,
               "redis_mb": memory["used_memory"] / MB, "delayed": delayed, "queued": queued,
               "unacked": unacked, "worker_rss_mb": max(
                   (mb for name, mb in rss.items() if name.startswith(WORKER)), default=None)}
        self.series.append(row)
        return row

    def run(self) -> None:
        while not self._halt.wait(self.every_s):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self.redis.close()

    def peak(self, prefix: str, phase: str | None = None) -> float | None:
        if phase is None:
            values = [mb for name, mb in self.peak_rss.items() if name.startswith(prefix)]
            return max(values, default=None)
        return max((r["worker_rss_mb"] for r in self.series
                    if r["phase"] == phase and r["worker_rss_mb"] is not None), default=None)

    def redis_peak(self, phase: str | None = None) -> float | None:
        return max((r["redis_mb"] for r in self.series if phase in (None, r["phase"])),
                   default=None)


def wait_for_pools(roles: dict[str, int], slots: int, timeout_s: float = 60.0) -> None:
    """Until every worker process has forked its ``slots`` pool processes."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if all(len(psutil.Process(pid).children()) >= slots
                   for role, pid in roles.items() if role.startswith(WORKER)):
                return
        except psutil.Error:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the worker processes did not fork their {slots} slots in "
                       f"{timeout_s:.0f} s")


# the scenario ---------------------------------------------------------------------------------

def scale(ctx: Context) -> ScenarioResult:
    n = ctx.jobs or (QUICK_JOBS if ctx.quick else FULL_JOBS)
    window_s = QUICK_WINDOW_S if ctx.quick else WINDOW_S
    interval = poll_interval(n)
    result = ScenarioResult("scale", ctx.quick, {
        "jobs": n, "window_s": window_s, "poll_interval_s": round(interval, 1),
        "poll_jitter": POLL_JITTER, "workers": ctx.workers, "concurrency": ctx.concurrency})
    ours = _ours(ctx, n, window_s, interval)
    ctx.console.log(f"scale: baseline, {n:,} Celery countdown tasks held by one worker")
    baseline = _countdown_baseline(ctx, n)
    result.details = {"ours": ours, "countdown_baseline": baseline,
                      "load_average": os.getloadavg()}
    _measures(result, ctx, ours, baseline)
    return result


def _ours(ctx: Context, n: int, window_s: float, interval: float) -> dict[str, Any]:
    workdir = ctx.workdir / "scale"
    key_file = (workdir / "sandbox_key").resolve()
    options = StackOptions(workdir=workdir, workers=ctx.workers, concurrency=ctx.concurrency,
                           sandbox=_unlimited_sandbox(RUN_S), fresh=True,
                           sweep_interval_s=5.0, sweep_grace_s=30.0,  # the product's defaults
                           extra_config=provider_config(interval, str(key_file)))
    with Stack(options) as stack:
        assert stack.settings is not None
        roles = {c.name: c.process.pid for c in stack.children if c.process is not None}
        wait_for_pools(roles, ctx.concurrency)
        sampler = Sampler(roles, stack.redis.url)
        assert stack.redis.child is not None and stack.redis.child.process is not None
        everyone = {**roles, "redis": stack.redis.child.process.pid,
                    "bench (sandbox, reader)": os.getpid()}
        idle = sampler.sample()
        idle_rss = dict(sampler.peak_rss)
        reader = JobsReader(make_engine(stack.settings.database.url))
        sampler.start()
        try:
            cpu = cpu_seconds(everyone)
            going = _get_running(ctx, stack, reader, sampler, n)
            going["drain_s"] = _drain(reader, sampler)
            going["cores_busy_until_drained"] = cpu_shares(
                cpu, cpu_seconds(everyone), going["to_running_s"] + going["drain_s"])
            reads_before = _reads(stack)
            ctx.console.log(f"scale: {going['running']:,} jobs waiting; measuring for "
                            f"{window_s:g} s (each polled every {interval:.0f} s "
                            f"± {POLL_JITTER:.0%})")
            drift = _window(reader, window_s, sampler)
            drift["polls_sent"] = _reads(stack) - reads_before
        finally:
            sampler.stop()
            reader.engine.dispose()
        redis_peak = _redis_info_peak(stack.redis.url)
    return {**going, "drift": drift, "logs": _log_counts(workdir / "logs"),
            "idle": {"redis_mb": idle["redis_mb"], "worker_rss_mb": idle["worker_rss_mb"],
                     "rss_mb": _rounded(idle_rss)},
            "peak_rss_mb": _rounded(sampler.peak_rss),
            "worker_rss_peak_mb": sampler.peak(WORKER),
            "worker_rss_window_mb": sampler.peak(WORKER, "window"),
            "redis_peak_mb": sampler.redis_peak(),
            "redis_window_mb": sampler.redis_peak("window"),
            "redis_used_memory_peak_mb": redis_peak,
            "queue_peak": max(r["queued"] for r in sampler.series),
            "series": _thin(sampler.series)}


class JobsReader:
    """Reads, about once a second, the running jobs' rows written since its last read
    into a ``DriftTracker`` (from its creation on: the table is empty then)."""

    OVERLAP_S = 5.0  # a row may commit a little after the updated_at it carries

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.last = time.time()
        self.tracker = DriftTracker(self.last)
        # No index has updated_at, so this is one scan of the table: on SQLite 30-70 ms
        # for 100,000 jobs, where a filter on status would go through the status index
        # and fetch every running row by rowid (about 0.3 s).
        self._query = select(jobs.c.id, jobs.c.polls, jobs.c.next_action_at,
                             jobs.c.updated_at, jobs.c.status)

    def tick(self) -> float:
        """Sleep until a second after the last read, read; the time of the read."""
        time.sleep(max(0.0, self.last + 1.0 - time.time()))
        at = time.time()
        with self.engine.connect() as conn:
            rows = conn.execute(self._query.where(
                jobs.c.updated_at > self.last - self.OVERLAP_S)).all()
        self.tracker.observe(row[:4] for row in rows if row[4] == "running")
        self.last = at
        return at

    def statuses(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status))
            return {str(status): int(count) for status, count in rows}


def _get_running(ctx: Context, stack: Stack, reader: JobsReader, sampler: Sampler,
                 n: int) -> dict[str, Any]:
    """Submit ``n`` jobs in batches of ``CHUNK`` and wait until every one is running."""
    specs = [{"workflow": f"{PROVIDER}/echo", "inputs": {"i": i}} for i in range(n)]
    sampler.phase = "submit"
    ctx.console.log(f"scale: submitting {n:,} jobs in batches of {CHUNK:,}")
    chunk_s: list[float] = []
    started = time.time()
    with Client(stack.api_url, _token(stack), timeout_s=300) as client:
        for first in range(0, n, CHUNK):
            t0 = time.perf_counter()
            client.submit_batch(specs[first:first + CHUNK])
            chunk_s.append(time.perf_counter() - t0)
    submitted = time.time()  # the reader's first read takes every row written since it began
    sampler.phase = "launch"
    ctx.console.log(f"scale: submitted in {submitted - started:.1f} s; waiting for every run")
    timeline: list[tuple[float, int]] = []
    deadline = started + 120 + n / 40
    counts: dict[str, int] = {}
    while time.time() < deadline:
        at = reader.tick()
        counts = reader.statuses()
        timeline.append((at - started, counts.get("running", 0)))
        if sum(v for k, v in counts.items() if k not in ("queued", "starting")) >= n:
            break
        if len(timeline) > 120 and timeline[-120][1] == timeline[-1][1]:
            break  # nothing started for two minutes: measure what there is
    return {"submitted": n, "running": counts.get("running", 0), "statuses": counts,
            "submit_s": submitted - started, "posts_s": sum(chunk_s),
            "batch_s": [round(s, 2) for s in chunk_s],
            "to_running_s": time.time() - started, "launch_s": time.time() - submitted,
            "launch_rate": _rate(timeline), "running_timeline": timeline[::10],
            "submit_started": started}


def _rate(timeline: list[tuple[float, int]]) -> float | None:
    """Runs started per second from the first to the last one seen."""
    moving = [(t, c) for t, c in timeline if c > 0]
    if len(moving) < 2 or moving[-1][0] <= moving[0][0]:
        return None
    return (moving[-1][1] - moving[0][1]) / (moving[-1][0] - moving[0][0])


def _drain(reader: JobsReader, sampler: Sampler, timeout_s: float = 300.0) -> float:
    """Until the broker's queue is empty: the polls that fell due while launches were
    queued ahead of them have run. How long that took."""
    sampler.phase = "drain"
    started = time.time()
    while time.time() < started + timeout_s and sampler.redis.llen(QUEUE) > 0:
        reader.tick()
    return time.time() - started


def _window(reader: JobsReader, window_s: float, sampler: Sampler) -> dict[str, Any]:
    """Every poll due in the next ``window_s``, followed until it has run (at most
    ``TAIL_S`` after the window); and, apart, those due since the submit."""
    sampler.phase = "window"
    tracker = reader.tracker
    start = reader.tick()
    tracker.end = start + window_s
    while True:
        at = reader.tick()
        if at >= tracker.end:
            sampler.phase = "tail"
            if not tracker.waiting(at, low=start) or at >= tracker.end + TAIL_S:
                break
    now = time.time()
    before = drift_figures(tracker.between(tracker.start, start),
                           tracker.waiting(now, high=start))
    steady = tracker.between(start, tracker.end)
    return {**drift_figures(steady, tracker.waiting(now, low=start)),
            "skipped": tracker.skipped, "window_s": window_s,
            "polls_due_per_s": len(steady) / window_s,
            "p99_by_10s": windowed_p99([d for d in tracker.dues if d >= start],
                                       steady, 10.0),
            "before_window": before}


def _log_counts(logs: Path) -> dict[str, Any]:
    """From the worker logs (INFO): launches by outcome, and sweeps (a sweep message that
    waited past its expiry behind other work is discarded unread)."""
    launches: Counter[str] = Counter()
    sweeps: Counter[str] = Counter()
    for path in logs.glob(f"{WORKER}*.log"):
        with path.open(errors="replace") as lines:
            for line in lines:
                if found := LAUNCH_LINE.search(line):
                    launches[found.group(1)] += 1
                elif "orchestrator.sweep[" in line:
                    sweeps["expired" if "Discarding revoked" in line else
                           "ran" if "succeeded" in line else "received"] += 1
                elif "sweep handed out again" in line:
                    sweeps["handed_out_again"] += 1
    return {"launches": dict(launches), "sweeps": dict(sweeps)}


def _reads(stack: Stack) -> int:
    return int(stack.sandbox.stats()["requests"].get("cordage.get_run", 0))


def _redis_info_peak(url: str) -> float:
    from redis import Redis

    client = Redis.from_url(url)
    try:
        return float(client.info("memory")["used_memory_peak"]) / MB
    finally:
        client.close()


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 1) for k, v in values.items()}


def _thin(series: list[dict[str, Any]], every: int = 5) -> list[dict[str, Any]]:
    return [{k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}
            for i, row in enumerate(series) if i % every == 0 or i == len(series) - 1]


# the baseline: Celery countdown tasks ---------------------------------------------------------

def _countdown_baseline(ctx: Context, n: int) -> dict[str, Any]:
    """``n`` countdown tasks of ``bench.noop`` on a fresh Redis, held by one worker."""
    workdir = ctx.workdir / "scale-baseline"
    shutil.rmtree(workdir, ignore_errors=True)  # nothing of an earlier run is loaded
    redis = EmbeddedRedis(workdir / "redis").start()
    env = {"BENCH_BROKER_URL": redis.url, "BENCH_PREFIX": "scale"}
    argv = python_module("celery", "-A", "orchestrator.bench.celery_app", "worker",
                         "--hostname", "countdown@%h", "--concurrency", str(ctx.concurrency),
                         "--queues", "bench", "--without-mingle", "--without-gossip",
                         "--loglevel", "WARNING")
    worker = Child("countdown", argv, env=env, log_path=workdir / "logs" / "worker.log")
    sampler: Sampler | None = None
    try:
        worker.start()
        app = _bench_app(env)
        _wait_ready(app, 1, [worker])
        assert worker.process is not None
        roles = {WORKER: worker.process.pid}
        wait_for_pools(roles, ctx.concurrency)
        sampler = Sampler(roles, redis.url, queue="bench", every_s=0.5)
        idle = sampler.sample()
        sampler.phase = "publish"
        sampler.start()
        rng = random.Random(6)
        started = time.perf_counter()
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                app.send_task("bench.noop", queue="bench", producer=producer,
                              countdown=rng.uniform(*COUNTDOWN_S))
        published = time.perf_counter() - started
        sampler.phase = "fetch"
        held = _wait_held(sampler, n, timeout_s=120 + n / 200)
        held_s = time.perf_counter() - started
        sampler.phase = "held"
        time.sleep(5.0 if ctx.quick else 10.0)
    finally:
        if sampler is not None:
            sampler.stop()
        worker.stop()
        redis.stop()
    return {"tasks": n, "publish_s": published, "publish_rate": n / published,
            "held": held, "all_held_after_s": held_s,
            "idle_rss_mb": idle["worker_rss_mb"], "idle_redis_mb": idle["redis_mb"],
            "worker_rss_peak_mb": sampler.peak(WORKER),
            "worker_rss_held_mb": sampler.peak(WORKER, "held"),
            "peak_rss_mb": _rounded(sampler.peak_rss), "redis_peak_mb": sampler.redis_peak(),
            "redis_held_mb": sampler.redis_peak("held"), "series": _thin(sampler.series)}


def _wait_held(sampler: Sampler, n: int, timeout_s: float) -> int:
    """Until the worker holds every task (all of them reserved: Redis' ``unacked``)."""
    deadline = time.monotonic() + timeout_s
    unacked = 0
    while time.monotonic() < deadline:
        row = sampler.sample()
        unacked = int(row["unacked"])
        if unacked >= n and row["queued"] == 0:
            break
        time.sleep(0.5)
    return unacked


# the table ------------------------------------------------------------------------------------

def _verdict(within: bool | None, running: int) -> bool | None:
    """A figure over its limit fails at any size (more jobs only add to it); one within
    it passes only at P6's 100,000 waiting jobs."""
    if within is None or within is False:
        return within
    return True if running >= FULL_JOBS else None


def _measures(result: ScenarioResult, ctx: Context, ours: dict[str, Any],
              base: dict[str, Any]) -> None:
    running, n = ours["running"], ours["submitted"]
    at = f"at {running:,} waiting jobs" + ("" if running >= FULL_JOBS else
                                           " (P6 is about 100,000: not shown at this size)")
    rate = ours["launch_rate"]
    result.add(Measure(
        "time to get the jobs running", ours["to_running_s"], "s",
        note=f"{running:,} of {n:,} running; {len(ours['batch_s'])} POST /v1/batches took "
        f"{ours['posts_s']:.1f} s, launches "
        f"{'-' if rate is None else f'{rate:.0f}'}/s for {ours['launch_s']:.0f} s; broker "
        f"queue up to {ours['queue_peak']:,} messages, empty {ours['drain_s']:.0f} s later"))
    busy = ours["cores_busy_until_drained"]
    result.add(Measure(
        "cores busy from the submit until the queue was empty", sum(busy.values()), "",
        note=", ".join(f"{role} {cores:.2f}" for role, cores in busy.items()) + f" (of "
        f"{os.cpu_count()} CPUs; workers with their pool processes)"))
    rss, redis_mb, drift = ours["worker_rss_peak_mb"], ours["redis_peak_mb"], ours["drift"]
    met = p6_met(rss, redis_mb, drift["p99"])
    result.add(Measure(
        "worker RSS, largest process", rss, "MB", base["worker_rss_held_mb"],
        "Celery countdown", target="P6: <= 250 MB", met=_verdict(met["rss"], running),
        note=f"{at}; idle {ours['idle']['worker_rss_mb'] or 0:.0f} MB; {ctx.workers} worker "
        f"processes × {ctx.concurrency} (parents and children); baseline: {base['held']:,} "
        f"countdown tasks held by one worker (idle {base['idle_rss_mb'] or 0:.0f} MB)"))
    result.add(Measure(
        "Redis used_memory, peak", redis_mb, "MB", base["redis_held_mb"], "Celery countdown",
        target="P6: <= 200 MB", met=_verdict(met["redis"], running),
        note=f"{at}; sampled each second from the submit on; idle "
        f"{ours['idle']['redis_mb']:.1f} MB, all waiting {ours['redis_window_mb'] or 0:.1f} MB"))
    _drift_measures(result, ours, _verdict(met["drift"], running))
    others = ", ".join(f"{name} {mb:.0f} MB" for name, mb in ours["peak_rss_mb"].items()
                       if not name.startswith(WORKER) and "/" not in name)
    result.add(Measure("RSS of the other processes, peak", None, "",
                       note=f"{others}; for information"))


def _drift_measures(result: ScenarioResult, ours: dict[str, Any], met: bool | None) -> None:
    drift = ours["drift"]
    before = drift["before_window"]
    result.add(Measure(
        "poll drift p99, every job waiting", drift["p99"], "s", target="P6: <= 1 s", met=met,
        note=f"{drift['n']:,} polls due in {drift['window_s']:g} s "
        f"({drift['polls_due_per_s']:.0f}/s) once the broker's queue was empty; "
        f"p50 {_s(drift['p50'])}, max {_s(drift['max'])}"
        + (f"; {drift['still_waiting']} still waiting {TAIL_S:g} s after the window"
           if drift["still_waiting"] else "")))
    result.add(Measure(
        "poll drift p99, while the jobs were launched", before["p99"], "s",
        note=f"{before['n']:,} polls due from the submit until the queue was empty, queued "
        f"behind launches; p50 {_s(before['p50'])}, max {_s(before['max'])}; for "
        "information"))


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"
