"""The scenarios. Each starts the stack it needs (``orchestrator.devstack.Stack``), measures
the product, then measures its baseline in the same invocation, and returns a
``ScenarioResult``. Nothing here asserts a speed: unmet targets are reported, not raised."""

from __future__ import annotations

import bisect
import json
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from sqlalchemy import insert

from orchestrator.adapters.embedded import Child, python_module
from orchestrator.adapters.store.engine import make_engine
from orchestrator.adapters.store.migrate import upgrade
from orchestrator.adapters.store.repository import SqlStore
from orchestrator.adapters.store.tables import jobs
from orchestrator.bench.report import Measure, ScenarioResult
from orchestrator.bootstrap import SystemClock
from orchestrator.client import Client
from orchestrator.devstack import SANDBOX_KEY, Stack, StackOptions
from orchestrator.domain.records import NewJob
from orchestrator.receiver import CallbackReceiver
from orchestrator.sandbox.settings import RateLimits, SandboxSettings
from orchestrator.services.tokens import create_token

TRIGGER_LIMIT = "60/6s"  # Cordage's documented 60/minute, on a bench-sized window
LIMIT_COUNT, LIMIT_WINDOW_S = 60, 6.0


@dataclass
class Context:
    workdir: Path
    quick: bool
    workers: int
    concurrency: int
    jobs: int | None  # overrides the scenario's size
    console: Console
    rate: float | None = None  # callbacks: jobs/s submitted in the latency run

    def size(self, quick: int, full: int) -> int:
        return self.jobs or (quick if self.quick else full)


def _unlimited_sandbox(duration_s: float = 0.0) -> SandboxSettings:
    return SandboxSettings(api_key=SANDBOX_KEY, default_duration_s=duration_s,
                           rate_limits=RateLimits(cordage_trigger=None, cordage_read=None,
                                                  cordage_kill=None))


def _token(stack: Stack) -> str:
    assert stack.settings is not None
    store = SqlStore(make_engine(stack.settings.database.url))
    token, _ = create_token(f"bench-{time.time_ns()}", store, SystemClock())
    store.engine.dispose()
    return token


def _echo_specs(n: int, tag: str) -> list[dict[str, Any]]:
    return [{"workflow": "sandbox/echo", "inputs": {"i": i, "tag": f"{tag}-{i}"}}
            for i in range(n)]


def _wait(condition: Callable[[], bool], timeout_s: float, what: str,
          interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


# submit ---------------------------------------------------------------------------------------

def submit(ctx: Context) -> ScenarioResult:
    """P5: N jobs in one ``POST /v1/batches`` on SQLite, against an executemany of the same
    job rows into a fresh SQLite database."""
    n = ctx.size(2_000, 10_000)
    result = ScenarioResult("submit", ctx.quick, {"jobs": n, "database": "sqlite"})
    specs = _echo_specs(n, "submit")
    body = json.dumps({"jobs": specs}).encode()
    options = StackOptions(workdir=ctx.workdir / "submit", workers=0, beat=False, fresh=True,
                           sandbox=_unlimited_sandbox())
    with Stack(options) as stack:
        token = _token(stack)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        with httpx.Client(base_url=stack.api_url, headers=headers, timeout=300) as http:
            # One small batch first, so the timed request pays no first-request costs.
            warm = json.dumps({"jobs": _echo_specs(1, "warm")}).encode()
            http.post("/v1/batches", content=warm).raise_for_status()
            started = time.perf_counter()
            response = http.post("/v1/batches", content=body)
            wall = time.perf_counter() - started
        response.raise_for_status()
        accepted = len(response.json()["job_ids"])
    if accepted != n:
        raise RuntimeError(f"the batch returned {accepted} job ids for {n} jobs")
    raw = _raw_insert(ctx.workdir / "submit-baseline", n)
    ours = n / wall
    projected = 10_000 / ours
    result.details = {"request_s": wall, "raw_insert_s": n / raw, "body_bytes": len(body)}
    result.add(Measure("POST /v1/batches wall time", wall, "s",
                       note=f"{n:,} jobs in one request, body {len(body) / 1e6:.1f} MB"))
    result.add(Measure("10,000 jobs in one batch" + (" (projected)" if n != 10_000 else ""),
                       projected, "s", target="P5: <= 2 s", met=projected <= 2.0,
                       note="" if n == 10_000 else f"10,000 / the rate measured with {n:,}"))
    result.add(Measure("jobs accepted per second", ours, "jobs/s", raw, "raw executemany",
                       target="P5: >= 25% of raw", met=ours >= 0.25 * raw))
    return result


def _raw_insert(directory: Path, n: int) -> float:
    """Rows per second of one executemany of ``n`` job rows, in one transaction, into a
    fresh, migrated SQLite database: the same rows ``add_batch`` writes to ``jobs``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "raw.db"
    for leftover in directory.glob("raw.db*"):
        leftover.unlink()
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    now = time.time()
    batch_id = uuid.uuid4().hex
    rows = [{**NewJob(id=uuid.uuid4().hex, workflow="sandbox/echo", provider="sandbox",
                      inputs=spec["inputs"], batch_id=batch_id).__dict__,
             "labels": {}, "status": "queued", "created_at": now, "updated_at": now,
             "next_action_at": now}
            for spec in _echo_specs(n, "raw")]
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(insert(jobs), rows)
    seconds = time.perf_counter() - started
    engine.dispose()
    return n / seconds


# rate-limit -----------------------------------------------------------------------------------

def window_use(times: list[float], limit: int, window_s: float,
               step_s: float = 0.1) -> dict[str, Any]:
    """How much of a ``limit``-per-``window_s`` budget a series of request times used.

    The steady part starts one full window after the first request (the first window is a
    burst anyone gets) and ends one window before the last; ``share`` is the mean count of
    requests in a window of that part over the limit. ``max_in_window`` is the most requests
    seen in any window (starting at any request)."""
    times = sorted(times)
    if not times:
        return {"share": None, "windows": 0, "max_in_window": 0, "rate_per_s": None}
    most = max(bisect.bisect_left(times, t + window_s) - i for i, t in enumerate(times))
    first, last = times[0] + window_s, times[-1] - window_s
    counts = []
    start = first
    while start <= last + 1e-9:
        counts.append(bisect.bisect_left(times, start + window_s)
                      - bisect.bisect_left(times, start))
        start += step_s
    span = times[-1] - times[0]
    share = statistics.fmean(counts) / limit if counts else None
    return {"share": share, "windows": len(counts), "max_in_window": most,
            "rate_per_s": (len(times) - 1) / span if span > 0 else None,
            "requests": len(times), "span_s": span}


def rate_limit(ctx: Context) -> ScenarioResult:
    """P1: several worker processes under our shared trigger limit, the sandbox enforcing
    the same limit; baselines: a plain loop and Celery's per-worker ``rate_limit``."""
    n = ctx.size(240, 600)
    result = ScenarioResult("rate-limit", ctx.quick,
                            {"jobs": n, "limit": TRIGGER_LIMIT, "workers": ctx.workers,
                             "concurrency": ctx.concurrency})
    sandbox = SandboxSettings(api_key=SANDBOX_KEY, default_duration_s=0.0,
                              rate_limits=RateLimits(cordage_trigger=TRIGGER_LIMIT,
                                                     cordage_read=None, cordage_kill=None))
    options = StackOptions(workdir=ctx.workdir / "rate-limit", workers=ctx.workers,
                           concurrency=ctx.concurrency, sandbox=sandbox, fresh=True,
                           rate_limits={"trigger": TRIGGER_LIMIT})
    timeout_s = 3 * n / (LIMIT_COUNT / LIMIT_WINDOW_S) + 60
    with Stack(options) as stack, Client(stack.api_url, _token(stack), timeout_s=120) as client:
        ctx.console.log(f"rate-limit: {n} echo jobs through {ctx.workers} worker processes")
        batch = client.submit_batch(_echo_specs(n, "rl"))
        _wait(lambda: bool(client.get_batch(batch["id"])["done"]), timeout_s,
              "the batch to finish", interval_s=0.5)
        ours = _trigger_use(stack)
        stack.sandbox.reset(settings=False)
        ctx.console.log("rate-limit: baseline, a plain loop sleeping retry_after on 429")
        _plain_loop(stack, n)
        loop = _trigger_use(stack)
        stack.sandbox.reset(settings=False)
        ctx.console.log(f"rate-limit: baseline, Celery rate_limit=10/s on {ctx.workers} "
                        "worker processes")
        celery_s = 40.0 if ctx.quick else 120.0
        celery_done = _celery_rate_limited(ctx, stack, n, celery_s)
        celery = {**_trigger_use(stack), "completed": celery_done, "time_limit_s": celery_s}
    result.details = {"orchestrator": ours, "plain_loop": loop, "celery_rate_limit": celery}
    share = ours["share"]
    result.add(Measure("trigger rate, share of the limit", _pct(share), "%", _pct(loop["share"]),
                       "plain loop", target="P1: >= 98%",
                       met=share is not None and share >= 0.98,
                       note=f"{ours['windows']} windows of {LIMIT_WINDOW_S:g} s after the first"))
    result.add(Measure("trigger rate, share of the limit (Celery rate_limit)",
                       _pct(celery["share"]), "%",
                       note=f"10/s per worker × {ctx.workers} workers; {celery_done} of {n} "
                       f"triggers done in the {celery_s:g} s it was given"))
    result.add(Measure("requests over the limit (429s)", ours["429"], "", loop["429"],
                       "plain loop", target="P1: 0", met=ours["429"] == 0))
    result.add(Measure("requests over the limit (429s), Celery rate_limit", celery["429"], "",
                       note="the per-worker limit sends workers × the limit"))
    result.add(Measure("runs started", ours["runs"], "", note=f"of {n} jobs; duplicates "
                       f"{ours['duplicate_starts']}"))
    return result


def _pct(share: float | None) -> float | None:
    return None if share is None else 100.0 * share


def _trigger_use(stack: Stack) -> dict[str, Any]:
    runs = stack.sandbox.runs(protocol="cordage")
    stats = stack.sandbox.stats()
    use = window_use([float(r["created_at"]) for r in runs], LIMIT_COUNT, LIMIT_WINDOW_S)
    refused = int(stats["rate_limited"].get("cordage_trigger", 0)
                  or sum(v for k, v in stats["rate_limited"].items() if "trigger" in k))
    return {**use, "runs": len(runs), "429": refused,
            "responses_429": stats["responses_429"],
            "duplicate_starts": stats["duplicate_starts"],
            "early_requests": stats["early_requests"]}


def _plain_loop(stack: Stack, n: int) -> None:
    """What the providers' examples do: trigger, and on a 429 sleep ``retry_after``."""
    url = f"{stack.sandbox.url}/cordage/echo/trigger"
    headers = {"Authorization": f"Bearer {SANDBOX_KEY}"}
    with httpx.Client(timeout=30) as http:
        sent = 0
        while sent < n:
            response = http.post(url, json={"n": sent}, headers=headers)
            if response.status_code == 429:
                time.sleep(float(response.json().get("retry_after", 1)))
                continue
            response.raise_for_status()
            sent += 1


def _bench_workers(ctx: Context, stack: Stack, env: dict[str, str],
                   queues: str) -> list[Child]:
    workers = []
    for index in range(ctx.workers):
        argv = python_module("celery", "-A", "orchestrator.bench.celery_app", "worker",
                             "--hostname", f"bench{index + 1}@%h", "--concurrency",
                             str(ctx.concurrency), "--queues", queues, "--without-mingle",
                             "--without-gossip", "--loglevel", "WARNING")
        child = Child(f"bench{index + 1}", argv, env=env,
                      log_path=stack.workdir / "logs" / f"bench-worker{index + 1}.log")
        workers.append(child.start())
    return workers


def _bench_app(env: dict[str, str]) -> Any:
    from celery import Celery

    app = Celery("bench-client", broker=env["BENCH_BROKER_URL"], set_as_current=False)
    app.conf.update(task_serializer="json", broker_connection_retry_on_startup=True)
    return app


def _wait_ready(app: Any, count: int, workers: list[Child], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=0.5)) >= count:
            return
        if not all(w.alive for w in workers):
            break
    tails = "\n".join(w.tail(10) for w in workers)
    raise RuntimeError(f"the baseline's Celery workers did not start:\n{tails}")


def _celery_rate_limited(ctx: Context, stack: Stack, n: int, time_limit_s: float) -> int:
    """Triggers through Celery's per-worker ``rate_limit``, retried after ``retry_after``
    on a 429, for at most ``time_limit_s`` (retries held as countdown tasks make it slow):
    how many succeeded."""
    from redis import Redis

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    env = {"BENCH_BROKER_URL": stack.redis.url, "BENCH_RATE_LIMIT": "10/s",
           "BENCH_PREFIX": prefix}
    workers = _bench_workers(ctx, stack, env, "bench")
    app = _bench_app(env)
    redis = Redis.from_url(stack.redis.url)
    try:
        _wait_ready(app, ctx.workers, workers)
        url = f"{stack.sandbox.url}/cordage/echo/trigger"
        for i in range(n):
            app.send_task("bench.trigger", args=[url, SANDBOX_KEY, i], queue="bench")
        deadline = time.monotonic() + time_limit_s
        while time.monotonic() < deadline and int(redis.get(f"{prefix}:done") or 0) < n:
            time.sleep(0.2)
        return int(redis.get(f"{prefix}:done") or 0)
    finally:
        for w in workers:
            w.stop()
        redis.close()


# throughput -----------------------------------------------------------------------------------

def throughput(ctx: Context) -> ScenarioResult:
    """P4: echo jobs end to end (submit, launch, polls, outputs stored, callback delivered)
    against a zero-latency sandbox; baseline: no-op Celery tasks per second on the same
    broker and as many worker processes, divided by the tasks one job needs."""
    n = ctx.size(300, 2_000)
    noop_tasks = 3_000 if ctx.quick else 10_000
    result = ScenarioResult("throughput", ctx.quick,
                            {"jobs": n, "workers": ctx.workers, "concurrency": ctx.concurrency,
                             "noop_tasks": noop_tasks})
    options = StackOptions(workdir=ctx.workdir / "throughput", workers=ctx.workers,
                           concurrency=ctx.concurrency, sandbox=_unlimited_sandbox(0.0),
                           fresh=True)
    with Stack(options) as stack:
        ctx.console.log(f"throughput: baseline, {noop_tasks} no-op Celery tasks")
        noop_rate = _noop_rate(ctx, stack, noop_tasks)
        secret = (stack.workdir / "signing_secret").read_text().strip()
        assert stack.settings is not None
        store = SqlStore(make_engine(stack.settings.database.url))
        ctx.console.log(f"throughput: {n} echo jobs end to end, with callbacks")
        with CallbackReceiver(secret) as receiver, \
                Client(stack.api_url, _token(stack), timeout_s=120) as client:
            started = time.perf_counter()
            batch = client.submit_batch(_echo_specs(n, "tp"), callback_url=receiver.url)
            ids = set(batch["job_ids"])
            _wait(lambda: ids <= receiver.job_ids(), 60 + n, "every callback", 0.05)
            seconds = time.perf_counter() - started
            summary = receiver.summary()
        rows = [store.get_job(i) for i in ids]
        store.engine.dispose()
    polls = statistics.fmean(job.polls for job in rows if job is not None)
    statuses = sorted({job.status.value for job in rows if job is not None})
    tasks_per_job = 1 + polls + 1  # launch, polls, one callback delivery
    ours = n / seconds
    ceiling = noop_rate / tasks_per_job
    result.details = {"seconds": seconds, "noop_tasks_per_s": noop_rate,
                      "mean_polls_per_job": polls, "tasks_per_job": tasks_per_job,
                      "statuses": statuses, "callbacks": summary}
    result.add(Measure("no-op Celery tasks per second", noop_rate, "tasks/s",
                       note=f"{ctx.workers} worker processes × {ctx.concurrency}, same Redis"))
    result.add(Measure("tasks one job needs", tasks_per_job, "",
                       note=f"1 launch + {polls:.2f} polls (mean) + 1 delivery"))
    result.add(Measure("jobs per second, end to end", ours, "jobs/s", ceiling,
                       "no-op ceiling", target="P4: >= 1.0× ceiling", met=ours >= ceiling,
                       note=f"{n} jobs in {seconds:.1f} s, callbacks included"))
    return result


def _noop_rate(ctx: Context, stack: Stack, tasks: int) -> float:
    """No-op tasks per second: ``tasks`` published first, then the workers started; counted
    from the moment the last worker took its first task (all of them busy) to the end."""
    from redis import Redis

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    env = {"BENCH_BROKER_URL": stack.redis.url, "BENCH_PREFIX": prefix}
    app = _bench_app(env)
    with app.producer_or_acquire() as producer:
        for _ in range(tasks):
            app.send_task("bench.noop", queue="bench", producer=producer)
    redis = Redis.from_url(stack.redis.url)
    workers = _bench_workers(ctx, stack, env, "bench")
    try:
        _wait(lambda: int(redis.get(f"{prefix}:done") or 0) >= tasks, 60 + tasks / 50,
              "the no-op tasks", 0.05)
        firsts = [float(redis.get(key) or 0) for key in redis.keys(f"{prefix}:first:*")]
        times = sorted(float(t) for t in redis.lrange(f"{prefix}:times", 0, -1))
    finally:
        for w in workers:
            w.stop()
        redis.close()
    start = max(firsts) if len(firsts) >= ctx.workers else times[0]
    counted = [t for t in times if t >= start]
    span = counted[-1] - counted[0] if len(counted) > 1 else 0.0
    return (len(counted) - 1) / span if span > 0 else float("nan")


# callbacks ------------------------------------------------------------------------------------

def callbacks(ctx: Context) -> ScenarioResult:
    """P7: callback fan-out from one worker process against raw httpx POSTs to the same
    receiver, and completion-to-callback latency under a steady job rate
    (``orchestrator.bench.fanout``)."""
    from orchestrator.bench.fanout import callbacks as run

    return run(ctx)


def read_budget(ctx: Context) -> ScenarioResult:
    """P2, P3: completion-detection lag and reads per job, under a read limit against
    round-robin polling and without one against the official CodeWords client's loop
    (``orchestrator.bench.readbudget``)."""
    from orchestrator.bench.readbudget import read_budget as run

    return run(ctx)


def scale(ctx: Context) -> ScenarioResult:
    """P6: 100,000 jobs waiting on remote runs: worker RSS, Redis memory and poll drift,
    against Celery countdown tasks held by one worker (``orchestrator.bench.scale``)."""
    from orchestrator.bench.scale import scale as run

    return run(ctx)


SCENARIOS: dict[str, Callable[[Context], ScenarioResult]] = {
    "submit": submit,
    "rate-limit": rate_limit,
    "throughput": throughput,
    "callbacks": callbacks,
    "read-budget": read_budget,
    "scale": scale,
}
