"""``orchestrator bench`` runs and reports: tiny sizes, no speed asserted (timing claims live
in the benchmark's own output and docs/benchmarks.md, never in tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.bench.fanout import (
    epoch,
    fanout_met,
    latency_met,
    percentile,
    steady_rate,
    windowed_p99,
)
from orchestrator.bench.readbudget import (
    WindowBudget,
    backoff_schedule,
    budget_share,
    by_class,
    counter_total,
    official_next_delay,
    p2_met,
    p3_lag_met,
    p3_reads_met,
    run_durations,
)
from orchestrator.bench.report import Measure, ScenarioResult, table
from orchestrator.bench.scenarios import SCENARIOS, window_use

pytestmark = pytest.mark.e2e


def test_bench_submit_writes_its_results_as_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "bench", "submit", "--quick", "--jobs", "50",
         "--json", str(out), "--workdir", str(tmp_path / "bench")],
        cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "submit (quick)" in done.stdout
    report = json.loads(out.read_text())
    assert {"version", "command", "date", "machine", "scenarios"} <= set(report)
    assert report["machine"]["cpus"] >= 1
    [scenario] = report["scenarios"]
    assert scenario["name"] == "submit" and scenario["error"] is None
    assert scenario["params"]["jobs"] == 50
    names = [m["name"] for m in scenario["measures"]]
    assert "jobs accepted per second" in names
    for measure in scenario["measures"]:
        assert {"name", "value", "unit", "baseline", "ratio", "target", "met"} <= set(measure)
    rate = next(m for m in scenario["measures"] if m["name"] == "jobs accepted per second")
    assert rate["value"] > 0 and rate["baseline"] > 0 and rate["ratio"] > 0
    assert isinstance(rate["met"], bool)


def test_an_unknown_scenario_is_refused_with_the_names_to_choose(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "orchestrator", "bench", "nope"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "rate-limit" in done.stderr


def test_window_use_counts_the_steady_part_and_the_busiest_window() -> None:
    # 10 requests a second for 30 s under a 60-per-6 s limit: all of it used, never over.
    steady = [i / 10 for i in range(300)]
    use = window_use(steady, 60, 6.0)
    assert use["share"] == pytest.approx(1.0, abs=0.02)
    assert use["max_in_window"] == 60
    # Half the rate is half the limit; a burst of 80 shows as the busiest window.
    assert window_use([i / 5 for i in range(150)], 60, 6.0)["share"] == pytest.approx(
        0.5, abs=0.02)
    assert window_use([0.0] * 80 + [10.0], 60, 6.0)["max_in_window"] == 80
    assert window_use([], 60, 6.0)["share"] is None


def test_a_scenario_that_did_not_run_says_so_in_its_table() -> None:
    result = ScenarioResult("submit", True, error="RuntimeError: boom")
    result.add(Measure("x", 1.0, "s", 2.0, "raw", target="P5", met=False))
    assert result.as_dict()["measures"][0]["ratio"] == 0.5
    assert table(result).row_count == 2


def test_callbacks_is_a_scenario_of_bench_all() -> None:
    # Its quick run starts three stacks (about a minute): `make bench` runs it, not the tests.
    assert "callbacks" in SCENARIOS


def test_callbacks_figures_percentiles_rates_and_p7_verdicts() -> None:
    assert percentile([], 0.99) is None
    assert percentile([5.0], 0.99) == 5.0
    hundred = [float(i) for i in range(1, 101)]
    assert percentile(hundred, 0.5) == pytest.approx(50.5)
    assert percentile(hundred, 0.99) == pytest.approx(99.01)
    # 11 events 0.1 s apart: 10/s; the first 5% of a worker's receipts are left out.
    assert steady_rate([i / 10 for i in range(11)]) == pytest.approx(10.0)
    assert steady_rate([0.0] + [10 + i / 100 for i in range(100)]) == pytest.approx(100.0)
    assert steady_rate([1.0]) is None
    # Fan-out: at least half of the raw POSTs' rate.
    assert fanout_met(600.0, 1_000.0) is True and fanout_met(400.0, 1_000.0) is False
    assert fanout_met(None, 1_000.0) is None
    # Latency: over 1 s fails at any rate; within 1 s passes only at about 100 jobs/s.
    assert latency_met(2.4, 76.0) is False
    assert latency_met(0.3, 99.0) is True
    assert latency_met(0.07, 50.0) is None
    assert epoch("1970-01-01T00:00:01.500000Z") == pytest.approx(1.5)
    by_window = windowed_p99([0.0, 1.0, 6.0], [0.1, 0.2, 3.0])
    assert [w["from_s"] for w in by_window] == [0.0, 5.0]
    assert by_window[1]["p99"] == 3.0


def test_read_budget_is_a_scenario_of_bench_all() -> None:
    # Its quick run takes about a minute: `make bench` runs it, not the tests.
    assert "read-budget" in SCENARIOS


def test_read_budget_figures_durations_budget_and_verdicts() -> None:
    # Durations: the classes in turn, log-uniform within each class's bounds × the scale,
    # the same for the same seed.
    drawn = run_durations(6, 0.1, (("a", 10.0, 20.0), ("b", 100.0, 200.0)))
    assert [name for name, _ in drawn] == ["a", "b"] * 3
    assert all(1.0 <= s <= 2.0 for name, s in drawn if name == "a")
    assert all(10.0 <= s <= 20.0 for name, s in drawn if name == "b")
    assert drawn == run_durations(6, 0.1, (("a", 10.0, 20.0), ("b", 100.0, 200.0)))
    # The baseline's own budget: 3 reads in any 1 s, a slot freeing a window after its read.
    budget = WindowBudget(3, 1.0)
    for t in (0.0, 0.1, 0.2):
        assert budget.wait(t) == 0.0
        budget.take(t)
    assert budget.wait(0.5) == pytest.approx(0.5)
    assert budget.wait(1.0) == 0.0
    # The official client's growth: 1.5 × (0.9 + (0.2 t mod 1)), capped at 5 s.
    assert official_next_delay(1.0, 0.0) == pytest.approx(1.35)
    assert official_next_delay(1.0, 4.5) == pytest.approx(2.7)
    assert official_next_delay(4.0, 4.5) == 5.0
    # The poll policy alone: polls at 1, 3, 7, 11 (waits 1, 2, 4, 4): a 10 s run is
    # noticed 1 s late, on the 4th read.
    lag, reads = backoff_schedule(10.0, 1.0, 2.0, 4.0)
    assert lag == pytest.approx(1.0) and reads == 4
    lag, reads = backoff_schedule(0.5, 1.0, 2.0, 4.0)
    assert lag == pytest.approx(0.5) and reads == 1
    # The most a sliding window allows in a span: its burst, then its count per window.
    assert budget_share(240, 6.0, 120, 6.0) == pytest.approx(1.0)
    assert budget_share(1, 0.0, 120, 6.0) is None
    # Verdicts.
    assert p2_met(1.0, 2.0) is True and p2_met(1.5, 2.0) is False and p2_met(None, 2.0) is None
    assert p3_reads_met(5.0, 15.0) is True and p3_reads_met(7.0, 15.0) is False
    assert p3_lag_met(6.0, 60.0) is True and p3_lag_met(6.5, 60.0) is False
    assert p3_lag_met(None, 60.0) is None
    groups = by_class(["f", "s", "f"], [1.0, 5.0, 3.0])
    assert groups["f"]["p50"] == 2.0 and groups["s"]["n"] == 1


def test_read_budget_reads_counters_from_a_metrics_scrape() -> None:
    text = (
        "# HELP orchestrator_throttled_total Held back.\n"
        "# TYPE orchestrator_throttled_total counter\n"
        'orchestrator_throttled_total{operation="read",provider="rb-cordage"} 12.0\n'
        'orchestrator_throttled_total{operation="trigger",provider="rb-cordage"} 5.0\n'
        'orchestrator_throttled_total{operation="read",provider="other"} 7.0\n')
    labels = {"provider": "rb-cordage", "operation": "read"}
    assert counter_total(text, "orchestrator_throttled", labels) == 12.0
    assert counter_total(text, "orchestrator_throttled", {"operation": "read"}) == 19.0
    assert counter_total(text, "orchestrator_rate_limit_waits", labels) == 0.0


def test_read_budget_providers_are_valid_configuration(tmp_path: Path) -> None:
    import tomllib

    from orchestrator.bench.readbudget import Plan, _providers
    from orchestrator.config import ProviderSettings

    (tmp_path / "sandbox_key").write_text("sandbox-key\n")
    text = _providers(tmp_path, Plan(runs=10, clock=0.1, p3_jobs=2, p3_run_s=10.0))
    sections = tomllib.loads(text.replace("{sandbox}", "http://127.0.0.1:1"))["providers"]
    assert set(sections) == {"rb-cordage", "rb-codewords", "rb-codewords-nowait"}
    cordage = ProviderSettings.model_validate(sections["rb-cordage"])
    assert cordage.rate_limits.read is not None and cordage.poll.max_s == pytest.approx(3.0)
    codewords = ProviderSettings.model_validate(sections["rb-codewords"])
    assert codewords.result_wait_s == pytest.approx(10 / 60, abs=1e-3)
    assert codewords.poll.initial_s == pytest.approx(2.0 * 10 / 60, abs=1e-3)
    assert ProviderSettings.model_validate(sections["rb-codewords-nowait"]).result_wait_s == 0


def test_scale_is_a_scenario_of_bench_all() -> None:
    # Its quick run starts a stack and 5,000 jobs (about a minute): `make bench` runs it.
    assert "scale" in SCENARIOS


def test_scale_poll_drift_pairs_each_poll_with_the_due_time_it_was_planned_for() -> None:
    from orchestrator.bench.scale import DriftTracker, drift_figures

    tracker = DriftTracker(start=100.0, end=110.0)
    # First rows seen: each job's next poll and when it is due.
    tracker.observe([("a", 3, 101.0, 90.0), ("b", 0, 102.0, 91.0), ("c", 5, 150.0, 92.0),
                     ("d", 1, 104.0, 93.0)])
    tracker.observe([
        ("a", 4, 160.0, 101.2),  # ran 0.2 s after its due time
        ("a", 4, 160.0, 101.2),  # the same row read again (reads overlap): counted once
        ("b", 0, 103.5, 91.0),   # a sweep moved the due time, no poll yet: the first kept
        ("d", 3, 170.0, 107.0),  # two polls between reads: the first one's due time unseen
        ("e", 0, 105.0, 99.0),   # a job that started since: its first poll is due at 105
    ])
    tracker.observe([("b", 1, 190.0, 104.0), ("c", 6, 200.0, 151.0)])  # c: due after the end
    assert tracker.drifts == pytest.approx([0.2, 2.0])
    assert tracker.dues == [101.0, 102.0]
    assert tracker.skipped == 1
    assert tracker.between(100.0, 101.5) == pytest.approx([0.2])
    # e is due in the window and not polled yet: it has waited 3 s by 108.
    assert tracker.waiting(108.0) == [pytest.approx(3.0)]
    assert tracker.waiting(108.0, high=104.0) == []
    figures = drift_figures(tracker.drifts, tracker.waiting(108.0))
    assert figures["ran"] == 2 and figures["still_waiting"] == 1
    assert figures["max"] == pytest.approx(3.0) and figures["late_over_1s"] == 2


def test_scale_provider_polls_each_job_every_interval_on_average() -> None:
    import random
    import tomllib

    from orchestrator.bench.scale import poll_interval, provider_config
    from orchestrator.config import ProviderSettings

    assert poll_interval(100_000, 100.0) == 1_000.0
    assert poll_interval(50, 100.0) == 1.0
    table = tomllib.loads(provider_config(1_000.0, "/tmp/key").replace("{sandbox}",
                                                                       "http://127.0.0.1:1"))
    settings = ProviderSettings.model_validate(
        {**table["providers"]["scale"], "api_key": "inline-key"})
    assert settings.rate_limits.trigger is None and settings.max_in_flight is None
    rng = random.Random(1)
    delays = [settings.poll.policy().delay(attempt, rng) for attempt in range(2_000)]
    assert min(delays) >= 100.0 and max(delays) <= 1_900.0
    assert sum(delays) / len(delays) == pytest.approx(1_000.0, rel=0.05)


def test_scale_verdicts_fail_over_a_limit_at_any_size_and_pass_only_at_100000() -> None:
    from orchestrator.bench.scale import _verdict, p6_met, rss_by_process

    met = p6_met(rss_mb=120.0, redis_mb=230.0, drift_p99=0.3)
    assert met == {"rss": True, "redis": False, "drift": True}
    assert _verdict(met["redis"], 5_000) is False
    assert _verdict(met["rss"], 5_000) is None
    assert _verdict(met["rss"], 100_000) is True
    assert _verdict(None, 100_000) is None
    assert rss_by_process({"me": os.getpid()})["me"] > 1.0
