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
