"""One job end to end on each wire protocol, through the real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from orchestrator.domain.webhook import signature_headers
from tests.integration.conftest import Harness

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("provider", ["sandbox", "sandbox-codewords"])
def test_a_job_completes_with_outputs_and_a_verified_callback(harness: Harness,
                                                              provider: str) -> None:
    with harness.receiver() as receiver:
        job = harness.client.submit(f"{provider}/echo", {"greeting": "hi", "tag": provider},
                                    callback_url=receiver.url)
        done = harness.client.wait(job["id"], timeout_s=60)
        harness.wait_until(lambda: job["id"] in receiver.job_ids(), 30, "the callback")
        event = next(e for e in receiver.events() if e.body["data"]["id"] == job["id"])
    assert done["status"] == "completed", done
    assert done["remote"]["run_id"] and done["polls"] >= 1
    outputs = done["outputs"]
    assert json.dumps({"greeting": "hi", "tag": provider}, sort_keys=True) in json.dumps(
        outputs, sort_keys=True)
    assert event.body["type"] == "job.completed"
    assert event.body["data"]["outputs"] == outputs
    assert receiver.summary()["bad_signatures"] == 0


def test_a_failing_workflow_fails_with_its_error_and_says_so(harness: Harness) -> None:
    for provider in ("sandbox", "sandbox-codewords"):
        job = harness.client.submit(f"{provider}/fail", {"tag": f"fail-{provider}"})
        done = harness.client.wait(job["id"], timeout_s=60)
        assert done["status"] == "failed", done
        assert done["error"]["code"] == "run_failed" and done["error"]["message"]


def test_the_callback_verifies_with_the_reference_library_on_the_raw_request(
        harness: Harness) -> None:
    """The receiver verifies each request; here a raw delivery is checked once more."""
    with harness.receiver() as receiver:
        job = harness.client.submit("sandbox/echo", {"tag": "raw"}, callback_url=receiver.url)
        harness.wait_until(lambda: job["id"] in receiver.job_ids(), 60, "the callback")
    delivery = harness.store.deliveries_for_job(job["id"])[0]
    assert delivery.status == "succeeded" and delivery.attempts == 1
    headers = signature_headers([harness.secret], delivery.id, int(time.time()),
                                delivery.payload)
    assert Webhook(harness.secret).verify(delivery.payload, headers)["data"]["id"] == job["id"]


def test_the_cli_submits_and_waits(harness: Harness) -> None:
    env = {**os.environ, "ORCHESTRATOR_URL": harness.stack.api_url,
           "ORCHESTRATOR_TOKEN": harness.token}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "submit", "sandbox-codewords/echo",
         "--inputs", '{"tag": "cli"}', "--wait", "--json"],
        env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed"
    failed = subprocess.run(
        [sys.executable, "-m", "orchestrator", "submit", "sandbox/fail", "--wait"],
        env=env, capture_output=True, text=True, timeout=90)
    assert failed.returncode == 1
    listed = subprocess.run([sys.executable, "-m", "orchestrator", "jobs", "list", "--json",
                             "--limit", "3"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 3


def test_readyz_sees_the_database_and_redis(harness: Harness) -> None:
    ready = httpx.get(f"{harness.stack.api_url}/readyz", timeout=10)
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


def _remote_status(harness: Harness, run_id: str) -> str:
    return next(str(r["status"]) for r in harness.runs() if r["run_id"] == run_id)


def test_cancelling_a_running_cordage_job_kills_its_run(harness: Harness) -> None:
    job = harness.client.submit("sandbox/sleep", {"tag": "cancel-me", "duration_s": 60})
    harness.wait_until(lambda: harness.client.get(job["id"])["status"] == "running", 30,
                       "the job to run")
    response = httpx.post(f"{harness.stack.api_url}/v1/jobs/{job['id']}/cancel",
                          headers={"Authorization": f"Bearer {harness.token}"}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["cancellation"]["remote"] == "stopped"
    assert _remote_status(harness, body["remote"]["run_id"]) == "cancelled"
    again = httpx.post(f"{harness.stack.api_url}/v1/jobs/{job['id']}/cancel",
                       headers={"Authorization": f"Bearer {harness.token}"}, timeout=30)
    assert again.status_code == 409


def test_cancelling_a_codewords_job_says_the_run_goes_on(harness: Harness) -> None:
    job = harness.client.submit("sandbox-codewords/sleep", {"tag": "cw-cancel",
                                                            "duration_s": 60})
    harness.wait_until(lambda: harness.client.get(job["id"])["status"] == "running", 30,
                       "the job to run")
    body = httpx.post(f"{harness.stack.api_url}/v1/jobs/{job['id']}/cancel",
                      headers={"Authorization": f"Bearer {harness.token}"}, timeout=30).json()
    assert body["status"] == "cancelled"
    assert body["cancellation"]["remote"] == "not_supported"
    assert "goes on" in body["cancellation"]["message"]


def test_a_job_past_its_timeout_is_timed_out_and_its_run_killed(harness: Harness) -> None:
    job = harness.client.submit("sandbox/sleep", {"tag": "slow", "duration_s": 60},
                                timeout_s=2)
    done = harness.client.wait(job["id"], timeout_s=60)
    assert done["status"] == "timed_out"
    assert "the remote run was stopped" in done["error"]["message"]
    assert _remote_status(harness, done["remote"]["run_id"]) == "cancelled"


def test_the_cli_retries_a_failed_job_as_a_second_attempt(harness: Harness) -> None:
    job = harness.client.submit("sandbox/fail", {"tag": "retry-me"})
    assert harness.client.wait(job["id"], timeout_s=60)["status"] == "failed"
    env = {**os.environ, "ORCHESTRATOR_URL": harness.stack.api_url,
           "ORCHESTRATOR_TOKEN": harness.token}
    retried = subprocess.run(
        [sys.executable, "-m", "orchestrator", "jobs", "retry", job["id"], "--wait", "--json"],
        env=env, capture_output=True, text=True, timeout=90)
    assert retried.returncode == 1  # the workflow fails again, and --wait says so
    again = json.loads(retried.stdout)
    assert again["attempt"] == 2 and again["status"] == "failed"
    attempts = {e["attempt"] for e in harness.store.job_events(job["id"])}
    assert attempts == {1, 2}
    refused = subprocess.run(
        [sys.executable, "-m", "orchestrator", "jobs", "retry", "job_nope"],
        env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "HTTP 404" in refused.stderr
