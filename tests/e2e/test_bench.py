"""``orchestrator bench`` runs and reports: tiny sizes, no speed asserted (timing claims live
in the benchmark's own output and docs/benchmarks.md, never in tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.bench.report import Measure, ScenarioResult, table
from orchestrator.bench.scenarios import window_use

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
