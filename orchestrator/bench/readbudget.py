"""The ``read-budget`` scenario (P2, P3): how soon we notice that a remote run finished, and
how many reads that costs.

One stack (embedded Redis, SQLite, the sandbox over HTTP, the API, the stack's worker
processes and beat) with providers of its own, added to the generated ``orchestrator.toml``
(``StackOptions.extra_config``); every run is the sandbox's ``sleep`` workflow
(``inputs.duration_s``):

- **P2, under a read limit.** ``rb-cordage`` speaks Cordage and has a read limit of
  ``120/6s``: Cordage's documented 120 reads a minute on a clock 10 times faster, which the
  sandbox enforces too (an exact sliding window). Its poll policy is the product's default
  (``PollSettings``: 2 s, ×1.5, up to 30 s, jitter 0.2) on the same faster clock. N runs
  (400; quick 120) go in one batch, their durations drawn (seeded) from three classes so that
  some finish fast and some slow (18 s to 2 min, 2 to 5 min, 5 to 10 min on the real clock;
  the quick run scales durations, poll timings, the number of runs and the limit's window
  and count by 0.3 more: ``36/1.8s``, so runs per window of reads, the demand on the budget
  and the round-robin cycle relative to the run times stay put).
  Lag per job: the job's ``finished_at`` (when we stored it completed) minus the run's
  completion time in the sandbox (``/_sandbox/runs``); reads: the sandbox's count of
  ``GET /runs/{id}`` requests.
  Baseline, right after, on the same sandbox (reset), the same read limit and the same runs
  (same inputs, started at the same offsets from the first as ours were): uniform
  round-robin polling from this process, one in-flight run after the other, at most the
  limit's count of reads in any window of its period (plus our limiter's margin), lag =
  when the answer saying "completed" arrived minus the run's completion.
- **P3, no read limit.** ``rb-codewords`` speaks CodeWords with no limit, the product's
  default poll policy and ``result_wait_s`` (1 s). N one-minute runs (quick: 10 s runs, with
  every timing, ours and the baselines', × 10/60), started one after the other over half a
  run time. Beside them, in the same minute and at the same offsets, as many runs waited
  for by the official ``codewords-client`` loop (0.4.11,
  ``AsyncCodewordsClient.poll_result``, the client the docs' examples use), re-implemented
  here: ``/result`` asked again after 1 s, the wait grown by ``1.5 × (0.9 + 0.2·t mod 1)``
  per retry up to 5 s. As the baseline P3 names, its ``/result`` is asked with
  ``timeout=0`` (the runtime answers 408 at once while the run goes on). For information:
  as many runs again waited for the way that client is written, asking the runtime to hold
  each ``/result`` up to 110 s (the sandbox honours it), and as many jobs on
  ``rb-codewords-nowait`` (``result_wait_s = 0``, as the dev stack has it). Our reads per
  job are the jobs' ``polls``; the baselines count their own requests; the sum is checked
  against the sandbox's count of ``/result`` requests.

Nothing here changes the product: it measures the polling that exists (each job on its own
backoff; a poll refused by our own limiter waits for the turn the limiter promised it).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from orchestrator.adapters.store.engine import make_engine
from orchestrator.adapters.store.repository import SqlStore
from orchestrator.bench.fanout import latency_summary, percentile
from orchestrator.bench.report import Measure, ScenarioResult
from orchestrator.bench.scenarios import Context, _token, _wait
from orchestrator.client import Client
from orchestrator.config import PollSettings
from orchestrator.devstack import SANDBOX_KEY, Stack, StackOptions
from orchestrator.domain.ratelimit import parse_rate_limit, window_margin_s
from orchestrator.sandbox.settings import RateLimits, SandboxSettings

P2_SHARE = 0.5  # ours' median lag ≤ this × round-robin's
P3_READS_SHARE = 1 / 3  # ours' reads per job ≤ this × the official loop's
P3_LAG_SHARE = 0.10  # ours' median lag ≤ this × the run time

# P2 runs on a clock 10× faster than real time: Cordage's documented 120 reads/minute is
# 120/6s, the product's default poll policy 0.2 s ×1.5 up to 3 s, runs of 18 s to 10 min
# take 1.8 s to 60 s. The quick run is the same on a clock 0.3 times faster again: every
# duration, the poll policy, the limit's window and count, and the number of runs × 0.3
# (36/1.8s, the same 20 reads/s), so runs in flight per window of reads, the demand on
# the budget and the round-robin cycle relative to the run times are the full run's.
READ_COUNT, READ_WINDOW_S = 120, 6.0
P2_CLOCK = 0.1
P2_QUICK = 0.3
# Duration classes, in real seconds (before the clock): a third of the runs each.
CLASSES: tuple[tuple[str, float, float], ...] = (
    ("fast", 18.0, 120.0), ("medium", 120.0, 300.0), ("slow", 300.0, 600.0))
SEED = 7

# P3: one-minute runs; quick: 10 s runs with every timing (ours and the baselines') scaled
# by the same 10/60.
P3_RUN_S, P3_QUICK_RUN_S = 60.0, 10.0

# The official CodeWords client's waiting loop (codewords-client 0.4.11, poll_result).
OFFICIAL_FIRST_S, OFFICIAL_FACTOR, OFFICIAL_MAX_S = 1.0, 1.5, 5.0
OFFICIAL_LONG_POLL_S = 110.0  # what it asks /result to hold each time (timeout=…)

FINISHED = ("completed", "failed", "cancelled")


# pure helpers (unit-tested) -------------------------------------------------------------------

def run_durations(n: int, scale: float, classes: Sequence[tuple[str, float, float]] = CLASSES,
                  seed: int = SEED) -> list[tuple[str, float]]:
    """``n`` (class, seconds): the classes in turn, each duration log-uniform between the
    class's bounds (real seconds) times ``scale``; the same for the same arguments."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        name, low, high = classes[i % len(classes)]
        seconds = math.exp(rng.uniform(math.log(low), math.log(high))) * scale
        out.append((name, round(seconds, 3)))
    return out


class WindowBudget:
    """At most ``count`` reads in any ``window_s`` (a sliding window, as the sandbox
    counts): ``wait(now)`` is 0 when one more may go, else the seconds until one may."""

    def __init__(self, count: int, window_s: float) -> None:
        self.count = count
        self.window_s = window_s
        self.sent: deque[float] = deque()

    def wait(self, now: float) -> float:
        while self.sent and self.sent[0] <= now - self.window_s:
            self.sent.popleft()
        if len(self.sent) < self.count:
            return 0.0
        return self.sent[0] + self.window_s - now

    def take(self, now: float) -> None:
        self.sent.append(now)


def official_next_delay(delay: float, t: float, *, factor: float = OFFICIAL_FACTOR,
                        max_s: float = OFFICIAL_MAX_S) -> float:
    """The official async client's next wait after ``delay``, at loop time ``t``: it writes
    ``min(5, d * 1.5 * (0.9 + 0.2 * t % 1))``, which Python reads as
    ``0.9 + ((0.2 * t) % 1)``: a growth of 1.35× to 2.85×, not 1.5× ± 10% (the sync
    client parenthesises it, and retries only 504s)."""
    return min(max_s, delay * factor * (0.9 + 0.2 * t % 1))


def backoff_schedule(duration_s: float, initial_s: float, factor: float,
                     max_s: float) -> tuple[float, int]:
    """The product's poll policy without jitter and without any limit: polls at
    ``initial_s``, then waits growing by ``factor`` up to ``max_s``, from the run's start.
    The lag (first poll at or after ``duration_s``, minus it) and the reads it takes."""
    t, delay, reads = 0.0, initial_s, 0
    while True:
        t += delay
        reads += 1
        if t >= duration_s:
            return t - duration_s, reads
        delay = min(max_s, delay * factor)


def p2_met(ours: float | None, round_robin: float | None) -> bool | None:
    if ours is None or not round_robin:
        return None
    return ours <= P2_SHARE * round_robin


def p3_reads_met(ours: float | None, official: float | None) -> bool | None:
    if ours is None or not official:
        return None
    return ours <= P3_READS_SHARE * official


def p3_lag_met(lag: float | None, run_s: float) -> bool | None:
    return None if lag is None else lag <= P3_LAG_SHARE * run_s


def counter_total(text: str, name: str, labels: Mapping[str, str]) -> float:
    """The sum of the samples of counter ``name`` (Prometheus text) whose labels include
    ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (name, f"{name}_total") and all(
                    sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def budget_share(reads: int, span_s: float, count: int, window_s: float) -> float | None:
    """``reads`` over the most a limit of ``count`` per sliding ``window_s`` allows in
    ``span_s`` (a window's burst at the start, then ``count`` per window)."""
    if span_s <= 0:
        return None
    return reads / (count * (1 + span_s / window_s))


def by_class(classes: Sequence[str], lags: Sequence[float]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[float]] = {}
    for name, lag in zip(classes, lags, strict=True):
        groups.setdefault(name, []).append(lag)
    return {name: {"n": len(v), "p50": percentile(v, 0.5), "p90": percentile(v, 0.9)}
            for name, v in groups.items()}


# the scenario ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    runs: int  # P2: runs in flight
    clock: float  # P2: seconds here per real second
    p3_jobs: int
    p3_run_s: float
    read_limit: str = f"{READ_COUNT}/{READ_WINDOW_S:g}s"  # P2

    @property
    def p3_scale(self) -> float:
        return self.p3_run_s / P3_RUN_S


def _plan(ctx: Context) -> Plan:
    quick = P2_QUICK if ctx.quick else 1.0
    return Plan(runs=ctx.size(120, 400), clock=P2_CLOCK * quick,
                p3_jobs=20 if ctx.quick else 30,
                p3_run_s=P3_QUICK_RUN_S if ctx.quick else P3_RUN_S,
                read_limit=f"{round(READ_COUNT * quick)}/{READ_WINDOW_S * quick:g}s")


def _poll(scale: float) -> dict[str, float]:
    """The product's default poll policy with its timings × ``scale``."""
    default = PollSettings()
    return {"initial_s": round(default.initial_s * scale, 4), "factor": default.factor,
            "max_s": round(default.max_s * scale, 4), "jitter": default.jitter}


def _providers(workdir: Any, plan: Plan) -> str:
    """Our providers for ``orchestrator.toml``: ``{sandbox}`` is the sandbox's URL
    (``StackOptions.extra_config``). ``rb-codewords-nowait`` differs from ``rb-codewords``
    only by ``result_wait_s = 0`` (as the dev stack sets it)."""
    key = f"file:{workdir.resolve() / 'sandbox_key'}"
    wait_s = round(1.0 * plan.p3_scale, 4)  # ProviderSettings.result_wait_s, scaled

    def section(name: str, protocol: str, poll: Mapping[str, float], extra: str) -> str:
        policy = ", ".join(f"{k} = {v}" for k, v in poll.items())
        return (f'\n[providers.{name}]\ntype = "sandbox"\nprotocol = "{protocol}"\n'
                f'base_url = "{{sandbox}}"\napi_key = "{key}"\nrun_timeout_s = 900\n'
                f"poll = {{ {policy} }}\n{extra}\n")

    return (section("rb-cordage", "cordage", _poll(plan.clock),
                    f'rate_limits = {{ read = "{plan.read_limit}" }}')
            + section("rb-codewords", "codewords", _poll(plan.p3_scale),
                      f"result_wait_s = {wait_s}")
            + section("rb-codewords-nowait", "codewords", _poll(plan.p3_scale),
                      "result_wait_s = 0"))


def read_budget(ctx: Context) -> ScenarioResult:
    plan = _plan(ctx)
    poll2, poll3 = _poll(plan.clock), _poll(plan.p3_scale)
    result = ScenarioResult("read-budget", ctx.quick, {
        "runs": plan.runs, "read_limit": plan.read_limit, "clock": plan.clock,
        "p3_jobs": plan.p3_jobs, "p3_run_s": plan.p3_run_s, "workers": ctx.workers,
        "concurrency": ctx.concurrency})
    workdir = ctx.workdir / "read-budget"
    sandbox = SandboxSettings(api_key=SANDBOX_KEY, default_duration_s=0.0,
                              rate_limits=RateLimits(cordage_trigger=None,
                                                     cordage_read=plan.read_limit,
                                                     cordage_kill=None))
    options = StackOptions(workdir=workdir, workers=ctx.workers, concurrency=ctx.concurrency,
                           sandbox=sandbox, fresh=True,
                           extra_config=_providers(workdir, plan))
    durations = run_durations(plan.runs, plan.clock)
    with Stack(options) as stack, Client(stack.api_url, _token(stack), timeout_s=120) as client:
        assert stack.settings is not None
        store = SqlStore(make_engine(stack.settings.database.url))
        try:
            ctx.console.log(f"read-budget: {plan.runs} runs in flight under {plan.read_limit} "
                            "reads, polled by the orchestrator")
            ours = _ours_limited(stack, client, store, durations, poll2, plan.read_limit)
            stack.sandbox.reset(settings=False)
            ctx.console.log(f"read-budget: baseline, round-robin polling of the same "
                            f"{plan.runs} runs under the same limit")
            robin = _round_robin(stack, ours["starts"], plan.read_limit)
            stack.sandbox.reset(settings=False)
            ctx.console.log(f"read-budget: {plan.p3_jobs} runs of {plan.p3_run_s:g} s, no "
                            "read limit: ours beside the official CodeWords client's loop")
            p3 = _unlimited(stack, client, store, plan, poll3)
        finally:
            store.engine.dispose()
    ours.pop("starts")
    result.details = {"p2": {"ours": ours, "round_robin": robin, "poll": poll2,
                             "read_limit": plan.read_limit}, "p3": p3}
    _p2_measures(result, plan, ours, robin, poll2)
    _p3_measures(result, plan, p3)
    return result


def _p2_measures(result: ScenarioResult, plan: Plan, ours: dict[str, Any],
                 robin: dict[str, Any], poll: Mapping[str, float]) -> None:
    lag, rr = ours["lag"], robin["lag"]
    cycle = plan.runs / _rate(plan.read_limit)
    result.add(Measure(
        "median completion-detection lag, under the read limit", lag["p50"], "s", rr["p50"],
        "round-robin", target="P2: <= 0.5× round-robin", met=p2_met(lag["p50"], rr["p50"]),
        note=f"{plan.runs} runs, {plan.read_limit} reads (a {cycle:.0f} s round-robin cycle); "
        f"poll {poll['initial_s']:g} s ×{poll['factor']:g} up to {poll['max_s']:g} s"))
    result.add(Measure("p90 completion-detection lag, under the read limit", lag["p90"], "s",
                       rr["p90"], "round-robin", note=f"max {lag['max']:.3g} s "
                       f"(round-robin {rr['max']:.3g} s)"))
    classes = ", ".join(f"{name} {ours['by_class'][name]['p50']:.2g} vs "
                        f"{robin['by_class'][name]['p50']:.2g}"
                        for name in ours["by_class"] if name in robin["by_class"])
    result.add(Measure("median lag of the poll policy alone (computed)",
                       ours["policy_lag"]["p50"], "s", note=f"the same runs, no limit, no "
                       f"jitter, no overheads; measured median lag by class, ours vs "
                       f"round-robin (s): {classes}"))
    result.add(Measure("reads per job, under the read limit", ours["reads_per_job"], "",
                       robin["reads_per_job"], "round-robin",
                       note=f"{ours['reads']:,} reads (round-robin {robin['reads']:,}); "
                       f"share of the most the limit allows from the first start to the "
                       f"last detection: {_pct(ours['budget_use'])} (round-robin "
                       f"{_pct(robin['budget_use'])})"))
    result.add(Measure("polls held back by our limiter, per job", ours["throttled_per_job"],
                       "", note="tasks that sent nothing and waited for their promised turn"))
    result.add(Measure("reads over the limit (sandbox 429s)", ours["429"], "", robin["429"],
                       "round-robin", note=f"polls then held back for the 429's retry_after: "
                       f"{ours['embargoed']:.0f}; jobs not completed: {ours['not_completed']}"))


def _p3_measures(result: ScenarioResult, plan: Plan, p3: dict[str, Any]) -> None:
    ours, loop, held = p3["ours"], p3["official_loop"], p3["official_long_poll"]
    nowait = p3["ours_result_wait_0"]
    run_s = plan.p3_run_s
    scaled = "" if plan.p3_scale == 1 else f"; quick: every timing × {plan.p3_scale:.3g}"
    result.add(Measure(
        "reads per completed job, no read limit", ours["reads_per_job"], "",
        loop["reads_per_job"], "official client loop", target="P3: <= 1/3 of the official loop",
        met=p3_reads_met(ours["reads_per_job"], loop["reads_per_job"]),
        note=f"{plan.p3_jobs} runs of {run_s:g} s each side, CodeWords{scaled}"))
    lag = ours["lag"]["p50"]
    result.add(Measure(
        "median completion-detection lag, no read limit", lag, "s", loop["lag"]["p50"],
        "official client loop", target=f"P3: <= 10% of run time ({P3_LAG_SHARE * run_s:g} s)",
        met=p3_lag_met(lag, run_s),
        note="" if lag is None else f"{100 * lag / run_s:.1f}% of the run time; without "
        f"jitter or overheads the policy would give {p3['policy_without_jitter']['lag']:.3g} s"))
    result.add(Measure(
        "the same, result_wait_s = 0: median lag", nowait["lag"]["p50"], "s",
        note=f"{nowait['reads_per_job'] or 0:.3g} reads per job; for information"))
    result.add(Measure(
        "reads per job, the official client with its 110 s long poll", held["reads_per_job"],
        "", note=f"median lag {held['lag']['p50'] or 0:.2g} s, the runtime holding /result "
        "until the run ends; for information"))


def _rate(limit: str) -> float:
    parsed = parse_rate_limit(limit)
    return parsed.count / parsed.period_s


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.0f}%"


# P2: ours under the read limit ----------------------------------------------------------------

def _ours_limited(stack: Stack, client: Client, store: SqlStore,
                  durations: Sequence[tuple[str, float]], poll: Mapping[str, float],
                  read_limit: str) -> dict[str, Any]:
    specs = [{"workflow": "rb-cordage/sleep",
              "inputs": {"duration_s": seconds, "class": name, "i": i}}
             for i, (name, seconds) in enumerate(durations)]
    longest = max(seconds for _, seconds in durations)
    batch = client.submit_batch(specs)
    _wait(lambda: bool(client.get_batch(batch["id"])["done"]),
          120 + longest + 3 * len(specs) / _rate(read_limit), "the runs to be noticed", 0.5)
    jobs = [store.get_job(i) for i in batch["job_ids"]]
    runs = {r["run_id"]: r for r in stack.sandbox.runs(protocol="cordage")}
    stats = stack.sandbox.stats()
    metrics = httpx.get(f"{stack.api_url}/metrics", timeout=30).text
    lags, classes, policy, ends = [], [], [], []
    not_completed = 0
    for job in jobs:
        run = runs.get(job.run_id or "") if job is not None else None
        if job is None or run is None or job.finished_at is None or run["finished_at"] is None \
                or job.status.value != "completed":
            not_completed += 1
            continue
        lags.append(job.finished_at - run["finished_at"])
        classes.append(run["inputs"]["class"])
        ends.append(job.finished_at)
        policy.append(backoff_schedule(run["inputs"]["duration_s"], poll["initial_s"],
                                       poll["factor"], poll["max_s"])[0])
    reads = int(stats["requests"].get("cordage.get_run", 0))
    starts = sorted((r["created_at"], r["inputs"]) for r in runs.values())
    labels = {"provider": "rb-cordage", "operation": "read"}
    throttled = counter_total(metrics, "orchestrator_throttled", labels)
    embargoed = counter_total(metrics, "orchestrator_rate_limit_waits", labels)
    return {
        "jobs": len(jobs), "not_completed": not_completed, "lag": latency_summary(lags),
        "by_class": by_class(classes, lags), "policy_lag": latency_summary(policy),
        "reads": reads, "reads_per_job": reads / len(jobs) if jobs else None,
        "list_runs": int(stats["requests"].get("cordage.list_runs", 0)),
        "429": int(stats["rate_limited"].get("cordage_read", 0)),
        "embargoed": embargoed, "throttled": throttled,
        "throttled_per_job": throttled / len(jobs) if jobs else None,
        "budget_use": _budget_use(reads, [s for s, _ in starts], ends, read_limit),
        "launch_spread_s": starts[-1][0] - starts[0][0] if starts else None,
        "starts": starts}


def _budget_use(reads: int, starts: Sequence[float], ends: Sequence[float],
                read_limit: str) -> float | None:
    if not starts or not ends:
        return None
    limit = parse_rate_limit(read_limit)
    return budget_share(reads, max(ends) - min(starts), limit.count, limit.period_s)


# P2 baseline: uniform round-robin -------------------------------------------------------------

def _round_robin(stack: Stack, starts: Sequence[tuple[float, Any]],
                 read_limit: str) -> dict[str, Any]:
    """Start the same runs at the same offsets, and poll every run in flight in turn, as
    fast as the read limit allows (its count in any window of its period + our margin)."""
    limit = parse_rate_limit(read_limit)
    budget = WindowBudget(limit.count, limit.period_s + window_margin_s(limit))
    base = f"{stack.sandbox.url}/cordage/sleep"
    headers = {"Authorization": f"Bearer {SANDBOX_KEY}"}
    first = starts[0][0] if starts else 0.0
    pending = deque((at - first, inputs) for at, inputs in starts)
    in_flight: deque[str] = deque()
    detected: dict[str, float] = {}
    reads = refused = 0
    with httpx.Client(timeout=30, headers=headers) as http:
        began = time.time()
        while pending or in_flight:
            now = time.time()
            while pending and pending[0][0] <= now - began:
                _, inputs = pending.popleft()
                response = http.post(f"{base}/trigger", json=inputs)
                response.raise_for_status()
                in_flight.append(response.json()["run_id"])
            if not in_flight:
                time.sleep(max(0.0, pending[0][0] - (time.time() - began)))
                continue
            wait = budget.wait(time.time())
            if wait > 0:
                due = pending[0][0] + began - time.time() if pending else wait
                time.sleep(max(0.0, min(wait, due)))
                continue
            run_id = in_flight.popleft()
            budget.take(time.time())
            response = http.get(f"{base}/runs/{run_id}")
            reads += 1
            if response.status_code == 429:
                refused += 1
                in_flight.appendleft(run_id)
                time.sleep(float(response.json().get("retry_after", 1)))
                continue
            response.raise_for_status()
            if response.json()["status"] in FINISHED:
                detected[run_id] = time.time()
            else:
                in_flight.append(run_id)
    runs = stack.sandbox.runs(protocol="cordage")
    lags = [detected[r["run_id"]] - r["finished_at"] for r in runs]
    stats = stack.sandbox.stats()
    return {"runs": len(runs), "lag": latency_summary(lags),
            "by_class": by_class([r["inputs"]["class"] for r in runs], lags),
            "reads": reads, "reads_sandbox": int(stats["requests"].get("cordage.get_run", 0)),
            "reads_per_job": reads / len(runs) if runs else None,
            "429": int(stats["rate_limited"].get("cordage_read", 0)) or refused,
            "budget_use": _budget_use(reads, [r["created_at"] for r in runs],
                                      list(detected.values()), read_limit)}


# P3: no read limit, one-minute runs -----------------------------------------------------------

def _unlimited(stack: Stack, client: Client, store: SqlStore, plan: Plan,
               poll: Mapping[str, float]) -> dict[str, Any]:
    """Ours (with the default ``result_wait_s`` and with none) and the two baselines at the
    same time, each on runs of its own: run i of every side starts at i × run_s / 2n, so the
    starts spread over half a run time as they would arrive, not all in one instant."""
    n, run_s, scale = plan.p3_jobs, plan.p3_run_s, plan.p3_scale
    gap = run_s / 2 / n
    base = f"{stack.sandbox.url}/codewords"
    found: dict[str, dict[str, Any]] = {"loop": {}, "long_poll": {}}
    errors: list[BaseException] = []
    ids: dict[str, list[str]] = {"ours": [], "nowait": []}
    with httpx.Client(timeout=httpx.Timeout(30, read=OFFICIAL_LONG_POLL_S + 30),
                      headers={"Authorization": SANDBOX_KEY},
                      limits=httpx.Limits(max_connections=4 * n)) as http:
        began = time.monotonic()
        threads = [threading.Thread(target=_guarded, args=(
            errors, _official, http, base, who, i, run_s, scale, began + i * gap, found[who]))
            for who in found for i in range(n)]
        for thread in threads:
            thread.start()
        for i in range(n):
            time.sleep(max(0.0, began + i * gap - time.monotonic()))
            inputs = {"duration_s": run_s, "i": i}
            batch = client.submit_batch([
                {"workflow": "rb-codewords/sleep", "inputs": {**inputs, "who": "ours"}},
                {"workflow": "rb-codewords-nowait/sleep", "inputs": {**inputs, "who": "nowait"}}])
            ids["ours"].append(batch["job_ids"][0])
            ids["nowait"].append(batch["job_ids"][1])
        every = ids["ours"] + ids["nowait"]
        _wait(lambda: all(_ended(store, i) for i in every), 120 + 3 * run_s,
              "the one-minute jobs", 0.5)
        for thread in threads:
            thread.join(timeout=120 + 3 * run_s)
    if errors:
        raise RuntimeError(f"the official client's loop failed: {errors[0]!r}") from errors[0]
    runs = {r["run_id"]: r for r in stack.sandbox.runs(protocol="codewords")}
    ours = {who: _ours_side(store, job_ids, runs) for who, job_ids in ids.items()}
    sides = {who: _official_side(found[who], runs) for who in found}
    stats = stack.sandbox.stats()
    counted = sum(side["reads"] for side in [*ours.values(), *sides.values()])
    lag, reads = backoff_schedule(run_s, poll["initial_s"], poll["factor"], poll["max_s"])
    return {
        "run_s": run_s, "scale": scale, "poll": dict(poll), "start_gap_s": gap,
        "ours": ours["ours"], "ours_result_wait_0": ours["nowait"],
        "policy_without_jitter": {"lag": lag, "reads": reads},
        "official_loop": sides["loop"], "official_long_poll": sides["long_poll"],
        "reads_counted": counted,
        "reads_sandbox": int(stats["requests"].get("codewords.result", 0))}


def _ended(store: SqlStore, job_id: str) -> bool:
    job = store.get_job(job_id)
    return job is not None and job.finished_at is not None


def _ours_side(store: SqlStore, job_ids: Sequence[str],
               runs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    lags, reads, jobs = [], 0, 0
    for job_id in job_ids:
        job = store.get_job(job_id)
        if job is None:
            continue
        jobs += 1
        reads += job.polls
        run = runs.get(job.run_id or "")
        if run is not None and job.finished_at is not None and run["finished_at"] is not None:
            lags.append(job.finished_at - run["finished_at"])
    return {"jobs": jobs, "completed": len(lags), "reads": reads,
            "reads_per_job": reads / jobs if jobs else None, "lag": latency_summary(lags)}


def _guarded(errors: list[BaseException], target: Callable[..., None], *args: Any) -> None:
    try:
        target(*args)
    except BaseException as exc:  # reported by the caller, after every thread has ended
        errors.append(exc)


def _official(http: httpx.Client, base: str, who: str, i: int, run_s: float, scale: float,
              at: float, found: dict[str, Any]) -> None:
    """One run, started at ``at`` (monotonic), waited for as ``codewords-client``'s
    ``poll_result`` does: ``loop`` asks ``/result`` with ``timeout=0`` (answered at once),
    ``long_poll`` with its 110 s."""
    time.sleep(max(0.0, at - time.monotonic()))
    started = http.post(f"{base}/run_async/sleep",
                        json={"duration_s": run_s, "who": who, "i": i})
    started.raise_for_status()
    request_id = started.json()["request_id"]
    hold = OFFICIAL_LONG_POLL_S if who == "long_poll" else 0
    delay, reads = OFFICIAL_FIRST_S * scale, 0
    while True:
        response = http.get(f"{base}/result/{request_id}", params={"timeout": str(int(hold))})
        reads += 1
        if response.status_code not in (408, 504):
            response.raise_for_status()
            found[request_id] = {"detected": time.time(), "reads": reads}
            return
        time.sleep(delay)
        delay = official_next_delay(delay / scale, time.monotonic()) * scale


def _official_side(found: Mapping[str, Mapping[str, Any]],
                   runs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    lags = [f["detected"] - runs[rid]["finished_at"] for rid, f in found.items()
            if rid in runs and runs[rid]["finished_at"] is not None]
    reads = sum(f["reads"] for f in found.values())
    return {"runs": len(found), "reads": reads,
            "reads_per_job": reads / len(found) if found else None,
            "lag": latency_summary(lags)}
