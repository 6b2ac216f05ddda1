"""File inputs and a job's events through the CLI, on the real stack: the API and a worker
as processes, the sandbox's CodeWords protocol over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Harness

pytestmark = pytest.mark.integration


def cli_env(harness: Harness) -> dict[str, str]:
    return {**os.environ, "ORCHESTRATOR_URL": harness.stack.api_url,
            "ORCHESTRATOR_TOKEN": harness.token, "COLUMNS": "200"}


def cli(harness: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=cli_env(harness),
                          capture_output=True, text=True, timeout=90)


def test_a_file_input_then_the_jobs_states_and_logs(harness: Harness, tmp_path: Path) -> None:
    doc = tmp_path / "scores.csv"
    doc.write_bytes(b"name,score\nada,10\n")
    done = cli(harness, "submit", "sandbox-codewords/echo", "--inputs", '{"tag": "file"}',
               "--file", f"doc={doc}", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "completed", job
    url = job["inputs"]["doc"]
    assert job["outputs"] == {"tag": "file", "doc": url}  # echo: the runtime got the URL
    assert httpx.get(url, timeout=10).content == doc.read_bytes()

    shown = cli(harness, "jobs", "logs", job["id"])
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    states = [line.split()[2] for line in lines if line.split()[1] == "state"]
    assert states == ["queued", "starting", "running", "completed"], shown.stdout
    logs = [line for line in lines if line.split()[1] == "log"]
    assert f"run {job['remote']['run_id']} of 'echo' accepted" in logs[0]
    assert logs[-1].endswith("INFO completed") and len(logs) == 5, shown.stdout


def test_logs_stream_while_the_job_runs_and_end_with_it(harness: Harness) -> None:
    job = harness.client.submit("sandbox-codewords/sleep", {"duration_s": 2.0})
    started = time.monotonic()
    with subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "jobs", "logs", job["id"], "--json"],
            env=cli_env(harness), stdout=subprocess.PIPE, text=True) as follower:
        assert follower.stdout is not None
        received = [(time.monotonic() - started, json.loads(line)) for line in follower.stdout]
        assert follower.wait(timeout=60) == 0
    order = [(e["event"], e["data"].get("status") or e["data"].get("message"))
             for _, e in received]
    # State rows (read from the store every 0.5 s) and log lines (from the runtime's stream)
    # are two sources: their order against each other depends on timing, so only each
    # one's own order, and the end, are asserted here; "while the run went" is timed below.
    assert order.index(("state", "running")) < order.index(("state", "completed"))
    assert order.index(("log", "50% done")) < order.index(("end", "completed")) == len(order) - 1
    first_log = next(at for at, e in received if e["event"] == "log")
    assert first_log < received[-1][0] - 1.0  # seen while the run went, not after it
    ids = [e["id"] for _, e in received if e["id"]]
    assert all(i.startswith(("s", "l")) for i in ids) and len(ids) == len(set(ids))


def test_a_provider_without_uploads_is_refused_and_a_missing_file_named(
        harness: Harness, tmp_path: Path) -> None:
    doc = tmp_path / "a.txt"
    doc.write_text("x")
    refused = cli(harness, "submit", "sandbox/echo", "--file", f"doc={doc}")
    assert refused.returncode == 1
    assert "HTTP 422" in refused.stderr and "takes no file uploads" in refused.stderr
    missing = cli(harness, "submit", "sandbox-codewords/echo", "--file", "doc=/nope/x.pdf")
    assert missing.returncode == 1 and "file not found: /nope/x.pdf" in missing.stderr


def test_jobs_cancel_stops_a_running_job(harness: Harness) -> None:
    job = harness.client.submit("sandbox/sleep", {"duration_s": 60})
    harness.wait_until(lambda: harness.client.get(job["id"])["status"] == "running", 30,
                       "the job to run")
    cancelled = cli(harness, "jobs", "cancel", job["id"])
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"{job['id']} cancelled" in cancelled.stdout
    assert "remote run: stopped" in cancelled.stdout
    again = cli(harness, "jobs", "cancel", job["id"], "--json")
    assert again.returncode == 1 and "HTTP 409" in again.stderr
